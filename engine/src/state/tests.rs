//! The user sweep against the whole state: what it releases, what it must not, and
//! snapshots of a state that saw junk ids.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;
use crate::store::snapshot::{self, Image};

fn state() -> State {
    State::with_presence(
        Clock::new(),
        &PresenceCfg {
            user_sweep_interval_ms: 0,
            ..PresenceCfg::default()
        },
    )
}

fn bind(user: &str, push_id: &str) -> Mutation {
    Mutation::Bind {
        push_id: push_id.into(),
        binding: Binding {
            user_id: user.into(),
            provider: ProviderKind::Fcm,
            environment: Environment::Production,
            app_id: None,
            token: Token::Text(format!("tok-{push_id}").into()),
        },
    }
}

fn group(id: &str, add: &[&str], remove: &[&str]) -> Mutation {
    Mutation::GroupUpdate {
        group_id: id.into(),
        add: add.iter().map(|u| Arc::from(*u)).collect(),
        remove: remove.iter().map(|u| Arc::from(*u)).collect(),
    }
}

/// Run sweep steps until a whole pass has been made (nobody holds a pin here).
fn full_pass(s: &State) -> usize {
    let mut released = s.sweep();
    while s.sweeper.lock().in_pass {
        released += s.sweep();
    }
    released
}

fn online(s: &State, user: &str, session: &str, on: bool) {
    let users = s.users.pin();
    let idx = if on {
        users.intern(user)
    } else {
        match users.get(user) {
            Some(u) => u,
            None => return,
        }
    };
    s.presence.apply(idx, session, on, 0);
}

#[test]
fn the_sweep_releases_exactly_the_users_nothing_refers_to() {
    let s = state();
    s.apply(&bind("bound", "p1"));
    s.apply(&group("g", &["member", "leaves"], &[]));
    online(&s, "present", "s1", true);
    online(&s, "gone", "s1", true);
    online(&s, "gone", "s1", false);
    s.apply(&group("g", &[], &["leaves"]));
    s.apply(&bind("unbound", "p2"));
    s.apply(&Mutation::Unbind {
        push_id: "p2".into(),
    });
    s.apply(&bind("moved-from", "p3"));
    s.apply(&bind("moved-to", "p3"));
    s.apply(&group("deleted", &["orphan"], &[]));
    s.apply(&Mutation::GroupDelete {
        group_id: "deleted".into(),
    });
    assert_eq!(s.users.len(), 9);
    let view = s.durable_view();
    assert_eq!(full_pass(&s), 5);
    assert_eq!(s.users.len(), 4);
    let users = s.users.pin();
    for kept in ["bound", "member", "present", "moved-to"] {
        assert!(users.get(kept).is_some(), "{kept} is referenced");
    }
    for gone in ["gone", "leaves", "unbound", "moved-from", "orphan"] {
        assert_eq!(users.get(gone), None, "{gone} is not referenced");
    }
    drop(users);
    assert_eq!(s.durable_view(), view);
    assert_eq!(full_pass(&s), 0, "nothing more to release");
}

#[test]
fn a_pass_starts_at_most_once_per_interval() {
    let s = State::with_presence(
        Clock::new(),
        &PresenceCfg {
            user_sweep_interval_ms: 3_600_000,
            ..PresenceCfg::default()
        },
    );
    online(&s, "a", "s", true);
    online(&s, "a", "s", false);
    assert_eq!(s.sweep(), 1, "the first pass starts at once");
    online(&s, "b", "s", true);
    online(&s, "b", "s", false);
    assert_eq!(s.sweep(), 0, "the next one waits for the interval");
    assert_eq!(s.users.len(), 1);
}

#[test]
fn a_user_referenced_after_the_sweep_found_it_idle_is_not_released() {
    let s = state();
    online(&s, "x", "s", true);
    online(&s, "x", "s", false);
    // An in-flight request holds a pin: the sweep finds "x" idle but cannot take
    // the release lock, and keeps "x" as a candidate.
    let in_flight = s.users.pin();
    let x = in_flight.get("x").expect("x is interned");
    assert_eq!(s.sweep(), 0);
    assert!(s.sweeper.lock().candidates.contains(&x));
    // Meanwhile a durable mutation refers to "x".
    s.apply(&bind("x", "p1"));
    drop(in_flight);
    // The sweep re-checks its candidates under the release lock.
    assert_eq!(full_pass(&s), 0);
    assert_eq!(s.users.pin().get("x"), Some(x));
    assert_eq!(s.durable_view().bindings["p1"].0, "x");
}

