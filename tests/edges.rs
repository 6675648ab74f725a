//! The edge table of DESIGN.md section 5 on the CPU reference: signed zeros, subnormals,
//! f32::MAX, NaN, ±Inf, exact ties, values either side of ±127.5·s, degenerate groups and
//! a single nonzero. (tests/gpu_vs_cpu.rs compares the GPU with this reference on random,
//! non-finite and extreme inputs.)

use qkernels::cpu::{self, numeric::MIN_NORMAL};
use qkernels::{Error, Granularity, IntType, QuantParams, QuantSpec, bf16, f16};

fn sym_static(x: &[f32], s: f32) -> (Vec<i8>, u64) {
    let spec = QuantSpec::symmetric(Granularity::Tensor).unwrap();
    let p = QuantParams {
        scales: vec![s],
        ..Default::default()
    };
    let q = cpu::quantize(x, 1, x.len(), spec, Some(&p), true).unwrap();
    (q.as_i8().to_vec(), q.nonfinite)
}

#[test]
fn symmetric_static_edges() {
    let sub = f32::from_bits(1); // smallest subnormal
    let x = [
        0.0,
        -0.0,
        sub,
        -sub,
        f32::MAX,
        -f32::MAX,
        0.5,
        1.5,
        2.5,
        -2.5,
        126.5,
        127.4,
        127.5,
        -127.5,
        -128.6,
    ];
    let (q, n) = sym_static(&x, 1.0);
    assert_eq!(q, vec![0, 0, 0, 0, 127, -127, 0, 2, 2, -2, 126, 127, 127, -127, -127]);
    assert_eq!(n, 0);
    let (q, n) = sym_static(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.0], 1.0);
    assert_eq!(q, vec![0, 127, -127, 1]);
    assert_eq!(n, 3);
}

#[test]
fn ties_at_other_scales_round_to_even() {
    // (k + 0.5)·s with s = 0.25 is exact in f32, so x / s is an exact tie.
    let s = 0.25f32;
    let x: Vec<f32> = (-6..6).map(|k| (k as f32 + 0.5) * s).collect();
    let (q, _) = sym_static(&x, s);
    let want: Vec<i8> = (-6..6).map(|k| (k as f32 + 0.5).round_ties_even() as i8).collect();
    assert_eq!(q, want);
}

#[test]
fn affine_static_saturates_to_the_type() {
    let spec = QuantSpec::affine(IntType::U8, Granularity::Tensor).unwrap();
    let p = QuantParams {
        scales: vec![1.0],
        zero_points: Some(vec![128]),
        offsets: None,
    };
    let x = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        126.5,
        127.5,
        -128.5,
        -129.0,
        1e30,
    ];
    let q = cpu::quantize(&x, 1, x.len(), spec, Some(&p), true).unwrap();
    assert_eq!(q.data, vec![128, 255, 0, 128, 254, 255, 0, 0, 255]);
    assert_eq!(q.nonfinite, 3);

    let spec = QuantSpec::affine(IntType::I8, Granularity::Tensor).unwrap();
    let p = QuantParams {
        scales: vec![0.5],
        zero_points: Some(vec![-3]),
        offsets: None,
    };
    let q = cpu::quantize(&[0.0f32, 1000.0, -1000.0, 0.25, 0.75], 1, 5, spec, Some(&p), false).unwrap();
    assert_eq!(q.as_i8(), &[-3, 127, -128, -3, -1]);
}

#[test]
fn degenerate_groups_are_exact_and_never_nan() {
    // All zeros, per row, every scheme: scale 0, zero point 0, q 0, exact dequantization.
    let x = [0.0f32, -0.0, 0.0, 0.0, 3.7, 3.7, 3.7, 3.7];
    for spec in [
        QuantSpec::symmetric(Granularity::Row).unwrap(),
        QuantSpec::affine(IntType::U8, Granularity::Row).unwrap(),
        QuantSpec::affine(IntType::I8, Granularity::Row).unwrap(),
        QuantSpec::min_offset(Granularity::Row).unwrap(),
    ] {
        let q = cpu::quantize(&x, 2, 4, spec, None, false).unwrap();
        assert_eq!(q.scales[0], 0.0, "{spec:?}");
        assert_eq!(&q.data[..4], &[0; 4], "{spec:?}");
        assert!(q.scales.iter().all(|s| !s.is_nan()));
        let y = cpu::dequantize::<f32>(&q).unwrap();
        assert_eq!(&y[..4], &[0.0; 4]);
        if let Some(z) = &q.zero_points {
            assert_eq!(z[0], 0);
        }
        if let Some(o) = &q.offsets {
            // MinOffset keeps a constant group as its offset and returns it exactly.
            assert_eq!((q.scales[1], o[1]), (0.0, 3.7));
            assert_eq!(&q.data[4..], &[0; 4]);
            assert_eq!(&y[4..], &[3.7; 4]);
        }
    }
}

