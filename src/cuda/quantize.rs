//! GPU quantize, dequantize and row sums over cudarc streams and slices: the same names
//! and types as [`crate::cpu`], with device buffers. Every function checks its arguments
//! (shapes, lengths, parameter values, alignment), then makes one launcher call; launches
//! are stream-ordered and never synchronize.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, SyncOnDrop, ValidAsZeroBits};

use super::device::{check_aligned, kernels_built};
use super::ffi;
use crate::cpu::HostQuantized;
use crate::element::{Element, FloatType};
use crate::error::{Error, Result};
use crate::scheme::{Granularity, IntType, QuantParams, QuantSpec, Scheme, check_matrix_len, check_row_sums};

/// Words of the non-finite counter buffer: the count and two words of kernel scratch.
const NONFINITE_WORDS: usize = 3;

/// A float element the kernels read and write on the device.
pub trait DeviceElement: Element + DeviceRepr + ValidAsZeroBits {}
impl<T: Element + DeviceRepr + ValidAsZeroBits> DeviceElement for T {}

/// A quantized `[rows, cols]` matrix in device memory: the device twin of [`HostQuantized`].
#[derive(Debug)]
pub struct DeviceQuantized {
    pub spec: QuantSpec,
    pub rows: usize,
    pub cols: usize,
    /// Row-major quantized values (i8 as two's-complement bytes).
    pub data: CudaSlice<u8>,
    pub scales: CudaSlice<f32>,
    pub zero_points: Option<CudaSlice<i32>>,
    pub offsets: Option<CudaSlice<f32>>,
    pub row_sums: CudaSlice<i32>,
    /// Word 0: NaN/±Inf values met by the last quantize call or requantizing GEMM; words
    /// 1–2: the kernels' self-cleaning scratch (see `qk_quantize_args` and
    /// `qk_requant_finish` in kernels/qkernels.h). Read the count with
    /// [`DeviceQuantized::nonfinite`].
    pub(super) nonfinite: CudaSlice<u64>,
}

impl DeviceQuantized {
    /// Zero-filled device buffers sized for `spec` on `[rows, cols]`.
    pub fn alloc(stream: &Arc<CudaStream>, spec: QuantSpec, rows: usize, cols: usize) -> Result<Self> {
        spec.check(rows, cols)?;
        let n = spec.num_params(rows, cols);
        Ok(Self {
            spec,
            rows,
            cols,
            data: stream.alloc_zeros(rows * cols)?,
            scales: stream.alloc_zeros(n)?,
            zero_points: if spec.scheme() == Scheme::Affine {
                Some(stream.alloc_zeros(n)?)
            } else {
                None
            },
            offsets: if spec.scheme() == Scheme::MinOffset {
                Some(stream.alloc_zeros(n)?)
            } else {
                None
            },
            row_sums: stream.alloc_zeros(rows)?,
            nonfinite: stream.alloc_zeros(NONFINITE_WORDS)?,
        })
    }

    /// Copies a host matrix to the device.
    pub fn upload(stream: &Arc<CudaStream>, h: &HostQuantized) -> Result<Self> {
        h.check()?;
        Ok(Self {
            spec: h.spec,
            rows: h.rows,
            cols: h.cols,
            data: stream.clone_htod(&h.data)?,
            scales: stream.clone_htod(&h.scales)?,
            zero_points: h.zero_points.as_ref().map(|z| stream.clone_htod(z)).transpose()?,
            offsets: h.offsets.as_ref().map(|o| stream.clone_htod(o)).transpose()?,
            row_sums: stream.clone_htod(&h.row_sums)?,
            nonfinite: stream.clone_htod(&[h.nonfinite, 0, 0])?,
        })
    }

    /// Copies to the host (synchronizes `stream`). A nonzero non-finite count is an
    /// [`Error::NonFinite`] unless `allow_nonfinite`.
    pub fn to_host(&self, stream: &Arc<CudaStream>, allow_nonfinite: bool) -> Result<HostQuantized> {
        let nonfinite = self.nonfinite(stream)?;
        if nonfinite > 0 && !allow_nonfinite {
            return Err(Error::NonFinite { count: nonfinite });
        }
        Ok(HostQuantized {
            spec: self.spec,
            rows: self.rows,
            cols: self.cols,
            data: stream.clone_dtoh(&self.data)?,
            scales: stream.clone_dtoh(&self.scales)?,
            zero_points: self.zero_points.as_ref().map(|z| stream.clone_dtoh(z)).transpose()?,
            offsets: self.offsets.as_ref().map(|o| stream.clone_dtoh(o)).transpose()?,
            row_sums: stream.clone_dtoh(&self.row_sums)?,
            nonfinite,
        })
    }

