//! `/metrics`: the Prometheus text format (0.0.4) of [`Stats`], the gauges read at
//! scrape time, storage figures, `fanfare_build_info` and the `process_*` metrics.
//!
//! Conventions: the vendor's label is `provider` everywhere (a lane's metrics carry
//! the lane's name, which is its first provider's: `apns` covers `apns_voip`); every
//! counter has all its series from the start, at zero; durations are `_seconds`
//! histograms with the buckets of [`super::Histogram`].

use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::api::Route;
use super::process::Process;
use super::{load, Gauges, Histogram, Stats, LANE_METRICS, PROVIDER_COUNTERS};
use crate::fanout::plan::Lane;
use crate::providers::Cause;
use crate::state::ProviderKind;

/// The `# HELP` and `# TYPE` lines of metric `fanfare_<name>`.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(
        out,
        "# HELP fanfare_{name} {help}\n# TYPE fanfare_{name} {kind}"
    );
}

/// One sample of `fanfare_<name>` with one label.
fn sample(out: &mut String, name: &str, (label, value): (&str, &str), v: u64) {
    let _ = writeln!(out, "fanfare_{name}{{{label}=\"{value}\"}} {v}");
}

/// One unlabelled sample.
fn scalar(out: &mut String, name: &str, kind: &str, help: &str, v: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "fanfare_{name} {v}");
}

