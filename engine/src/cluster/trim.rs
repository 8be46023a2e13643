//! Trimming the state stream, so that NATS' disk does not grow with every write.
//!
//! Only the engine that stored a snapshot trims, right after its own put was
//! acknowledged, and only below all of:
//!
//! - the snapshot stored *before* its own (read just before the put): a joining
//!   engine that read that one a moment ago still finds its successor — one snapshot
//!   interval of margin;
//! - the stored snapshot read back *after* the put: if another engine (the lowest
//!   live id changes as engines come and go) stored an older one meanwhile, joining
//!   from it still works;
//! - the lowest floor of the live engines ([`Node::lowest_floor`]): an engine that is
//!   behind keeps its tail, an engine storing a snapshot keeps that snapshot's
//!   successor, and an engine that is joining (floor 0) stops trimming altogether.
//!
//! Root cause of the first version's failures (taken out in aead74b): it asked NATS
//! to purge below `min(stored before, lowest applied) + 1`, and a live engine that
//! had applied nothing yet (its first heartbeat said 0) made that `purge seq 1` —
//! which nats-server reads as *purge everything* (`seq` 0 and 1 both mean "no
//! sequence"). The stream then started past every snapshot and a joining engine
//! could not join. Here a purge is only ever sent with a sequence of 2 or more,
//! above the stream's first, and the floors make the bounds hold under races.

use super::Node;

/// The first sequence to keep, or `None` when nothing may be purged: `stored_before`
/// (0: no snapshot was stored before this one), `stored_now` (read back after the
/// put), `floor` (the lowest live floor) and the stream's `first` sequence.
pub(super) fn keep_from(
    stored_before: u64,
    stored_now: u64,
    floor: u64,
    first: u64,
) -> Option<u64> {
    let below = stored_before.min(stored_now).min(floor);
    let keep = below.checked_add(1)?;
    // `purge seq 1` (or 0) purges the whole stream on nats-server: never send it.
    (keep >= 2 && keep > first).then_some(keep)
}

/// Purge the state stream below what every bound allows (module doc), after this
/// engine stored the snapshot of `uploaded` over `stored_before`. Best effort: a
/// failure leaves the records for the next snapshot's turn.
pub(super) async fn after_upload(node: &Node, stored_before: u64, uploaded: u64) {
    if stored_before == 0 {
        return;
    }
    let stored_now = super::join::stored_seq(node).await;
    if stored_now == 0 {
        // Unreadable (or gone): nothing to trim below.
        return;
    }
    let Some(floor) = node.lowest_floor().await else {
        return;
    };
    let first = match node.stream.get_info().await {
        Ok(info) => info.state.first_sequence,
        Err(_) => return,
    };
    if stored_now.saturating_add(1) < first {
        // Cannot happen while every trim follows these rules; a joining engine would
        // fail until the next snapshot is stored.
        tracing::error!(
            stored_now,
            first,
            "the state stream starts past the stored snapshot"
        );
    }
    let Some(keep) = keep_from(stored_before, stored_now, floor, first) else {
        return;
    };
    match node.stream.purge().sequence(keep).await {
        Ok(done) => tracing::info!(
            keep_from = keep,
            purged = done.purged,
            uploaded,
            stored_now,
            floor,
            "state stream trimmed below the stored snapshots and every live engine's floor"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot trim the state stream"),
    }
}

#[cfg(test)]
mod tests {
    use super::keep_from;

    #[test]
    fn a_floor_of_zero_purges_nothing_rather_than_everything() {
        // The first version sent `purge seq 1` here, which empties the stream.
        assert_eq!(keep_from(196, 393, 0, 1), None);
    }

    #[test]
    fn the_lowest_bound_decides_where_trimming_stops() {
        assert_eq!(keep_from(196, 393, 400, 1), Some(197));
        assert_eq!(keep_from(196, 150, 400, 1), Some(151));
        assert_eq!(keep_from(196, 393, 120, 1), Some(121));
    }

    #[test]
    fn nothing_is_sent_when_the_stream_already_starts_there() {
        assert_eq!(keep_from(196, 393, 400, 197), None);
        assert_eq!(keep_from(196, 393, 400, 250), None);
        assert_eq!(keep_from(u64::MAX, u64::MAX, u64::MAX, 1), None);
    }
}