#[test]
fn a_user_whose_mark_was_taken_while_referenced_is_released_once_the_reference_goes() {
    let s = state();
    online(&s, "x", "s", true);
    let x = s.users.pin().get("x").expect("interned");
    assert!(s.users.hints().is_marked(x), "interning marks");
    assert_eq!(full_pass(&s), 0);
    assert!(
        !s.users.hints().is_marked(x),
        "taken, found referenced, forgotten"
    );
    assert_eq!(full_pass(&s), 0);
    online(&s, "x", "s", false);
    assert!(
        s.users.hints().is_marked(x),
        "the last session going marks again"
    );
    assert_eq!(full_pass(&s), 1);
    assert_eq!(s.users.len(), 0);
}

/// Run `f` on a thread of its own with a handle on the shared state.
fn on_thread<T: Send + 'static>(
    s: &Arc<State>,
    f: impl FnOnce(&State) -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let s = s.clone();
    std::thread::spawn(move || f(&s))
}

/// What each worker leaves behind, to compare with the state's durable view.
#[derive(Default)]
struct Model {
    bindings: BTreeMap<String, String>,
    groups: BTreeMap<String, std::collections::BTreeSet<String>>,
}

#[test]
fn mutations_and_presence_racing_the_sweep_never_lose_a_referenced_user() {
    // Binds, moves, unbinds, group changes and presence run on their own threads
    // while another thread sweeps without pause, so slots are released and reused
    // all the time. Any index released while referenced (or while a writer held it)
    // would come back under another name: the final view would name the wrong users.
    let s = Arc::new(state());
    let stop = Arc::new(AtomicBool::new(false));
    let sweeper = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut released = 0;
            while !stop.load(Ordering::Relaxed) {
                released += s.sweep();
            }
            released
        })
    };
    let binder = on_thread(&s, move |s| {
        let mut m = Model::default();
        for i in 0..20_000u32 {
            let push_id = format!("p{}", i % 64);
            if i % 5 == 4 {
                s.apply(&Mutation::Unbind {
                    push_id: push_id.as_str().into(),
                });
                m.bindings.remove(&push_id);
            } else {
                let user = format!("b{}", (i * 7) % 97);
                s.apply(&bind(&user, &push_id));
                m.bindings.insert(push_id, user);
            }
        }
        m
    });
    let grouper = on_thread(&s, move |s| {
        let mut m = Model::default();
        for i in 0..20_000u32 {
            let g = format!("g{}", i % 4);
            let a = format!("m{}", (i * 13) % 89);
            let r = format!("m{}", (i * 5) % 89);
            s.apply(&group(&g, &[&a], &[&r]));
            let members = m.groups.entry(g).or_default();
            members.insert(a);
            members.remove(&r);
        }
        m.groups.retain(|_, members| !members.is_empty());
        m
    });
    let presence = on_thread(&s, move |s| {
        for i in 0..40_000u32 {
            let user = format!("s{}", i % 71);
            online(s, &user, "a", i % 3 != 2);
            let users = s.users.pin();
            if let Some(idx) = users.get(&user) {
                assert_eq!(&*users.name(idx), user.as_str());
            }
        }
    });
    let bindings = binder.join().expect("binder").bindings;
    let groups = grouper.join().expect("grouper").groups;
    presence.join().expect("presence");
    stop.store(true, Ordering::Relaxed);
    assert!(
        sweeper.join().expect("sweeper") > 0,
        "the sweeper released users"
    );
    let view = s.durable_view();
    let got: BTreeMap<String, String> = view
        .bindings
        .iter()
        .map(|(p, b)| (p.clone(), b.0.clone()))
        .collect();
    assert_eq!(got, bindings);
    let got_groups: BTreeMap<_, _> = view
        .groups
        .into_iter()
        .filter(|(_, m)| !m.is_empty())
        .collect();
    assert_eq!(got_groups, groups);
    full_pass(&s);
    let users = s.users.pin();
    for n in 0..71 {
        let user = format!("s{n}");
        if let Some(idx) = users.get(&user) {
            assert!(s.presence.has_sessions(idx), "{user} has a session");
            assert_eq!(&*users.name(idx), user.as_str());
        }
    }
}

