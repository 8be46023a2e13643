//! `GET /v1/admin/config`: the configuration the engine runs on, with every secret
//! replaced by `"<redacted>"`.
//!
//! What is shown is the embedded reference ([`config::REFERENCE`], every key at its
//! default) with the keys of the file and the `FANFARE_*` overrides laid over it
//! ([`config::Source::tree`]): the very tree the running [`Config`] was deserialized
//! from, so the view cannot drift from the struct, and it reads like the file the
//! operator wrote (durations in the unit their key names).
//!
//! The tree is plain TOML, so secrets are found by their key's name ([`is_secret`]):
//! tokens, secrets, passwords, credentials, private keys and vendor keys (`app_key`),
//! whatever their value's type and wherever the key is (`[apps.<id>.<vendor>]` too).
//! Paths of key files (`*_file`) stay: they say where a secret is, not what it is.
//! URLs lose their user-info (`nats://user:pass@host`) and the values of
//! secret-named query parameters. A test reads every `Secret` field of the config's
//! sources and checks that the rule covers its name, so a new secret is not shown by
//! accident.
//!
//! After a reload (`POST /v1/admin/reload`, SIGHUP) the view shows the re-read file,
//! except the restart-only sections, which keep their values as started (they are what
//! runs until a restart).

use serde_json::Value;

use crate::api::wire::RunningConfig;
use crate::config::{self, Config};

/// What a secret is shown as.
pub const REDACTED: &str = "<redacted>";

/// Key-name parts that mark a credential.
const SECRET_PARTS: [&str; 6] = [
    "secret",
    "password",
    "passwd",
    "credential",
    "private",
    "authorization",
];

/// The running configuration: `over` (the file and env values in force, see
/// [`crate::reload::Reloader::tree`]) over the defaults, secrets redacted; `config` names
/// the file and the env overrides it was loaded with.
pub fn running(config: &Config, over: &toml::Table) -> RunningConfig {
    let mut tree: toml::Table = config::REFERENCE
        .parse()
        .expect("the embedded reference is TOML (a config test parses it)");
    overlay(&mut tree, over);
    let mut config_json =
        serde_json::to_value(&tree).expect("a TOML table is representable as JSON");
    redact(&mut config_json);
    RunningConfig {
        config: config_json,
        env_overrides: config.source.env.iter().map(|(k, _)| k.clone()).collect(),
        file: config.source.path.as_ref().map(|p| p.display().to_string()),
    }
}

