//! The GEMM epilogue, one function per step; `kernels/common/epilogue.cuh` is its twin.

/// `acc' = Σab − za·ΣB − zb·ΣA + K·za·zb`, in wrapping int32 arithmetic: every term is
/// taken modulo 2^32, and the true value fits in int32 (the exactness bound is checked),
/// so the result is exact whatever the order of the terms.
#[inline]
pub fn corrected(acc: i32, k: i32, za: i32, zb: i32, sum_a: i32, sum_b: i32) -> i32 {
    acc.wrapping_sub(za.wrapping_mul(sum_b))
        .wrapping_sub(zb.wrapping_mul(sum_a))
        .wrapping_add(k.wrapping_mul(za).wrapping_mul(zb))
}

/// The float part: `y = (f32(acc')·sa)·sb`; for a MinOffset A `y += (offa·f32(ΣB − K·zb))·sb`;
/// then `y += bias`. The caller rounds once to the output type.
#[inline]
pub fn float_part(acc: i32, sa: f32, sb: f32, min_offset: Option<(f32, i32)>, bias: Option<f32>) -> f32 {
    let mut y = (acc as f32 * sa) * sb;
    if let Some((off_a, col_sum)) = min_offset {
        y += (off_a * col_sum as f32) * sb;
    }
    if let Some(b) = bias {
        y += b;
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrections_are_exact_through_wraparound() {
        // Terms overflow int32 individually; the result does not.
        let (k, za, zb) = (65_000i32, 255i32, 0i32);
        let sum_b = -65_000 * 128;
        let acc = za.wrapping_mul(sum_b).wrapping_add(7);
        assert_eq!(corrected(acc, k, za, zb, 0, sum_b), 7);
        let acc = 3 + 200 * 100 + 50 * 100 - 4 * 200 * 50;
        assert_eq!(corrected(acc, 4, 200, 50, 100, 100), 3);
    }

    #[test]
    fn no_bias_means_no_addition() {
        // Adding +0.0 would turn -0.0 into +0.0; a missing bias must not add anything.
        assert_eq!(float_part(0, -1.0, 1.0, None, None).to_bits(), (-0.0f32).to_bits());
        assert_eq!(float_part(0, -1.0, 1.0, None, Some(0.0)).to_bits(), 0.0f32.to_bits());
    }
}
