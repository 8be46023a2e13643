//! Storage hardening (issue 10, items 3–7) through real files, the real binary and the
//! HTTP API: one engine per data directory, WAL and snapshot damage told apart from torn
//! tails, refused writes that change nothing (a real file size limit on a real engine
//! process), recovery whenever an exact path exists; and bounded fuzzing (proptest) of
//! the WAL frame decoder, log replay and the snapshot loader.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::{
    assert_recovers, base_of, bind, call, config_file, data_files, edit_file, get, http,
    log_of_random_ops, push_ids_of, random_ops, restart_expecting, snapshots_of_random_ops, start,
    start_refused, stop_holding, wait_status, Proc, SNAPSHOTS_OFF,
};
use fanfare::clock::Clock;
use fanfare::state::{
    Binding, Environment, Journal, Mutation, ProviderKind, Refused, State, Ticket, Token, Undo,
};
use fanfare::store::{codec, snapshot, wal};
use parking_lot::Mutex;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// This file's engines take no periodic snapshots: each test takes its own.
fn config(dir: &Path, durability: &str) -> PathBuf {
    config_file(dir, durability, SNAPSHOTS_OFF)
}

fn damaged_copies(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".damaged-"))
        .collect()
}

/// Offsets of the frames in a log segment.
fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut off = 0;
    while off < bytes.len() {
        let (_, len) = codec::frame(&bytes[off..]).expect("an intact log");
        out.push(off);
        off += len;
    }
    out
}

// ---------------------------------------------------------------- item 3: one engine

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_engine_on_the_same_data_dir_refuses_to_start_and_names_the_holders_pid() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "fsync");
    let mut first = Proc::spawn_until(&cfg, "/healthz").await;
    assert_eq!(bind(&first.base, "d1", "u1").await, 200);

    let mut second = Proc::spawn(&cfg);
    let status = second.wait_exit();
    assert!(
        !status.success(),
        "the second engine must refuse: {status:?}"
    );
    let log = second.log();
    let pid = first.child.id();
    assert!(
        log.contains("in use by another fanfare process") && log.contains(&format!("pid {pid}")),
        "{log}"
    );

    // The first goes on acknowledging writes, and every one of them survives a restart.
    assert_eq!(bind(&first.base, "d2", "u1").await, 200);
    first.kill_9(); // SIGKILL: the kernel drops the lock with the process
    let third = Proc::spawn_until(&cfg, "/healthz").await;
    assert_eq!(push_ids_of(&third.base, "u1").await, ["d1", "d2"]);
}

#[tokio::test]
async fn the_lock_is_released_when_the_engine_stops_so_it_can_restart_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), "none").await;
    // A second engine on the same directory must not start.
    let msg = start_refused(dir.path(), "none").await;
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    running.shutdown().await;
    start(dir.path(), "none").await.shutdown().await;
}

// ---------------------------------------------------------- item 4: WAL frame damage

#[tokio::test]
async fn a_flipped_bit_in_a_middle_records_length_stops_startup_naming_file_and_offset_and_cuts_nothing(
) {
    let (dir, _) = log_of_random_ops("fsync", 1, 60).await;
    let data = dir.path().join("data");
    let wal = data_files(&data, "wal-").into_iter().next().unwrap();
    let offsets = frame_offsets(&std::fs::read(&wal).unwrap());
    assert!(offsets.len() >= 40, "{}", offsets.len());
    let victim = offsets[offsets.len() / 2];
    // Bit 20 of the length: the record now claims ~1 MiB, past the end of the file —
    // what the old reader took for a torn tail, cutting off half the log.
    let bytes = edit_file(&wal, |bytes| bytes[victim + 2] ^= 1 << 4);

    let msg = start_refused(dir.path(), "fsync").await;
    assert!(msg.contains(&wal.display().to_string()), "{msg}");
    assert!(msg.contains(&format!("corrupt at byte {victim}")), "{msg}");
    assert_eq!(
        std::fs::read(&wal).unwrap(),
        bytes,
        "the damaged file is kept as it is"
    );
    assert!(damaged_copies(&data).is_empty());
}

