//! CPU-vs-GPU differential tests: every scheme × granularity × input type, static and
//! dynamic, over M = 1..130, odd and aligned widths, views at element offsets (the
//! scalar paths), long rows (the two-pass paths) and tall matrices (grid-stride and
//! chunked column reductions). Results must be identical bit for bit.
//!
//! Without a GPU each test prints `SKIPPED: no CUDA device` and passes;
//! `QKERNELS_REQUIRE_GPU=1` turns a missing device into a failure.

mod common;

use qkernels::cpu::{self, HostQuantized};
use qkernels::cuda::{self, DeviceElement, DeviceQuantized, Gpu};
use qkernels::{Error, Granularity, IntType, QuantParams, QuantSpec, bf16, f16};

fn all_specs(cols: usize) -> Vec<QuantSpec> {
    let mut grans = vec![Granularity::Tensor, Granularity::Row, Granularity::Col];
    for g in [3, 8, 16, 32, 48, 64, 128, 256, 512] {
        if cols.is_multiple_of(g) && g < cols {
            grans.push(Granularity::Group(g));
        }
    }
    let mut specs = Vec::new();
    for g in grans {
        specs.push(QuantSpec::symmetric(g).unwrap());
        specs.push(QuantSpec::affine(IntType::U8, g).unwrap());
        specs.push(QuantSpec::affine(IntType::I8, g).unwrap());
        specs.push(QuantSpec::min_offset(g).unwrap());
    }
    specs
}

/// Test data: random rows, with an all-zero row, a constant row, rows of signed zeros and
/// (optionally) NaN/±Inf.
fn data(rows: usize, cols: usize, seed: u64, nonfinite: bool) -> Vec<f32> {
    let mut x = qkernels::bench::random_f32(rows * cols, seed, 3.0);
    if rows > 2 {
        x[cols..2 * cols].fill(0.0);
        x[2 * cols..3 * cols].fill(-1.25);
    }
    if rows > 5 {
        // Signed zeros, which the ranges take as +0 (canonical_zero): a row of -0; -0 and +0
        // among positives (the minimum a zero); -0 among negatives (the maximum a zero).
        x[3 * cols..4 * cols].fill(-0.0);
        for (j, v) in x[4 * cols..5 * cols].iter_mut().enumerate() {
            *v = [-0.0, 0.0, v.abs()][j % 3];
        }
        for (j, v) in x[5 * cols..6 * cols].iter_mut().enumerate() {
            *v = if j % 2 == 0 { -0.0 } else { -v.abs() };
        }
    }
    if nonfinite {
        let n = x.len();
        x[n / 2] = f32::NAN;
        x[n / 3] = f32::INFINITY;
        x[n - 1] = f32::NEG_INFINITY;
        // A signalling NaN: the range pass relies on min/max ignoring every NaN.
        x[n / 4] = f32::from_bits(0x7F80_0001);
    }
    x
}

fn assert_same(got: &HostQuantized, want: &HostQuantized, what: &str) {
    assert_eq!(got.data, want.data, "{what}: quantized values");
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got.scales), bits(&want.scales), "{what}: scales");
    assert_eq!(got.zero_points, want.zero_points, "{what}: zero points");
    assert_eq!(
        got.offsets.as_deref().map(bits),
        want.offsets.as_deref().map(bits),
        "{what}: offsets"
    );
    assert_eq!(got.row_sums, want.row_sums, "{what}: row sums");
    assert_eq!(got.nonfinite, want.nonfinite, "{what}: non-finite count");
}

/// Static parameters from a dynamic result (degenerate scales replaced by 1).
fn static_params(q: &HostQuantized) -> QuantParams {
    let mut p = q.params();
    p.scales.iter_mut().filter(|s| !s.is_normal()).for_each(|s| *s = 1.0);
    p
}