    /// The non-finite count of the last quantize call or requantizing GEMM (synchronizes
    /// `stream`).
    pub fn nonfinite(&self, stream: &Arc<CudaStream>) -> Result<u64> {
        let mut word = [0u64];
        stream.memcpy_dtoh(&self.nonfinite.slice(0..1), &mut word)?;
        Ok(word[0])
    }

    /// Copies given (static) parameters, checked against this matrix by the caller, into its
    /// parameter buffers (stream-ordered; absent zero points become 0).
    pub(super) fn set_params(&mut self, stream: &Arc<CudaStream>, p: &QuantParams) -> Result<()> {
        stream.memcpy_htod(&p.scales, &mut self.scales)?;
        if let Some(z) = self.zero_points.as_mut() {
            match &p.zero_points {
                Some(given) => stream.memcpy_htod(given, z)?,
                None => stream.memset_zeros(z)?,
            }
        }
        if let (Some(o), Some(given)) = (self.offsets.as_mut(), &p.offsets) {
            stream.memcpy_htod(given, o)?;
        }
        Ok(())
    }

    pub(super) fn check(&self) -> Result<()> {
        self.spec.check_buffers(
            (self.rows, self.cols),
            self.data.len(),
            self.scales.len(),
            self.zero_points.as_ref().map(|z| z.len()),
            self.offsets.as_ref().map(|o| o.len()),
            self.row_sums.len(),
        )
    }
}

fn float_type(t: FloatType) -> ffi::qk_float_type {
    match t {
        FloatType::F32 => ffi::qk_float_type_QK_F32,
        FloatType::F16 => ffi::qk_float_type_QK_F16,
        FloatType::BF16 => ffi::qk_float_type_QK_BF16,
    }
}

pub(crate) fn int_type(t: IntType) -> ffi::qk_int_type {
    match t {
        IntType::I8 => ffi::qk_int_type_QK_S8,
        IntType::U8 => ffi::qk_int_type_QK_U8,
    }
}

pub(crate) fn scheme(s: Scheme) -> ffi::qk_scheme {
    match s {
        Scheme::Symmetric => ffi::qk_scheme_QK_SYMMETRIC,
        Scheme::Affine => ffi::qk_scheme_QK_AFFINE,
        Scheme::MinOffset => ffi::qk_scheme_QK_MIN_OFFSET,
    }
}

fn granularity(g: Granularity) -> (ffi::qk_granularity, i64) {
    match g {
        Granularity::Tensor => (ffi::qk_granularity_QK_TENSOR, 0),
        Granularity::Row => (ffi::qk_granularity_QK_ROW, 0),
        Granularity::Col => (ffi::qk_granularity_QK_COL, 0),
        Granularity::Group(n) => (ffi::qk_granularity_QK_GROUP, n as i64),
    }
}

/// The device pointer of an optional buffer (null when absent) and its ordering guard.
pub(crate) fn ptr_or_null<'a, T>(
    v: Option<&'a impl DevicePtr<T>>,
    stream: &'a CudaStream,
) -> (u64, Option<SyncOnDrop<'a>>) {
    v.map_or((0, None), |v| {
        let (p, g) = v.device_ptr(stream);
        (p, Some(g))
    })
}

/// [`ptr_or_null`] for a buffer the kernel writes.
fn ptr_mut_or_null<'a, T>(
    v: Option<&'a mut impl DevicePtrMut<T>>,
    stream: &'a CudaStream,
) -> (u64, Option<SyncOnDrop<'a>>) {
    v.map_or((0, None), |v| {
        let (p, g) = v.device_ptr_mut(stream);
        (p, Some(g))
    })
}

/// Quantizes a row-major `[rows, cols]` device matrix into new device buffers. Static
/// when `params` is given (checked, then copied to the device), dynamic otherwise (the
/// parameters are computed on the device, no host round trip). The non-finite count stays
/// on the device: read it with [`DeviceQuantized::nonfinite`] or [`DeviceQuantized::to_host`].
pub fn quantize<T: DeviceElement>(
    stream: &Arc<CudaStream>,
    x: &impl DevicePtr<T>,
    rows: usize,
    cols: usize,
    spec: QuantSpec,
    params: Option<&QuantParams>,
) -> Result<DeviceQuantized> {
    kernels_built()?;
    let mut out = DeviceQuantized::alloc(stream, spec, rows, cols)?;
    quantize_into(stream, x, rows, cols, params, &mut out)?;
    Ok(out)
}

