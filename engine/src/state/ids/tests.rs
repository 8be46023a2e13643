use super::*;

#[test]
fn interning_is_stable_and_dense() {
    let i = Interner::new();
    let p = i.pin();
    assert_eq!(p.intern("a"), 0);
    assert_eq!(p.intern("b"), 1);
    assert_eq!(p.intern("a"), 0);
    assert_eq!(p.get("b"), Some(1));
    assert_eq!(p.get("c"), None);
    assert_eq!(&*p.name(1), "b");
    assert_eq!(i.len(), 2);
}

#[test]
fn released_indexes_are_reused_lowest_first_and_the_tail_is_trimmed() {
    let i = Interner::new();
    let names: Vec<String> = (0..10).map(|n| format!("user-{n}")).collect();
    {
        let p = i.pin();
        for (n, name) in names.iter().enumerate() {
            assert_eq!(p.intern(name), n as UserIdx);
        }
    }
    let r = i.try_release(Duration::ZERO).expect("no pin is held");
    assert_eq!(r.release(&[2, 5, 5, 9, 8]), 4);
    assert!(!r.is_live(5));
    assert!(r.is_live(4));
    r.tidy();
    assert_eq!(i.len(), 6);
    // 8 and 9 were the last slots: the table shrank to 8 slots.
    assert_eq!(i.slots(), 8);
    let p = i.pin();
    assert_eq!(p.get("user-5"), None);
    assert_eq!(p.get("user-9"), None);
    assert_eq!(p.get("user-7"), Some(7));
    assert_eq!(p.intern("new-a"), 2);
    assert_eq!(p.intern("new-b"), 5);
    assert_eq!(p.intern("new-c"), 8);
    assert_eq!(&*p.name(2), "new-a");
    assert_eq!(&*p.name(7), "user-7");
    assert_eq!(
        p.intern("user-5"),
        9,
        "a released name comes back as a new user"
    );
    assert_eq!(i.len(), 10);
}

#[test]
fn compaction_keeps_every_live_name() {
    let i = Interner::new();
    let n = 20_000u32;
    {
        let p = i.pin();
        for k in 0..n {
            p.intern(&format!("junk-{k:08}"));
        }
    }
    let odd: Vec<UserIdx> = (0..n).filter(|k| k % 4 != 0).collect();
    let r = i.try_release(Duration::ZERO).expect("no pin is held");
    r.release(&odd);
    r.tidy();
    assert!(
        i.arena.read().garbage == 0,
        "more than half was garbage: compacted"
    );
    assert!(i.arena.read().bytes.len() < 5_000 * 14 + 1);
    let p = i.pin();
    for k in (0..n).step_by(4) {
        let name = format!("junk-{k:08}");
        assert_eq!(p.get(&name), Some(k));
        assert_eq!(&*p.name(k), name);
    }
    assert_eq!(p.get("junk-00000001"), None);
}

#[test]
fn a_pin_keeps_a_sweep_from_releasing_until_it_is_dropped() {
    let i = Arc::new(Interner::new());
    let p = i.pin();
    let idx = p.intern("held");
    let (tx, rx) = std::sync::mpsc::channel();
    let sweeper = {
        let i = i.clone();
        std::thread::spawn(move || {
            assert!(
                i.try_release(Duration::from_millis(20)).is_none(),
                "a pin is held: no release"
            );
            tx.send(()).expect("test is waiting");
            let r = i
                .try_release(Duration::from_secs(30))
                .expect("the pin is dropped");
            r.release(&[idx])
        })
    };
    rx.recv().expect("sweeper reports");
    // Still pinned: the index still names its user, and nested pins do not block.
    assert_eq!(&*i.pin().name(idx), "held");
    drop(p);
    assert_eq!(sweeper.join().expect("sweeper"), 1);
    assert_eq!(i.pin().get("held"), None);
}

#[test]
fn pinned_indexes_name_their_user_while_sweeps_release_and_reuse_slots() {
    // Workers intern names and check, under the same pin, that the index names
    // what they interned; a sweeper keeps releasing everything it can. Slots are
    // reused constantly, so any release under a pin would show up as a wrong name.
    let i = Arc::new(Interner::new());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sweeper = {
        let (i, stop) = (i.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut released = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(r) = i.try_release(Duration::from_millis(5)) {
                    let all: Vec<UserIdx> = (0..i.slots() as UserIdx).collect();
                    released += r.release(&all);
                    r.tidy();
                }
            }
            released
        })
    };
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let i = i.clone();
            std::thread::spawn(move || {
                for round in 0..3_000u32 {
                    let names: Vec<String> = (0..8)
                        .map(|k| format!("w{w}-{}", (round + k) % 50))
                        .collect();
                    let p = i.pin();
                    let idxs: Vec<UserIdx> = names.iter().map(|n| p.intern(n)).collect();
                    for (n, idx) in names.iter().zip(&idxs) {
                        assert_eq!(&*p.name(*idx), n.as_str());
                        assert_eq!(p.get(n), Some(*idx));
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(sweeper.join().expect("sweeper") > 0, "the sweeper ran");
}

#[test]
fn hints_are_marked_on_intern_and_taken_a_word_at_a_time() {
    let i = Interner::new();
    let p = i.pin();
    for n in 0..70 {
        p.intern(&format!("u{n}"));
    }
    let h = i.hints();
    assert_eq!(h.take_word(0), u64::MAX);
    assert_eq!(h.take_word(1), 0b11_1111);
    assert_eq!(h.take_word(0), 0, "taken");
    h.mark(200_000);
    assert!(h.is_marked(200_000));
    assert_eq!(h.take_word(200_000 / 64), 1 << (200_000 % 64));
    assert!(!h.is_marked(200_000));
    assert_eq!(
        h.take_word(10_000_000),
        0,
        "an unallocated segment has no marks"
    );
}

#[test]
fn identifier_rules() {
    assert!(validate("user_id", "u1").is_ok());
    assert!(validate("user_id", "").unwrap_err().contains("user_id"));
    assert!(validate("user_id", &"x".repeat(129)).is_err());
    assert!(validate("user_id", &"é".repeat(64)).is_ok());
    assert!(validate("user_id", "a\nb").is_err());
}
