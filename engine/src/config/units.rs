//! Durations in the file: keys keep their unit in the name (`_ms`, `_s`) and an
//! integer value, and are converted to [`Duration`] once, while the file is read.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A `_ms` key.
pub fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

/// A `_s` key.
pub fn secs<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_secs)
}
