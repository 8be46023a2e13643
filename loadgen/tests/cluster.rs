//! The `cluster` scenario end to end on a small size: real NATS servers and engine
//! processes; one engine SIGKILLed while it holds work chunks loses no push, and its
//! chunks are redelivered to the others. Its flags are validated.

use std::process::{Command, Output};

fn loadgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fanfare-loadgen"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_cluster_scenario_redelivers_the_chunks_of_an_engine_killed_mid_fan_out_and_loses_no_push() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("cluster.json");
    // The mock answers after 1 s: the engine killed as soon as it queued a chunk still
    // waits for that chunk's answers, so the chunk is not acknowledged.
    let out = loadgen(&[
        "run",
        "--scenario",
        "cluster",
        "--users",
        "2000",
        "--latency-ms",
        "1000",
        "--kill-at",
        "0",
        "--drain-timeout",
        "60",
        "--json",
        json.to_str().unwrap(),
    ]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the cluster run failed:\n{text}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(
        (r["engines"].as_u64(), r["targets"].as_u64()),
        (Some(3), Some(2000)),
        "{r}"
    );
    assert!(
        r["killed_engine_chunks"].as_u64().is_some_and(|c| c > 0),
        "the killed engine held chunks: {r}"
    );
    // Every chunk is 1,000 targets: at least one whole chunk was delivered again.
    assert!(
        r["redelivered_targets"].as_u64().is_some_and(|t| t >= 1000),
        "the killed engine's chunks were redelivered: {r}"
    );
    for field in ["duplicates", "join_s", "binds_per_s", "pushes_per_s"] {
        assert!(r[field].is_number(), "{field} in {r}");
    }
    for q in ["p50", "p99"] {
        assert!(
            r["replication_lag_ms"][q].as_f64().is_some_and(|v| v > 0.0),
            "{r}"
        );
    }
}

#[test]
fn cluster_flags_out_of_bounds_or_on_other_scenarios_are_refused() {
    let cases = [
        ("cluster --engines 4", "--engines must be in 1..=3"),
        ("cluster --nats 2", "--nats must be 1 or 3"),
        (
            "cluster --engines 1",
            "--shape full needs --engines 2 or more",
        ),
        (
            "cluster --latency-ms 10001",
            "--latency-ms must be in 0..=10000",
        ),
        ("cluster --kill-at 1", "--kill-at must be in [0, 1)"),
        ("group --latency-ms 5", "apply to the cluster scenario only"),
        (
            "group --nats 3",
            "--nats must be 1 outside the cluster scenario",
        ),
        (
            "ceiling --nats 1",
            "--nats needs a scenario that drives an engine",
        ),
    ];
    for (args, message) in cases {
        let args: Vec<&str> = ["run", "--scenario"]
            .into_iter()
            .chain(args.split_whitespace())
            .collect();
        let out = loadgen(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(err.contains(message), "{args:?}: {err}");
    }
}