#[test]
fn single_nonzero_and_nonfinite_in_dynamic_groups() {
    let spec = QuantSpec::symmetric(Granularity::Group(4)).unwrap();
    let x = [
        0.0f32,
        0.0,
        5.0,
        0.0,
        f32::NAN,
        1.0,
        -2.0,
        f32::INFINITY,
        f32::NAN,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::NAN,
    ];
    let err = cpu::quantize(&x, 1, 12, spec, None, false).unwrap_err();
    assert!(matches!(err, Error::NonFinite { count: 6 }), "{err}");
    let q = cpu::quantize(&x, 1, 12, spec, None, true).unwrap();
    assert_eq!(q.nonfinite, 6);
    assert_eq!(&q.as_i8()[..4], &[0, 0, 127, 0]);
    // The range ignores NaN and Inf: scale from |-2| only.
    assert_eq!(q.scales[1], 2.0 / 127.0);
    assert_eq!(&q.as_i8()[4..8], &[0, 64, -127, 127]);
    // A group with no finite value is degenerate: scale 0; Inf still saturates.
    assert_eq!(q.scales[2], 0.0);
    assert_eq!(&q.as_i8()[8..], &[0, -127, 0, 0]);
}

#[test]
fn extreme_magnitudes_give_finite_normal_scales() {
    let sym = QuantSpec::symmetric(Granularity::Row).unwrap();
    let q = cpu::quantize(&[f32::MAX, -f32::MAX], 1, 2, sym, None, false).unwrap();
    assert_eq!(q.as_i8(), &[127, -127]);
    assert_eq!(q.scales[0], f32::MAX / 127.0);

    let tiny = [1e-40f32, -1e-41];
    let q = cpu::quantize(&tiny, 1, 2, sym, None, false).unwrap();
    assert_eq!(q.scales[0], MIN_NORMAL);
    assert_eq!(q.as_i8(), &[0, 0]);

    // hi − lo overflows f32: the scale falls back to hi/255 − lo/255.
    let aff = QuantSpec::affine(IntType::U8, Granularity::Row).unwrap();
    let q = cpu::quantize(&[-f32::MAX, f32::MAX, 0.0], 1, 3, aff, None, false).unwrap();
    assert!(q.scales[0].is_finite() && q.scales[0] > 0.0);
    assert_eq!(q.data[0], 0);
    assert_eq!(q.data[1], 255);
    assert_eq!(q.data[2] as i32, q.zero_points.as_ref().unwrap()[0]);
}

#[test]
fn half_inputs_are_widened_first() {
    let xs: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) * 0.37).collect();
    let h: Vec<f16> = xs.iter().map(|&v| f16::from_f32(v)).collect();
    let b: Vec<bf16> = xs.iter().map(|&v| bf16::from_f32(v)).collect();
    let spec = QuantSpec::affine(IntType::I8, Granularity::Group(16)).unwrap();
    let qh = cpu::quantize(&h, 2, 32, spec, None, false).unwrap();
    let wide: Vec<f32> = h.iter().map(|v| v.to_f32()).collect();
    assert_eq!(qh, cpu::quantize(&wide, 2, 32, spec, None, false).unwrap());
    let qb = cpu::quantize(&b, 2, 32, spec, None, false).unwrap();
    let wide: Vec<f32> = b.iter().map(|v| v.to_f32()).collect();
    assert_eq!(qb, cpu::quantize(&wide, 2, 32, spec, None, false).unwrap());
}

#[test]
fn dequantize_rounds_once_to_the_output_type() {
    let spec = QuantSpec::symmetric(Granularity::Tensor).unwrap();
    let p = QuantParams {
        scales: vec![0.1],
        ..Default::default()
    };
    let q = cpu::quantize(&[12.7f32, -0.3, 0.0], 1, 3, spec, Some(&p), false).unwrap();
    let y32 = cpu::dequantize::<f32>(&q).unwrap();
    let y16 = cpu::dequantize::<f16>(&q).unwrap();
    let yb = cpu::dequantize::<bf16>(&q).unwrap();
    for i in 0..3 {
        assert_eq!(y16[i], f16::from_f32(y32[i]));
        assert_eq!(yb[i], bf16::from_f32(y32[i]));
    }
    assert_eq!(y32[0], 127.0f32 * 0.1);
}
