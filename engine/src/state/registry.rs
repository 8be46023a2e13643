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

use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use hashbrown::{hash_table, HashTable};
use parking_lot::RwLock;
use smallvec::SmallVec;

use super::ids::{IdleHints, UserIdx};

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

/// A device token, stored compactly: APNs hex tokens as their bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Token {
    Bytes(Box<[u8]>),
    Text(Box<str>),
}

impl Token {
    /// The token as the vendor expects it on the wire (APNs: lowercase hex).
    pub fn to_wire(&self) -> String {
        match self {
            Token::Bytes(b) => hex::encode(b),
            Token::Text(t) => t.to_string(),
        }
    }

    /// A short, non-secret form for listings and logs: the first 8 characters.
    pub fn redacted(&self) -> String {
        let wire = self.to_wire();
        let head: String = wire.chars().take(8).collect();
        format!("{head}…")
    }
}

impl Token {
    /// A borrowed view.
    pub fn as_ref(&self) -> TokenRef<'_> {
        match self {
            Token::Bytes(b) => TokenRef::Bytes(b),
            Token::Text(t) => TokenRef::Text(t),
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", self.redacted())
    }
}

/// What `PUT /v1/push-ids/{id}` stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub user_id: Arc<str>,
    pub provider: ProviderKind,
    pub environment: Environment,
    pub app_id: Option<Arc<str>>,
    pub token: Token,
}

/// A borrowed view of a stored token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TokenRef<'a> {
    Bytes(&'a [u8]),
    Text(&'a str),
}

impl TokenRef<'_> {
    /// The token as the vendor expects it on the wire (APNs: lowercase hex).
    pub fn to_wire(&self) -> String {
        match self {
            TokenRef::Bytes(b) => hex::encode(b),
            TokenRef::Text(t) => t.to_string(),
        }
    }

    /// Length of [`TokenRef::to_wire`] in bytes.
    pub fn wire_len(&self) -> usize {
        match self {
            TokenRef::Bytes(b) => b.len() * 2,
            TokenRef::Text(t) => t.len(),
        }
    }

    /// Append [`TokenRef::to_wire`] to `out` without an intermediate `String`.
    pub fn write_wire(&self, out: &mut bytes::BytesMut) {
        match self {
            TokenRef::Bytes(b) => {
                let start = out.len();
                out.resize(start + b.len() * 2, 0);
                hex::encode_to_slice(b, &mut out[start..]).expect("room for two digits a byte");
            }
            TokenRef::Text(t) => out.extend_from_slice(t.as_bytes()),
        }
    }

    pub fn to_owned(&self) -> Token {
        match self {
            TokenRef::Bytes(b) => Token::Bytes((*b).into()),
            TokenRef::Text(t) => Token::Text((*t).into()),
        }
    }

    /// A short, non-secret form for listings and logs: the first 8 characters.
    pub fn redacted(&self) -> String {
        let head: String = self.to_wire().chars().take(8).collect();
        format!("{head}…")
    }

    fn matches(&self, t: &Token) -> bool {
        match (self, t) {
            (TokenRef::Bytes(a), Token::Bytes(b)) => *a == &**b,
            (TokenRef::Text(a), Token::Text(b)) => *a == &**b,
            _ => false,
        }
    }
}

impl fmt::Debug for TokenRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", self.redacted())
    }
}

/// One bound device as fan-out sees it: a single shared heap block (a thin,
/// reference-counted pointer: 8 bytes wherever it is stored) holding a header
/// `provider | environment | token kind | push id length | app id length | owner (u32
/// LE)`, then the push id, the app id and the token. Cloning is a reference-count
/// increment; a binding costs one allocation. Moving a push id to another user makes a
/// new record.
#[derive(Clone, PartialEq, Eq)]
pub struct Device(triomphe::ThinArc<[u8; 9], u8>);

