//! The work chunk codec ([`super::work`]): a chunk is self-contained — the push
//! content and options, the kind (message, or call with its inviter and timeout), the
//! expiry the accepting engine computed, and per target the device record (push id,
//! provider, environment, app, token, owner user id) and its badge total when
//! `badge_increment` is used. Format (little endian, strings `len: u32 | UTF-8`):
//! `version: u8 | space | id | kind: u8 (0 message, 1 call) [inviter | timeout_s: u64 |
//! ends_at: u64] | ttl_s: u64 | expires_at: u64 | content | badges: u8 | count: u32 |
//! targets`. A chunk holds at most [`CHUNK_TARGETS`] targets and about [`CHUNK_BYTES`];
//! a call is never split (its invitees are bounded) so one engine holds its
//! invitations for a cancel. The same primitives ([`Reader`], [`put_str`],
//! [`put_content`]) encode the cluster's core-NATS requests and replies.

use std::sync::Arc;

use super::work::{Handoff, WorkKind, CHUNK_BYTES, CHUNK_TARGETS};
use crate::fanout::dedup::Space;
use crate::fanout::plan::{Lane, Targets};
use crate::providers::{Content, Priority};
use crate::state::ids::Pin;
use crate::state::{Device, Environment, ProviderKind, TokenRef};

const VERSION: u8 = 1;

impl Handoff {
    /// The encoded chunks, of `max_targets` targets at most.
    pub(super) fn chunks(&self, max_targets: usize) -> Vec<bytes::Bytes> {
        let badges = self.targets.badges.iter().any(|b| !b.is_empty());
        let mut head = Vec::with_capacity(256);
        head.push(VERSION);
        put_str(
            &mut head,
            match self.space {
                Space::Message => "m",
                Space::Call => "c",
            },
        );
        put_str(&mut head, &self.id);
        match &self.kind {
            WorkKind::Message => head.push(0),
            WorkKind::Call {
                inviter_id,
                timeout_s,
                ends_at,
            } => {
                head.push(1);
                put_str(&mut head, inviter_id);
                head.extend_from_slice(&timeout_s.to_le_bytes());
                head.extend_from_slice(&ends_at.to_le_bytes());
            }
        }
        head.extend_from_slice(&self.ttl_s.to_le_bytes());
        head.extend_from_slice(&self.expires_at.to_le_bytes());
        put_content(&mut head, &self.content);
        head.push(u8::from(badges));
        let split = self.space == Space::Message;
        let mut out = Vec::new();
        let mut body = Vec::new();
        let mut n = 0u32;
        let flush = |body: &mut Vec<u8>, n: &mut u32, out: &mut Vec<bytes::Bytes>| {
            let mut c = Vec::with_capacity(head.len() + 4 + body.len());
            c.extend_from_slice(&head);
            c.extend_from_slice(&n.to_le_bytes());
            c.append(body);
            out.push(c.into());
            *n = 0;
        };
        for lane in Lane::ALL {
            let l = lane as usize;
            for (i, d) in self.targets.lanes[l].iter().enumerate() {
                put_device(&mut body, d, &self.owners[l][i]);
                if badges {
                    let total = self.targets.badges[l].get(i).copied().unwrap_or(0);
                    body.extend_from_slice(&total.to_le_bytes());
                }
                n += 1;
                if split && (n as usize >= max_targets || body.len() >= CHUNK_BYTES) {
                    flush(&mut body, &mut n, &mut out);
                }
            }
        }
        if n > 0 {
            flush(&mut body, &mut n, &mut out);
        }
        out
    }
}

/// One pulled chunk, decoded.
#[derive(Debug)]
pub struct Chunk {
    pub space: Space,
    pub id: Arc<str>,
    pub kind: WorkKind,
    pub ttl_s: u64,
    pub expires_at: u64,
    pub content: Content,
    /// Each target with its owner's user id and (with `badge_increment`) badge total.
    pub targets: Vec<(Device, Arc<str>, Option<u32>)>,
}

