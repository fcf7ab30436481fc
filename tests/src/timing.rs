//! Interleaved timing for the benchmarks under `benches/`.

use std::time::{Duration, Instant};

/// Per-call times of `functions`, in nanoseconds: after a warm-up, 15 rounds in which every
/// function runs one batch of about 20 ms in turn, each keeping its fastest batch. Interleaved,
/// the functions of one scenario see the same machine, so their ratios hold even when a
/// neighbour slows the machine between rounds; the fastest batch (thousands of calls) measures
/// the code rather than the neighbours.
pub fn time_interleaved(functions: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let batches: Vec<u64> = functions
        .iter_mut()
        .map(|f| {
            let warm_until = Instant::now() + Duration::from_millis(200);
            let mut calls = 0u64;
            while Instant::now() < warm_until {
                f();
                calls += 1;
            }
            (calls / 10).max(1)
        })
        .collect();
    let mut best = vec![f64::INFINITY; functions.len()];
    for _ in 0..15 {
        for ((f, batch), best) in functions.iter_mut().zip(&batches).zip(best.iter_mut()) {
            let start = Instant::now();
            for _ in 0..*batch {
                f();
            }
            *best = best.min(start.elapsed().as_nanos() as f64 / *batch as f64);
        }
    }
    best
}