/// Lay `over` onto `base`: tables merge key by key, any other value replaces.
fn overlay(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => overlay(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Whether a key of this name holds a credential. A path (`*_file`) does not.
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    if k.ends_with("_file") {
        return false;
    }
    SECRET_PARTS.iter().any(|p| k.contains(p))
        || k == "token"
        || k.ends_with("_token")
        || k == "key"
        || k.ends_with("_key")
        || k.ends_with("apikey")
}

/// Redact, in place, every value under a secret key and the credentials in URLs.
fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_secret(k) {
                    *v = Value::String(REDACTED.into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(s) => {
            if let Some(clean) = redact_url(s) {
                *s = clean;
            }
        }
        _ => {}
    }
}

/// `s` without its URL credentials (user-info, secret-named query parameters), or
/// `None` when it has none.
fn redact_url(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let mut changed = false;
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => {
            changed = true;
            format!("{REDACTED}@{host}")
        }
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, Some(f)),
                None => (query, None),
            };
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((name, _)) if is_secret(name) => {
                        changed = true;
                        format!("{name}={REDACTED}")
                    }
                    _ => p.to_string(),
                })
                .collect();
            let fragment = fragment.map_or(String::new(), |f| format!("#{f}"));
            format!("{path}?{}{fragment}", params.join("&"))
        }
        None => tail.to_string(),
    };
    changed.then(|| format!("{scheme}://{authority}{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every secret the file can hold, each with a value found nowhere else.
    const EVERY_SECRET: &str = r#"
[api]
listen = "127.0.0.1:0"
token = "SECRET-api-token-0001"

[storage]
dir = "/var/lib/fanfare"

[apns]
key_file = "/etc/fanfare/apns.p8"
key_id = "ABC123DEFG"
team_id = "TEAM123456"
topic = "com.example.chat"

[huawei]
app_id = "10000001"
client_secret = "SECRET-huawei-0002"

[honor]
app_id = "20000001"
client_id = "honor-client"
client_secret = "SECRET-honor-0003"

[xiaomi]
app_secret = "SECRET-xiaomi-0004"
package_name = "com.example.chat"

[oppo]
app_key = "SECRET-oppo-key-0005"
master_secret = "SECRET-oppo-0006"

[vivo]
app_id = "30000001"
app_key = "SECRET-vivo-key-0007"
app_secret = "SECRET-vivo-0008"

[webpush]
vapid_private_key_file = "/etc/fanfare/vapid.pem"
subject = "mailto:ops@example.com"

[feedback]
url = "https://hook:SECRET-userinfo-0009@im.example.com/push-feedback?token=SECRET-query-0010&v=1"
secret = "SECRET-feedback-0011"

[cluster]
nats_urls = ["nats://fanfare:SECRET-nats-0012@10.0.0.1:4222", "nats://10.0.0.2:4222"]

[apps."com.example.other"]
huawei = { app_id = "10000002", client_secret = "SECRET-app-huawei-0013" }
xiaomi = { app_secret = "SECRET-app-xiaomi-0014", package_name = "com.example.other" }
oppo = { app_key = "SECRET-app-oppo-key-0015", master_secret = "SECRET-app-oppo-0016" }
"#;

    fn config_with_every_secret() -> Config {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("fanfare.toml");
        std::fs::write(&path, EVERY_SECRET).expect("write the config");
        let env = vec![(
            "FANFARE_VIVO_APP_SECRET".to_string(),
            "SECRET-env-vivo-0017".to_string(),
        )];
        Config::load(Some(&path), env).expect("the config loads")
    }

    #[test]
    fn no_secret_of_a_config_with_every_secret_set_appears_in_the_view() {
        let config = config_with_every_secret();
        let view = running(&config, &config.source.tree);
        let text = serde_json::to_string(&view).expect("the view is JSON");
        // Every secret value starts with `SECRET-` (the env override's name does not).
        assert!(!text.contains("SECRET-"), "a secret is shown: {text}");
        let c = &view.config;
        assert_eq!(c["api"]["token"], REDACTED);
        assert_eq!(c["feedback"]["secret"], REDACTED);
        assert_eq!(c["vivo"]["app_secret"], REDACTED, "the env override too");
        assert_eq!(c["apps"]["com.example.other"]["oppo"]["app_key"], REDACTED);
        assert_eq!(
            c["feedback"]["url"],
            "https://<redacted>@im.example.com/push-feedback?token=<redacted>&v=1"
        );
        assert_eq!(
            c["cluster"]["nats_urls"][0],
            "nats://<redacted>@10.0.0.1:4222"
        );
        assert_eq!(c["cluster"]["nats_urls"][1], "nats://10.0.0.2:4222");
        // What is not secret stays: paths of key files, ids, defaults.
        assert_eq!(c["apns"]["key_file"], "/etc/fanfare/apns.p8");
        assert_eq!(c["apns"]["key_id"], "ABC123DEFG");
        assert_eq!(
            c["webpush"]["vapid_private_key_file"],
            "/etc/fanfare/vapid.pem"
        );
        assert_eq!(c["huawei"]["app_id"], "10000001");
        assert_eq!(c["storage"]["dir"], "/var/lib/fanfare");
        assert_eq!(c["api"]["max_connections"], 4096, "a default is shown");
        assert_eq!(view.env_overrides, ["FANFARE_VIVO_APP_SECRET"]);
        assert!(view.file.is_some_and(|f| f.ends_with("fanfare.toml")));
    }

    #[test]
    fn the_view_holds_the_running_values_of_the_file_over_the_defaults() {
        let config = config_with_every_secret();
        let c = running(&config, &config.source.tree).config;
        assert_eq!(c["api"]["listen"], config.api.listen);
        assert_eq!(
            c["api"]["shutdown_grace_s"],
            config.api.shutdown_grace_s.as_secs()
        );
        assert_eq!(c["xiaomi"]["package_name"], "com.example.chat");
        assert_eq!(c["storage"]["durability"], "fsync", "the default");
    }

    /// Every field of the config's sources whose type is a `Secret`.
    fn secret_fields() -> Vec<String> {
        let sources = [
            include_str!("../../config/vendors.rs"),
            include_str!("../../config/sections.rs"),
            include_str!("../../config/cluster.rs"),
            include_str!("../../feedback/section.rs"),
            include_str!("../../telemetry/logging.rs"),
        ];
        let mut fields = Vec::new();
        for line in sources.iter().flat_map(|s| s.lines()) {
            let Some(rest) = line.trim().strip_prefix("pub ") else {
                continue;
            };
            let Some((name, ty)) = rest.split_once(':') else {
                continue;
            };
            if ty.contains("Secret") && !name.contains(' ') {
                fields.push(name.to_string());
            }
        }
        fields
    }

    #[test]
    fn every_secret_field_of_the_config_is_redacted_by_its_name() {
        let fields = secret_fields();
        assert!(fields.len() >= 6, "found only {fields:?}");
        for f in fields {
            assert!(is_secret(&f), "the Secret field {f} would be shown");
        }
        // And the API token, which is a plain string in `[api]`.
        assert!(is_secret("token"));
    }

    #[test]
    fn paths_ids_and_endpoints_are_not_taken_for_secrets() {
        for key in [
            "key_file",
            "vapid_private_key_file",
            "service_account_file",
            "ca_file",
            "key_id",
            "client_id",
            "app_id",
            "token_endpoint",
            "dead_token_codes",
            "auth_error_codes",
            "listen",
        ] {
            assert!(!is_secret(key), "{key}");
        }
    }
}
