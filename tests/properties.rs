//! Invariants of the CPU reference (proptest): range bounds, the s/2 error bound, symmetry,
//! quantize ∘ dequantize = identity on quantized values, and 0.0 ↦ zp for Affine.

use proptest::prelude::*;
use qkernels::cpu;
use qkernels::{Granularity, IntType, QuantSpec, Scheme};

fn specs() -> impl Strategy<Value = QuantSpec> {
    let gran = prop_oneof![
        Just(Granularity::Tensor),
        Just(Granularity::Row),
        Just(Granularity::Col),
        Just(Granularity::Group(4)),
        Just(Granularity::Group(8)),
    ];
    let scheme = prop_oneof![
        Just((Scheme::Symmetric, IntType::I8)),
        Just((Scheme::Affine, IntType::U8)),
        Just((Scheme::Affine, IntType::I8)),
        Just((Scheme::MinOffset, IntType::U8)),
    ];
    (scheme, gran).prop_map(|((s, t), g)| QuantSpec::new(s, t, g).unwrap())
}

/// A matrix with rows in 1..6 and cols a multiple of 8 in 8..48, values in ±magnitude.
fn matrices() -> impl Strategy<Value = (usize, usize, Vec<f32>)> {
    (1usize..6, 1usize..6, prop_oneof![Just(1e-3f32), Just(1.0), Just(1e4)]).prop_flat_map(|(r, c8, mag)| {
        let c = c8 * 8;
        (Just(r), Just(c), prop::collection::vec(-mag..mag, r * c))
    })
}

proptest! {
    #[test]
    fn values_stay_in_range_and_within_half_a_step((rows, cols, x) in matrices(), spec in specs()) {
        let q = cpu::quantize(&x, rows, cols, spec, None, false).unwrap();
        let (lo, hi) = spec.q_range();
        let y = cpu::dequantize::<f32>(&q).unwrap();
        for r in 0..rows {
            for c in 0..cols {
                let v = q.value(r, c);
                prop_assert!((lo..=hi).contains(&v));
                let s = q.scales[spec.param_index(cols, r, c)];
                let (xv, yv) = (x[r * cols + c], y[r * cols + c]);
                // Half a step, plus the f32 roundings of the division and dequantization, and
                // of adding the zero point (x/s + zp is up to 255 steps, so its rounding is up
                // to 128 ulp of one step: seen as 8e-8 over half a step at s = 0.0076).
                let slack = s / 2.0
                    + xv.abs().max(yv.abs()) * 4.0 * f32::EPSILON
                    + s * 256.0 * f32::EPSILON
                    + f32::MIN_POSITIVE;
                prop_assert!((xv - yv).abs() <= slack, "x {xv} y {yv} s {s}");
            }
        }
    }

    #[test]
    fn symmetric_is_odd((rows, cols, x) in matrices()) {
        let spec = QuantSpec::symmetric(Granularity::Row).unwrap();
        let neg: Vec<f32> = x.iter().map(|v| -v).collect();
        let a = cpu::quantize(&x, rows, cols, spec, None, false).unwrap();
        let b = cpu::quantize(&neg, rows, cols, spec, None, false).unwrap();
        prop_assert_eq!(&a.scales, &b.scales);
        for (p, n) in a.as_i8().iter().zip(b.as_i8()) {
            prop_assert_eq!(*p, -*n);
        }
    }

    #[test]
    fn requantizing_dequantized_values_is_the_identity((rows, cols, x) in matrices(), spec in specs()) {
        let q = cpu::quantize(&x, rows, cols, spec, None, false).unwrap();
        if q.scales.iter().all(|&s| s > 0.0) {
            let y = cpu::dequantize::<f32>(&q).unwrap();
            let again = cpu::quantize(&y, rows, cols, spec, Some(&q.params()), false).unwrap();
            prop_assert_eq!(again.data, q.data);
        }
    }

    #[test]
    fn affine_zero_maps_to_the_zero_point((rows, cols, mut x) in matrices(), at in 0usize..1000, i8_ in any::<bool>()) {
        let t = if i8_ { IntType::I8 } else { IntType::U8 };
        let spec = QuantSpec::affine(t, Granularity::Row).unwrap();
        let i = at % x.len();
        x[i] = 0.0;
        let q = cpu::quantize(&x, rows, cols, spec, None, false).unwrap();
        let r = i / cols;
        prop_assert_eq!(q.value(r, i % cols), q.zero_points.as_ref().unwrap()[r]);
    }
}
