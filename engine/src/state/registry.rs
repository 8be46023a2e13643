//! Push-ID registry: which device tokens belong to which user.
//!
//! Two sharded maps:
//! - `owners`: push ID → owning [`UserIdx`] (a push ID belongs to at most one user);
//! - `devices`: user → that user's devices, each a [`Device`] record holding everything a
//!   push needs (provider, environment, app, token). Fan-out does one `u32`-keyed lookup
//!   per offline recipient and never hashes a string.
//!
//! Lock order is always `owners` shard → `devices` segment, so concurrent binds, moves
//! and removals of the same push ID serialize on its `owners` shard and cannot deadlock.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use hashbrown::{hash_table, HashTable};
use parking_lot::RwLock;
use smallvec::SmallVec;

use super::ids::{IdleHints, UserIdx};

mod device;

pub use device::{Binding, Device, Token, TokenRef};

/// The vendor channel a binding is pushed through, from the vendor table.
pub use crate::providers::ProviderKind;

/// APNs environment of a binding (the iOS `isProduct` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Environment {
    #[default]
    Production,
    Sandbox,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Sandbox => "sandbox",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "production" => Some(Self::Production),
            "sandbox" => Some(Self::Sandbox),
            _ => None,
        }
    }
}

type DeviceList = SmallVec<[Device; 2]>;
type Hasher = hashbrown::DefaultHashBuilder;

const SEGMENT_USERS: usize = 1 << 16;
const SEGMENTS: usize = 1 << 16;

/// User index → that user's devices, dense (user indexes are dense): segments of 2^16
/// users allocated on first use, each behind its own lock. No hashing, 24 bytes a user.
struct DeviceTable {
    segments: Box<[OnceLock<Segment>]>,
}

type Segment = RwLock<Box<[DeviceList]>>;

impl DeviceTable {
    fn new() -> Self {
        Self {
            segments: (0..SEGMENTS).map(|_| OnceLock::new()).collect(),
        }
    }

    #[inline]
    fn locate(user: UserIdx) -> (usize, usize) {
        (user as usize / SEGMENT_USERS, user as usize % SEGMENT_USERS)
    }

    fn segment(&self, s: usize) -> &Segment {
        self.segments[s]
            .get_or_init(|| RwLock::new((0..SEGMENT_USERS).map(|_| DeviceList::new()).collect()))
    }

    #[inline]
    fn read<R>(&self, user: UserIdx, f: impl FnOnce(&DeviceList) -> R) -> Option<R> {
        let (s, i) = Self::locate(user);
        let seg = self.segments[s].get()?.read();
        Some(f(&seg[i]))
    }

    fn write<R>(&self, user: UserIdx, f: impl FnOnce(&mut DeviceList) -> R) -> R {
        let (s, i) = Self::locate(user);
        let mut seg = self.segment(s).write();
        f(&mut seg[i])
    }

    fn for_each(&self, mut f: impl FnMut(UserIdx, &DeviceList)) {
        for (s, seg) in self.segments.iter().enumerate() {
            let Some(seg) = seg.get() else { continue };
            let seg = seg.read();
            for (i, list) in seg.iter().enumerate() {
                if !list.is_empty() {
                    f((s * SEGMENT_USERS + i) as UserIdx, list);
                }
            }
        }
    }
}

const OWNER_SHARDS: usize = 64;

/// Push ID → its current record (which names the owner): sharded hash tables that store
/// only the 8-byte record pointer, hashed by the push id's bytes.
struct Owners {
    hasher: Hasher,
    shards: Box<[RwLock<HashTable<Device>>]>,
}

impl Owners {
    fn new() -> Self {
        Self {
            hasher: Hasher::default(),
            shards: (0..OWNER_SHARDS)
                .map(|_| RwLock::new(HashTable::new()))
                .collect(),
        }
    }

    #[inline]
    fn hash(&self, push_id: &[u8]) -> u64 {
        self.hasher.hash_one(push_id)
    }

    /// The shard for a hash: bits the tables themselves do not use for placement.
    #[inline]
    fn shard(&self, h: u64) -> &RwLock<HashTable<Device>> {
        &self.shards[((h >> 32) as usize) % OWNER_SHARDS]
    }

    fn rehash(&self) -> impl Fn(&Device) -> u64 + '_ {
        move |d| self.hasher.hash_one(d.push_id_bytes())
    }
}

pub struct Registry {
    owners: Owners,
    devices: DeviceTable,
    count: AtomicUsize,
    /// Where a user whose last device goes is marked for the user sweep.
    hints: Arc<IdleHints>,
}

impl Registry {
    pub fn new(hints: Arc<IdleHints>) -> Self {
        Self {
            owners: Owners::new(),
            devices: DeviceTable::new(),
            count: AtomicUsize::new(0),
            hints,
        }
    }

