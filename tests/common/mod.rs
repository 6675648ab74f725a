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
