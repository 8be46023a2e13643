//! Unit tests of the call use case's pure parts (collapse ids, cancel payloads).

use super::*;

#[test]
fn a_long_call_id_becomes_a_stable_collapse_id_that_fits() {
    assert_eq!(collapse_key("c-77"), "c-77");
    let long = "é".repeat(64);
    let k = collapse_key(&long);
    assert!(k.len() <= MAX_COLLAPSE_ID, "{k}");
    assert_eq!(k, collapse_key(&long));
    assert_ne!(k, collapse_key(&"é".repeat(63)));
}

#[test]
fn the_cancel_payload_names_the_call_and_keeps_the_callers_payload() {
    let p: serde_json::Value = serde_json::from_str(&cancel_payload("c-77", None)).expect("json");
    assert_eq!(
        p,
        serde_json::json!({"call_id": "c-77", "type": "call_cancel"})
    );
    let p: serde_json::Value =
        serde_json::from_str(&cancel_payload("c-77", Some("x"))).expect("json");
    assert_eq!(p["payload"], "x");
}
