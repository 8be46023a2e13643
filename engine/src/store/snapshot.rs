//! Snapshots: the whole durable state in one rkyv file, read back zero-copy.
//!
//! Layout: a 64-byte header followed by the rkyv archive of an [`Image`]. The header
//! holds `magic` (0..8), the format version (8..12, u32 LE), the WAL sequence the
//! snapshot covers (16..24, u64 LE), the payload length (24..32), the payload's CRC32C
//! (32..36) and, since format 2, the CRC32C of bytes 0..60 (60..64): every header field
//! is checksummed, and the covered sequence must also equal the one in the file name, so
//! a damaged or edited header can neither make recovery skip log records nor pass for
//! another snapshot. Format 1 files (no header checksum) are still read, with the name
//! check. Since format 3 the payload is two archives: the [`Image`] of bindings and
//! groups (unchanged since format 1), padded to 16 bytes, then the [`Settings`] added
//! with API 1.1 (do-not-disturb, badge counters); the header's bytes 40..48 hold the
//! image archive's length. The header's payload length and checksum cover both, and
//! formats 1 and 2 (no settings) are still read. The image is columnar — every string table is one byte buffer plus end
//! offsets — so writing 10M bindings is a few large copies, not 10M allocations, and
//! reading it back is a pointer cast after validation.
//!
//! Files are `snapshot-<seq>.rkyv`, written to a temp file, fsynced, renamed, and the
//! directory fsynced. Recovery memory-maps the newest file that validates.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rkyv::rancor;

mod check;

use self::check::{check_settings, check_shape};
use super::Error;
use crate::state::notify::{Conversation, Kind};
use crate::state::registry::{Device, TokenRef};
use crate::state::{Environment, ProviderKind, State, UserIdx};

pub const MAGIC: &[u8; 8] = b"FANFSNAP";
pub const FORMAT_VERSION: u32 = 3;
/// The format before the header checksum; read, never written.
pub const FORMAT_VERSION_1: u32 = 1;
/// The format before the settings archive; read, never written.
pub const FORMAT_VERSION_2: u32 = 2;
/// Where the settings archive starts: the image archive's length, rounded up to this.
const SETTINGS_ALIGN: usize = 16;
pub const HEADER_LEN: usize = 64;
/// Where the header's own checksum sits (it covers the bytes before it).
const HEADER_CRC_AT: usize = HEADER_LEN - 4;

/// A list of strings as one buffer plus end offsets.
#[derive(rkyv::Archive, rkyv::Serialize, Default, Debug)]
pub struct Strings {
    pub bytes: Vec<u8>,
    pub ends: Vec<u64>,
}

impl Strings {
    fn push(&mut self, b: &[u8]) {
        self.bytes.extend_from_slice(b);
        self.ends.push(self.bytes.len() as u64);
    }
}

impl ArchivedStrings {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 {
            0
        } else {
            self.ends[i - 1].to_native() as usize
        };
        &self.bytes[start..self.ends[i].to_native() as usize]
    }
}

/// The durable state, columnar.
#[derive(rkyv::Archive, rkyv::Serialize, Default, Debug)]
pub struct Image {
    /// Image user index → user id (what `owners` and `members` refer to): exactly the
    /// users the bindings and groups name, densely numbered in the image's own order.
    pub users: Strings,
    /// Provider names by the codes used in `providers`.
    pub provider_names: Strings,
    /// App ids by the codes used in `apps` (code 0 = none, code k = entry k-1).
    pub app_names: Strings,
    pub push_ids: Strings,
    pub owners: Vec<u32>,
    pub providers: Vec<u8>,
    /// 0 = production, 1 = sandbox.
    pub environments: Vec<u8>,
    pub apps: Vec<u32>,
    pub tokens: Strings,
    /// 0 = bytes (hex-decoded APNs token), 1 = text.
    pub token_kinds: Vec<u8>,
    pub group_ids: Strings,
    /// End offset of each group's members in `members`.
    pub group_ends: Vec<u64>,
    pub members: Vec<u32>,
    /// Written as an archive of its own after this one (format 3), so the image's
    /// archived layout stays the one formats 1 and 2 have.
    #[rkyv(with = rkyv::with::Skip)]
    pub settings: Settings,
}

