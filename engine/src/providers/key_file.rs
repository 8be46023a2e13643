//! A vendor's key file (the APNs `.p8` key, the FCM service account, the VAPID key),
//! read and refused in one way: every error names the file and what it should be,
//! and none carries the file's contents (they are the secret).

use std::borrow::Cow;
use std::path::Path;

/// A key file could not be read, or is not the key it should be.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {what} {path}")]
    Read {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path} is not {expected}")]
    Invalid {
        what: &'static str,
        path: String,
        expected: Cow<'static, str>,
    },
}

/// One key file and what it is called in errors (`key file`, `VAPID key file`, ...).
pub struct KeyFile<'a> {
    path: &'a Path,
    what: &'static str,
}

impl<'a> KeyFile<'a> {
    pub fn new(path: &'a Path, what: &'static str) -> Self {
        Self { path, what }
    }

    /// The file's bytes.
    pub fn read(&self) -> Result<Vec<u8>, Error> {
        std::fs::read(self.path).map_err(|source| Error::Read {
            what: self.what,
            path: self.path.display().to_string(),
            source,
        })
    }

    /// The file is not `expected` (`a PEM EC P-256 private key`, ...); the reason
    /// must not quote the file.
    pub fn invalid(&self, expected: impl Into<Cow<'static, str>>) -> Error {
        Error::Invalid {
            what: self.what,
            path: self.path.display().to_string(),
            expected: expected.into(),
        }
    }
}
