//! Checking one section on its way to typed settings: each problem is a sentence naming
//! its key (`section.key`), every problem is kept (`fanfare check-config` lists them
//! all), and what passes is converted once, so clients never check a key again.

use std::path::PathBuf;

use super::Secret;

/// The problems of one section, collected while its typed settings are built.
pub struct Check<'a> {
    /// The section's key path: `apns`, or `apps."com.x".apns` for an app's table.
    section: &'a str,
    problems: &'a mut Vec<String>,
    found: usize,
}

/// A value that can be set but empty (an empty string counts as missing).
pub trait Filled {
    fn filled(&self) -> bool;
}

impl Filled for String {
    fn filled(&self) -> bool {
        !self.is_empty()
    }
}

impl Filled for Secret {
    fn filled(&self) -> bool {
        !self.expose().is_empty()
    }
}

impl Filled for PathBuf {
    fn filled(&self) -> bool {
        !self.as_os_str().is_empty()
    }
}

impl<'a> Check<'a> {
    pub fn new(section: &'a str, problems: &'a mut Vec<String>) -> Self {
        Self {
            section,
            problems,
            found: 0,
        }
    }

    /// Record a problem: `what` follows the key's full name, `section.key`.
    pub fn key(&mut self, key: &str, what: impl std::fmt::Display) {
        let section = self.section;
        self.problem(format_args!("{section}.{key}{what}"));
    }

    /// Record a problem written out in full.
    pub fn problem(&mut self, text: impl std::fmt::Display) {
        self.problems.push(text.to_string());
        self.found += 1;
    }

    /// `key`'s value, which the section needs once `on` is set.
    pub fn required<T: Filled + Clone>(&mut self, on: &str, key: &str, v: &Option<T>) -> Option<T> {
        match v {
            Some(v) if v.filled() => Some(v.clone()),
            _ => {
                let s = self.section;
                self.key(key, format_args!(" is required when {s}.{on} is set"));
                None
            }
        }
    }

    /// Keys given without the one (`on`) that turns the vendor on: a problem naming them.
    pub fn stray(&mut self, on: &str, keys: &[(&str, bool)]) {
        let set: Vec<&str> = keys.iter().filter(|k| k.1).map(|k| k.0).collect();
        if set.is_empty() {
            return;
        }
        let verb = if set.len() == 1 { "is" } else { "are" };
        let s = self.section;
        self.key(
            &set.join("/"),
            format_args!(" {verb} set but {s}.{on} is not"),
        );
    }

    /// The keys of a vendor that is turned on by key `on` (set: `value` is `Some`),
    /// each named once with [`Needs::key`]: while `on` is set a missing key is a
    /// problem ([`Check::required`]), while it is not a key that is set is one
    /// ([`Check::stray`]). [`Needs::finish`] gives `on`'s value back.
    pub fn needs<'c, T>(&'c mut self, on: &'static str, value: Option<T>) -> Needs<'c, 'a, T> {
        Needs {
            check: self,
            on,
            value,
            stray: Vec::new(),
        }
    }

    /// A base URL (scheme and host, no path).
    pub fn endpoint(&mut self, key: &str, url: &str) {
        match url.parse::<http::Uri>() {
            Ok(u) if is_http(&u) => {
                if u.path() != "/" && !u.path().is_empty() {
                    self.key(
                        key,
                        format_args!(" {url:?} must be a base URL without a path"),
                    );
                }
            }
            _ => self.key(
                key,
                format_args!(
                    " {url:?} is not an http(s) URL with a host, such as https://api.push.apple.com"
                ),
            ),
        }
    }

    /// A full URL (scheme and host, any path).
    pub fn url(&mut self, key: &str, url: &str) {
        match url.parse::<http::Uri>() {
            Ok(u) if is_http(&u) => {}
            _ => self.key(
                key,
                format_args!(" {url:?} is not an http(s) URL with a host"),
            ),
        }
    }

    /// `settings` when this section had no problem, else `None`.
    pub fn settled<T>(self, settings: Option<T>) -> Option<T> {
        settings.filter(|_| self.found == 0)
    }
}

/// The keys a vendor needs once it is turned on; made by [`Check::needs`].
pub struct Needs<'c, 'a, T> {
    check: &'c mut Check<'a>,
    on: &'static str,
    value: Option<T>,
    /// Keys set while `on` is not.
    stray: Vec<(&'static str, bool)>,
}

impl<T> Needs<'_, '_, T> {
    /// `key`'s value when the vendor is on and it is set; a problem when it is on and
    /// `key` is missing; noted as stray when it is off and `key` is set.
    pub fn key<K: Filled + Clone>(&mut self, key: &'static str, v: &Option<K>) -> Option<K> {
        if self.value.is_some() {
            self.check.required(self.on, key, v)
        } else {
            self.stray.push((key, v.is_some()));
            None
        }
    }

    /// `on`'s value; when it is not set, the keys set without it are one problem.
    pub fn finish(self) -> Option<T> {
        if self.value.is_none() {
            self.check.stray(self.on, &self.stray);
        }
        self.value
    }
}

fn is_http(u: &http::Uri) -> bool {
    matches!(u.scheme_str(), Some("https") | Some("http")) && u.host().is_some()
}