#[tokio::test]
async fn random_bytes_appended_to_the_log_are_cut_and_kept_aside_and_every_record_is_recovered() {
    let (dir, before) = log_of_random_ops("fsync", 2, 60).await;
    let data = dir.path().join("data");
    let wal = data_files(&data, "wal-").into_iter().next().unwrap();
    let good = std::fs::read(&wal).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut junk: Vec<u8> = (0..37).map(|_| rng.gen()).collect();
    // As in the report: the junk's first four bytes read as an impossible length,
    // which the old reader took for corruption and refused to start.
    junk[3] |= 0x80;
    edit_file(&wal, |bytes| bytes.extend_from_slice(&junk));

    let running = restart_expecting(dir.path(), "fsync", &before).await;
    assert_eq!(std::fs::read(&wal).unwrap(), good, "only the junk is cut");
    let copies = damaged_copies(&data);
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(
        std::fs::read(&copies[0]).unwrap(),
        junk,
        "the cut bytes are kept"
    );
    assert!(
        copies[0]
            .to_string_lossy()
            .contains(&format!(".tail-{}.", good.len())),
        "{copies:?}"
    );
    running.shutdown().await;
}

// ---------------------------------------------------------- item 5: snapshot header

/// Snapshot after 50 bindings, 50 more only in the log; returns the state and the
/// snapshot file.
async fn fifty_in_a_snapshot_and_fifty_in_the_log(
    dir: &Path,
) -> (fanfare::state::DurableView, PathBuf) {
    let running = start(dir, "none").await;
    let base = base_of(&running);
    for i in 0..50 {
        assert_eq!(bind(&base, &format!("d{i}"), "u1").await, 200);
    }
    let info = running.engine().store().unwrap().snapshot().unwrap();
    assert_eq!(info.seq, 50);
    for i in 50..100 {
        assert_eq!(bind(&base, &format!("d{i}"), "u1").await, 200);
    }
    let before = running.engine().state.durable_view();
    assert_eq!(before.bindings.len(), 100);
    running.stop_without_snapshot().await;
    (before, info.path)
}

#[tokio::test]
async fn a_snapshot_with_a_raised_covered_sequence_is_refused_and_the_log_rebuilds_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (before, snap) = fifty_in_a_snapshot_and_fifty_in_the_log(dir.path()).await;
    edit_file(&snap, |bytes| {
        bytes[16..24].copy_from_slice(&100u64.to_le_bytes());
    });
    // Not 50 of 100: the header checksum refuses the snapshot, and the log, which
    // reaches back to sequence 1, rebuilds every binding.
    assert_recovers(dir.path(), "none", &before).await;
}

#[tokio::test]
async fn a_snapshot_whose_header_disagrees_with_its_file_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, snap) = fifty_in_a_snapshot_and_fifty_in_the_log(dir.path()).await;
    assert!(snapshot::open(&snap).is_ok());
    let orig = std::fs::read(&snap).unwrap();
    // A consistent header (checksum recomputed) that claims a different sequence.
    edit_file(&snap, |raised| {
        raised[16..24].copy_from_slice(&100u64.to_le_bytes());
        let crc = crc32c::crc32c(&raised[..60]);
        raised[60..64].copy_from_slice(&crc.to_le_bytes());
    });
    let err = snapshot::open(&snap).err().expect("refused");
    assert!(
        err.to_string()
            .contains("header covers sequence 100 but the file name says 50"),
        "{err}"
    );
    // The intact file under another sequence's name.
    let renamed = snap.with_file_name(format!("snapshot-{:020}.rkyv", 70));
    std::fs::write(&renamed, &orig).unwrap();
    let err = snapshot::open(&renamed).err().expect("refused");
    assert!(err.to_string().contains("file name says 70"), "{err}");
}

// ------------------------------------------------------------- item 6: full disk

/// Set the engine process's file size limit (`None`: back to the hard limit).
fn limit_file_size(pid: u32, bytes: Option<u64>) {
    use rustix::process::{getrlimit, prlimit, Pid, Resource, Rlimit};
    let hard = getrlimit(Resource::Fsize).maximum;
    prlimit(
        Some(Pid::from_raw(pid as i32).expect("a child pid")),
        Resource::Fsize,
        Rlimit {
            current: bytes.or(hard),
            maximum: hard,
        },
    )
    .expect("prlimit on our own child");
}

