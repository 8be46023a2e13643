//! `[cluster]`: several engines as one service over NATS JetStream (see
//! [`crate::cluster`]). Absent, the engine runs alone on its own write-ahead log.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Most replicas a JetStream stream can have.
pub const MAX_REPLICAS: usize = 5;
/// Longest node id (it names a key in the `fanfare_nodes` bucket and prefixes every
/// message id this engine publishes).
pub const MAX_NODE_ID: usize = 64;
/// Smallest `work_max_bytes`: one largest chunk (about 512 KiB, twice that at most) fits.
pub const MIN_WORK_BYTES: u64 = 1 << 20;
/// Largest `work_max_bytes` (JetStream's stream limit is an i64).
pub const MAX_WORK_BYTES: u64 = 1 << 50;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cluster {
    /// The NATS servers to connect to (`nats://host:port`); any one of them is enough,
    /// the client learns the others. From the environment also as one comma-separated
    /// string (`FANFARE_CLUSTER_NATS_URLS=nats://a:4222,nats://b:4222`).
    #[serde(deserialize_with = "urls")]
    pub nats_urls: Vec<String>,
    /// This engine's name in the cluster: letters, digits, `-`, `_` and `.`, unique
    /// among the engines. Default: the host name.
    pub node_id: Option<String>,
    /// Copies JetStream keeps of the state stream and the buckets: 1 on a single NATS
    /// server, 3 on a three-server NATS cluster (one server can then be lost). Only
    /// used when the stream is first created.
    pub stream_replicas: usize,
    /// How long start-up keeps trying to reach NATS before the engine gives up.
    #[serde(deserialize_with = "super::units::secs")]
    pub connect_timeout_s: Duration,
    /// How long a durable write waits for JetStream's acknowledgement and for this
    /// engine to apply it before the API answers `503 overloaded`.
    #[serde(deserialize_with = "super::units::millis")]
    pub write_timeout_ms: Duration,
    /// Bytes of fan-out work chunks (`FANFARE_WORK`) JetStream holds at most, on every
    /// replica; past that an accepted message or call is refused with `503` until
    /// engines have pushed some. NATS must have this much JetStream storage free (its
    /// `max_file_store`). Applied to the stream at every engine start.
    pub work_max_bytes: u64,
}

impl Default for Cluster {
    fn default() -> Self {
        Self {
            nats_urls: vec!["nats://127.0.0.1:4222".into()],
            node_id: None,
            stream_replicas: 1,
            connect_timeout_s: Duration::from_secs(30),
            write_timeout_ms: Duration::from_millis(5_000),
            work_max_bytes: 1 << 30,
        }
    }
}

/// A list of URLs, or one string of comma-separated URLs (an environment override).
fn urls<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Either::deserialize(d)? {
        Either::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        Either::Many(v) => v,
    })
}

impl Cluster {
    /// The node id: the configured one, else the host name with every character a
    /// node id cannot hold replaced by `-`.
    pub fn node_id(&self) -> String {
        if let Some(id) = &self.node_id {
            return id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        let id: String = host
            .chars()
            .take(MAX_NODE_ID)
            .map(|c| if valid_node_char(c) { c } else { '-' })
            .collect();
        if id.is_empty() {
            "fanfare".into()
        } else {
            id
        }
    }

    /// Every problem of the section, each a sentence naming its key.
    pub(super) fn problems(&self, p: &mut Vec<String>) {
        if self.nats_urls.is_empty() {
            p.push("cluster.nats_urls must name at least one NATS server".into());
        }
        for u in &self.nats_urls {
            let ok = u
                .split_once("://")
                .is_some_and(|(scheme, rest)| matches!(scheme, "nats" | "tls") && !rest.is_empty());
            if !ok {
                p.push(format!(
                    "cluster.nats_urls: {u:?} is not a nats://host:port (or tls://host:port) URL"
                ));
            }
        }
        if let Some(id) = &self.node_id {
            if id.is_empty() || id.len() > MAX_NODE_ID || !id.chars().all(valid_node_char) {
                p.push(format!(
                    "cluster.node_id {id:?} must be 1 to {MAX_NODE_ID} letters, digits, '-', '_' or '.'"
                ));
            }
        }
        if !(1..=MAX_REPLICAS).contains(&self.stream_replicas) {
            p.push(format!(
                "cluster.stream_replicas must be between 1 and {MAX_REPLICAS}, not {}",
                self.stream_replicas
            ));
        }
        if self.connect_timeout_s.is_zero() {
            p.push("cluster.connect_timeout_s must be at least 1".into());
        }
        if self.write_timeout_ms < Duration::from_millis(100) {
            p.push("cluster.write_timeout_ms must be at least 100".into());
        }
        if !(MIN_WORK_BYTES..=MAX_WORK_BYTES).contains(&self.work_max_bytes) {
            p.push(format!(
                "cluster.work_max_bytes must be between {MIN_WORK_BYTES} and {MAX_WORK_BYTES}, not {}",
                self.work_max_bytes
            ));
        }
    }
}

fn valid_node_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, crate::config::Error> {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("f.toml");
        std::fs::write(&path, text).expect("writable");
        Config::load(
            Some(&path),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn without_a_cluster_section_the_engine_runs_alone() {
        assert!(load("", &[]).expect("valid").cluster.is_none());
    }

    #[test]
    fn the_cluster_section_is_read_checked_and_overridden_from_the_environment() {
        let c = load(
            "[cluster]\nnats_urls = [\"nats://127.0.0.1:4222\"]\nnode_id = \"a-1\"\n",
            &[
                ("FANFARE_CLUSTER_STREAM_REPLICAS", "3"),
                (
                    "FANFARE_CLUSTER_NATS_URLS",
                    "nats://127.0.0.1:1,nats://127.0.0.1:2",
                ),
            ],
        )
        .expect("valid");
        let cluster = c.cluster.as_ref().expect("present");
        assert_eq!(cluster.stream_replicas, 3);
        assert_eq!(
            cluster.nats_urls,
            ["nats://127.0.0.1:1", "nats://127.0.0.1:2"]
        );
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        let bad = load(
            "[cluster]\nnats_urls = [\"http://x\"]\nnode_id = \"a b\"\nstream_replicas = 0\nwork_max_bytes = 10\n",
            &[],
        )
        .expect("parses");
        let p = bad.problems().join("\n");
        for key in [
            "cluster.nats_urls",
            "cluster.node_id",
            "cluster.stream_replicas",
            "cluster.work_max_bytes",
        ] {
            assert!(p.contains(key), "{key} named in {p}");
        }
    }

    #[test]
    fn the_default_node_id_is_a_valid_one() {
        let id = super::Cluster::default().node_id();
        assert!(!id.is_empty() && id.chars().all(super::valid_node_char));
    }
}
