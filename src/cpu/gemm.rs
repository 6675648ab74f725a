//! CPU reference of the INT8 GEMM with its fused epilogue: exact int32 accumulation, then
//! the contract's epilogue (src/cpu/epilogue.rs). Rows of the output run in parallel.

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use super::epilogue::{corrected, float_part};
use super::numeric::quantize_value;
use super::quantize::HostQuantized;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::gemm::{GemmOutput, GemmShape, OperandMeta, OutType, check_gemm, check_requantized};
use crate::scheme::{IntType, QuantParams, QuantSpec, Scheme};
use half::{bf16, f16};

/// Raw 8-bit integers without a scale (an ONNX MatMulInteger operand), with an optional
/// integer zero point (one per tensor or per row). Such operands give i32 output only.
#[derive(Clone, Debug, PartialEq)]
pub struct RawMatrix {
    pub int_type: IntType,
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<u8>,
    pub zero_points: Option<Vec<i32>>,
    pub row_sums: Vec<i32>,
}

impl RawMatrix {
    /// Checks lengths and zero points (within the type's range) and computes the row sums.
    pub fn new(
        int_type: IntType,
        rows: usize,
        cols: usize,
        data: Vec<u8>,
        zero_points: Option<Vec<i32>>,
    ) -> Result<Self> {
        let row_sums = super::row_sums(&data, int_type, rows, cols)?;
        OperandMeta::raw(int_type, rows, cols, zero_points.as_ref().map(Vec::len))?;
        if let Some(z) = &zero_points {
            let (lo, hi) = int_type.range();
            if let Some(bad) = z.iter().find(|v| !(lo..=hi).contains(*v)) {
                return Err(Error::InvalidArgument(format!(
                    "zero point {bad} is outside [{lo}, {hi}]"
                )));
            }
        }
        Ok(Self {
            int_type,
            rows,
            cols,
            data,
            zero_points,
            row_sums,
        })
    }

    /// This matrix as a GEMM operand.
    pub fn operand(&self) -> Result<HostOperand<'_>> {
        let zps = self.zero_points.as_deref();
        HostOperand::new(
            OperandMeta::raw(self.int_type, self.rows, self.cols, zps.map(<[i32]>::len))?,
            &self.data,
            &[],
            zps.unwrap_or(&[]),
            &[],
            &self.row_sums,
        )
    }
}

impl HostQuantized {
    /// This matrix as a GEMM operand (per-tensor or per-row parameters only).
    pub fn operand(&self) -> Result<HostOperand<'_>> {
        HostOperand::new(
            OperandMeta::quantized(&self.spec, self.rows, self.cols)?,
            &self.data,
            &self.scales,
            self.zero_points.as_deref().unwrap_or(&[]),
            self.offsets.as_deref().unwrap_or(&[]),
            &self.row_sums,
        )
    }
}

/// A GEMM operand over host memory: an 8-bit `[rows, K]` matrix, its parameters (slices of
/// length 0, 1 or `rows` as `meta` says) and its row sums.
#[derive(Clone, Copy, Debug)]
pub struct HostOperand<'a> {
    pub meta: OperandMeta,
    pub data: &'a [u8],
    pub scales: &'a [f32],
    pub zero_points: &'a [i32],
    pub offsets: &'a [f32],
    pub row_sums: &'a [i32],
}

impl<'a> HostOperand<'a> {
    /// Checks that every slice has the length `meta` implies.
    pub fn new(
        meta: OperandMeta,
        data: &'a [u8],
        scales: &'a [f32],
        zero_points: &'a [i32],
        offsets: &'a [f32],
        row_sums: &'a [i32],
    ) -> Result<Self> {
        meta.check_lengths(
            data.len(),
            scales.len(),
            zero_points.len(),
            offsets.len(),
            row_sums.len(),
        )?;
        Ok(Self {
            meta,
            data,
            scales,
            zero_points,
            offsets,
            row_sums,
        })
    }

    fn zp(&self, r: usize) -> i32 {
        if self.zero_points.is_empty() {
            0
        } else {
            self.zero_points[self.meta.zero_point.index(r)]
        }
    }
}

/// A bias over host memory (its type is independent of the output type).
#[derive(Clone, Copy, Debug)]
pub enum Bias<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    BF16(&'a [bf16]),
}

impl Bias<'_> {
    /// Number of values (N).
    pub(crate) fn len(&self) -> usize {
        match self {
            Bias::F32(b) => b.len(),
            Bias::F16(b) => b.len(),
            Bias::BF16(b) => b.len(),
        }
    }

    fn get(&self, n: usize) -> f32 {
        match self {
            Bias::F32(b) => b[n],
            Bias::F16(b) => b[n].to_f32(),
            Bias::BF16(b) => Element::to_f32(b[n]),
        }
    }
}

/// `Y = epilogue(A · Bᵀ)` into a new `Vec` of `M · N` outputs (row-major).
pub fn gemm<O: GemmOutput>(a: &HostOperand, b: &HostOperand, bias: Option<Bias>) -> Result<Vec<O>> {
    let mut out = vec![O::default(); a.meta.rows * b.meta.rows];
    gemm_into(a, b, bias, &mut out)?;
    Ok(out)
}

