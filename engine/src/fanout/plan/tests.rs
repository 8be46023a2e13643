//! The planner on a real `State`: who counts as offline, which bindings a message or
//! a call goes to, and which lane each device lands in.

use super::*;
use crate::clock::Clock;
use crate::state::notify::Kind;
use crate::state::{Binding, Environment, Mutation, Token};

fn bind(s: &State, user: &str, push_id: &str, provider: ProviderKind) {
    s.apply(&Mutation::Bind {
        push_id: push_id.into(),
        binding: Binding {
            user_id: user.into(),
            provider,
            environment: Environment::Production,
            app_id: None,
            token: Token::Text(format!("tok-{push_id}").into()),
        },
    });
}

fn go_online(s: &State, user: &str) {
    let idx = s.users.pin().intern(user);
    s.presence.apply(idx, "session", true, 0);
}

/// Plan for `users` (by name; unknown names stay `None`) with `configured` vendors.
fn plan_for(
    s: &State,
    users: &[&str],
    is_call: bool,
    configured: impl Fn(ProviderKind) -> bool,
) -> (Summary, Targets) {
    plan_in(s, users, None, is_call, configured)
}

/// [`plan_for`] in a conversation (as the recipients see it).
fn plan_in(
    s: &State,
    users: &[&str],
    conversation: Option<Conversation<'_>>,
    is_call: bool,
    configured: impl Fn(ProviderKind) -> bool,
) -> (Summary, Targets) {
    let pin = s.users.pin();
    let recipients: Vec<Option<UserIdx>> = users.iter().map(|u| pin.get(u)).collect();
    let options = Options {
        is_call,
        ..Options::default()
    };
    plan(s, &pin, recipients, conversation, options, configured)
}

fn mute(s: &State, user: &str, kind: Kind, id: &str) {
    s.apply(&Mutation::SetNotification {
        user_id: user.into(),
        kind,
        conversation_id: id.into(),
        muted: true,
    });
}

fn push_ids(devices: &[Device]) -> Vec<&str> {
    let mut ids: Vec<&str> = devices.iter().map(Device::push_id).collect();
    ids.sort_unstable();
    ids
}

fn lane(t: &Targets, lane: Lane) -> Vec<&str> {
    push_ids(&t.lanes[lane as usize])
}

#[test]
fn online_recipients_get_nothing_and_unknown_ones_count_as_offline() {
    let s = State::new(Clock::new());
    bind(&s, "on", "p-on", ProviderKind::Fcm);
    bind(&s, "off", "p-off", ProviderKind::Fcm);
    go_online(&s, "on");
    let (summary, targets) = plan_for(&s, &["on", "off", "stranger"], false, |_| true);
    let expected = Summary {
        recipients: 3,
        offline: 2,
        muted: 0,
    };
    assert_eq!(summary, expected);
    assert_eq!(lane(&targets, Lane::Fcm), ["p-off"]);
    assert_eq!(targets.queued(), 1);
}

#[test]
fn planning_leaves_no_trace_of_an_unknown_recipient() {
    let s = State::new(Clock::new());
    let (summary, targets) = plan_for(&s, &["nobody"], false, |_| true);
    assert_eq!((summary.offline, targets.queued()), (1, 0));
    assert_eq!(s.users.pin().get("nobody"), None);
}

#[test]
fn every_vendor_lands_in_its_own_lane_and_voip_shares_the_apns_lane() {
    let s = State::new(Clock::new());
    for (i, p) in ProviderKind::ALL.iter().enumerate() {
        bind(&s, "u", &format!("p{i}-{}", p.as_str()), *p);
    }
    let (_, call) = plan_for(&s, &["u"], true, |_| true);
    for l in Lane::ALL {
        // A call with a VoIP binding rings it and sends no alert to `apns`.
        let want: Vec<String> = ProviderKind::ALL
            .iter()
            .enumerate()
            .filter(|(_, p)| Lane::of(**p) == Some(l) && **p != ProviderKind::Apns)
            .map(|(i, p)| format!("p{i}-{}", p.as_str()))
            .collect();
        assert!(!want.is_empty(), "every lane has a vendor");
        assert_eq!(lane(&call, l), want, "lane {}", l.name());
    }
}

