//! In-process end-to-end push: a batch of [`N`] APNs pushes to the in-process mock APNs
//! (`fanfare_loadgen::mock::apns`) over real TLS + HTTP/2 on `127.0.0.1`, three ways in
//! one group, all against the same mock with the same connections and concurrency:
//! - `engine`: one group message through the engine's HTTP API (h2c) to a group of `N`
//!   offline users with one APNs device each, timed until the mock has received all `N`
//!   pushes;
//! - `bare_pool`: the engine's transport pool alone (as `fanfare-loadgen`'s ceiling
//!   client) sending the same `N` pre-rendered bodies with pre-built headers — the
//!   ceiling the engine is measured against;
//! - `naive`: the naive baseline, a hyper-util legacy `Client` over h2 building every
//!   body with `serde_json` and formatting every header per push.
//!
//! The three send identical wire requests (same path, headers and body bytes), so the
//! mock does the same work in each. Setup (mock, engine, bindings, group) happens once,
//! outside the timed loop. The mock runs on a runtime of its own (two worker threads,
//! like a vendor in another process); the client side (engine, pool or naive client)
//! on another two. After each case the bench prints the CPU per 1k pushes of both
//! sides, from `/proc` (the "engine CPU per 1k pushes" target).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context as _};
use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode, Throughput,
};
use fanfare::client::request;
use fanfare::providers::{Content, Kind, Push};
use fanfare::transport::{tls, Endpoint, Pool};
use fanfare_loadgen::mock::apns::{Credentials, MockApns};
use fanfare_loadgen::mock::rig::{self, Rig, TOPIC};
use fanfare_loadgen::mock::tls::TestCa;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

/// Pushes per batch (per timed iteration). Many times the in-flight limit (1024), so
/// the ramp-up and drain at a batch's ends, where the baselines stop at zero in flight
/// while the engine's tail overlaps the next batch, weigh little.
const N: u32 = 20_000;
/// The group every bound user is in.
const GROUP: &str = "bench-all";
/// Upper bound on one batch; reaching it means pushes were lost or refused.
const BATCH_TIMEOUT: Duration = Duration::from_secs(30);
/// What the message carries; the baselines send exactly the body the engine renders.
const TITLE: &str = "bench";
const TEXT: &str = "hello everyone";
const PAYLOAD: &str = "{\"conv\":\"bench-all\"}";

type Naive = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Device token of bench user `i` (64 hex characters, as APNs issues them).
fn token(i: u32) -> String {
    format!("{i:08x}{}", "be".repeat(28))
}

/// The mock, the engine wired to it, and what the baselines need to reach the mock.
struct Env {
    _dir: tempfile::TempDir,
    apns: MockApns,
    engine: fanfare::Running,
    api: fanfare::client::Client,
    ca_file: PathBuf,
    ca: TestCa,
    creds: Credentials,
    /// The engine's APNs connections and in-flight limit; the baselines use the same.
    connections: usize,
    concurrency: usize,
}

/// Mock APNs + engine (durability none, APNs only) as `fanfare-loadgen`'s `setup`, then
/// `N` users bound to APNs tokens, all offline, all in [`GROUP`].
async fn setup(mock_rt: &tokio::runtime::Handle) -> anyhow::Result<Env> {
    let dir = tempfile::tempdir()?;
    let rig = {
        let _mock_runtime = mock_rt.enter();
        Rig::start(
            dir.path(),
            &rig::Options {
                fcm: false,
                // Counting goes on past it; keeps a few pushes and rejections to
                // inspect without growing across iterations.
                record_limit: 16,
                ..rig::Options::default()
            },
        )?
    };
    let config_file = dir.path().join("engine.toml");
    rig.write_engine_config(
        &config_file,
        &json!({
            "api": {"listen": "127.0.0.1:0"},
            "storage": {"dir": dir.path().join("data"), "durability": "none"},
            "messages": {"queue_capacity": 1_000_000},
        }),
    )?;
    let config = fanfare::config::Config::load(Some(&config_file), Vec::new())?;
    let (connections, concurrency) = rig.apns_limits();
    let Rig {
        ca,
        ca_file,
        creds,
        apns,
        ..
    } = rig;
    let engine = fanfare::start(config).await.context("start engine")?;
    let base = format!("http://{}", engine.local_addr());
    let api = fanfare::client::Client::builder(base).build();

    {
        use futures::StreamExt as _;
        let mut binds = futures::stream::iter(0..N)
            .map(|i| {
                let req = request::bind(&format!("u{i}"), "apns", &token(i));
                let api = &api;
                async move { api.bind(&format!("d{i}"), &req).await }
            })
            .buffer_unordered(64);
        while let Some(r) = binds.next().await {
            r.context("bind")?;
        }
    }
    let add = fanfare::client::MembersRequest {
        add: (0..N).map(|i| format!("u{i}")).collect(),
        remove: Vec::new(),
    };
    api.members(GROUP, &add).await.context("group update")?;
    Ok(Env {
        _dir: dir,
        apns,
        engine,
        api,
        ca_file,
        ca,
        creds,
        connections,
        concurrency,
    })
}