impl Stats {
    pub fn to_prometheus(&self, g: &Gauges) -> String {
        let mut out = String::with_capacity(64 * 1024);
        header(
            &mut out,
            "build_info",
            "gauge",
            "Always 1; the labels say which build runs.",
        );
        let _ = writeln!(
            out,
            "fanfare_build_info{{version=\"{}\",profile=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        );
        self.counters(&mut out, g);
        self.histograms(&mut out);
        storage(&mut out, g);
        if let Some(p) = Process::read() {
            p.render(&mut out);
        }
        out
    }

    fn counters(&self, out: &mut String, g: &Gauges) {
        #[rustfmt::skip]
        let scalars: [(&str, &str, &str, u64); 15] = [
            ("bindings", "gauge", "Push IDs bound.", g.bindings as u64),
            ("users", "gauge", "Users known.", g.users as u64),
            ("online_users", "gauge", "Users online now.", g.online_users as u64),
            ("groups", "gauge", "Groups.", g.groups as u64),
            ("storage_writes_failing", "gauge", "1 while durable writes are failing (full disk, ...), else 0.", u64::from(g.storage_writes_failing)),
            ("storage_refused_writes_total", "counter", "Durable writes refused because the log could not take them.", g.storage_refused_writes),
            ("messages_accepted_total", "counter", "Messages accepted.", load(&self.messages_accepted)),
            ("messages_duplicate_total", "counter", "Repeated message ids not pushed again.", load(&self.messages_duplicate)),
            ("calls_accepted_total", "counter", "Call invitations accepted.", load(&self.calls_accepted)),
            ("requests_shed_total", "counter", "Requests answered 429 overloaded.", load(&self.requests_shed)),
            ("cluster_chunks_total", "counter", "Cluster work chunks this engine queued.", load(&self.cluster.chunks)),
            ("cluster_duplicates_total", "counter", "Targets of cluster work chunks delivered again (may repeat).", load(&self.cluster.duplicates)),
            ("feedback_overflow_total", "counter", "Feedback events dropped because the feedback queue was full.", load(&self.feedback.overflow)),
            ("feedback_batches_sent_total", "counter", "Feedback batches the receiver took.", load(&self.feedback.batches_sent)),
            ("feedback_posts_failed_total", "counter", "Feedback POSTs that failed and were retried.", load(&self.feedback.posts_failed)),
        ];
        for (name, kind, help, v) in scalars {
            scalar(out, name, kind, help, v);
        }
        for (_, name, help, f) in PROVIDER_COUNTERS {
            header(out, name, "counter", help);
            for p in ProviderKind::ALL {
                sample(
                    out,
                    name,
                    ("provider", p.as_str()),
                    load(f(self.provider(p))),
                );
            }
        }
        let rejected = "pushes_rejected_total";
        header(
            out,
            rejected,
            "counter",
            "Pushes rejected for good, by cause.",
        );
        for p in ProviderKind::ALL {
            let s = self.provider(p);
            for c in Cause::ALL {
                let v = load(&s.rejected[c.index()]);
                let (p, c) = (p.as_str(), c.as_str());
                let _ = writeln!(
                    out,
                    "fanfare_{rejected}{{provider=\"{p}\",cause=\"{c}\"}} {v}"
                );
            }
        }
        for (name, kind, help, f) in LANE_METRICS {
            header(out, name, kind, help);
            for l in Lane::ALL {
                sample(out, name, ("provider", l.name()), f(self.lane(l)));
            }
        }
        header(
            out,
            "queue_depth",
            "gauge",
            "Device pushes queued or in flight.",
        );
        for (lane, d) in &g.queues {
            sample(out, "queue_depth", ("provider", lane), *d as u64);
        }
    }

    fn histograms(&self, out: &mut String) {
        histogram_family(
            out,
            "vendor_request_duration_seconds",
            "Time of a request to a vendor, from send to verdict (answer, timeout or transport error).",
            ProviderKind::ALL.map(|p| {
                let labels = format!("provider=\"{}\",", p.as_str());
                (labels, &self.provider(p).request_seconds)
            }),
        );
        histogram_family(
            out,
            "api_request_duration_seconds",
            "Time to answer an API request, by route template.",
            Route::ALL.map(|r| {
                (
                    format!("route=\"{}\",", r.template()),
                    &self.api[r as usize],
                )
            }),
        );
        histogram_family(
            out,
            "fanout_duration_seconds",
            "Time from a message's acceptance to the end of its last device push (delivered, failed or expired).",
            [(String::new(), &self.fanout_seconds)],
        );
    }
}

/// The family `fanfare_<name>` of `_seconds` histograms: its header, then each
/// histogram with its labels (each followed by a comma; empty for none).
fn histogram_family<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (String, &'a Histogram)>,
) {
    header(out, name, "histogram", help);
    let full = format!("fanfare_{name}");
    for (labels, h) in series {
        h.render(out, &full, &labels);
    }
}

/// Storage figures, once the store is open.
fn storage(out: &mut String, g: &Gauges) {
    let Some((s, segment_bytes)) = &g.storage else {
        return;
    };
    scalar(
        out,
        "storage_wal_segment_bytes",
        "gauge",
        "Bytes in the current write-ahead log segment (a snapshot starts a new one).",
        segment_bytes,
    );
    scalar(
        out,
        "storage_wal_written_bytes_total",
        "counter",
        "Bytes appended to the write-ahead log since start.",
        s.wal_written_bytes.load(Ordering::Relaxed),
    );
    histogram_family(
        out,
        "storage_fsync_duration_seconds",
        "Time of each fsync of the write-ahead log.",
        [(String::new(), &s.fsync_seconds)],
    );
    histogram_family(
        out,
        "storage_snapshot_duration_seconds",
        "Time to write a snapshot.",
        [(String::new(), &s.snapshot_seconds)],
    );
    let last = s.last_snapshot_unix_ms.load(Ordering::Relaxed);
    let since = if last == 0 {
        s.opened_unix_ms.load(Ordering::Relaxed)
    } else {
        last
    };
    scalar(
        out,
        "storage_snapshot_age_seconds",
        "gauge",
        "Seconds since the newest snapshot was written (or, with none, since the store opened): how much history only the log holds.",
        g.now_unix_ms.saturating_sub(since) as f64 / 1e3,
    );
    scalar(
        out,
        "storage_recovery_seconds",
        "gauge",
        "How long recovery (snapshot load and log replay) took at start.",
        s.recovery_us.load(Ordering::Relaxed) as f64 / 1e6,
    );
}
