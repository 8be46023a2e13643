//! The ledger's counting, bounds and retention, with the engine's `Clock` on paused
//! time.

use std::time::Duration;

use super::*;
use crate::fanout::plan::Lane;
use crate::state::{Environment, TokenRef};

fn device(push_id: &str, provider: ProviderKind) -> Device {
    Device::from_parts(
        push_id,
        1,
        provider,
        Environment::Production,
        None,
        TokenRef::Text("t"),
    )
}

/// `queued` FCM targets, plus `unconfigured` Huawei ones.
fn targets(queued: usize, unconfigured: usize) -> Targets {
    let mut t = Targets::default();
    t.lanes[Lane::Fcm as usize] = (0..queued)
        .map(|i| device(&format!("d{i}"), ProviderKind::Fcm))
        .collect();
    t.unconfigured = (0..unconfigured)
        .map(|i| device(&format!("h{i}"), ProviderKind::Huawei))
        .collect();
    t
}

fn verdict(status: u16, reason: &str, outcome: Outcome) -> Verdict {
    Verdict {
        status: Some(status),
        reason: Some(reason.into()),
        vendor_id: None,
        outcome,
    }
}

fn ledger(retention_s: u64) -> Ledger {
    Ledger::new(Clock::tokio(1_700_000_000_000), retention_s)
}

