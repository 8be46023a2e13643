//! Criterion benchmarks; see benches/.