/// Per-user settings added with API 1.1; user indexes are the image's.
#[derive(rkyv::Archive, rkyv::Serialize, Default, Debug)]
pub struct Settings {
    /// Do-not-disturb: the user, the conversation type (0 = peer, 1 = group) and id
    /// of each mute.
    pub mute_users: Vec<u32>,
    pub mute_kinds: Vec<u8>,
    pub mute_ids: Strings,
    /// Non-zero badge counters: user and count.
    pub badge_users: Vec<u32>,
    pub badge_counts: Vec<u32>,
}

/// A loaded snapshot: its image, and its settings (absent before format 3).
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub image: &'a ArchivedImage,
    pub settings: Option<&'a ArchivedSettings>,
}

/// State user index → image user index, numbered in order of first sight.
#[derive(Default)]
struct Renumber {
    /// By state index: image index + 1, or 0 when not seen yet.
    to_image: Vec<u32>,
    /// By image index: the state index.
    order: Vec<UserIdx>,
}

impl Renumber {
    fn image_index(&mut self, user: UserIdx) -> u32 {
        let i = user as usize;
        if i >= self.to_image.len() {
            self.to_image.resize(i + 1, 0);
        }
        if self.to_image[i] == 0 {
            self.order.push(user);
            self.to_image[i] = self.order.len() as u32;
        }
        self.to_image[i] - 1
    }
}

impl Image {
    /// Walk `state` (writers keep going; see the store's module doc for why a fuzzy
    /// image plus WAL replay from the rotation point is exact). Only users a binding,
    /// a group, a mute or a badge count names are written, so ids that were only ever seen in passing
    /// (presence, messages, calls) never reach the disk.
    ///
    /// A pin is held for the whole walk: no user index is released or reused between
    /// reading it from a binding or a group and resolving its name at the end, so the
    /// image names each user the state named (see `state::ids`).
    pub fn capture(state: &State) -> Self {
        let users = state.users.pin();
        let mut renumber = Renumber::default();
        let mut img = Image::default();
        for p in ProviderKind::ALL {
            img.provider_names.push(p.as_str().as_bytes());
        }
        let mut app_codes: std::collections::HashMap<String, u32> = Default::default();
        let n = state.registry.len();
        img.owners.reserve(n);
        img.providers.reserve(n);
        img.environments.reserve(n);
        img.apps.reserve(n);
        img.token_kinds.reserve(n);
        img.push_ids.ends.reserve(n);
        img.tokens.ends.reserve(n);
        state.registry.for_each(|user, d| {
            img.push_ids.push(d.push_id().as_bytes());
            img.owners.push(renumber.image_index(user));
            img.providers.push(
                ProviderKind::ALL
                    .iter()
                    .position(|p| *p == d.provider())
                    .expect("provider is in ALL") as u8,
            );
            img.environments.push(match d.environment() {
                Environment::Production => 0,
                Environment::Sandbox => 1,
            });
            img.apps.push(match &d.app_id() {
                None => 0,
                Some(a) => {
                    let next = app_codes.len() as u32 + 1;
                    *app_codes.entry(a.to_string()).or_insert_with(|| {
                        img.app_names.push(a.as_bytes());
                        next
                    })
                }
            });
            match d.token() {
                TokenRef::Bytes(b) => {
                    img.tokens.push(b);
                    img.token_kinds.push(0);
                }
                TokenRef::Text(t) => {
                    img.tokens.push(t.as_bytes());
                    img.token_kinds.push(1);
                }
            }
        });
        state.groups.for_each(|id, members| {
            img.group_ids.push(id.as_bytes());
            let start = img.members.len();
            img.members
                .extend(members.iter().map(|&u| renumber.image_index(u)));
            // Sorted and distinct in state indexes, so distinct in image indexes too:
            // sorting restores the order recovery checks.
            img.members[start..].sort_unstable();
            img.group_ends.push(img.members.len() as u64);
        });
        let settings = &mut img.settings;
        state.notify.for_each(|user, kind, id| {
            settings.mute_users.push(renumber.image_index(user));
            settings.mute_kinds.push(match kind {
                Kind::Peer => 0,
                Kind::Group => 1,
            });
            settings.mute_ids.push(id.as_bytes());
        });
        state.badges.for_each(|user, count| {
            settings.badge_users.push(renumber.image_index(user));
            settings.badge_counts.push(count);
        });
        users.with_names(renumber.order.iter().copied(), |name| {
            img.users.push(name.as_bytes())
        });
        img
    }
}

