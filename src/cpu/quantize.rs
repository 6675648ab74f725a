//! CPU reference of quantize, dequantize and row sums: the numbers every GPU kernel must
//! reproduce bit for bit. Rows are processed in parallel with rayon; every operation is
//! linear in the matrix size.

use rayon::prelude::*;

use super::numeric::{Params, Range, dequantize_value, params_from_range, quantize_value};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::scheme::{Granularity, IntType, QuantParams, QuantSpec, Scheme, check_matrix_len, check_row_sums};

/// A quantized `[rows, cols]` matrix in host memory with its parameters and row sums.
#[derive(Clone, Debug, PartialEq)]
pub struct HostQuantized {
    pub spec: QuantSpec,
    pub rows: usize,
    pub cols: usize,
    /// Row-major quantized values; i8 values are stored as their two's-complement bytes.
    pub data: Vec<u8>,
    /// One scale per parameter set (shape from [`QuantSpec::param_shape`]).
    pub scales: Vec<f32>,
    /// Affine zero points (one per parameter set); `None` for other schemes.
    pub zero_points: Option<Vec<i32>>,
    /// MinOffset offsets (one per parameter set); `None` for other schemes.
    pub offsets: Option<Vec<f32>>,
    /// `Σ_c q[r, c]` for each row (the GEMM's zero-point corrections use them).
    pub row_sums: Vec<i32>,
    /// How many NaN/±Inf inputs the quantize call met.
    pub nonfinite: u64,
}

impl HostQuantized {
    /// A zero-filled matrix of the right sizes for `spec` and `[rows, cols]`.
    pub fn zeroed(spec: QuantSpec, rows: usize, cols: usize) -> Result<Self> {
        spec.check(rows, cols)?;
        let n = spec.num_params(rows, cols);
        Ok(Self {
            spec,
            rows,
            cols,
            data: vec![0; rows * cols],
            scales: vec![0.0; n],
            zero_points: (spec.scheme() == Scheme::Affine).then(|| vec![0; n]),
            offsets: (spec.scheme() == Scheme::MinOffset).then(|| vec![0.0; n]),
            row_sums: vec![0; rows],
            nonfinite: 0,
        })
    }

    /// A matrix from stored parts (e.g. files written by `qk quantize`): checks every length
    /// and parameter value (scales finite and ≥ 0 — 0 marks a degenerate group —, zero
    /// points in the type's range, offsets finite) and computes the row sums.
    pub fn from_parts(
        spec: QuantSpec,
        rows: usize,
        cols: usize,
        data: Vec<u8>,
        scales: Vec<f32>,
        zero_points: Option<Vec<i32>>,
        offsets: Option<Vec<f32>>,
    ) -> Result<Self> {
        let zero_points = match (spec.scheme(), zero_points) {
            (Scheme::Affine, None) => Some(vec![0; scales.len()]),
            (Scheme::Affine, z) => z,
            (_, Some(_)) => {
                return Err(Error::InvalidArgument(
                    "zero points belong to Affine quantization".into(),
                ));
            }
            (_, None) => None,
        };
        if spec.scheme() != Scheme::MinOffset && offsets.is_some() {
            return Err(Error::InvalidArgument(
                "offsets belong to MinOffset quantization".into(),
            ));
        }
        if spec.scheme() == Scheme::MinOffset && offsets.is_none() {
            return Err(Error::InvalidArgument("MinOffset data needs its offsets".into()));
        }
        let row_sums = row_sums(&data, spec.int_type(), rows, cols)?;
        let q = Self {
            spec,
            rows,
            cols,
            data,
            scales,
            zero_points,
            offsets,
            row_sums,
            nonfinite: 0,
        };
        q.check()?;
        if let Some((i, s)) = q
            .scales
            .iter()
            .enumerate()
            .find(|(_, s)| !(s.is_finite() && **s >= 0.0))
        {
            return Err(Error::InvalidArgument(format!(
                "scale[{i}] = {s}: stored scales must be finite and >= 0"
            )));
        }
        let (lo, hi) = spec.int_type().range();
        if let Some((i, z)) = q
            .zero_points
            .iter()
            .flatten()
            .enumerate()
            .find(|(_, z)| !(lo..=hi).contains(*z))
        {
            return Err(Error::InvalidArgument(format!(
                "zero_point[{i}] = {z} is outside [{lo}, {hi}]"
            )));
        }
        if let Some((i, o)) = q.offsets.iter().flatten().enumerate().find(|(_, o)| !o.is_finite()) {
            return Err(Error::InvalidArgument(format!("offset[{i}] = {o} is not finite")));
        }
        if spec.scheme() == Scheme::Symmetric && q.data.iter().any(|&b| b as i8 == -128) {
            return Err(Error::InvalidArgument(
                "Symmetric data holds -128, outside [-127, 127]".into(),
            ));
        }
        Ok(q)
    }

