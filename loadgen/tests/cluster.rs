//! The `cluster` scenario end to end on a small size: three real NATS servers and
//! three engine processes; one engine SIGKILLed mid fan-out loses no push.

use std::process::Command;

#[test]
fn the_cluster_scenario_loses_no_push_when_an_engine_is_killed_mid_fan_out() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("cluster.json");
    let out = Command::new(env!("CARGO_BIN_EXE_fanfare-loadgen"))
        .args([
            "run",
            "--scenario",
            "cluster",
            "--users",
            "2000",
            "--drain-timeout",
            "60",
        ])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
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
    for field in ["duplicates", "join_s", "binds_per_s"] {
        assert!(r[field].is_number(), "{field} in {r}");
    }
    for q in ["p50", "p99"] {
        assert!(
            r["replication_lag_ms"][q].as_f64().is_some_and(|v| v > 0.0),
            "{r}"
        );
    }
}
