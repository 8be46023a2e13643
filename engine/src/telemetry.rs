//! Counters and their two renderings: JSON for `/v1/stats`, Prometheus text for
//! `/metrics`. Counters are relaxed atomics indexed by provider; no label carries a
//! user id or token.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Map, Value};

use crate::state::ProviderKind;

#[derive(Default)]
pub struct ProviderStats {
    /// Requests sent to the vendor (each attempt counts).
    pub sent: AtomicU64,
    pub delivered: AtomicU64,
    /// Pushes that finally failed (rejected, dead token, or retries exhausted).
    pub failed: AtomicU64,
    pub retried: AtomicU64,
    pub invalid_tokens_removed: AtomicU64,
    /// Pushes not sent because the vendor has no credentials configured.
    pub unconfigured: AtomicU64,
    /// Pushes dropped because they expired before they could be delivered.
    pub expired: AtomicU64,
}

#[derive(Default)]
pub struct Stats {
    pub messages_accepted: AtomicU64,
    pub messages_duplicate: AtomicU64,
    pub calls_accepted: AtomicU64,
    pub requests_shed: AtomicU64,
    providers: [ProviderStats; ProviderKind::ALL.len()],
}

#[inline]
pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Stats {
    #[inline]
    pub fn provider(&self, p: ProviderKind) -> &ProviderStats {
        &self.providers[p as usize]
    }
}

/// Gauges read from the rest of the engine at render time.
pub struct Gauges {
    pub bindings: usize,
    pub users: usize,
    pub online_users: usize,
    pub groups: usize,
    /// (queue name, queued device pushes)
    pub queues: Vec<(&'static str, usize)>,
}

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl Stats {
    pub fn to_json(&self, g: &Gauges) -> Value {
        let mut providers = Map::new();
        for p in ProviderKind::ALL {
            let s = self.provider(p);
            providers.insert(
                p.as_str().into(),
                json!({
                    "sent": load(&s.sent),
                    "delivered": load(&s.delivered),
                    "failed": load(&s.failed),
                    "retried": load(&s.retried),
                    "invalid_tokens_removed": load(&s.invalid_tokens_removed),
                    "unconfigured": load(&s.unconfigured),
                    "expired": load(&s.expired),
                }),
            );
        }
        let queues: Map<String, Value> = g
            .queues
            .iter()
            .map(|(n, d)| (n.to_string(), json!(d)))
            .collect();
        json!({
            "bindings": g.bindings,
            "users": g.users,
            "online_users": g.online_users,
            "groups": g.groups,
            "messages_accepted": load(&self.messages_accepted),
            "messages_duplicate": load(&self.messages_duplicate),
            "calls_accepted": load(&self.calls_accepted),
            "requests_shed": load(&self.requests_shed),
            "invalid_tokens_removed": ProviderKind::ALL.iter().map(|p| load(&self.provider(*p).invalid_tokens_removed)).sum::<u64>(),
            "providers": providers,
            "queue_depth": queues,
        })
    }

    pub fn to_prometheus(&self, g: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let mut gauge = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP fanfare_{name} {help}\n# TYPE fanfare_{name} gauge\nfanfare_{name} {v}"
            );
        };
        gauge("bindings", "Push IDs bound.", g.bindings as u64);
        gauge("users", "Users known.", g.users as u64);
        gauge("online_users", "Users online now.", g.online_users as u64);
        gauge("groups", "Groups.", g.groups as u64);
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP fanfare_{name} {help}\n# TYPE fanfare_{name} counter\nfanfare_{name} {v}"
            );
        };
        counter(
            "messages_accepted_total",
            "Messages accepted.",
            load(&self.messages_accepted),
        );
        counter(
            "messages_duplicate_total",
            "Repeated message ids not pushed again.",
            load(&self.messages_duplicate),
        );
        counter(
            "calls_accepted_total",
            "Call invitations accepted.",
            load(&self.calls_accepted),
        );
        counter(
            "requests_shed_total",
            "Requests answered 429 overloaded.",
            load(&self.requests_shed),
        );
        type Field = fn(&ProviderStats) -> &AtomicU64;
        let fields: [(&str, &str, Field); 7] = [
            ("pushes_sent_total", "Requests sent to the vendor.", |s| {
                &s.sent
            }),
            (
                "pushes_delivered_total",
                "Pushes the vendor accepted.",
                |s| &s.delivered,
            ),
            ("pushes_failed_total", "Pushes that finally failed.", |s| {
                &s.failed
            }),
            ("pushes_retried_total", "Push attempts retried.", |s| {
                &s.retried
            }),
            (
                "invalid_tokens_removed_total",
                "Bindings removed because the vendor said the token is dead.",
                |s| &s.invalid_tokens_removed,
            ),
            (
                "pushes_unconfigured_total",
                "Pushes for vendors without credentials.",
                |s| &s.unconfigured,
            ),
            (
                "pushes_expired_total",
                "Pushes dropped after their expiry.",
                |s| &s.expired,
            ),
        ];
        for (name, help, f) in fields {
            let _ = writeln!(
                out,
                "# HELP fanfare_{name} {help}\n# TYPE fanfare_{name} counter"
            );
            for p in ProviderKind::ALL {
                let _ = writeln!(
                    out,
                    "fanfare_{name}{{provider=\"{}\"}} {}",
                    p.as_str(),
                    load(f(self.provider(p)))
                );
            }
        }
        let _ = writeln!(out, "# HELP fanfare_queue_depth Device pushes queued or in flight.\n# TYPE fanfare_queue_depth gauge");
        for (name, d) in &g.queues {
            let _ = writeln!(out, "fanfare_queue_depth{{vendor=\"{name}\"}} {d}");
        }
        out
    }
}
