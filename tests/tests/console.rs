//! The web console (`/console`) in a real browser: Debian's `chromium` driven through
//! `chromedriver` (WebDriver) with `fantoccini`, against the engine and the mock
//! vendors of the e2e harness.
//!
//! The test types the token into the page, looks up a user bound through the API,
//! sends a debug push and reads the vendor's verdict (and a vendor's refusal), looks
//! up a message's ledger, loads the running configuration (secrets redacted) and
//! saves a screenshot. `chromedriver` and the browser it starts run in their own
//! process group, killed when the test ends, however it ends. Without
//! `/usr/bin/chromedriver` the test fails and says how to install it (`.ci/run`
//! does). Set `FANFARE_CONSOLE_SCREENSHOT=contrib/console.png` to refresh the
//! README's picture.

#[path = "e2e/harness.rs"]
#[allow(dead_code, unused_imports)]
// Shared with the e2e binary; this test uses a few of its helpers.
mod harness;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fanfare_loadgen::mock::apns::ApnsVerdict;
use fantoccini::{Client, ClientBuilder, Locator};
use harness::{apns_token, expect_pushes, start_with, Harness, Options, API_TOKEN};
use http::StatusCode;
use serde_json::{json, Map};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::Instant;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// Bound of every wait on the browser: starting chromium on a busy machine is slow.
const BROWSER_WAIT: Duration = Duration::from_secs(60);

