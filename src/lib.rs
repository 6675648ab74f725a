//! qkernels: INT8 quantization kernels for NVIDIA GPUs (Hopper first) with a CPU reference
//! that computes bit-identical numbers.
//!
//! - [`scheme`]: what to compute (schemes, granularities, parameters), shared by both paths.
//! - [`cpu`]: the reference, over host slices.
//! - [`cuda`]: the GPU kernels, over cudarc streams and device slices, with the same names.
//!
//! The numeric contract both paths follow is in the README and DESIGN.md section 2.

pub mod bench;
pub mod cpu;
pub mod cuda;
mod element;
mod error;
pub mod gemm;
pub mod npy;
pub mod scheme;

pub use element::{Element, FloatType};
pub use error::{Error, Result};
pub use gemm::{GemmOutput, OutType};
pub use half::{bf16, f16};
pub use scheme::{Granularity, IntType, QuantParams, QuantSpec, Scheme};

/// The README's Rust examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
