//! `FANFARE_<SECTION>_<KEY>` environment overrides. A problem of an override names
//! its variable (never the file) and never quotes a secret's value.

use serde::Deserialize;

use super::explain::{describe, Found};
use super::load::Seg;
use super::{sections, Config};

/// Whether `[section] key = value` deserializes; serde's message says why not.
fn check_key(section: &str, key: &str, value: toml::Value) -> Result<(), toml::de::Error> {
    let mut keys = toml::Table::new();
    keys.insert(key.to_string(), value);
    let mut root = toml::Table::new();
    root.insert(section.to_string(), toml::Value::Table(keys));
    Config::deserialize(toml::Value::Table(root)).map(drop)
}

/// The variable that sets `section.key`.
fn var_name(section: &str, key: &str) -> String {
    format!("FANFARE_{section}_{key}").to_ascii_uppercase()
}

/// Apply `FANFARE_<SECTION>_<KEY>=value` overrides. A value is taken as the string it
/// is wherever the key accepts a string (so an all-digit token stays a string);
/// otherwise it is read as a TOML value (number, boolean, array). An override that
/// fits neither is a problem naming the variable and the key, and is not applied.
/// Returns the key path each applied variable set, with the variable.
pub(super) fn apply_env(
    root: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
    problems: &mut Vec<String>,
) -> Vec<(Vec<Seg>, String)> {
    let mut applied = Vec::new();
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(var, _)| var.starts_with("FANFARE_"))
        .collect();
    env.sort(); // problems in a stable order
    for (var, value) in env {
        let rest = var["FANFARE_".len()..].to_ascii_lowercase();
        let Some(section) = sections().find(|s| {
            rest.len() > s.len() && rest.starts_with(s) && rest.as_bytes()[s.len()] == b'_'
        }) else {
            if rest == "log" {
                continue; // FANFARE_LOG is the log filter, not a config key
            }
            problems.push(format!(
                "environment variable {var}: no such section; a variable is FANFARE_<SECTION>_<KEY> with SECTION one of {}",
                sections().map(str::to_ascii_uppercase).collect::<Vec<_>>().join(", ")
            ));
            continue;
        };
        let key = &rest[section.len() + 1..];
        let as_toml = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .filter(|v| !v.is_table());
        let raw = toml::Value::String(value);
        let refused = match check_key(section, key, raw.clone()) {
            Ok(()) => Ok(raw),
            Err(as_string) => match as_toml {
                Some(v) => check_key(section, key, v.clone())
                    .map(|()| v.clone())
                    .map_err(|e| (e, v)),
                None => Err((as_string, raw)),
            },
        };
        let parsed = match refused {
            Ok(v) => v,
            Err((e, v)) => {
                let path = format!("{section}.{key}");
                let d = describe(&path, e.message(), Found::Value(&v));
                let text = match (&d.suggestion, d.unknown) {
                    (Some(s), true) => format!(
                        "environment variable {var}: no key {path}; did you mean {}?",
                        var_name(section, s)
                    ),
                    _ => format!("environment variable {var}: {path}: {}", d.text),
                };
                problems.push(text);
                continue;
            }
        };
        let table = root
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(table) = table.as_table_mut() else {
            problems.push(format!(
                "environment variable {var}: [{section}] in the file is not a table"
            ));
            continue;
        };
        table.insert(key.to_string(), parsed);
        applied.push((
            vec![Seg::Key(section.to_string()), Seg::Key(key.to_string())],
            var,
        ));
    }
    applied
}