/// Writes refused because the log cannot grow (a real EFBIG from `RLIMIT_FSIZE` on the
/// real segment file, as a full disk's ENOSPC would be) change nothing: not in memory,
/// not after a restart; `/readyz` says writes are failing; one ERROR line, then counts;
/// writes resume once the file can grow again.
async fn refused_writes_change_nothing(durability: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), durability);
    let http = http();
    let mut proc = Proc::spawn_until(&cfg, "/readyz").await;
    for i in 0..20 {
        assert_eq!(bind(&proc.base, &format!("d{i}"), "u1").await, 200);
    }
    let acked: Vec<String> = {
        let mut v: Vec<String> = (0..20).map(|i| format!("d{i}")).collect();
        v.sort();
        v
    };
    let data = dir.path().join("data");
    let segment = data_files(&data, "wal-").pop().unwrap();
    let len = std::fs::metadata(&segment).unwrap().len();
    // One byte of room: the next write is cut short, then fails with EFBIG.
    limit_file_size(proc.child.id(), Some(len + 1));

    // A wave of concurrent changes: unbinds of acknowledged bindings, new bindings,
    // group changes. Some are taken back from memory, the rest refused up front.
    let mut wave = tokio::task::JoinSet::new();
    for i in 0..24 {
        let (http, base) = (http.clone(), proc.base.clone());
        wave.spawn(async move {
            match i % 3 {
                0 => call(&http, &base, "DELETE", &format!("/v1/push-ids/d{i}"), None).await,
                1 => {
                    let body = json!({"user_id": "u1", "provider": "fcm", "token": "x"});
                    call(
                        &http,
                        &base,
                        "PUT",
                        &format!("/v1/push-ids/n{i}"),
                        Some(body),
                    )
                    .await
                }
                _ => {
                    let body = json!({"add": ["u1", format!("m{i}")]});
                    call(&http, &base, "POST", "/v1/groups/g/members", Some(body)).await
                }
            }
            .unwrap()
        });
    }
    while let Some(r) = wave.join_next().await {
        let (s, v) = r.unwrap();
        assert_eq!(s, 500, "{v}");
        assert_eq!(v["error"]["code"], "internal", "{v}");
    }
    assert_eq!(push_ids_of(&proc.base, "u1").await, acked);
    let (s, _) = get(&http, &proc.base, "/v1/groups/g").await;
    assert_eq!(s, 404, "the group was never created");
    let (s, v) = get(&http, &proc.base, "/readyz").await;
    assert_eq!(s, 503, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with("writes are failing: write failed"), "{msg}");
    assert!(
        !msg.contains(&data.display().to_string()),
        "no paths: {msg}"
    );
    let (s, _) = get(&http, &proc.base, "/healthz").await;
    assert_eq!(s, 200, "liveness is not readiness");
    // More refused writes while failing: counted, not logged one by one.
    for i in 0..30 {
        assert_eq!(bind(&proc.base, &format!("r{i}"), "u1").await, 500);
    }
    assert_eq!(push_ids_of(&proc.base, "u1").await, acked);
    assert_eq!(
        std::fs::metadata(&segment).unwrap().len(),
        len,
        "the partial write was cut"
    );
    // Operators see it in the stats and the metrics.
    let (s, v) = get(&http, &proc.base, "/v1/stats").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["storage"]["writes_failing"], true, "{v}");
    assert!(
        v["storage"]["refused_writes"].as_u64().unwrap() >= 30,
        "{v}"
    );
    let metrics = metrics_text(&proc.base).await;
    assert!(
        metrics.contains("fanfare_storage_writes_failing 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fanfare_storage_refused_writes_total "),
        "{metrics}"
    );

    // Room again: the log's probe notices, and writes are accepted.
    limit_file_size(proc.child.id(), None);
    wait_status(&http, &proc.base, "/readyz", 200).await;
    assert_eq!(bind(&proc.base, "after", "u1").await, 200);
    let mut expected = acked.clone();
    expected.push("after".into());
    expected.sort();
    assert_eq!(push_ids_of(&proc.base, "u1").await, expected);
    proc.wait_log("write-ahead log write failed;");
    let log = proc.log();
    let first_failures = log
        .lines()
        .filter(|l| l.contains("write-ahead log write failed;"))
        .count();
    assert_eq!(first_failures, 1, "{log}");
    let errors = log.lines().filter(|l| l.contains("ERROR")).count();
    assert_eq!(
        errors, 1,
        "one ERROR line for the incident, not one per request: {log}"
    );
    proc.wait_log("write-ahead log writes succeed again");

    proc.kill_9();
    let proc = Proc::spawn_until(&cfg, "/readyz").await;
    assert_eq!(push_ids_of(&proc.base, "u1").await, expected);
    let (s, _) = get(&http, &proc.base, "/v1/groups/g").await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_because_the_log_cannot_grow_changes_nothing_and_readyz_says_so() {
    refused_writes_change_nothing("fsync").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_durability_none_a_refused_write_changes_nothing_either() {
    refused_writes_change_nothing("none").await;
}

// ------------------------------------------------------------- item 7: recovery paths

#[tokio::test]
async fn a_damaged_old_segment_the_newest_snapshot_covers_does_not_block_startup() {
    let (dir, before, snapshots) =
        snapshots_of_random_ops("none", &[(4, 80), (5, 80), (6, 40)]).await;
    let [first, second] = &snapshots[..] else {
        panic!("two snapshots: {snapshots:?}");
    };
    let data = dir.path().join("data");
    // Kept for the fallback to the older snapshot, covered whole by the newer one.
    let old = wal::segment_path(&data, first.seq + 1);
    assert!(data_files(&data, "wal-").contains(&old));
    assert!(first.seq < second.seq);
    edit_file(&old, |bytes| {
        assert!(!bytes.is_empty());
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
    });

    assert_recovers(dir.path(), "none", &before).await;
}

#[tokio::test]
async fn a_single_damaged_snapshot_recovers_from_the_whole_log_when_it_reaches_sequence_1() {
    let (dir, before, snapshots) = snapshots_of_random_ops("none", &[(7, 120), (8, 60)]).await;
    edit_file(&snapshots[0].path, |bytes| {
        let n = bytes.len();
        bytes[n - 10] ^= 0x55;
    });

    assert_recovers(dir.path(), "none", &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_segment_starts_with_the_record_its_name_promises_even_when_snapshots_race_writers() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), "none").await;
    let base = base_of(&running);
    let store = running.engine().store().unwrap().clone();
    // Writers go on, round after round (at most 20), until three segments have been
    // checked: how many snapshots fall inside a fixed amount of writing depends on the
    // machine's load.
    let enough = Arc::new(AtomicBool::new(false));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..6u64 {
        let (base, enough) = (base.clone(), enough.clone());
        writers.spawn(async move {
            for round in 0..20 {
                random_ops(&http(), &base, 100 + w + 1_000 * round, 150).await;
                if enough.load(Ordering::Relaxed) {
                    break;
                }
            }
        });
    }
    let data = dir.path().join("data");
    // Segments seen with their first record, checked while the writers run (pruning
    // removes the old ones as snapshots go on).
    let mut checked = std::collections::BTreeSet::new();
    let mut snapshots = Vec::new();
    while !writers.is_empty() {
        let s = store.clone();
        snapshots.push(
            tokio::task::spawn_blocking(move || s.snapshot().unwrap().seq)
                .await
                .unwrap(),
        );
        for seg in data_files(&data, "wal-") {
            let Ok(bytes) = std::fs::read(&seg) else {
                continue; // pruned meanwhile
            };
            // The newest segment may be mid-write: only a complete first frame counts.
            let Ok((payload, _)) = codec::frame(&bytes) else {
                continue;
            };
            let (seq, _) = codec::decode(payload).unwrap();
            let name = seg.file_name().unwrap().to_string_lossy().into_owned();
            assert_eq!(
                name,
                format!("wal-{seq:020}.log"),
                "snapshots at {snapshots:?}"
            );
            checked.insert(name);
        }
        if checked.len() >= 3 {
            enough.store(true, Ordering::Relaxed);
        }
        if let Some(r) = writers.try_join_next() {
            r.unwrap();
        }
    }
    assert!(checked.len() >= 3, "{checked:?}");
    let before = stop_holding(running).await;
    assert_recovers(dir.path(), "none", &before).await;
}