/// Quantizes into caller-owned device buffers (no allocation).
pub fn quantize_into<T: DeviceElement>(
    stream: &Arc<CudaStream>,
    x: &impl DevicePtr<T>,
    rows: usize,
    cols: usize,
    params: Option<&QuantParams>,
    out: &mut DeviceQuantized,
) -> Result<()> {
    kernels_built()?;
    if (out.rows, out.cols) != (rows, cols) {
        return Err(Error::Shape(format!(
            "output is {} x {} but the input is {rows} x {cols}",
            out.rows, out.cols
        )));
    }
    out.check()?;
    check_matrix_len(x.len(), rows, cols, "input")?;
    let spec = out.spec;
    if let Some(p) = params {
        p.check(&spec, rows, cols)?;
        out.set_params(stream, p)?;
    }
    if rows == 0 || cols == 0 {
        stream.memset_zeros(&mut out.nonfinite.slice_mut(0..1))?;
        if rows > 0 {
            stream.memset_zeros(&mut out.row_sums)?;
        }
        return Ok(());
    }
    let (gran, group) = granularity(spec.granularity());
    let (xp, _gx) = x.device_ptr(stream);
    let (qp, _gq) = out.data.device_ptr_mut(stream);
    let (sp, _gs) = out.scales.device_ptr_mut(stream);
    let (zp, _gz) = ptr_mut_or_null(out.zero_points.as_mut(), stream);
    let (op, _go) = ptr_mut_or_null(out.offsets.as_mut(), stream);
    let (rp, _gr) = out.row_sums.device_ptr_mut(stream);
    let (np, _gn) = out.nonfinite.device_ptr_mut(stream);
    check_aligned(xp, std::mem::align_of::<T>(), "input")?;
    let args = ffi::qk_quantize_args {
        x: xp as *const _,
        x_type: float_type(T::TYPE),
        q: qp as *mut _,
        q_type: int_type(spec.int_type()),
        rows: rows as i64,
        cols: cols as i64,
        group,
        scheme: scheme(spec.scheme()),
        granularity: gran,
        dynamic: params.is_none() as i32,
        scale: sp as *mut f32,
        zero_point: zp as *mut i32,
        offset: op as *mut f32,
        row_sums: rp as *mut i32,
        nonfinite: np as *mut u64,
    };
    launch(stream, "qk_quantize", |s| {
        // SAFETY: matches `int qk_quantize(const qk_quantize_args*, qk_stream_t)`; every
        // pointer in `args` is a live device allocation of the length the shape implies
        // (checked above), kept alive by the borrows and guards of this function.
        unsafe { ffi::qk_quantize(&args, s) }
    })
}

/// Dequantizes into a new device buffer of `rows * cols` elements.
pub fn dequantize<T: DeviceElement>(stream: &Arc<CudaStream>, q: &DeviceQuantized) -> Result<CudaSlice<T>> {
    kernels_built()?;
    // SAFETY: uninitialized device memory of `rows * cols` elements; the kernel writes every
    // element before the buffer is returned (on error it is dropped unread).
    let mut out = unsafe { stream.alloc::<T>(q.rows * q.cols) }?;
    dequantize_into(stream, q, &mut out)?;
    Ok(out)
}

/// Dequantizes into a caller-owned device buffer (no allocation).
pub fn dequantize_into<T: DeviceElement>(
    stream: &Arc<CudaStream>,
    q: &DeviceQuantized,
    out: &mut impl DevicePtrMut<T>,
) -> Result<()> {
    kernels_built()?;
    q.check()?;
    check_matrix_len(out.len(), q.rows, q.cols, "output")?;
    if q.rows == 0 || q.cols == 0 {
        return Ok(());
    }
    let spec = q.spec;
    let (gran, group) = granularity(spec.granularity());
    let (qp, _gq) = q.data.device_ptr(stream);
    let (yp, _gy) = out.device_ptr_mut(stream);
    let (sp, _gs) = q.scales.device_ptr(stream);
    let (zp, _gz) = ptr_or_null(q.zero_points.as_ref(), stream);
    let (op, _go) = ptr_or_null(q.offsets.as_ref(), stream);
    check_aligned(yp, std::mem::align_of::<T>(), "output")?;
    let args = ffi::qk_dequantize_args {
        q: qp as *const _,
        q_type: int_type(spec.int_type()),
        y: yp as *mut _,
        y_type: float_type(T::TYPE),
        rows: q.rows as i64,
        cols: q.cols as i64,
        group,
        scheme: scheme(spec.scheme()),
        granularity: gran,
        scale: sp as *const f32,
        zero_point: zp as *const i32,
        offset: op as *const f32,
    };
    launch(stream, "qk_dequantize", |s| {
        // SAFETY: matches `int qk_dequantize(const qk_dequantize_args*, qk_stream_t)`;
        // buffers are live and sized for the shape (checked above).
        unsafe { ffi::qk_dequantize(&args, s) }
    })
}

