//! Durability tests (filled below).
