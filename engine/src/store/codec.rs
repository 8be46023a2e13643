//! The write-ahead log's record format.
//!
//! A frame is `len: u32 LE | crc: u32 LE | payload`, and a payload is
//! `version: u8 | seq: u64 LE | mutation`. In format 2 (written since issue 10) `crc` is
//! the CRC32C of the length bytes followed by the payload, so a flipped bit in a length
//! field fails the checksum instead of silently re-framing the rest of the log. Format 1
//! frames (`crc` over the payload only, version byte 1) are still read: recovery
//! replays them and the engine then writes format 2 into a new segment, so an old log
//! is converted at the first snapshot, which deletes the old segments. A mutation is a tag byte and its fields;
//! strings are `len: u32 LE | UTF-8 bytes`, a token is a kind byte (0 = bytes,
//! 1 = text) and its bytes, and a provider is stored by its API name, so reordering
//! the in-memory enum never changes the files. Tags 7 (notification status: user,
//! conversation type byte 0 = peer / 1 = group, conversation id, muted byte) and 8
//! (badge set: user, count u32 LE) came with API 1.1; a build before them refuses a
//! log holding them as "unknown mutation tag" rather than misreading it. Tag 9 (badge
//! add: count u32, user count u32, each user) came with cluster mode's shared fan-out;
//! only the cluster's state stream holds it, never a single engine's log.

use std::sync::Arc;

use crate::state::ids::MAX_ID_BYTES;
use crate::state::notify::Kind;
use crate::state::{Binding, Environment, Mutation, ProviderKind, Token};

/// Format version written in every record.
pub const VERSION: u8 = 2;
/// The format before the checksum covered the length; read, never written.
pub const VERSION_1: u8 = 1;
/// Bytes of `len` + `crc`.
pub const FRAME_HEADER: usize = 8;
/// No record is larger than this (bounded by the API's body limit and id rules).
pub const MAX_RECORD: usize = 64 << 20;
/// No payload is shorter than this: version, sequence number, mutation tag.
pub const MIN_RECORD: usize = 1 + 8 + 1;

const BIND: u8 = 1;
const UNBIND: u8 = 2;
const REMOVE_DEAD: u8 = 3;
const REMOVE_USER: u8 = 4;
const GROUP_UPDATE: u8 = 5;
const GROUP_DELETE: u8 = 6;
const SET_NOTIFICATION: u8 = 7;
const SET_BADGE: u8 = 8;
const ADD_BADGES: u8 = 9;

/// What an environment byte means (the encoder writes the same numbers).
const ENVIRONMENTS: [Environment; 2] = [Environment::Production, Environment::Sandbox];
/// What a conversation type byte means.
const KINDS: [Kind; 2] = [Kind::Peer, Kind::Group];
/// What a flag byte means.
const FLAG: [bool; 2] = [false, true];

/// Append one framed record for `m` with sequence number `seq` to `out`.
pub fn encode(seq: u64, m: &Mutation, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER]);
    out.push(VERSION);
    out.extend_from_slice(&seq.to_le_bytes());
    match m {
        Mutation::Bind { push_id, binding } => {
            out.push(BIND);
            put_str(out, push_id);
            put_str(out, &binding.user_id);
            put_str(out, binding.provider.as_str());
            out.push(match binding.environment {
                Environment::Production => 0,
                Environment::Sandbox => 1,
            });
            match &binding.app_id {
                Some(a) => {
                    out.push(1);
                    put_str(out, a);
                }
                None => out.push(0),
            }
            put_token(out, &binding.token);
        }
        Mutation::Unbind { push_id } => {
            out.push(UNBIND);
            put_str(out, push_id);
        }
        Mutation::RemoveDeadToken { push_id, token } => {
            out.push(REMOVE_DEAD);
            put_str(out, push_id);
            put_token(out, token);
        }
        Mutation::RemoveUser { user_id } => {
            out.push(REMOVE_USER);
            put_str(out, user_id);
        }
        Mutation::GroupUpdate {
            group_id,
            add,
            remove,
        } => {
            out.push(GROUP_UPDATE);
            put_str(out, group_id);
            for list in [add, remove] {
                out.extend_from_slice(&(list.len() as u32).to_le_bytes());
                for u in list {
                    put_str(out, u);
                }
            }
        }
        Mutation::GroupDelete { group_id } => {
            out.push(GROUP_DELETE);
            put_str(out, group_id);
        }
        Mutation::SetNotification {
            user_id,
            kind,
            conversation_id,
            muted,
        } => {
            out.push(SET_NOTIFICATION);
            put_str(out, user_id);
            out.push(match kind {
                Kind::Peer => 0,
                Kind::Group => 1,
            });
            put_str(out, conversation_id);
            out.push(u8::from(*muted));
        }
        Mutation::SetBadge { user_id, count } => {
            out.push(SET_BADGE);
            put_str(out, user_id);
            out.extend_from_slice(&count.to_le_bytes());
        }
        Mutation::AddBadges { users, n } => {
            out.push(ADD_BADGES);
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&(users.len() as u32).to_le_bytes());
            for u in users {
                put_str(out, u);
            }
        }
    }
    let len = ((out.len() - start - FRAME_HEADER) as u32).to_le_bytes();
    let crc = checksum(len, &out[start + FRAME_HEADER..]);
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The format-2 frame checksum: over the length field and the payload.
fn checksum(len: [u8; 4], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len), payload)
}