/// Runs one case on both paths; `pad` leading elements put the device input at an offset.
fn check_case<T: DeviceElement>(g: &Gpu, x32: &[f32], rows: usize, cols: usize, spec: QuantSpec, pad: usize) {
    let x: Vec<T> = x32.iter().map(|&v| T::from_f32(v)).collect();
    let mut padded = vec![T::default(); pad];
    padded.extend_from_slice(&x);
    let dbuf = g.stream.clone_htod(&padded).unwrap();
    let dx = dbuf.slice(pad..);
    let dynamic = cpu::quantize(&x, rows, cols, spec, None, true).unwrap();
    let given = static_params(&dynamic);
    for params in [None, Some(&given)] {
        let what = format!(
            "{:?} {spec:?} {rows}x{cols} pad {pad} static {}",
            T::TYPE,
            params.is_some()
        );
        let want = cpu::quantize(&x, rows, cols, spec, params, true).unwrap();
        let dq = cuda::quantize(&g.stream, &dx, rows, cols, spec, params).unwrap();
        let got = dq.to_host(&g.stream, true).unwrap();
        assert_same(&got, &want, &what);
        let y = cuda::dequantize::<T>(&g.stream, &dq).unwrap();
        let y = g.stream.clone_dtoh(&y).unwrap();
        let want_y = cpu::dequantize::<T>(&want).unwrap();
        let yb: Vec<u32> = y.iter().map(|v| v.to_f32().to_bits()).collect();
        let wb: Vec<u32> = want_y.iter().map(|v| v.to_f32().to_bits()).collect();
        assert_eq!(yb, wb, "{what}: dequantized");
        let sums = cuda::row_sums(&g.stream, &dq.data, spec.int_type(), rows, cols).unwrap();
        assert_eq!(
            g.stream.clone_dtoh(&sums).unwrap(),
            want.row_sums,
            "{what}: row_sums kernel"
        );
    }
}

fn sweep<T: DeviceElement>(g: &Gpu, shapes: &[(usize, usize)], pads: &[usize], nonfinite: bool) {
    for (i, &(rows, cols)) in shapes.iter().enumerate() {
        let x = data(rows, cols, i as u64 + 1, nonfinite);
        for spec in all_specs(cols) {
            for &pad in pads {
                check_case::<T>(g, &x, rows, cols, spec, pad);
            }
        }
    }
}

const SMALL: &[(usize, usize)] = &[
    (1, 1),
    (1, 3),
    (2, 7),
    (3, 8),
    (5, 24),
    (7, 33),
    (16, 64),
    (33, 96),
    (64, 128),
    (127, 255),
    (130, 264),
    (4, 1024),
    (3, 4104),
];

#[test]
fn small_shapes_f32() {
    let Some(g) = common::gpu() else { return };
    sweep::<f32>(&g, SMALL, &[0, 1], false);
}

#[test]
fn small_shapes_f16() {
    let Some(g) = common::gpu() else { return };
    sweep::<f16>(&g, SMALL, &[0, 3], false);
}

#[test]
fn small_shapes_bf16() {
    let Some(g) = common::gpu() else { return };
    sweep::<bf16>(&g, SMALL, &[0, 5], false);
}

#[test]
fn every_row_count_up_to_130() {
    let Some(g) = common::gpu() else { return };
    for rows in 1..=130 {
        let x = data(rows, 40, rows as u64, rows % 7 == 0);
        for spec in all_specs(40) {
            check_case::<bf16>(&g, &x, rows, 40, spec, 0);
        }
    }
}

#[test]
fn nonfinite_values_match_and_are_counted() {
    let Some(g) = common::gpu() else { return };
    sweep::<f32>(&g, &[(3, 8), (9, 96), (4, 4104)], &[0, 1], true);
    sweep::<bf16>(&g, &[(3, 8), (9, 96)], &[0], true);
}