    /// The quantized values as i8 (for `IntType::I8` data).
    pub fn as_i8(&self) -> &[i8] {
        bytemuck::cast_slice(&self.data)
    }

    /// The quantized value at `(row, col)` as an integer.
    pub fn value(&self, row: usize, col: usize) -> i32 {
        decode(self.data[row * self.cols + col], self.spec.int_type())
    }

    /// Parameters of set `i`.
    pub fn params_at(&self, i: usize) -> Params {
        Params {
            scale: self.scales[i],
            zp: self.zero_points.as_ref().map_or(0, |z| z[i]),
            offset: self.offsets.as_ref().map_or(0.0, |o| o[i]),
        }
    }

    /// The parameters as given (static) parameters, e.g. to quantize other data the same way.
    pub fn params(&self) -> QuantParams {
        QuantParams {
            scales: self.scales.clone(),
            zero_points: self.zero_points.clone(),
            offsets: self.offsets.clone(),
        }
    }

    /// Copies given (static) parameters, checked against this matrix by the caller, into its
    /// parameter buffers (absent zero points become 0).
    pub(crate) fn set_params(&mut self, p: &QuantParams) {
        self.scales.copy_from_slice(&p.scales);
        if let Some(z) = self.zero_points.as_mut() {
            match &p.zero_points {
                Some(given) => z.copy_from_slice(given),
                None => z.fill(0),
            }
        }
        if let (Some(o), Some(given)) = (self.offsets.as_mut(), &p.offsets) {
            o.copy_from_slice(given);
        }
    }

    /// Checks that every buffer has the length the spec and shape require.
    pub fn check(&self) -> Result<()> {
        self.spec.check_buffers(
            (self.rows, self.cols),
            self.data.len(),
            self.scales.len(),
            self.zero_points.as_ref().map(Vec::len),
            self.offsets.as_ref().map(Vec::len),
            self.row_sums.len(),
        )
    }
}

#[inline]
fn decode(b: u8, t: IntType) -> i32 {
    match t {
        IntType::I8 => b as i8 as i32,
        IntType::U8 => b as i32,
    }
}

/// Quantizes a row-major `[rows, cols]` matrix, allocating the result. Static when `params`
/// is given, dynamic otherwise. Non-finite inputs are an [`Error::NonFinite`] unless
/// `allow_nonfinite`, in which case they take the defined values and are counted.
pub fn quantize<T: Element>(
    x: &[T],
    rows: usize,
    cols: usize,
    spec: QuantSpec,
    params: Option<&QuantParams>,
    allow_nonfinite: bool,
) -> Result<HostQuantized> {
    let mut out = HostQuantized::zeroed(spec, rows, cols)?;
    quantize_into(x, rows, cols, params, &mut out)?;
    if out.nonfinite > 0 && !allow_nonfinite {
        return Err(Error::NonFinite { count: out.nonfinite });
    }
    Ok(out)
}

/// Quantizes into `out` (whose spec, shape and buffers are used as they are; no
/// allocation). The non-finite count lands in `out.nonfinite`; the caller decides.
pub fn quantize_into<T: Element>(
    x: &[T],
    rows: usize,
    cols: usize,
    params: Option<&QuantParams>,
    out: &mut HostQuantized,
) -> Result<()> {
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
        out.set_params(p);
    }
    out.nonfinite = 0;
    if rows == 0 || cols == 0 {
        out.row_sums.fill(0);
        return Ok(());
    }
    let qr = spec.q_range();
    let dynamic = params.is_none();

    // Per-tensor and per-column dynamic parameters need the whole matrix first.
    if dynamic && matches!(spec.granularity(), Granularity::Tensor | Granularity::Col) {
        let ranges = column_ranges(x, rows, cols);
        let ranges = if spec.granularity() == Granularity::Tensor {
            vec![ranges.into_iter().fold(Range::default(), Range::merge)]
        } else {
            ranges
        };
        for (i, r) in ranges.into_iter().enumerate() {
            store(out, i, params_from_range(spec.scheme(), qr, r));
        }
    }
    let row_dynamic = dynamic && matches!(spec.granularity(), Granularity::Row | Granularity::Group(_));
    let group = match spec.granularity() {
        Granularity::Group(g) => g,
        Granularity::Row => cols,
        _ => 0,
    };

    // Row-local dynamic parameters (per row, per group), computed in parallel.
    if row_dynamic {
        let scheme = spec.scheme();
        let per_set: Vec<Params> = x
            .par_chunks(cols)
            .flat_map_iter(|row| {
                row.chunks(group).map(move |g| {
                    let mut r = Range::default();
                    g.iter().for_each(|v| r.add(v.to_f32()));
                    params_from_range(scheme, qr, r)
                })
            })
            .collect();
        for (i, p) in per_set.into_iter().enumerate() {
            store(out, i, p);
        }
    }

    // Quantize with the parameters now in `out` (a snapshot: `out.data` is written in
    // parallel below).
    let scheme = spec.scheme();
    let all: Vec<Params> = (0..out.scales.len()).map(|i| out.params_at(i)).collect();
    let results: Vec<(i32, u64)> = out
        .data
        .par_chunks_mut(cols)
        .zip(x.par_chunks(cols))
        .enumerate()
        .map(|(r, (qrow, xrow))| {
            let mut sum = 0i32;
            let mut nonfinite = 0u64;
            for (c, (qv, xv)) in qrow.iter_mut().zip(xrow).enumerate() {
                let p = all[spec.param_index(cols, r, c)];
                let q = quantize_value(xv.to_f32(), scheme, qr, p, &mut nonfinite);
                sum += q;
                *qv = q as u8;
            }
            (sum, nonfinite)
        })
        .collect();
    out.nonfinite = results.iter().map(|r| r.1).sum();
    for (dst, (sum, _)) in out.row_sums.iter_mut().zip(results) {
        *dst = sum;
    }
    Ok(())
}

