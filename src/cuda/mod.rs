//! The GPU path: safe wrappers over the kernels of `kernels/qkernels.h`, on cudarc
//! streams and device slices. Same operation names and types as [`crate::cpu`].
//!
//! A build without nvcc keeps this module (so code that uses it compiles everywhere);
//! every entry point then returns [`crate::Error::NoCudaKernels`].

pub mod baseline;
mod device;
#[rustfmt::skip]
pub mod ffi;
mod gemm;
mod quantize;

pub use device::{DeviceInfo, Gpu, devices, gpu_available, kernels_built};
pub use gemm::{
    DeviceBias, DeviceGemmOutput, DeviceOperand, DeviceRaw, DispatchInfo, GemmKernel, GemmPath, check_kernel,
    choose_kernel, gemm, gemm_into, gemm_into_kernel, gemm_quantized_into, gemm_quantized_into_kernel,
};
pub use quantize::{
    DeviceElement, DeviceQuantized, dequantize, dequantize_into, empty_kernel, quantize, quantize_into, row_sums,
    row_sums_into,
};
