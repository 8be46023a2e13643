use super::*;
use std::time::Duration;

#[test]
fn defaults_are_valid() {
    let c = Config::load(None, Vec::new()).unwrap();
    assert_eq!(c.api.listen, "127.0.0.1:7070");
    assert_eq!(c.messages.dedup_window_s, 600);
    assert!(c.problems().is_empty(), "{:?}", c.problems());
}

#[test]
fn retry_breaker_transport_and_pace_keys() {
    let c = Config::load(None, Vec::new()).unwrap();
    assert_eq!(c.fcm.max_rps, 10_000, "FCM's 600k/min quota by default");
    assert_eq!(c.apns.max_rps, 0);
    assert_eq!(c.retry.max_attempts, 8);
    let env = vars(&[
        ("FANFARE_RETRY_BASE_MS", "10"),
        ("FANFARE_RETRY_MAX_MS", "5"),
        ("FANFARE_BREAKER_FAILURES", "3"),
        ("FANFARE_TRANSPORT_PING_INTERVAL_S", "0"),
        ("FANFARE_FCM_MAX_RPS", "50"),
        ("FANFARE_VIVO_MAX_IN_FLIGHT", "0"),
    ]);
    let c = Config::load(None, env).unwrap();
    assert_eq!(c.breaker.failures, 3);
    assert_eq!(c.transport.ping_interval_s, 0);
    assert_eq!(c.lane_limits()[1].1.max_rps, 50);
    let p = c.problems();
    assert!(p.iter().any(|m| m.contains("retry.max_ms")), "{p:?}");
    assert!(p.iter().any(|m| m.contains("vivo.max_in_flight")), "{p:?}");
}

#[test]
fn env_overrides_keys() {
    let env = vars(&[
        ("FANFARE_API_LISTEN", "127.0.0.1:0"),
        ("FANFARE_MESSAGES_DEDUP_WINDOW_S", "5"),
        ("FANFARE_APNS_TOPIC", "com.x"),
        ("PATH", "/bin"),
    ]);
    let c = Config::load(None, env).unwrap();
    assert_eq!(c.api.listen, "127.0.0.1:0");
    assert_eq!(c.messages.dedup_window_s, 5);
    assert_eq!(c.apns.topic.as_deref(), Some("com.x"));
}

#[test]
fn vendor_sections_validate_and_hide_secrets() {
    let env = vars(&[
        ("FANFARE_HUAWEI_APP_ID", "1234"),
        ("FANFARE_VIVO_APP_ID", "abc"),
        ("FANFARE_XIAOMI_APP_SECRET", "xs3cret"),
        ("FANFARE_XIAOMI_PACKAGE_NAME", "com.x"),
        ("FANFARE_OPPO_CONNECTIONS", "0"),
    ]);
    let c = Config::load(None, env).unwrap();
    let p = c.problems();
    assert!(
        p.iter()
            .any(|m| m.contains("huawei.client_secret is required")),
        "{p:?}"
    );
    assert!(p.iter().any(|m| m.contains("vivo.app_id")), "{p:?}");
    assert!(p.iter().any(|m| m.contains("oppo.connections")), "{p:?}");
    assert!(!p.iter().any(|m| m.contains("xiaomi")), "{p:?}");
    assert!(!format!("{c:?}").contains("xs3cret"));
}

#[test]
fn an_all_digit_api_token_from_the_environment_is_a_string() {
    let env = vars(&[("FANFARE_API_TOKEN", "1234567890123456789")]);
    let c = Config::load(None, env).expect("an all-digit token is a valid token");
    assert_eq!(c.api.token.as_deref(), Some("1234567890123456789"));
    // Numbers still read as numbers where the key is a number.
    let env = vars(&[("FANFARE_API_MAX_CONNECTIONS", "12")]);
    assert_eq!(Config::load(None, env).unwrap().api.max_connections, 12);
}

#[test]
fn a_bad_secret_value_names_its_key_but_not_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fanfare.toml");
    for (toml, key) in [
        ("[api]\ntoken = [\"hunter2hunter2hunter2\"]\n", "api.token"),
        ("[api]\ntoken = 98765432109876\n", "api.token"),
        (
            "[xiaomi]\napp_secret = { v = \"hunter2hunter2hunter2\" }\n",
            "xiaomi.app_secret",
        ),
    ] {
        std::fs::write(&path, toml).unwrap();
        let e = Config::load(Some(&path), Vec::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{e}");
        assert!(!e.contains("hunter2") && !e.contains("98765"), "{e}");
    }
    // A non-secret bad value is quoted, with its key.
    let env = vars(&[("FANFARE_API_MAX_CONNECTIONS", "many")]);
    let e = Config::load(None, env).unwrap_err().to_string();
    assert!(
        e.contains("FANFARE_API_MAX_CONNECTIONS") && e.contains("api.max_connections"),
        "{e}"
    );
    assert!(e.contains("many"), "{e}");
}

