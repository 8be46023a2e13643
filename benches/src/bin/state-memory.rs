//! Resident memory of N users × 2 devices against the raw bytes of their ids and
//! tokens. `cargo run --release -p fanfare-benches --bin state-memory [-- N_USERS]`.

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let users: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let bindings = users * 2;
    let before = rss_bytes();
    let state = fanfare_benches::populated(bindings);
    let after = rss_bytes();
    let raw: u64 = (0..bindings)
        .map(|i| fanfare_benches::raw_bytes(i) as u64)
        .sum();
    let used = after.saturating_sub(before);
    println!(
        "{users} users x 2 devices = {bindings} bindings: resident {:.1} MiB, raw ids+tokens {:.1} MiB, ratio {:.2} ({:.0} B/binding vs {:.0} raw)",
        used as f64 / 1048576.0,
        raw as f64 / 1048576.0,
        used as f64 / raw as f64,
        used as f64 / bindings as f64,
        raw as f64 / bindings as f64,
    );
    assert_eq!(state.registry.len() as u64, bindings);
}