/// One group message through the API; returns once the mock has received `N` more
/// pushes.
async fn engine_batch(env: &Env, seq: u64) -> anyhow::Result<()> {
    let before = env.apns.received_count();
    let push = request::push(TITLE, TEXT, PAYLOAD);
    let m = request::message(
        format!("bench-{seq}"),
        "bench-sender",
        "group",
        GROUP,
        Some(push),
    );
    let answer = env.api.message(&m).await.context("message")?;
    ensure!(answer.accepted().is_some(), "message answered {answer:?}");
    let target = before + N as usize;
    // A 1 ms tick rather than the mock's per-receipt notification: waking the waiter
    // on each of the N receipts would compete with the engine for the same cores;
    // the tick adds at most 1 ms to a batch.
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let deadline = tokio::time::Instant::now() + BATCH_TIMEOUT;
    let reached = loop {
        if env.apns.received_count() >= target {
            break true;
        }
        if tokio::time::Instant::now() >= deadline {
            break false;
        }
        tick.tick().await;
    };
    ensure!(
        reached,
        "mock received {} of {target} pushes; rejections {:?}",
        env.apns.received_count(),
        env.apns.rejections()
    );
    Ok(())
}

/// Request heads shared by the bare-pool ceiling: everything pre-built once, the way a
/// client with nothing else to do would send.
struct Prebuilt {
    uris: Vec<Uri>,
    ids: Vec<HeaderValue>,
    auth: HeaderValue,
    topic: HeaderValue,
    expiration: HeaderValue,
    body: Bytes,
}

/// The body the engine renders for the bench message (the baselines send these bytes).
fn rendered_body(message_id: &str) -> anyhow::Result<(Bytes, u64)> {
    let content = Content {
        title: Some(TITLE.into()),
        content: Some(TEXT.into()),
        payload: Some(PAYLOAD.into()),
        ..Content::default()
    };
    let push = Push::render(
        Kind::Message {
            message_id: message_id.into(),
        },
        &content,
        fanfare::config::Config::default().messages.ttl_s,
        fanfare::clock::unix_now_s(),
    )
    .map_err(|e| anyhow::anyhow!("render bench push: {e}"))?;
    Ok((push.apns.alert.clone(), push.expires_at))
}

fn provider_token(env: &Env) -> anyhow::Result<String> {
    env.creds
        .provider_token(fanfare::clock::unix_now_s() as i64)
}

impl Prebuilt {
    fn new(env: &Env) -> anyhow::Result<Prebuilt> {
        let (body, expires_at) = rendered_body("bench-ceiling")?;
        let base = env.apns.url();
        Ok(Prebuilt {
            uris: (0..N)
                .map(|i| format!("{base}/3/device/{}", token(i)).parse())
                .collect::<Result<_, _>>()?,
            ids: (0..N)
                .map(|_| HeaderValue::from_str(&uuid::Uuid::new_v4().hyphenated().to_string()))
                .collect::<Result<_, _>>()?,
            auth: HeaderValue::from_str(&format!("bearer {}", provider_token(env)?))?,
            topic: HeaderValue::from_static(TOPIC),
            expiration: HeaderValue::from(expires_at),
            body,
        })
    }
}

/// One client under comparison: sends push `i` and says whether it was answered 200.
trait Pusher: Clone + Send + Sync + 'static {
    fn push(&self, i: usize) -> impl std::future::Future<Output = bool> + Send + '_;
}

