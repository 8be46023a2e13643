//! `FANFARE_<SECTION>_<KEY>` environment overrides, and error messages that never
//! quote a secret.

use serde::Deserialize;

use super::{sections, Config, Error};

/// Whether the value of `key` (a dotted path such as `api.token`) is a credential,
/// never to be printed: tokens and secrets.
pub(super) fn is_secret(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    last == "token" || last.contains("secret") || last.contains("password")
}

/// A deserialization error of `key` as a sentence naming the key; for a secret, without
/// serde's message, which quotes the value.
pub(super) fn explain(key: &str, e: &toml::de::Error) -> String {
    if key.is_empty() || key == "." {
        e.message().to_string()
    } else if is_secret(key) {
        format!("{key}: invalid value (not shown: it is a secret)")
    } else {
        format!("{key}: {}", e.message())
    }
}

/// Whether `[section] key = value` deserializes; the error says why not.
fn check_key(section: &str, key: &str, value: toml::Value) -> Result<(), toml::de::Error> {
    let mut keys = toml::Table::new();
    keys.insert(key.to_string(), value);
    let mut root = toml::Table::new();
    root.insert(section.to_string(), toml::Value::Table(keys));
    Config::deserialize(toml::Value::Table(root)).map(drop)
}

/// Apply `FANFARE_<SECTION>_<KEY>=value` overrides. A value is taken as the string it
/// is wherever the key accepts a string (so an all-digit token stays a string);
/// otherwise it is read as a TOML value (number, boolean, array). An override that
/// fits neither is an error naming the variable and the key, never a secret's value.
pub(super) fn apply_env(
    root: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), Error> {
    for (var, value) in env {
        let Some(rest) = var.strip_prefix("FANFARE_") else {
            continue;
        };
        let rest = rest.to_ascii_lowercase();
        let Some(section) = sections().find(|s| {
            rest.len() > s.len() && rest.starts_with(s) && rest.as_bytes()[s.len()] == b'_'
        }) else {
            if rest == "log" {
                continue; // FANFARE_LOG is the log filter, not a config key
            }
            return Err(Error::Env {
                var,
                message: format!(
                    "unknown section; expected one of {}",
                    sections().collect::<Vec<_>>().join(", ")
                ),
            });
        };
        let key = &rest[section.len() + 1..];
        let as_toml = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .filter(|v| !v.is_table());
        let raw = toml::Value::String(value);
        let parsed = match check_key(section, key, raw.clone()) {
            Ok(()) => raw,
            Err(as_string) => match as_toml {
                Some(v) => match check_key(section, key, v.clone()) {
                    Ok(()) => v,
                    Err(e) => {
                        return Err(Error::Env {
                            var,
                            message: explain(&format!("{section}.{key}"), &e),
                        })
                    }
                },
                None => {
                    return Err(Error::Env {
                        var,
                        message: explain(&format!("{section}.{key}"), &as_string),
                    })
                }
            },
        };
        let table = root
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(table) = table.as_table_mut() else {
            return Err(Error::Env {
                var,
                message: format!("[{section}] in the file is not a table"),
            });
        };
        table.insert(key.to_string(), parsed);
    }
    Ok(())
}
