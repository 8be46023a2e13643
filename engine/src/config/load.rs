//! Reading the file and the environment into a [`Config`], collecting every problem
//! at once instead of stopping at the first.
//!
//! serde stops at its first error, so the tree (file + overrides) is deserialized
//! again after each error with the offending key taken out, until it deserializes:
//! each round removes one key, so the rounds are bounded by the keys in the tree.
//! Each problem names its key path (`messages.queue_capacity`,
//! `apps."com.x".fcm.project_id`) and, when the key is in the file, its line and column,
//! found in a span-keeping parse of the same text (`toml_edit`). A problem of an
//! environment override names its variable instead ([`super::env`]).

use std::path::Path;

use super::env::apply_env;
use super::explain::{describe, Found};
use super::{Config, Error};

/// The configuration as far as it could be read, and every problem found reading it.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration with every key that had a problem left at its default.
    pub config: Config,
    /// Each problem as a sentence: where (line and column, or the environment
    /// variable), the key path, what is wrong.
    pub problems: Vec<String>,
    /// The file's keys with the overrides applied: what `config` was read from
    /// (secrets included; see [`super::Source::tree`]).
    pub tree: toml::Table,
}

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// `messages.queue_capacity`, `apps."com.x".fcm.project_id`, `cluster.nats_urls[1]`:
/// keys that are not bare TOML keys are quoted, so the path reads back as TOML.
pub(super) fn key_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                let bare = !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if bare {
                    out.push_str(k);
                } else {
                    out.push_str(&format!("{k:?}"));
                }
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// `line L, column C` (both from 1) of byte `offset` in `text`.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

/// Where `path` is in the file, below `table`: the value's span (the key's for an
/// unknown key, whose value does not matter), else the nearest enclosing table's.
fn locate(
    table: &dyn toml_edit::TableLike,
    path: &[Seg],
    unknown: bool,
    best: Option<usize>,
) -> Option<usize> {
    let Some((Seg::Key(k), rest)) = path.split_first() else {
        return best;
    };
    let Some((key, item)) = table.get_key_value(k) else {
        return best;
    };
    let start = |s: Option<std::ops::Range<usize>>| s.map(|s| s.start);
    if rest.is_empty() {
        let at = if unknown { None } else { start(item.span()) };
        return at.or(start(key.span())).or(best);
    }
    let best = start(item.span()).or(best);
    match (item, rest) {
        (toml_edit::Item::ArrayOfTables(a), [Seg::Index(n), rest @ ..]) => match a.get(*n) {
            Some(t) => locate(t, rest, unknown, start(t.span()).or(best)),
            None => best,
        },
        (toml_edit::Item::Value(toml_edit::Value::Array(a)), [Seg::Index(n), ..]) => {
            a.get(*n).and_then(|v| start(v.span())).or(best)
        }
        _ => match item.as_table_like() {
            Some(t) => locate(t, rest, unknown, best),
            None => best,
        },
    }
}

/// Remove the key at `path` from `root`; false when there is nothing to remove (an
/// error of the whole document).
fn remove(root: &mut toml::Value, path: &[Seg]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut v = root;
    for seg in parents {
        let next = match (seg, v) {
            (Seg::Key(k), toml::Value::Table(t)) => t.get_mut(k),
            (Seg::Index(i), toml::Value::Array(a)) => a.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => v = n,
            None => return false,
        }
    }
    match (last, v) {
        (Seg::Key(k), toml::Value::Table(t)) => t.remove(k).is_some(),
        (Seg::Index(i), toml::Value::Array(a)) if *i < a.len() => {
            a.remove(*i);
            true
        }
        _ => false,
    }
}

/// The value at `path`, if the tree has one there.
fn value_at<'v>(root: &'v toml::Value, path: &[Seg]) -> Option<&'v toml::Value> {
    path.iter().try_fold(root, |v, seg| match (seg, v) {
        (Seg::Key(k), toml::Value::Table(t)) => t.get(k),
        (Seg::Index(i), toml::Value::Array(a)) => a.get(*i),
        _ => None,
    })
}

fn segments(path: &serde_path_to_error::Path) -> Vec<Seg> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}

/// Deserialize `root`, dropping each key serde refuses, until what is left
/// deserializes. `where_` says where a key is (line and column in the file).
fn deserialize_all(
    mut root: toml::Value,
    where_: impl Fn(&[Seg], bool) -> Option<String>,
    problems: &mut Vec<String>,
) -> Config {
    // Every round removes a key or stops: the keys in the tree bound the rounds.
    let rounds = count_keys(&root) + 1;
    for _ in 0..rounds {
        let e = match serde_path_to_error::deserialize::<_, Config>(root.clone()) {
            Ok(c) => return c,
            Err(e) => e,
        };
        let path = segments(e.path());
        let key = key_path(&path);
        let found = value_at(&root, &path)
            .map(Found::Value)
            .unwrap_or(Found::Nothing);
        let d = describe(&key, e.inner().message(), found);
        let place = where_(&path, d.unknown).map_or(String::new(), |w| format!("{w}: "));
        let text = if key.is_empty() {
            format!("{place}{}", d.text)
        } else {
            format!("{place}{key}: {}", d.text)
        };
        problems.push(text);
        if !remove(&mut root, &path) {
            break;
        }
    }
    Config::default()
}

fn count_keys(v: &toml::Value) -> usize {
    match v {
        toml::Value::Table(t) => t.values().map(|v| 1 + count_keys(v)).sum(),
        toml::Value::Array(a) => a.iter().map(|v| 1 + count_keys(v)).sum(),
        _ => 0,
    }
}

/// Read `path` (or nothing) and the `FANFARE_*` overrides in `env` into a
/// [`Config`], with every problem found on the way. Only a file that cannot be read
/// or is not TOML at all is an error here.
pub fn read(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded, Error> {
    let text = match path {
        Some(path) => std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?,
        None => String::new(),
    };
    let syntax = |path: &Path, message: &str, span: Option<std::ops::Range<usize>>| {
        let at = span.map_or(String::new(), |s| {
            let (l, c) = line_col(&text, s.start);
            format!("line {l}, column {c}: ")
        });
        Error::Syntax {
            path: path.to_path_buf(),
            message: format!("{at}{}", message.trim_end()),
        }
    };
    let mut root = match text.parse::<toml::Table>() {
        Ok(t) => t,
        Err(e) => {
            let path = path.expect("an empty text is valid TOML");
            return Err(syntax(path, e.message(), e.span()));
        }
    };
    let doc = toml_edit::ImDocument::parse(text.clone()).ok();
    let mut problems = Vec::new();
    let from_env = apply_env(&mut root, env, &mut problems);
    let where_ = |p: &[Seg], unknown: bool| -> Option<String> {
        if let Some((_, var)) = from_env.iter().find(|(k, _)| p.starts_with(k)) {
            return Some(format!("environment variable {var}"));
        }
        let offset = locate(doc.as_ref()?.as_table(), p, unknown, None)?;
        let (l, c) = line_col(&text, offset);
        Some(format!("line {l}, column {c}"))
    };
    let tree = root.clone();
    let config = deserialize_all(toml::Value::Table(root), where_, &mut problems);
    Ok(Loaded {
        config,
        problems,
        tree,
    })
}