/// Push `0..N` spread over `concurrency` tasks, each taking the next index. Both
/// clients are driven by this one loop, so the comparison is of the clients alone.
async fn batch(concurrency: usize, pusher: impl Pusher) -> u64 {
    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (pusher, next, ok) = (pusher.clone(), next.clone(), ok.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= N as usize {
                    return;
                }
                if pusher.push(i).await {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    ok.load(Ordering::Relaxed)
}

/// The engine's pool with every request head pre-built.
#[derive(Clone)]
struct BarePool {
    pool: Pool,
    pre: Arc<Prebuilt>,
}

impl Pusher for BarePool {
    async fn push(&self, i: usize) -> bool {
        let pre = &self.pre;
        let make = || {
            Request::builder()
                .method(Method::POST)
                .uri(pre.uris[i].clone())
                .header(AUTHORIZATION, pre.auth.clone())
                .header("apns-topic", pre.topic.clone())
                .header("apns-push-type", "alert")
                .header("apns-priority", "10")
                .header("apns-expiration", pre.expiration.clone())
                .header("apns-id", pre.ids[i].clone())
                .header(CONTENT_TYPE, "application/json")
                .body(())
                .expect("pre-built request head is valid")
        };
        let answer = self.pool.send(make, pre.body.clone()).await;
        answer.is_ok_and(|r| r.status == StatusCode::OK)
    }
}

/// A hyper-util legacy client (h2) and what it knows per push: strings, formatted
/// again for every request, and each body built with `serde_json`.
struct NaivePusher {
    client: Naive,
    base: String,
    jwt: String,
    tokens: Vec<String>,
    expires_at: u64,
}

/// The APNs alert body as a naive client builds it for every push.
fn naive_body() -> Value {
    json!({
        "aps": {"alert": {"title": TITLE, "body": TEXT}, "sound": "default"},
        "payload": PAYLOAD,
    })
}

impl Pusher for Arc<NaivePusher> {
    async fn push(&self, i: usize) -> bool {
        let body = naive_body();
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/3/device/{}", self.base, self.tokens[i]))
            .header(AUTHORIZATION, format!("bearer {}", self.jwt))
            .header("apns-topic", TOPIC)
            .header("apns-push-type", "alert")
            .header("apns-priority", "10")
            .header("apns-expiration", self.expires_at.to_string())
            .header("apns-id", uuid::Uuid::new_v4().to_string())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(
                serde_json::to_vec(&body).expect("a json! value serialises"),
            )))
            .expect("formatted request head is valid");
        let Ok(resp) = self.client.request(req).await else {
            return false;
        };
        let status = resp.status();
        resp.into_body().collect().await.is_ok() && status == StatusCode::OK
    }
}

fn naive_client(ca: &TestCa) -> Naive {
    // hyper-rustls sets ALPN itself and refuses a config that already has one.
    let mut tls = (*ca.client_config()).clone();
    tls.alpn_protocols.clear();
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(https)
}

/// Worker-thread name prefix of the mock's runtime; CPU of threads so named is the
/// mock's, every other thread of the process is the client side's (engine, bare pool,
/// naive client, and the bench driver).
const MOCK_THREADS: &str = "bench-mock";

/// CPU seconds so far: the whole process (live and exited threads) and the mock's
/// runtime threads (which live as long as the bench).
#[derive(Clone, Copy)]
struct Cpu {
    process_s: f64,
    mock_s: f64,
}

/// utime + stime of a `/proc/.../stat` line, in seconds (USER_HZ = 100 on Linux).
fn stat_cpu_s(stat: &str) -> f64 {
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields after the command: state(0) ... utime(11) stime(12).
    (ticks(11) + ticks(12)) / 100.0
}

impl Cpu {
    fn now() -> Cpu {
        let process_s = std::fs::read_to_string("/proc/self/stat")
            .map(|s| stat_cpu_s(&s))
            .unwrap_or(0.0);
        let mut mock_s = 0.0;
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for t in tasks.flatten() {
                let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
                if comm.starts_with(MOCK_THREADS) {
                    mock_s += std::fs::read_to_string(t.path().join("stat"))
                        .map(|s| stat_cpu_s(&s))
                        .unwrap_or(0.0);
                }
            }
        }
        Cpu { process_s, mock_s }
    }
}

