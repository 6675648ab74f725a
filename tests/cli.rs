//! The `qk` command line end to end, on the CPU path (`--device cpu`) so it runs anywhere;
//! with a GPU, `--device cuda` must write the same files.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use qkernels::{bf16, f16, npy};

/// The `qk` binary: cargo's build of it, or `QK_BIN` (the device bundle runs these tests
/// on a machine where cargo's path does not exist).
fn qk(args: &[&str]) -> Output {
    let bin = std::env::var_os("QK_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_qk").into());
    Command::new(bin).args(args).output().expect("run qk")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("qk-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A fresh folder holding the worked example as `x.npy`; returns the folder and the file.
fn worked_example(name: &str) -> (PathBuf, PathBuf) {
    let d = tmp(name);
    let x = d.join("x.npy");
    npy::write(&x, &X, &[3, 3]).unwrap();
    (d, x)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const X: [f32; 9] = [1.21, -1.31, 0.22, 0.83, 2.11, -1.53, 0.79, -0.54, 0.84];

fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `qk quantize X --out OUT --scheme SCHEME --granularity G --device cpu EXTRA...`, which
/// must succeed.
fn quantize_cpu(x: &Path, out: &Path, scheme: &str, granularity: &str, extra: &[&str]) {
    let base = [
        "quantize",
        s(x),
        "--out",
        s(out),
        "--scheme",
        scheme,
        "--granularity",
        granularity,
        "--device",
        "cpu",
    ];
    let o = qk(&[&base[..], extra].concat());
    assert!(o.status.success(), "quantize {}: {}", x.display(), stderr_of(&o));
}

#[test]
fn quantize_and_dequantize_the_worked_example() {
    let (d, x) = worked_example("example");
    let out = d.join("q");
    quantize_cpu(&x, &out, "symmetric", "tensor", &[]);
    let (q, _) = npy::read_int(&out.join("q.npy")).unwrap();
    assert_eq!(q.data, vec![73, -79, 13, 50, 127, -92, 48, -33, 51]);
    assert_eq!(q.shape, vec![3, 3]);
    let scale = npy::read_f32(&out.join("scale.npy")).unwrap();
    assert_eq!((scale.data, scale.shape), (vec![2.11f32 / 127.0], vec![1]));
    let meta = std::fs::read_to_string(out.join("meta.json")).unwrap();
    assert!(meta.contains("\"symmetric\"") && meta.contains("\"tensor\""), "{meta}");

    let y = d.join("y.npy");
    let o = qk(&["dequantize", s(&out), "--out", s(&y), "--device", "cpu"]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let (yv, r, c) = npy::read_float_matrix(&y).unwrap();
    assert_eq!((r, c), (3, 3));
    let npy::FloatData::F32(yv) = yv else {
        panic!("f32 output expected")
    };
    assert_eq!(yv[4], 127.0 * (2.11f32 / 127.0));
}

#[test]
fn static_parameters_and_folders_without_meta() {
    let (d, x) = worked_example("static");
    let zp = d.join("zp.npy");
    npy::write(&zp, &[10i32, 20, 30], &[3]).unwrap();
    let out = d.join("q");
    quantize_cpu(
        &x,
        &out,
        "affine",
        "row",
        &["--dtype", "u8", "--scale", "0.05", "--zero-point", s(&zp)],
    );
    let (q, _) = npy::read_int(&out.join("q.npy")).unwrap();
    // 1.21/0.05 → 24, −1.31/0.05 → −26 (saturates at 0), 0.22/0.05 → 4; plus zp 10.
    assert_eq!(&q.data[..3], &[34, 0, 14]);
    let (z, kind) = npy::read_int(&out.join("zero_point.npy")).unwrap();
    assert_eq!((z.data, kind), (vec![10, 20, 30], npy::IntKind::I32));

    // Without meta.json, --scheme and --granularity describe the folder.
    std::fs::remove_file(out.join("meta.json")).unwrap();
    let y = d.join("y.npy");
    let o = qk(&[
        "dequantize",
        s(&out),
        "--out",
        s(&y),
        "--device",
        "cpu",
        "--out-dtype",
        "f16",
    ]);
    assert!(!o.status.success());
    assert!(stderr_of(&o).contains("meta.json"));
    let o = qk(&[
        "dequantize",
        s(&out),
        "--out",
        s(&y),
        "--device",
        "cpu",
        "--out-dtype",
        "f16",
        "--scheme",
        "affine",
        "--granularity",
        "row",
    ]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let (yv, _, _) = npy::read_float_matrix(&y).unwrap();
    assert!(matches!(yv, npy::FloatData::F16(_)));
}

#[test]
fn errors_exit_nonzero_with_one_line() {
    let d = tmp("errors");
    let x = d.join("x.npy");
    let mut bad = X;
    bad[2] = f32::NAN;
    npy::write(&x, &bad, &[3, 3]).unwrap();
    let out = d.join("q");
    let base = [
        "quantize",
        s(&x),
        "--out",
        s(&out),
        "--scheme",
        "min-offset",
        "--device",
        "cpu",
    ];
    let run = |extra: &[&str]| qk(&[&base[..], extra].concat());

    let o = run(&["--granularity", "row"]);
    assert!(!o.status.success());
    let err = stderr_of(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("non-finite"), "{err}");
    assert!(run(&["--granularity", "row", "--allow-nonfinite"]).status.success());
    assert!(!run(&["--granularity", "group:2"]).status.success());
    assert!(!run(&["--granularity", "group:0"]).status.success());
    assert!(
        !run(&["--granularity", "row", "--scale", "0", "--offset", "0"])
            .status
            .success()
    );
    assert!(
        !run(&["--granularity", "row", "--scale", "1"]).status.success(),
        "MinOffset needs --offset"
    );
    assert!(!run(&["--granularity", "row", "--dtype", "i8"]).status.success());

    let three = d.join("x3.npy");
    npy::write(&three, &[1.0f32; 8], &[2, 2, 2]).unwrap();
    let o = qk(&[
        "quantize",
        s(&three),
        "--out",
        s(&out),
        "--scheme",
        "symmetric",
        "--granularity",
        "row",
    ]);
    assert!(!o.status.success());
    assert!(stderr_of(&o).contains("2-D"));
}

#[test]
fn bench_gemm_kernel_names_are_checked_before_any_work() {
    let o = qk(&["bench", "gemm", "--kernel", "sm90 64x512"]);
    assert!(!o.status.success());
    assert!(stderr_of(&o).contains("sm90 64x512"), "{}", stderr_of(&o));
    // A pinned configuration replaces the dispatcher's picks; the sweep of every
    // configuration and the sm80-only run contradict it.
    for other in ["--all-kernels", "--skip-sm90"] {
        let o = qk(&["bench", "gemm", "--kernel", "sm90 64x256 pingpong", other]);
        assert!(!o.status.success(), "--kernel with {other}");
        assert!(stderr_of(&o).contains("cannot be used with"), "{}", stderr_of(&o));
    }
}

#[test]
fn gpu_writes_the_same_files() {
    let Some(_g) = common::gpu() else { return };
    let d = tmp("gpu");
    let x = d.join("x.npy");
    let v = qkernels::bench::random_f32(37 * 64, 5, 2.0);
    npy::write(&x, &v, &[37, 64]).unwrap();
    for dev in ["cpu", "cuda"] {
        let out = d.join(dev);
        let o = qk(&[
            "quantize",
            s(&x),
            "--out",
            s(&out),
            "--scheme",
            "affine",
            "--granularity",
            "group:32",
            "--device",
            dev,
        ]);
        assert!(o.status.success(), "{}", stderr_of(&o));
    }
    for f in ["q.npy", "scale.npy", "zero_point.npy", "meta.json"] {
        assert_eq!(
            std::fs::read(d.join("cpu").join(f)).unwrap(),
            std::fs::read(d.join("cuda").join(f)).unwrap(),
            "{f}"
        );
    }
    // qk gemm on both devices (per-group is not a GEMM operand: quantize per row).
    let a = d.join("a");
    quantize_cpu(&x, &a, "affine", "row", &[]);
    // The dispatcher's kernel, and one pinned by name (the decode kernel: K = 64).
    for (dev, name, kernel) in [
        ("cpu", "cpu", None),
        ("cuda", "cuda", None),
        ("cuda", "decode", Some("sm80 decode 8x16")),
    ] {
        let y = d.join(format!("y-{name}.npy"));
        let mut args = vec![
            "gemm",
            "--a",
            s(&a),
            "--b",
            s(&a),
            "--out-dtype",
            "f16",
            "--out",
            s(&y),
            "--device",
            dev,
        ];
        args.extend(kernel.map(|k| ["--kernel", k]).iter().flatten());
        let o = qk(&args);
        assert!(o.status.success(), "{name}: {}", stderr_of(&o));
    }
    for name in ["cuda", "decode"] {
        assert_eq!(
            std::fs::read(d.join("y-cpu.npy")).unwrap(),
            std::fs::read(d.join(format!("y-{name}.npy"))).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn info_runs_anywhere() {
    let o = qk(&["info"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("kernels built for") || text.contains("CPU only"),
        "{text}"
    );
}

/// GEMM operands in `d`: random A [M, K] and B [N, K] (seeds `seed` and `seed + 1`) as
/// a.npy and b.npy, quantized by `qk quantize` into qa/ (affine u8 per row) and qb/
/// (symmetric per row); their paths in that order.
fn gemm_operands(d: &Path, (m, n, k): (usize, usize, usize), seed: u64) -> [PathBuf; 4] {
    let [xa, xb, qa, qb] = ["a.npy", "b.npy", "qa", "qb"].map(|f| d.join(f));
    npy::write(&xa, &qkernels::bench::random_f32(m * k, seed, 2.0), &[m, k]).unwrap();
    npy::write(&xb, &qkernels::bench::random_f32(n * k, seed + 1, 2.0), &[n, k]).unwrap();
    quantize_cpu(&xa, &qa, "affine", "row", &[]);
    quantize_cpu(&xb, &qb, "symmetric", "row", &[]);
    [xa, xb, qa, qb]
}

#[test]
fn gemm_from_quantized_and_raw_folders() {
    let d = tmp("gemm");
    let (m, n, k) = (5, 6, 40);
    let [xa, xb, qa, qb] = gemm_operands(&d, (m, n, k), 1);
    let bias = d.join("bias.npy");
    let bias_v: Vec<f16> = (0..n).map(|i| f16::from_f32(i as f32 * 0.5)).collect();
    npy::write(&bias, &bias_v, &[n]).unwrap();

    let y = d.join("y.npy");
    let run = |extra: &[&str]| {
        let base = ["gemm", "--a", s(&qa), "--b", s(&qb), "--out", s(&y), "--device", "cpu"];
        qk(&[&base[..], extra].concat())
    };
    let o = run(&["--out-dtype", "bf16", "--bias", s(&bias)]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let (got, r, c) = npy::read_float_matrix(&y).unwrap();
    assert_eq!((r, c), (m, n));
    let npy::FloatData::F32(got) = got else {
        panic!("bf16 output is written as f32")
    };
    // The same numbers as the library's CPU reference, and exactly bf16 values.
    let a = qkernels::cpu::quantize(&npy_f32(&xa), m, k, affine_row(), None, false).unwrap();
    let b = qkernels::cpu::quantize(&npy_f32(&xb), n, k, sym_row(), None, false).unwrap();
    let want = qkernels::cpu::gemm::<bf16>(
        &a.operand().unwrap(),
        &b.operand().unwrap(),
        Some(qkernels::cpu::Bias::F16(&bias_v)),
    )
    .unwrap();
    assert_eq!(got, want.iter().map(|v| v.to_f32()).collect::<Vec<_>>());

    // Without meta.json the folder is read by the shapes of its files.
    std::fs::remove_file(qa.join("meta.json")).unwrap();
    std::fs::remove_file(qb.join("meta.json")).unwrap();
    let o = run(&["--out-dtype", "f32"]);
    assert!(o.status.success(), "{}", stderr_of(&o));

    // Raw integer folders (q.npy only): i32 output only.
    std::fs::remove_file(qb.join("scale.npy")).unwrap();
    let o = run(&["--out-dtype", "f32"]);
    assert!(!o.status.success());
    assert!(stderr_of(&o).contains("i32"), "{}", stderr_of(&o));
    let o = run(&["--out-dtype", "i32"]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let (yi, _) = npy::read_int(&y).unwrap();
    assert_eq!(yi.shape, vec![m, n]);

    // --kernel names a GPU configuration: an unknown name is an error that lists them, and
    // on the CPU path any name is an error (never the CPU reference in its place).
    let o = run(&["--out-dtype", "i32", "--kernel", "sm80 64x64"]);
    assert!(!o.status.success());
    assert!(stderr_of(&o).contains("\"sm80 decode 8x16\""), "{}", stderr_of(&o));
    let o = run(&["--out-dtype", "i32", "--kernel", "sm80 128x128"]);
    assert!(!o.status.success());
    assert!(stderr_of(&o).contains("CPU path"), "{}", stderr_of(&o));

    // A bias of the wrong length is an error with one line.
    npy::write(&bias, &[1.0f32; 3], &[3]).unwrap();
    let o = run(&["--out-dtype", "f32", "--bias", s(&bias)]);
    assert!(!o.status.success());
    assert_eq!(stderr_of(&o).lines().count(), 1);
}

fn npy_f32(p: &Path) -> Vec<f32> {
    match npy::read_float_matrix(p).unwrap().0 {
        npy::FloatData::F32(v) => v,
        npy::FloatData::F16(_) => panic!("f32 expected"),
    }
}

fn affine_row() -> qkernels::QuantSpec {
    qkernels::QuantSpec::affine(qkernels::IntType::U8, qkernels::Granularity::Row).unwrap()
}

fn sym_row() -> qkernels::QuantSpec {
    qkernels::QuantSpec::symmetric(qkernels::Granularity::Row).unwrap()
}

/// `qk gemm --out-dtype i8/u8` writes what `qk quantize` makes of the f32 output with the same
/// static per-tensor parameters (the contract's requantization), file for file, on the CPU
/// and (with a GPU) on the device; the folder is the next GEMM's A. Misplaced or missing
/// requantization flags are one-line errors.
#[test]
fn gemm_requantized_output_is_the_quantized_f32_output() {
    let d = tmp("requant");
    let (m, n, k) = (7, 32, 48);
    let [_, xb, qa, qb] = gemm_operands(&d, (m, n, k), 3);
    let bias = d.join("bias.npy");
    npy::write(&bias, &(0..n).map(|i| i as f32 * 0.25 - 3.0).collect::<Vec<_>>(), &[n]).unwrap();
    let gemm = |extra: &[&str]| {
        let base = ["gemm", "--a", s(&qa), "--b", s(&qb), "--bias", s(&bias)];
        qk(&[&base[..], extra].concat())
    };
    let y = d.join("y.npy");
    let o = gemm(&["--out-dtype", "f32", "--out", s(&y), "--device", "cpu"]);
    assert!(o.status.success(), "{}", stderr_of(&o));

    let mut devices = vec!["cpu"];
    if common::gpu().is_some() {
        devices.push("cuda");
    }
    // (gemm's flags, quantize's flags for the same output); a coarse scale saturates some.
    // (gemm's flags; quantize's scheme and flags for the same output); a coarse scale
    // saturates some.
    let cases: [(&[&str], &str, &[&str]); 4] = [
        (&["i8", "--out-scale", "0.05"], "symmetric", &["--scale", "0.05"]),
        (&["i8", "--out-scale", "0.5"], "symmetric", &["--scale", "0.5"]),
        (
            &["u8", "--out-scale", "0.04", "--out-zero-point", "120"],
            "affine",
            &["--dtype", "u8", "--scale", "0.04", "--zero-point", "120"],
        ),
        (
            &[
                "u8",
                "--out-scheme",
                "min-offset",
                "--out-scale",
                "0.05",
                "--out-offset",
                "-6.5",
            ],
            "min-offset",
            &["--scale", "0.05", "--offset", "-6.5"],
        ),
    ];
    for (i, (g, scheme, q)) in cases.iter().enumerate() {
        let want = d.join(format!("want-{i}"));
        quantize_cpu(&y, &want, scheme, "tensor", q);
        for dev in &devices {
            let got = d.join(format!("got-{i}-{dev}"));
            let o = gemm(&[&["--out", s(&got), "--device", dev, "--out-dtype"][..], g].concat());
            assert!(o.status.success(), "case {i} {dev}: {}", stderr_of(&o));
            // The same files (absent from both, or the same bytes).
            for f in ["q.npy", "scale.npy", "zero_point.npy", "offset.npy", "meta.json"] {
                let read = |dir: &Path| std::fs::read(dir.join(f)).ok();
                assert_eq!(read(&want), read(&got), "case {i} {dev}: {f}");
            }
        }
    }
    // The i8 output is the next GEMM's A ([M, N] times a [3, N] B).
    let xc = d.join("c.npy");
    npy::write(&xc, &qkernels::bench::random_f32(3 * n, 5, 1.0), &[3, n]).unwrap();
    let qc = d.join("qc");
    quantize_cpu(&xc, &qc, "symmetric", "row", &[]);
    let y2 = d.join("y2.npy");
    let got0 = d.join("got-0-cpu");
    let o = qk(&[
        "gemm",
        "--a",
        s(&got0),
        "--b",
        s(&qc),
        "--out-dtype",
        "f32",
        "--out",
        s(&y2),
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let (_, r, c) = npy::read_float_matrix(&y2).unwrap();
    assert_eq!((r, c), (m, 3));

    // Errors, each one line naming what to change.
    let out = d.join("bad");
    for (extra, says) in [
        (&["--out-dtype", "i8"][..], "--out-scale"),
        (&["--out-dtype", "f32", "--out-scale", "0.1"][..], "i8 or u8 only"),
        (&["--out-dtype", "bf16", "--allow-nonfinite"][..], "i8 or u8 only"),
        (
            &["--out-dtype", "i8", "--out-scale", "0.1", "--out-zero-point", "3"][..],
            "Symmetric quantization takes a scale only",
        ),
        (
            &["--out-dtype", "u8", "--out-scale", "0.1", "--out-scheme", "symmetric"][..],
            "int8: i8, not u8",
        ),
        (
            &["--out-dtype", "i8", "--out-scale", "0.1", "--out-scheme", "min-offset"][..],
            "u8, not i8",
        ),
        (
            &[
                "--out-dtype",
                "u8",
                "--out-scale",
                "0.1",
                "--out-scheme",
                "min-offset",
                "--out-offset",
                "1",
                "--out-zero-point",
                "3",
            ][..],
            "zero points belong to Affine",
        ),
        (&["--out-dtype", "i8", "--out-scale", "-1"][..], "positive"),
        (
            &["--out-dtype", "u8", "--out-scale", "0.1", "--out-scheme", "min-offset"][..],
            "needs offsets",
        ),
        (&["--out-dtype", "i8", "--out-scale", "0"][..], "scale"),
        (&["--out-dtype", "i8", "--out-scale", "1e30"][..], "2^64"),
    ] {
        let o = gemm(&[&["--out", s(&out), "--device", "cpu"][..], extra].concat());
        assert!(!o.status.success(), "{extra:?} succeeded");
        let err = stderr_of(&o);
        assert_eq!(err.lines().count(), 1, "{extra:?}: {err}");
        assert!(err.contains(says), "{extra:?}: {err}");
    }
    // Scales whose product overflows f32: the non-finite results are an error unless
    // --allow-nonfinite, which writes their defined values and says how many there were.
    let big = d.join("big");
    std::fs::create_dir_all(&big).unwrap();
    npy::write(&big.join("q.npy"), &vec![100i8; 2 * k], &[2, k]).unwrap();
    npy::write(&big.join("scale.npy"), &[3e38f32, 1e-3], &[2]).unwrap();
    let run_big = |extra: &[&str]| {
        let base = [
            "gemm",
            "--a",
            s(&big),
            "--b",
            s(&qb),
            "--out",
            s(&out),
            "--device",
            "cpu",
        ];
        qk(&[&base[..], &["--out-dtype", "i8", "--out-scale", "0.1"], extra].concat())
    };
    let o = run_big(&[]);
    assert!(!o.status.success());
    assert!(stderr_of(&o).contains("non-finite"), "{}", stderr_of(&o));
    let o = run_big(&["--allow-nonfinite"]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("non-finite result"), "{}", stderr_of(&o));
    // The count is the library's, from the CPU reference of the same GEMM: the folder's A is
    // Symmetric per row (a scale per row, no meta.json), B as `qk quantize` wrote it.
    let a_big =
        qkernels::cpu::HostQuantized::from_parts(sym_row(), 2, k, vec![100u8; 2 * k], vec![3e38, 1e-3], None, None)
            .unwrap();
    let b_q = qkernels::cpu::quantize(&npy_f32(&xb), n, k, sym_row(), None, false).unwrap();
    let params = qkernels::QuantParams {
        scales: vec![0.1],
        zero_points: None,
        offsets: None,
    };
    let tensor = qkernels::QuantSpec::symmetric(qkernels::Granularity::Tensor).unwrap();
    let (ao, bo) = (a_big.operand().unwrap(), b_q.operand().unwrap());
    let want = qkernels::cpu::gemm_quantized(&ao, &bo, None, tensor, &params, true).unwrap();
    assert!(want.nonfinite > 0);
    let meta = std::fs::read_to_string(out.join("meta.json")).unwrap();
    assert!(meta.contains(&format!("\"nonfinite\": {}", want.nonfinite)), "{meta}");
}
