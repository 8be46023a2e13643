//! Component benchmarks, each beside a naive baseline in the same group:
//! - registry bind and lookup vs a `Mutex<HashMap<String, _>>` registry;
//! - per-device body rendering: the pre-rendered FCM template and shared APNs body vs
//!   `serde_json` of the whole message per device;
//! - the APNs provider-token cache hit vs signing an ES256 JWT per request.

use std::collections::HashMap;
use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use fanfare::clock::Clock;
use fanfare::providers::{apns, Content, Kind, Push};
use fanfare::state::{Mutation, State};
use fanfare_benches::binding;
use parking_lot::Mutex;

fn registry(c: &mut Criterion) {
    const N: u64 = 100_000;
    let mut g = c.benchmark_group("registry");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.bench_function("bind_sharded", |b| {
        b.iter_batched(
            || {
                let state = State::new(Clock::new());
                let muts: Vec<Mutation> = (0..N)
                    .map(|i| {
                        let (push_id, binding) = binding(i);
                        Mutation::Bind { push_id, binding }
                    })
                    .collect();
                (state, muts)
            },
            |(state, muts)| {
                for m in &muts {
                    state.apply(m);
                }
                state
            },
            criterion::BatchSize::PerIteration,
        )
    });
    g.bench_function("bind_naive_mutex_hashmap", |b| {
        b.iter_batched(
            || {
                let map: Mutex<HashMap<String, (String, String)>> = Mutex::new(HashMap::new());
                let items: Vec<(Arc<str>, fanfare::state::Binding)> = (0..N).map(binding).collect();
                (map, items)
            },
            |(map, items)| {
                for (push_id, b) in &items {
                    map.lock().insert(
                        push_id.to_string(),
                        (b.user_id.to_string(), b.token.to_wire()),
                    );
                }
                map
            },
            criterion::BatchSize::PerIteration,
        )
    });
    let state = fanfare_benches::populated(N);
    let ids: Vec<Arc<str>> = (0..N).map(|i| binding(i).0).collect();
    g.bench_function("lookup_sharded", |b| {
        b.iter(|| {
            ids.iter()
                .filter(|id| state.registry.lookup(id).is_some())
                .count()
        })
    });
    let naive: Mutex<HashMap<String, (String, String)>> = Mutex::new(
        (0..N)
            .map(|i| {
                let (p, b) = binding(i);
                (p.to_string(), (b.user_id.to_string(), b.token.to_wire()))
            })
            .collect(),
    );
    g.bench_function("lookup_naive_mutex_hashmap", |b| {
        b.iter(|| {
            ids.iter()
                .filter(|id| naive.lock().get(&***id).is_some())
                .count()
        })
    });
    g.finish();
}

fn rendering(c: &mut Criterion) {
    const DEVICES: u64 = 10_000;
    let content = Content {
        title: Some("New message".into()),
        content: Some("hello from the benchmark".into()),
        payload: Some("{\"conv\":\"c-1\",\"seq\":42}".into()),
        badge: Some(3),
        ..Content::default()
    };
    let tokens: Vec<String> = (0..DEVICES)
        .map(|i| format!("f{i:011}:APA91b{}", "Hq3-Kx_9Zr".repeat(14)))
        .collect();
    // Rendered inside each measured iteration: the per-message cost is part of what
    // the pre-rendered side pays.
    let render = || {
        let kind = Kind::Message {
            message_id: "m".into(),
        };
        Push::render(kind, &content, 86_400, 0).expect("the benchmark content renders")
    };
    let mut g = c.benchmark_group("render_per_device");
    g.throughput(Throughput::Elements(DEVICES));
    g.bench_function("fcm_prerendered_template", |b| {
        b.iter(|| {
            let push = render();
            tokens
                .iter()
                .map(|t| push.fcm.for_token(t, None).len())
                .sum::<usize>()
        })
    });
    g.bench_function("fcm_naive_serde_json_per_device", |b| {
        b.iter(|| {
            tokens
                .iter()
                .map(|t| {
                    let body = serde_json::json!({"message": {
                        "token": t,
                        "notification": {"title": content.title, "body": content.content},
                        "data": {"payload": content.payload},
                        "android": {"priority": "HIGH", "ttl": "86400s",
                                    "notification": {"notification_count": content.badge}},
                    }});
                    serde_json::to_vec(&body).unwrap().len()
                })
                .sum::<usize>()
        })
    });
    g.bench_function("apns_shared_body", |b| {
        b.iter(|| {
            let push = render();
            (0..DEVICES)
                .map(|_| push.apns.alert.clone().len())
                .sum::<usize>()
        })
    });
    g.bench_function("apns_naive_serde_json_per_device", |b| {
        b.iter(|| {
            (0..DEVICES)
                .map(|_| {
                    let body = serde_json::json!({
                        "aps": {"alert": {"title": content.title, "body": content.content},
                                "badge": content.badge, "sound": "default"},
                        "payload": content.payload,
                    });
                    serde_json::to_vec(&body).unwrap().len()
                })
                .sum::<usize>()
        })
    });
    g.finish();
}

fn token_cache(c: &mut Criterion) {
    let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    let cache = apns::auth::TokenCache::new(key.clone(), "KEYID12345".into(), "TEAMID1234".into());
    let mut g = c.benchmark_group("apns_provider_token");
    g.throughput(Throughput::Elements(1));
    g.bench_function("cache_hit", |b| b.iter(|| black_box(cache.header())));
    g.bench_function("naive_sign_per_request", |b| {
        b.iter(|| {
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
            header.kid = Some("KEYID12345".into());
            let claims = serde_json::json!({"iss": "TEAMID1234", "iat": 1_700_000_000u64});
            black_box(jsonwebtoken::encode(&header, &claims, &key).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, registry, rendering, token_cache);
criterion_main!(benches);