impl Chunk {
    /// This engine's [`Targets`] of the chunk: owners by this engine's user indexes
    /// (interned when the user is not known here yet: the state stream may lag the
    /// work stream), badge totals beside their devices.
    pub fn to_targets(&self, users: &Pin<'_>) -> Targets {
        let mut t = Targets::default();
        let badges = self.targets.iter().any(|(_, _, b)| b.is_some());
        for (d, owner, badge) in &self.targets {
            let idx = users.get(owner).unwrap_or_else(|| users.intern(owner));
            let device = Device::from_parts(
                d.push_id(),
                idx,
                d.provider(),
                d.environment(),
                d.app_id(),
                d.token(),
            );
            let lane = d.provider().lane() as usize;
            t.lanes[lane].push(device);
            if badges {
                t.badges[lane].push(badge.unwrap_or(0));
            }
        }
        t
    }

    pub fn decode(b: &[u8]) -> Result<Chunk, &'static str> {
        let mut r = Reader { b };
        if r.u8()? != VERSION {
            return Err("unknown chunk version");
        }
        let space = match r.str()? {
            "m" => Space::Message,
            "c" => Space::Call,
            _ => return Err("unknown chunk space"),
        };
        let id: Arc<str> = r.str()?.into();
        let kind = match r.u8()? {
            0 => WorkKind::Message,
            1 => WorkKind::Call {
                inviter_id: r.str()?.into(),
                timeout_s: r.u64()?,
                ends_at: r.u64()?,
            },
            _ => return Err("unknown chunk kind"),
        };
        let ttl_s = r.u64()?;
        let expires_at = r.u64()?;
        let content = take_content(&mut r)?;
        let badges = r.u8()? == 1;
        let n = r.u32()? as usize;
        if n > CHUNK_TARGETS.max(r.b.len() / 8) {
            return Err("target count past the chunk end");
        }
        let mut targets = Vec::with_capacity(n);
        for _ in 0..n {
            let push_id = r.str()?;
            let provider = ProviderKind::parse(r.str()?).ok_or("unknown provider")?;
            let environment = match r.u8()? {
                0 => Environment::Production,
                _ => Environment::Sandbox,
            };
            let app = r.opt_str()?;
            let token = match r.u8()? {
                0 => TokenRef::Bytes(r.bytes()?),
                _ => TokenRef::Text(r.str()?),
            };
            if push_id.len() > crate::state::ids::MAX_ID_BYTES
                || app.is_some_and(|a| a.len() > crate::state::ids::MAX_ID_BYTES)
            {
                return Err("identifier longer than the API allows");
            }
            let owner: Arc<str> = r.str()?.into();
            let device = Device::from_parts(push_id, 0, provider, environment, app, token);
            let badge = if badges { Some(r.u32()?) } else { None };
            targets.push((device, owner, badge));
        }
        if !r.b.is_empty() {
            return Err("trailing bytes");
        }
        Ok(Chunk {
            space,
            id,
            kind,
            ttl_s,
            expires_at,
            content,
            targets,
        })
    }
}

pub(super) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
        None => out.push(0),
    }
}

fn put_opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_le_bytes());
        }
        None => out.push(0),
    }
}

pub(super) fn put_content(out: &mut Vec<u8>, c: &Content) {
    put_opt_str(out, c.title.as_deref());
    put_opt_str(out, c.content.as_deref());
    put_opt_str(out, c.payload.as_deref());
    put_opt_str(out, c.resources_id.as_deref());
    put_opt_u64(out, c.badge.map(u64::from));
    put_opt_u64(out, c.badge_increment.map(u64::from));
    put_opt_str(out, c.sound.as_deref());
    out.push(u8::from(c.silent));
    put_opt_str(out, c.collapse_id.as_deref());
    put_opt_u64(out, c.ttl_s);
    out.push(match c.priority {
        None => 0,
        Some(Priority::High) => 1,
        Some(Priority::Normal) => 2,
    });
}

fn put_device(out: &mut Vec<u8>, d: &Device, owner: &str) {
    put_str(out, d.push_id());
    put_str(out, d.provider().as_str());
    out.push(match d.environment() {
        Environment::Production => 0,
        Environment::Sandbox => 1,
    });
    put_opt_str(out, d.app_id());
    match d.token() {
        TokenRef::Bytes(b) => {
            out.push(0);
            put_bytes(out, b);
        }
        TokenRef::Text(t) => {
            out.push(1);
            put_str(out, t);
        }
    }
    put_str(out, owner);
}