/// Bench `name`: batches of `N` pushes through `pusher`, `concurrency` in flight,
/// every one accepted; then its CPU per push.
fn bench_client(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    pusher: impl Pusher,
    concurrency: usize,
) {
    let mut cpu = CpuAccount::default();
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            cpu.run(iters, || {
                let ok = rt.block_on(batch(concurrency, pusher.clone()));
                assert_eq!(ok, u64::from(N), "{name}: every push accepted");
            })
        })
    });
    cpu.report(name);
}

/// CPU spent over every batch of one case (warm-up included), for the per-push CPU
/// line printed after criterion's figures.
#[derive(Default)]
struct CpuAccount {
    pushes: u64,
    client_s: f64,
    mock_s: f64,
}

impl CpuAccount {
    /// Runs `batch` `iters` times; returns the wall time of the batches alone (the
    /// CPU readings around them are not timed).
    fn run(&mut self, iters: u64, mut batch: impl FnMut()) -> Duration {
        let before = Cpu::now();
        let mut wall = Duration::ZERO;
        for _ in 0..iters {
            let t = std::time::Instant::now();
            batch();
            wall += t.elapsed();
        }
        let after = Cpu::now();
        let mock = after.mock_s - before.mock_s;
        self.pushes += iters * u64::from(N);
        self.mock_s += mock;
        self.client_s += after.process_s - before.process_s - mock;
        wall
    }

    fn report(&self, case: &str) {
        let per_1k = |s: f64| s * 1e3 / (self.pushes as f64 / 1e3);
        println!(
            "e2e_apns_push/{case}: CPU per 1k pushes: client {:.1} ms, mock {:.1} ms ({} pushes)",
            per_1k(self.client_s),
            per_1k(self.mock_s),
            self.pushes
        );
    }
}

fn runtime(threads: &'static str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(threads)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn e2e(c: &mut Criterion) {
    // The mock runs on its own runtime, like a vendor in another process, so its CPU
    // can be told apart from the client side's.
    let mock_rt = runtime(MOCK_THREADS);
    let rt = runtime("bench-client");
    let env = rt.block_on(setup(mock_rt.handle())).expect("bench setup");
    let seq = AtomicU64::new(0);

    let mut g = c.benchmark_group("e2e_apns_push");
    g.throughput(Throughput::Elements(u64::from(N)));
    // Hundreds of ms per batch: ten flat samples of one or two batches each.
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.warm_up_time(Duration::from_secs(2));
    g.measurement_time(Duration::from_secs(8));

    let mut cpu = CpuAccount::default();
    g.bench_function("engine", |b| {
        b.iter_custom(|iters| {
            cpu.run(iters, || {
                let s = seq.fetch_add(1, Ordering::Relaxed);
                rt.block_on(engine_batch(&env, s)).expect("engine batch");
            })
        })
    });
    cpu.report("engine");

    let pre = Arc::new(Prebuilt::new(&env).expect("pre-built heads"));
    let pool = {
        let _guard = rt.enter();
        let tls = tls::client_config(Some(&env.ca_file), &[b"h2"]).expect("client tls");
        let endpoint = Endpoint::parse(&env.apns.url()).expect("mock url");
        Pool::new(endpoint, tls, env.connections, Duration::from_secs(30)).expect("pool")
    };
    bench_client(
        &mut g,
        &rt,
        "bare_pool",
        BarePool { pool, pre },
        env.concurrency,
    );

    let (rendered, expires_at) = rendered_body("bench-naive").expect("render");
    assert_eq!(
        serde_json::to_vec(&naive_body()).expect("a json! value serialises"),
        rendered,
        "the naive client sends the engine's body bytes"
    );
    let client = {
        let _guard = rt.enter();
        naive_client(&env.ca)
    };
    let naive = Arc::new(NaivePusher {
        client,
        base: env.apns.url(),
        jwt: provider_token(&env).expect("provider token"),
        tokens: (0..N).map(token).collect(),
        expires_at,
    });
    bench_client(&mut g, &rt, "naive", naive, env.concurrency);
    g.finish();

    assert!(
        env.apns.rejections().is_empty(),
        "mock rejected pushes: {:?}",
        env.apns.rejections()
    );
    let Env { engine, apns, .. } = env;
    rt.block_on(engine.stop_without_snapshot());
    mock_rt.block_on(async move {
        apns.shutdown();
        apns.closed().await;
    });
}

criterion_group!(benches, e2e);
criterion_main!(benches);