/// Capture, write, open and install a snapshot of `s`: the restored state and the
/// number of users the image named.
fn round_trip(s: &State) -> (State, usize) {
    let img = Image::capture(s);
    let users = img.users.ends.len();
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, _) = snapshot::write(dir.path(), 1, &img).expect("writes");
    let loaded = snapshot::open(&path).expect("opens");
    let fresh = state();
    snapshot::install(loaded.image(), &fresh).expect("installs");
    (fresh, users)
}

#[test]
fn a_snapshot_names_only_the_users_bindings_and_groups_refer_to() {
    let s = state();
    s.apply(&bind("alice", "p1"));
    s.apply(&bind("bob", "p2"));
    for n in 0..5_000 {
        online(&s, &format!("junk-{n}"), "s", true);
    }
    s.apply(&group("g", &["carol", "alice", "zed"], &[]));
    s.apply(&group("g2", &["junk-7", "bob"], &[]));
    for n in 0..5_000 {
        online(&s, &format!("junk-{n}"), "s", false);
    }
    // Not swept yet: the junk is still interned, but the image names only users that
    // bindings and groups refer to.
    assert!(s.users.len() > 5_000);
    let (restored, image_users) = round_trip(&s);
    assert_eq!(image_users, 5);
    assert_eq!(restored.durable_view(), s.durable_view());
    assert_eq!(restored.users.len(), 5);
    // And member lists come back sorted in the new numbering.
    let g = restored.groups.members("g").expect("g restored");
    assert!(g.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        restored
            .groups
            .memberships(restored.users.pin().get("alice").unwrap()),
        1
    );
}

/// A journal that records every mutation at once and reports, through `exclusive`,
/// whether a change could still be taken back (a batch not yet durable).
struct PendingJournal {
    seq: parking_lot::Mutex<u64>,
    undos: parking_lot::Mutex<Vec<Undo>>,
    settled: AtomicBool,
}

impl PendingJournal {
    /// A settled journal, attached to `s`.
    fn attach(s: &State) -> Arc<PendingJournal> {
        let journal = Arc::new(PendingJournal {
            seq: parking_lot::Mutex::new(0),
            undos: parking_lot::Mutex::new(Vec::new()),
            settled: AtomicBool::new(true),
        });
        s.attach_journal(journal.clone());
        journal
    }
}

impl Journal for PendingJournal {
    fn record(&self, _m: &Mutation, apply: &mut dyn FnMut() -> Undo) -> Result<Ticket, Refused> {
        let mut seq = self.seq.lock();
        *seq += 1;
        self.undos.lock().push(apply());
        self.settled.store(false, Ordering::SeqCst);
        Ok(Ticket {
            seq: *seq,
            epoch: 0,
        })
    }

    fn exclusive(&self, f: &mut dyn FnMut(bool)) {
        let _serialised = self.seq.lock();
        f(self.settled.load(Ordering::SeqCst));
    }
}

/// A few sweep calls (a pass that cannot release stays open, so `full_pass` would spin).
fn sweeps(s: &State, n: usize) -> usize {
    (0..n).map(|_| s.sweep()).sum()
}

