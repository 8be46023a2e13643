//! What serde cannot check in the engine's own sections: addresses, ranges and
//! limits. Every problem is a sentence naming the key, and all are reported at once
//! (`fanfare check-config`, with the vendor sections' problems).

use std::net::SocketAddr;

use super::Config;

impl Config {
    /// Every semantic problem of the engine's own sections, each a sentence naming
    /// the key (the vendor sections are checked by [`crate::providers::Settings::check`]).
    pub(super) fn engine_problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        match self.api.listen.parse::<SocketAddr>() {
            Ok(addr) => {
                if !addr.ip().is_loopback() && self.api.token.as_deref().unwrap_or("").is_empty() {
                    p.push(format!(
                        "api.listen is {addr}, not a loopback address: set api.token so the API is not open to the network"
                    ));
                }
            }
            Err(_) => p.push(format!(
                "api.listen {:?} is not an IP:port address (for example 127.0.0.1:7070)",
                self.api.listen
            )),
        }
        if self.api.token.as_deref() == Some("") {
            p.push("api.token is empty; remove it or set a secret".into());
        }
        self.api_problems(&mut p);
        let limit = crate::state::presence::MAX_SESSIONS_LIMIT;
        if !(1..=limit).contains(&self.presence.max_sessions_per_user) {
            p.push(format!(
                "presence.max_sessions_per_user must be between 1 and {limit}, not {}",
                self.presence.max_sessions_per_user
            ));
        }
        if self.presence.user_sweep_interval_ms < 10 {
            p.push("presence.user_sweep_interval_ms must be at least 10".into());
        }
        if self.messages.queue_capacity == 0 {
            p.push("messages.queue_capacity must be at least 1".into());
        }
        if self.messages.ttl_s == 0 {
            p.push("messages.ttl_s must be at least 1".into());
        }
        let r = &self.retry;
        if r.base_ms == 0 || r.max_ms < r.base_ms {
            p.push(
                "retry.base_ms must be at least 1 and retry.max_ms at least retry.base_ms".into(),
            );
        }
        if r.max_attempts == 0 {
            p.push("retry.max_attempts must be at least 1".into());
        }
        let b = &self.breaker;
        if b.failures == 0 || b.open_ms == 0 || b.max_open_ms < b.open_ms {
            p.push("breaker.failures and breaker.open_ms must be at least 1, breaker.max_open_ms at least breaker.open_ms".into());
        }
        let t = &self.transport;
        if t.request_timeout_ms < 10 {
            p.push("transport.request_timeout_ms must be at least 10".into());
        }
        if t.connect_timeout_ms < 10 {
            p.push("transport.connect_timeout_ms must be at least 10".into());
        }
        if t.ping_interval_s > 0 && t.ping_timeout_s == 0 {
            p.push("transport.ping_timeout_s must be at least 1 when pings are on".into());
        }
        if t.connect_backoff_max_ms < 50 {
            p.push("transport.connect_backoff_max_ms must be at least 50".into());
        }
        if let Some(c) = &self.cluster {
            c.problems(&mut p);
        }
        p
    }

    /// Problems of the `[api]` limits and timeouts.
    fn api_problems(&self, p: &mut Vec<String>) {
        let a = &self.api;
        if a.max_body_bytes < 1024 {
            p.push("api.max_body_bytes must be at least 1024".into());
        }
        if !(1..=1_000_000).contains(&a.max_connections) {
            p.push(format!(
                "api.max_connections must be between 1 and 1000000, not {}",
                a.max_connections
            ));
        }
        for (key, ms) in [
            ("header_read_timeout_ms", a.header_read_timeout_ms),
            ("body_read_timeout_ms", a.body_read_timeout_ms),
            ("idle_timeout_ms", a.idle_timeout_ms),
        ] {
            let ms = ms.as_millis();
            if !(100..=86_400_000).contains(&ms) {
                p.push(format!(
                    "api.{key} must be between 100 and 86400000 milliseconds, not {ms}"
                ));
            }
        }
        if !(1..=65_536).contains(&a.h2_max_concurrent_streams) {
            p.push(format!(
                "api.h2_max_concurrent_streams must be between 1 and 65536, not {}",
                a.h2_max_concurrent_streams
            ));
        }
        if a.max_connection_body_bytes < a.max_body_bytes {
            p.push(format!(
                "api.max_connection_body_bytes ({}) must be at least api.max_body_bytes ({})",
                a.max_connection_body_bytes, a.max_body_bytes
            ));
        }
        if a.max_total_body_bytes < a.max_connection_body_bytes {
            p.push(format!(
                "api.max_total_body_bytes ({}) must be at least api.max_connection_body_bytes ({})",
                a.max_total_body_bytes, a.max_connection_body_bytes
            ));
        }
        // Body budgets are semaphores of bytes; tokio caps a semaphore's permits.
        if a.max_total_body_bytes > tokio::sync::Semaphore::MAX_PERMITS {
            p.push("api.max_total_body_bytes is too large".into());
        }
    }
}

impl Config {
    /// Whether `storage.dir` can be used: created (with its parents), and a file in it
    /// created, written, fsynced and removed, as the write-ahead log will be. What
    /// this created for the probe is removed again (empty directories only).
    pub fn storage_problems(&self) -> Vec<String> {
        let dir = &self.storage.dir;
        let shown = dir.display();
        let missing: Vec<&std::path::Path> = dir
            .ancestors()
            .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
            .collect();
        let mut p = Vec::new();
        if let Err(e) = std::fs::create_dir_all(dir) {
            p.push(format!("storage.dir {shown} cannot be created: {e}"));
            return p;
        }
        let probe = dir.join(format!(".fanfare-check-config-{}", std::process::id()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
            .and_then(|mut f| {
                std::io::Write::write_all(&mut f, b"fanfare check-config probe\n")?;
                f.sync_all()
            });
        if let Err(e) = written {
            p.push(format!("storage.dir {shown} is not writable: {e}"));
        }
        if let Err(e) = std::fs::remove_file(&probe) {
            if e.kind() != std::io::ErrorKind::NotFound {
                p.push(format!(
                    "storage.dir {shown}: cannot remove the probe file {}: {e}",
                    probe.display()
                ));
            }
        }
        for d in missing {
            // Only directories this check created, and only while empty.
            let _ = std::fs::remove_dir(d);
        }
        p
    }
}
