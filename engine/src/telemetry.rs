//! Counters and their two renderings: JSON for `/v1/stats`, Prometheus text for
//! `/metrics`. Counters are relaxed atomics indexed by provider; no label carries a
//! user id or token.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use serde_json::{json, Map, Value};

use crate::fanout::plan::Lane;
use crate::providers::Cause;
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
    /// Verdicts that the token is dead (the binding is then removed if it still holds
    /// that token; see `invalid_tokens_removed`).
    pub dead_tokens: AtomicU64,
    /// Pushes the vendor rejected for good (never retried), by [`Cause`].
    pub rejected: [AtomicU64; Cause::COUNT],
    /// Sends whose fate is unknown (reset or timeout after the request went out);
    /// they are resent, so each may have become a duplicate.
    pub unknown_fate: AtomicU64,
    /// Sends the vendor provably did not process (GOAWAY above the last stream id,
    /// REFUSED_STREAM, connect failure), resent without counting an attempt.
    pub resent_unprocessed: AtomicU64,
    /// 429-style answers (app or device throttled).
    pub throttled: AtomicU64,
}

/// Live state of one vendor lane, written by its dispatcher.
#[derive(Default)]
pub struct LaneStats {
    /// Sends in flight now.
    pub in_flight: AtomicU64,
    /// Pushes waiting in the retry delay queue.
    pub waiting_retry: AtomicU64,
    /// [`BreakerState`] as a number.
    pub breaker: AtomicU8,
    /// Times the breaker opened.
    pub breaker_opened: AtomicU64,
    /// Current pace in requests per second; 0 = unpaced.
    pub pace_rps: AtomicU64,
}

/// A lane's circuit breaker state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl BreakerState {
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Open,
            2 => Self::HalfOpen,
            _ => Self::Closed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Default)]
pub struct Stats {
    pub messages_accepted: AtomicU64,
    pub messages_duplicate: AtomicU64,
    pub calls_accepted: AtomicU64,
    pub requests_shed: AtomicU64,
    providers: [ProviderStats; ProviderKind::ALL.len()],
    lanes: [LaneStats; Lane::COUNT],
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

    #[inline]
    pub fn lane(&self, l: Lane) -> &LaneStats {
        &self.lanes[l as usize]
    }
}

/// Gauges read from the rest of the engine at render time.
pub struct Gauges {
    pub bindings: usize,
    pub users: usize,
    pub online_users: usize,
    pub groups: usize,
    /// Durable writes refused because the log could not take them (since start).
    pub storage_refused_writes: u64,
    /// Whether durable writes are failing now (`/readyz` answers 503 meanwhile).
    pub storage_writes_failing: bool,
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
                    "dead_tokens": load(&s.dead_tokens),
                    "unknown_fate": load(&s.unknown_fate),
                    "resent_unprocessed": load(&s.resent_unprocessed),
                    "throttled": load(&s.throttled),
                    "rejected": Cause::ALL
                        .iter()
                        .filter(|c| load(&s.rejected[c.index()]) > 0)
                        .map(|c| (c.as_str().to_string(), json!(load(&s.rejected[c.index()]))))
                        .collect::<Map<String, Value>>(),
                }),
            );
        }
        let lanes: Map<String, Value> = Lane::ALL
            .iter()
            .map(|l| {
                let s = self.lane(*l);
                let depth = g.queues.iter().find(|(n, _)| *n == l.name()).map_or(0, |q| q.1);
                (
                    l.name().to_string(),
                    json!({
                        "queue_depth": depth,
                        "in_flight": load(&s.in_flight),
                        "waiting_retry": load(&s.waiting_retry),
                        "breaker": BreakerState::from_u8(s.breaker.load(Ordering::Relaxed)).as_str(),
                        "breaker_opened": load(&s.breaker_opened),
                        "pace_rps": load(&s.pace_rps),
                    }),
                )
            })
            .collect();
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
            "storage": {
                "writes_failing": g.storage_writes_failing,
                "refused_writes": g.storage_refused_writes,
            },
            "messages_accepted": load(&self.messages_accepted),
            "messages_duplicate": load(&self.messages_duplicate),
            "calls_accepted": load(&self.calls_accepted),
            "requests_shed": load(&self.requests_shed),
            "invalid_tokens_removed": ProviderKind::ALL.iter().map(|p| load(&self.provider(*p).invalid_tokens_removed)).sum::<u64>(),
            "providers": providers,
            "queue_depth": queues,
            "lanes": lanes,
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
        gauge(
            "storage_writes_failing",
            "1 while durable writes are failing (full disk, ...), else 0.",
            u64::from(g.storage_writes_failing),
        );
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP fanfare_{name} {help}\n# TYPE fanfare_{name} counter\nfanfare_{name} {v}"
            );
        };
        counter(
            "storage_refused_writes_total",
            "Durable writes refused because the log could not take them.",
            g.storage_refused_writes,
        );
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
        let fields: [(&str, &str, Field); 11] = [
            (
                "pushes_dead_tokens_total",
                "Verdicts that a device token is dead.",
                |s| &s.dead_tokens,
            ),
            (
                "pushes_unknown_fate_total",
                "Sends with an unknown fate (reset or timeout after sending), resent.",
                |s| &s.unknown_fate,
            ),
            (
                "pushes_resent_unprocessed_total",
                "Sends the vendor provably did not process, resent without an attempt.",
                |s| &s.resent_unprocessed,
            ),
            (
                "pushes_throttled_total",
                "429-style throttling answers.",
                |s| &s.throttled,
            ),
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
        let _ = writeln!(
            out,
            "# HELP fanfare_pushes_rejected_total Pushes rejected for good, by cause.\n# TYPE fanfare_pushes_rejected_total counter"
        );
        for p in ProviderKind::ALL {
            let s = self.provider(p);
            for c in Cause::ALL {
                let v = load(&s.rejected[c.index()]);
                if v > 0 {
                    let _ = writeln!(
                        out,
                        "fanfare_pushes_rejected_total{{provider=\"{}\",cause=\"{}\"}} {v}",
                        p.as_str(),
                        c.as_str()
                    );
                }
            }
        }
        type LaneField = fn(&LaneStats) -> u64;
        let lane_fields: [(&str, &str, &str, LaneField); 5] = [
            ("lane_in_flight", "gauge", "Sends in flight.", |s| {
                load(&s.in_flight)
            }),
            (
                "lane_waiting_retry",
                "gauge",
                "Pushes waiting in the retry delay queue.",
                |s| load(&s.waiting_retry),
            ),
            (
                "breaker_state",
                "gauge",
                "Circuit breaker: 0 closed, 1 open, 2 half-open.",
                |s| u64::from(s.breaker.load(Ordering::Relaxed)),
            ),
            (
                "breaker_opened_total",
                "counter",
                "Times the circuit breaker opened.",
                |s| load(&s.breaker_opened),
            ),
            (
                "lane_pace_rps",
                "gauge",
                "Current pace in requests/s (0 = unpaced).",
                |s| load(&s.pace_rps),
            ),
        ];
        for (name, kind, help, f) in lane_fields {
            let _ = writeln!(
                out,
                "# HELP fanfare_{name} {help}\n# TYPE fanfare_{name} {kind}"
            );
            for l in Lane::ALL {
                let _ = writeln!(
                    out,
                    "fanfare_{name}{{vendor=\"{}\"}} {}",
                    l.name(),
                    f(self.lane(l))
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