    /// Make room for `additional` more bindings (recovery knows how many are coming,
    /// so the tables never rehash while it fills them).
    pub fn reserve(&self, additional: usize) {
        for shard in self.owners.shards.iter() {
            shard
                .write()
                .reserve(additional / OWNER_SHARDS + 1, self.owners.rehash());
        }
    }

    /// Number of bindings.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bind `push_id` to `user`, moving it from its previous owner if any.
    /// Returns the previous owner (which may be `user` itself on a re-bind).
    pub fn bind(&self, push_id: &str, user: UserIdx, b: &Binding) -> Option<UserIdx> {
        self.insert(Device::new(push_id, user, b))
    }

    /// [`Registry::bind`] for a ready record (its owner is the user bound to).
    pub fn insert(&self, device: Device) -> Option<UserIdx> {
        let user = device.owner();
        let key = device.push_id_bytes();
        let h = self.owners.hash(key);
        let mut table = self.owners.shard(h).write();
        match table.entry(h, |d| d.push_id_bytes() == key, self.owners.rehash()) {
            hash_table::Entry::Occupied(mut e) => {
                let prev = e.get().owner();
                self.detach(prev, key);
                self.attach(user, device.clone());
                *e.get_mut() = device;
                Some(prev)
            }
            hash_table::Entry::Vacant(e) => {
                self.attach(user, device.clone());
                e.insert(device);
                self.count.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Remove `push_id`; when `only_token` is given, only if it still holds that token
    /// (a dead-token report must not remove a binding re-registered since).
    pub fn unbind(&self, push_id: &str, only_token: Option<&Token>) -> Option<UserIdx> {
        let key = push_id.as_bytes();
        let h = self.owners.hash(key);
        let mut table = self.owners.shard(h).write();
        let e = table.find_entry(h, |d| d.push_id_bytes() == key).ok()?;
        let owner = e.get().owner();
        if let Some(token) = only_token {
            if !e.get().token().matches(token) {
                return None;
            }
        }
        self.detach(owner, key);
        e.remove();
        self.count.fetch_sub(1, Ordering::Relaxed);
        Some(owner)
    }

    /// Remove every binding of `user`; returns how many. A user without devices costs
    /// nothing here (no device segment is allocated for them).
    pub fn remove_user(&self, user: UserIdx) -> usize {
        if !self.has_devices(user) {
            return 0;
        }
        let list = self.devices.write(user, std::mem::take);
        self.hints.mark(user);
        let mut removed = 0;
        for d in list {
            let key = d.push_id_bytes();
            let h = self.owners.hash(key);
            let mut table = self.owners.shard(h).write();
            if let Ok(e) = table.find_entry(h, |x| x.push_id_bytes() == key && x.owner() == user) {
                e.remove();
                removed += 1;
                self.count.fetch_sub(1, Ordering::Relaxed);
            }
        }
        removed
    }

    fn attach(&self, user: UserIdx, device: Device) {
        self.devices.write(user, |list| {
            match list
                .iter_mut()
                .find(|d| d.push_id_bytes() == device.push_id_bytes())
            {
                Some(slot) => *slot = device,
                None => list.push(device),
            }
        })
    }

    fn detach(&self, user: UserIdx, push_id: &[u8]) {
        let emptied = self.devices.write(user, |list| {
            list.retain(|d| d.push_id_bytes() != push_id);
            if list.is_empty() {
                *list = DeviceList::new();
                return true;
            }
            false
        });
        if emptied {
            self.hints.mark(user);
        }
    }

    /// Does `user` have a binding? What keeps their index from being released.
    pub fn has_devices(&self, user: UserIdx) -> bool {
        self.devices
            .read(user, |list| !list.is_empty())
            .unwrap_or(false)
    }

    /// Call `f` for each device of `user` (fan-out's lookup: an index, no hashing).
    #[inline]
    pub fn for_each_device(&self, user: UserIdx, mut f: impl FnMut(&Device)) {
        self.devices.read(user, |list| list.iter().for_each(&mut f));
    }

    /// Visit every binding, one user's device list at a time (each list is read under
    /// its segment lock, so it is consistent in itself; the whole walk is not atomic).
    pub fn for_each(&self, mut f: impl FnMut(UserIdx, &Device)) {
        self.devices.for_each(|user, list| {
            for d in list {
                f(user, d);
            }
        });
    }

    /// A snapshot of the devices of `user`.
    pub fn devices_of(&self, user: UserIdx) -> Vec<Device> {
        self.devices
            .read(user, |l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The owner and device behind a push ID.
    pub fn lookup(&self, push_id: &str) -> Option<(UserIdx, Device)> {
        let key = push_id.as_bytes();
        let h = self.owners.hash(key);
        let table = self.owners.shard(h).read();
        let d = table.find(h, |d| d.push_id_bytes() == key)?;
        Some((d.owner(), d.clone()))
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new(Arc::default())
    }
}

#[cfg(test)]
mod tests;
