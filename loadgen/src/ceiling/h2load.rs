//! `h2load` (nghttp2's benchmark client, Debian `nghttp2-client`) as the reference
//! client: bare HTTP/2 written in C, no JSON, no JWT signing. It sends the same APNs
//! requests as the engine (`POST /3/device/<hex token>` over distinct tokens, the
//! engine's header set with the run's provider token, the same JSON body) to the same
//! mock APNs over the same TLS, with the same connections × streams in flight. Its
//! CPU (user + system, from the kernel's accounting of waited-for children) per 1,000
//! pushes is what the engine's transport cost is compared against (issue 16).
//!
//! Absent from `PATH`, it is skipped and the report's field is `null`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

/// Distinct request paths at most (the `-i` file): `:path` is never HPACK-indexed,
/// so a few thousand distinct tokens cost what unique ones would, in a small file.
const MAX_URIS: usize = 4096;

/// The `h2load` on `PATH`, if any.
pub(crate) fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("h2load"))
        .find(|p| p.is_file())
}

/// What one `h2load` run achieved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Run {
    /// Requests answered 2xx.
    pub ok: u64,
    /// Requests h2load counted as failed or errored.
    pub failed: u64,
    /// h2load's own "finished in" span.
    pub secs: f64,
    /// CPU seconds (user + system) of the h2load process.
    pub cpu_s: f64,
}

impl Run {
    pub fn pushes_per_s(&self) -> f64 {
        self.ok as f64 / self.secs.max(1e-6)
    }

    /// ms of h2load's CPU per 1,000 pushes answered 2xx.
    pub fn cpu_ms_per_1k(&self) -> Option<f64> {
        (self.ok > 0).then(|| self.cpu_s * 1e3 / (self.ok as f64 / 1e3))
    }
}

/// What to send and how: `headers` are `name: value` lines (the engine's set, its
/// provider token included); `body` goes to every request.
pub(crate) struct Load<'a> {
    /// `https://host:port`, no trailing slash.
    pub base: &'a str,
    pub tokens: &'a [String],
    pub headers: &'a [String],
    pub body: &'a [u8],
    pub total: u64,
    pub connections: usize,
    /// Streams in flight over all connections (h2load's `-m` is per connection).
    pub in_flight: usize,
}

/// Run `h2load` (at `bin`) once with `load`; its request and body files live in a
/// temporary directory removed afterwards. Fails when h2load cannot run or its output
/// has no summary; failed requests are counted, not an error.
pub(crate) async fn run(bin: &Path, load: &Load<'_>) -> anyhow::Result<Run> {
    anyhow::ensure!(!load.tokens.is_empty(), "h2load needs device tokens");
    let dir = tempfile::tempdir().context("h2load temporary directory")?;
    let uris = dir.path().join("uris");
    let mut lines = String::new();
    for token in load.tokens.iter().take(MAX_URIS) {
        lines.push_str(load.base);
        lines.push_str("/3/device/");
        lines.push_str(token);
        lines.push('\n');
    }
    std::fs::write(&uris, lines).context("write h2load URIs")?;
    let body = dir.path().join("body.json");
    std::fs::write(&body, load.body).context("write h2load body")?;
    let connections = load.connections.max(1);
    let per_connection = load.in_flight.div_ceil(connections).max(1);
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("-n")
        .arg(load.total.to_string())
        .arg("-c")
        .arg(connections.to_string())
        .arg("-m")
        .arg(per_connection.to_string())
        .arg("-t")
        .arg("1")
        .arg("-i")
        .arg(&uris)
        .arg("-d")
        .arg(&body);
    for h in load.headers {
        cmd.arg("-H").arg(h);
    }
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let (out, cpu_s) = measured(cmd).await?;
    // The arguments hold the provider token: never shown, only h2load's own output.
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "h2load exited with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let summary = Summary::parse(&text).context("h2load printed no summary")?;
    Ok(Run {
        ok: summary.ok,
        failed: summary.failed,
        secs: summary.secs,
        cpu_s,
    })
}

/// Run `cmd` to completion and measure its CPU: the kernel adds a child's user and
/// system time to its parent's `cutime`/`cstime` when the child is waited for, so
/// their growth across the wait is this child's (and its own waited-for children's)
/// CPU. Another child of this process reaped meanwhile would be counted too; the
/// load generator's only other child, the engine, lives until the run ends.
pub(crate) async fn measured(
    mut cmd: tokio::process::Command,
) -> anyhow::Result<(std::process::Output, f64)> {
    let before = children_cpu_s()?;
    let out = cmd.output().await.context("run h2load")?;
    let after = children_cpu_s()?;
    Ok((out, (after - before).max(0.0)))
}

/// CPU seconds of this process's waited-for children.
fn children_cpu_s() -> anyhow::Result<f64> {
    let stat = procfs::process::Process::myself()
        .and_then(|p| p.stat())
        .context("read /proc/self/stat")?;
    Ok((stat.cutime + stat.cstime) as f64 / procfs::ticks_per_second() as f64)
}

/// The figures of h2load's closing summary.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Summary {
    secs: f64,
    ok: u64,
    failed: u64,
}