// ------------------------------------------------ taking back, every mutation kind

/// A journal that applies and keeps every undo (no log): what the WAL's take-back does,
/// without the disk.
#[derive(Default)]
struct Keeper {
    undo: Mutex<Vec<Undo>>,
    seq: AtomicU64,
}

impl Journal for Keeper {
    fn record(&self, _m: &Mutation, apply: &mut dyn FnMut() -> Undo) -> Result<Ticket, Refused> {
        let mut undo = self.undo.lock();
        undo.push(apply());
        Ok(Ticket {
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            epoch: 1,
        })
    }

    fn exclusive(&self, f: &mut dyn FnMut(bool)) {
        f(self.undo.lock().is_empty());
    }
}

fn random_mutation(rng: &mut rand::rngs::StdRng) -> Mutation {
    let user =
        |rng: &mut rand::rngs::StdRng| -> Arc<str> { format!("u{}", rng.gen_range(0..12)).into() };
    let push_id: Arc<str> = format!("d{}", rng.gen_range(0..30)).into();
    // FCM tokens are text, APNs tokens bytes.
    let (provider, token) = if rng.gen_bool(0.5) {
        let text = format!("t{}", rng.gen_range(0..4));
        (ProviderKind::Fcm, Token::Text(text.into()))
    } else {
        let bytes = vec![rng.gen_range(0..4u8); 32];
        (ProviderKind::Apns, Token::Bytes(bytes.into()))
    };
    match rng.gen_range(0..10) {
        0..=3 => Mutation::Bind {
            push_id,
            binding: Binding {
                user_id: user(rng),
                provider,
                environment: if rng.gen_bool(0.5) {
                    Environment::Production
                } else {
                    Environment::Sandbox
                },
                app_id: rng.gen_bool(0.3).then(|| Arc::from("com.app")),
                token,
            },
        },
        4 => Mutation::Unbind { push_id },
        5 => Mutation::RemoveDeadToken { push_id, token },
        6 => Mutation::RemoveUser { user_id: user(rng) },
        7 | 8 => Mutation::GroupUpdate {
            group_id: format!("g{}", rng.gen_range(0..3)).into(),
            add: (0..rng.gen_range(0..4)).map(|_| user(rng)).collect(),
            remove: (0..rng.gen_range(0..3)).map(|_| user(rng)).collect(),
        },
        _ => Mutation::GroupDelete {
            group_id: format!("g{}", rng.gen_range(0..3)).into(),
        },
    }
}