#[test]
fn a_message_skips_voip_bindings() {
    let s = State::new(Clock::new());
    bind(&s, "u", "alert", ProviderKind::Apns);
    bind(&s, "u", "voip", ProviderKind::ApnsVoip);
    let (summary, targets) = plan_for(&s, &["u"], false, |_| true);
    assert_eq!(summary.offline, 1);
    assert_eq!(lane(&targets, Lane::Apns), ["alert"]);
}

#[test]
fn a_call_rings_voip_once_per_iphone_and_alerts_invitees_without_voip() {
    let s = State::new(Clock::new());
    bind(&s, "with-voip", "a-alert", ProviderKind::Apns);
    bind(&s, "with-voip", "a-voip", ProviderKind::ApnsVoip);
    bind(&s, "alert-only", "b-alert", ProviderKind::Apns);
    let (_, targets) = plan_for(&s, &["with-voip", "alert-only"], true, |_| true);
    assert_eq!(lane(&targets, Lane::Apns), ["a-voip", "b-alert"]);
}

#[test]
fn devices_of_unconfigured_vendors_are_set_aside_not_queued() {
    let s = State::new(Clock::new());
    bind(&s, "u", "fcm", ProviderKind::Fcm);
    bind(&s, "u", "mi", ProviderKind::Xiaomi);
    let (_, targets) = plan_for(&s, &["u"], false, |p| p == ProviderKind::Fcm);
    assert_eq!(lane(&targets, Lane::Fcm), ["fcm"]);
    assert!(targets.lanes[Lane::Xiaomi as usize].is_empty());
    assert_eq!(push_ids(&targets.unconfigured), ["mi"]);
    assert_eq!(targets.queued(), 1);
}

#[test]
fn group_members_who_muted_the_group_are_counted_and_skipped() {
    let s = State::new(Clock::new());
    let members: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    for (i, m) in members.iter().enumerate() {
        bind(&s, m, &format!("p{i}"), ProviderKind::Fcm);
    }
    for m in ["m3", "m17", "m49"] {
        mute(&s, m, Kind::Group, "g");
    }
    go_online(&s, "m17");
    mute(&s, "m5", Kind::Group, "other-group");
    mute(&s, "m6", Kind::Peer, "g");
    let names: Vec<&str> = members.iter().map(String::as_str).collect();
    let g = Conversation {
        kind: Kind::Group,
        id: "g",
    };
    let (summary, targets) = plan_in(&s, &names, Some(g), false, |_| true);
    // m17 is online (not pushed, not counted as muted); m3 and m49 are skipped.
    let expected = Summary {
        recipients: 50,
        offline: 49,
        muted: 2,
    };
    assert_eq!(summary, expected);
    assert_eq!(targets.queued(), 47);
    let pushed = lane(&targets, Lane::Fcm);
    assert!(!pushed.contains(&"p3") && !pushed.contains(&"p49"));
    assert!(pushed.contains(&"p5") && pushed.contains(&"p6"));
    // Members in any order find the same mutes.
    let mut shuffled = names.clone();
    shuffled.reverse();
    shuffled.swap(3, 30);
    let (summary, _) = plan_in(&s, &shuffled, Some(g), false, |_| true);
    assert_eq!(summary, expected);
}

#[test]
fn a_peer_mute_silences_that_sender_only_and_calls_still_ring() {
    let s = State::new(Clock::new());
    bind(&s, "u1", "p1", ProviderKind::Apns);
    bind(&s, "u1", "v1", ProviderKind::ApnsVoip);
    mute(&s, "u1", Kind::Peer, "u0");
    let from = |id| Conversation {
        kind: Kind::Peer,
        id,
    };
    let (summary, targets) = plan_in(&s, &["u1"], Some(from("u0")), false, |_| true);
    assert_eq!(
        (summary.offline, summary.muted, targets.queued()),
        (1, 1, 0)
    );
    let (summary, targets) = plan_in(&s, &["u1"], Some(from("u2")), false, |_| true);
    assert_eq!((summary.muted, targets.queued()), (0, 1));
    let (summary, targets) = plan_for(&s, &["u1"], true, |_| true);
    assert_eq!((summary.muted, lane(&targets, Lane::Apns)), (0, vec!["v1"]));
}
