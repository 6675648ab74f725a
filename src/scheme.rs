//! Quantization schemes, granularities and parameters: pure data shared by the CPU and GPU
//! paths, with the argument checks both paths call (`check`).

use crate::error::{Error, Result};

/// The widest row the library takes: `Σ_c q[r, c]` stays exact in int32 (255 · cols < 2^31).
pub const MAX_COLS: usize = i32::MAX as usize / 255;

/// How floats map to integers (DESIGN.md section 1; the README has the formulas).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `q = clamp(rne(x / s), -127, 127)`, `x' = q·s`; int8 only.
    Symmetric,
    /// `q = sat(rne(x / s) + zp)`, `x' = (q − zp)·s`; u8 or i8, integer zero point.
    Affine,
    /// `q = clamp(rne((x − min) / s), 0, 255)`, `x' = q·s + min`; u8 only, float offset.
    MinOffset,
}

/// The 8-bit integer type of quantized values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntType {
    I8,
    U8,
}

impl IntType {
    /// The type's full range.
    pub fn range(self) -> (i32, i32) {
        match self {
            IntType::I8 => (-128, 127),
            IntType::U8 => (0, 255),
        }
    }
}

/// Which elements share one set of parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Granularity {
    /// One set for the whole matrix.
    Tensor,
    /// One set per row (per token for activations, per output channel for weights).
    Row,
    /// One set per column.
    Col,
    /// One set per G contiguous elements along a row; G divides the width.
    Group(usize),
}

/// A scheme, its integer type and a granularity, checked to fit together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuantSpec {
    scheme: Scheme,
    int_type: IntType,
    granularity: Granularity,
}

impl QuantSpec {
    /// Checks the combination: Symmetric is int8, MinOffset is u8, groups are nonzero.
    pub fn new(scheme: Scheme, int_type: IntType, granularity: Granularity) -> Result<Self> {
        match (scheme, int_type) {
            (Scheme::Symmetric, IntType::U8) => {
                return Err(Error::Unsupported("Symmetric quantization is int8: i8, not u8".into()));
            }
            (Scheme::MinOffset, IntType::I8) => {
                return Err(Error::Unsupported("MinOffset quantization is u8, not i8".into()));
            }
            _ => {}
        }
        if granularity == Granularity::Group(0) {
            return Err(Error::InvalidArgument("group size must be at least 1".into()));
        }
        Ok(Self {
            scheme,
            int_type,
            granularity,
        })
    }

    /// Symmetric int8.
    pub fn symmetric(granularity: Granularity) -> Result<Self> {
        Self::new(Scheme::Symmetric, IntType::I8, granularity)
    }

    /// Affine (u8 or i8) with an integer zero point.
    pub fn affine(int_type: IntType, granularity: Granularity) -> Result<Self> {
        Self::new(Scheme::Affine, int_type, granularity)
    }

