//! The INT8 GEMM's problem description, shared by the CPU reference and the GPU kernels:
//! output and bias types, operand metadata and the one argument check both paths call.
//!
//! `Y[m, n] = epilogue(Σ_k A[m, k] · B[n, k])` with A `[M, K]` (activations) and B `[N, K]`
//! (weights, as `nn.Linear` stores them). The epilogue is the contract of DESIGN.md §2:
//! `acc' = Σab − za·ΣB − zb·ΣA + K·za·zb` (exact, int32), then
//! `y = (f32(acc')·sa)·sb` (+ `(offa·f32(ΣB − K·zb))·sb` for a MinOffset A), `+ bias`,
//! one rounding to the output type.

use crate::error::{Error, Result};
use crate::scheme::{Granularity, IntType, QuantParams, QuantSpec, Scheme};
use half::{bf16, f16};

/// The GEMM's output element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutType {
    /// The corrected integer accumulator `acc'` itself.
    I32,
    F32,
    F16,
    BF16,
    /// The f32 value of the float epilogue quantized again, with one static per-tensor set
    /// of parameters ([`check_requantized`]): 8-bit output that the next GEMM takes as A.
    Quantized(IntType),
}

/// A GEMM output element: i32, f32, [`struct@f16`] or [`bf16`].
pub trait GemmOutput: Copy + Default + Send + Sync + std::fmt::Debug + 'static {
    const TYPE: OutType;
    /// The output value from the corrected accumulator (i32) or the float epilogue (others,
    /// rounded once to nearest even).
    fn store(acc: i32, y: f32) -> Self;
}

impl GemmOutput for i32 {
    const TYPE: OutType = OutType::I32;
    fn store(acc: i32, _y: f32) -> Self {
        acc
    }
}

impl GemmOutput for f32 {
    const TYPE: OutType = OutType::F32;
    fn store(_acc: i32, y: f32) -> Self {
        y
    }
}

impl GemmOutput for f16 {
    const TYPE: OutType = OutType::F16;
    fn store(_acc: i32, y: f32) -> Self {
        f16::from_f32(y)
    }
}

impl GemmOutput for bf16 {
    const TYPE: OutType = OutType::BF16;
    fn store(_acc: i32, y: f32) -> Self {
        bf16::from_f32(y)
    }
}

/// How a per-operand parameter is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamLayout {
    /// Absent (raw integers have no scale; Symmetric has no zero point).
    None,
    /// One value for the whole operand.
    Tensor,
    /// One value per row (per token of A, per output channel of B).
    PerRow,
}

impl ParamLayout {
    pub(crate) fn from_granularity(g: Granularity, what: &str) -> Result<Self> {
        match g {
            Granularity::Tensor => Ok(ParamLayout::Tensor),
            Granularity::Row => Ok(ParamLayout::PerRow),
            Granularity::Col | Granularity::Group(_) => Err(Error::Unsupported(format!(
                "{what}: {g:?} parameters vary along K; the GEMM takes per-tensor or per-row parameters \
                 (per-group scales along K are not implemented yet)"
            ))),
        }
    }

    pub(crate) fn from_len(len: usize, rows: usize, what: &str) -> Result<Self> {
        match len {
            1 => Ok(ParamLayout::Tensor),
            n if n == rows => Ok(ParamLayout::PerRow),
            n => Err(Error::Shape(format!(
                "{what}: {n} values; need 1 (per tensor) or {rows} (per row)"
            ))),
        }
    }

    /// Index of row `r`'s value.
    #[inline]
    pub fn index(self, r: usize) -> usize {
        match self {
            ParamLayout::PerRow => r,
            _ => 0,
        }
    }

    /// Number of values for an operand of `rows` rows.
    pub fn len(self, rows: usize) -> usize {
        match self {
            ParamLayout::None => 0,
            ParamLayout::Tensor => 1,
            ParamLayout::PerRow => rows,
        }
    }
}

/// What the check needs to know about one operand (both paths build it from their buffers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OperandMeta {
    pub int_type: IntType,
    pub rows: usize,
    pub cols: usize,
    /// `None` for raw integers (ONNX MatMulInteger operands).
    pub scheme: Option<Scheme>,
    pub scale: ParamLayout,
    pub zero_point: ParamLayout,
    /// MinOffset offsets (A only).
    pub offset: ParamLayout,
}