impl Device {
    pub fn new(push_id: &str, owner: UserIdx, b: &Binding) -> Self {
        Self::from_parts(
            push_id,
            owner,
            b.provider,
            b.environment,
            b.app_id.as_deref(),
            b.token.as_ref(),
        )
    }

    /// Build a record straight from its parts (recovery reads them from a snapshot).
    pub fn from_parts(
        push_id: &str,
        owner: UserIdx,
        provider: ProviderKind,
        environment: Environment,
        app_id: Option<&str>,
        token: TokenRef<'_>,
    ) -> Self {
        let app = app_id.unwrap_or("");
        let (kind, token): (u8, &[u8]) = match token {
            TokenRef::Bytes(t) => (0, t),
            TokenRef::Text(t) => (1, t.as_bytes()),
        };
        let push_len = u8::try_from(push_id.len()).expect("push ids are at most 128 bytes");
        let app_len = u8::try_from(app.len()).expect("app ids are at most 128 bytes");
        let o = owner.to_le_bytes();
        let header = [
            provider as u8,
            environment as u8,
            kind,
            push_len,
            app_len,
            o[0],
            o[1],
            o[2],
            o[3],
        ];
        let mut bytes: SmallVec<[u8; 512]> = SmallVec::new();
        bytes.extend_from_slice(push_id.as_bytes());
        bytes.extend_from_slice(app.as_bytes());
        bytes.extend_from_slice(token);
        Device(triomphe::ThinArc::from_header_and_slice(header, &bytes))
    }

    #[inline]
    fn header(&self) -> &[u8; 9] {
        &self.0.header.header
    }

    #[inline]
    fn bytes(&self) -> &[u8] {
        &self.0.slice
    }

    /// The push id's bytes (no UTF-8 check: for hashing and comparing).
    #[inline]
    fn push_id_bytes(&self) -> &[u8] {
        &self.bytes()[..self.push_end()]
    }

    /// The user this record binds the push id to.
    #[inline]
    pub fn owner(&self) -> UserIdx {
        let h = self.header();
        UserIdx::from_le_bytes([h[5], h[6], h[7], h[8]])
    }

    #[inline]
    pub fn provider(&self) -> ProviderKind {
        ProviderKind::ALL[usize::from(self.header()[0])]
    }

    #[inline]
    pub fn environment(&self) -> Environment {
        if self.header()[1] == 0 {
            Environment::Production
        } else {
            Environment::Sandbox
        }
    }

    #[inline]
    fn push_end(&self) -> usize {
        usize::from(self.header()[3])
    }

    #[inline]
    fn app_end(&self) -> usize {
        self.push_end() + usize::from(self.header()[4])
    }

    #[inline]
    pub fn push_id(&self) -> &str {
        std::str::from_utf8(self.push_id_bytes()).expect("stored from a str")
    }

    /// The binding's `app_id` (APNs topic override), if it has one.
    #[inline]
    pub fn app_id(&self) -> Option<&str> {
        let app = &self.bytes()[self.push_end()..self.app_end()];
        (!app.is_empty()).then(|| std::str::from_utf8(app).expect("stored from a str"))
    }

    #[inline]
    pub fn token(&self) -> TokenRef<'_> {
        let t = &self.bytes()[self.app_end()..];
        if self.header()[2] == 0 {
            TokenRef::Bytes(t)
        } else {
            TokenRef::Text(std::str::from_utf8(t).expect("stored from a str"))
        }
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("push_id", &self.push_id())
            .field("owner", &self.owner())
            .field("provider", &self.provider())
            .field("environment", &self.environment())
            .field("app_id", &self.app_id())
            .field("token", &self.token())
            .finish()
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
mod tests {
    use super::*;

    fn binding(user: &str, token: &str) -> Binding {
        Binding {
            user_id: user.into(),
            provider: ProviderKind::Fcm,
            environment: Environment::Production,
            app_id: None,
            token: Token::Text(token.into()),
        }
    }

