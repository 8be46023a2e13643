//! One-shot timing of a snapshot write and a recovery at N bindings (criterion's
//! repeated samples are too slow at 10M): `cargo run --release -p fanfare-benches
//! --bin storage-probe -- 10000000`.

use std::sync::Arc;
use std::time::Instant;

use fanfare::clock::Clock;
use fanfare::config::{Durability, Storage};
use fanfare::state::State;
use fanfare::store::Store;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = Storage {
        dir: dir.path().join("data"),
        durability: Durability::None,
        ..Storage::default()
    };
    let t = Instant::now();
    let state = Arc::new(fanfare_benches::populated(n));
    println!("built {n} bindings in {:.2} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let img = fanfare::store::snapshot::Image::capture(&state);
    let capture = t.elapsed();
    let t = Instant::now();
    let probe_dir = dir.path().join("probe");
    std::fs::create_dir_all(&probe_dir).expect("probe dir");
    fanfare::store::snapshot::write(&probe_dir, 1, &img).expect("write");
    println!(
        "  parts: capture {:.2} s, serialize + write + fsync {:.2} s",
        capture.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    drop(img);
    let (store, _) = Store::open(&cfg, &state).expect("open");
    let info = store.snapshot().expect("snapshot");
    println!(
        "snapshot write: {:.2} s, {:.0} MiB",
        info.elapsed.as_secs_f64(),
        info.bytes as f64 / 1048576.0
    );
    store.close();
    drop(store);
    drop(state);
    let state = Arc::new(State::new(Clock::new()));
    let t = Instant::now();
    let (store, rec) = Store::open(&cfg, &state).expect("recover");
    println!(
        "recovery to ready: {:.2} s ({} bindings from the snapshot)",
        t.elapsed().as_secs_f64(),
        rec.bindings_from_snapshot
    );
    store.close();
}
