use super::*;

fn binding(user: &str, token: &str) -> Binding {
    Binding {
        user_id: user.into(),
        provider: ProviderKind::Fcm,
        environment: Environment::Production,
        app_id: None,
        token: Token::Text(token.into()),
    }
}

#[test]
fn written_wire_form_matches_to_wire() {
    let bytes: Vec<u8> = (0..=255u8).chain([0x0f, 0xf0, 0xab]).collect();
    for t in [
        TokenRef::Bytes(&bytes),
        TokenRef::Bytes(&[]),
        TokenRef::Text("abc:DEF-_"),
    ] {
        let mut out = bytes::BytesMut::new();
        t.write_wire(&mut out);
        assert_eq!(&out[..], t.to_wire().as_bytes());
        assert_eq!(out.len(), t.wire_len());
    }
}

#[test]
fn device_records_round_trip_every_field() {
    let b = Binding {
        user_id: "u".into(),
        provider: ProviderKind::ApnsVoip,
        environment: Environment::Sandbox,
        app_id: Some("com.example.chat".into()),
        token: Token::Bytes(vec![0xab; 32].into()),
    };
    let d = Device::new("push-1", 77, &b);
    assert_eq!(d.push_id(), "push-1");
    assert_eq!(d.owner(), 77);
    assert_eq!(d.provider(), ProviderKind::ApnsVoip);
    assert_eq!(d.environment(), Environment::Sandbox);
    assert_eq!(d.app_id(), Some("com.example.chat"));
    assert_eq!(d.token().to_owned(), b.token);
    assert_eq!(d.token().to_wire(), "ab".repeat(32));
    let plain = Device::new("p", u32::MAX, &binding("u", "tok:1"));
    assert_eq!(plain.owner(), u32::MAX);
    assert_eq!(plain.app_id(), None);
    assert_eq!(plain.provider(), ProviderKind::Fcm);
    assert_eq!(plain.environment(), Environment::Production);
    assert_eq!(plain.token(), TokenRef::Text("tok:1"));
    for p in ProviderKind::ALL {
        let d = Device::new(
            "x",
            0,
            &Binding {
                provider: p,
                ..binding("u", "t")
            },
        );
        assert_eq!(d.provider(), p);
    }
}

#[test]
fn rebinding_moves_the_push_id() {
    let r = Registry::default();
    let d1: Arc<str> = "d1".into();
    assert_eq!(r.bind(&d1, 1, &binding("a", "t")), None);
    assert_eq!(r.bind(&d1, 2, &binding("b", "t")), Some(1));
    assert!(r.devices_of(1).is_empty());
    assert!(r.hints.is_marked(1), "user 1 lost its last device");
    assert_eq!(r.devices_of(2).len(), 1);
    assert_eq!(r.len(), 1);
    assert_eq!(r.lookup("d1").map(|(u, _)| u), Some(2));
}

#[test]
fn dead_token_removal_spares_a_rebound_token() {
    let r = Registry::default();
    let d1: Arc<str> = "d1".into();
    r.bind(&d1, 1, &binding("a", "old"));
    r.bind(&d1, 1, &binding("a", "new"));
    assert_eq!(r.unbind("d1", Some(&Token::Text("old".into()))), None);
    assert_eq!(r.len(), 1);
    assert_eq!(r.unbind("d1", Some(&Token::Text("new".into()))), Some(1));
    assert!(r.is_empty());
}

#[test]
fn remove_user_removes_all_devices() {
    let r = Registry::default();
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        r.bind(
            &Arc::from(*id),
            if i < 2 { 5 } else { 6 },
            &binding("x", "t"),
        );
    }
    assert!(r.has_devices(5));
    assert_eq!(r.remove_user(5), 2);
    assert!(!r.has_devices(5));
    assert!(r.hints.is_marked(5), "the sweep will look at user 5");
    assert!(!r.hints.is_marked(6));
    assert!(r.has_devices(6));
    assert_eq!(r.len(), 1);
    assert_eq!(r.remove_user(5), 0);
    assert_eq!(r.remove_user(3_000_000), 0);
    assert!(
        r.devices.segments[3_000_000 / SEGMENT_USERS]
            .get()
            .is_none(),
        "removing a user without devices allocates nothing"
    );
}