#[test]
fn the_sweep_waits_until_no_change_that_could_be_taken_back_refers_to_a_user() {
    let s = Arc::new(state());
    let journal = PendingJournal::attach(&s);
    s.apply(&bind("alice", "p1"));
    journal.settled.store(true, Ordering::SeqCst);
    journal.undos.lock().clear();
    // The unbind is applied but not durable: its Undo still names alice's index.
    s.apply(&Mutation::Unbind {
        push_id: "p1".into(),
    });
    assert_eq!(sweeps(&s, 5), 0, "alice may come back with a revert");
    assert!(s.users.pin().get("alice").is_some());

    // The journal fails the batch and takes the unbind back: alice's index is alive.
    let undo = journal.undos.lock().pop().expect("the unbind's undo");
    s.exclusive(|_| s.revert(undo));
    journal.settled.store(true, Ordering::SeqCst);
    let users = s.users.pin();
    let alice = users.get("alice").expect("alice was never released");
    assert!(s.registry.has_devices(alice));
    assert_eq!(s.durable_view().bindings["p1"].0, "alice");
    drop(users);

    // Once the unbind is durable, alice goes.
    s.apply(&Mutation::Unbind {
        push_id: "p1".into(),
    });
    assert_eq!(sweeps(&s, 5), 0, "not yet durable");
    journal.settled.store(true, Ordering::SeqCst);
    assert_eq!(full_pass(&s), 1);
    assert!(s.users.pin().get("alice").is_none());
}

fn set_mute(user: &str, kind: notify::Kind, id: &str, muted: bool) -> Mutation {
    Mutation::SetNotification {
        user_id: user.into(),
        kind,
        conversation_id: id.into(),
        muted,
    }
}

fn set_badge(user: &str, count: u32) -> Mutation {
    Mutation::SetBadge {
        user_id: user.into(),
        count,
    }
}

fn is_muted(s: &State, user: &str, kind: notify::Kind, id: &str) -> bool {
    let users = s.users.pin();
    let c = notify::Conversation { kind, id };
    users.get(user).is_some_and(|u| s.notify.is_muted(u, c))
}

fn badge(s: &State, user: &str) -> u32 {
    (s.users.pin().get(user)).map_or(0, |u| s.badges.get(u))
}

#[test]
fn a_mute_or_a_badge_count_keeps_its_user_from_the_sweep_until_it_is_gone() {
    let s = state();
    s.apply(&set_mute("muter", notify::Kind::Group, "g", true));
    s.apply(&set_badge("counted", 3));
    s.apply(&set_badge("zeroed", 0));
    s.apply(&set_mute("unknown", notify::Kind::Peer, "x", false));
    assert_eq!(
        full_pass(&s),
        0,
        "nothing was interned for a zero or an unmute"
    );
    assert_eq!(s.users.len(), 2);
    s.apply(&set_mute("muter", notify::Kind::Group, "g", false));
    assert_eq!(full_pass(&s), 1);
    s.apply(&set_badge("counted", 0));
    assert_eq!(full_pass(&s), 1);
    assert!(s.users.is_empty());
}

#[test]
fn deleting_a_group_drops_its_mutes_and_a_revert_brings_them_back() {
    let s = Arc::new(state());
    let journal = PendingJournal::attach(&s);
    s.apply(&group("g", &["a", "b"], &[]));
    s.apply(&set_mute("a", notify::Kind::Group, "g", true));
    s.apply(&set_mute("z", notify::Kind::Group, "g", true));
    let before = s.durable_view();
    s.apply(&Mutation::GroupDelete {
        group_id: "g".into(),
    });
    assert!(!is_muted(&s, "a", notify::Kind::Group, "g"));
    assert!(s.durable_view().mutes.is_empty());
    let undo = journal.undos.lock().pop().expect("the delete's undo");
    s.exclusive(|_| s.revert(undo));
    assert_eq!(s.durable_view(), before);
    assert!(is_muted(&s, "z", notify::Kind::Group, "g"));
}

#[test]
fn a_mute_or_badge_set_the_journal_takes_back_leaves_memory_as_before() {
    let s = Arc::new(state());
    let journal = PendingJournal::attach(&s);
    s.apply(&set_mute("u1", notify::Kind::Peer, "u0", true));
    s.apply(&set_mute("u1", notify::Kind::Peer, "u9", true));
    let users = s.users.pin();
    let u1 = users.get("u1").expect("u1 is interned");
    s.badges.add(u1, 5);
    drop(users);
    let before = s.durable_view();
    // Undo newest first, as the journal does.
    s.apply(&set_mute("u1", notify::Kind::Peer, "u0", false));
    s.apply(&set_mute("u1", notify::Kind::Group, "g", true));
    s.apply(&set_badge("u1", 0));
    // Increments made after the set (a fan-out) survive its revert.
    s.badges.add(u1, 2);
    assert_eq!(badge(&s, "u1"), 2);
    let undos: Vec<Undo> = journal.undos.lock().drain(2..).rev().collect();
    s.exclusive(|_| undos.into_iter().for_each(|u| s.revert(u)));
    let mut expected = before;
    expected.badges.insert("u1".into(), 7);
    assert_eq!(s.durable_view(), expected);
    assert!(is_muted(&s, "u1", notify::Kind::Peer, "u0"));
}

