//! End-to-end test package; see tests/e2e.rs.
