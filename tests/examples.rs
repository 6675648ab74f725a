//! The worked examples of DESIGN.md section 5, exactly, on the CPU reference and (when
//! present) the GPU.

mod common;

use qkernels::cpu;
use qkernels::{Granularity, QuantSpec, cuda};

const X: [f32; 9] = [1.21, -1.31, 0.22, 0.83, 2.11, -1.53, 0.79, -0.54, 0.84];

#[test]
fn symmetric_per_tensor() {
    let spec = QuantSpec::symmetric(Granularity::Tensor).unwrap();
    let q = cpu::quantize(&X, 3, 3, spec, None, false).unwrap();
    assert_eq!(q.scales, vec![2.11f32 / 127.0]);
    assert!((q.scales[0] - 0.016614).abs() < 1e-6);
    assert_eq!(q.as_i8(), &[73, -79, 13, 50, 127, -92, 48, -33, 51]);
    assert_eq!(q.row_sums, vec![73 - 79 + 13, 50 + 127 - 92, 48 - 33 + 51]);
    assert_eq!(q.nonfinite, 0);
}

#[test]
fn min_offset_per_tensor() {
    let spec = QuantSpec::min_offset(Granularity::Tensor).unwrap();
    let q = cpu::quantize(&X, 3, 3, spec, None, false).unwrap();
    assert_eq!(q.scales, vec![(2.11f32 - -1.53f32) / 255.0]);
    assert!((q.scales[0] - 0.0142745).abs() < 1e-6);
    assert_eq!(q.offsets, Some(vec![-1.53]));
    assert_eq!(q.data, vec![192, 15, 123, 165, 255, 0, 163, 69, 166]);
    // Dequantization: (q·s) + min; the extremes come back to within one rounding.
    let y = cpu::dequantize::<f32>(&q).unwrap();
    assert_eq!(y[5], -1.53);
    assert!((y[4] - 2.11).abs() < 1e-6);
    for (a, b) in X.iter().zip(&y) {
        assert!((a - b).abs() <= q.scales[0] / 2.0 + 1e-7, "{a} vs {b}");
    }
}

#[test]
fn examples_on_the_gpu_match() {
    let Some(g) = common::gpu() else { return };
    for spec in [
        QuantSpec::symmetric(Granularity::Tensor).unwrap(),
        QuantSpec::min_offset(Granularity::Tensor).unwrap(),
    ] {
        let want = cpu::quantize(&X, 3, 3, spec, None, false).unwrap();
        let dx = g.stream.clone_htod(&X).unwrap();
        let got = cuda::quantize(&g.stream, &dx, 3, 3, spec, None)
            .unwrap()
            .to_host(&g.stream, false)
            .unwrap();
        assert_eq!(got, want);
    }
}
