//! The CPU GEMM reference against a plain i64 triple loop on full-range operands, its float
//! epilogue against f64 arithmetic, the exactness bounds at their largest K, and every
//! error path of the GEMM's argument check.

mod common;

use qkernels::cpu::{self, Bias, HostQuantized, RawMatrix};
use qkernels::{Error, Granularity, IntType, QuantParams, QuantSpec, bf16, f16};

fn full_range(n: usize, t: IntType, seed: u64) -> Vec<u8> {
    qkernels::bench::random_f32(n, seed, 1.0)
        .iter()
        .map(|v| match t {
            IntType::I8 => ((v * 128.0).floor().clamp(-128.0, 127.0) as i8) as u8,
            IntType::U8 => ((v + 1.0) * 128.0).floor().clamp(0.0, 255.0) as u8,
        })
        .collect()
}

fn value(b: u8, t: IntType) -> i64 {
    match t {
        IntType::I8 => b as i8 as i64,
        IntType::U8 => b as i64,
    }
}

/// Σ_k (a − za)(b − zb) in i64.
fn reference(a: &RawMatrix, b: &RawMatrix) -> Vec<i64> {
    let k = a.cols;
    let zp = |m: &RawMatrix, r: usize| {
        m.zero_points
            .as_ref()
            .map_or(0, |z| if z.len() == 1 { z[0] } else { z[r] }) as i64
    };
    let mut out = Vec::new();
    for i in 0..a.rows {
        for j in 0..b.rows {
            let mut s = 0i64;
            for kk in 0..k {
                s += (value(a.data[i * k + kk], a.int_type) - zp(a, i))
                    * (value(b.data[j * k + kk], b.int_type) - zp(b, j));
            }
            out.push(s);
        }
    }
    out
}

#[test]
fn raw_integer_gemm_matches_an_i64_triple_loop() {
    for (ta, tb) in [
        (IntType::I8, IntType::I8),
        (IntType::U8, IntType::I8),
        (IntType::U8, IntType::U8),
        (IntType::I8, IntType::U8),
    ] {
        for (m, n, k) in [(1, 1, 1), (3, 5, 7), (17, 9, 33), (40, 24, 300)] {
            for zps in [false, true] {
                let za = zps.then(|| {
                    (0..m)
                        .map(|i| {
                            if ta == IntType::U8 {
                                (i * 37 % 256) as i32
                            } else {
                                (i * 37 % 256) as i32 - 128
                            }
                        })
                        .collect()
                });
                let zb = zps.then(|| vec![if tb == IntType::U8 { 200 } else { -77 }]);
                let a = RawMatrix::new(ta, m, k, full_range(m * k, ta, 1), za).unwrap();
                let b = RawMatrix::new(tb, n, k, full_range(n * k, tb, 2), zb).unwrap();
                let got = cpu::gemm::<i32>(&a.operand().unwrap(), &b.operand().unwrap(), None).unwrap();
                let want: Vec<i32> = reference(&a, &b).into_iter().map(|v| v as i32).collect();
                assert_eq!(got, want, "{ta:?}·{tb:?} {m}x{n}x{k} zp {zps}");
            }
        }
    }
}

#[test]
fn extremes_at_the_largest_k_are_exact() {
    // i8·i8: K = 131071 with all -128 and all 127 (and mixed signs).
    let k = 131_071;
    for (va, vb) in [(-128i8, -128i8), (127, 127), (-128, 127)] {
        let a = RawMatrix::new(IntType::I8, 1, k, vec![va as u8; k], None).unwrap();
        let b = RawMatrix::new(IntType::I8, 2, k, vec![vb as u8; 2 * k], None).unwrap();
        let got = cpu::gemm::<i32>(&a.operand().unwrap(), &b.operand().unwrap(), None).unwrap();
        assert_eq!(got, vec![(k as i64 * va as i64 * vb as i64) as i32; 2]);
    }
    // u8·i8 with zero points: K = 65793.
    let k = 65_793;
    for (va, za, vb) in [(255u8, 0, -128i8), (0, 255, -128), (255, 0, 127), (0, 255, 127)] {
        let a = RawMatrix::new(IntType::U8, 1, k, vec![va; k], Some(vec![za])).unwrap();
        let b = RawMatrix::new(IntType::I8, 1, k, vec![vb as u8; k], None).unwrap();
        let got = cpu::gemm::<i32>(&a.operand().unwrap(), &b.operand().unwrap(), None).unwrap();
        assert_eq!(got[0] as i64, k as i64 * (va as i64 - za as i64) * vb as i64);
    }
    // One past the bound is a typed error.
    let a = RawMatrix::new(IntType::U8, 1, k + 1, vec![0; k + 1], Some(vec![3])).unwrap();
    let b = RawMatrix::new(IntType::I8, 1, k + 1, vec![0; k + 1], None).unwrap();
    let e = cpu::gemm::<i32>(&a.operand().unwrap(), &b.operand().unwrap(), None).unwrap_err();
    assert!(matches!(e, Error::Limit(_)), "{e}");
}

