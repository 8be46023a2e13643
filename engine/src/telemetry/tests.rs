//! The counters as `/v1/stats` shows them, and the failure log fed by real verdicts.

use super::*;
use crate::clock::Clock;
use crate::providers::token;

fn gauges() -> Gauges {
    Gauges {
        bindings: 0,
        users: 0,
        online_users: 0,
        groups: 0,
        storage_refused_writes: 0,
        storage_writes_failing: false,
        queues: Vec::new(),
        storage: None,
        now_unix_ms: 0,
    }
}

#[test]
fn every_rejection_cause_is_in_v1_stats_from_the_start_at_zero() {
    let stats = Stats::default();
    let v = stats.to_json(&gauges());
    for p in ProviderKind::ALL {
        let rejected = v["providers"][p.as_str()]["rejected"]
            .as_object()
            .unwrap_or_else(|| panic!("providers.{}.rejected in {v}", p.as_str()));
        assert_eq!(rejected.len(), Cause::ALL.len(), "{rejected:?}");
        for c in Cause::ALL {
            assert_eq!(rejected[c.as_str()], 0, "{}.{}", p.as_str(), c.as_str());
        }
    }
    let bad_topic = &stats.provider(ProviderKind::Apns).rejected[Cause::BadTopic.index()];
    inc(bad_topic);
    let v = stats.to_json(&gauges());
    assert_eq!(v["providers"]["apns"]["rejected"]["bad_topic"], 1);
    // `/metrics` has the same series.
    let text = stats.to_prometheus(&gauges());
    let series = text
        .lines()
        .filter(|l| l.starts_with("fanfare_pushes_rejected_total{"))
        .count();
    assert_eq!(series, ProviderKind::ALL.len() * Cause::ALL.len());
}

#[test]
fn a_refused_access_token_is_logged_once_per_period_not_per_push() {
    let (log, _guard) = CapturedLog::install();
    let stats = Stats::default();
    let clock = Clock::new();
    let refused = token::Error::Refused {
        uri: "https://oauth-login.cloud.huawei.com/oauth2/v3/token".into(),
        error: "error 1101: invalid client secret".into(),
    };
    // What the dispatcher does with each push of a lane whose credentials are refused.
    for _ in 0..50 {
        let v = token::verdict("huawei", &refused);
        stats.verdict(ProviderKind::Huawei, &v, quanta::Instant::now(), &clock);
    }
    let text = log.text();
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{text}");
    let line = warnings[0];
    assert!(line.contains("provider=\"huawei\""), "{line}");
    assert!(line.contains("cause=\"provider_auth\""), "{line}");
    assert!(line.contains("invalid client secret"), "{line}");
}
