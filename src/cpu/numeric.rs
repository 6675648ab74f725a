//! The arithmetic of the numeric contract (DESIGN.md section 2), one function per step.
//! `kernels/common/numeric.cuh` is its twin: the same IEEE f32 operations in the same
//! order, so CPU and GPU agree bit for bit. Change one, change both.

use crate::scheme::Scheme;

/// The smallest positive normal f32: a computed scale is never subnormal.
pub const MIN_NORMAL: f32 = f32::MIN_POSITIVE;

/// Parameters of one group. `zp` is 0 unless Affine, `offset` 0.0 unless MinOffset.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Params {
    pub scale: f32,
    pub zp: i32,
    pub offset: f32,
}

/// Running min/max of a group's finite values (NaN and ±Inf are ignored; -0.0 counts as
/// +0.0 so the result does not depend on the order of reduction).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Range {
    pub lo: f32,
    pub hi: f32,
    pub any: bool,
}

impl Range {
    #[inline]
    pub fn add(&mut self, x: f32) {
        if !x.is_finite() {
            return;
        }
        let x = if x == 0.0 { 0.0 } else { x };
        if self.any {
            self.lo = self.lo.min(x);
            self.hi = self.hi.max(x);
        } else {
            *self = Range {
                lo: x,
                hi: x,
                any: true,
            };
        }
    }

    #[inline]
    pub fn merge(mut self, o: Range) -> Range {
        if o.any {
            if self.any {
                self.lo = self.lo.min(o.lo);
                self.hi = self.hi.max(o.hi);
            } else {
                self = o;
            }
        }
        self
    }
}

/// Round half to even, exactly `f32::round_ties_even` (and CUDA's `rintf`), without the
/// libm call that baseline x86-64 (no SSE4.1) makes for it: for |x| < 2^23, adding and
/// subtracting 2^23 rounds to an integer in the default round-to-nearest-even mode; larger
/// magnitudes (and ±Inf) are already integers, NaN passes through.
#[inline]
pub fn rne(x: f32) -> f32 {
    const TWO_23: f32 = 8_388_608.0;
    if x.abs() < TWO_23 {
        ((x.abs() + TWO_23) - TWO_23).copysign(x)
    } else {
        x
    }
}

/// `span / steps` with `span = hi − lo`; if the span overflows f32, `hi/steps − lo/steps`.
/// Never below the smallest normal.
#[inline]
fn span_scale(hi: f32, lo: f32, steps: f32) -> f32 {
    let span = hi - lo;
    let s = if span.is_infinite() {
        hi / steps - lo / steps
    } else {
        span / steps
    };
    s.max(MIN_NORMAL)
}

/// Parameters of a group from the range of its finite values. A zero range gives the
/// degenerate parameters (scale 0, zero point 0; MinOffset keeps the constant as offset).
pub fn params_from_range(scheme: Scheme, (qmin, qmax): (i32, i32), r: Range) -> Params {
    let (mn, mx) = if r.any { (r.lo, r.hi) } else { (0.0, 0.0) };
    let mut p = Params::default();
    match scheme {
        Scheme::Symmetric => {
            let absmax = mn.abs().max(mx.abs());
            if absmax != 0.0 {
                p.scale = (absmax / 127.0).max(MIN_NORMAL);
            }
        }
        Scheme::Affine => {
            let lo = mn.min(0.0);
            let hi = mx.max(0.0);
            if hi != lo {
                p.scale = span_scale(hi, lo, (qmax - qmin) as f32);
                let z = qmin as f32 - rne(lo / p.scale);
                p.zp = z.max(qmin as f32).min(qmax as f32) as i32;
            }
        }
        Scheme::MinOffset => {
            p.offset = mn;
            if mx != mn {
                p.scale = span_scale(mx, mn, 255.0);
            }
        }
    }
    p
}

