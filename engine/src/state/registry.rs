//! Push-ID registry: which device tokens belong to which user.
//!
//! Two sharded maps:
//! - `owners`: push ID → owning [`UserIdx`] (a push ID belongs to at most one user);
//! - `devices`: user → that user's devices, each an `Arc<Device>` holding everything a
//!   push needs (provider, environment, app, token). Fan-out does one `u32`-keyed lookup
//!   per offline recipient and never hashes a string.
//!
//! Lock order is always `owners` entry → `devices` entry, so concurrent binds, moves and
//! removals of the same push ID serialize on its `owners` entry and cannot deadlock.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use smallvec::SmallVec;

use super::ids::UserIdx;

/// The vendor channel a binding is pushed through (`provider` in the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProviderKind {
    Apns,
    ApnsVoip,
    Fcm,
    Huawei,
    Xiaomi,
    Oppo,
    Vivo,
    Webpush,
    /// Honor Push (newer Honor phones take only Honor Push). Added last so the other
    /// discriminants keep their values.
    Honor,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 9] = [
        Self::Apns,
        Self::ApnsVoip,
        Self::Fcm,
        Self::Huawei,
        Self::Xiaomi,
        Self::Oppo,
        Self::Vivo,
        Self::Webpush,
        Self::Honor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Apns => "apns",
            Self::ApnsVoip => "apns_voip",
            Self::Fcm => "fcm",
            Self::Huawei => "huawei",
            Self::Xiaomi => "xiaomi",
            Self::Oppo => "oppo",
            Self::Vivo => "vivo",
            Self::Webpush => "webpush",
            Self::Honor => "honor",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

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

/// One bound device as fan-out sees it.
#[derive(Debug, PartialEq, Eq)]
pub struct Device {
    pub push_id: Arc<str>,
    pub provider: ProviderKind,
    pub environment: Environment,
    pub app_id: Option<Arc<str>>,
    pub token: Token,
}

type DeviceList = SmallVec<[Arc<Device>; 2]>;

pub struct Registry {
    owners: DashMap<Arc<str>, UserIdx>,
    devices: DashMap<UserIdx, DeviceList>,
    count: AtomicUsize,
}

impl Registry {
    pub fn new() -> Self {
        Self {
            owners: DashMap::new(),
            devices: DashMap::new(),
            count: AtomicUsize::new(0),
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
    pub fn bind(&self, push_id: &Arc<str>, user: UserIdx, b: &Binding) -> Option<UserIdx> {
        let device = Arc::new(Device {
            push_id: push_id.clone(),
            provider: b.provider,
            environment: b.environment,
            app_id: b.app_id.clone(),
            token: b.token.clone(),
        });
        match self.owners.entry(push_id.clone()) {
            Entry::Occupied(mut e) => {
                let prev = *e.get();
                self.detach(prev, push_id);
                self.attach(user, device);
                e.insert(user);
                Some(prev)
            }
            Entry::Vacant(e) => {
                self.attach(user, device);
                e.insert(user);
                self.count.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Remove `push_id`; when `only_token` is given, only if it still holds that token
    /// (a dead-token report must not remove a binding re-registered since).
    pub fn unbind(&self, push_id: &str, only_token: Option<&Token>) -> Option<UserIdx> {
        let Entry::Occupied(e) = self.owners.entry(Arc::from(push_id)) else {
            return None;
        };
        let owner = *e.get();
        if let Some(token) = only_token {
            let same = self.devices.get(&owner).is_some_and(|ds| {
                ds.iter()
                    .any(|d| &*d.push_id == push_id && d.token == *token)
            });
            if !same {
                return None;
            }
        }
        self.detach(owner, push_id);
        e.remove();
        self.count.fetch_sub(1, Ordering::Relaxed);
        Some(owner)
    }

    /// Remove every binding of `user`; returns how many.
    pub fn remove_user(&self, user: UserIdx) -> usize {
        let Some((_, list)) = self.devices.remove(&user) else {
            return 0;
        };
        let mut removed = 0;
        for d in list {
            if self
                .owners
                .remove_if(&d.push_id, |_, owner| *owner == user)
                .is_some()
            {
                removed += 1;
                self.count.fetch_sub(1, Ordering::Relaxed);
            }
        }
        removed
    }

    fn attach(&self, user: UserIdx, device: Arc<Device>) {
        let mut list = self.devices.entry(user).or_default();
        match list.iter_mut().find(|d| d.push_id == device.push_id) {
            Some(slot) => *slot = device,
            None => list.push(device),
        }
    }

    fn detach(&self, user: UserIdx, push_id: &str) {
        if let Entry::Occupied(mut e) = self.devices.entry(user) {
            e.get_mut().retain(|d| &*d.push_id != push_id);
            if e.get().is_empty() {
                e.remove();
            }
        }
    }

    /// Call `f` for each device of `user` (fan-out's lookup: one `u32` hash).
    #[inline]
    pub fn for_each_device(&self, user: UserIdx, mut f: impl FnMut(&Arc<Device>)) {
        if let Some(list) = self.devices.get(&user) {
            list.iter().for_each(&mut f);
        }
    }

    /// Visit every binding, one user's device list at a time (each list is read under
    /// its shard lock, so it is consistent in itself; the whole walk is not atomic).
    pub fn for_each(&self, mut f: impl FnMut(UserIdx, &Device)) {
        for entry in self.devices.iter() {
            let user = *entry.key();
            for d in entry.value() {
                f(user, d);
            }
        }
    }

    /// A snapshot of the devices of `user`.
    pub fn devices_of(&self, user: UserIdx) -> Vec<Arc<Device>> {
        self.devices
            .get(&user)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The owner and device behind a push ID.
    pub fn lookup(&self, push_id: &str) -> Option<(UserIdx, Arc<Device>)> {
        let owner = *self.owners.get(push_id)?;
        let device = self
            .devices
            .get(&owner)?
            .iter()
            .find(|d| &*d.push_id == push_id)?
            .clone();
        Some((owner, device))
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
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
    fn rebinding_moves_the_push_id() {
        let r = Registry::new();
        let d1: Arc<str> = "d1".into();
        assert_eq!(r.bind(&d1, 1, &binding("a", "t")), None);
        assert_eq!(r.bind(&d1, 2, &binding("b", "t")), Some(1));
        assert!(r.devices_of(1).is_empty());
        assert_eq!(r.devices_of(2).len(), 1);
        assert_eq!(r.len(), 1);
        assert_eq!(r.lookup("d1").map(|(u, _)| u), Some(2));
    }

    #[test]
    fn dead_token_removal_spares_a_rebound_token() {
        let r = Registry::new();
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
        let r = Registry::new();
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            r.bind(
                &Arc::from(*id),
                if i < 2 { 5 } else { 6 },
                &binding("x", "t"),
            );
        }
        assert_eq!(r.remove_user(5), 2);
        assert_eq!(r.len(), 1);
        assert_eq!(r.remove_user(5), 0);
    }
}