#[tokio::test(start_paused = true)]
async fn outcomes_add_up_to_the_targets_and_failures_name_the_vendors_answer() {
    let l = ledger(600);
    let t = targets(3, 1);
    let e = l.open(Space::Message, &"m1".into(), &t).expect("ledger on");
    l.insert(e.clone());
    let r = l.get(Space::Message, "m1").expect("findable").report();
    assert_eq!((r.targets, r.pending), (4, 3));
    assert_eq!(r.count(Final::Unconfigured), 1);
    assert_eq!(r.accepted_at_ms, 1_700_000_000_000);

    let fcm = &t.lanes[Lane::Fcm as usize];
    e.end(&fcm[0], Final::Delivered, None);
    let dead = verdict(404, "UNREGISTERED", Outcome::TokenDead(Cause::Unregistered));
    e.end(&fcm[1], Final::TokenDead, Some(&dead));
    let r = e.report();
    assert_eq!(r.pending, 1);
    assert_eq!(r.count(Final::Delivered), 1);
    assert_eq!(r.count(Final::TokenDead), 1);
    e.end(&fcm[2], Final::Delivered, None);
    let r = e.report();
    assert_eq!(r.pending, 0);
    assert_eq!(r.count(Final::Delivered), 2);
    assert_eq!(r.counts.iter().sum::<u64>() + r.pending, r.targets);
    assert_eq!(
        r.failures,
        vec![
            Failure {
                push_id: "h0".into(),
                provider: ProviderKind::Huawei,
                outcome: Final::Unconfigured,
                status: None,
                reason: None,
            },
            Failure {
                push_id: "d1".into(),
                provider: ProviderKind::Fcm,
                outcome: Final::TokenDead,
                status: Some(404),
                reason: Some("UNREGISTERED".into()),
            },
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn at_most_a_hundred_failures_are_listed_and_long_reasons_are_cut() {
    let l = ledger(600);
    let t = targets(150, 0);
    let e = l.open(Space::Message, &"m".into(), &t).expect("ledger on");
    let long = "é".repeat(100);
    let v = verdict(400, &long, Outcome::Rejected(Cause::BadRequest));
    for d in &t.lanes[Lane::Fcm as usize] {
        e.end(d, Final::Rejected, Some(&v));
    }
    let r = e.report();
    assert_eq!(r.count(Final::Rejected), 150, "all counted");
    assert_eq!(r.failures.len(), MAX_FAILURES, "a hundred listed");
    let reason = r.failures[0].reason.as_deref().expect("a reason");
    assert!(
        reason.len() <= MAX_REASON_BYTES && reason.starts_with('é'),
        "{reason}"
    );
    assert_eq!(l.failures_held(), MAX_FAILURES);
}

#[tokio::test(start_paused = true)]
async fn entries_leave_after_the_retention_and_their_failures_are_given_back() {
    let l = ledger(60);
    let t = targets(1, 2);
    let e = l.open(Space::Call, &"c".into(), &t).expect("ledger on");
    l.insert(e);
    assert_eq!(l.failures_held(), 2);
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(l.get(Space::Call, "c").is_some(), "within retention");
    assert!(
        l.get(Space::Message, "c").is_none(),
        "calls and messages apart"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(l.get(Space::Call, "c").is_none(), "past retention: 404");
    l.sweep();
    assert!(l.is_empty());
    assert_eq!(l.failures_held(), 0, "freed with the entry");
}

#[tokio::test(start_paused = true)]
async fn the_oldest_entries_are_shed_first_at_the_cap() {
    let l = ledger(600);
    let none = Targets::default();
    for i in 0..MAX_ENTRIES + 10 {
        let e = l.open(Space::Message, &format!("m{i}").into(), &none);
        l.insert(e.expect("ledger on"));
    }
    assert_eq!(l.len(), MAX_ENTRIES);
    assert!(l.get(Space::Message, "m9").is_none(), "the oldest left");
    assert!(l.get(Space::Message, "m10").is_some());
    let last = format!("m{}", MAX_ENTRIES + 9);
    assert!(l.get(Space::Message, &last).is_some());
}

#[tokio::test(start_paused = true)]
async fn the_failure_budget_sheds_the_oldest_entries_too() {
    let l = ledger(600);
    let per = MAX_FAILURES;
    for i in 0..MAX_FAILURE_RECORDS / per - 1 {
        let e = l.open(Space::Message, &format!("m{i}").into(), &targets(0, per));
        l.insert(e.expect("ledger on"));
    }
    assert!(l.get(Space::Message, "m0").is_some());
    // Accepted, its failures listed, not yet inserted: the budget is spent.
    let full = l.open(Space::Message, &"full".into(), &targets(0, per));
    assert_eq!(l.failures_held(), MAX_FAILURE_RECORDS);
    let over = l.open(Space::Message, &"over".into(), &targets(0, 1));
    let over = over.expect("ledger on").report();
    assert_eq!(over.failures.len(), 0, "over budget: counted, not listed");
    assert_eq!(over.count(Final::Unconfigured), 1);
    l.insert(full.expect("ledger on"));
    assert!(
        l.get(Space::Message, "m0").is_none(),
        "the oldest gave room"
    );
    assert!(l.get(Space::Message, "m1").is_some(), "one was enough");
    assert_eq!(l.failures_held(), MAX_FAILURE_RECORDS - per);
    let next = l.open(Space::Message, &"next".into(), &targets(0, 1));
    assert_eq!(
        next.expect("ledger on").report().failures.len(),
        1,
        "listed again"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reused_id_replaces_its_entry_and_an_off_ledger_keeps_nothing() {
    let l = ledger(600);
    let a = l.open(Space::Message, &"m".into(), &targets(0, 1));
    l.insert(a.expect("ledger on"));
    let b = l.open(Space::Message, &"m".into(), &targets(2, 0));
    l.insert(b.expect("ledger on"));
    let r = l.get(Space::Message, "m").expect("findable").report();
    assert_eq!((r.targets, r.pending), (2, 2), "the newer one");
    assert_eq!(l.failures_held(), 0, "the replaced one's failures freed");

    let refused = l.open(Space::Message, &"r".into(), &targets(0, 3));
    assert_eq!(l.failures_held(), 3);
    drop(refused);
    assert_eq!(
        l.failures_held(),
        0,
        "a refused request's entry gives them back"
    );

    let off = ledger(0);
    assert!(off
        .open(Space::Message, &"m".into(), &targets(1, 0))
        .is_none());
    assert!(off.get(Space::Message, "m").is_none());
}

#[tokio::test(start_paused = true)]
async fn withdrawn_invitations_end_at_once() {
    let l = ledger(600);
    let t = targets(3, 0);
    let e = l.open(Space::Call, &"c".into(), &t).expect("ledger on");
    let fcm = &t.lanes[Lane::Fcm as usize];
    e.end(&fcm[0], Final::Delivered, None);
    e.withdraw(&fcm[1..]);
    let r = e.report();
    assert_eq!((r.pending, r.count(Final::Withdrawn)), (0, 2));
    assert_eq!(r.count(Final::Delivered), 1);
    assert_eq!(r.failures.len(), 2);
    assert!(r.failures.iter().all(|f| f.outcome == Final::Withdrawn));
}
