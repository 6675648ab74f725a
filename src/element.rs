//! Float element types the kernels read and write: f32, f16 and bf16 (widened to f32 for
//! all arithmetic; results rounded to the element type once, to nearest even).

use half::{bf16, f16};

/// The element type tag passed to the kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FloatType {
    F32,
    F16,
    BF16,
}

/// A float element type: f32, [`half::f16`] or [`half::bf16`].
pub trait Element: Copy + Send + Sync + Default + std::fmt::Debug + 'static {
    const TYPE: FloatType;
    /// Exact widening to f32.
    fn to_f32(self) -> f32;
    /// Rounding (to nearest even) from f32.
    fn from_f32(x: f32) -> Self;
}

impl Element for f32 {
    const TYPE: FloatType = FloatType::F32;
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(x: f32) -> Self {
        x
    }
}

impl Element for f16 {
    const TYPE: FloatType = FloatType::F16;
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn from_f32(x: f32) -> Self {
        f16::from_f32(x)
    }
}

impl Element for bf16 {
    const TYPE: FloatType = FloatType::BF16;
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn from_f32(x: f32) -> Self {
        bf16::from_f32(x)
    }
}