fn store(out: &mut HostQuantized, i: usize, p: Params) {
    out.scales[i] = p.scale;
    if let Some(z) = out.zero_points.as_mut() {
        z[i] = p.zp;
    }
    if let Some(o) = out.offsets.as_mut() {
        o[i] = p.offset;
    }
}

/// Range of the finite values of each column, reduced over row blocks in parallel.
fn column_ranges<T: Element>(x: &[T], rows: usize, cols: usize) -> Vec<Range> {
    const BLOCK: usize = 64;
    let per_block: Vec<Vec<Range>> = x
        .par_chunks(cols * BLOCK.min(rows))
        .map(|blk| {
            let mut acc = vec![Range::default(); cols];
            for row in blk.chunks(cols) {
                for (a, v) in acc.iter_mut().zip(row) {
                    a.add(v.to_f32());
                }
            }
            acc
        })
        .collect();
    per_block.into_iter().fold(vec![Range::default(); cols], |acc, b| {
        acc.into_iter().zip(b).map(|(a, b)| a.merge(b)).collect()
    })
}

/// Dequantizes to a new `Vec<T>`.
pub fn dequantize<T: Element>(q: &HostQuantized) -> Result<Vec<T>> {
    let mut out = vec![T::default(); q.rows * q.cols];
    dequantize_into(q, &mut out)?;
    Ok(out)
}

/// Dequantizes into `out` (length `rows * cols`; no allocation).
pub fn dequantize_into<T: Element>(q: &HostQuantized, out: &mut [T]) -> Result<()> {
    q.check()?;
    check_matrix_len(out.len(), q.rows, q.cols, "output")?;
    if q.cols == 0 {
        return Ok(());
    }
    let spec = q.spec;
    out.par_chunks_mut(q.cols)
        .zip(q.data.par_chunks(q.cols))
        .enumerate()
        .for_each(|(r, (yrow, qrow))| {
            for (c, (y, &b)) in yrow.iter_mut().zip(qrow).enumerate() {
                let p = q.params_at(spec.param_index(q.cols, r, c));
                *y = T::from_f32(dequantize_value(decode(b, spec.int_type()), spec.scheme(), p));
            }
        });
    Ok(())
}

/// `Σ_c q[r, c]` of each row of a `[rows, cols]` 8-bit matrix.
pub fn row_sums(data: &[u8], int_type: IntType, rows: usize, cols: usize) -> Result<Vec<i32>> {
    let mut out = vec![0; rows];
    row_sums_into(data, int_type, rows, cols, &mut out)?;
    Ok(out)
}

/// Row sums into `out` (length `rows`).
pub fn row_sums_into(data: &[u8], int_type: IntType, rows: usize, cols: usize, out: &mut [i32]) -> Result<()> {
    check_row_sums(data.len(), rows, cols, out.len())?;
    if cols == 0 {
        out.fill(0);
        return Ok(());
    }
    out.par_iter_mut()
        .zip(data.par_chunks(cols))
        .for_each(|(s, row)| *s = row.iter().map(|&b| decode(b, int_type)).sum());
    Ok(())
}

/// Number of NaN and ±Inf values in `x`.
pub fn count_nonfinite<T: Element>(x: &[T]) -> u64 {
    x.par_iter().filter(|v| !v.to_f32().is_finite()).count() as u64
}