    #[test]
    fn written_wire_form_matches_to_wire() {
        let bytes: Vec<u8> = (0..=255u8).chain([0x0f, 0xf0, 0xab]).collect();
        for t in [
            TokenRef::Bytes(&bytes),
            TokenRef::Bytes(&[]),
            TokenRef::Text("abc:DEF-_"),
        ] {
            let mut out = bytes::BytesMut::new();
            t.write_wire(&mut out);
            assert_eq!(&out[..], t.to_wire().as_bytes());
            assert_eq!(out.len(), t.wire_len());
        }
    }

    #[test]
    fn device_records_round_trip_every_field() {
        let b = Binding {
            user_id: "u".into(),
            provider: ProviderKind::ApnsVoip,
            environment: Environment::Sandbox,
            app_id: Some("com.example.chat".into()),
            token: Token::Bytes(vec![0xab; 32].into()),
        };
        let d = Device::new("push-1", 77, &b);
        assert_eq!(d.push_id(), "push-1");
        assert_eq!(d.owner(), 77);
        assert_eq!(d.provider(), ProviderKind::ApnsVoip);
        assert_eq!(d.environment(), Environment::Sandbox);
        assert_eq!(d.app_id(), Some("com.example.chat"));
        assert_eq!(d.token().to_owned(), b.token);
        assert_eq!(d.token().to_wire(), "ab".repeat(32));
        let plain = Device::new("p", u32::MAX, &binding("u", "tok:1"));
        assert_eq!(plain.owner(), u32::MAX);
        assert_eq!(plain.app_id(), None);
        assert_eq!(plain.provider(), ProviderKind::Fcm);
        assert_eq!(plain.environment(), Environment::Production);
        assert_eq!(plain.token(), TokenRef::Text("tok:1"));
        for p in ProviderKind::ALL {
            let d = Device::new(
                "x",
                0,
                &Binding {
                    provider: p,
                    ..binding("u", "t")
                },
            );
            assert_eq!(d.provider(), p);
        }
    }

    #[test]
    fn rebinding_moves_the_push_id() {
        let r = Registry::default();
        let d1: Arc<str> = "d1".into();
        assert_eq!(r.bind(&d1, 1, &binding("a", "t")), None);
        assert_eq!(r.bind(&d1, 2, &binding("b", "t")), Some(1));
        assert!(r.devices_of(1).is_empty());
        assert!(r.hints.is_marked(1), "user 1 lost its last device");
        assert_eq!(r.devices_of(2).len(), 1);
        assert_eq!(r.len(), 1);
        assert_eq!(r.lookup("d1").map(|(u, _)| u), Some(2));
    }

    #[test]
    fn dead_token_removal_spares_a_rebound_token() {
        let r = Registry::default();
        let d1: Arc<str> = "d1".into();
        r.bind(&d1, 1, &binding("a", "old"));
        r.bind(&d1, 1, &binding("a", "new"));
        assert_eq!(r.unbind("d1", Some(&Token::Text("old".into()))), None);
        assert_eq!(r.len(), 1);
        assert_eq!(r.unbind("d1", Some(&Token::Text("new".into()))), Some(1));
        assert!(r.is_empty());
    }

    #[test]
    fn remove_user_removes_all_devices() {
        let r = Registry::default();
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            r.bind(
                &Arc::from(*id),
                if i < 2 { 5 } else { 6 },
                &binding("x", "t"),
            );
        }
        assert!(r.has_devices(5));
        assert_eq!(r.remove_user(5), 2);
        assert!(!r.has_devices(5));
        assert!(r.hints.is_marked(5), "the sweep will look at user 5");
        assert!(!r.hints.is_marked(6));
        assert!(r.has_devices(6));
        assert_eq!(r.len(), 1);
        assert_eq!(r.remove_user(5), 0);
        assert_eq!(r.remove_user(3_000_000), 0);
        assert!(
            r.devices.segments[3_000_000 / SEGMENT_USERS]
                .get()
                .is_none(),
            "removing a user without devices allocates nothing"
        );
    }
}