#[test]
fn taking_back_every_kind_of_mutation_newest_first_restores_the_state_exactly() {
    for seed in 0..40 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let state = State::new(Clock::new());
        let keeper = Arc::new(Keeper::default());
        state.attach_journal(keeper.clone());
        for _ in 0..rng.gen_range(0..150) {
            state.apply(&random_mutation(&mut rng));
        }
        keeper.undo.lock().clear();
        let before = state.durable_view();
        for _ in 0..rng.gen_range(1..80) {
            state.apply(&random_mutation(&mut rng));
        }
        let undo = std::mem::take(&mut *keeper.undo.lock());
        for u in undo.into_iter().rev() {
            state.revert(u);
        }
        assert_eq!(state.durable_view(), before, "seed {seed}");
        assert!(state.exclusive(|settled| settled));
    }
}

// ------------------------------------------------------------------ bounded fuzzing

/// 256 cases per target by default (a few seconds in `cargo test`); CI or a developer
/// can run longer with `PROPTEST_CASES=100000`.
fn fuzz_config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A valid log of `n` random mutations: the bytes and the mutations in order.
fn valid_log(seed: u64, n: usize) -> (Vec<u8>, Vec<Mutation>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut bytes = Vec::new();
    let ms: Vec<Mutation> = (0..n).map(|_| random_mutation(&mut rng)).collect();
    for (i, m) in ms.iter().enumerate() {
        codec::encode(i as u64 + 1, m, &mut bytes);
    }
    (bytes, ms)
}

