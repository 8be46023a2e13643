//! Fan-out tests.
