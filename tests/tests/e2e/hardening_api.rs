//! Hardening (issue 10): placeholder, filled in by its owner.