#[derive(Debug, Clone)]
enum Damage {
    FlipBit { at: usize, bit: u8 },
    Cut { at: usize },
    Append(Vec<u8>),
    Overwrite { at: usize, with: Vec<u8> },
    ZeroTail { from: usize },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 0..8u8).prop_map(|(at, bit)| Damage::FlipBit { at, bit }),
        any::<usize>().prop_map(|at| Damage::Cut { at }),
        proptest::collection::vec(any::<u8>(), 1..64).prop_map(Damage::Append),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..32)
        )
            .prop_map(|(at, with)| Damage::Overwrite { at, with }),
        any::<usize>().prop_map(|from| Damage::ZeroTail { from }),
    ]
}

fn apply_damage(bytes: &mut Vec<u8>, d: &Damage) {
    let n = bytes.len().max(1);
    match d {
        Damage::FlipBit { at, bit } => {
            if !bytes.is_empty() {
                bytes[at % n] ^= 1 << bit;
            }
        }
        Damage::Cut { at } => bytes.truncate(at % n),
        Damage::Append(junk) => bytes.extend_from_slice(junk),
        Damage::Overwrite { at, with } => {
            for (i, b) in with.iter().enumerate() {
                if let Some(x) = bytes.get_mut((at % n) + i) {
                    *x = *b;
                }
            }
        }
        Damage::ZeroTail { from } => {
            let from = (from % n).min(bytes.len());
            bytes[from..].fill(0);
        }
    }
}

/// Replay `bytes` as the only segment; the mutations applied, or the error.
fn replay_bytes(
    bytes: &[u8],
) -> (
    Result<wal::Replayed, fanfare::store::Error>,
    Vec<Mutation>,
    Vec<u8>,
) {
    let dir = tempfile::tempdir().unwrap();
    let seg = wal::segment_path(dir.path(), 1);
    std::fs::write(&seg, bytes).unwrap();
    let mut seen = Vec::new();
    let r = wal::replay(dir.path(), 0, |m| seen.push(m.clone()));
    let after = std::fs::read(&seg).unwrap();
    (r, seen, after)
}

proptest! {
    #![proptest_config(fuzz_config())]

    /// Arbitrary bytes never panic the frame decoder or the record decoder.
    #[test]
    fn the_frame_decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut off = 0;
        while off < bytes.len() {
            match codec::frame(&bytes[off..]) {
                Ok((payload, len)) => {
                    prop_assert!(len > 0 && off + len <= bytes.len());
                    let _ = codec::decode(payload);
                    off += len;
                }
                Err(_) => off += 1,
            }
        }
        let _ = codec::decode(&bytes);
    }

    /// A damaged log either recovers a prefix of its records (cutting only a torn tail,
    /// which it keeps aside) or refuses with the file untouched; it never panics.
    #[test]
    fn replaying_a_damaged_log_recovers_a_prefix_or_refuses_and_never_panics(
        seed in any::<u64>(),
        n in 0usize..40,
        damages in proptest::collection::vec(damage(), 1..4),
    ) {
        let (good, ms) = valid_log(seed, n);
        let mut bytes = good.clone();
        for d in &damages {
            apply_damage(&mut bytes, d);
        }
        let (r, seen, after) = replay_bytes(&bytes);
        match r {
            Ok(r) => {
                prop_assert!(seen.len() <= ms.len());
                prop_assert_eq!(&seen[..], &ms[..seen.len()]);
                prop_assert_eq!(r.records as usize, seen.len());
                prop_assert_eq!(after.len() as u64 + r.torn_tail_bytes, bytes.len() as u64);
                prop_assert_eq!(&after[..], &bytes[..after.len()]);
            }
            Err(_) => prop_assert_eq!(after, bytes, "a refused log is not cut"),
        }
    }

    /// Records whose checksums are right but whose payloads are arbitrary never panic
    /// recovery: they are decoded, or refused as malformed, and applied.
    #[test]
    fn checksummed_arbitrary_records_never_panic_replay_into_a_state(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 10..200), 1..8),
        seq_prefix in any::<bool>(),
    ) {
        let mut bytes = Vec::new();
        for (i, mut p) in payloads.into_iter().enumerate() {
            if seq_prefix {
                p[0] = codec::VERSION;
                p[1..9].copy_from_slice(&(i as u64 + 1).to_le_bytes());
                p[9] %= 8;
            }
            let len = (p.len() as u32).to_le_bytes();
            let crc = crc32c::crc32c_append(crc32c::crc32c(&len), &p);
            bytes.extend_from_slice(&len);
            bytes.extend_from_slice(&crc.to_le_bytes());
            bytes.extend_from_slice(&p);
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(wal::segment_path(dir.path(), 1), &bytes).unwrap();
        let state = State::new(Clock::new());
        let _ = wal::replay(dir.path(), 0, |m| {
            state.apply_in_memory(m);
        });
    }
}

