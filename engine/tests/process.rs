//! The `fanfare` binary as a process: SIGHUP re-reads its config file, and each
//! message's final counts reach its log as one INFO line (read from the process's
//! output, not from a subscriber installed in the test).

mod common;

use std::path::Path;

use common::{call, config_file, http, Proc, DEADLINE};
use serde_json::{json, Value};

/// Xiaomi "configured" towards a closed port: enough to queue a push (which a `ttl_s`
/// of 0 then ends as expired, without a vendor).
const XIAOMI: &str = "[xiaomi]\napp_secret = \"not-a-real-secret\"\npackage_name = \"com.x\"\n\
                      endpoint = \"https://127.0.0.1:1\"\n";

fn write_config(dir: &Path, more: &str) -> std::path::PathBuf {
    let path = config_file(dir, "none", "");
    let mut text = std::fs::read_to_string(&path).expect("config readable");
    text.push_str(more);
    std::fs::write(&path, text).expect("config written");
    path
}

/// `POST /v1/messages` of `resources_id` to `u1`, with a push that is worthless at once.
async fn message(base: &str, id: &str, resources_id: Option<&str>) -> (u16, Value) {
    let mut push = json!({"title": "t", "content": "c", "ttl_s": 0});
    if let Some(r) = resources_id {
        push["resources_id"] = r.into();
    }
    let body = json!({"message_id": id, "sender_id": "u0", "conversation_type": "peer",
                      "conversation_id": "u1", "push": push});
    call(&http(), base, "POST", "/v1/messages", Some(body))
        .await
        .expect("the API answers")
}

fn hangup(proc: &Proc) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &proc.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[tokio::test]
async fn sighup_makes_an_engine_process_reread_its_config_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(dir.path(), XIAOMI);
    let proc = Proc::spawn_until(&path, "/healthz").await;
    let (s, v) = message(&proc.base, "m1", Some("late")).await;
    assert_eq!(s, 400, "no [resources.late] yet: {v}");

    write_config(
        dir.path(),
        &format!("{XIAOMI}[resources.late.xiaomi]\nchannel_id = \"late\"\n"),
    );
    hangup(&proc);
    proc.wait_log("configuration reloaded");
    let (s, v) = message(&proc.base, "m2", Some("late")).await;
    assert_eq!(s, 202, "the rule set read on SIGHUP: {v}");

    // A file with a problem is refused; the running configuration stays.
    write_config(dir.path(), "[retry]\nmax_attempts = 0\n");
    hangup(&proc);
    proc.wait_log("configuration reload refused");
    assert!(proc.log().contains("retry.max_attempts"), "{}", proc.log());
    let (s, v) = message(&proc.base, "m3", Some("late")).await;
    assert_eq!(s, 202, "still the old configuration: {v}");
}

#[tokio::test]
async fn each_message_ends_with_one_info_line_of_its_id_and_final_counts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_config(dir.path(), XIAOMI);
    let proc = Proc::spawn_until(&path, "/healthz").await;
    let bind = json!({"user_id": "u1", "provider": "xiaomi",
                      "token": format!("{}{}", "12345678", "Ab+/".repeat(14))});
    let (s, v) = call(&http(), &proc.base, "PUT", "/v1/push-ids/d1", Some(bind))
        .await
        .expect("the API answers");
    assert_eq!(s, 200, "{v}");
    let (s, v) = message(&proc.base, "m-logged", None).await;
    assert_eq!((s, &v["targets"]), (202, &json!(1)), "{v}");
    let deadline = std::time::Instant::now() + DEADLINE;
    let line = loop {
        let log = proc.log();
        if let Some(line) = log
            .lines()
            .find(|l| l.contains("m-logged") && l.contains("INFO"))
        {
            break line.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no ledger line: {log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    for field in [
        "kind=\"message\"",
        "id=m-logged",
        "targets=1",
        "delivered=0",
        "expired=1",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
    let lines = proc
        .log()
        .lines()
        .filter(|l| l.contains("m-logged"))
        .count();
    assert_eq!(lines, 1, "one line per message: {}", proc.log());
}
