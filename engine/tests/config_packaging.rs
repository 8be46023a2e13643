//! The configuration as an operator meets it through the `fanfare` binary: errors
//! with their line, column and key path, all at once; an environment variable named
//! as the source of its own error; `check-config` trying the storage dir;
//! `fanfare config default`; the example config and the systemd unit in `contrib/`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fanfare(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fanfare"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("the fanfare binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn contrib(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib")
        .join(name)
}

/// `toml` written to a file in a temp dir whose `data` subdir is the storage dir.
fn config_file(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join("fanfare.toml");
    let data = dir.join("data");
    std::fs::write(&path, format!("{toml}\n[storage]\ndir = {:?}\n", data)).unwrap();
    path
}

#[test]
fn every_bad_key_is_reported_at_once_with_its_line_column_and_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(
        dir.path(),
        "[api]\nlisen = \"127.0.0.1:1\"\n\n[messages]\ndedup_window_s = 30\n\
         ttl_s = true\nqueue_capacity = \"1MB\"\n",
    );
    let (ok, _, err) = fanfare(&["check-config", file.to_str().unwrap()], &[]);
    assert!(!ok, "{err}");
    for needle in [
        "line 2, column 1: api.lisen: unknown key; did you mean listen?",
        "line 6, column 9: messages.ttl_s: expected a whole number (0 or more), found true",
        "line 7, column 18: messages.queue_capacity: expected a whole number (0 or more), found the string \"1MB\"",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
    }
    assert!(
        !err.contains("invalid type"),
        "serde's wording leaked:\n{err}"
    );
    // `serve` refuses the same file with the same list.
    let (ok, _, err) = fanfare(&["serve", "--config", file.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(
        err.contains("line 7, column 18: messages.queue_capacity"),
        "{err}"
    );
}

#[test]
fn an_environment_variable_is_named_as_the_source_of_its_own_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(dir.path(), "[api]\nlisten = \"127.0.0.1:7171\"\n");
    let (ok, _, err) = fanfare(
        &["check-config", file.to_str().unwrap()],
        &[
            ("FANFARE_API_LISTN", "127.0.0.1:1"),
            ("FANFARE_MESSAGES_QUEUE_CAPACITY", "abc"),
            ("FANFARE_API_TOKEN", "hunter2-not-a-number"),
        ],
    );
    assert!(!ok, "{err}");
    assert!(
        err.contains(
            "environment variable FANFARE_API_LISTN: no key api.listn; did you mean FANFARE_API_LISTEN?"
        ),
        "{err}"
    );
    assert!(
        err.contains("environment variable FANFARE_MESSAGES_QUEUE_CAPACITY: messages.queue_capacity: expected a whole number (0 or more), found the string \"abc\""),
        "{err}"
    );
    assert!(
        !err.contains("line "),
        "nothing is blamed on the file:\n{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn check_config_refuses_a_storage_dir_that_cannot_be_created_or_written() {
    let dir = tempfile::tempdir().unwrap();
    // Below a regular file: no directory can be made there, even by root.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let path = dir.path().join("fanfare.toml");
    let data = blocker.join("data");
    std::fs::write(&path, format!("[storage]\ndir = {data:?}\n")).unwrap();
    let (ok, _, err) = fanfare(&["check-config", path.to_str().unwrap()], &[]);
    assert!(!ok, "{err}");
    assert!(
        err.contains(&format!("storage.dir {} cannot be created", data.display())),
        "{err}"
    );
    // A usable dir passes, and the check leaves nothing behind.
    let good = dir.path().join("fresh/data");
    std::fs::write(&path, format!("[storage]\ndir = {good:?}\n")).unwrap();
    let (ok, out, err) = fanfare(&["check-config", path.to_str().unwrap()], &[]);
    assert!(ok, "{out}{err}");
    assert!(
        !dir.path().join("fresh").exists(),
        "the probe dirs are removed"
    );
}

#[test]
fn config_default_prints_a_file_that_reads_back_as_the_defaults() {
    let (ok, out, err) = fanfare(&["config", "default"], &[]);
    assert!(ok, "{err}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("defaults.toml");
    std::fs::write(&path, &out).unwrap();
    let mut from_file = fanfare::config::Config::load(Some(&path), Vec::new()).unwrap();
    // Where it was read from (what a reload re-reads) is not configuration.
    from_file.source = Default::default();
    let defaults = fanfare::config::Config::load(None, Vec::new()).unwrap();
    assert_eq!(format!("{from_file:?}"), format!("{defaults:?}"));
    assert!(
        out.contains("# Address to listen on"),
        "keys carry their docs"
    );
}

#[test]
fn the_readme_configuration_reference_is_what_config_default_prints() {
    let (_, out, _) = fanfare(&["config", "default"], &[]);
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    assert!(
        readme.contains(&format!("```toml\n{out}```")),
        "README.md's configuration reference differs from `fanfare config default`: paste its output"
    );
}

#[test]
fn the_example_config_is_valid_and_keeps_its_data_in_the_service_state_dir() {
    let path = contrib("fanfare.example.toml");
    let c = fanfare::config::Config::load(Some(&path), Vec::new()).unwrap();
    assert!(c.problems().is_empty(), "{:?}", c.problems());
    assert_eq!(c.storage.dir, Path::new("/var/lib/fanfare"));
}

#[test]
fn the_systemd_unit_is_hardened_and_keeps_state_in_var_lib_fanfare() {
    let path = contrib("fanfare.service");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut service = Vec::new();
    let mut section = "";
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s;
            continue;
        }
        let (k, v) = line.split_once('=').expect("unit lines are Key=Value");
        if section == "Service" {
            service.push((k.to_string(), v.to_string()));
        }
    }
    let get = |k: &str| {
        service
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    for (key, value) in [
        ("DynamicUser", "yes"),
        ("StateDirectory", "fanfare"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("Environment", "FANFARE_STORAGE_DIR=/var/lib/fanfare"),
    ] {
        assert_eq!(get(key), Some(value), "{key}");
    }
    assert!(get("RestrictAddressFamilies").is_some_and(|v| v.contains("AF_INET")));
    assert!(get("LimitNOFILE").is_some());
    // systemd's own checker, when this machine has it. The unit's binary path does
    // not exist here, so the binary under test stands in for it.
    let analyze = Path::new("/usr/bin/systemd-analyze");
    if analyze.exists() {
        let dir = tempfile::tempdir().unwrap();
        let unit = dir.path().join("fanfare.service");
        std::fs::write(
            &unit,
            text.replace("/usr/local/bin/fanfare", env!("CARGO_BIN_EXE_fanfare")),
        )
        .unwrap();
        let out = Command::new(analyze)
            .args(["verify", "--man=no"])
            .arg(&unit)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let about_unit: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("fanfare.service"))
            .collect();
        assert!(about_unit.is_empty(), "systemd-analyze verify: {err}");
    }
}