/// A small valid snapshot's bytes (header + archive) and its sequence number.
fn valid_snapshot(seed: u64) -> (Vec<u8>, u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let state = State::new(Clock::new());
    for _ in 0..rng.gen_range(0..60) {
        state.apply_in_memory(&random_mutation(&mut rng));
    }
    let dir = tempfile::tempdir().unwrap();
    let img = snapshot::Image::capture(&state);
    let (path, _) = snapshot::write(dir.path(), 9, &img).unwrap();
    (std::fs::read(path).unwrap(), 9)
}

proptest! {
    #![proptest_config(fuzz_config())]

    /// Damaged snapshot files — including damage with every checksum recomputed, so
    /// only rkyv's validation and the loader's own checks stand in the way — are
    /// refused or load into a state; nothing panics.
    #[test]
    fn loading_a_damaged_snapshot_never_panics(
        seed in 0u64..16,
        damages in proptest::collection::vec(damage(), 1..4),
        fix_checksums in any::<bool>(),
    ) {
        static VALID: std::sync::OnceLock<Vec<(Vec<u8>, u64)>> = std::sync::OnceLock::new();
        let (mut bytes, seq) = VALID.get_or_init(|| (0..16).map(valid_snapshot).collect())
            [seed as usize]
            .clone();
        for d in &damages {
            apply_damage(&mut bytes, d);
        }
        if fix_checksums && bytes.len() >= snapshot::HEADER_LEN {
            let payload_len = (bytes.len() - snapshot::HEADER_LEN) as u64;
            bytes[24..32].copy_from_slice(&payload_len.to_le_bytes());
            let crc = crc32c::crc32c(&bytes[snapshot::HEADER_LEN..]);
            bytes[32..36].copy_from_slice(&crc.to_le_bytes());
            let crc = crc32c::crc32c(&bytes[..60]);
            bytes[60..64].copy_from_slice(&crc.to_le_bytes());
        }
        let dir = tempfile::tempdir().unwrap();
        let path = snapshot::path(dir.path(), seq);
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(loaded) = snapshot::open(&path) {
            let state = State::new(Clock::new());
            let _ = snapshot::install(loaded.image(), &state);
        }
    }

    /// Arbitrary bytes behind a well-formed header never panic the loader.
    #[test]
    fn arbitrary_archives_behind_a_valid_header_never_panic_the_loader(
        payload in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = snapshot::header(snapshot::FORMAT_VERSION, 3, &payload, 0).to_vec();
        bytes.extend_from_slice(&payload);
        let dir = tempfile::tempdir().unwrap();
        let path = snapshot::path(dir.path(), 3);
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(loaded) = snapshot::open(&path) {
            let state = State::new(Clock::new());
            let _ = snapshot::install(loaded.image(), &state);
        }
    }
}

#[test]
fn an_intact_snapshot_round_trips_through_the_loader() {
    let (bytes, seq) = valid_snapshot(3);
    let dir = tempfile::tempdir().unwrap();
    let path = snapshot::path(dir.path(), seq);
    std::fs::write(&path, &bytes).unwrap();
    let loaded = snapshot::open(&path).unwrap();
    let state = State::new(Clock::new());
    snapshot::install(loaded.image(), &state).unwrap();
    let _: BTreeMap<_, _> = state.durable_view().bindings;
}

/// `GET /metrics` as text (the JSON helper cannot read it).
async fn metrics_text(base: &str) -> String {
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_string(&mut out),
    )
    .await
    .expect("metrics answered within 10 s")
    .unwrap();
    out
}
