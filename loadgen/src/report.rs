//! What a run measured: the JSON report (stable field names, documented in the
//! README; fields are only ever added), the terminal table (latencies in ms) and the
//! SVG latency plot ([`plot`]).

mod plot;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use fanfare::client;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::scenarios::Scenario;

/// Latency histogram bounds: 1 µs .. 10 min, 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds are valid")
}

/// Failed API requests by kind; vendor rejections and lost pushes.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Errors {
    /// API answers 400..=499 (429 `overloaded` included).
    pub api_status_4xx: u64,
    /// API answers 500..=599.
    pub api_status_5xx: u64,
    /// API requests that got no answer (connection refused or reset, h2 error).
    pub api_transport: u64,
    /// Pushes the mock vendors answered with an error (bad token, auth, body).
    pub vendor_rejections: u64,
    /// Pushes the engine accepted (counted in the API's `targets`) that never
    /// reached a mock within the drain timeout.
    pub lost: u64,
}

impl Errors {
    /// Count `r` unless it is a success; returns the answer of a success.
    pub fn check<T>(&mut self, r: Result<T, client::Error>) -> Option<T> {
        match r {
            Ok(v) => return Some(v),
            Err(e) => match e.status() {
                Some(s) if s.is_client_error() => self.api_status_4xx += 1,
                Some(_) => self.api_status_5xx += 1,
                None => self.api_transport += 1,
            },
        }
        None
    }

    /// A message's acceptance. A duplicate answer (the load generator never repeats
    /// an id) is an unexpected answer and counts with the 5xx.
    pub fn check_message(
        &mut self,
        r: Result<client::MessageAnswer, client::Error>,
    ) -> Option<client::MessageAccepted> {
        match self.check(r)? {
            client::MessageAnswer::Accepted(a) => Some(a),
            client::MessageAnswer::Duplicate(_) => {
                self.api_status_5xx += 1;
                None
            }
        }
    }

    pub fn api_total(&self) -> u64 {
        self.api_status_4xx + self.api_status_5xx + self.api_transport
    }
}

/// A latency of `us` µs in ms, to three significant digits (`0.412`, `4.12`, `41.2`,
/// `412`): what the table and the plot print.
pub fn fmt_ms(us: u64) -> String {
    let ms = us as f64 / 1e3;
    let decimals = match ms {
        m if m < 1.0 => 3,
        m if m < 10.0 => 2,
        m if m < 100.0 => 1,
        _ => 0,
    };
    format!("{ms:.decimals$}")
}

/// Latency percentiles, µs.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// The `bind` scenario.
#[derive(Debug, Clone, Serialize)]
pub struct BindReport {
    /// `PUT /v1/push-ids` answered 200.
    pub binds_acked: u64,
    /// `binds_acked` per second of binding.
    pub binds_per_s: f64,
    /// Engine VmRSS before and after binding.
    pub engine_rss_before_bytes: Option<u64>,
    pub engine_rss_after_bytes: Option<u64>,
    /// (after − before) / binds acked.
    pub engine_rss_bytes_per_binding: Option<f64>,
    /// Engine CPU (utime + stime) over the binding, per bind acknowledged.
    pub engine_cpu_us_per_bind: Option<f64>,
}

/// The `presence` scenario.
#[derive(Debug, Clone, Serialize)]
pub struct PresenceReport {
    /// Session events in the requests sent.
    pub events_sent: u64,
    /// Sum of the API's `applied`.
    pub events_applied: u64,
    /// `events_applied` per second of churn.
    pub events_per_s: f64,
    /// Events per `POST /v1/presence`.
    pub batch: usize,
    /// TTL of each online event.
    pub session_ttl_s: u64,
    /// Engine CPU over the churn per event applied (`presence` only).
    pub engine_cpu_us_per_event: Option<f64>,
    /// Users the engine counted online at the end (`/v1/stats` `online_users`).
    pub online_users_at_end: Option<u64>,
}