/// Why the bytes at some offset are not an intact frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    #[error("record header cut short")]
    ShortHeader,
    #[error("record length {0} is impossible")]
    ImpossibleLength(u32),
    #[error("record cut short: {missing} of its bytes are missing")]
    Short { missing: usize },
    #[error("record checksum mismatch")]
    Checksum,
}

/// Read the frame at the start of `rest`: its payload and the frame's whole length.
/// Never panics and never reads past `rest`, whatever the bytes.
pub fn frame(rest: &[u8]) -> Result<(&[u8], usize), Damage> {
    let Some((header, body)) = rest.split_first_chunk::<FRAME_HEADER>() else {
        return Err(Damage::ShortHeader);
    };
    let len_bytes: [u8; 4] = header[0..4].try_into().expect("4 of 8 header bytes");
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 of 8 header bytes"));
    let len = u32::from_le_bytes(len_bytes);
    if !(MIN_RECORD..=MAX_RECORD).contains(&(len as usize)) {
        return Err(Damage::ImpossibleLength(len));
    }
    let Some(payload) = body.get(..len as usize) else {
        return Err(Damage::Short {
            missing: len as usize - body.len(),
        });
    };
    let intact = checksum(len_bytes, payload) == crc
        || (payload[0] == VERSION_1 && crc32c::crc32c(payload) == crc);
    if !intact {
        return Err(Damage::Checksum);
    }
    Ok((payload, FRAME_HEADER + len as usize))
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_token(out: &mut Vec<u8>, t: &Token) {
    let (tag, bytes) = match t {
        Token::Bytes(b) => (0, &b[..]),
        Token::Text(s) => (1, s.as_bytes()),
    };
    out.push(tag);
    put_bytes(out, bytes);
}

/// Why a payload could not be decoded (its CRC was fine: a format bug or version skew).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed record: {0}")]
pub struct Malformed(pub &'static str);

/// Decode a payload (the bytes after the frame header) into `(seq, mutation)`.
pub fn decode(payload: &[u8]) -> Result<(u64, Mutation), Malformed> {
    let mut r = Reader { b: payload };
    if !matches!(r.u8()?, VERSION | VERSION_1) {
        return Err(Malformed("unknown record version"));
    }
    let seq = u64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
    let m = match r.u8()? {
        BIND => Mutation::Bind {
            push_id: r.arc_str()?,
            binding: r.binding()?,
        },
        UNBIND => Mutation::Unbind {
            push_id: r.arc_str()?,
        },
        REMOVE_DEAD => Mutation::RemoveDeadToken {
            push_id: r.arc_str()?,
            token: r.token()?,
        },
        REMOVE_USER => Mutation::RemoveUser {
            user_id: r.arc_str()?,
        },
        GROUP_UPDATE => {
            let group_id = r.arc_str()?;
            let mut lists = [Vec::new(), Vec::new()];
            for list in &mut lists {
                let n = r.u32()? as usize;
                if n > r.b.len() / 4 {
                    return Err(Malformed("member count past the record end"));
                }
                list.reserve(n);
                for _ in 0..n {
                    list.push(r.arc_str()?);
                }
            }
            let [add, remove] = lists;
            Mutation::GroupUpdate {
                group_id,
                add,
                remove,
            }
        }
        GROUP_DELETE => Mutation::GroupDelete {
            group_id: r.arc_str()?,
        },
        SET_NOTIFICATION => Mutation::SetNotification {
            user_id: r.arc_str()?,
            kind: r.one_of(KINDS, "unknown conversation type")?,
            conversation_id: r.arc_str()?,
            muted: r.one_of(FLAG, "bad muted flag")?,
        },
        SET_BADGE => Mutation::SetBadge {
            user_id: r.arc_str()?,
            count: r.u32()?,
        },
        ADD_BADGES => {
            let n = r.u32()?;
            let count = r.u32()? as usize;
            if count > r.b.len() / 4 {
                return Err(Malformed("user count past the record end"));
            }
            let mut users = Vec::with_capacity(count);
            for _ in 0..count {
                users.push(r.arc_str()?);
            }
            Mutation::AddBadges { users, n }
        }
        _ => return Err(Malformed("unknown mutation tag")),
    };
    if !r.b.is_empty() {
        return Err(Malformed("trailing bytes"));
    }
    Ok((seq, m))
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.b.len() < n {
            return Err(Malformed("record ends early"));
        }
        let (head, tail) = self.b.split_at(n);
        self.b = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    /// A byte that indexes `values` (the table that says what each byte means).
    fn one_of<T: Copy, const N: usize>(
        &mut self,
        values: [T; N],
        what: &'static str,
    ) -> Result<T, Malformed> {
        let i = usize::from(self.u8()?);
        values.get(i).copied().ok_or(Malformed(what))
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn str(&mut self) -> Result<&'a str, Malformed> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Malformed("string is not UTF-8"))
    }

    /// An identifier: at most [`MAX_ID_BYTES`] (what the API accepts and a device
    /// record can hold).
    fn arc_str(&mut self) -> Result<Arc<str>, Malformed> {
        let s = self.str()?;
        if s.len() > MAX_ID_BYTES {
            return Err(Malformed("identifier longer than the API allows"));
        }
        Ok(Arc::from(s))
    }

    /// A binding as [`encode`] writes one: user, provider, environment, app, token.
    fn binding(&mut self) -> Result<Binding, Malformed> {
        let user_id = self.arc_str()?;
        let provider = ProviderKind::parse(self.str()?).ok_or(Malformed("unknown provider"))?;
        let environment = self.one_of(ENVIRONMENTS, "unknown environment")?;
        let app_id = if self.one_of(FLAG, "bad app_id flag")? {
            Some(self.arc_str()?)
        } else {
            None
        };
        Ok(Binding {
            user_id,
            provider,
            environment,
            app_id,
            token: self.token()?,
        })
    }

    fn token(&mut self) -> Result<Token, Malformed> {
        match self.u8()? {
            0 => Ok(Token::Bytes(self.bytes()?.into())),
            1 => Ok(Token::Text(self.str()?.into())),
            _ => Err(Malformed("unknown token kind")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Mutation> {
        vec![
            Mutation::Bind {
                push_id: "d1".into(),
                binding: Binding {
                    user_id: "ü1".into(),
                    provider: ProviderKind::ApnsVoip,
                    environment: Environment::Sandbox,
                    app_id: Some("com.x".into()),
                    token: Token::Bytes(vec![1, 2, 255].into()),
                },
            },
            Mutation::Bind {
                push_id: "d2".into(),
                binding: Binding {
                    user_id: "u2".into(),
                    provider: ProviderKind::Fcm,
                    environment: Environment::Production,
                    app_id: None,
                    token: Token::Text("tok:1".into()),
                },
            },
            Mutation::Unbind {
                push_id: "d1".into(),
            },
            Mutation::RemoveDeadToken {
                push_id: "d2".into(),
                token: Token::Text("tok:1".into()),
            },
            Mutation::RemoveUser {
                user_id: "u2".into(),
            },
            Mutation::GroupUpdate {
                group_id: "g".into(),
                add: vec!["a".into(), "b".into()],
                remove: vec!["c".into()],
            },
            Mutation::GroupDelete {
                group_id: "g".into(),
            },
            Mutation::SetNotification {
                user_id: "u1".into(),
                kind: Kind::Peer,
                conversation_id: "u0".into(),
                muted: true,
            },
            Mutation::SetNotification {
                user_id: "u1".into(),
                kind: Kind::Group,
                conversation_id: "g".into(),
                muted: false,
            },
            Mutation::SetBadge {
                user_id: "u1".into(),
                count: 0xdead_beef,
            },
            Mutation::AddBadges {
                users: vec!["u1".into(), "u2".into(), "u1".into()],
                n: 3,
            },
        ]
    }

    #[test]
    fn every_mutation_round_trips() {
        for (i, m) in samples().into_iter().enumerate() {
            let mut buf = Vec::new();
            encode(i as u64 + 7, &m, &mut buf);
            let len = u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize;
            assert_eq!(len + FRAME_HEADER, buf.len());
            let (payload, framed) = frame(&buf).unwrap();
            assert_eq!(framed, buf.len());
            assert_eq!(decode(payload).unwrap(), (i as u64 + 7, m));
        }
    }

    #[test]
    fn the_checksum_covers_the_length_field() {
        let mut buf = Vec::new();
        for (i, m) in samples().into_iter().enumerate() {
            encode(i as u64 + 1, &m, &mut buf);
        }
        // Every single-bit flip in the first frame's length is caught by the checksum
        // (or the length bounds), never read as a different but valid frame.
        for bit in 0..32 {
            let mut damaged = buf.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(frame(&damaged).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn format_1_frames_still_read() {
        let mut buf = Vec::new();
        encode(5, &samples()[1], &mut buf);
        buf[FRAME_HEADER] = VERSION_1;
        let crc = crc32c::crc32c(&buf[FRAME_HEADER..]);
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        let (payload, _) = frame(&buf).unwrap();
        assert_eq!(decode(payload).unwrap(), (5, samples()[1].clone()));
    }

    #[test]
    fn truncated_payloads_are_malformed_not_panics() {
        for m in samples() {
            let mut buf = Vec::new();
            encode(1, &m, &mut buf);
            for cut in 8..buf.len() - 1 {
                assert!(decode(&buf[8..cut]).is_err());
            }
        }
    }
}
