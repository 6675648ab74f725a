//! Every bad input gets a typed error (or the defined result), never a panic or a NaN.

use qkernels::cpu::{self, HostQuantized};
use qkernels::{Error, Granularity, IntType, QuantParams, QuantSpec, Scheme, npy};

fn sym(g: Granularity) -> QuantSpec {
    QuantSpec::symmetric(g).unwrap()
}

#[test]
fn scheme_and_type_must_fit() {
    assert!(matches!(
        QuantSpec::new(Scheme::Symmetric, IntType::U8, Granularity::Row),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        QuantSpec::new(Scheme::MinOffset, IntType::I8, Granularity::Row),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        QuantSpec::symmetric(Granularity::Group(0)),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn shape_and_length_mismatches() {
    let x = vec![1.0f32; 10];
    assert!(matches!(
        cpu::quantize(&x, 3, 3, sym(Granularity::Row), None, false),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        cpu::quantize(&x, usize::MAX, 2, sym(Granularity::Row), None, false),
        Err(Error::Limit(_))
    ));
    let wide = qkernels::scheme::MAX_COLS + 1;
    assert!(matches!(
        cpu::quantize::<f32>(&[], 0, wide, sym(Granularity::Row), None, false),
        Err(Error::Limit(_))
    ));
    let q = cpu::quantize(&x, 2, 5, sym(Granularity::Row), None, false).unwrap();
    let mut short = vec![0.0f32; 9];
    assert!(matches!(cpu::dequantize_into(&q, &mut short), Err(Error::Shape(_))));
    assert!(matches!(
        cpu::row_sums(&q.data, IntType::I8, 3, 5),
        Err(Error::Shape(_))
    ));
    let mut sums = vec![0; 1];
    assert!(matches!(
        cpu::row_sums_into(&q.data, IntType::I8, 2, 5, &mut sums),
        Err(Error::Shape(_))
    ));
    let mut out = HostQuantized::zeroed(sym(Granularity::Row), 5, 2).unwrap();
    assert!(matches!(
        cpu::quantize_into(&x, 2, 5, None, &mut out),
        Err(Error::Shape(_))
    ));
    let mut broken = q.clone();
    broken.scales.pop();
    assert!(matches!(cpu::dequantize::<f32>(&broken), Err(Error::Shape(_))));
}

#[test]
fn group_must_divide_the_width() {
    let x = vec![1.0f32; 12];
    let e = cpu::quantize(&x, 2, 6, sym(Granularity::Group(4)), None, false).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    assert!(e.to_string().contains("does not divide"));
}

#[test]
fn static_scales_must_be_positive_finite_normal() {
    let x = vec![1.0f32; 4];
    for bad in [0.0, -1.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e-40] {
        let p = QuantParams {
            scales: vec![bad],
            ..Default::default()
        };
        let e = cpu::quantize(&x, 2, 2, sym(Granularity::Tensor), Some(&p), false).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{bad}: {e}");
    }
    let p = QuantParams {
        scales: vec![1.0; 3],
        ..Default::default()
    };
    assert!(matches!(
        cpu::quantize(&x, 2, 2, sym(Granularity::Row), Some(&p), false),
        Err(Error::Shape(_))
    ));
}

#[test]
fn zero_points_and_offsets_are_checked() {
    let x = vec![1.0f32; 4];
    let u8_ = QuantSpec::affine(IntType::U8, Granularity::Tensor).unwrap();
    let i8_ = QuantSpec::affine(IntType::I8, Granularity::Tensor).unwrap();
    for (spec, zp) in [(u8_, 256), (u8_, -1), (i8_, 128), (i8_, -129)] {
        let p = QuantParams {
            scales: vec![1.0],
            zero_points: Some(vec![zp]),
            offsets: None,
        };
        assert!(
            matches!(
                cpu::quantize(&x, 2, 2, spec, Some(&p), false),
                Err(Error::InvalidArgument(_))
            ),
            "{zp}"
        );
    }
    let mo = QuantSpec::min_offset(Granularity::Tensor).unwrap();
    let no_offset = QuantParams {
        scales: vec![1.0],
        ..Default::default()
    };
    assert!(matches!(
        cpu::quantize(&x, 2, 2, mo, Some(&no_offset), false),
        Err(Error::InvalidArgument(_))
    ));
    let nan_offset = QuantParams {
        scales: vec![1.0],
        zero_points: None,
        offsets: Some(vec![f32::NAN]),
    };
    assert!(matches!(
        cpu::quantize(&x, 2, 2, mo, Some(&nan_offset), false),
        Err(Error::InvalidArgument(_))
    ));
    let sym_zp = QuantParams {
        scales: vec![1.0],
        zero_points: Some(vec![0]),
        offsets: None,
    };
    assert!(matches!(
        cpu::quantize(&x, 2, 2, sym(Granularity::Tensor), Some(&sym_zp), false),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn nonfinite_inputs_are_an_error_unless_allowed() {
    let x = [1.0f32, f32::NAN, f32::INFINITY, 2.0];
    let e = cpu::quantize(&x, 1, 4, sym(Granularity::Row), None, false).unwrap_err();
    assert!(matches!(e, Error::NonFinite { count: 2 }), "{e}");
    assert_eq!(
        cpu::quantize(&x, 1, 4, sym(Granularity::Row), None, true)
            .unwrap()
            .nonfinite,
        2
    );
    assert_eq!(cpu::count_nonfinite(&x), 2);
}

#[test]
fn empty_matrices_give_empty_results() {
    for (rows, cols) in [(0, 5), (3, 0), (0, 0)] {
        for g in [Granularity::Tensor, Granularity::Row, Granularity::Col] {
            let q = cpu::quantize::<f32>(&[], rows, cols, sym(g), None, false).unwrap();
            assert!(q.data.is_empty());
            assert_eq!(q.row_sums, vec![0; rows]);
            assert!(q.scales.iter().all(|&s| s == 0.0));
            assert!(cpu::dequantize::<f32>(&q).unwrap().is_empty());
        }
    }
}

#[test]
fn stored_parts_are_checked() {
    let spec = sym(Granularity::Row);
    let ok = HostQuantized::from_parts(spec, 1, 2, vec![1, 2], vec![0.5], None, None).unwrap();
    assert_eq!(ok.row_sums, vec![3]);
    for scales in [vec![-1.0], vec![f32::NAN], vec![f32::INFINITY]] {
        let e = HostQuantized::from_parts(spec, 1, 2, vec![1, 2], scales, None, None).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)));
    }
    assert!(matches!(
        HostQuantized::from_parts(spec, 1, 2, vec![0x80, 0], vec![1.0], None, None),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        HostQuantized::from_parts(spec, 1, 3, vec![1, 2], vec![1.0], None, None),
        Err(Error::Shape(_))
    ));
    let aff = QuantSpec::affine(IntType::U8, Granularity::Row).unwrap();
    assert!(matches!(
        HostQuantized::from_parts(aff, 1, 2, vec![1, 2], vec![1.0], Some(vec![300]), None),
        Err(Error::InvalidArgument(_))
    ));
    let mo = QuantSpec::min_offset(Granularity::Row).unwrap();
    assert!(matches!(
        HostQuantized::from_parts(mo, 1, 2, vec![1, 2], vec![1.0], None, None),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn npy_files_of_the_wrong_rank_or_dtype() {
    let dir = std::env::temp_dir().join(format!("qk-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let three_d = dir.join("x3.npy");
    npy::write(&three_d, &[1.0f32; 8], &[2, 2, 2]).unwrap();
    assert!(matches!(npy::read_float_matrix(&three_d), Err(Error::Io(m)) if m.contains("2-D")));
    let ints = dir.join("i.npy");
    npy::write(&ints, &[1i32; 4], &[2, 2]).unwrap();
    assert!(matches!(npy::read_float_matrix(&ints), Err(Error::Io(m)) if m.contains("not supported")));
    let f64s = dir.join("d.npy");
    npy::write(&f64s, &[1.0f64; 4], &[2, 2]).unwrap();
    assert!(matches!(npy::read_float_matrix(&f64s), Err(Error::Io(_))));
    assert!(matches!(npy::read_int(&f64s), Err(Error::Io(_))));
    let junk = dir.join("junk.npy");
    std::fs::write(&junk, b"not an npy file").unwrap();
    assert!(matches!(npy::read_f32(&junk), Err(Error::Io(_))));
    assert!(matches!(npy::read_f32(&dir.join("missing.npy")), Err(Error::Io(_))));
    std::fs::remove_dir_all(&dir).unwrap();
}
