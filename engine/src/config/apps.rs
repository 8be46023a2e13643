//! `[apps.<app_id>.<vendor>]`: the credential sets of further apps (API 1.1,
//! "Multiple apps and reloading").
//!
//! A binding's `app_id` selects its app's set where one is configured. An app's vendor
//! table may set any key of that vendor's top-level section; the keys it leaves unset
//! are inherited from the top-level section ([`merged`]). The merged section is then
//! checked like a top-level one, its problems named by their full key path
//! (`apps."com.x".fcm.service_account_file`), so one pass lists every problem.
//!
//! An app whose merged section equals the top-level one needs no client of its own
//! (its bindings use the top-level client). For APNs the app id is the `apns-topic`
//! unless the app's table sets `topic` (as a binding's `app_id` is today), so an app
//! that sets nothing else shares the top-level connections and provider token.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::explain::{describe, Found};

/// One app's vendor tables, `[apps.<app_id>.<vendor>]`; each is optional and holds
/// any keys of that vendor's top-level section.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct App {
    /// Keys of `[apns]` this app sets differently (`topic`, `key_file`, ...).
    pub apns: Option<toml::Table>,
    /// Keys of `[fcm]` this app sets differently (`service_account_file`, ...).
    pub fcm: Option<toml::Table>,
    /// Keys of `[huawei]` this app sets differently.
    pub huawei: Option<toml::Table>,
    /// Keys of `[honor]` this app sets differently.
    pub honor: Option<toml::Table>,
    /// Keys of `[xiaomi]` this app sets differently.
    pub xiaomi: Option<toml::Table>,
    /// Keys of `[oppo]` this app sets differently.
    pub oppo: Option<toml::Table>,
    /// Keys of `[vivo]` this app sets differently.
    pub vivo: Option<toml::Table>,
    /// Keys of `[webpush]` this app sets differently.
    pub webpush: Option<toml::Table>,
}

/// The longest app id (the API's id limit).
const MAX_ID: usize = 128;

/// The key path prefix of one app's vendor table, as the TOML file spells it:
/// `apps."com.x".fcm` (the id quoted unless it is a bare key).
pub fn section_name(app_id: &str, vendor: &str) -> String {
    let bare = !app_id.is_empty()
        && app_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        format!("apps.{app_id}.{vendor}")
    } else {
        format!("apps.{app_id:?}.{vendor}")
    }
}

/// Problems of the app ids themselves (each vendor table is checked by its vendor).
pub(super) fn problems<'a>(ids: impl IntoIterator<Item = &'a String>, p: &mut Vec<String>) {
    for id in ids {
        if id.is_empty() || id.len() > MAX_ID || id.chars().any(char::is_control) {
            p.push(format!(
                "apps.{id:?}: an app id is 1 to {MAX_ID} bytes without control characters"
            ));
        }
    }
}

/// The vendor section `top` with the keys of `over` (an app's table) set over it, for
/// the app `app_id` of `vendor`: `Ok(None)` when the result is `top` itself (the app
/// shares the top-level client), `Err` with the problem (named by its full key path)
/// when a key does not fit the section.
pub fn merged<S: Serialize + DeserializeOwned>(
    top: &S,
    over: &toml::Table,
    app_id: &str,
    vendor: &str,
) -> Result<Option<S>, String> {
    let base = toml::Table::try_from(top).expect("a vendor section serializes to a table");
    let mut table = base.clone();
    for (key, value) in over {
        table.insert(key.clone(), value.clone());
    }
    if vendor == "apns" && !over.contains_key("topic") {
        // The app id is the app's bundle id, as a binding's `app_id` is today.
        table.insert("topic".into(), toml::Value::String(app_id.into()));
    }
    if table == base {
        return Ok(None);
    }
    let tree = toml::Value::Table(table);
    serde_path_to_error::deserialize(tree.clone())
        .map(Some)
        .map_err(|e| {
            let name = e.path().to_string();
            let key = format!("{}.{name}", section_name(app_id, vendor));
            let found = tree.get(&name).map_or(Found::Nothing, Found::Value);
            format!("{key}: {}", describe(&key, e.inner().message(), found).text)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn load(text: &str) -> Config {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f.toml");
        std::fs::write(&path, text).expect("write");
        Config::load(Some(&path), Vec::new()).expect("loads")
    }

    #[test]
    fn an_app_table_inherits_every_key_it_does_not_set() {
        let c = load(
            "[fcm]\nendpoint = \"https://fcm.example\"\nconnections = 3\nmax_rps = 7\n\
             [apps.\"com.x\".fcm]\nservice_account_file = \"other.json\"\n",
        );
        let over = c.apps["com.x"].fcm.as_ref().expect("fcm table");
        let m = merged(&c.fcm, over, "com.x", "fcm")
            .expect("fits")
            .expect("differs");
        assert_eq!(m.endpoint, "https://fcm.example");
        assert_eq!((m.connections, m.max_rps), (3, 7));
        assert_eq!(
            m.service_account_file.as_deref(),
            Some(std::path::Path::new("other.json"))
        );
    }

    #[test]
    fn an_app_table_that_changes_nothing_shares_the_top_level_client() {
        let c = load("[fcm]\nconnections = 3\n[apps.x.fcm]\nconnections = 3\n");
        let over = c.apps["x"].fcm.as_ref().expect("fcm table");
        assert!(merged(&c.fcm, over, "x", "fcm").expect("fits").is_none());
    }

    #[test]
    fn an_apns_app_without_a_topic_takes_its_id_as_the_topic() {
        let c = load("[apns]\ntopic = \"com.a\"\n[apps.\"com.b\".apns]\nconnections = 1\n");
        let over = c.apps["com.b"].apns.as_ref().expect("apns table");
        let m = merged(&c.apns, over, "com.b", "apns").expect("fits");
        assert_eq!(m.expect("differs").topic.as_deref(), Some("com.b"));
    }

    #[test]
    fn every_problem_of_every_app_is_named_by_its_key_path() {
        let c = load(
            "[apps.\"com.x\".fcm]\nservice_account_file = \"/nonexistent/sa.json\"\n\
             [apps.\"com.x\".apns]\nnope = 1\n\
             [apps.y.huawei]\nclient_secret = [\"hunter2\"]\n\
             [apps.y.vivo]\napp_id = \"1\"\n",
        );
        let p = c.problems();
        let has = |s: &str| p.iter().any(|m| m.contains(s));
        assert!(has("apps.\"com.x\".fcm.service_account_file"), "{p:?}");
        assert!(has("apps.\"com.x\".apns.nope"), "{p:?}");
        assert!(has("apps.y.huawei.client_secret"), "{p:?}");
        assert!(has("apps.y.vivo.app_key is required"), "{p:?}");
        assert!(
            !p.iter().any(|m| m.contains("hunter2")),
            "a secret never shows: {p:?}"
        );
    }

    #[test]
    fn an_unknown_vendor_under_an_app_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f.toml");
        std::fs::write(&path, "[apps.x.nokia]\nkey = 1\n").expect("write");
        let e = Config::load(Some(&path), Vec::new()).expect_err("unknown vendor");
        assert!(e.to_string().contains("apps.x"), "{e}");
    }
}