impl Summary {
    /// From lines like `finished in 1.23s, 40650.41 req/s, 1.47MB/s`,
    /// `requests: 50000 total, 50000 started, 50000 done, 49990 succeeded, 10 failed,
    /// 10 errored, 0 timeout` and `status codes: 49990 2xx, 0 3xx, 10 4xx, 0 5xx`.
    /// h2load's "succeeded" counts any completed response, so the 2xx count is taken.
    fn parse(text: &str) -> Option<Summary> {
        let mut secs = None;
        let (mut ok, mut failed) = (None, None);
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("finished in ") {
                secs = rest.split(',').next().and_then(duration_s);
            } else if let Some(rest) = line.strip_prefix("requests:") {
                let failed_n = count(rest, "failed")?;
                failed = Some(failed_n + count(rest, "errored").unwrap_or(0));
            } else if let Some(rest) = line.strip_prefix("status codes:") {
                ok = count(rest, "2xx");
            }
        }
        Some(Summary {
            secs: secs?,
            ok: ok?,
            failed: failed?,
        })
    }
}

/// The number before `label` in `12 total, 3 label, …`.
fn count(list: &str, label: &str) -> Option<u64> {
    list.split(',').find_map(|item| {
        let (n, l) = item.trim().split_once(' ')?;
        (l.trim() == label).then(|| n.parse().ok()).flatten()
    })
}

/// `1.23s`, `515.27ms` or `980.5us` in seconds.
fn duration_s(s: &str) -> Option<f64> {
    let s = s.trim();
    let (n, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| s.split_at(i))?;
    let n: f64 = n.parse().ok()?;
    let scale = match unit {
        "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        _ => return None,
    };
    Some(Duration::from_secs_f64(n * scale).as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "starting benchmark...
spawning thread #0: 2 total client(s). 50000 total requests
TLS Protocol: TLSv1.3
Cipher: TLS_AES_256_GCM_SHA384
Server Temp Key: X25519 253 bits
Application protocol: h2
progress: 10% done
progress: 100% done

finished in 812.34ms, 61550.09 req/s, 2.24MB/s
requests: 50000 total, 50000 started, 50000 done, 49990 succeeded, 10 failed, 10 errored, 0 timeout
status codes: 49990 2xx, 0 3xx, 10 4xx, 0 5xx
traffic: 1.82MB (1908321) total, 996.15KB (1020054) headers (space savings 92.14%), 429.69KB (440000) data
";

    #[test]
    fn h2loads_summary_gives_its_2xx_count_failures_and_span() {
        let s = Summary::parse(OUTPUT).expect("a complete summary");
        assert_eq!(s.ok, 49_990);
        assert_eq!(s.failed, 20);
        assert!((s.secs - 0.81234).abs() < 1e-9, "{}", s.secs);
    }

    #[test]
    fn an_output_without_a_summary_is_not_read_as_zero_pushes() {
        assert_eq!(Summary::parse("starting benchmark...\n"), None);
        let no_status = OUTPUT.replace("status codes:", "codes:");
        assert_eq!(Summary::parse(&no_status), None);
    }

    #[test]
    fn durations_in_every_unit_h2load_prints() {
        assert_eq!(duration_s("2s"), Some(2.0));
        assert_eq!(duration_s("515.5ms"), Some(0.5155));
        assert_eq!(duration_s("250us"), Some(0.00025));
        assert_eq!(duration_s("1.5h"), None);
    }

    #[test]
    fn cpu_per_1k_is_of_the_2xx_answers_and_none_without_any() {
        let r = Run {
            ok: 50_000,
            failed: 0,
            secs: 1.0,
            cpu_s: 0.25,
        };
        assert_eq!(r.cpu_ms_per_1k(), Some(5.0));
        assert_eq!(Run { ok: 0, ..r }.cpu_ms_per_1k(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn h2load_sends_the_engines_request_head_and_the_mock_apns_accepts_every_push() {
        let Some(bin) = find() else {
            eprintln!("h2load is not on PATH: skipped");
            return;
        };
        let dir = tempfile::tempdir().expect("temporary directory");
        let options = fanfare_loadgen::mock::rig::Options {
            fcm: false,
            ..Default::default()
        };
        let mocks = std::sync::Arc::new(
            fanfare_loadgen::mock::rig::Rig::start(dir.path(), &options).expect("mocks start"),
        );
        let tokens: Vec<String> = (0..100).map(crate::setup::apns_token).collect();
        let body = br#"{"aps":{"alert":{"title":"group","body":"hello everyone"}}}"#;
        let before = mocks.apns.received_count();
        let run = super::super::reference(
            &bin,
            &mocks,
            &super::super::Head::ceiling(),
            &tokens,
            body,
            20_000,
        )
        .await
        .expect("h2load runs");
        assert_eq!((run.ok, run.failed), (20_000, 0), "{run:?}");
        assert_eq!(mocks.apns.received_count() - before, 20_000);
        assert_eq!(mocks.rejections(), 0);
        assert!(run.cpu_s > 0.0 && run.secs > 0.0, "{run:?}");
    }

    #[tokio::test]
    async fn a_childs_cpu_time_is_measured_when_it_is_waited_for() {
        // A shell spinning for about 0.3 s of CPU; the measure must see a good part
        // of it. (No upper bound: another test's child reaped meanwhile, h2load's,
        // would be counted too.)
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c").arg(
            "end=$(( $(date +%s%N) + 300000000 )); while [ $(date +%s%N) -lt $end ]; do :; done",
        );
        let t = std::time::Instant::now();
        let (out, cpu_s) = measured(cmd).await.expect("sh runs");
        let wall = t.elapsed().as_secs_f64();
        assert!(out.status.success());
        assert!(cpu_s > 0.05, "cpu {cpu_s} s over {wall} s");
    }
}