pub fn path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("snapshot-{seq:020}.rkyv"))
}

/// Snapshot files in `dir`, newest first.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, Error> {
    let mut out = super::numbered_files(dir, "snapshot-", ".rkyv")?;
    out.reverse();
    Ok(out)
}

/// The header of a snapshot covering WAL sequence `seq` whose payload is `payload`:
/// magic, `version`, `seq`, the payload's length and CRC32C, the image archive's
/// length (`image_len`, format 3; 0 where the format has none) and the header's own
/// checksum. Public so that tests can build files of any format the loader reads.
pub fn header(version: u32, seq: u64, payload: &[u8], image_len: usize) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[0..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&version.to_le_bytes());
    header[16..24].copy_from_slice(&seq.to_le_bytes());
    header[24..32].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    header[32..36].copy_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    header[40..48].copy_from_slice(&(image_len as u64).to_le_bytes());
    let header_crc = crc32c::crc32c(&header[..HEADER_CRC_AT]);
    header[HEADER_CRC_AT..].copy_from_slice(&header_crc.to_le_bytes());
    header
}

/// Serialize `img` as the snapshot covering WAL sequence `seq`; durable on return.
/// Returns the file's path and size.
pub fn write(dir: &Path, seq: u64, img: &Image) -> Result<(PathBuf, u64), Error> {
    let failed = |e: rancor::Error| Error::Snapshot {
        file: path(dir, seq),
        what: format!("serialization failed: {e}"),
    };
    let image = rkyv::to_bytes::<rancor::Error>(img).map_err(failed)?;
    let settings = rkyv::to_bytes::<rancor::Error>(&img.settings).map_err(failed)?;
    let mut payload = Vec::with_capacity(image.len() + SETTINGS_ALIGN + settings.len());
    payload.extend_from_slice(&image);
    let image_len = image.len();
    drop(image);
    payload.resize(payload.len().next_multiple_of(SETTINGS_ALIGN), 0);
    payload.extend_from_slice(&settings);
    let header = header(FORMAT_VERSION, seq, &payload, image_len);
    let final_path = path(dir, seq);
    let tmp = dir.join(format!("snapshot-{seq:020}.rkyv.tmp"));
    let io = |e| Error::io(&tmp, e);
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(&header).map_err(io)?;
    f.write_all(&payload).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, &final_path).map_err(|e| Error::io(&final_path, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))?;
    Ok((final_path, (HEADER_LEN + payload.len()) as u64))
}

/// A validated, memory-mapped snapshot.
pub struct Loaded {
    pub seq: u64,
    pub path: PathBuf,
    map: memmap2::Mmap,
    /// Payload bytes (both archives and the padding between them).
    len: usize,
    /// Where the image archive ends and the settings archive starts, within the
    /// payload (format 3; `None` before).
    split: Option<(usize, usize)>,
}

impl Loaded {
    /// The archived image and settings (validated when the file was opened).
    pub fn image(&self) -> View<'_> {
        // `open` validated exactly these bytes; this second access re-checks them (cheap
        // next to the install that follows) and keeps this module free of unchecked casts.
        let payload = &self.map[HEADER_LEN..HEADER_LEN + self.len];
        let (image, settings) = match self.split {
            Some((end, start)) => (&payload[..end], Some(&payload[start..])),
            None => (payload, None),
        };
        View {
            image: rkyv::access::<ArchivedImage, rancor::Error>(image).expect("validated in open"),
            settings: settings.map(|b| {
                rkyv::access::<ArchivedSettings, rancor::Error>(b).expect("validated in open")
            }),
        }
    }

    pub fn bytes(&self) -> u64 {
        (HEADER_LEN + self.len) as u64
    }
}

