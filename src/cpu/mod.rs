//! The CPU reference path: the same operations, names and types as [`crate::cuda`], over
//! host memory. Tests compare the GPU against it bit for bit; machines without a GPU use it.

pub mod epilogue;
mod gemm;
pub mod numeric;
mod quantize;

pub use gemm::{Bias, HostOperand, RawMatrix, gemm, gemm_into, gemm_quantized, gemm_quantized_into};
pub use quantize::{
    HostQuantized, count_nonfinite, dequantize, dequantize_into, quantize, quantize_into, row_sums, row_sums_into,
};
