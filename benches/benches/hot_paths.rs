//! Hot-path benchmarks, each against a naive baseline in the same group:
//! - presence: atomic bitset + sharded sessions vs `Mutex<HashMap>`;
//! - fan-out planning over a group of 10k, 100k and 1M members with 10% online (device
//!   targets collected) vs a string-keyed naive plan;
//! - the same 1M-member plan with 1% of the members muting the group (do-not-disturb)
//!   beside the plan without any mute, in the same run: the target is ≥ 20M members/s
//!   per core for both (`group_fanout_plan_dnd`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use criterion::{
    black_box, criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use fanfare::clock::Clock;
use fanfare::fanout::plan;
use fanfare::state::notify::{Conversation, Kind};
use fanfare::state::{Binding, Environment, Mutation, ProviderKind, State, Token};
use parking_lot::Mutex;

fn presence(c: &mut Criterion) {
    let mut g = c.benchmark_group("presence_update");
    const N: u32 = 100_000;
    g.throughput(Throughput::Elements(u64::from(N)));
    let state = State::new(Clock::new());
    g.bench_function("sharded_bitset", |b| {
        b.iter(|| {
            for u in 0..N {
                state.presence.apply(u, "s", u % 2 == 0, 0);
            }
        })
    });
    let naive: Mutex<HashMap<String, HashSet<String>>> = Mutex::new(HashMap::new());
    g.bench_function("naive_mutex_hashmap", |b| {
        b.iter(|| {
            for u in 0..N {
                let mut m = naive.lock();
                let key = format!("u{u}");
                if u % 2 == 0 {
                    m.entry(key).or_default().insert("s".to_string());
                } else {
                    m.remove(&key);
                }
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("presence_test");
    g.throughput(Throughput::Elements(u64::from(N)));
    g.bench_function("bitset", |b| {
        b.iter(|| {
            (0..N)
                .filter(|u| state.presence.is_online(black_box(*u)))
                .count()
        })
    });
    g.finish();
}

fn build_state(members: u32) -> (State, Vec<u32>) {
    let state = State::new(Clock::new());
    let mut idx = Vec::with_capacity(members as usize);
    for i in 0..members {
        let user: Arc<str> = format!("user-{i}").into();
        let binding = Binding {
            user_id: user.clone(),
            provider: if i % 5 < 3 {
                ProviderKind::Apns
            } else {
                ProviderKind::Fcm
            },
            environment: Environment::Production,
            app_id: None,
            token: if i % 5 < 3 {
                Token::Bytes(vec![i as u8; 32].into_boxed_slice())
            } else {
                Token::Text(format!("fcm-{i}:{}", "x".repeat(140)).into())
            },
        };
        state.apply(&Mutation::Bind {
            push_id: format!("d{i}").into(),
            binding,
        });
        let u = state.users.pin().intern(&user);
        if i % 10 == 0 {
            state.presence.apply(u, "s", true, 0);
        }
        idx.push(u);
    }
    (state, idx)
}

fn planning(c: &mut Criterion) {
    let mut g = c.benchmark_group("group_fanout_plan");
    g.sample_size(10);
    for members in [10_000u32, 100_000, 1_000_000] {
        if members >= 1_000_000 {
            // Tens to hundreds of ms per iteration: flat sampling (the same iteration
            // count in each of the 10 samples) instead of criterion's linear ramp keeps
            // the case to seconds.
            g.sampling_mode(SamplingMode::Flat);
            g.warm_up_time(Duration::from_secs(1));
            g.measurement_time(Duration::from_secs(4));
        }
        let (state, idx) = build_state(members);
        g.throughput(Throughput::Elements(u64::from(members)));
        g.bench_with_input(
            BenchmarkId::new("bitset_and_index", members),
            &idx,
            |b, idx| {
                b.iter(|| {
                    let users = state.users.pin();
                    let recipients = idx.iter().copied().map(Some);
                    let (s, t) = plan::plan(
                        &state,
                        &users,
                        recipients,
                        None,
                        plan::Options::default(),
                        |_| true,
                    );
                    black_box((s, t.queued()))
                })
            },
        );
        drop((state, idx));
        if members >= 1_000_000 {
            // About 0.4–0.8 s per naive iteration: ten of them.
            g.measurement_time(Duration::from_secs(8));
        }
        // Baseline: string-keyed membership, online set and device map behind locks.
        let online: Mutex<HashSet<String>> = Mutex::new(
            (0..members)
                .filter(|i| i % 10 == 0)
                .map(|i| format!("user-{i}"))
                .collect(),
        );
        let devices: Mutex<HashMap<String, Vec<String>>> = Mutex::new(
            (0..members)
                .map(|i| (format!("user-{i}"), vec![format!("d{i}")]))
                .collect(),
        );
        let names: Vec<String> = (0..members).map(|i| format!("user-{i}")).collect();
        g.bench_with_input(
            BenchmarkId::new("naive_strings_mutex", members),
            &names,
            |b, names| {
                b.iter(|| {
                    let mut out = Vec::new();
                    for n in names {
                        if online.lock().contains(n) {
                            continue;
                        }
                        if let Some(d) = devices.lock().get(n) {
                            out.extend(d.iter().cloned());
                        }
                    }
                    black_box(out.len())
                })
            },
        );
    }
    g.finish();
}

/// The 1M-member group plan with and without 1% of its members muting the group, in
/// the same run. Members are scanned in index order as the use case does (a group's
/// member list is sorted), so the mute check is the planner's forward cursor.
fn planning_dnd(c: &mut Criterion) {
    const MEMBERS: u32 = 1_000_000;
    let mut g = c.benchmark_group("group_fanout_plan_dnd");
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(u64::from(MEMBERS)));
    let (state, mut idx) = build_state(MEMBERS);
    idx.sort_unstable();
    let group = Conversation {
        kind: Kind::Group,
        id: "g",
    };
    let mut run = |name: &str, state: &State| {
        g.bench_with_input(BenchmarkId::new(name, MEMBERS), &idx, |b, idx| {
            b.iter(|| {
                let users = state.users.pin();
                let recipients = idx.iter().copied().map(Some);
                let (s, t) = plan::plan(
                    state,
                    &users,
                    recipients,
                    Some(group),
                    plan::Options::default(),
                    |_| true,
                );
                black_box((s, t.queued()))
            })
        });
    };
    run("no_mutes", &state);
    // 1% of the members, spread over the group, mute it.
    for i in (0..MEMBERS).step_by(100) {
        state.apply(&Mutation::SetNotification {
            user_id: format!("user-{i}").into(),
            kind: Kind::Group,
            conversation_id: "g".into(),
            muted: true,
        });
    }
    run("one_percent_muted", &state);
    g.finish();
}

criterion_group!(benches, presence, planning, planning_dnd);
criterion_main!(benches);
