use super::*;

#[test]
fn only_batch_mode_with_unsynced_data_sets_a_timer() {
    let long_ago = Instant::now() - Duration::from_secs(5);
    let interval = Duration::from_millis(10);
    // Durability `none` writes are never synced: the idle flusher must park, even
    // long after the last write (a zero timer here spun a core at 100%).
    assert_eq!(sync_due(Durability::None, false, long_ago, interval), None);
    assert_eq!(sync_due(Durability::Fsync, false, long_ago, interval), None);
    assert_eq!(sync_due(Durability::Batch, false, long_ago, interval), None);
    assert_eq!(
        sync_due(Durability::Batch, true, long_ago, interval),
        Some(Duration::ZERO)
    );
    let fresh = sync_due(Durability::Batch, true, Instant::now(), interval).unwrap();
    assert!(fresh > Duration::ZERO && fresh <= interval);
}