/// More rows than the grid has blocks, so that each block quantizes several rows and the
/// next row's vectors are loaded while the current one is processed: the register-resident
/// variants R = 1, 2, 4 (with that prefetch; one-warp blocks included) and 8, in every mode
/// (given, dynamic per row, dynamic per group), with non-finite values in the data.
#[test]
fn many_rows_per_block_take_the_prefetch_path() {
    let Some(g) = common::gpu() else { return };
    let specs = [
        QuantSpec::symmetric(Granularity::Row).unwrap(),
        QuantSpec::affine(IntType::U8, Granularity::Row).unwrap(),
        QuantSpec::min_offset(Granularity::Row).unwrap(),
        QuantSpec::symmetric(Granularity::Group(64)).unwrap(),
        QuantSpec::affine(IntType::I8, Granularity::Group(8)).unwrap(),
        QuantSpec::symmetric(Granularity::Tensor).unwrap(),
        QuantSpec::affine(IntType::U8, Granularity::Col).unwrap(),
    ];
    // Threads x vectors per row (launch_rows): bf16 256: 32 x R = 1; bf16 512: 32 x R = 2;
    // bf16 1024: 32 x R = 4; bf16 4096: 128 x R = 4; bf16 4104: 160 x R = 4 (513 vectors:
    // only thread 0 holds a fourth); f32 1024: 64 x R = 4; f32 4104: 256 x R = 8.
    // One-warp blocks fill up to 32 per SM, hence 9000 rows.
    let run = |rows: usize, cols: usize, f32_input: bool| {
        let x = data(rows, cols, (rows + cols) as u64, true);
        for spec in specs {
            if let Granularity::Group(gs) = spec.granularity()
                && !cols.is_multiple_of(gs)
            {
                continue;
            }
            if f32_input {
                check_case::<f32>(&g, &x, rows, cols, spec, 0);
            } else {
                check_case::<bf16>(&g, &x, rows, cols, spec, 0);
            }
        }
    };
    run(9000, 256, false);
    run(9000, 512, false);
    run(9000, 1024, false);
    run(2048, 4096, false);
    run(1500, 4104, false);
    run(3000, 1024, true);
    run(1100, 4104, true);
}

/// Values that leave the division-free quotient: dynamic scales above 2^64 and below 2^-64
/// (taken by the division), a static scale in range with a quotient beyond f32 (the vector
/// is redone exactly), a MinOffset offset that makes x − offset overflow, and a group of
/// only non-finite values.
#[test]
fn extreme_values_take_the_exact_path() {
    let Some(g) = common::gpu() else { return };
    let cols = 64;
    let mut x = data(4, cols, 5, false);
    x[..cols].iter_mut().for_each(|v| *v *= 1e25);
    x[cols..2 * cols].iter_mut().for_each(|v| *v *= 1e-22);
    x[2 * cols..2 * cols + 8].copy_from_slice(&[
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::INFINITY,
        f32::NAN,
        f32::NEG_INFINITY,
        f32::INFINITY,
        f32::NAN,
    ]);
    x[3 * cols] = 3e38;
    x[3 * cols + 1] = -3e38;
    for spec in [
        QuantSpec::symmetric(Granularity::Row).unwrap(),
        QuantSpec::affine(IntType::U8, Granularity::Row).unwrap(),
        QuantSpec::min_offset(Granularity::Row).unwrap(),
        QuantSpec::symmetric(Granularity::Group(8)).unwrap(),
        QuantSpec::min_offset(Granularity::Group(8)).unwrap(),
    ] {
        check_case::<f32>(&g, &x, 4, cols, spec, 0);
    }
    // Static parameters: scale 2^-60 with |x| up to 1e30 (q0 overflows: the vector is redone),
    // and a MinOffset offset of -3e38 with x up to 3e38 (x − offset overflows).
    let mut y = data(2, cols, 6, false);
    y[3] = 1e30;
    y[4] = -1e30;
    y[cols + 5] = 3e38;
    let cases = [
        (
            QuantSpec::symmetric(Granularity::Tensor).unwrap(),
            QuantParams {
                scales: vec![2f32.powi(-60)],
                ..Default::default()
            },
        ),
        (
            QuantSpec::min_offset(Granularity::Tensor).unwrap(),
            QuantParams {
                scales: vec![1.0],
                offsets: Some(vec![-3e38]),
                ..Default::default()
            },
        ),
    ];
    let dy = g.stream.clone_htod(&y).unwrap();
    for (spec, p) in cases {
        let want = cpu::quantize(&y, 2, cols, spec, Some(&p), true).unwrap();
        let got = cuda::quantize(&g.stream, &dy, 2, cols, spec, Some(&p))
            .unwrap()
            .to_host(&g.stream, true)
            .unwrap();
        assert_same(&got, &want, &format!("{spec:?} static {:?}", p.scales));
    }
}

