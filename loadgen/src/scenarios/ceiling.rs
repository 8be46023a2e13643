//! `ceiling`: the bare HTTP/2 client alone (no engine) sending `--pushes` APNs pushes
//! over `--users` device tokens to the mock APNs, with the engine's connections and
//! streams in flight and the body the engine renders for a group message — the
//! physical limit of the mock path on this machine. `latency_us` is request → answer.
//! Then `h2load`, when on `PATH`, sends as many pushes the same way (the reference).

use std::sync::Arc;

use bytes::Bytes;

use crate::ceiling;
use crate::progress::{Progress, Sent};
use crate::report::Report;
use crate::scenarios::{Meter, Scenario};
use crate::setup::{apns_token, Env};
use crate::RunArgs;

pub async fn run(env: &Env, args: &RunArgs) -> anyhow::Result<Report> {
    use fanfare::providers::{apns::payload::Bodies, Content, Kind};
    let mut report = Report::new(Scenario::Ceiling);
    report.users = u64::from(args.users);
    let bodies = Bodies::render(
        &Kind::Message {
            message_id: Arc::from("lg-ceiling"),
        },
        &Content {
            title: Some("group".into()),
            content: Some("hello everyone".into()),
            payload: Some("ceiling".into()),
            ..Content::default()
        },
        &fanfare::config::Resource::default(),
    )?;
    let body: Bytes = bodies.alert;
    let tokens: Vec<String> = (0..args.users).map(apns_token).collect();
    let apns = &env.mocks.apns;
    let (connections, in_flight) = env.mocks.apns_limits();
    let client = ceiling::Client::to_mock_apns(&env.mocks, &tokens[0], body.clone()).await?;
    apns.take_received();
    eprintln!(
        "ceiling: {} pushes over {connections} connections, {in_flight} streams in flight, no engine",
        args.pushes
    );
    let before = apns.received_count();
    let meter = Meter::start(env);
    let progress = Progress::spawn(
        "ceiling",
        "",
        Sent::default(),
        Some(Box::new({
            let mocks = env.mocks.clone();
            move || mocks.apns.received_count().saturating_sub(before) as u64
        })),
    );
    let discard = ceiling::Discard::spawn(env.mocks.clone());
    let b = client
        .blast(&tokens, body.clone(), args.pushes, in_flight)
        .await?;
    discard.finish().await;
    progress.finish().await;
    let cost = meter.stop(env);
    let head = ceiling::Head::ceiling();
    let h2load = ceiling::h2load::find();
    let reference = match &h2load {
        Some(bin) => {
            Some(ceiling::reference(bin, &env.mocks, &head, &tokens, &body, args.pushes).await?)
        }
        None => None,
    };
    report.set_h2load(h2load.is_some(), reference.and_then(|r| r.cpu_ms_per_1k()));
    report.pushes_expected = args.pushes;
    report.pushes_delivered = b.ok;
    report.errors.lost = args.pushes.saturating_sub(b.ok);
    report.per_provider.insert("apns".into(), b.ok);
    report.pushes_per_s = b.pushes_per_s();
    report.ceiling_pushes_per_s = Some(report.pushes_per_s);
    report.ceiling_cpu_ms_per_1k_pushes = b.cpu_ms_per_1k();
    report.driver_cpu_ms_per_1k_pushes = cost.driver_ms_per_1k(b.ok);
    report.set_latency(b.latency);
    Ok(report)
}