/// `Y = epilogue(A · Bᵀ)` into `out` (`M · N` outputs, row-major).
pub fn gemm_into<O: GemmOutput>(a: &HostOperand, b: &HostOperand, bias: Option<Bias>, out: &mut [O]) -> Result<()> {
    let shape = check_gemm(&a.meta, &b.meta, O::TYPE, bias.map(|b| b.len()))?;
    check_output_len(out.len(), shape)?;
    for_each_output(a, b, bias, shape, O::TYPE == OutType::I32, out, O::store);
    Ok(())
}

/// `Y = quantize(epilogue(A · Bᵀ))` into a new `[M, N]` matrix of `spec` (one per-tensor set
/// of static parameters, see [`crate::gemm::check_requantized`]): every output's f32 value
/// quantized exactly as [`super::quantize`] quantizes an f32 matrix, row sums included, so
/// the result is the next GEMM's A as it stands. A non-finite f32 value (an overflow of the
/// scales) is an [`Error::NonFinite`] unless `allow_nonfinite`.
pub fn gemm_quantized(
    a: &HostOperand,
    b: &HostOperand,
    bias: Option<Bias>,
    spec: QuantSpec,
    params: &QuantParams,
    allow_nonfinite: bool,
) -> Result<HostQuantized> {
    let mut out = HostQuantized::zeroed(spec, a.meta.rows, b.meta.rows)?;
    gemm_quantized_into(a, b, bias, params, &mut out)?;
    if out.nonfinite > 0 && !allow_nonfinite {
        return Err(Error::NonFinite { count: out.nonfinite });
    }
    Ok(out)
}

/// [`gemm_quantized`] into `out` (`[M, N]`, its spec as it stands; no allocation). The count
/// of non-finite f32 values lands in `out.nonfinite`; the caller decides.
pub fn gemm_quantized_into(
    a: &HostOperand,
    b: &HostOperand,
    bias: Option<Bias>,
    params: &QuantParams,
    out: &mut HostQuantized,
) -> Result<()> {
    let spec = out.spec;
    let bias_len = bias.map(|b| b.len());
    let shape = check_requantized(&a.meta, &b.meta, bias_len, &spec, params, (out.rows, out.cols))?;
    out.check()?;
    out.set_params(params);
    let (p, scheme, qr) = (out.params_at(0), spec.scheme(), spec.q_range());
    let nonfinite = AtomicU64::new(0);
    for_each_output(a, b, bias, shape, false, &mut out.data, |_, y| {
        let mut count = 0;
        let q = quantize_value(y, scheme, qr, p, &mut count);
        if count > 0 {
            nonfinite.fetch_add(count, Ordering::Relaxed);
        }
        q as u8
    });
    out.nonfinite = nonfinite.into_inner();
    super::row_sums_into(&out.data, spec.int_type(), shape.m, shape.n, &mut out.row_sums)
}

fn check_output_len(len: usize, GemmShape { m, n, .. }: GemmShape) -> Result<()> {
    if len != m * n {
        return Err(Error::Shape(format!(
            "output has {len} elements; M x N = {m} x {n} needs {}",
            m * n
        )));
    }
    Ok(())
}

/// Runs the epilogue of every output of a checked problem and stores `store(acc', y)`: the
/// corrected accumulator, and the float part (0.0 when `int_out`: i32 output has none). The
/// operands are widened to i16 once (B whole, A a row at a time) so the dot products
/// vectorize; rows of the output run in parallel.
fn for_each_output<O: Send>(
    a: &HostOperand,
    b: &HostOperand,
    bias: Option<Bias>,
    GemmShape { m, n, k }: GemmShape,
    int_out: bool,
    out: &mut [O],
    store: impl Fn(i32, f32) -> O + Sync,
) {
    if m == 0 || n == 0 {
        return;
    }
    let widen = |data: &[u8], t: IntType| -> Vec<i16> {
        match t {
            IntType::I8 => data.iter().map(|&v| v as i8 as i16).collect(),
            IntType::U8 => data.iter().map(|&v| v as i16).collect(),
        }
    };
    let bw = widen(b.data, b.meta.int_type);
    let min_offset = a.meta.scheme == Some(Scheme::MinOffset);
    out.par_chunks_mut(n).enumerate().for_each(|(mi, row)| {
        let aw = widen(&a.data[mi * k..(mi + 1) * k], a.meta.int_type);
        let za = a.zp(mi);
        let sa = a.scales.get(a.meta.scale.index(mi)).copied().unwrap_or(0.0);
        let off_a = a.offsets.get(a.meta.offset.index(mi)).copied().unwrap_or(0.0);
        for (ni, y) in row.iter_mut().enumerate() {
            let bk = &bw[ni * k..(ni + 1) * k];
            let acc: i32 = aw.iter().zip(bk).map(|(&x, &w)| x as i32 * w as i32).sum();
            let zb = b.zp(ni);
            let acc = corrected(acc, k as i32, za, zb, a.row_sums[mi], b.row_sums[ni]);
            if int_out {
                *y = store(acc, 0.0);
                continue;
            }
            let sb = b.scales[b.meta.scale.index(ni)];
            let mo = min_offset.then(|| (off_a, b.row_sums[ni].wrapping_sub((k as i32).wrapping_mul(zb))));
            *y = store(acc, float_part(acc, sa, sb, mo, bias.map(|bb| bb.get(ni))));
        }
    });
}