/// `Σ_c q[r, c]` of each row of a device `[rows, cols]` 8-bit matrix, into `out` (`rows`).
pub fn row_sums_into(
    stream: &Arc<CudaStream>,
    data: &impl DevicePtr<u8>,
    int_type_: IntType,
    rows: usize,
    cols: usize,
    out: &mut impl DevicePtrMut<i32>,
) -> Result<()> {
    kernels_built()?;
    check_row_sums(data.len(), rows, cols, out.len())?;
    if rows == 0 {
        return Ok(());
    }
    let (qp, _gq) = data.device_ptr(stream);
    let (op, _go) = out.device_ptr_mut(stream);
    check_aligned(op, 4, "row sums")?;
    let t = int_type(int_type_);
    launch(stream, "qk_row_sums", |s| {
        // SAFETY: matches `int qk_row_sums(const void*, qk_int_type, int64_t, int64_t,
        // int32_t*, qk_stream_t)`; `data` holds rows*cols bytes and `out` rows i32 (checked).
        unsafe { ffi::qk_row_sums(qp as *const _, t, rows as i64, cols as i64, op as *mut i32, s) }
    })
}

/// The launch after a requantizing GEMM into `out` (checked by the caller: `out.check()`):
/// its row sums, its parameters (`quant`'s) written into its buffers, and the non-finite
/// count that the GEMM added into scratch word 1 published into word 0
/// (`qk_row_sums_finish`). One launch in place of the copies and memsets these took before.
pub(super) fn finish_requantized(
    stream: &Arc<CudaStream>,
    out: &mut DeviceQuantized,
    quant: &ffi::qk_requant,
) -> Result<()> {
    let (qp, _gq) = out.data.device_ptr(stream);
    let (op, _go) = out.row_sums.device_ptr_mut(stream);
    let (sp, _gs) = out.scales.device_ptr_mut(stream);
    let (zp, _gz) = ptr_mut_or_null(out.zero_points.as_mut(), stream);
    let (fp, _gf) = ptr_mut_or_null(out.offsets.as_mut(), stream);
    let (np, _gn) = out.nonfinite.device_ptr_mut(stream);
    let finish = ffi::qk_requant_finish {
        scale: quant.scale,
        zero_point: quant.zero_point,
        offset: quant.offset,
        scale_out: sp as *mut f32,
        zero_point_out: zp as *mut i32,
        offset_out: fp as *mut f32,
        nonfinite: np as *mut u64,
    };
    let (t, rows, cols) = (int_type(out.spec.int_type()), out.rows as i64, out.cols as i64);
    launch(stream, "qk_row_sums_finish", |s| {
        // SAFETY: matches `int qk_row_sums_finish(const void*, qk_int_type, int64_t, int64_t,
        // int32_t*, const qk_requant_finish*, qk_stream_t)`; `out.check()` held `data` to
        // rows*cols bytes, `row_sums` to rows i32 and the parameter buffers to one value each
        // (a per-tensor spec: check_requantized); `nonfinite` has its NONFINITE_WORDS; the
        // struct is read before the call returns.
        unsafe { ffi::qk_row_sums_finish(qp as *const _, t, rows, cols, op as *mut i32, &finish, s) }
    })
}

/// Row sums into a new device buffer.
pub fn row_sums(
    stream: &Arc<CudaStream>,
    data: &impl DevicePtr<u8>,
    int_type_: IntType,
    rows: usize,
    cols: usize,
) -> Result<CudaSlice<i32>> {
    kernels_built()?;
    // SAFETY: uninitialized; the kernel writes every row's sum (cols == 0 included) before
    // the buffer is returned.
    let mut out = unsafe { stream.alloc::<i32>(rows) }?;
    row_sums_into(stream, data, int_type_, rows, cols, &mut out)?;
    Ok(out)
}

/// Launches one empty kernel on `stream` (the launch-overhead baseline of benchmarks).
pub fn empty_kernel(stream: &Arc<CudaStream>) -> Result<()> {
    kernels_built()?;
    launch(stream, "qk_empty_kernel", |s| {
        // SAFETY: matches `int qk_empty_kernel(qk_stream_t)`; no memory is touched.
        unsafe { ffi::qk_empty_kernel(s) }
    })
}

/// Binds the stream's context to this thread (the runtime API in the kernels' library
/// uses the current context) and runs one launcher.
#[cfg(qk_cuda)]
pub(crate) fn launch(
    stream: &Arc<CudaStream>,
    op: &'static str,
    f: impl FnOnce(ffi::qk_stream_t) -> i32,
) -> Result<()> {
    stream.context().bind_to_thread()?;
    let code = f(stream.cu_stream() as ffi::qk_stream_t);
    super::device::check_status(op, code)
}

#[cfg(not(qk_cuda))]
pub(crate) fn launch(
    _stream: &Arc<CudaStream>,
    _op: &'static str,
    _f: impl FnOnce(ffi::qk_stream_t) -> i32,
) -> Result<()> {
    kernels_built().map(|_| ())
}