pub(super) fn take_content(r: &mut Reader<'_>) -> Result<Content, &'static str> {
    let u32_of = |v: Option<u64>| v.map(|v| u32::try_from(v).map_err(|_| "badge past u32"));
    Ok(Content {
        title: r.opt_str()?.map(Into::into),
        content: r.opt_str()?.map(Into::into),
        payload: r.opt_str()?.map(Into::into),
        resources_id: r.opt_str()?.map(Into::into),
        badge: u32_of(r.opt_u64()?).transpose()?,
        badge_increment: u32_of(r.opt_u64()?).transpose()?,
        sound: r.opt_str()?.map(Into::into),
        silent: r.u8()? == 1,
        collapse_id: r.opt_str()?.map(Into::into),
        ttl_s: r.opt_u64()?,
        priority: match r.u8()? {
            0 => None,
            1 => Some(Priority::High),
            2 => Some(Priority::Normal),
            _ => return Err("unknown priority"),
        },
    })
}

pub(super) struct Reader<'a> {
    pub(super) b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.b.len() < n {
            return Err("chunk ends early");
        }
        let (head, tail) = self.b.split_at(n);
        self.b = tail;
        Ok(head)
    }

    pub(super) fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    pub(super) fn u64(&mut self) -> Result<u64, &'static str> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn bytes(&mut self) -> Result<&'a [u8], &'static str> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    pub(super) fn str(&mut self) -> Result<&'a str, &'static str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| "string is not UTF-8")
    }

    fn opt_str(&mut self) -> Result<Option<&'a str>, &'static str> {
        match self.u8()? {
            0 => Ok(None),
            _ => self.str().map(Some),
        }
    }

    fn opt_u64(&mut self) -> Result<Option<u64>, &'static str> {
        match self.u8()? {
            0 => Ok(None),
            _ => self.u64().map(Some),
        }
    }
}

/// Targets per chunk with lanes of `queue_capacity`: [`CHUNK_TARGETS`], or fewer so
#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ids::Interner;
    use crate::state::{Binding, Token};

    fn device(users: &Pin<'_>, push_id: &str, user: &str, provider: ProviderKind) -> Device {
        let b = Binding {
            user_id: user.into(),
            provider,
            environment: Environment::Sandbox,
            app_id: Some("app".into()),
            token: Token::Text(format!("tok-{push_id}").into()),
        };
        Device::new(push_id, users.intern(user), &b)
    }

    #[test]
    fn a_handoff_is_cut_into_chunks_that_decode_to_the_same_targets() {
        let interner = Interner::new();
        let users = interner.pin();
        let mut targets = Targets::default();
        let lane = ProviderKind::Fcm.lane() as usize;
        for i in 0..2_500 {
            targets.lanes[lane].push(device(
                &users,
                &format!("p{i}"),
                &format!("u{i}"),
                ProviderKind::Fcm,
            ));
            targets.badges[lane].push(i as u32);
        }
        let content = Content {
            title: Some("t".into()),
            badge_increment: Some(1),
            ttl_s: Some(60),
            priority: Some(Priority::Normal),
            ..Content::default()
        };
        let h = Handoff::new(
            Space::Message,
            "m-1".into(),
            WorkKind::Message,
            &content,
            (60, 1_000),
            targets,
            None,
            &users,
        );
        let chunks = h.chunks(CHUNK_TARGETS);
        assert_eq!(chunks.len(), 3);
        let decoded: Vec<Chunk> = chunks
            .iter()
            .map(|c| Chunk::decode(c).expect("decodes"))
            .collect();
        assert_eq!(
            decoded.iter().map(|c| c.targets.len()).sum::<usize>(),
            2_500
        );
        let c = &decoded[2];
        assert_eq!((c.ttl_s, c.expires_at, &*c.id), (60, 1_000, "m-1"));
        assert_eq!(c.content.badge_increment, Some(1));
        assert_eq!(c.content.priority, Some(Priority::Normal));
        let (d, owner, badge) = &c.targets[0];
        assert_eq!(
            (d.push_id(), &**owner, *badge),
            ("p2000", "u2000", Some(2_000))
        );
        assert_eq!(d.app_id(), Some("app"));
        assert_eq!(d.token().to_wire(), "tok-p2000");
        for cut in [1, 10, chunks[0].len() - 1] {
            assert!(Chunk::decode(&chunks[0][..cut]).is_err());
        }
    }
}
