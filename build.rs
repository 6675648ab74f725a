//! Build script: compiles `kernels/*.cu` with nvcc (through the `cc` crate in CUDA mode)
//! into one static library for sm_80, sm_89 and sm_90a plus compute_80 PTX, with cudart
//! linked statically.
//!
//! - nvcc is looked up in `NVCC`, `CUDA_HOME`, `CUDA_PATH`, the folder that
//!   `scripts/install-cuda-toolchain.sh` fills (`.cuda/`), then `PATH`.
//! - Without nvcc the crate builds CPU-only (a cargo warning says so, and every GPU entry
//!   point returns `Error::NoCudaKernels`); `QKERNELS_REQUIRE_CUDA=1` makes that fatal.
//! - The `-Xptxas -v` report of every kernel is kept in `OUT_DIR/ptxas-report.txt` and in
//!   the build output; a kernel that spills or has a stack frame fails the build.
//! - On a compiler failure the whole nvcc command is printed.
//! - Objects are cached in `target/nvcc-cache/`, one per translation unit, keyed by its
//!   source, the headers, flags and compiler, so debug, release and clippy builds compile
//!   the kernels once, and editing one `.cu` file recompiles only that file.
//! - The translation units compile in parallel (one thread each); the Hopper GEMM is split
//!   in two by A's type so that its halves share the cores.

use std::collections::hash_map::DefaultHasher;
use std::env;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The device code targets: machine code for each architecture we test on, and PTX for
/// compute_80 so that newer chips can JIT the sm_80 paths.
const GENCODE: &[&str] = &[
    "-gencode=arch=compute_80,code=sm_80",
    "-gencode=arch=compute_89,code=sm_89",
    "-gencode=arch=compute_90a,code=sm_90a",
    "-gencode=arch=compute_80,code=compute_80",
];
/// Files whose name contains `_sm90` (`gemm_sm90.cu`, `gemm_sm90_a_s8.cu`, …) use wgmma,
/// setmaxnreg and TMA: sm_90a machine code only.
const GENCODE_SM90A: &[&str] = &["-gencode=arch=compute_90a,code=sm_90a"];
const ARCHS: &str = "sm_80,sm_89,sm_90a (+compute_80 PTX); wgmma GEMM: sm_90a";

/// The GENCODE entries to build: all of them, or those of the architectures listed in
/// `QKERNELS_ARCHS` (comma-separated, of sm_80, sm_89, sm_90a; the compute_80 PTX comes with
/// sm_80). `scripts/device-check.sh build` sets `sm_90a`: the Hopper machines run nothing
/// else, and every test binary carries the device code, so the bundle stays small.
fn gencode() -> Vec<&'static str> {
    let Ok(list) = env::var("QKERNELS_ARCHS") else {
        return GENCODE.to_vec();
    };
    let archs: Vec<&str> = list.split(',').map(str::trim).filter(|a| !a.is_empty()).collect();
    for a in &archs {
        assert!(
            ["sm_80", "sm_89", "sm_90a"].contains(a),
            "QKERNELS_ARCHS: unknown architecture {a:?} (expected sm_80, sm_89 or sm_90a)"
        );
    }
    let kept: Vec<&'static str> = GENCODE
        .iter()
        .copied()
        .filter(|g| {
            archs
                .iter()
                .any(|a| g.ends_with(&format!("code={a}")) || (*a == "sm_80" && g.ends_with("compute_80")))
        })
        .collect();
    assert!(!kept.is_empty(), "QKERNELS_ARCHS={list:?} selects no architecture");
    kept
}

fn main() {
    println!("cargo::rustc-check-cfg=cfg(qk_cuda)");
    println!("cargo:rerun-if-changed=kernels");
    for var in [
        "NVCC",
        "CUDA_HOME",
        "CUDA_PATH",
        "QKERNELS_REQUIRE_CUDA",
        "QKERNELS_ARCHS",
        "PATH",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let rev = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(&manifest)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=QK_BUILD_GIT_REV={rev}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let require = env::var("QKERNELS_REQUIRE_CUDA").is_ok_and(|v| v == "1");

    let Some(nvcc) = find_nvcc(&manifest) else {
        let reason = "nvcc not found (set NVCC or CUDA_HOME, or run scripts/install-cuda-toolchain.sh)";
        if require {
            panic!("QKERNELS_REQUIRE_CUDA=1 but {reason}");
        }
        println!("cargo:warning=qkernels: building CPU-only: {reason}");
        println!("cargo:rustc-env=QK_CPU_ONLY_REASON=built without CUDA kernels: {reason}");
        return;
    };
    compile_kernels(&manifest, &nvcc);
    println!("cargo:rustc-cfg=qk_cuda");
    let archs = match env::var("QKERNELS_ARCHS") {
        Ok(list) => format!("{list} (QKERNELS_ARCHS); wgmma GEMM: sm_90a"),
        Err(_) => ARCHS.to_string(),
    };
    println!("cargo:rustc-env=QK_CUDA_ARCHS={archs}");
}

fn find_nvcc(manifest: &Path) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(p) = env::var_os("NVCC") {
        candidates.push(PathBuf::from(p));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(p) = env::var_os(var) {
            candidates.push(PathBuf::from(p).join("bin/nvcc"));
        }
    }
    candidates.push(manifest.join(".cuda/py/nvidia/cu13/bin/nvcc"));
    if let Some(path) = env::var_os("PATH") {
        candidates.extend(env::split_paths(&path).map(|d| d.join("nvcc")));
    }
    candidates.into_iter().find(|p| p.is_file())
}

