//! Storage benchmarks, each beside a naive baseline in the same group:
//! - snapshot write: columnar rkyv image (capture + write + fsync) vs serde_json of the
//!   same bindings;
//! - recovery: mmap + validate + rebuild indexes vs parse JSON + rebuild;
//! - acknowledged writes: `Store::commit` per durability mode vs one fsync per write.
//!
//! 1M bindings always; set `FANFARE_BENCH_10M=1` to add 10M (needs ~8 GiB and minutes).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode,
    Throughput,
};
use fanfare::clock::Clock;
use fanfare::config::{Durability, Storage};
use fanfare::state::{Mutation, State};
use fanfare::store::{snapshot, Store};
use fanfare_benches::{binding, populated};

fn sizes() -> Vec<u64> {
    let mut v = vec![1_000_000];
    if std::env::var_os("FANFARE_BENCH_10M").is_some() {
        v.push(10_000_000);
    }
    v
}

#[derive(serde::Serialize, serde::Deserialize)]
struct JsonBinding {
    push_id: String,
    user_id: String,
    provider: String,
    environment: String,
    token: String,
}

fn json_dump(state: &State) -> Vec<JsonBinding> {
    let mut out = Vec::with_capacity(state.registry.len());
    let users = state.users.pin();
    state.registry.for_each(|u, d| {
        out.push(JsonBinding {
            push_id: d.push_id().to_string(),
            user_id: users.name(u).to_string(),
            provider: d.provider().as_str().into(),
            environment: d.environment().as_str().into(),
            token: d.token().to_wire(),
        })
    });
    out
}

/// A group whose iterations take hundreds of ms to seconds: ten flat samples, not a
/// linear ramp.
fn slow_group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.measurement_time(Duration::from_secs(10));
    g
}

fn snapshot_write(c: &mut Criterion) {
    let mut g = slow_group(c, "snapshot_write");
    for n in sizes() {
        let state = populated(n);
        let dir = tempfile::tempdir().unwrap();
        g.throughput(Throughput::Elements(n));
        g.bench_with_input(BenchmarkId::new("rkyv_columnar", n), &state, |b, state| {
            b.iter(|| {
                let img = snapshot::Image::capture(state);
                snapshot::write(dir.path(), 1, &img).unwrap()
            })
        });
        g.bench_with_input(
            BenchmarkId::new("naive_serde_json", n),
            &state,
            |b, state| {
                b.iter(|| {
                    let dump = json_dump(state);
                    let path = dir.path().join("state.json");
                    let mut f = std::fs::File::create(&path).unwrap();
                    serde_json::to_writer(std::io::BufWriter::new(&mut f), &dump).unwrap();
                    f.flush().unwrap();
                    f.sync_all().unwrap();
                })
            },
        );
    }
    g.finish();
}

fn recovery(c: &mut Criterion) {
    let mut g = slow_group(c, "recovery");
    for n in sizes() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Storage {
            dir: dir.path().join("data"),
            durability: Durability::None,
            ..Storage::default()
        };
        {
            let state = Arc::new(populated(n));
            let (store, _) = Store::open(&cfg, &state).unwrap();
            store.snapshot().unwrap();
            store.close();
            let dump = json_dump(&state);
            std::fs::write(
                dir.path().join("state.json"),
                serde_json::to_vec(&dump).unwrap(),
            )
            .unwrap();
        }
        g.throughput(Throughput::Elements(n));
        g.bench_function(BenchmarkId::new("mmap_rkyv_rebuild", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let state = Arc::new(State::new(Clock::new()));
                    let t = Instant::now();
                    let (store, rec) = Store::open(&cfg, &state).unwrap();
                    total += t.elapsed();
                    assert_eq!(rec.bindings_from_snapshot, n);
                    store.close();
                    drop(store);
                    drop(state); // teardown is not part of recovery
                }
                total
            })
        });
        g.bench_function(BenchmarkId::new("naive_json_parse_rebuild", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    let bytes = std::fs::read(dir.path().join("state.json")).unwrap();
                    let dump: Vec<JsonBinding> = serde_json::from_slice(&bytes).unwrap();
                    let state = State::new(Clock::new());
                    for (i, jb) in dump.into_iter().enumerate() {
                        let (_, b) = binding(i as u64);
                        state.apply_in_memory(&Mutation::Bind {
                            push_id: jb.push_id.into(),
                            binding: b,
                        });
                    }
                    total += t.elapsed();
                    drop(state);
                }
                total
            })
        });
    }
    g.finish();
}

/// `writers` concurrent tasks each committing their pre-built binds back to back.
fn commit_load(rt: &tokio::runtime::Runtime, store: &Arc<Store>, batches: Vec<Vec<Mutation>>) {
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for batch in batches {
            let store = store.clone();
            set.spawn(async move {
                for m in &batch {
                    store.commit(m).await.unwrap();
                }
            });
        }
        while set.join_next().await.is_some() {}
    });
}

fn wal_ack(c: &mut Criterion) {
    let mut g = c.benchmark_group("wal_acknowledged_binds");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for (mode, writers, per) in [
        (Durability::Batch, 256usize, 400u64),
        (Durability::Fsync, 256, 40),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Storage {
            dir: dir.path().join("data"),
            durability: mode,
            fsync_interval_ms: std::time::Duration::from_millis(5),
            ..Storage::default()
        };
        let state = Arc::new(State::new(Clock::new()));
        let (store, _) = Store::open(&cfg, &state).unwrap();
        let store = Arc::new(store);
        let mut round = 0u64;
        g.throughput(Throughput::Elements(writers as u64 * per));
        g.bench_function(format!("{mode:?}_256_writers").to_lowercase(), |b| {
            b.iter_batched(
                || {
                    // The requests, built before the clock starts (as the API would have).
                    round += 1;
                    (0..writers as u64)
                        .map(|w| {
                            (0..per)
                                .map(|k| {
                                    let (push_id, binding) =
                                        binding(round * 10_000_000 + w * per + k);
                                    Mutation::Bind { push_id, binding }
                                })
                                .collect()
                        })
                        .collect()
                },
                |batches| commit_load(&rt, &store, batches),
                criterion::BatchSize::PerIteration,
            )
        });
        store.close();
    }
    // Baseline: a log that fsyncs every record before acknowledging it.
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("naive.log")).unwrap();
    let mut i = 0u64;
    const N: u64 = 200;
    g.throughput(Throughput::Elements(N));
    g.bench_function("naive_fsync_per_write", |b| {
        b.iter(|| {
            for _ in 0..N {
                i += 1;
                let (push_id, binding) = binding(i);
                let mut buf = Vec::new();
                fanfare::store::codec::encode(i, &Mutation::Bind { push_id, binding }, &mut buf);
                f.write_all(&buf).unwrap();
                f.sync_data().unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, wal_ack, snapshot_write, recovery);
criterion_main!(benches);
