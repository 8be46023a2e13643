//! serde's errors as sentences an operator can act on: `invalid type: string "1MB",
//! expected usize` becomes `expected a whole number, found the string "1MB"`, an
//! unknown key suggests the nearest known one. A secret's value is never quoted.

/// Whether the value of `key` (a dotted path such as `api.token`) is a credential,
/// never to be printed: tokens and secrets.
pub(super) fn is_secret(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    last == "token" || last.contains("secret") || last.contains("password")
}

/// The value serde refused, when the tree has it.
#[derive(Clone, Copy)]
pub(super) enum Found<'v> {
    Value(&'v toml::Value),
    Nothing,
}

/// One deserialization problem, explained.
pub(super) struct Described {
    /// What is wrong, without the key (the caller puts place and key in front).
    pub text: String,
    /// The key itself is unknown (so its location is the key, not its value).
    pub unknown: bool,
    /// For an unknown key, the known key nearest to it.
    pub suggestion: Option<String>,
}

/// `serde_message` (about `key`, whose value is `found`) as a sentence.
pub(super) fn describe(key: &str, serde_message: &str, found: Found) -> Described {
    let secret = is_secret(key);
    let found_text = match found {
        Found::Value(v) => found_value(v, secret),
        Found::Nothing => String::new(),
    };
    let plain = |text: String| Described {
        text,
        unknown: false,
        suggestion: None,
    };
    let m = serde_message.trim();
    if let Some(rest) = m.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or("");
        let known = backticked(rest.get(name.len() + 1..).unwrap_or(""));
        let suggestion = nearest(name, &known);
        let text = match (&suggestion, known.is_empty()) {
            (Some(s), _) => format!("unknown key; did you mean {s}?"),
            (None, false) => format!("unknown key; the known keys are {}", known.join(", ")),
            (None, true) => "unknown key; this table takes no keys".into(),
        };
        return Described {
            text,
            unknown: true,
            suggestion,
        };
    }
    if let Some(rest) = m.strip_prefix("unknown variant `") {
        let known = backticked(rest.split_once('`').map_or("", |r| r.1));
        return plain(format!("expected one of {}{found_text}", known.join(", ")));
    }
    if let Some(rest) = m.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or("");
        return plain(format!("missing key {name}"));
    }
    let expected = ["invalid type: ", "invalid value: ", "invalid length "]
        .iter()
        .find_map(|p| m.strip_prefix(p))
        .and_then(|r| r.rsplit_once(", expected "))
        .map(|(_, e)| e);
    if let Some(e) = expected {
        return plain(format!("expected {}{found_text}", expectation(e)));
    }
    if m.starts_with("data did not match any variant") {
        return plain(format!("has a value of the wrong type{found_text}"));
    }
    if secret {
        return plain("invalid value (not shown: it is a secret)".into());
    }
    plain(m.to_string())
}

/// `, found the string "1MB"` (for a secret, `, found a string`).
fn found_value(v: &toml::Value, secret: bool) -> String {
    let what = match v {
        toml::Value::String(_) if secret => "a string".to_string(),
        toml::Value::String(s) => format!("the string {s:?}"),
        _ if secret => {
            let t = v.type_str();
            let article = if t.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            format!("{article} {t}")
        }
        toml::Value::Integer(i) => format!("the number {i}"),
        toml::Value::Float(f) => format!("the number {f}"),
        toml::Value::Boolean(b) => format!("{b}"),
        toml::Value::Datetime(d) => format!("the date {d}"),
        toml::Value::Array(_) => "a list".into(),
        toml::Value::Table(_) => "a table".into(),
    };
    format!(", found {what}")
}

/// What serde expected, in the file's words.
fn expectation(e: &str) -> String {
    let e = e.trim();
    match e {
        "usize" | "u64" | "u32" | "u16" | "u8" => "a whole number (0 or more)".into(),
        "isize" | "i64" | "i32" | "i16" | "i8" => "a whole number".into(),
        "f64" | "f32" => "a number".into(),
        "a boolean" => "true or false".into(),
        "a string" | "a borrowed string" => "a string".into(),
        "a sequence" => "a list".into(),
        "a map" => "a table".into(),
        _ if e.starts_with("struct ") => "a table".into(),
        _ if e.starts_with("variant identifier") => "a table".into(),
        _ => e.trim_matches('`').to_string(),
    }
}

/// The `a`, `b` names of serde's "expected one of `a`, `b`".
fn backticked(s: &str) -> Vec<String> {
    s.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The known key closest to `name` (a typo: at most a third of it edited).
fn nearest(name: &str, known: &[String]) -> Option<String> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, k)| *d <= (k.len().max(name.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.clone())
}

/// Levenshtein distance (keys are short: the two rows are a few dozen bytes).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut row = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            row.push(sub.min(prev[j + 1] + 1).min(row[j] + 1));
        }
        prev = row;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_error_says_what_was_expected_and_what_was_found() {
        let v = toml::Value::String("1MB".into());
        let d = describe(
            "messages.queue_capacity",
            "invalid type: string \"1MB\", expected usize",
            Found::Value(&v),
        );
        assert_eq!(
            d.text,
            "expected a whole number (0 or more), found the string \"1MB\""
        );
        let d = describe(
            "api.token",
            "invalid type: integer `5`, expected a string",
            Found::Value(&toml::Value::Integer(5)),
        );
        assert_eq!(d.text, "expected a string, found an integer");
    }

    #[test]
    fn an_unknown_key_suggests_the_nearest_known_one() {
        let d = describe(
            "api.listn",
            "unknown field `listn`, expected one of `listen`, `token`",
            Found::Nothing,
        );
        assert!(d.unknown);
        assert_eq!(d.text, "unknown key; did you mean listen?");
        let d = describe(
            "api.zzzzzz",
            "unknown field `zzzzzz`, expected one of `listen`, `token`",
            Found::Nothing,
        );
        assert_eq!(d.text, "unknown key; the known keys are listen, token");
    }
}