#[test]
fn the_mute_limit_is_checked_before_the_log_and_never_on_replay() {
    let s = Arc::new(state());
    let journal = PendingJournal::attach(&s);
    for i in 0..notify::MAX_MUTED_PER_USER {
        let applied = s.apply(&set_mute("u", notify::Kind::Peer, &format!("p{i}"), true));
        assert_eq!(applied, Applied::NotificationSet);
    }
    let logged = *journal.seq.lock();
    let over = set_mute("u", notify::Kind::Group, "one-too-many", true);
    assert_eq!(s.apply(&over), Applied::TooManyMuted);
    assert_eq!(*journal.seq.lock(), logged, "a refused mute is not logged");
    assert!(!is_muted(&s, "u", notify::Kind::Group, "one-too-many"));
    // Re-muting and unmuting are always accepted.
    assert_eq!(
        s.apply(&set_mute("u", notify::Kind::Peer, "p0", true)),
        Applied::NotificationSet
    );
    assert_eq!(
        s.apply(&set_mute("u", notify::Kind::Peer, "p0", false)),
        Applied::NotificationSet
    );
    // Replay applies what the log holds, whatever the count (a fuzzy snapshot may
    // hold mutes made after the record being replayed).
    s.apply_in_memory(&set_mute("u", notify::Kind::Peer, "p0", true));
    s.apply_in_memory(&over);
    assert_eq!(
        s.notify.count(s.users.pin().get("u").unwrap()),
        notify::MAX_MUTED_PER_USER + 1
    );
}

#[test]
fn a_snapshot_restores_mutes_and_badge_counts() {
    let s = state();
    s.apply(&bind("alice", "p1"));
    s.apply(&set_mute("alice", notify::Kind::Group, "g", true));
    s.apply(&set_mute("bob", notify::Kind::Peer, "alice", true));
    s.apply(&set_mute("bob", notify::Kind::Group, "g", true));
    s.apply(&set_badge("carol", 4));
    let alice = s.users.pin().get("alice").unwrap();
    s.badges.add(alice, 9);
    for n in 0..100 {
        online(&s, &format!("junk-{n}"), "s", true);
    }
    let (restored, image_users) = round_trip(&s);
    assert_eq!(image_users, 3, "alice, bob and carol");
    let view = restored.durable_view();
    assert_eq!(view, s.durable_view());
    assert_eq!(view.mutes.len(), 3);
    assert_eq!(
        (badge(&restored, "alice"), badge(&restored, "carol")),
        (9, 4)
    );
    assert!(is_muted(&restored, "bob", notify::Kind::Group, "g"));
}

#[test]
fn a_format_2_snapshot_without_settings_still_loads() {
    let s = state();
    s.apply(&bind("alice", "p1"));
    s.apply(&group("g", &["alice", "bob"], &[]));
    // A format-2 file: the image archive alone behind a format-2 header.
    let image = rkyv::to_bytes::<rkyv::rancor::Error>(&Image::capture(&s)).unwrap();
    let header = snapshot::header(snapshot::FORMAT_VERSION_2, 4, &image, 0);
    let dir = tempfile::tempdir().unwrap();
    let path = snapshot::path(dir.path(), 4);
    std::fs::write(&path, [&header[..], &image[..]].concat()).unwrap();
    let loaded = snapshot::open(&path).expect("a format-2 snapshot opens");
    assert!(loaded.image().settings.is_none());
    let fresh = state();
    snapshot::install(loaded.image(), &fresh).expect("installs");
    assert_eq!(fresh.durable_view(), s.durable_view());
}