impl OperandMeta {
    /// A quantized `[rows, cols]` matrix (per-tensor or per-row parameters only).
    pub fn quantized(spec: &QuantSpec, rows: usize, cols: usize) -> Result<Self> {
        let layout = ParamLayout::from_granularity(spec.granularity(), "GEMM operand")?;
        let scheme = spec.scheme();
        let only = |s: Scheme| if scheme == s { layout } else { ParamLayout::None };
        Ok(Self {
            int_type: spec.int_type(),
            rows,
            cols,
            scheme: Some(scheme),
            scale: layout,
            zero_point: only(Scheme::Affine),
            offset: only(Scheme::MinOffset),
        })
    }

    /// Raw integers with `zero_points` zero points (None: none; 1: per tensor; rows: per row).
    pub fn raw(int_type: IntType, rows: usize, cols: usize, zero_points: Option<usize>) -> Result<Self> {
        let zero_point = match zero_points {
            Some(n) => ParamLayout::from_len(n, rows, "zero points")?,
            None => ParamLayout::None,
        };
        Ok(Self {
            int_type,
            rows,
            cols,
            scheme: None,
            scale: ParamLayout::None,
            zero_point,
            offset: ParamLayout::None,
        })
    }

    /// Checks buffer lengths (data, scales, zero points, offsets, row sums) against this.
    pub fn check_lengths(&self, data: usize, scales: usize, zps: usize, offsets: usize, row_sums: usize) -> Result<()> {
        let r = self.rows;
        let ok = Some(data) == r.checked_mul(self.cols)
            && scales == self.scale.len(r)
            && zps == self.zero_point.len(r)
            && offsets == self.offset.len(r)
            && row_sums == r;
        if ok {
            Ok(())
        } else {
            Err(Error::Shape(format!("GEMM operand buffers do not match {self:?}")))
        }
    }

    /// Largest |q| of the type, and largest |q − zp| once a zero point is subtracted.
    fn magnitudes(&self) -> (i64, i64) {
        let raw = match self.int_type {
            IntType::I8 => 128,
            IntType::U8 => 255,
        };
        let corrected = if self.zero_point == ParamLayout::None { raw } else { 255 };
        (raw, corrected)
    }
}

/// The problem size a checked GEMM runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

/// Checks a GEMM (`bias_len`: the bias's length, when there is one) and returns its shape.
/// Both paths call it.
///
/// int32 exactness: `K · max|a| · max|b| < 2^31` for the raw operands and for the
/// zero-point-corrected ones, with the magnitudes the operand types allow (|q − zp| ≤ 255
/// when a zero point is present), so i8·i8 allows K ≤ 131071 and u8·i8 K ≤ 65793.
pub fn check_gemm(a: &OperandMeta, b: &OperandMeta, out: OutType, bias_len: Option<usize>) -> Result<GemmShape> {
    if a.cols != b.cols {
        return Err(Error::Shape(format!(
            "A is {} x {} and B is {} x {}: both must have K columns (Y = A·Bᵀ)",
            a.rows, a.cols, b.rows, b.cols
        )));
    }
    let shape = GemmShape {
        m: a.rows,
        n: b.rows,
        k: a.cols,
    };
    for (name, o) in [("A", a), ("B", b)] {
        if (o.scheme == Some(Scheme::MinOffset)) != (o.offset != ParamLayout::None) {
            return Err(Error::InvalidArgument(format!(
                "operand {name}: offsets go with the MinOffset scheme and only with it ({o:?})"
            )));
        }
        if o.scheme.is_some() != (o.scale != ParamLayout::None) {
            return Err(Error::InvalidArgument(format!(
                "operand {name}: quantized operands carry scales and raw ones do not ({o:?})"
            )));
        }
    }
    if b.scheme == Some(Scheme::MinOffset) {
        return Err(Error::Unsupported(
            "MinOffset weights (B); quantize B as Symmetric or Affine".into(),
        ));
    }
    if b.scheme == Some(Scheme::Symmetric) && b.int_type == IntType::U8 {
        return Err(Error::Unsupported("Symmetric u8 weights".into()));
    }
    let quantized = a.scale != ParamLayout::None && b.scale != ParamLayout::None;
    if out != OutType::I32 && !quantized {
        return Err(Error::Unsupported(
            "float and requantized output need scales on both operands; raw integer operands give i32 output only"
                .into(),
        ));
    }
    if out == OutType::I32 && a.scheme == Some(Scheme::MinOffset) {
        return Err(Error::Unsupported(
            "i32 output of a MinOffset A: its float offset needs the float epilogue (f32, f16 or bf16 output)".into(),
        ));
    }
    if let Some(len) = bias_len {
        if out == OutType::I32 {
            return Err(Error::Unsupported(
                "a bias needs a float or requantized output (f32, f16, bf16, i8 or u8), not i32".into(),
            ));
        }
        if len != shape.n {
            return Err(Error::Shape(format!(
                "bias has {len} values; B has N = {} rows",
                shape.n
            )));
        }
    }
    let (ra, ca) = a.magnitudes();
    let (rb, cb) = b.magnitudes();
    let k = shape.k as i64;
    let worst = (k.saturating_mul(ra).saturating_mul(rb)).max(k.saturating_mul(ca).saturating_mul(cb));
    if worst >= 1 << 31 {
        let limit = ((1i64 << 31) - 1) / (ra * rb).max(ca * cb);
        return Err(Error::Limit(format!(
            "K = {} exceeds the int32 exactness bound for {:?}·{:?} operands (K ≤ {limit})",
            shape.k, a.int_type, b.int_type
        )));
    }
    Ok(shape)
}