fn kernel_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            kernel_sources(&p, out);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("cu" | "cuh" | "h")) {
            out.push(p);
        }
    }
}

fn compile_kernels(manifest: &Path, nvcc: &Path) {
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let cuda_root = nvcc
        .parent()
        .and_then(Path::parent)
        .expect("nvcc lives in <root>/bin")
        .to_path_buf();
    let kernels = manifest.join("kernels");

    let mut build = cc::Build::new();
    build
        .cuda(true)
        .cudart("static")
        .compiler(nvcc)
        .no_default_flags(true)
        .warnings(false)
        .flag("-Xcompiler=-fPIC")
        .flag("-std=c++20")
        .flag("-O3")
        .flag("-fmad=false")
        .flag("-Xptxas=-v")
        .flag("-Xptxas=-warn-spills")
        .flag("-Xcudafe=--display_error_number");
    let base_cmd = build.get_compiler().to_command();

    let mut sources = Vec::new();
    kernel_sources(&kernels, &mut sources);
    let (units, headers): (Vec<&PathBuf>, Vec<&PathBuf>) =
        sources.iter().partition(|p| p.extension().is_some_and(|e| e == "cu"));
    // A unit's object is keyed by the compiler, the flags, every header (any unit may
    // include any of them) and the unit itself: editing one .cu file recompiles that file
    // only.
    let mut hasher = DefaultHasher::new();
    base_cmd.get_program().hash(&mut hasher);
    base_cmd.get_args().for_each(|a| a.hash(&mut hasher));
    let hash_file = |h: &mut DefaultHasher, s: &Path| {
        s.strip_prefix(manifest).unwrap_or(s).hash(h);
        fs::read(s).unwrap_or_default().hash(h);
    };
    for s in &headers {
        hash_file(&mut hasher, s);
    }
    let gencode = gencode();
    let cache = out_dir.ancestors().nth(4).unwrap_or(&out_dir).join("nvcc-cache");
    fs::create_dir_all(&cache).expect("create target/nvcc-cache");

    let results: Vec<(PathBuf, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = units
            .iter()
            .map(|src| {
                let stem = src.file_stem().and_then(|s| s.to_str()).unwrap_or("kernel").to_string();
                let arch = if stem.contains("_sm90") {
                    GENCODE_SM90A
                } else {
                    &gencode[..]
                };
                let mut h = hasher.clone();
                arch.hash(&mut h);
                hash_file(&mut h, src);
                let key = h.finish();
                let obj = cache.join(format!("{stem}-{key:016x}.o"));
                let report = cache.join(format!("{stem}-{key:016x}.ptxas.txt"));
                let mut cmd = build.get_compiler().to_command();
                cmd.args(arch);
                cmd.arg("-c").arg(src.as_path()).arg("-o").arg(&obj);
                scope.spawn(move || compile_one(cmd, &obj, &report))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("nvcc thread")).collect()
    });

    let mut full_report = String::new();
    let mut objects = Vec::new();
    for (obj, report) in results {
        full_report.push_str(&report);
        objects.push(obj);
    }
    fs::write(out_dir.join("ptxas-report.txt"), &full_report).expect("write ptxas report");
    for line in full_report.lines() {
        println!("ptxas: {line}");
    }
    check_resources(&full_report);

    cc::Build::new()
        .cuda(true)
        .cudart("static")
        .compiler(nvcc)
        .objects(&objects)
        .compile("qkernels_cuda");
    for lib in ["lib64", "lib", "targets/x86_64-linux/lib"] {
        let dir = cuda_root.join(lib);
        if dir.join("libcudart_static.a").is_file() {
            println!("cargo:rustc-link-search=native={}", dir.display());
        }
    }
    for lib in ["dl", "rt", "pthread"] {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
}

/// Compiles one translation unit unless the cache holds it; returns the object and the
/// ptxas report.
fn compile_one(mut cmd: Command, obj: &Path, report: &Path) -> (PathBuf, String) {
    if obj.is_file() && report.is_file() {
        return (obj.to_path_buf(), fs::read_to_string(report).unwrap_or_default());
    }
    let shown = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("failed to run nvcc: {e}\ncommand: {shown}"));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        panic!("nvcc failed ({})\ncommand: {shown}\n{stdout}\n{stderr}", output.status);
    }
    let tmp = report.with_extension("tmp");
    fs::write(&tmp, &stderr).expect("write ptxas report");
    fs::rename(&tmp, report).expect("move ptxas report");
    (obj.to_path_buf(), stderr)
}

/// A kernel that spills registers or needs a stack frame (local memory) is a defect.
fn check_resources(report: &str) {
    let mut function = "";
    let mut bad = Vec::new();
    for line in report.lines() {
        if let Some(rest) = line.split("Function properties for ").nth(1) {
            function = rest.trim();
        }
        if line.contains("bytes stack frame") {
            let numbers: Vec<u64> = line
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .filter_map(|s| s.parse().ok())
                .collect();
            if numbers.iter().any(|&n| n > 0) {
                bad.push(format!("{function}: {}", line.trim()));
            }
        }
    }
    if !bad.is_empty() {
        panic!("kernels use local memory (spills or stack frames):\n{}", bad.join("\n"));
    }
}