#[test]
fn unknown_keys_and_bad_values_are_explained() {
    let env = vars(&[("FANFARE_API_LISTN", "x")]);
    let e = Config::load(None, env).unwrap_err().to_string();
    assert!(e.contains("listn"), "{e}");
    let env = vars(&[("FANFARE_API_LISTEN", "0.0.0.0:80")]);
    let c = Config::load(None, env).unwrap();
    let p = c.problems();
    assert!(p.iter().any(|m| m.contains("api.token")), "{p:?}");
}

/// `FANFARE_*` variables as [`Config::load`] takes them.
pub(crate) fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The five OEM vendors configured with their required keys, from the environment.
pub(crate) fn oem_env() -> Vec<(String, String)> {
    vars(&[
        ("FANFARE_HUAWEI_APP_ID", "1234"),
        ("FANFARE_HUAWEI_CLIENT_SECRET", "s"),
        ("FANFARE_HONOR_APP_ID", "1234"),
        ("FANFARE_HONOR_CLIENT_ID", "c"),
        ("FANFARE_HONOR_CLIENT_SECRET", "s"),
        ("FANFARE_XIAOMI_APP_SECRET", "s"),
        ("FANFARE_XIAOMI_PACKAGE_NAME", "com.x"),
        ("FANFARE_OPPO_APP_KEY", "k"),
        ("FANFARE_OPPO_MASTER_SECRET", "s"),
        ("FANFARE_VIVO_APP_ID", "10004"),
        ("FANFARE_VIVO_APP_KEY", "k"),
        ("FANFARE_VIVO_APP_SECRET", "s"),
    ])
}

#[test]
fn validation_gives_typed_settings_with_durations_and_every_vendor_under_transport() {
    let mut env = oem_env();
    env.extend(vars(&[
        ("FANFARE_TRANSPORT_REQUEST_TIMEOUT_MS", "1234"),
        ("FANFARE_TRANSPORT_PING_INTERVAL_S", "0"),
        ("FANFARE_OPPO_CONNECTIONS", "3"),
        ("FANFARE_RETRY_BASE_MS", "40"),
        ("FANFARE_BREAKER_OPEN_MS", "300"),
    ]));
    let s = Config::load(None, env).unwrap().validate().unwrap();
    assert_eq!(s.delivery.retry.base, Duration::from_millis(40));
    assert_eq!(s.delivery.breaker.open, Duration::from_millis(300));
    let v = &s.vendors;
    let connects = [
        ("huawei", v.huawei.as_ref().map(|s| &s.connect)),
        ("honor", v.honor.as_ref().map(|s| &s.connect)),
        ("xiaomi", v.xiaomi.as_ref().map(|s| &s.connect)),
        ("oppo", v.oppo.as_ref().map(|s| &s.connect)),
        ("vivo", v.vivo.as_ref().map(|s| &s.connect)),
    ];
    for (vendor, connect) in connects {
        let pool = &connect
            .unwrap_or_else(|| panic!("{vendor} is configured"))
            .pool;
        assert_eq!(
            pool.request_timeout,
            Duration::from_millis(1234),
            "{vendor}"
        );
        assert_eq!(pool.ping_interval, None, "{vendor}");
    }
    assert_eq!(v.oppo.as_ref().unwrap().connect.pool.connections, 3);
    assert_eq!(v.vivo.as_ref().unwrap().app_id, 10004);
    assert!(v.apns.is_none() && v.fcm.is_none() && v.webpush.is_none());
}

#[test]
fn problems_the_clients_used_to_find_only_at_start_up_are_listed_by_check_config() {
    let mut env = oem_env();
    for (key, value) in [
        ("FANFARE_XIAOMI_APP_SECRET", "bad\u{7f}secret"),
        ("FANFARE_VIVO_APP_ID", "123456789012345678901234567890"),
    ] {
        env.retain(|(k, _)| k != key);
        env.push((key.into(), value.into()));
    }
    let c = Config::load(None, env).unwrap();
    let p = c.problems();
    assert!(
        p.iter()
            .any(|m| m == "xiaomi.app_secret is not a valid header value"),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|m| m.starts_with("vivo.app_id") && m.contains("numeric AppID")),
        "{p:?}"
    );
    assert!(!p.iter().any(|m| m.contains("secret\u{7f}")), "{p:?}");
    let Err(Error::Invalid(listed)) = c.validate() else {
        panic!("a config with problems does not validate");
    };
    assert_eq!(listed, p, "validate reports what check-config lists");
}

#[test]
fn a_required_key_is_reported_once_and_a_stray_key_names_its_switch() {
    let env = vars(&[
        ("FANFARE_HONOR_APP_ID", "1"),
        ("FANFARE_OPPO_MASTER_SECRET", "s"),
    ]);
    let p = Config::load(None, env).unwrap().problems();
    let count = |needle: &str| p.iter().filter(|m| m.contains(needle)).count();
    assert_eq!(
        count("honor.client_id is required when honor.app_id is set"),
        1,
        "{p:?}"
    );
    assert_eq!(count("honor.client_secret is required"), 1, "{p:?}");
    assert_eq!(
        count("oppo.master_secret is set but oppo.app_key is not"),
        1,
        "{p:?}"
    );
    assert_eq!(p.len(), 3, "{p:?}");
}