/// `chromedriver` on a loopback port and a WebDriver session of headless chromium.
/// Dropping it kills chromedriver's process group: the browser goes with it.
struct Browser {
    driver: tokio::process::Child,
    /// chromedriver's process group (it leads it).
    pgid: u32,
    client: Option<Client>,
    /// Chromium's profile, removed after the processes are gone.
    profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        assert!(
            Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
            "the console test needs {CHROMEDRIVER} and {CHROMIUM}: install Debian's \
             `chromium` and `chromium-driver` packages (`apt-get install chromium \
             chromium-driver`; .ci/run installs them when missing)"
        );
        let profile = tempfile::tempdir().expect("a temp dir for the browser profile");
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let pgid = driver.id().expect("chromedriver has a pid");
        let mut browser = Browser {
            driver,
            pgid,
            client: None,
            profile,
        };
        let port = browser.driver_port().await;
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-sync",
            "--disable-extensions",
            "--window-size=1280,1500",
        ]
        .map(String::from)
        .into_iter()
        .chain([format!(
            "--user-data-dir={}",
            browser.profile.path().display()
        )])
        .collect::<Vec<_>>();
        let mut caps = Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": CHROMIUM, "args": args}),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("chromedriver opens a chromium session");
        browser.client = Some(client);
        browser
    }

    /// The port chromedriver reports on stdout ("... started successfully on port N.").
    async fn driver_port(&mut self) -> u16 {
        let stdout = self
            .driver
            .stdout
            .take()
            .expect("chromedriver's stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let read = async {
            while let Some(line) = lines.next_line().await.expect("chromedriver's stdout") {
                if let Some(rest) = line.split("on port ").nth(1) {
                    if line.contains("successfully") {
                        let port = rest.trim_end_matches('.').trim();
                        return port.parse::<u16>().expect("a port number");
                    }
                }
            }
            panic!("chromedriver exited before it reported its port");
        };
        let port = tokio::time::timeout(BROWSER_WAIT, read)
            .await
            .expect("chromedriver reports its port in time");
        // Keep draining its stdout so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        port
    }

    fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("the session is open until close")
    }

    async fn goto(&self, url: &str) {
        self.client().goto(url).await.expect("the page loads");
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.clear().await.expect("clear the field");
        e.send_keys(text).await.expect("type into the field");
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client()
            .wait()
            .at_most(BROWSER_WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    async fn text(&self, css: &str) -> String {
        self.find(css)
            .await
            .text()
            .await
            .expect("the element's text")
    }

    /// Wait (bounded) until the text of `css` satisfies `ok`; returns it.
    async fn wait_text(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + BROWSER_WAIT;
        loop {
            let text = self.text(css).await;
            if ok(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {css} shows {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Type `value` into the `field` of a form, press its `button` and wait (bounded)
    /// until the text of `out` satisfies `ok`; returns that text.
    async fn submit(
        &self,
        [field, value, button, out]: [&str; 4],
        what: &str,
        ok: impl Fn(&str) -> bool,
    ) -> String {
        self.type_into(field, value).await;
        self.click(button).await;
        self.wait_text(out, what, ok).await
    }

    /// Close the session (chromedriver quits chromium); drop kills what is left.
    async fn close(mut self) {
        if let Some(c) = self.client.take() {
            c.close().await.expect("the session closes");
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and the chromium it started (a test that
        // panicked leaves its session open).
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.pgid)])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.start_kill();
    }
}

/// Where the screenshot goes: the test's temp dir, and the path in
/// `FANFARE_CONSOLE_SCREENSHOT` when set (relative to the workspace root).
fn screenshot_paths() -> Vec<PathBuf> {
    let mut paths = vec![Path::new(env!("CARGO_TARGET_TMPDIR")).join("console.png")];
    if let Some(p) = std::env::var_os("FANFARE_CONSOLE_SCREENSHOT") {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        paths.push(root.join(p));
    }
    paths
}

/// The value shown for `name` in a list of names and values (`dt`/`dd`), whether the
/// browser renders the pair on one line or two.
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if line == name {
            return lines.next();
        }
        if let Some(rest) = line.strip_prefix(name).and_then(|r| r.strip_prefix(' ')) {
            return Some(rest.trim());
        }
    }
    None
}

/// The state the page is asked about: a user with two bindings (one of whose tokens
/// APNs refuses), a badge, a muted conversation, and a delivered message.
async fn seed(h: &Harness) {
    h.bind("d1", "u1", "apns", &apns_token(1)).await;
    h.bind("d2", "u1", "apns", &apns_token(2)).await;
    let (s, v) = h.put("/v1/users/u1/badge", json!({"count": 3})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mute = "/v1/users/u1/conversations/group/g7/notification";
    let (s, v) = h.put(mute, json!({"status": "do_not_disturb"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    h.message_to("m1", "u1", json!({"title": "hi", "content": "there"}))
        .await;
    expect_pushes(&h.apns, 2, "the message to u1's two devices").await;
    h.apns
        .set_token_verdict(&apns_token(2), ApnsVerdict::BadDeviceToken);
    h.online("u1", "s1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_user_a_debug_push_verdict_a_ledger_and_the_redacted_config() {
    let h = start_with(Options {
        api_token: true,
        ..Options::default()
    })
    .await;
    seed(&h).await;
    let b = Browser::start().await;
    b.goto(&format!("{}/console", h.base)).await;

    // Without a token the overview says so.
    b.wait_text("#overview-totals", "the 401 without a token", |t| {
        t.contains("401") && t.contains("token")
    })
    .await;
    b.type_into("#token", API_TOKEN).await;
    b.click("#token-save").await;
    b.wait_text("#conn", "the overview to connect", |t| t == "connected")
        .await;

    // The user bound through the API.
    let user = ["#user-id", "u1", "#user-lookup", "#user-result"];
    let user = b.submit(user, "the user view", |t| t.contains("d2")).await;
    for want in ["d1", "apns", "production", "online (1 session)", "group:g7"] {
        assert!(user.contains(want), "{want:?} in {user:?}");
    }
    assert!(
        !user.contains(&apns_token(1)),
        "tokens show their first characters only: {user:?}"
    );

    let push = |id| ["#push-id", id, "#push-send", "#push-verdict"];
    // An unknown push id is a clear 404.
    b.submit(push("nobody"), "the 404 of an unbound push id", |t| {
        t.contains("404") && t.contains("not bound")
    })
    .await;
    // A vendor's refusal is shown as such.
    let refused = b
        .submit(push("d2"), "the refused push's verdict", |t| {
            t.contains("BadDeviceToken")
        })
        .await;
    assert_eq!(field(&refused, "status"), Some("400"), "{refused:?}");
    // A debug push: the mock APNs's verdict.
    let verdict = b
        .submit(push("d1"), "the debug push verdict", |t| {
            t.contains("delivered")
        })
        .await;
    assert_eq!(field(&verdict, "outcome"), Some("delivered"), "{verdict:?}");
    assert_eq!(field(&verdict, "provider"), Some("apns"), "{verdict:?}");
    assert_eq!(field(&verdict, "status"), Some("200"), "{verdict:?}");
    expect_pushes(&h.apns, 3, "the debug push").await;

    // The message's ledger.
    let ledger = ["#ledger-id", "m1", "#ledger-lookup", "#ledger-result"];
    let ledger = b
        .submit(ledger, "the ledger", |t| t.contains("targets"))
        .await;
    assert!(ledger.contains("delivered 2"), "{ledger:?}");

    // The running configuration, the token redacted.
    b.click("#config-load").await;
    let config = b
        .wait_text("#config-view", "the configuration", |t| {
            t.contains("\"listen\"")
        })
        .await;
    assert!(config.contains("\"token\": \"<redacted>\""), "{config}");
    assert!(!config.contains(API_TOKEN), "the token is shown: {config}");

    // The chart has drawn the pushes, and nothing on the page shows the token.
    b.wait_text("#chart-legend", "the chart's apns series", |t| {
        t.contains("apns pushes/s")
    })
    .await;
    let page = b.client().source().await.expect("the page's source");
    assert!(!page.contains(API_TOKEN), "the token is on the page");
    let log = b.text("#log").await;
    assert!(log.contains("POST /v1/debug/push → 200"), "{log}");

    let png = b.client().screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    for path in screenshot_paths() {
        std::fs::write(&path, &png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
    b.close().await;
    h.shutdown().await;
}
