//! Helpers shared by the integration tests.
#![allow(dead_code)]

use qkernels::cuda::{self, Gpu};

/// The GPU to test on, or `None` after printing `SKIPPED: no CUDA device`.
/// With `QKERNELS_REQUIRE_GPU=1` a missing device fails the test instead.
pub fn gpu() -> Option<Gpu> {
    match cuda::gpu_available().and_then(|_| Gpu::new(0)) {
        Ok(g) => Some(g),
        Err(e) => {
            if std::env::var("QKERNELS_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("QKERNELS_REQUIRE_GPU=1 but no usable CUDA device: {e}");
            }
            println!("SKIPPED: no CUDA device ({e})");
            None
        }
    }
}

/// Deterministic pseudo-random f32 values in [-range, range] (xorshift).
pub fn random_f32(n: usize, seed: u64, range: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * range
        })
        .collect()
}