/// One group of the `group` scenario.
#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    /// The group's size; 10% of the members are online.
    pub members: u64,
    pub online_members: u64,
    /// Device pushes the API said it queued (`targets`).
    pub pushes_expected: u64,
    /// Pushes the mock received within the drain timeout.
    pub pushes_delivered: u64,
    /// API request sent → `202` received.
    pub api_accept_ms: f64,
    /// API request sent → the last push of the group received by the mock.
    pub to_last_push_ms: f64,
    /// `pushes_delivered` / `to_last_push_ms`.
    pub pushes_per_s: f64,
    /// The bare HTTP/2 client sending as many pushes to the same mock, same run.
    pub ceiling_pushes_per_s: Option<f64>,
    /// CPU of the ceiling client's threads per 1k pushes.
    pub ceiling_cpu_ms_per_1k_pushes: Option<f64>,
    /// CPU of `h2load` sending as many pushes the same way, per 1k (issue 16).
    pub h2load_cpu_ms_per_1k_pushes: Option<f64>,
    /// Engine CPU over the fan-out per 1k pushes delivered.
    pub engine_cpu_ms_per_1k_pushes: Option<f64>,
    /// API request sent → each push received: the time to reach the n-th member.
    pub latency_us: Latency,
}

/// A kind of traffic whose pushes are timed apart (`mixed` sends all three; `peer`,
/// `call` and `vendors` one each), because one blend would hide them: a group
/// fan-out's latency is the time to reach its n-th member, a peer message's is one
/// push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Group,
    Peer,
    Call,
}

impl Class {
    pub const ALL: [Class; 3] = [Class::Group, Class::Peer, Class::Call];

    pub fn name(self) -> &'static str {
        match self {
            Class::Group => "group",
            Class::Peer => "peer",
            Class::Call => "call",
        }
    }
}

/// The open-loop driver's own lateness (`peer`, `mixed`): how long after its scheduled
/// instant each peer send left (its task started and wrote the request), ms. Latency is
/// counted from the schedule, so this part of it is the driver's, not the engine's.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct DriverLateness {
    pub sends: u64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl DriverLateness {
    /// From a histogram of lateness in µs (`None` when nothing was sent).
    pub fn of(h: &Histogram<u64>) -> Option<Self> {
        let ms = |us: u64| us as f64 / 1_000.0;
        (!h.is_empty()).then(|| Self {
            sends: h.len(),
            p50: ms(h.value_at_quantile(0.5)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        })
    }
}

/// One traffic class's pushes (`per_class`).
#[derive(Debug, Serialize)]
pub struct ClassReport {
    /// Pushes received whose message or call was of this class.
    pub pushes: u64,
    /// API request (peer: scheduled send) → mock receipt.
    pub latency_us: Latency,
    #[serde(skip)]
    pub histogram: Histogram<u64>,
}

/// What a run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    /// `spawned` (child process of the load generator), `external` (`--engine URL`)
    /// or `none` (`ceiling`).
    pub engine_mode: &'static str,
    /// The engine's process id (`null` when unknown or none).
    pub engine_pid: Option<u32>,
    pub users: u64,
    pub devices_per_user: u32,
    /// Bindings the engine holds at the end (`/v1/stats`).
    pub bindings: u64,
    pub binds_per_s: f64,
    pub messages_sent: u64,
    pub calls_sent: u64,
    /// Sum of the API's `targets` over accepted messages and calls.
    pub pushes_expected: u64,
    /// Pushes the mocks received in the measured phase.
    pub pushes_delivered: u64,
    /// Pushes each mock vendor accepted, by provider name.
    pub per_provider: BTreeMap<String, u64>,
    /// Pushes to users reported online: must be 0.
    pub pushes_to_online_users: u64,
    /// `pushes_delivered` / (first send → last receipt).
    pub pushes_per_s: f64,
    /// The bare HTTP/2 client's pushes/s against the same mock APNs, same run.
    pub ceiling_pushes_per_s: Option<f64>,
    /// CPU of the ceiling client's own threads per 1k pushes (the mock's excluded).
    pub ceiling_cpu_ms_per_1k_pushes: Option<f64>,
    /// `group` only: `pushes_per_s` / `ceiling_pushes_per_s` (both APNs only).
    pub engine_to_ceiling: Option<f64>,
    /// `h2load` (nghttp2) sending the same pushes to the same mock: its CPU per 1k
    /// (`null` when it is not on `PATH`: see `h2load_note`), and the engine's over it.
    pub h2load_cpu_ms_per_1k_pushes: Option<f64>,
    pub engine_to_h2load_cpu: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub h2load_note: Option<&'static str>,
    /// Engine CPU seconds (utime + stime) during the measured phase.
    pub engine_cpu_s: Option<f64>,
    /// `engine_cpu_s` per 1k pushes delivered.
    pub engine_cpu_ms_per_1k_pushes: Option<f64>,
    /// VmHWM of the engine process at the end.
    pub engine_peak_rss_bytes: Option<u64>,
    /// The load generator's own process (driver + mock vendors + ceiling client).
    pub driver_cpu_ms_per_1k_pushes: Option<f64>,
    pub driver_peak_rss_bytes: u64,
    pub errors: Errors,
    /// API request → mock receipt of every push of the run.
    pub latency_us: Latency,
    /// Latency of each traffic class the run sent, apart (`mixed`, `peer`, `call`,
    /// `vendors`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub per_class: BTreeMap<Class, ClassReport>,
    /// `peer`, `mixed`: the driver's lateness against its schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver_lateness_ms: Option<DriverLateness>,
    /// `peer`, `mixed`: peer pushes' latency counted from when each send actually left
    /// instead of its schedule (the engine's and the mock's share, without the
    /// driver's lateness).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_latency_from_send_us: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<BindReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence: Option<PresenceReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupReport>,
    pub wall_s: f64,
    /// The end-to-end latencies behind `latency_us`, for `--svg`.
    #[serde(skip)]
    pub histogram: Option<Histogram<u64>>,
}

