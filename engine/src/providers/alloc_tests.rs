//! Heap allocations per push of each vendor's request building, counted by a test-only
//! global allocator (this crate's unit-test binary only; the engine binary keeps
//! mimalloc). A request needs its body buffer and its header map; everything else —
//! the URI, the auth header, the device token, vivo's `requestId`, Honor's
//! `timestamp` — must come without allocating, as it does for APNs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use super::{token, Content, Kind, Push};
use crate::config;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, counting allocations made on the current thread.
struct Counting;

// SAFETY: every call is forwarded unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the only addition is a thread-local counter (a `const`
// initialised `Cell`, which never allocates).
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|a| a.set(a.get() + 1));
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation is).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|a| a.set(a.get() + 1));
        // SAFETY: as for `dealloc`; the caller's contract for `realloc` is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Allocations `f` makes on this thread, and its result.
fn allocs<T>(f: impl FnOnce() -> T) -> (u64, T) {
    let before = ALLOCS.with(Cell::get);
    let out = f();
    (ALLOCS.with(Cell::get) - before, out)
}

/// Allocations of a request after the first (steady state: shared buffers that a
/// first clone promotes are promoted).
fn per_push<T>(f: impl Fn() -> T) -> u64 {
    drop(f());
    allocs(f).0
}

const LOCAL: &str = "http://127.0.0.1:9";

fn push() -> Push {
    let content = Content::sample("title", "body", "{\"k\":1}");
    let kind = Kind::message();
    Push::render(kind, &content, 3600, 1_700_000_000).expect("a small push renders")
}

/// The five OEM vendors' clients as the engine builds them from its configuration
/// (config's test environment), pointed at a closed local port.
fn oem_clients() -> super::Providers {
    use crate::config::tests::{oem_env, vars};
    let mut env = oem_env();
    env.extend(vars(&[
        ("FANFARE_HUAWEI_ENDPOINT", LOCAL),
        ("FANFARE_HUAWEI_TOKEN_ENDPOINT", LOCAL),
        ("FANFARE_HONOR_ENDPOINT", LOCAL),
        ("FANFARE_HONOR_TOKEN_ENDPOINT", LOCAL),
        ("FANFARE_XIAOMI_ENDPOINT", LOCAL),
        ("FANFARE_XIAOMI_CHANNEL_ID", "ch"),
        ("FANFARE_OPPO_ENDPOINT", LOCAL),
        ("FANFARE_OPPO_ENDPOINT_INTL", LOCAL),
        ("FANFARE_VIVO_ENDPOINT", LOCAL),
    ]));
    let config = config::Config::load(None, env).expect("the environment loads");
    let settings = config
        .validate()
        .expect("the five OEM vendors are configured");
    super::Providers::new(&settings).expect("clients")
}

/// What any request costs: a body buffer and a header map with `headers` entries.
fn baseline(headers: usize) -> u64 {
    let uri = http::Uri::from_static("http://127.0.0.1:9/send");
    let value = http::HeaderValue::from_static("v");
    let names = [
        http::header::CONTENT_TYPE,
        http::header::AUTHORIZATION,
        http::HeaderName::from_static("x-other"),
    ];
    per_push(|| {
        let mut req = http::Request::post(uri.clone());
        for name in &names[..headers] {
            req = req.header(name, value.clone());
        }
        req.body(http_body_util::Full::new(bytes::Bytes::from(vec![
            b'x';
            64
        ])))
        .expect("request head is valid")
    })
}

#[tokio::test]
async fn oem_requests_allocate_only_their_body_and_header_map() {
    let push = push();
    let access = token::Access::new("access+token/=".into());
    // Promote the shared header buffers as a first push does; later pushes only clone.
    drop((access.bearer(), access.raw()));
    let tok = "0123456789abcdefABCDEF+/=_x";

    let providers = oem_clients();
    let configured = "every OEM vendor is configured";
    let huawei = providers.huawei.as_ref().expect(configured);
    let honor = providers.honor.as_ref().expect(configured);
    let xiaomi = providers.xiaomi.as_ref().expect(configured);
    let oppo = providers.oppo.as_ref().expect(configured);
    let vivo = providers.vivo.as_ref().expect(configured);

    let (n, text) = allocs(|| super::token_text(crate::state::TokenRef::Text(tok)).len());
    assert_eq!((n, text), (0, tok.len()), "a text device token is borrowed");

    // Honor's timestamp header is formatted once per millisecond: warm it, then count
    // a request within the same millisecond (retrying if the clock ticked over).
    let honor_n = (0..100)
        .map(|_| {
            drop(honor.request_for(tok, &push, &access));
            let ms = super::unix_now_ms();
            let (n, _r) = allocs(|| honor.request_for(tok, &push, &access));
            (n, ms == super::unix_now_ms())
        })
        .find(|(_, same_ms)| *same_ms)
        .expect("some request falls within one millisecond")
        .0;
    let counts = [
        (
            "huawei",
            per_push(|| huawei.request_for(tok, &push, &access)),
            2,
        ),
        ("honor", honor_n, 3),
        (
            "xiaomi",
            per_push(|| xiaomi.request_for(tok, &push, &access)),
            2,
        ),
        (
            "oppo",
            per_push(|| oppo.request_for(tok, &push, &access)),
            1,
        ),
        (
            "vivo",
            per_push(|| vivo.request_for(tok, &push, &access)),
            2,
        ),
    ];
    for (vendor, n, headers) in counts {
        let base = baseline(headers);
        eprintln!("{vendor}: {n} allocations per request (body + header map: {base})");
        assert!(
            n <= base,
            "{vendor} allocates {n} times per request; its body and header map take {base}"
        );
        assert_eq!(
            n, base,
            "{vendor}: the baseline is what a request must cost"
        );
    }
}