#[test]
fn a_vendor_switched_off_lists_its_set_keys_in_one_problem_and_one_switched_on_each_missing_key() {
    let mut problems = Vec::new();
    let mut check = Check::new("v", &mut problems);
    let mut needs = check.needs("on", None::<String>);
    assert_eq!(needs.key("a", &Some("x".to_string())), None);
    assert_eq!(needs.key("b", &None::<String>), None);
    assert_eq!(needs.key("c", &Some("y".to_string())), None);
    assert_eq!(needs.finish(), None);
    let mut needs = check.needs("on", Some(7));
    assert_eq!(
        needs.key("a", &Some("x".to_string())),
        Some("x".to_string())
    );
    assert_eq!(needs.key("b", &None::<String>), None);
    assert_eq!(
        needs.key("c", &Some(String::new())),
        None,
        "empty is missing"
    );
    assert_eq!(needs.finish(), Some(7));
    assert_eq!(
        problems,
        [
            "v.a/c are set but v.on is not",
            "v.b is required when v.on is set",
            "v.c is required when v.on is set",
        ]
    );
}

#[test]
fn a_loaded_key_in_validated_settings_is_redacted_in_debug() {
    assert_eq!(format!("{:?}", Redacted("private key bytes")), "<redacted>");
}

/// Every key path the file format knows, found by asking serde: a table with
/// `deny_unknown_fields` lists its keys when given an unknown one. A map of tables
/// (`[resources.<id>]`) shows as `<id>`. Bounded by the depth of the format.
pub(crate) fn known_keys() -> Vec<String> {
    const PROBE: &str = "zz_probe";
    /// `path` (segments) with `leaf` at its end, as a document.
    fn doc(path: &[String], leaf: toml::Value) -> toml::Value {
        path.iter().rev().fold(leaf, |v, k| {
            let key = if k == "<id>" { "id" } else { k.as_str() };
            toml::Value::Table(toml::Table::from_iter([(key.to_string(), v)]))
        })
    }
    /// The keys of the table at `path`, or None when it is not a table of known keys.
    fn keys_of(path: &[String]) -> Option<Vec<String>> {
        let leaf = toml::Value::Table(toml::Table::from_iter([(
            PROBE.to_string(),
            toml::Value::Integer(0),
        )]));
        let e = serde_path_to_error::deserialize::<_, Config>(doc(path, leaf)).err()?;
        let m = e.inner().message().to_string();
        let rest = m.strip_prefix(&format!("unknown field `{PROBE}`, expected "))?;
        Some(
            rest.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect(),
        )
    }
    fn walk(path: &mut Vec<String>, out: &mut Vec<String>) {
        if path.len() > 6 {
            return;
        }
        if let Some(keys) = keys_of(path) {
            for k in keys {
                path.push(k);
                walk(path, out);
                path.pop();
            }
            return;
        }
        // A map of tables: its entries are tables of known keys.
        path.push("<id>".into());
        if keys_of(path).is_some() {
            walk(path, out);
            path.pop();
            return;
        }
        path.pop();
        out.push(path.join("."));
    }
    let mut out = Vec::new();
    walk(&mut Vec::new(), &mut out);
    out
}

/// The `section.key` paths `reference.toml` lists, set or commented out; a rule set
/// id in a `[resources.<id>...]` header and an app id in `[apps.<id>]` read as `<id>`.
fn reference_keys() -> Vec<String> {
    let mut header = String::new();
    let mut out = Vec::new();
    for line in REFERENCE.lines() {
        let line = line.trim_start_matches('#').trim();
        if let Some(h) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let mut parts: Vec<&str> = h.split('.').collect();
            if parts.len() > 2 && parts[0] == "resources" {
                parts[1] = "<id>";
            }
            header = parts.join(".");
            if h.starts_with("apps.") {
                // `[apps."com.example.other"]`: an app id may hold dots.
                header = "apps.<id>".into();
            }
        } else if let Some((key, _)) = line.split_once(" = ") {
            let is_key = key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if is_key {
                out.push(format!("{header}.{key}"));
            }
        }
    }
    out
}

#[test]
fn the_reference_lists_every_key_the_format_knows_and_no_other() {
    let known = known_keys();
    let listed = reference_keys();
    let missing: Vec<_> = known.iter().filter(|k| !listed.contains(k)).collect();
    let extra: Vec<_> = listed.iter().filter(|k| !known.contains(k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "config/reference.toml is out of date: missing {missing:?}, unknown {extra:?}"
    );
}

#[test]
fn the_reference_sets_every_key_to_its_default() {
    let table: toml::Table = REFERENCE.parse().expect("the reference is TOML");
    let parsed = Config::deserialize(toml::Value::Table(table)).expect("its keys are known");
    assert_eq!(format!("{parsed:#?}"), format!("{:#?}", Config::default()));
}