/// Quantizes one value; `nonfinite` counts NaN and ±Inf inputs.
#[inline]
pub fn quantize_value(x: f32, scheme: Scheme, (qmin, qmax): (i32, i32), p: Params, nonfinite: &mut u64) -> i32 {
    if x.is_nan() {
        *nonfinite += 1;
        return match scheme {
            Scheme::Affine => p.zp,
            Scheme::Symmetric => 0,
            Scheme::MinOffset => qmin,
        };
    }
    if x.is_infinite() {
        *nonfinite += 1;
        return if x > 0.0 { qmax } else { qmin };
    }
    let zp = if scheme == Scheme::Affine { p.zp } else { 0 };
    if p.scale == 0.0 {
        return zp;
    }
    let t = if scheme == Scheme::MinOffset {
        (x - p.offset) / p.scale
    } else {
        x / p.scale
    };
    let t = rne(t).max((qmin - zp) as f32).min((qmax - zp) as f32);
    t as i32 + zp
}

/// Dequantizes one value.
#[inline]
pub fn dequantize_value(q: i32, scheme: Scheme, p: Params) -> f32 {
    match scheme {
        Scheme::Symmetric => q as f32 * p.scale,
        Scheme::Affine => (q - p.zp) as f32 * p.scale,
        Scheme::MinOffset => (q as f32 * p.scale) + p.offset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rne_ties_go_to_even() {
        let p = Params {
            scale: 1.0,
            zp: 0,
            offset: 0.0,
        };
        let mut n = 0;
        assert_eq!(quantize_value(2.5, Scheme::Symmetric, (-127, 127), p, &mut n), 2);
        assert_eq!(quantize_value(3.5, Scheme::Symmetric, (-127, 127), p, &mut n), 4);
        assert_eq!(quantize_value(-2.5, Scheme::Symmetric, (-127, 127), p, &mut n), -2);
        assert_eq!(n, 0);
    }

    #[test]
    fn rne_matches_round_ties_even_everywhere() {
        // Every f32 in [-2^24, 2^24] at a fine stride, the halves, and the specials.
        let mut x = -16_777_216.0f32;
        while x <= 16_777_216.0 {
            for v in [x, x + 0.5, x + 0.25, -x - 0.5] {
                assert_eq!(rne(v).to_bits(), v.round_ties_even().to_bits(), "{v}");
            }
            x += 12_345.67;
        }
        for v in [
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            2.5,
            -2.5,
            8_388_607.5,
            4_194_304.5,
            f32::MAX,
            f32::INFINITY,
            f32::MIN_POSITIVE,
        ] {
            assert_eq!(rne(v).to_bits(), v.round_ties_even().to_bits(), "{v}");
        }
        assert!(rne(f32::NAN).is_nan());
        let mut bits = 0u32;
        while bits < u32::MAX - 65_521 {
            let v = f32::from_bits(bits);
            if !v.is_nan() {
                assert_eq!(rne(v).to_bits(), v.round_ties_even().to_bits(), "{v}");
            }
            bits += 65_521;
        }
    }

    #[test]
    fn overflowing_span_gives_a_finite_scale() {
        let r = Range {
            lo: -f32::MAX,
            hi: f32::MAX,
            any: true,
        };
        let p = params_from_range(Scheme::Affine, (0, 255), r);
        assert!(p.scale.is_finite() && p.scale > 0.0);
        assert!((0..=255).contains(&p.zp));
    }

    #[test]
    fn tiny_ranges_get_a_normal_scale() {
        let r = Range {
            lo: 0.0,
            hi: 1e-44,
            any: true,
        };
        let p = params_from_range(Scheme::Symmetric, (-127, 127), r);
        assert_eq!(p.scale, MIN_NORMAL);
    }

    /// A xorshift64 generator (deterministic samples without a dependency).
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    /// The GPU's division-free quotient (`quantize_fast` in kernels/common/numeric.cuh), step
    /// for step: `None` where the kernel falls back to `quantize_value` (scale out of range,
    /// or a q0 that is not finite). Scale 0 stays on the fast path with r = 0.
    fn gpu_fast_path(x: f32, scheme: Scheme, (qmin, qmax): (i32, i32), p: Params) -> Option<i32> {
        let in_range = (2f32.powi(-64)..=2f32.powi(64)).contains(&p.scale);
        if !in_range && p.scale != 0.0 {
            return None;
        }
        let r = if in_range { 1.0 / p.scale } else { 0.0 };
        let zp = if scheme == Scheme::Affine { p.zp } else { 0 };
        let xm = if scheme == Scheme::MinOffset { x - p.offset } else { x };
        let q0 = xm * r;
        if !q0.is_finite() {
            return None;
        }
        let e = (-q0).mul_add(p.scale, xm);
        let t = e.mul_add(r, q0).max((qmin - zp) as f32).min((qmax - zp) as f32);
        Some((t + 12_582_912.0).to_bits().wrapping_sub(0x4B40_0000) as i32 + zp)
    }

    /// The kernels quantize with a reciprocal and one exact correction instead of a division
    /// per element; this checks, for scales at the edges of the accepted range and random
    /// ones, and scale 0 (degenerate groups), that every result equals the contract's (which
    /// divides), and that the fallback is only taken for scales outside [2^-64, 2^64] (other
    /// than 0), non-finite inputs and quotients beyond 10^30. (The same check ran
    /// exhaustively over all 2^32 inputs for 28 scales, see numeric.cuh.)
    #[test]
    fn division_free_quotient_matches_the_division() {
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
        let mut scales = vec![1.0 / 127.0, 3.0 / 255.0, 2f32.powi(64), 2f32.powi(-64), 0.0];
        for e in [-64, -20, 0, 20, 63] {
            for m in [1.0f32, 1.000_000_1, 1.999_999_9, 1.5, 1.333_333_4] {
                scales.push(m * 2f32.powi(e));
            }
        }
        let fixed = scales.len();
        for _ in 0..2000 {
            let m = f32::from_bits(0x3F80_0000 | (next() as u32 & 0x7F_FFFF));
            scales.push(m * 2f32.powi((next() % 129) as i32 - 64));
        }
        let configs = [
            (Scheme::Symmetric, (-127, 127), 0),
            (Scheme::Affine, (-128, 127), -128),
            (Scheme::Affine, (0, 255), 255),
            (Scheme::Affine, (0, 255), 17),
            (Scheme::MinOffset, (0, 255), 0),
        ];
        let mut checked = 0u64;
        for (k, &scale) in scales.iter().enumerate() {
            // Strided bit patterns (every exponent, sign and mantissa region) for the fixed
            // scales, random ones for the random scales; plus values near the midpoints.
            let n = if k < fixed { 1 << 16 } else { 1 << 10 };
            for i in 0..n {
                let bits = if k < fixed {
                    (i as u32).wrapping_mul(65_537) ^ (i as u32 >> 3)
                } else {
                    next() as u32
                };
                let near_half = ((next() % 767) as f32 - 383.0 + 0.5) * scale;
                for x in [f32::from_bits(bits), near_half, f32::from_bits(near_half.to_bits() + 1)] {
                    let (scheme, range, zp) = configs[(i + k) % configs.len()];
                    let offset = if scheme == Scheme::MinOffset {
                        -((next() % 100) as f32) * scale
                    } else {
                        0.0
                    };
                    let p = Params { scale, zp, offset };
                    let mut nf = 0;
                    let want = quantize_value(x, scheme, range, p, &mut nf);
                    match gpu_fast_path(x, scheme, range, p) {
                        Some(got) => assert_eq!(got, want, "x={x:e} s={scale:e} {scheme:?} zp={zp}"),
                        None => {
                            let xm = if scheme == Scheme::MinOffset { x - offset } else { x };
                            let in_range = (2f32.powi(-64)..=2f32.powi(64)).contains(&scale);
                            let big_quotient = scale != 0.0 && (xm / scale).abs() > 1e30;
                            assert!(
                                (!in_range && scale != 0.0) || !xm.is_finite() || big_quotient,
                                "fallback for x={x:e} s={scale:e}"
                            );
                        }
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 5_000_000);
    }

    /// The requantizing GEMM's output quantizer (`requantize` in kernels/common/gemm_epilogue.cuh),
    /// step for step: the fast path's quotient with q0 clamped to [lo − 1, hi + 1], no
    /// fallback; returns q and whether y counts as non-finite.
    fn gpu_requantize(y: f32, scheme: Scheme, (qmin, qmax): (i32, i32), p: Params) -> (i32, bool) {
        let r = 1.0 / p.scale;
        let zp = if scheme == Scheme::Affine { p.zp } else { 0 };
        let offset = if scheme == Scheme::MinOffset { p.offset } else { 0.0 };
        let (lo, hi) = ((qmin - zp) as f32, (qmax - zp) as f32);
        let x = y - offset;
        let q0 = (x * r).max(lo - 1.0).min(hi + 1.0);
        let e = (-q0).mul_add(p.scale, x);
        let t = e.mul_add(r, q0).max(lo).min(hi);
        let q = (t + 12_582_912.0).to_bits().wrapping_sub(0x4B40_0000) as i32 + zp;
        let nan_q = match scheme {
            Scheme::Affine => p.zp,
            Scheme::Symmetric => 0,
            Scheme::MinOffset => qmin,
        };
        (if y.is_nan() { nan_q } else { q }, !y.is_finite())
    }

    /// Every scale the requantizing GEMM accepts ([2^-64, 2^64]), every value class (random
    /// bit patterns, near-ties, ±Inf, NaN, ±f32::MAX, quotients far beyond the clamp, a
    /// MinOffset y − offset that overflows): the kernel's division-free q equals the
    /// contract's divided one, and it counts exactly the non-finite values.
    #[test]
    fn requantize_without_division_matches_the_contract() {
        let mut next = xorshift(0x2545_F491_4F6C_DD1D);
        let mut scales = vec![2f32.powi(64), 2f32.powi(-64), 1.0 / 127.0, 0.02, 3.0e-5, 7.5e3];
        for _ in 0..3000 {
            let m = f32::from_bits(0x3F80_0000 | (next() as u32 & 0x7F_FFFF));
            scales.push(m * 2f32.powi((next() % 129) as i32 - 64));
        }
        let configs = [
            (Scheme::Symmetric, (-127, 127), 0),
            (Scheme::Affine, (-128, 127), -128),
            (Scheme::Affine, (-128, 127), 127),
            (Scheme::Affine, (0, 255), 0),
            (Scheme::Affine, (0, 255), 200),
            (Scheme::MinOffset, (0, 255), 0),
        ];
        let specials = [
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MAX,
            -f32::MAX,
            0.0,
            -0.0,
            f32::MIN_POSITIVE,
            1e-45,
        ];
        let mut checked = 0u64;
        for (k, &scale) in scales.iter().enumerate() {
            for i in 0..1500u64 {
                let (scheme, range, zp) = configs[((i + k as u64) % configs.len() as u64) as usize];
                let offset = match (scheme, i % 3) {
                    (Scheme::MinOffset, 0) => -f32::MAX,
                    (Scheme::MinOffset, _) => -((next() % 300) as f32) * scale,
                    _ => 0.0,
                };
                let tie = ((next() % 1023) as f32 - 511.0 + 0.5) * scale;
                let ys = [
                    f32::from_bits(next() as u32),
                    tie,
                    f32::from_bits(tie.to_bits().wrapping_add(1)),
                    f32::from_bits(tie.to_bits().wrapping_sub(1)),
                    specials[i as usize % specials.len()],
                    ((next() % 600) as f32 - 300.0) * scale * 1.0001,
                ];
                for y in ys {
                    let p = Params { scale, zp, offset };
                    let mut nf = 0;
                    let want = quantize_value(y, scheme, range, p, &mut nf);
                    let (got, counted) = gpu_requantize(y, scheme, range, p);
                    assert_eq!(got, want, "y={y:e} s={scale:e} {scheme:?} zp={zp} offset={offset:e}");
                    assert_eq!(counted, nf == 1, "count of y={y:e}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 20_000_000);
    }
}