#[test]
fn long_rows_take_the_register_and_two_pass_paths() {
    let Some(g) = common::gpu() else { return };
    // bf16: 14336 → 8 vectors per thread; 40000 → two-pass; 40001 → scalar two-pass.
    let shapes = [(3, 14336), (2, 40000), (2, 40001)];
    sweep::<bf16>(&g, &shapes, &[0], false);
    // f32: 20000 → two-pass with 4-wide vectors.
    sweep::<f32>(&g, &[(2, 20000)], &[0], false);
}

#[test]
fn tall_matrices_use_grid_stride_and_chunked_reductions() {
    let Some(g) = common::gpu() else { return };
    for (rows, cols) in [((1 << 20) + 3, 2), (4_200_000, 1)] {
        let x = data(rows, cols, 9, false);
        for spec in [
            QuantSpec::symmetric(Granularity::Tensor).unwrap(),
            QuantSpec::affine(IntType::U8, Granularity::Col).unwrap(),
            QuantSpec::min_offset(Granularity::Row).unwrap(),
        ] {
            check_case::<f32>(&g, &x, rows, cols, spec, 0);
        }
    }
}

#[test]
fn repeated_runs_give_the_same_bits() {
    let Some(g) = common::gpu() else { return };
    let x: Vec<bf16> = data(64, 4096, 3, false).iter().map(|&v| bf16::from_f32(v)).collect();
    let dx = g.stream.clone_htod(&x).unwrap();
    let spec = QuantSpec::affine(IntType::U8, Granularity::Tensor).unwrap();
    let first = cuda::quantize(&g.stream, &dx, 64, 4096, spec, None)
        .unwrap()
        .to_host(&g.stream, false)
        .unwrap();
    for _ in 0..5 {
        let again = cuda::quantize(&g.stream, &dx, 64, 4096, spec, None)
            .unwrap()
            .to_host(&g.stream, false)
            .unwrap();
        assert_eq!(again, first);
    }
}

#[test]
fn gpu_errors_are_typed() {
    let Some(g) = common::gpu() else { return };
    let spec = QuantSpec::symmetric(Granularity::Row).unwrap();
    let x = g.stream.clone_htod(&[1.0f32; 10]).unwrap();
    let e = cuda::quantize(&g.stream, &x, 3, 3, spec, None).unwrap_err();
    assert!(matches!(e, Error::Shape(_)), "{e}");
    let bad = QuantParams {
        scales: vec![f32::NAN; 2],
        ..Default::default()
    };
    let e = cuda::quantize(&g.stream, &x, 2, 5, spec, Some(&bad)).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    let grp = QuantSpec::symmetric(Granularity::Group(4)).unwrap();
    assert!(matches!(
        cuda::quantize(&g.stream, &x, 2, 5, grp, None),
        Err(Error::InvalidArgument(_))
    ));
    let mut out = DeviceQuantized::alloc(&g.stream, spec, 5, 2).unwrap();
    assert!(matches!(
        cuda::quantize_into(&g.stream, &x, 2, 5, None, &mut out),
        Err(Error::Shape(_))
    ));
    let q = cuda::quantize(&g.stream, &x, 2, 5, spec, None).unwrap();
    let mut short = g.stream.alloc_zeros::<f32>(9).unwrap();
    assert!(matches!(
        cuda::dequantize_into(&g.stream, &q, &mut short),
        Err(Error::Shape(_))
    ));
    // Non-finite inputs: counted on the device, an error when read back unless allowed.
    let nan = g.stream.clone_htod(&[f32::NAN, 1.0]).unwrap();
    let q = cuda::quantize(&g.stream, &nan, 1, 2, spec, None).unwrap();
    assert!(matches!(
        q.to_host(&g.stream, false),
        Err(Error::NonFinite { count: 1 })
    ));
    // Empty matrices: no launch, empty results.
    let empty = g.stream.alloc_zeros::<f32>(0).unwrap();
    let q = cuda::quantize(&g.stream, &empty, 0, 7, spec, None)
        .unwrap()
        .to_host(&g.stream, false)
        .unwrap();
    assert!(q.data.is_empty() && q.row_sums.is_empty());
    let q = cuda::quantize(&g.stream, &empty, 4, 0, spec, None)
        .unwrap()
        .to_host(&g.stream, false)
        .unwrap();
    assert_eq!(q.row_sums, vec![0; 4]);
}
