//! Benchmarks behind `make bench`: `http` (cached reads against nginx serving the same bytes),
//! `post_runtime` (what the extension adds to every invocation's bill, against a null
//! extension in the same environment) and `variants` (the extension run differently or built
//! differently, side by side: current-thread against multi-thread, one build against another).
//! `probe` is the one-connection latency probe both `http` and `variants` use, with the CPU
//! placement pinned. `cold_start` is what a real function sees from a cold start on, against
//! the in-handler alternatives. `fleet` is a burst of cold starts against AWS's per-account
//! quotas; `startup` what the extension adds to each cold start (exec → `/register`).

pub mod clients;
pub mod cold_start;
pub mod fleet;
pub mod http;
pub mod post_runtime;
pub mod probe;
pub mod startup;
pub mod variants;

/// The `p`th percentile (0–100) of `v`, nearest rank.
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len().max(1) - 1) as f64 * p / 100.0).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

/// "2 cores, <CPU model>": what every report says of the machine it ran on.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}
