//! The `fanfare` binary's `check-config` explains every problem of a file.

use std::process::Command;

fn check(toml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fanfare.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fanfare"))
        .arg("check-config")
        .arg(&path)
        .env_clear()
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn a_good_file_passes() {
    let (ok, out) = check("[api]\nlisten = \"127.0.0.1:7171\"\n[messages]\ndedup_window_s = 30\n");
    assert!(ok, "{out}");
    assert!(out.contains("ok"));
}

#[test]
fn every_problem_is_listed() {
    let (ok, out) = check(
        "[api]\nlisten = \"0.0.0.0:80\"\n[apns]\nkey_file = \"/nonexistent/AuthKey.p8\"\nconnections = 0\n[fcm]\nendpoint = \"ftp://x\"\n",
    );
    assert!(!ok);
    for needle in [
        "api.token",
        "apns.key_id",
        "apns.team_id",
        "apns.topic",
        "apns.key_file",
        "apns.connections",
        "fcm.endpoint",
    ] {
        assert!(out.contains(needle), "{needle} missing from:\n{out}");
    }
}

#[test]
fn unknown_keys_and_syntax_errors_are_named() {
    let (ok, out) = check("[api]\nlisen = \"127.0.0.1:1\"\n");
    assert!(!ok);
    assert!(out.contains("lisen"), "{out}");
    let (ok, out) = check("[api\n");
    assert!(!ok);
    assert!(out.contains("not valid TOML"), "{out}");
}

#[test]
fn secrets_do_not_leak_into_errors() {
    let dir = tempfile::tempdir().unwrap();
    let sa = dir.path().join("sa.json");
    std::fs::write(&sa, r#"{"type":"service_account","project_id":"p","client_email":"e@x","token_uri":"https://t/token","private_key":"-----BEGIN PRIVATE KEY-----\nTOPSECRETMATERIAL\n-----END PRIVATE KEY-----\n"}"#).unwrap();
    let (ok, out) = check(&format!(
        "[fcm]\nservice_account_file = \"{}\"\n[api]\ntoken = \"hunter2-api-token\"\n",
        sa.display()
    ));
    assert!(!ok);
    assert!(out.contains("private_key"), "{out}");
    assert!(!out.contains("TOPSECRET"), "key material leaked: {out}");
    assert!(!out.contains("hunter2"), "api token leaked: {out}");
}