    /// MinOffset u8.
    pub fn min_offset(granularity: Granularity) -> Result<Self> {
        Self::new(Scheme::MinOffset, IntType::U8, granularity)
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    pub fn int_type(&self) -> IntType {
        self.int_type
    }

    pub fn granularity(&self) -> Granularity {
        self.granularity
    }

    /// The range quantized values take: [-127, 127] for Symmetric, the type's range otherwise.
    pub fn q_range(&self) -> (i32, i32) {
        match self.scheme {
            Scheme::Symmetric => (-127, 127),
            _ => self.int_type.range(),
        }
    }

    /// Checks that the granularity fits a `[rows, cols]` matrix.
    pub fn check(&self, rows: usize, cols: usize) -> Result<()> {
        if let Granularity::Group(g) = self.granularity
            && !cols.is_multiple_of(g)
        {
            return Err(Error::InvalidArgument(format!(
                "group size {g} does not divide the width {cols}; choose a divisor of {cols}"
            )));
        }
        if cols > MAX_COLS {
            return Err(Error::Limit(format!(
                "rows of {cols} elements: row sums of 8-bit values are exact in int32 only up to {MAX_COLS} columns"
            )));
        }
        rows.checked_mul(cols)
            .filter(|&n| n <= i64::MAX as usize)
            .ok_or_else(|| Error::Limit(format!("{rows} x {cols} elements overflow 64-bit indexing")))?;
        Ok(())
    }

    /// Shape of the parameter arrays: tensor `[1]`, row `[rows]`, col `[cols]`,
    /// group `[rows, cols/G]`.
    pub fn param_shape(&self, rows: usize, cols: usize) -> Vec<usize> {
        match self.granularity {
            Granularity::Tensor => vec![1],
            Granularity::Row => vec![rows],
            Granularity::Col => vec![cols],
            Granularity::Group(g) => vec![rows, cols / g],
        }
    }

    /// Number of parameter sets for a `[rows, cols]` matrix.
    pub fn num_params(&self, rows: usize, cols: usize) -> usize {
        match self.granularity {
            Granularity::Tensor => 1,
            Granularity::Row => rows,
            Granularity::Col => cols,
            Granularity::Group(g) => rows * (cols / g),
        }
    }

    /// Index of the parameter set of element `(row, col)` of a matrix `cols` wide.
    #[inline]
    pub fn param_index(&self, cols: usize, row: usize, col: usize) -> usize {
        match self.granularity {
            Granularity::Tensor => 0,
            Granularity::Row => row,
            Granularity::Col => col,
            Granularity::Group(g) => row * (cols / g) + col / g,
        }
    }

    /// Checks the buffer lengths of a quantized `[rows, cols]` matrix (host or device):
    /// data, scales, zero points (`Some` exactly for Affine), offsets (`Some` exactly for
    /// MinOffset) and row sums.
    pub(crate) fn check_buffers(
        &self,
        (rows, cols): (usize, usize),
        data: usize,
        scales: usize,
        zero_points: Option<usize>,
        offsets: Option<usize>,
        row_sums: usize,
    ) -> Result<()> {
        self.check(rows, cols)?;
        let n = self.num_params(rows, cols);
        let ok = data == rows * cols
            && scales == n
            && zero_points == (self.scheme == Scheme::Affine).then_some(n)
            && offsets == (self.scheme == Scheme::MinOffset).then_some(n)
            && row_sums == rows;
        if ok {
            Ok(())
        } else {
            Err(Error::Shape(format!(
                "quantized matrix buffers do not match {self:?} on {rows} x {cols}"
            )))
        }
    }
}

/// Checks that a buffer of `len` elements holds a `[rows, cols]` matrix.
pub(crate) fn check_matrix_len(len: usize, rows: usize, cols: usize, what: &str) -> Result<()> {
    match rows.checked_mul(cols) {
        Some(n) if n == len => Ok(()),
        _ => Err(Error::Shape(format!(
            "{what} has {len} elements; a {rows} x {cols} matrix needs {}",
            rows.saturating_mul(cols)
        ))),
    }
}

/// Checks the arguments of a row-sums call: `data` holds `[rows, cols]`, the sums stay exact
/// in int32, and `out` has one entry per row.
pub(crate) fn check_row_sums(data: usize, rows: usize, cols: usize, out: usize) -> Result<()> {
    check_matrix_len(data, rows, cols, "quantized data")?;
    if cols > MAX_COLS {
        return Err(Error::Limit(format!(
            "rows of {cols} elements overflow int32 row sums (at most {MAX_COLS})"
        )));
    }
    if out != rows {
        return Err(Error::Shape(format!("row sums buffer has {out} entries; need {rows}")));
    }
    Ok(())
}

/// Given (static) quantization parameters, one entry per parameter set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuantParams {
    /// Scales: finite, positive and normal (subnormal scales are rejected).
    pub scales: Vec<f32>,
    /// Affine zero points, within the integer type's range; `None` means all zero.
    pub zero_points: Option<Vec<i32>>,
    /// MinOffset offsets (finite); required for MinOffset.
    pub offsets: Option<Vec<f32>>,
}

impl QuantParams {
    /// Checks the parameters against a spec and a `[rows, cols]` shape.
    pub fn check(&self, spec: &QuantSpec, rows: usize, cols: usize) -> Result<()> {
        let n = spec.num_params(rows, cols);
        let shape = spec.param_shape(rows, cols);
        if self.scales.len() != n {
            return Err(Error::Shape(format!(
                "{} scales given; {:?} granularity of a {rows} x {cols} matrix needs shape {shape:?}",
                self.scales.len(),
                spec.granularity()
            )));
        }
        if let Some((i, s)) = self
            .scales
            .iter()
            .enumerate()
            .find(|(_, s)| !(s.is_normal() && **s > 0.0))
        {
            return Err(Error::InvalidArgument(format!(
                "scale[{i}] = {s:e}: a static scale must be finite, positive and normal"
            )));
        }
        match spec.scheme() {
            Scheme::Affine => {
                if let Some(zp) = &self.zero_points {
                    if zp.len() != n {
                        return Err(Error::Shape(format!(
                            "{} zero points given; need shape {shape:?}",
                            zp.len()
                        )));
                    }
                    let (lo, hi) = spec.int_type().range();
                    if let Some((i, z)) = zp.iter().enumerate().find(|(_, z)| !(lo..=hi).contains(*z)) {
                        return Err(Error::InvalidArgument(format!(
                            "zero_point[{i}] = {z} is outside the {:?} range [{lo}, {hi}]",
                            spec.int_type()
                        )));
                    }
                }
                if self.offsets.is_some() {
                    return Err(Error::InvalidArgument("offsets belong to MinOffset, not Affine".into()));
                }
            }
            Scheme::MinOffset => {
                let Some(off) = &self.offsets else {
                    return Err(Error::InvalidArgument(
                        "static MinOffset quantization needs offsets".into(),
                    ));
                };
                if off.len() != n {
                    return Err(Error::Shape(format!(
                        "{} offsets given; need shape {shape:?}",
                        off.len()
                    )));
                }
                if let Some((i, o)) = off.iter().enumerate().find(|(_, o)| !o.is_finite()) {
                    return Err(Error::InvalidArgument(format!("offset[{i}] = {o} is not finite")));
                }
                if self.zero_points.is_some() {
                    return Err(Error::InvalidArgument(
                        "zero points belong to Affine, not MinOffset".into(),
                    ));
                }
            }
            Scheme::Symmetric => {
                if self.zero_points.is_some() || self.offsets.is_some() {
                    return Err(Error::InvalidArgument(
                        "Symmetric quantization takes a scale only (no zero point or offset)".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}
