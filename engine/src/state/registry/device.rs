//! The device record: everything one push needs about a device, in one allocation.
//!
//! A [`Device`] is a thin `Arc` over a 9-byte header (provider, environment, owner and
//! lengths) and the push ID, app ID and token bytes, so fan-out clones it with one
//! atomic increment; [`Token`] / [`TokenRef`] keep APNs hex tokens as their bytes.

use std::fmt;
use std::sync::Arc;

use smallvec::SmallVec;

use super::{Environment, ProviderKind};
use crate::state::ids::UserIdx;

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

    pub(super) fn matches(&self, t: &Token) -> bool {
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
    pub(super) fn push_id_bytes(&self) -> &[u8] {
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