/// Memory-map and validate one snapshot file.
pub fn open(file: &Path) -> Result<Loaded, Error> {
    let bad = |what: String| Error::Snapshot {
        file: file.to_path_buf(),
        what,
    };
    let f = File::open(file).map_err(|e| Error::io(file, e))?;
    let map = map_readonly(&f).map_err(|e| Error::io(file, e))?;
    if map.len() < HEADER_LEN || &map[0..8] != MAGIC {
        return Err(bad("not a fanfare snapshot (bad magic)".into()));
    }
    let version = u32::from_le_bytes(map[8..12].try_into().expect("4 bytes"));
    match version {
        FORMAT_VERSION | FORMAT_VERSION_2 => {
            let stored =
                u32::from_le_bytes(map[HEADER_CRC_AT..HEADER_LEN].try_into().expect("4 bytes"));
            if crc32c::crc32c(&map[..HEADER_CRC_AT]) != stored {
                return Err(bad("header checksum mismatch".into()));
            }
        }
        FORMAT_VERSION_1 => {}
        _ => {
            return Err(bad(format!(
                "format version {version}, this build reads {FORMAT_VERSION_1} to {FORMAT_VERSION}"
            )))
        }
    }
    let seq = u64::from_le_bytes(map[16..24].try_into().expect("8 bytes"));
    let named = file
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("snapshot-"))
        .and_then(|n| n.strip_suffix(".rkyv"))
        .and_then(|n| n.parse::<u64>().ok());
    if named != Some(seq) {
        return Err(bad(format!(
            "header covers sequence {seq} but the file name says {}",
            named.map_or_else(|| "nothing".to_string(), |n| n.to_string())
        )));
    }
    let len = u64::from_le_bytes(map[24..32].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(map[32..36].try_into().expect("4 bytes"));
    if (map.len() - HEADER_LEN) as u64 != len {
        return Err(bad(format!(
            "payload is {} bytes, header says {len}",
            map.len() - HEADER_LEN
        )));
    }
    let len = len as usize;
    let payload = &map[HEADER_LEN..];
    if crc32c::crc32c(payload) != crc {
        return Err(bad("checksum mismatch".into()));
    }
    let split = if version == FORMAT_VERSION {
        let end = u64::from_le_bytes(map[40..48].try_into().expect("8 bytes"));
        let start = usize::try_from(end)
            .ok()
            .and_then(|e| e.checked_next_multiple_of(SETTINGS_ALIGN))
            .filter(|s| *s <= len)
            .ok_or_else(|| bad(format!("image length {end} is past the payload")))?;
        Some((end as usize, start))
    } else {
        None
    };
    let image = split.map_or(payload, |(end, _)| &payload[..end]);
    let img = rkyv::access::<ArchivedImage, rancor::Error>(image)
        .map_err(|e| bad(format!("archive failed validation: {e}")))?;
    check_shape(img).map_err(|w| bad(w.into()))?;
    if let Some((_, start)) = split {
        let settings = rkyv::access::<ArchivedSettings, rancor::Error>(&payload[start..])
            .map_err(|e| bad(format!("settings archive failed validation: {e}")))?;
        check_settings(settings, img.users.len()).map_err(|w| bad(w.into()))?;
    }
    Ok(Loaded {
        seq,
        path: file.to_path_buf(),
        map,
        len,
        split,
    })
}

/// The one place this crate maps a file.
#[allow(unsafe_code)]
fn map_readonly(f: &File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: snapshot files are written once under a temp name and renamed into
    // place; nothing ever modifies or truncates a published snapshot, and the store
    // deletes one only after a newer snapshot exists and recovery has finished, so the
    // mapping's bytes cannot change while they are read.
    unsafe { memmap2::Mmap::map(f) }
}

