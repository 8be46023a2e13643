//! What rkyv's validation cannot know about a snapshot: that its columns line up, its
//! offsets are in order and its indexes point inside their tables. Checked once when a
//! file is opened, so installing it can index the columns without bounds surprises.

use super::{ArchivedImage, ArchivedSettings};

/// The settings' invariants: columns of one length, user indexes in the image's user
/// table, known conversation types, identifiers the API could have accepted.
pub(super) fn check_settings(s: &ArchivedSettings, users: usize) -> Result<(), &'static str> {
    let n = s.mute_users.len();
    if s.mute_kinds.len() != n || s.mute_ids.len() != n {
        return Err("mute columns differ in length");
    }
    if s.badge_counts.len() != s.badge_users.len() {
        return Err("badge columns differ in length");
    }
    if s.mute_kinds.iter().any(|k| *k > 1) {
        return Err("unknown conversation type");
    }
    let users = users as u32;
    if s.mute_users
        .iter()
        .chain(s.badge_users.iter())
        .any(|u| u.to_native() >= users)
    {
        return Err("user index out of range");
    }
    let mut start = 0u64;
    for e in s.mute_ids.ends.iter() {
        let e = e.to_native();
        if e < start || e > s.mute_ids.bytes.len() as u64 {
            return Err("string table offsets out of order");
        }
        if e - start > crate::state::ids::MAX_ID_BYTES as u64 {
            return Err("identifier longer than the API allows");
        }
        start = e;
    }
    Ok(())
}

/// Cross-column invariants rkyv cannot know.
pub(super) fn check_shape(img: &ArchivedImage) -> Result<(), &'static str> {
    let n = img.push_ids.len();
    if [
        img.owners.len(),
        img.providers.len(),
        img.environments.len(),
        img.apps.len(),
        img.tokens.len(),
        img.token_kinds.len(),
    ]
    .iter()
    .any(|l| *l != n)
    {
        return Err("binding columns differ in length");
    }
    for s in [
        &img.users,
        &img.provider_names,
        &img.app_names,
        &img.push_ids,
        &img.tokens,
        &img.group_ids,
    ] {
        let ends = s.ends.iter().map(|e| e.to_native());
        if !offsets_in_order(ends, s.bytes.len() as u64) {
            return Err("string table offsets out of order");
        }
    }
    // A device record stores these lengths in a byte; the API allows far less.
    for s in [&img.push_ids, &img.app_names] {
        let mut start = 0u64;
        for e in s.ends.iter() {
            let e = e.to_native();
            if e - start > crate::state::ids::MAX_ID_BYTES as u64 {
                return Err("identifier longer than the API allows");
            }
            start = e;
        }
    }
    let users = img.users.len() as u32;
    if img.owners.iter().any(|o| o.to_native() >= users)
        || img.members.iter().any(|m| m.to_native() >= users)
    {
        return Err("user index out of range");
    }
    if img
        .providers
        .iter()
        .any(|p| usize::from(*p) >= img.provider_names.len())
    {
        return Err("provider code out of range");
    }
    if img
        .apps
        .iter()
        .any(|a| a.to_native() as usize > img.app_names.len())
    {
        return Err("app code out of range");
    }
    if img.group_ends.len() != img.group_ids.len() {
        return Err("group columns differ in length");
    }
    let ends = img.group_ends.iter().map(|e| e.to_native());
    if !offsets_in_order(ends, img.members.len() as u64) {
        return Err("group offsets out of order");
    }
    Ok(())
}

/// True when the end offsets `ends` never go back and none is past `len`: every
/// slice they cut is in bounds.
fn offsets_in_order(ends: impl Iterator<Item = u64>, len: u64) -> bool {
    let mut prev = 0;
    for e in ends {
        if e < prev || e > len {
            return false;
        }
        prev = e;
    }
    true
}