impl Report {
    pub fn new(scenario: Scenario) -> Report {
        Report {
            scenario,
            engine_mode: "spawned",
            engine_pid: None,
            users: 0,
            devices_per_user: 1,
            bindings: 0,
            binds_per_s: 0.0,
            messages_sent: 0,
            calls_sent: 0,
            pushes_expected: 0,
            pushes_delivered: 0,
            per_provider: BTreeMap::new(),
            pushes_to_online_users: 0,
            pushes_per_s: 0.0,
            ceiling_pushes_per_s: None,
            ceiling_cpu_ms_per_1k_pushes: None,
            engine_to_ceiling: None,
            h2load_cpu_ms_per_1k_pushes: None,
            engine_to_h2load_cpu: None,
            h2load_note: None,
            engine_cpu_s: None,
            engine_cpu_ms_per_1k_pushes: None,
            engine_peak_rss_bytes: None,
            driver_cpu_ms_per_1k_pushes: None,
            driver_peak_rss_bytes: 0,
            errors: Errors::default(),
            latency_us: Latency::default(),
            per_class: BTreeMap::new(),
            driver_lateness_ms: None,
            peer_latency_from_send_us: None,
            bind: None,
            presence: None,
            groups: Vec::new(),
            wall_s: 0.0,
            histogram: None,
        }
    }

    /// The `h2load` reference figures: `found` says whether it was on `PATH`.
    pub fn set_h2load(&mut self, found: bool, cpu_ms_per_1k: Option<f64>) {
        self.h2load_cpu_ms_per_1k_pushes = cpu_ms_per_1k;
        self.engine_to_h2load_cpu = self
            .engine_cpu_ms_per_1k_pushes
            .zip(cpu_ms_per_1k)
            .map(|(e, h)| e / h.max(1e-9));
        self.h2load_note = (!found).then_some("h2load is not on PATH (Debian nghttp2-client)");
    }

    /// Set `latency_us` from `h` and keep it for the plot.
    pub fn set_latency(&mut self, h: Histogram<u64>) {
        self.latency_us = Latency::of(&h);
        self.histogram = Some(h);
    }

    /// Report `class`'s latencies `h` apart.
    pub fn set_class_latency(&mut self, class: Class, h: Histogram<u64>) {
        let report = ClassReport {
            pushes: h.len(),
            latency_us: Latency::of(&h),
            histogram: h,
        };
        self.per_class.insert(class, report);
    }