fn utf8<'a>(b: &'a [u8], what: &'static str) -> Result<&'a str, &'static str> {
    std::str::from_utf8(b).map_err(|_| what)
}

/// Rebuild the in-memory indexes straight from the archived columns (no owned copy
/// of the image is made). `state` must be fresh: its user indexes then equal the
/// image's. A pin is held until every binding and group is in place, so no sweep
/// releases a user between interning and the binding that refers to it. (Snapshots
/// written before captures kept only referenced users list every user ever seen;
/// the sweep releases the unreferenced ones after recovery.)
pub fn install(view: View<'_>, state: &State) -> Result<u64, &'static str> {
    let img = view.image;
    let users = state.users.pin();
    for i in 0..img.users.len() {
        let name = utf8(img.users.get(i), "user id is not UTF-8")?;
        if users.intern(name) as usize != i {
            return Err("duplicate user id in the user table");
        }
    }
    let mut providers = Vec::with_capacity(img.provider_names.len());
    for i in 0..img.provider_names.len() {
        let name = utf8(img.provider_names.get(i), "provider name is not UTF-8")?;
        providers.push(ProviderKind::parse(name).ok_or("unknown provider name")?);
    }
    let mut apps: Vec<&str> = Vec::with_capacity(img.app_names.len());
    for i in 0..img.app_names.len() {
        apps.push(utf8(img.app_names.get(i), "app id is not UTF-8")?);
    }
    state.registry.reserve(img.push_ids.len());
    // Bindings are independent: both cores build records and insert them.
    let bind_range = |range: std::ops::Range<usize>| -> Result<(), &'static str> {
        for i in range {
            let token = match img.token_kinds[i] {
                0 => TokenRef::Bytes(img.tokens.get(i)),
                1 => TokenRef::Text(utf8(img.tokens.get(i), "token is not UTF-8")?),
                _ => return Err("unknown token kind"),
            };
            let device = Device::from_parts(
                utf8(img.push_ids.get(i), "push id is not UTF-8")?,
                img.owners[i].to_native(),
                providers[usize::from(img.providers[i])],
                if img.environments[i] == 0 {
                    Environment::Production
                } else {
                    Environment::Sandbox
                },
                match img.apps[i].to_native() {
                    0 => None,
                    k => Some(apps[k as usize - 1]),
                },
                token,
            );
            state.registry.insert(device);
        }
        Ok(())
    };
    let n = img.push_ids.len();
    let threads = std::thread::available_parallelism()
        .map_or(1, |p| p.get())
        .clamp(1, 8);
    let chunk = n.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .step_by(chunk)
            .map(|lo| {
                let bind_range = &bind_range;
                s.spawn(move || bind_range(lo..(lo + chunk).min(n)))
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().map_err(|_| "install thread panicked")?)
    })?;
    let mut start = 0usize;
    for g in 0..img.group_ids.len() {
        let end = img.group_ends[g].to_native() as usize;
        let id: Arc<str> = utf8(img.group_ids.get(g), "group id is not UTF-8")?.into();
        let members: Arc<[u32]> = img.members[start..end]
            .iter()
            .map(|m| m.to_native())
            .collect();
        if !members.windows(2).all(|w| w[0] < w[1]) {
            return Err("group members not sorted");
        }
        state.groups.install(id, members);
        start = end;
    }
    if let Some(s) = view.settings {
        for i in 0..s.mute_users.len() {
            let kind = if s.mute_kinds[i] == 0 {
                Kind::Peer
            } else {
                Kind::Group
            };
            let id = utf8(s.mute_ids.get(i), "conversation id is not UTF-8")?;
            let c = Conversation { kind, id };
            state.notify.set(s.mute_users[i].to_native(), c, true);
        }
        for (u, c) in s.badge_users.iter().zip(s.badge_counts.iter()) {
            state.badges.set(u.to_native(), c.to_native());
        }
    }
    drop(users);
    Ok(img.push_ids.len() as u64)
}
