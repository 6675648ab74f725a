//! The `qk` command line end to end, on the CPU path (`--device cpu`) so it runs anywhere;
//! with a GPU, `--device cuda` must write the same files.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use qkernels::npy;

fn qk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qk"))
        .args(args)
        .output()
        .expect("run qk")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("qk-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const X: [f32; 9] = [1.21, -1.31, 0.22, 0.83, 2.11, -1.53, 0.79, -0.54, 0.84];

fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn quantize_and_dequantize_the_worked_example() {
    let d = tmp("example");
    let x = d.join("x.npy");
    npy::write(&x, &X, &[3, 3]).unwrap();
    let out = d.join("q");
    let o = qk(&[
        "quantize",
        s(&x),
        "--out",
        s(&out),
        "--scheme",
        "symmetric",
        "--granularity",
        "tensor",
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr_of(&o));
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
    let d = tmp("static");
    let x = d.join("x.npy");
    npy::write(&x, &X, &[3, 3]).unwrap();
    let zp = d.join("zp.npy");
    npy::write(&zp, &[10i32, 20, 30], &[3]).unwrap();
    let out = d.join("q");
    let o = qk(&[
        "quantize",
        s(&x),
        "--out",
        s(&out),
        "--scheme",
        "affine",
        "--dtype",
        "u8",
        "--granularity",
        "row",
        "--scale",
        "0.05",
        "--zero-point",
        s(&zp),
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr_of(&o));
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
fn gpu_writes_the_same_files() {
    let Some(_g) = common::gpu() else { return };
    let d = tmp("gpu");
    let x = d.join("x.npy");
    let v = common::random_f32(37 * 64, 5, 2.0);
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
