//! `[resources.<id>.<vendor>]`: named rule sets a push selects with `push.resources_id`
//! (API 1.1, DESIGN.md "Configuration added in API 1.1").
//!
//! Each rule set holds, per vendor, the fields that vendor's rendering applies to a
//! push that names it (APNs `category`, `sound`, `thread_id`, `interruption_level`,
//! `mutable_content`; FCM `channel_id`, `sound`, `click_action`; Huawei/Honor
//! `category`, `importance`; Xiaomi/OPPO `channel_id`; vivo `category`; Web Push
//! `urgency`). A field given in the request itself (`sound`, `priority`) wins over the
//! rule. The sets are checked at load like every other section, so a push never
//! meets a value its vendor would refuse because of the configuration.

use serde::Deserialize;

/// The longest value a rule may set (a sound file name, a channel id).
const MAX_VALUE: usize = 256;
/// The longest rule set id (the API's id limit).
const MAX_ID: usize = 128;

/// One rule set, `[resources.<id>]`: one table per vendor, each optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Resource {
    /// APNs fields of the rule set.
    pub apns: ApnsRule,
    /// FCM fields of the rule set.
    pub fcm: FcmRule,
    /// Huawei Push Kit fields of the rule set.
    pub huawei: PushKitRule,
    /// Honor Push fields of the rule set.
    pub honor: PushKitRule,
    /// Xiaomi MiPush fields of the rule set.
    pub xiaomi: ChannelRule,
    /// OPPO Push fields of the rule set.
    pub oppo: ChannelRule,
    /// vivo Push fields of the rule set.
    pub vivo: VivoRule,
    /// Web Push fields of the rule set.
    pub webpush: WebpushRule,
}

/// `[resources.<id>.apns]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ApnsRule {
    /// `aps.category`: the notification's actions, as the app registered them.
    pub category: Option<String>,
    /// `aps.sound` when the request gives none.
    pub sound: Option<String>,
    /// `aps.thread-id`: how the device groups notifications.
    pub thread_id: Option<String>,
    /// `aps.interruption-level`: `passive`, `active`, `time-sensitive` or `critical`.
    pub interruption_level: Option<String>,
    /// `aps.mutable-content: 1`: let the app's service extension change the alert.
    pub mutable_content: Option<bool>,
}

/// `[resources.<id>.fcm]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct FcmRule {
    /// `android.notification.channel_id`: the Android notification channel.
    pub channel_id: Option<String>,
    /// `android.notification.sound` when the request gives none.
    pub sound: Option<String>,
    /// `android.notification.click_action`: the intent filter opened on a tap.
    pub click_action: Option<String>,
}

/// `[resources.<id>.huawei]` and `[resources.<id>.honor]` (Push Kit family).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PushKitRule {
    /// The message category (`IM`, `VOIP`, ...), instead of the section's `category`.
    pub category: Option<String>,
    /// `android.notification.importance`: `LOW` or `NORMAL`.
    pub importance: Option<String>,
}

/// `[resources.<id>.xiaomi]` and `[resources.<id>.oppo]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelRule {
    /// The notification channel, instead of the section's `channel_id`.
    pub channel_id: Option<String>,
}

/// `[resources.<id>.vivo]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct VivoRule {
    /// vivo's message `category` (`IM`, `ACCOUNT`, ...; system messages only).
    pub category: Option<String>,
}

/// `[resources.<id>.webpush]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct WebpushRule {
    /// The `Urgency` header: `very-low`, `low`, `normal` or `high`.
    pub urgency: Option<String>,
}

const INTERRUPTION_LEVELS: [&str; 4] = ["passive", "active", "time-sensitive", "critical"];
const IMPORTANCES: [&str; 2] = ["LOW", "NORMAL"];
const URGENCIES: [&str; 4] = ["very-low", "low", "normal", "high"];

/// Every problem of the `[resources]` tables, each a sentence naming its key.
pub(super) fn problems<'a>(
    resources: impl IntoIterator<Item = (&'a String, &'a Resource)>,
    p: &mut Vec<String>,
) {
    for (id, r) in resources {
        let id_ok = !id.is_empty()
            && id.len() <= MAX_ID
            && !id.chars().any(|c| c.is_control() || c.is_whitespace());
        if !id_ok {
            p.push(format!(
                "resources.{id:?}: a rule set id is 1 to {MAX_ID} bytes without spaces or control characters"
            ));
        }
        let mut value = |vendor: &str, key: &str, v: &Option<String>, allowed: &[&str]| {
            let Some(v) = v else { return };
            let key = format!("resources.{id}.{vendor}.{key}");
            if v.is_empty() || v.len() > MAX_VALUE || v.chars().any(char::is_control) {
                p.push(format!(
                    "{key} must be 1 to {MAX_VALUE} bytes without control characters"
                ));
            } else if !allowed.is_empty() && !allowed.contains(&v.as_str()) {
                p.push(format!(
                    "{key} is {v:?}; it must be one of {}",
                    allowed.join(", ")
                ));
            }
        };
        value("apns", "category", &r.apns.category, &[]);
        value("apns", "sound", &r.apns.sound, &[]);
        value("apns", "thread_id", &r.apns.thread_id, &[]);
        value(
            "apns",
            "interruption_level",
            &r.apns.interruption_level,
            &INTERRUPTION_LEVELS,
        );
        value("fcm", "channel_id", &r.fcm.channel_id, &[]);
        value("fcm", "sound", &r.fcm.sound, &[]);
        value("fcm", "click_action", &r.fcm.click_action, &[]);
        for (vendor, k) in [("huawei", &r.huawei), ("honor", &r.honor)] {
            value(vendor, "category", &k.category, &[]);
            value(vendor, "importance", &k.importance, &IMPORTANCES);
        }
        value("xiaomi", "channel_id", &r.xiaomi.channel_id, &[]);
        value("oppo", "channel_id", &r.oppo.channel_id, &[]);
        value("vivo", "category", &r.vivo.category, &[]);
        value("webpush", "urgency", &r.webpush.urgency, &URGENCIES);
    }
}
