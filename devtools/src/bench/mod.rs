//! Benchmarks behind `make bench`: `http` (cached reads against nginx serving the same bytes),
//! `post_runtime` (what the extension adds to every invocation's bill, against a null
//! extension in the same environment) and `variants` (the extension run differently or built
//! differently, side by side: current-thread against multi-thread, one build against another).
//! `probe` is the one-connection latency probe both `http` and `variants` use, with the CPU
//! placement pinned. `cold_start` is what a real function sees from a cold start on, against
//! the in-handler alternatives.

pub mod cold_start;
pub mod http;
pub mod post_runtime;
pub mod probe;
pub mod variants;

/// The `p`th percentile (0–100) of `v`, nearest rank.
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len().max(1) - 1) as f64 * p / 100.0).round() as usize)
        .copied()
        .unwrap_or(0.0)
}