fn quantized(spec: QuantSpec, rows: usize, k: usize, seed: u64) -> HostQuantized {
    let x = qkernels::bench::random_f32(rows * k, seed, 2.0);
    cpu::quantize(&x, rows, k, spec, None, false).unwrap()
}

#[test]
fn float_epilogue_matches_f64_within_rounding() {
    let (m, n, k) = (9, 13, 100);
    let bias: Vec<f32> = qkernels::bench::random_f32(n, 4, 1.0);
    for a_spec in [
        QuantSpec::symmetric(Granularity::Row).unwrap(),
        QuantSpec::affine(IntType::U8, Granularity::Row).unwrap(),
        QuantSpec::affine(IntType::I8, Granularity::Tensor).unwrap(),
        QuantSpec::min_offset(Granularity::Row).unwrap(),
    ] {
        for b_spec in [
            QuantSpec::symmetric(Granularity::Row).unwrap(),
            QuantSpec::affine(IntType::U8, Granularity::Tensor).unwrap(),
        ] {
            let a = quantized(a_spec, m, k, 1);
            let b = quantized(b_spec, n, k, 2);
            let y = cpu::gemm::<f32>(&a.operand().unwrap(), &b.operand().unwrap(), Some(Bias::F32(&bias))).unwrap();
            // f64 of the dequantized operands: Σ x'a · x'b + bias.
            let xa = cpu::dequantize::<f32>(&a).unwrap();
            let xb = cpu::dequantize::<f32>(&b).unwrap();
            for i in 0..m {
                for j in 0..n {
                    let dot: f64 = (0..k).map(|kk| xa[i * k + kk] as f64 * xb[j * k + kk] as f64).sum();
                    let want = dot + bias[j] as f64;
                    let got = y[i * n + j] as f64;
                    assert!(
                        (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "{a_spec:?} {b_spec:?}: {got} vs {want}"
                    );
                }
            }
            // One rounding: f16/bf16 outputs are the f32 result rounded once.
            let h = cpu::gemm::<f16>(&a.operand().unwrap(), &b.operand().unwrap(), Some(Bias::F32(&bias))).unwrap();
            let bf = cpu::gemm::<bf16>(&a.operand().unwrap(), &b.operand().unwrap(), Some(Bias::F32(&bias))).unwrap();
            for i in 0..m * n {
                assert_eq!(h[i], f16::from_f32(y[i]));
                assert_eq!(bf[i], bf16::from_f32(y[i]));
            }
        }
    }
}

#[test]
fn gemm_errors_are_typed() {
    let sym = |g| QuantSpec::symmetric(g).unwrap();
    let a = quantized(sym(Granularity::Row), 4, 16, 1);
    let b = quantized(sym(Granularity::Row), 3, 16, 2);
    let (ao, bo) = (a.operand().unwrap(), b.operand().unwrap());
    // K mismatch.
    let b8 = quantized(sym(Granularity::Row), 3, 8, 2);
    assert!(matches!(
        cpu::gemm::<f32>(&ao, &b8.operand().unwrap(), None),
        Err(Error::Shape(_))
    ));
    // Output length.
    let mut out = vec![0f32; 11];
    assert!(matches!(cpu::gemm_into(&ao, &bo, None, &mut out), Err(Error::Shape(_))));
    // Bias length and bias with i32 output.
    assert!(matches!(
        cpu::gemm::<f32>(&ao, &bo, Some(Bias::F32(&[0.0; 4]))),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        cpu::gemm::<i32>(&ao, &bo, Some(Bias::F32(&[0.0; 3]))),
        Err(Error::Unsupported(_))
    ));
    // Per-group and per-column parameters vary along K.
    let g = quantized(sym(Granularity::Group(8)), 4, 16, 1);
    assert!(matches!(g.operand(), Err(Error::Unsupported(_))));
    let c = quantized(sym(Granularity::Col), 4, 16, 1);
    assert!(matches!(c.operand(), Err(Error::Unsupported(_))));
    // MinOffset weights; MinOffset A with i32 output.
    let mo = quantized(QuantSpec::min_offset(Granularity::Row).unwrap(), 3, 16, 2);
    assert!(matches!(
        cpu::gemm::<f32>(&ao, &mo.operand().unwrap(), None),
        Err(Error::Unsupported(_))
    ));
    let moa = quantized(QuantSpec::min_offset(Granularity::Row).unwrap(), 4, 16, 2);
    assert!(matches!(
        cpu::gemm::<i32>(&moa.operand().unwrap(), &bo, None),
        Err(Error::Unsupported(_))
    ));
    // Raw operands give i32 only.
    let raw = RawMatrix::new(IntType::I8, 3, 16, vec![1; 48], None).unwrap();
    assert!(matches!(
        cpu::gemm::<f32>(&ao, &raw.operand().unwrap(), None),
        Err(Error::Unsupported(_))
    ));
    assert!(cpu::gemm::<i32>(&ao, &raw.operand().unwrap(), None).is_ok());
    // Raw zero points: length and range.
    assert!(matches!(
        RawMatrix::new(IntType::U8, 3, 2, vec![0; 6], Some(vec![0, 0])),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        RawMatrix::new(IntType::U8, 3, 2, vec![0; 6], Some(vec![256])),
        Err(Error::InvalidArgument(_))
    ));
    // Empty shapes: empty results; K = 0: bias only.
    let e = RawMatrix::new(IntType::I8, 0, 16, vec![], None).unwrap();
    assert!(
        cpu::gemm::<i32>(&e.operand().unwrap(), &raw.operand().unwrap(), None)
            .unwrap()
            .is_empty()
    );
    let a0 = quantized(sym(Granularity::Row), 2, 0, 1);
    let b0 = quantized(sym(Granularity::Row), 3, 0, 1);
    let y = cpu::gemm::<f32>(
        &a0.operand().unwrap(),
        &b0.operand().unwrap(),
        Some(Bias::F32(&[1.0, 2.0, 3.0])),
    )
    .unwrap();
    assert_eq!(y, vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
}

/// The requantized output is the f32 output quantized with the static parameters, bit for
/// bit (data, parameters, row sums, count), for every output scheme, with and without a bias;
/// and it is the next GEMM's A as it stands.
#[test]
fn requantized_output_is_the_f32_output_quantized() {
    let (m, n, k) = (11, 37, 96);
    let bias: Vec<f32> = qkernels::bench::random_f32(n, 5, 4.0);
    for a_spec in [
        QuantSpec::symmetric(Granularity::Row).unwrap(),
        QuantSpec::affine(IntType::U8, Granularity::Row).unwrap(),
        QuantSpec::min_offset(Granularity::Tensor).unwrap(),
    ] {
        let a = quantized(a_spec, m, k, 3);
        let b = quantized(QuantSpec::affine(IntType::I8, Granularity::Row).unwrap(), n, k, 4);
        let (ao, bo) = (a.operand().unwrap(), b.operand().unwrap());
        for bias in [None, Some(Bias::F32(&bias))] {
            let y = cpu::gemm::<f32>(&ao, &bo, bias).unwrap();
            for (spec, params) in common::requant_outputs() {
                let want = cpu::quantize(&y, m, n, spec, Some(&params), false).unwrap();
                let got = cpu::gemm_quantized(&ao, &bo, bias, spec, &params, false).unwrap();
                assert_eq!(got, want, "{a_spec:?} -> {spec:?}");
                // Chained: the requantized output is an A operand of the next GEMM.
                let w = quantized(QuantSpec::symmetric(Granularity::Row).unwrap(), 5, n, 6);
                let next = cpu::gemm::<f32>(&got.operand().unwrap(), &w.operand().unwrap(), None).unwrap();
                assert_eq!(next.len(), m * 5);
            }
        }
    }
}

/// Scales that overflow the f32 epilogue give ±Inf (and NaN through the MinOffset term):
/// they take the contract's values, are counted, and are an error unless allowed.
#[test]
fn requantized_nonfinite_values_are_counted() {
    let (m, n, k) = (6, 9, 32);
    let mut a = quantized(QuantSpec::min_offset(Granularity::Row).unwrap(), m, k, 7);
    let mut b = quantized(QuantSpec::symmetric(Granularity::Row).unwrap(), n, k, 8);
    a.scales.iter_mut().for_each(|s| *s = 3e38);
    a.offsets.as_mut().unwrap()[0] = -3e38;
    b.scales.iter_mut().for_each(|s| *s = 1e20);
    let (ao, bo) = (a.operand().unwrap(), b.operand().unwrap());
    let y = cpu::gemm::<f32>(&ao, &bo, None).unwrap();
    let nonfinite = y.iter().filter(|v| !v.is_finite()).count() as u64;
    assert!(nonfinite > 0 && y.iter().any(|v| v.is_nan()));
    for (spec, params) in common::requant_outputs() {
        let e = cpu::gemm_quantized(&ao, &bo, None, spec, &params, false).unwrap_err();
        assert!(matches!(e, Error::NonFinite { count } if count == nonfinite), "{e}");
        let got = cpu::gemm_quantized(&ao, &bo, None, spec, &params, true).unwrap();
        assert_eq!(got, cpu::quantize(&y, m, n, spec, Some(&params), true).unwrap());
        assert_eq!(got.nonfinite, nonfinite);
    }
}

#[test]
fn requantized_output_errors_are_typed() {
    let (m, n, k) = (4, 3, 16);
    let a = quantized(QuantSpec::symmetric(Granularity::Row).unwrap(), m, k, 1);
    let b = quantized(QuantSpec::symmetric(Granularity::Row).unwrap(), n, k, 2);
    let (ao, bo) = (a.operand().unwrap(), b.operand().unwrap());
    let sym = QuantSpec::symmetric(Granularity::Tensor).unwrap();
    let one = |s: f32| QuantParams {
        scales: vec![s],
        zero_points: None,
        offsets: None,
    };
    // Per-row output parameters.
    let row = QuantSpec::symmetric(Granularity::Row).unwrap();
    let rp = QuantParams {
        scales: vec![0.5; m],
        ..Default::default()
    };
    let e = cpu::gemm_quantized(&ao, &bo, None, row, &rp, false).unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)), "{e}");
    // Scales outside [2^-64, 2^64], and invalid ones.
    for s in [1e-20, 2e19] {
        let e = cpu::gemm_quantized(&ao, &bo, None, sym, &one(s), false).unwrap_err();
        assert!(matches!(e, Error::Unsupported(_)), "{s}: {e}");
    }
    for s in [0.0, -1.0, f32::NAN, f32::INFINITY, 1e-40] {
        let e = cpu::gemm_quantized(&ao, &bo, None, sym, &one(s), false).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{s}: {e}");
    }
    // The range's edges are accepted.
    for s in [2f32.powi(-64), 2f32.powi(64)] {
        cpu::gemm_quantized(&ao, &bo, None, sym, &one(s), false).unwrap();
    }
    // A zero point outside the type.
    let aff = QuantSpec::affine(IntType::U8, Granularity::Tensor).unwrap();
    let zp = QuantParams {
        scales: vec![0.5],
        zero_points: Some(vec![256]),
        offsets: None,
    };
    let e = cpu::gemm_quantized(&ao, &bo, None, aff, &zp, false).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    // An output of the wrong shape.
    let mut wrong = HostQuantized::zeroed(sym, m, n + 1).unwrap();
    let e = cpu::gemm_quantized_into(&ao, &bo, None, &one(0.5), &mut wrong).unwrap_err();
    assert!(matches!(e, Error::Shape(_)), "{e}");
    // Raw operands have no scales to requantize with.
    let ra = RawMatrix::new(IntType::I8, m, k, vec![1; m * k], None).unwrap();
    let rb = RawMatrix::new(IntType::I8, n, k, vec![1; n * k], None).unwrap();
    let e = cpu::gemm_quantized(
        &ra.operand().unwrap(),
        &rb.operand().unwrap(),
        None,
        sym,
        &one(0.5),
        false,
    )
    .unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)), "{e}");
}
