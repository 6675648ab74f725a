//! Helpers shared by the integration tests.
#![allow(dead_code)]

use qkernels::cuda::{self, Gpu};
use qkernels::{Granularity, IntType, QuantParams, QuantSpec};

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

/// The output specs and static parameters the requantizing GEMM tests use: Symmetric i8,
/// Affine u8 and i8 with zero points, MinOffset u8 (scales near what the f32 output's range
/// would give, and a coarse one so that many outputs saturate).
pub fn requant_outputs() -> Vec<(QuantSpec, QuantParams)> {
    let t = Granularity::Tensor;
    let p = |s: f32, z: Option<i32>, o: Option<f32>| QuantParams {
        scales: vec![s],
        zero_points: z.map(|z| vec![z]),
        offsets: o.map(|o| vec![o]),
    };
    vec![
        (QuantSpec::symmetric(t).unwrap(), p(0.37, None, None)),
        (QuantSpec::symmetric(t).unwrap(), p(0.01, None, None)),
        (QuantSpec::affine(IntType::U8, t).unwrap(), p(0.41, Some(131), None)),
        (QuantSpec::affine(IntType::I8, t).unwrap(), p(0.29, Some(-7), None)),
        (QuantSpec::min_offset(t).unwrap(), p(0.33, None, Some(-40.0))),
    ]
}
