//! Shared fixtures for Fanfare's criterion benchmarks: realistic states built through
//! the engine's own mutation path.

use std::sync::Arc;

use fanfare::clock::Clock;
use fanfare::state::{Binding, Environment, Mutation, ProviderKind, State, Token};

/// The `i`-th binding of a realistic population: ids like production ones, 64-hex
/// APNs tokens (stored as 32 bytes) for 60% and ~160-character FCM tokens for 40%.
pub fn binding(i: u64) -> (Arc<str>, Binding) {
    let user = i / 2;
    let push_id: Arc<str> = format!("dev-{i:010}-{:04x}", i % 65_521).into();
    let (provider, token) = if i % 5 < 3 {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&i.to_le_bytes());
        b[8..16].copy_from_slice(&(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_le_bytes());
        (ProviderKind::Apns, Token::Bytes(Box::new(b)))
    } else {
        let text = format!("f{i:011}:APA91b{}", "Hq3-Kx_9Zr".repeat(14));
        (ProviderKind::Fcm, Token::Text(text.into()))
    };
    (
        push_id,
        Binding {
            user_id: format!("user-{user:010}").into(),
            provider,
            environment: if i.is_multiple_of(17) {
                Environment::Sandbox
            } else {
                Environment::Production
            },
            app_id: None,
            token,
        },
    )
}

/// Raw bytes of the ids and token of binding `i` (the memory-target denominator).
pub fn raw_bytes(i: u64) -> usize {
    let (push_id, b) = binding(i);
    let token = match &b.token {
        Token::Bytes(t) => t.len(),
        Token::Text(t) => t.len(),
    };
    push_id.len() + b.user_id.len() / 2 + token
}

/// A state with `n` bindings (two devices per user) and a few groups of 1k members.
pub fn populated(n: u64) -> State {
    let state = State::new(Clock::new());
    for i in 0..n {
        let (push_id, binding) = binding(i);
        state.apply(&Mutation::Bind { push_id, binding });
    }
    let users = n / 2;
    for g in 0..(users / 10_000).max(1) {
        let add: Vec<Arc<str>> = (0..1_000u64.min(users))
            .map(|k| format!("user-{:010}", (g * 7_919 + k * 13) % users.max(1)).into())
            .collect();
        state.apply(&Mutation::GroupUpdate {
            group_id: format!("group-{g}").into(),
            add,
            remove: Vec::new(),
        });
    }
    state
}
