//! Finding a CUDA device, the kernels this build carries, and turning launcher statuses
//! into errors.

use std::sync::{Arc, OnceLock};

use cudarc::driver::{CudaContext, CudaStream, sys::CUdevice_attribute};

use crate::error::{Error, Result};

/// The architectures the kernels were compiled for, or why there are none.
pub fn kernels_built() -> Result<&'static str> {
    #[cfg(qk_cuda)]
    {
        Ok(env!("QK_CUDA_ARCHS"))
    }
    #[cfg(not(qk_cuda))]
    {
        Err(Error::NoCudaKernels(env!("QK_CPU_ONLY_REASON")))
    }
}

/// Why the GPU path cannot run here, or `Ok(())` when it can: the kernels were built,
/// the CUDA driver library loads and at least one device exists.
pub fn gpu_available() -> Result<()> {
    kernels_built()?;
    // SAFETY: probes for libcuda with dlopen; no CUDA function is called.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(Error::NoDevice(
            "the CUDA driver library (libcuda.so) is not installed".into(),
        ));
    }
    match CudaContext::device_count() {
        Ok(n) if n > 0 => Ok(()),
        Ok(_) => Err(Error::NoDevice("the driver reports no CUDA devices".into())),
        Err(e) => Err(Error::NoDevice(format!("the driver failed to initialize: {e}"))),
    }
}

/// A device and a stream on it: the handle the GPU entry points take.
#[derive(Clone, Debug)]
pub struct Gpu {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
}

impl Gpu {
    /// Opens device `ordinal` (its primary context) and a new stream on it.
    pub fn new(ordinal: usize) -> Result<Self> {
        gpu_available()?;
        let ctx = CudaContext::new(ordinal)?;
        let (major, minor) = ctx.compute_capability()?;
        if major < 8 {
            return Err(Error::Unsupported(format!(
                "device {ordinal} has compute capability {major}.{minor}; qkernels needs 8.0 or newer"
            )));
        }
        let stream = ctx.new_stream()?;
        Ok(Self { ctx, stream })
    }
}

/// What `qk info` prints about one device.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    pub compute_capability: (i32, i32),
    pub sms: usize,
    pub memory_bytes: usize,
    pub l2_bytes: usize,
}

/// All CUDA devices.
pub fn devices() -> Result<Vec<DeviceInfo>> {
    gpu_available()?;
    let n = CudaContext::device_count()? as usize;
    (0..n)
        .map(|ordinal| {
            let ctx = CudaContext::new(ordinal)?;
            let p = device_props(&ctx)?;
            Ok(DeviceInfo {
                ordinal,
                name: ctx.name()?,
                compute_capability: p.cc,
                sms: p.sms,
                memory_bytes: ctx.total_mem()?,
                l2_bytes: p.l2_bytes,
            })
        })
        .collect()
}

/// What the GEMM dispatcher reads about a device: compute capability, multiprocessor count
/// and L2 size.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeviceProps {
    pub cc: (i32, i32),
    pub sms: usize,
    pub l2_bytes: usize,
}

/// A context's device's [`DeviceProps`], read from the driver once per device (the GEMM
/// dispatcher needs them on every launch).
pub(crate) fn device_props(ctx: &CudaContext) -> Result<DeviceProps> {
    static CACHE: [OnceLock<DeviceProps>; 64] = [const { OnceLock::new() }; 64];
    let read = || -> Result<DeviceProps> {
        let attr = |a| -> Result<usize> { Ok(ctx.attribute(a)?.max(0) as usize) };
        Ok(DeviceProps {
            cc: ctx.compute_capability()?,
            sms: attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?,
            l2_bytes: attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)?,
        })
    };
    let Some(cell) = CACHE.get(ctx.ordinal()) else {
        return read();
    };
    if let Some(props) = cell.get() {
        return Ok(*props);
    }
    let props = read()?;
    Ok(*cell.get_or_init(|| props))
}

/// Turns a launcher's CUDA status into a result.
#[cfg(qk_cuda)]
pub(crate) fn check_status(op: &'static str, code: i32) -> Result<()> {
    if code == 0 {
        return Ok(());
    }
    // SAFETY: qk_status_string(int) returns a pointer to a static NUL-terminated string.
    let message = unsafe { std::ffi::CStr::from_ptr(super::ffi::qk_status_string(code)) }
        .to_string_lossy()
        .into_owned();
    Err(Error::Cuda { op, code, message })
}

/// Checks that a device pointer has the alignment `align` (bytes).
pub(crate) fn check_aligned(ptr: u64, align: usize, what: &str) -> Result<()> {
    if ptr.is_multiple_of(align as u64) {
        Ok(())
    } else {
        Err(Error::Misaligned(format!(
            "{what} at {ptr:#x} is not {align}-byte aligned"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misaligned_pointers_are_an_error() {
        assert!(check_aligned(0x1000, 16, "x").is_ok());
        let e = check_aligned(0x1002, 4, "x").unwrap_err();
        assert!(matches!(e, Error::Misaligned(_)), "{e}");
    }
}