/// Checks a requantized GEMM (both paths call it) and returns its shape: the problem as
/// [`check_gemm`] checks it for an 8-bit output of `spec`'s type, and the output, `out_dims`
/// = `[M, N]` quantized with `spec` and the static `params`, as [`crate::cpu::quantize`]
/// would quantize the f32 output. One per-tensor set only: per-row (per-token) output
/// parameters would have to be known before the GEMM, and per-column ones would vary along
/// the next GEMM's K.
pub fn check_requantized(
    a: &OperandMeta,
    b: &OperandMeta,
    bias_len: Option<usize>,
    spec: &QuantSpec,
    params: &QuantParams,
    out_dims: (usize, usize),
) -> Result<GemmShape> {
    let shape = check_gemm(a, b, OutType::Quantized(spec.int_type()), bias_len)?;
    if out_dims != (shape.m, shape.n) {
        return Err(Error::Shape(format!(
            "output is {} x {}; M x N = {} x {}",
            out_dims.0, out_dims.1, shape.m, shape.n
        )));
    }
    if spec.granularity() != Granularity::Tensor {
        return Err(Error::Unsupported(format!(
            "requantized GEMM output with {:?} parameters; it takes one static per-tensor set \
             (quantize the f32 output instead for other granularities)",
            spec.granularity()
        )));
    }
    params.check(spec, shape.m, shape.n)?;
    // The kernels quantize without a division (reciprocal and one exact correction), which
    // needs the scale within [2^-64, 2^64]; both paths hold to it so that they agree.
    let s = params.scales[0];
    if !(REQUANT_SCALES.0..=REQUANT_SCALES.1).contains(&s) {
        return Err(Error::Unsupported(format!(
            "requantization scale {s:e} is outside [2^-64, 2^64] ({:e} to {:e})",
            REQUANT_SCALES.0, REQUANT_SCALES.1
        )));
    }
    Ok(shape)
}

/// The scales a requantized output takes: [2^-64, 2^64].
pub const REQUANT_SCALES: (f32, f32) = (f32::from_bits(0x1F80_0000), f32::from_bits(0x5F80_0000));

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(t: IntType, zp: bool, k: usize) -> OperandMeta {
        OperandMeta {
            int_type: t,
            rows: 4,
            cols: k,
            scheme: Some(if zp { Scheme::Affine } else { Scheme::Symmetric }),
            scale: ParamLayout::PerRow,
            zero_point: if zp { ParamLayout::Tensor } else { ParamLayout::None },
            offset: ParamLayout::None,
        }
    }

    #[test]
    fn requant_scale_bounds_are_powers_of_two() {
        assert_eq!(REQUANT_SCALES, (2f32.powi(-64), 2f32.powi(64)));
    }

    #[test]
    fn exactness_bounds_match_the_design() {
        let ok = |a, b| check_gemm(&a, &b, OutType::I32, None).is_ok();
        assert!(ok(meta(IntType::I8, false, 131071), meta(IntType::I8, false, 131071)));
        assert!(!ok(meta(IntType::I8, false, 131072), meta(IntType::I8, false, 131072)));
        assert!(ok(meta(IntType::U8, true, 65793), meta(IntType::I8, false, 65793)));
        assert!(!ok(meta(IntType::U8, true, 65794), meta(IntType::I8, false, 65794)));
    }
}
