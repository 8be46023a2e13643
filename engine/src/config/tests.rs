use super::*;

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
    let env = vec![
        ("FANFARE_RETRY_BASE_MS".to_string(), "10".to_string()),
        ("FANFARE_RETRY_MAX_MS".into(), "5".into()),
        ("FANFARE_BREAKER_FAILURES".into(), "3".into()),
        ("FANFARE_TRANSPORT_PING_INTERVAL_S".into(), "0".into()),
        ("FANFARE_FCM_MAX_RPS".into(), "50".into()),
        ("FANFARE_VIVO_MAX_IN_FLIGHT".into(), "0".into()),
    ];
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
    let env = vec![
        ("FANFARE_API_LISTEN".to_string(), "127.0.0.1:0".to_string()),
        ("FANFARE_MESSAGES_DEDUP_WINDOW_S".into(), "5".into()),
        ("FANFARE_APNS_TOPIC".into(), "com.x".into()),
        ("PATH".into(), "/bin".into()),
    ];
    let c = Config::load(None, env).unwrap();
    assert_eq!(c.api.listen, "127.0.0.1:0");
    assert_eq!(c.messages.dedup_window_s, 5);
    assert_eq!(c.apns.topic.as_deref(), Some("com.x"));
}

#[test]
fn vendor_sections_validate_and_hide_secrets() {
    let env = vec![
        ("FANFARE_HUAWEI_APP_ID".to_string(), "1234".to_string()),
        ("FANFARE_VIVO_APP_ID".into(), "abc".into()),
        ("FANFARE_XIAOMI_APP_SECRET".into(), "xs3cret".into()),
        ("FANFARE_XIAOMI_PACKAGE_NAME".into(), "com.x".into()),
        ("FANFARE_OPPO_CONNECTIONS".into(), "0".into()),
    ];
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
    let env = vec![(
        "FANFARE_API_TOKEN".to_string(),
        "1234567890123456789".to_string(),
    )];
    let c = Config::load(None, env).expect("an all-digit token is a valid token");
    assert_eq!(c.api.token.as_deref(), Some("1234567890123456789"));
    // Numbers still read as numbers where the key is a number.
    let env = vec![("FANFARE_API_MAX_CONNECTIONS".to_string(), "12".to_string())];
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
    let env = vec![(
        "FANFARE_API_MAX_CONNECTIONS".to_string(),
        "many".to_string(),
    )];
    let e = Config::load(None, env).unwrap_err().to_string();
    assert!(
        e.contains("FANFARE_API_MAX_CONNECTIONS") && e.contains("api.max_connections"),
        "{e}"
    );
    assert!(e.contains("many"), "{e}");
}

#[test]
fn unknown_keys_and_bad_values_are_explained() {
    let env = vec![("FANFARE_API_LISTN".to_string(), "x".to_string())];
    let e = Config::load(None, env).unwrap_err().to_string();
    assert!(e.contains("listn"), "{e}");
    let env = vec![("FANFARE_API_LISTEN".to_string(), "0.0.0.0:80".to_string())];
    let c = Config::load(None, env).unwrap();
    let p = c.problems();
    assert!(p.iter().any(|m| m.contains("api.token")), "{p:?}");
}