    /// A run is OK when nothing was lost, no online user was pushed and the API
    /// answered every request.
    pub fn ok(&self) -> bool {
        self.errors.lost == 0 && self.pushes_to_online_users == 0 && self.errors.api_total() == 0
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("write {}", path.display()))
    }

    pub fn print_table(&self) {
        let r = self;
        let opt = |v: Option<f64>, unit: &str| v.map_or("n/a".into(), |v| format!("{v:.1}{unit}"));
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / 1048576.0);
        let mut rows: Vec<(&str, String)> = vec![
            (
                "scenario",
                format!("{} (engine {})", r.scenario.name(), r.engine_mode),
            ),
            (
                "users × devices / bindings",
                format!("{} × {} / {}", r.users, r.devices_per_user, r.bindings),
            ),
            ("binds/s (API, h2c)", format!("{:.0}", r.binds_per_s)),
            (
                "messages / calls sent",
                format!("{} / {}", r.messages_sent, r.calls_sent),
            ),
            (
                "pushes delivered / expected",
                format!("{} / {}", r.pushes_delivered, r.pushes_expected),
            ),
        ];
        if !r.per_provider.is_empty() {
            rows.push((
                "per provider",
                r.per_provider
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
        rows.extend([
            (
                "pushes to online users",
                r.pushes_to_online_users.to_string(),
            ),
            ("pushes/s", format!("{:.0}", r.pushes_per_s)),
            (
                "ceiling pushes/s (bare h2)",
                match (r.ceiling_pushes_per_s, r.engine_to_ceiling) {
                    (Some(c), Some(q)) => format!("{c:.0} (engine at {:.0}%)", q * 100.0),
                    (Some(c), None) => format!("{c:.0}"),
                    _ => "n/a".into(),
                },
            ),
            (
                "latency p50 / p90 / p99",
                format!(
                    "{} / {} / {} ms",
                    fmt_ms(r.latency_us.p50),
                    fmt_ms(r.latency_us.p90),
                    fmt_ms(r.latency_us.p99)
                ),
            ),
            (
                "latency p99.9 / max",
                format!(
                    "{} / {} ms",
                    fmt_ms(r.latency_us.p999),
                    fmt_ms(r.latency_us.max)
                ),
            ),
            (
                "engine CPU / per 1k pushes",
                format!(
                    "{} / {}",
                    r.engine_cpu_s.map_or("n/a".into(), |s| format!("{s:.2} s")),
                    opt(r.engine_cpu_ms_per_1k_pushes, " ms")
                ),
            ),
            (
                "ceiling client CPU per 1k",
                opt(r.ceiling_cpu_ms_per_1k_pushes, " ms"),
            ),
            (
                "h2load CPU per 1k (reference)",
                match (r.h2load_cpu_ms_per_1k_pushes, r.engine_to_h2load_cpu) {
                    (Some(h), Some(q)) => format!("{h:.2} ms (engine {q:.2}×)"),
                    (Some(h), None) => format!("{h:.2} ms"),
                    _ => r.h2load_note.unwrap_or("n/a").into(),
                },
            ),
            (
                "engine peak RSS",
                r.engine_peak_rss_bytes.map_or("n/a".into(), mib),
            ),
            (
                "driver+mocks CPU per 1k pushes",
                opt(r.driver_cpu_ms_per_1k_pushes, " ms"),
            ),
            ("driver+mocks peak RSS", mib(r.driver_peak_rss_bytes)),
            (
                "errors",
                format!(
                    "api 4xx {} 5xx {} transport {}, vendor rejections {}, lost {}",
                    r.errors.api_status_4xx,
                    r.errors.api_status_5xx,
                    r.errors.api_transport,
                    r.errors.vendor_rejections,
                    r.errors.lost
                ),
            ),
        ]);
        if let Some(b) = &r.bind {
            rows.push((
                "engine RSS per binding",
                opt(b.engine_rss_bytes_per_binding, " B"),
            ));
            rows.push(("engine CPU per bind", opt(b.engine_cpu_us_per_bind, " µs")));
        }
        if let Some(p) = &r.presence {
            rows.push((
                "presence events / per s",
                format!(
                    "{} / {:.0} (batches of {})",
                    p.events_applied, p.events_per_s, p.batch
                ),
            ));
            if p.engine_cpu_us_per_event.is_some() {
                rows.push((
                    "engine CPU per event",
                    opt(p.engine_cpu_us_per_event, " µs"),
                ));
            }
        }
        rows.push(("wall time", format!("{:.2} s", r.wall_s)));
        println!("\nFanfare load report");
        println!("{}", "-".repeat(72));
        for (k, v) in rows {
            println!("{k:<32}{v}");
        }
        if !r.groups.is_empty() {
            println!("{}", "-".repeat(72));
            println!(
                "{:>9} {:>8} {:>9} {:>10} {:>10} {:>10} {:>8} {:>8}",
                "members",
                "pushes",
                "accept ms",
                "last ms",
                "pushes/s",
                "ceiling/s",
                "cpu/1k",
                "p99 ms"
            );
            for g in &r.groups {
                println!(
                    "{:>9} {:>8} {:>9.1} {:>10.1} {:>10.0} {:>10} {:>8} {:>8}",
                    g.members,
                    g.pushes_delivered,
                    g.api_accept_ms,
                    g.to_last_push_ms,
                    g.pushes_per_s,
                    g.ceiling_pushes_per_s
                        .map_or("n/a".into(), |c| format!("{c:.0}")),
                    g.engine_cpu_ms_per_1k_pushes
                        .map_or("n/a".into(), |c| format!("{c:.1}")),
                    fmt_ms(g.latency_us.p99)
                );
            }
        }
        self.print_classes();
        println!("{}", "-".repeat(72));
        println!(
            "{}: {} of {} expected pushes delivered, {} to online users, {} API errors",
            if r.ok() { "OK" } else { "PROBLEMS" },
            r.pushes_delivered,
            r.pushes_expected,
            r.pushes_to_online_users,
            r.errors.api_total()
        );
    }

    /// The latency of each traffic class, one line each, in ms.
    fn print_classes(&self) {
        if self.per_class.is_empty() {
            return;
        }
        println!("{}", "-".repeat(72));
        let head = [
            "class", "pushes", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms",
        ];
        println!(
            "{:<8}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
            head[0], head[1], head[2], head[3], head[4], head[5], head[6]
        );
        for (class, c) in &self.per_class {
            let l = &c.latency_us;
            println!(
                "{:<8}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
                class.name(),
                c.pushes,
                fmt_ms(l.p50),
                fmt_ms(l.p90),
                fmt_ms(l.p99),
                fmt_ms(l.p999),
                fmt_ms(l.max)
            );
        }
        if let Some(l) = &self.peer_latency_from_send_us {
            println!(
                "{:<8}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
                "  (sent)",
                "",
                fmt_ms(l.p50),
                fmt_ms(l.p90),
                fmt_ms(l.p99),
                fmt_ms(l.p999),
                fmt_ms(l.max)
            );
        }
        if let Some(d) = &self.driver_lateness_ms {
            println!(
                "driver lateness over {} sends: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
                d.sends, d.p50, d.p99, d.max
            );
        }
    }

    /// Plot the latency distribution ([`plot`]): every push, and each traffic class
    /// apart when the run sent more than one.
    pub fn write_svg(&self, path: &Path) -> anyhow::Result<()> {
        let title = format!(
            "fanfare-loadgen {}: end-to-end push latency",
            self.scenario.name()
        );
        let empty = histogram();
        let mut series = vec![plot::Series {
            name: "all",
            latency: self.latency_us,
            histogram: self.histogram.as_ref().unwrap_or(&empty),
        }];
        if self.per_class.len() > 1 {
            series.extend(self.per_class.iter().map(|(class, c)| plot::Series {
                name: class.name(),
                latency: c.latency_us,
                histogram: &c.histogram,
            }));
        }
        let svg = plot::Figure::new(&title, &series).to_svg();
        std::fs::write(path, svg).with_context(|| format!("write {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_are_counted_by_kind() {
        let mut e = Errors::default();
        let api = |status: u16| client::Error::Api {
            status: http::StatusCode::from_u16(status).expect("a status"),
            code: "overloaded".into(),
            message: "busy".into(),
            retry_after_s: Some(1),
        };
        assert_eq!(e.check(Ok::<_, client::Error>(2)), Some(2));
        let duplicate = client::MessageAnswer::Duplicate(client::MessageDuplicate {
            duplicate: true,
            message_id: "m".into(),
        });
        assert_eq!(e.check_message(Ok(duplicate)), None);
        assert_eq!(e.check(Err::<(), _>(api(429))), None);
        assert_eq!(e.check(Err::<(), _>(api(503))), None);
        let timeout = client::Error::Timeout(std::time::Duration::ZERO);
        assert_eq!(e.check(Err::<(), _>(timeout)), None);
        assert_eq!(
            (e.api_status_4xx, e.api_status_5xx, e.api_transport),
            (1, 2, 1)
        );
        assert_eq!(e.api_total(), 4);
    }

    #[test]
    fn latencies_print_in_ms_to_three_significant_digits() {
        let cases = [
            (0, "0.000"),
            (7, "0.007"),
            (412, "0.412"),
            (4_123, "4.12"),
            (41_234, "41.2"),
            (412_345, "412"),
        ];
        for (us, ms) in cases {
            assert_eq!(fmt_ms(us), ms, "{us} µs");
        }
    }

    #[test]
    fn a_mixed_report_has_each_traffic_class_apart_beside_the_blend() {
        let mut r = Report::new(Scenario::Mixed);
        let mut all = histogram();
        for (class, base) in Class::ALL.into_iter().zip([1_800, 300, 900]) {
            let mut h = histogram();
            for i in 1..=100 {
                h.record(base + i).unwrap();
            }
            all.add(&h).unwrap();
            r.set_class_latency(class, h);
        }
        r.set_latency(all);
        let v = serde_json::to_value(&r).unwrap();
        // The blend stays where other programs read it.
        assert_eq!(v["latency_us"]["max"], 1_900, "{v:#}");
        for (class, p50) in [("group", 1_850), ("peer", 350), ("call", 950)] {
            let c = &v["per_class"][class];
            assert_eq!(c["pushes"], 100, "{class} in {v:#}");
            assert_eq!(c["latency_us"]["p50"], p50, "{class} in {v:#}");
            for q in ["p90", "p99", "p999", "max"] {
                assert!(c["latency_us"][q].is_u64(), "{class}.{q} in {v:#}");
            }
        }
        // A scenario without classes keeps its JSON as it was.
        let v = serde_json::to_value(Report::new(Scenario::Bind)).unwrap();
        assert!(v.get("per_class").is_none(), "{v:#}");
    }

    #[test]
    fn the_driver_lateness_goes_into_the_json_in_ms_and_is_absent_without_peer_sends() {
        let mut r = Report::new(Scenario::Peer);
        let mut h = histogram();
        for us in 1..=1000 {
            h.record(us * 10).unwrap();
        }
        r.driver_lateness_ms = DriverLateness::of(&h);
        let v = serde_json::to_value(&r).unwrap();
        let d = &v["driver_lateness_ms"];
        assert_eq!(d["sends"], 1000, "{v:#}");
        // The histogram keeps three significant digits.
        for (q, want) in [("p50", 5.0), ("p99", 9.9), ("max", 10.0)] {
            assert!((d[q].as_f64().unwrap() - want).abs() < 0.02, "{q} in {v:#}");
        }
        assert!(DriverLateness::of(&histogram()).is_none());
        let v = serde_json::to_value(Report::new(Scenario::Group)).unwrap();
        assert!(v.get("driver_lateness_ms").is_none(), "{v:#}");
    }

    #[test]
    fn latency_percentiles_come_from_the_histogram() {
        assert_eq!(Latency::of(&histogram()).max, 0);
        let mut h = histogram();
        for us in 1..=1000 {
            h.record(us).unwrap();
        }
        let l = Latency::of(&h);
        assert_eq!(
            (l.p50, l.p90, l.p99, l.p999, l.max),
            (500, 900, 990, 999, 1000)
        );
    }
}
