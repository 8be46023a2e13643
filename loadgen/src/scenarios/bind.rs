//! `bind`: register `--users` × `--devices` push IDs (60% APNs, 40% FCM) through
//! `PUT /v1/push-ids/{id}`, 128 requests in flight; acknowledged binds/s and the
//! engine's resident memory per binding, (VmRSS after − VmRSS before) / binds, read
//! from /proc of the engine process.

use crate::report::{BindReport, Report};
use crate::scenarios::{bind_all, Meter, Scenario};
use crate::setup::{apns_token, fcm_token, Env};
use crate::RunArgs;

/// Device `k`'s provider and token: 3 of 5 APNs, 2 of 5 FCM.
pub(crate) fn apns_fcm_mix(k: u32) -> (&'static str, String) {
    if k % 5 < 3 {
        ("apns", apns_token(k))
    } else {
        ("fcm", fcm_token(k))
    }
}

pub async fn run(env: &Env, args: &RunArgs) -> anyhow::Result<Report> {
    let mut report = Report::new(Scenario::Bind);
    let (users, devices) = (args.users, args.devices);
    report.users = u64::from(users);
    report.devices_per_user = devices;
    eprintln!(
        "bind: {users} users × {devices} devices = {} push IDs (60% APNs, 40% FCM)",
        u64::from(users) * u64::from(devices)
    );
    let rss_before = env.engine_proc().map(|p| p.rss_bytes);
    let meter = Meter::start(env);
    let (acked, secs) = bind_all(env, users, devices, apns_fcm_mix, &mut report.errors).await;
    let cost = meter.stop(env);
    let rss_after = env.engine_proc().map(|p| p.rss_bytes);
    report.binds_per_s = acked as f64 / secs;
    report.engine_cpu_s = cost.engine_cpu_s;
    report.driver_cpu_ms_per_1k_pushes = None;
    report.bind = Some(BindReport {
        binds_acked: acked,
        binds_per_s: report.binds_per_s,
        engine_rss_before_bytes: rss_before,
        engine_rss_after_bytes: rss_after,
        engine_rss_bytes_per_binding: match (rss_before, rss_after) {
            (Some(b), Some(a)) if acked > 0 => Some((a as f64 - b as f64) / acked as f64),
            _ => None,
        },
        engine_cpu_us_per_bind: cost
            .engine_cpu_s
            .filter(|_| acked > 0)
            .map(|s| s * 1e6 / acked as f64),
    });
    Ok(report)
}
