//! `qk bench gemm`: our INT8 GEMM against cuBLASLt INT8 (i8·i8 → i32, TN, best of the
//! heuristic's algorithms with a 32 MiB workspace) and cuBLAS BF16 on the same shapes, in
//! one process on one card, plus an empty launch and the copy bandwidth. Medians of
//! CUDA-event timings after warm-up, inputs rotated through enough copies to exceed L2.
//! Without a GPU it times the CPU reference and says so.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use cudarc::driver::{CudaSlice, CudaView};
use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use qkernels::bench::{Candidate, copy_gbps, median, random_bytes, time_interleaved, time_us};
use qkernels::cpu::{self, RawMatrix};
use qkernels::cuda::baseline::{Bf16Gemm, LtInt8};
use qkernels::cuda::{self, DeviceBias, DeviceOperand, DeviceQuantized, GemmKernel, GemmPath, Gpu};
use qkernels::gemm::{OperandMeta, OutType, ParamLayout};
use qkernels::{Error, Granularity, IntType, QuantParams, QuantSpec, Result, Scheme, bf16};
use serde::Serialize;

use crate::bench::{date_utc, git_rev};

/// Dense INT8 tensor-core peak of H100/H200 SXM (TOPS), the reference for "% of peak".
const PEAK_TOPS: f64 = 1979.0;
const SQUARES: [usize; 3] = [4096, 8192, 16384];
const LLM_M: [usize; 7] = [1, 16, 128, 512, 1024, 2048, 4096];
const LLM_NK: [(usize, usize); 8] = [
    (4096, 4096),
    (6144, 4096),
    (14336, 4096),
    (4096, 14336),
    (13824, 5120),
    (5120, 13824),
    (28672, 8192),
    (8192, 28672),
];

#[derive(Serialize, Clone)]
struct Row {
    m: usize,
    n: usize,
    k: usize,
    /// The dispatcher's pick for this shape (`GemmPath::Auto`) with i32 out, which
    /// `ours_i32_us` times.
    kernel: String,
    /// Its pick with a float epilogue (bf16 and requantized i8 out), which
    /// `ours_bf16_fused_us` and `ours_i8_requant_us` time.
    kernel_float_out: String,
    ours_i32_us: f64,
    /// The forced paths' picks (`GemmPath::Sm80`, `GemmPath::Sm90`), i32 out.
    sm80_i32_us: f64,
    /// `None` where the wgmma path does not run (not Hopper, the problem is declined, or
    /// `--skip-sm90`).
    sm90_i32_us: Option<f64>,
    ours_bf16_fused_us: f64,
    /// The same epilogue requantized to i8 (static per-tensor Symmetric), the output's row
    /// sums included (a second launch, which also writes the parameters and the count): what
    /// a layer whose output feeds the next INT8 GEMM runs.
    ours_i8_requant_us: f64,
    /// The INT8 linear layer from bf16 activations (`Out::Layer`): dynamic per-token
    /// quantize, then the GEMM with bf16 out through the float-epilogue pick.
    ours_layer_us: f64,
    cublaslt_i8_us: f64,
    cublaslt_algos_tried: usize,
    cublas_bf16_us: f64,
    ours_tops: f64,
    percent_of_peak: f64,
    /// cuBLASLt time / our time (> 1: we are faster).
    vs_cublaslt: f64,
    /// cuBLAS BF16 time / our time.
    vs_cublas_bf16: f64,
    /// cuBLAS BF16 time / our layer's time: the speedup an inference server sees when an
    /// INT8 layer (activations quantized on the fly) replaces a BF16 GEMM.
    layer_vs_cublas_bf16: f64,
    /// Our bf16-out (scales + bias) time / our i32-out time − 1: what a caller pays for the
    /// fused epilogue, each through its pick (`kernel_float_out` and `kernel`, which differ
    /// on some shapes since the float-epilogue rule; earlier sweeps compared one kernel).
    fused_epilogue_cost: f64,
    /// Our i8-out (requantized) time / our i32-out time − 1 (picks as above).
    requant_epilogue_cost: f64,
    /// M ≤ 16: weight bytes per second of our kernel, and that over the copy bandwidth.
    weight_gbps: Option<f64>,
    weight_fraction_of_copy: Option<f64>,
    /// Why a baseline (or, with `--all-kernels`, a configuration) has no time for this
    /// shape (its time fields are then null or absent).
    baseline_errors: Vec<String>,
    /// `--all-kernels`: i32-out time of every configuration that accepts the shape, all
    /// timed in the same rounds.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    kernels_i32_us: BTreeMap<String, f64>,
    /// `--all-kernels`: bf16-out time (the fused epilogue, as `ours_bf16_fused_us`) of the
    /// two configurations fastest in i32 out, the float-epilogue pick, ping-pong (plain and
    /// staged-i32, one kernel with bf16 out) and the fastest configuration that is not
    /// ping-pong...
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    kernels_bf16_fused_us: BTreeMap<String, f64>,
    /// ...and their i32-out time in the same rounds, which the bf16 times compare with.
    /// NOTE: a configuration's time depends on what it is timed with (the card's clocks
    /// under sustained load): in the committed sweeps of 2026-11-27, which put these times
    /// in `kernels_i32_us`, the dispatcher's 128×256 pick read 17–33% slower here (four of
    /// the heaviest GEMMs in turn) than in the main table at 4096×8192×28672, 6–23% at
    /// 4096×28672×8192, 2–14% at 16384³, within a few percent elsewhere; times of
    /// different rounds do not compare.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    kernels_bf16_pair_i32_us: BTreeMap<String, f64>,
}

#[derive(Serialize)]
struct Report {
    tool: &'static str,
    backend: String,
    device: String,
    git_rev: String,
    date_utc: String,
    /// The device's multiprocessors (the persistent grids' size; the dispatcher's input).
    sms: Option<usize>,
    /// The device's L2 size in MiB (the dispatcher's input too: the float-epilogue rule).
    l2_mib: Option<usize>,
    peak_tops: f64,
    copy_gbps: Option<f64>,
    empty_launch_us: Option<f64>,
    rows: Vec<Row>,
    /// The targets, over the sweep (absent until the sweep is complete).
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<Summary>,
    note: String,
}

/// Geometric means over the prefill shapes (M 512–4096, not the squares) and the decode
/// shapes (M ≤ 16), each over the shapes whose baseline has a time.
#[derive(Serialize, Debug, PartialEq)]
struct Summary {
    prefill_vs_cublaslt: Option<f64>,
    prefill_vs_cublas_bf16: Option<f64>,
    /// The fused bf16-out GEMM against cuBLAS BF16, both bf16 out: what replaces a BF16
    /// GEMM whose activations are already quantized (the i32-out ratio above compares the
    /// bare tensor-core work).
    prefill_bf16_out_vs_cublas_bf16: Option<f64>,
    decode_vs_cublaslt: Option<f64>,
    /// The INT8 layer (quantize + GEMM, bf16 out) against cuBLAS BF16.
    prefill_layer_vs_cublas_bf16: Option<f64>,
    decode_layer_vs_cublas_bf16: Option<f64>,
    /// Median over all shapes of bf16-out (fused epilogue) / i32-out − 1.
    fused_epilogue_cost_median: Option<f64>,
    /// Median over all shapes of i8-out (requantized, row sums included) / i32-out − 1.
    requant_epilogue_cost_median: Option<f64>,
    /// `--all-kernels`: the prefill ratios if every shape ran its fastest configuration
    /// (what the dispatcher can reach with the configurations there are).
    prefill_best_config_vs_cublaslt: Option<f64>,
    prefill_best_config_vs_cublas_bf16: Option<f64>,
    /// `--all-kernels`: the decode ratio if every decode shape ran its fastest configuration.
    decode_best_config_vs_cublaslt: Option<f64>,
}

fn geomean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((0.0, 0usize), |(s, n), v| (s + v.ln(), n + 1));
    (n > 0).then(|| (sum / n as f64).exp())
}

fn summarize(rows: &[Row]) -> Summary {
    let squares = |r: &&Row| r.m == r.n && r.n == r.k;
    let prefill: Vec<&Row> = rows
        .iter()
        .filter(|r| (512..=4096).contains(&r.m) && !squares(r))
        .collect();
    let decode: Vec<&Row> = rows.iter().filter(|r| r.m <= 16).collect();
    // The fastest of the sweep and the main table, over a set of rows that all have a sweep.
    let best = |r: &Row| {
        r.kernels_i32_us
            .values()
            .copied()
            .fold(f64::INFINITY, f64::min)
            .min(r.ours_i32_us)
    };
    let swept = |set: &[&Row]| !set.is_empty() && set.iter().all(|r| !r.kernels_i32_us.is_empty());
    let best_vs = |set: &[&Row], base: fn(&Row) -> f64| {
        swept(set)
            .then(|| geomean(set.iter().map(|r| base(r) / best(r))))
            .flatten()
    };
    let median_of = |cost: fn(&Row) -> f64| {
        let mut costs: Vec<f64> = rows.iter().map(cost).filter(|c| c.is_finite()).collect();
        costs.sort_by(f64::total_cmp);
        (!costs.is_empty()).then(|| costs[costs.len() / 2])
    };
    Summary {
        prefill_vs_cublaslt: geomean(prefill.iter().map(|r| r.vs_cublaslt)),
        prefill_vs_cublas_bf16: geomean(prefill.iter().map(|r| r.vs_cublas_bf16)),
        prefill_bf16_out_vs_cublas_bf16: geomean(prefill.iter().map(|r| r.cublas_bf16_us / r.ours_bf16_fused_us)),
        decode_vs_cublaslt: geomean(decode.iter().map(|r| r.vs_cublaslt)),
        prefill_layer_vs_cublas_bf16: geomean(prefill.iter().map(|r| r.layer_vs_cublas_bf16)),
        decode_layer_vs_cublas_bf16: geomean(decode.iter().map(|r| r.layer_vs_cublas_bf16)),
        fused_epilogue_cost_median: median_of(|r| r.fused_epilogue_cost),
        requant_epilogue_cost_median: median_of(|r| r.requant_epilogue_cost),
        prefill_best_config_vs_cublaslt: best_vs(&prefill, |r| r.cublaslt_i8_us),
        prefill_best_config_vs_cublas_bf16: best_vs(&prefill, |r| r.cublas_bf16_us),
        decode_best_config_vs_cublaslt: best_vs(&decode, |r| r.cublaslt_i8_us),
    }
}

fn print_summary(s: &Summary) {
    let x = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}x"));
    let pct = |v: Option<f64>| v.map_or("-".into(), |c| format!("{:+.1}%", 100.0 * c));
    println!(
        "\nprefill (M 512-4096) geometric mean: {} cuBLASLt INT8, {} cuBLAS BF16 ({} with bf16 out); decode \
         (M <= 16): {} cuBLASLt; epilogue median: fused bf16-out {}, requantized i8-out {}",
        x(s.prefill_vs_cublaslt),
        x(s.prefill_vs_cublas_bf16),
        x(s.prefill_bf16_out_vs_cublas_bf16),
        x(s.decode_vs_cublaslt),
        pct(s.fused_epilogue_cost_median),
        pct(s.requant_epilogue_cost_median)
    );
    println!(
        "INT8 layer (per-token quantize + GEMM, bf16 out) against cuBLAS BF16: prefill {}, decode {}",
        x(s.prefill_layer_vs_cublas_bf16),
        x(s.decode_layer_vs_cublas_bf16)
    );
    if s.prefill_best_config_vs_cublaslt.is_some() || s.decode_best_config_vs_cublaslt.is_some() {
        println!(
            "with each shape's fastest configuration: prefill {} cuBLASLt INT8, {} cuBLAS BF16; decode {} cuBLASLt",
            x(s.prefill_best_config_vs_cublaslt),
            x(s.prefill_best_config_vs_cublas_bf16),
            x(s.decode_best_config_vs_cublaslt)
        );
    }
}

/// The shapes `qk bench gemm` sweeps: squares and the LLM (N, K) pairs at every M, or with
/// `quick` a handful of them.
pub fn shapes(quick: bool) -> Vec<(usize, usize, usize)> {
    if quick {
        return vec![
            (8192, 8192, 8192),
            (1, 4096, 4096),
            (16, 14336, 4096),
            (512, 4096, 4096),
            (4096, 14336, 4096),
        ];
    }
    let mut v: Vec<_> = SQUARES.iter().map(|&s| (s, s, s)).collect();
    for &(n, k) in &LLM_NK {
        for &m in &LLM_M {
            v.push((m, n, k));
        }
    }
    v
}

fn raw_meta(rows: usize, k: usize) -> OperandMeta {
    OperandMeta {
        int_type: IntType::I8,
        rows,
        cols: k,
        scheme: None,
        scale: ParamLayout::None,
        zero_point: ParamLayout::None,
        offset: ParamLayout::None,
    }
}

fn scaled_meta(rows: usize, k: usize) -> OperandMeta {
    OperandMeta {
        scheme: Some(Scheme::Symmetric),
        scale: ParamLayout::PerRow,
        ..raw_meta(rows, k)
    }
}

/// Raw i8 operand (no zero point: the zero row sums are never read).
fn raw<'a>(data: CudaView<'a, u8>, zeros: &'a CudaSlice<i32>, rows: usize, k: usize) -> Result<DeviceOperand<'a>> {
    DeviceOperand::new(raw_meta(rows, k), data, None, None, None, zeros.as_view())
}

/// Symmetric i8 operand with per-row scales.
fn scaled<'a>(
    data: CudaView<'a, u8>,
    scales: &'a CudaSlice<f32>,
    zeros: &'a CudaSlice<i32>,
    rows: usize,
    k: usize,
) -> Result<DeviceOperand<'a>> {
    DeviceOperand::new(
        scaled_meta(rows, k),
        data,
        Some(scales.as_view()),
        None,
        None,
        zeros.as_view(),
    )
}

/// One copy of the inputs of a shape.
struct Inputs {
    a: CudaSlice<u8>,
    b: CudaSlice<u8>,
    a16: CudaSlice<bf16>,
    b16: CudaSlice<bf16>,
}

/// What one shape's timed runs share: the inputs (rotated, one copy per run whichever
/// candidate runs), the outputs and the operands' parameters.
#[derive(Clone, Copy)]
struct Work<'a> {
    g: &'a Gpu,
    m: usize,
    n: usize,
    k: usize,
    inputs: &'a [Inputs],
    next: &'a Cell<usize>,
    y32: &'a RefCell<CudaSlice<i32>>,
    y16: &'a RefCell<CudaSlice<bf16>>,
    y8: &'a RefCell<DeviceQuantized>,
    /// The activations quantized per token (`Out::Layer`).
    xq: &'a RefCell<DeviceQuantized>,
    /// The i8 output's static per-tensor parameters.
    requant: &'a QuantParams,
    /// (A, B): zero row sums (never read: no zero points) and per-row scales.
    zeros: (&'a CudaSlice<i32>, &'a CudaSlice<i32>),
    scales: (&'a CudaSlice<f32>, &'a CudaSlice<f32>),
    bias: &'a CudaSlice<f32>,
}

impl<'a> Work<'a> {
    /// The next copy of the inputs.
    fn input(&self) -> &'a Inputs {
        let i = self.next.get();
        self.next.set(i + 1);
        &self.inputs[i % self.inputs.len()]
    }

    fn lt_run(&self, lt: &mut LtInt8, algo: usize) -> Result<()> {
        let x = self.input();
        lt.run(&self.g.stream, algo, &x.a, &x.b, &mut *self.y32.borrow_mut())
    }

    /// One configuration, pinned: i32 out from raw operands (as cuBLASLt), or with
    /// per-token × per-channel scales and the bias, bf16 out or requantized i8 out, or the
    /// whole INT8 linear layer from bf16 activations (`Out::Layer`).
    fn kernel(self, kernel: GemmKernel, out: Out) -> Candidate<'a> {
        let Work { m, n, k, .. } = self;
        Box::new(move || {
            let s = &self.g.stream;
            let x = self.input();
            if out == Out::I32 {
                let a = raw(x.a.as_view(), self.zeros.0, m, k)?;
                let b = raw(x.b.as_view(), self.zeros.1, n, k)?;
                return cuda::gemm_into_kernel(s, &a, &b, None, &mut *self.y32.borrow_mut(), kernel);
            }
            let b = scaled(x.b.as_view(), self.scales.1, self.zeros.1, n, k)?;
            let bias = DeviceBias::F32(self.bias.as_view());
            if out == Out::Layer {
                let xq = &mut *self.xq.borrow_mut();
                cuda::quantize_into(s, &x.a16, m, k, None, xq)?;
                let y16 = &mut *self.y16.borrow_mut();
                return cuda::gemm_into_kernel(s, &xq.operand()?, &b, Some(&bias), y16, kernel);
            }
            let a = scaled(x.a.as_view(), self.scales.0, self.zeros.0, m, k)?;
            if out == Out::Bf16 {
                cuda::gemm_into_kernel(s, &a, &b, Some(&bias), &mut *self.y16.borrow_mut(), kernel)
            } else {
                let y = &mut *self.y8.borrow_mut();
                cuda::gemm_quantized_into_kernel(s, &a, &b, Some(&bias), self.requant, y, kernel)
            }
        })
    }
}

/// The output a timed run writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Out {
    /// Raw i8·i8 → i32, as cuBLASLt.
    I32,
    /// Scales and bias, bf16 out (the fused epilogue).
    Bf16,
    /// Scales and bias, requantized to i8 (Symmetric, per tensor) with the row sums.
    I8,
    /// An INT8 linear layer as an inference server runs it: the bf16 activations quantized
    /// per token (dynamic Symmetric i8, `cuda::quantize_into`), then the GEMM with the
    /// per-channel weight scales and the bias, bf16 out: what replaces one cuBLAS BF16 GEMM.
    Layer,
}

/// Parses `--shape MxNxK` (each at least 1).
pub fn parse_shape(s: &str) -> std::result::Result<(usize, usize, usize), String> {
    let dims: Option<Vec<usize>> = s.split('x').map(|d| d.parse().ok().filter(|&d| d > 0)).collect();
    match dims.as_deref() {
        Some(&[m, n, k]) => Ok((m, n, k)),
        _ => Err(format!(
            "'{s}' is not MxNxK (three positive integers joined by x, e.g. 8192x8192x8192)"
        )),
    }
}

/// What `qk bench gemm` times besides the baselines.
#[derive(Clone, Copy, Debug, Default)]
pub struct GemmBenchOpts {
    /// Time the sm80 path only.
    pub skip_sm90: bool,
    /// Also time every kernel configuration that accepts each shape (i32 out), and the two
    /// fastest with bf16 out.
    pub all_kernels: bool,
    /// Leave the ping-pong configurations out of `all_kernels`.
    pub skip_pingpong: bool,
    /// Leave the decode kernel's configurations out of `all_kernels`.
    pub skip_decode: bool,
    /// Time this configuration, pinned, for every output instead of the dispatcher's picks
    /// (the forced paths' picks and the baselines still run beside it).
    pub kernel: Option<GemmKernel>,
}

impl GemmBenchOpts {
    /// Whether the options leave this configuration out (`--skip-sm90`, `--skip-pingpong`,
    /// `--skip-decode`).
    fn leaves_out(&self, kernel: GemmKernel) -> bool {
        match kernel {
            GemmKernel::Sm80Decode { .. } => self.skip_decode,
            GemmKernel::Sm90PingPong { .. } if self.skip_pingpong => true,
            k => k.wgmma() && self.skip_sm90,
        }
    }
}

/// Times `list` (M, N, K) on the GPU, or the CPU reference without one.
pub fn gemm(
    json: Option<&Path>,
    svg: Option<&Path>,
    list: &[(usize, usize, usize)],
    opts: GemmBenchOpts,
) -> Result<()> {
    match Gpu::new(0) {
        Ok(g) => gpu_gemm(&g, json, svg, list, opts),
        Err(e) => {
            println!("no usable CUDA device ({e}): benchmarking the CPU reference only, on its own small shapes");
            if opts.skip_sm90 || opts.all_kernels || opts.kernel.is_some() {
                println!("(--skip-sm90, --all-kernels and --kernel choose GPU kernels: nothing to do on the CPU)");
            }
            cpu_gemm(json)
        }
    }
}

fn gpu_gemm(
    g: &Gpu,
    json: Option<&Path>,
    svg: Option<&Path>,
    list: &[(usize, usize, usize)],
    opts: GemmBenchOpts,
) -> Result<()> {
    let s = &g.stream;
    let name = g.ctx.name()?;
    // The dispatcher's view of the card (its SM count and L2 size go into the report too).
    let info = cuda::DispatchInfo::for_device(&g.ctx, true)?;
    println!("device: {name}; git {}; {}", git_rev(), date_utc());
    let copy = copy_gbps(g)?;
    const BATCH: usize = 200;
    let empty = time_us(g, 2, 15, || {
        for _ in 0..BATCH {
            cuda::empty_kernel(s)?;
        }
        Ok(())
    })? / BATCH as f64;
    println!(
        "copy {copy:.1} GB/s, empty launch {empty:.2} µs, L2 {} MiB",
        info.l2_bytes >> 20
    );

    check_memory(g, list)?;
    let max_bytes = list.iter().map(|&(m, n, k)| (m.max(n)) * k).max().unwrap_or(0);
    let pool = random_bytes(max_bytes, 11);
    let pool16: Vec<bf16> = pool.iter().map(|&b| bf16::from_f32((b as i8) as f32 / 64.0)).collect();
    let bar = ProgressBar::new(list.len() as u64);
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}").map_err(|e| Error::Io(e.to_string()))?);
    let mut note = "ours i32 = raw i8·i8 → i32 like cuBLASLt, through the dispatcher's pick (Auto; the forced sm80 \
                    and sm90 paths' picks reported beside it); ours bf16 fused = per-token × per-channel scales + \
                    f32 bias → bf16, and ours i8 requant = the same → i8 (static per-tensor Symmetric) with the \
                    row-sum launch (which also writes the parameters and the non-finite count), both through \
                    the dispatcher's float-epilogue pick; ours layer = bf16 activations quantized per token \
                    (dynamic Symmetric i8) + the bf16-out GEMM; medians of CUDA-event timings, the candidates of \
                    a shape timed in turn (round-robin, so that clock drift under load falls on all alike), \
                    inputs rotated beyond 2× L2"
        .to_string();
    if let Some(k) = opts.kernel {
        note.push_str(&format!(
            "; PINNED: every \"ours\" column is the configuration {k} (--kernel), not the dispatcher's pick"
        ));
    }
    let mut report = Report {
        tool: "qk bench gemm",
        backend: "cuda".into(),
        device: name,
        git_rev: git_rev(),
        date_utc: date_utc(),
        sms: Some(info.sms),
        l2_mib: Some(info.l2_bytes >> 20),
        peak_tops: PEAK_TOPS,
        copy_gbps: Some(copy),
        empty_launch_us: Some(empty),
        rows: Vec::new(),
        summary: None,
        note,
    };
    for &(m, n, k) in list {
        bar.set_message(format!("{m}x{n}x{k}"));
        report
            .rows
            .push(bench_shape(g, (m, n, k), opts, info, copy, &pool, &pool16)?);
        // NOTE: rewritten after every shape, so a run cut short (a timeout, a failing
        // kernel) keeps what it measured.
        write(json, &report, false)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    print_table(&report.rows);
    if opts.all_kernels {
        print_kernels(&report.rows);
    }
    let summary = summarize(&report.rows);
    print_summary(&summary);
    report.summary = Some(summary);
    if let Some(p) = svg {
        plot(p, &report.rows, &report.device)?;
        println!("wrote {}", p.display());
    }
    write(json, &report, true)
}

/// Device bytes a shape's timing holds at once: one copy of the i8 and bf16 inputs (more
/// copies only while they fit in 2x L2) and the layer's quantized activations, the i32,
/// bf16 and i8 outputs and the per-row parameters; `None` when that overflows.
fn device_bytes((m, n, k): (usize, usize, usize)) -> Option<usize> {
    let inputs = m
        .checked_add(n)?
        .checked_mul(k)?
        .checked_mul(3)?
        .checked_add(m.checked_mul(k)?)?;
    let outputs = m.checked_mul(n)?.checked_mul(4 + 2 + 1)?;
    inputs.checked_add(outputs)?.checked_add((m + n).checked_mul(16)?)
}

/// An error naming the first shape whose buffers would not fit in the device's free memory
/// (the host's input pool is no larger), before anything is allocated.
fn check_memory(g: &Gpu, list: &[(usize, usize, usize)]) -> Result<()> {
    let (free, _) = g.ctx.mem_get_info()?;
    let gib = |b: usize| b as f64 / (1u64 << 30) as f64;
    for &(m, n, k) in list {
        match device_bytes((m, n, k)) {
            Some(b) if b <= free => {}
            b => {
                return Err(Error::Limit(format!(
                    "{m}x{n}x{k} needs {} of device memory for its inputs and outputs; {:.1} GiB are free",
                    b.map_or("more than 2^64 bytes".into(), |b| format!("{:.1} GiB", gib(b))),
                    gib(free)
                )));
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn bench_shape(
    g: &Gpu,
    (m, n, k): (usize, usize, usize),
    opts: GemmBenchOpts,
    info: cuda::DispatchInfo,
    copy: f64,
    pool: &[u8],
    pool16: &[bf16],
) -> Result<Row> {
    let s = &g.stream;
    let per_set = (m + n) * k;
    let sets = (2 * info.l2_bytes).div_ceil(per_set).clamp(1, 8);
    let mut inputs = Vec::new();
    for i in 0..sets {
        let off = (i * 4099) % (pool.len() - m.max(n) * k + 1);
        inputs.push(Inputs {
            a: s.clone_htod(&pool[off..off + m * k])?,
            b: s.clone_htod(&pool[off..off + n * k])?,
            a16: s.clone_htod(&pool16[off..off + m * k])?,
            b16: s.clone_htod(&pool16[off..off + n * k])?,
        });
    }
    let zeros_m = s.alloc_zeros::<i32>(m)?;
    let zeros_n = s.alloc_zeros::<i32>(n)?;
    let scale_m = s.clone_htod(&vec![0.01f32; m])?;
    let scale_n = s.clone_htod(&vec![0.02f32; n])?;
    let bias = s.clone_htod(&vec![0.5f32; n])?;
    let y32 = RefCell::new(s.alloc_zeros::<i32>(m * n)?);
    let y16 = RefCell::new(s.alloc_zeros::<bf16>(m * n)?);
    let y8 = RefCell::new(DeviceQuantized::alloc(
        s,
        QuantSpec::symmetric(Granularity::Tensor)?,
        m,
        n,
    )?);
    let xq = RefCell::new(DeviceQuantized::alloc(
        s,
        QuantSpec::symmetric(Granularity::Row)?,
        m,
        k,
    )?);
    // Outputs of 0.01 · 0.02 · acc + 0.5 (|acc| up to ~10^6 at K = 8192): some saturate.
    let requant = QuantParams {
        scales: vec![0.5],
        zero_points: None,
        offsets: None,
    };
    let (warm, iters) = if (m * n * k) as f64 > 1e12 { (1, 5) } else { (3, 15) };
    let next = Cell::new(0);
    let c = Work {
        g,
        m,
        n,
        k,
        inputs: &inputs,
        next: &next,
        y32: &y32,
        y16: &y16,
        y8: &y8,
        xq: &xq,
        requant: &requant,
        zeros: (&zeros_m, &zeros_n),
        scales: (&scale_m, &scale_n),
        bias: &bias,
    };

    let shape = qkernels::gemm::GemmShape { m, n, k };

    // The baselines: a shape a vendor library rejects is recorded (NaN time, the reason in
    // `baseline_errors`), not fatal to the sweep. cuBLASLt: each of the heuristic's
    // algorithms briefly, then the fastest in the timed rounds.
    let mut baseline_errors = Vec::new();
    let mut lt_tried = 0;
    let lt: Option<Candidate> = match LtInt8::new(s, m, n, k, 8) {
        Ok(mut lt) => {
            lt_tried = lt.algo_count();
            let mut best = (f64::INFINITY, 0);
            for algo in 0..lt_tried {
                if let Ok(t) = time_us(g, 1, 3, || c.lt_run(&mut lt, algo))
                    && t < best.0
                {
                    best = (t, algo);
                }
            }
            Some(Box::new(move || c.lt_run(&mut lt, best.1)))
        }
        Err(e) => {
            baseline_errors.push(format!("cuBLASLt INT8: {e}"));
            None
        }
    };
    let blas: Option<Candidate> = match Bf16Gemm::new(s) {
        Ok(blas) => Some(Box::new(move || {
            let x = c.input();
            blas.run(m, n, k, &x.a16, &x.b16, &mut *c.y16.borrow_mut())
        })),
        Err(e) => {
            baseline_errors.push(format!("cuBLAS BF16: {e}"));
            None
        }
    };

    // Ours: the dispatcher's picks (`Auto`, what a caller gets), i32 out (raw operands, as
    // cuBLASLt), bf16 out (the fused epilogue) and i8 out (requantized); and each forced
    // path's pick in i32 out where it is another configuration; timed in turn with the
    // baselines. A pick that the options leave out falls back to the sm80 path's (i32 out)
    // or to the i32 pick (float out, so that the epilogue's cost compares two kernels that
    // both ran).
    let sm80_kernel = cuda::choose_kernel(info, shape, OutType::I32, GemmPath::Sm80)?;
    let pick = |out, fallback| -> Result<GemmKernel> {
        Ok(Some(cuda::choose_kernel(info, shape, out, GemmPath::Auto)?)
            .filter(|&k| !opts.leaves_out(k))
            .unwrap_or(fallback))
    };
    let (ours, ours_float) = match opts.kernel {
        Some(pinned) => {
            cuda::check_kernel(info, shape, pinned)
                .map_err(|e| Error::Unsupported(format!("--kernel {pinned} at {m}x{n}x{k}: {e}")))?;
            (pinned, pinned)
        }
        None => {
            let ours = pick(OutType::I32, sm80_kernel)?;
            (ours, pick(OutType::BF16, ours)?)
        }
    };
    let sm90_kernel = cuda::choose_kernel(info, shape, OutType::I32, GemmPath::Sm90)
        .ok()
        .filter(|&k| !opts.leaves_out(k));
    let others: Vec<GemmKernel> = [Some(sm80_kernel), sm90_kernel]
        .into_iter()
        .flatten()
        .filter(|&k| k != ours)
        .collect();
    let mut candidates = vec![
        c.kernel(ours, Out::I32),
        c.kernel(ours_float, Out::Bf16),
        c.kernel(ours_float, Out::I8),
        c.kernel(ours_float, Out::Layer),
    ];
    candidates.extend(others.iter().map(|&k| c.kernel(k, Out::I32)));
    let (has_lt, has_blas) = (lt.is_some(), blas.is_some());
    candidates.extend(lt);
    candidates.extend(blas);
    let mut times = time_interleaved(g, warm, iters, candidates).into_iter();
    let mut take = || times.next().unwrap_or(Ok(f64::NAN));
    let ours_i32 = take()?;
    // bf16 and i8 out and the layer: one that fails is recorded (no time), and the row goes
    // on.
    let (t16, t8, tl) = (take(), take(), take());
    let mut or_nan = |what: &str, t: Result<f64>| {
        t.unwrap_or_else(|e| {
            baseline_errors.push(format!("{ours_float} {what}: {e}"));
            f64::NAN
        })
    };
    let (ours_bf16, ours_i8) = (or_nan("bf16 out", t16), or_nan("i8 out", t8));
    let ours_layer = or_nan("layer (quantize + GEMM)", tl);
    // The forced paths' picks, in the order `others` was timed.
    let mut time_of = |k: GemmKernel| if k == ours { Ok(ours_i32) } else { take() };
    let sm80 = time_of(sm80_kernel)?;
    // A wgmma configuration that fails is recorded, and the row goes on without it.
    let sm90 = match sm90_kernel.map(|k| (k, time_of(k))) {
        Some((_, Ok(t))) => Some(t),
        Some((k, Err(e))) => {
            baseline_errors.push(format!("{k}: {e}"));
            None
        }
        None => None,
    };
    let mut baseline = |has: bool, what: &str| match has.then(&mut take) {
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            baseline_errors.push(format!("{what}: {e}"));
            f64::NAN
        }
        None => f64::NAN,
    };
    let lt_us = baseline(has_lt, "cuBLASLt INT8");
    let bf16_us = baseline(has_blas, "cuBLAS BF16");

    // Every configuration the shape allows, pinned and timed in turn (for tuning the
    // dispatcher).
    let mut kernels = BTreeMap::new();
    if opts.all_kernels {
        let list: Vec<GemmKernel> = GemmKernel::all()
            .into_iter()
            .filter(|&kernel| {
                // The decode kernel reads the weights once per 8 or 16 tokens: beyond M = 64
                // it only costs sweep time.
                let decode = matches!(kernel, GemmKernel::Sm80Decode { .. });
                !(opts.leaves_out(kernel) || (decode && m > 64) || cuda::check_kernel(info, shape, kernel).is_err())
            })
            .collect();
        let times = time_interleaved(
            g,
            warm,
            iters,
            list.iter().map(|&kernel| c.kernel(kernel, Out::I32)).collect(),
        );
        for (kernel, t) in list.into_iter().zip(times) {
            match t {
                Ok(t) => {
                    kernels.insert(kernel.to_string(), (kernel, t));
                }
                // A configuration that fails is recorded, and the sweep goes on.
                Err(e) => baseline_errors.push(format!("{kernel}: {e}")),
            }
        }
    }
    // The fused bf16 epilogue through the two fastest configurations, the float-epilogue
    // pick, single-CTA ping-pong (whose epilogue runs under the other consumer's main loop)
    // and the fastest configuration that is not ping-pong, each with its i32 out again in
    // the same rounds (kept apart from the sweep's): whether the i32 ranking holds with the
    // epilogue that inference runs, what the epilogue costs, and the data for the
    // dispatcher's ping-pong rules (ping-pong against the cooperative kernels). Ping-pong
    // staged-i32 too: its i32 out against ping-pong's in the same rounds (its bf16 out is
    // ping-pong's kernel again, a control of the rounds' noise).
    let mut fastest: Vec<_> = kernels.values().copied().collect();
    fastest.sort_by(|a, b| a.1.total_cmp(&b.1));
    let cooperative = fastest
        .iter()
        .find(|(k, _)| !matches!(k, GemmKernel::Sm90PingPong { .. }))
        .map(|&(k, _)| k);
    fastest.truncate(2);
    let pingpong = |staged_i32| GemmKernel::Sm90PingPong {
        multicast: false,
        staged_i32,
    };
    for extra in [ours_float, pingpong(false), pingpong(true)]
        .into_iter()
        .chain(cooperative)
    {
        if let Some(&timed) = kernels.get(&extra.to_string())
            && !fastest.iter().any(|&(k, _)| k == extra)
        {
            fastest.push(timed);
        }
    }
    let pairs = fastest
        .iter()
        .flat_map(|&(kernel, _)| [c.kernel(kernel, Out::I32), c.kernel(kernel, Out::Bf16)])
        .collect();
    let mut times = time_interleaved(g, warm, iters, pairs).into_iter();
    let (mut kernels_bf16, mut kernels_pair_i32) = (BTreeMap::new(), BTreeMap::new());
    for (kernel, _) in fastest {
        let (t32, t16) = (times.next(), times.next());
        match (t32, t16) {
            (Some(Ok(t32)), Some(Ok(t16))) => {
                kernels_pair_i32.insert(kernel.to_string(), t32);
                kernels_bf16.insert(kernel.to_string(), t16);
            }
            (_, Some(Err(e))) | (Some(Err(e)), _) => baseline_errors.push(format!("{kernel} bf16: {e}")),
            _ => {}
        }
    }

    let ops = 2.0 * (m * n * k) as f64;
    let tops = ops / ours_i32 / 1e6;
    let weight_gbps = (m <= 16).then(|| (n * k) as f64 / ours_i32 / 1e3);
    Ok(Row {
        m,
        n,
        k,
        kernel: ours.to_string(),
        kernel_float_out: ours_float.to_string(),
        ours_i32_us: ours_i32,
        sm80_i32_us: sm80,
        sm90_i32_us: sm90,
        ours_bf16_fused_us: ours_bf16,
        ours_i8_requant_us: ours_i8,
        ours_layer_us: ours_layer,
        cublaslt_i8_us: lt_us,
        cublaslt_algos_tried: lt_tried,
        cublas_bf16_us: bf16_us,
        ours_tops: tops,
        percent_of_peak: 100.0 * tops / PEAK_TOPS,
        vs_cublaslt: lt_us / ours_i32,
        vs_cublas_bf16: bf16_us / ours_i32,
        layer_vs_cublas_bf16: bf16_us / ours_layer,
        fused_epilogue_cost: ours_bf16 / ours_i32 - 1.0,
        requant_epilogue_cost: ours_i8 / ours_i32 - 1.0,
        weight_gbps,
        weight_fraction_of_copy: weight_gbps.map(|w| w / copy),
        baseline_errors,
        kernels_i32_us: kernels.into_iter().map(|(name, (_, t))| (name, t)).collect(),
        kernels_bf16_fused_us: kernels_bf16,
        kernels_bf16_pair_i32_us: kernels_pair_i32,
    })
}

/// `--all-kernels`: each shape's configurations, fastest first.
fn print_kernels(rows: &[Row]) {
    println!("\nevery kernel configuration, i32 out (µs, fastest first):");
    for r in rows {
        let mut v: Vec<_> = r.kernels_i32_us.iter().collect();
        v.sort_by(|a, b| a.1.total_cmp(b.1));
        let list: Vec<String> = v.iter().map(|(k, t)| format!("{k} {t:.1}")).collect();
        println!("{:>6} {:>6} {:>6}  {}", r.m, r.n, r.k, list.join(" | "));
    }
    println!(
        "\nthe two fastest, the float-epilogue pick, ping-pong and the fastest other, bf16 out with the fused epilogue (µs; cost \
         over the same kernel's i32 out in the same rounds):"
    );
    for r in rows {
        let list: Vec<String> = r
            .kernels_bf16_fused_us
            .iter()
            .map(|(k, t)| match r.kernels_bf16_pair_i32_us.get(k) {
                Some(i32_us) => format!("{k} {t:.1} ({:+.1}%)", 100.0 * (t / i32_us - 1.0)),
                None => format!("{k} {t:.1}"),
            })
            .collect();
        println!("{:>6} {:>6} {:>6}  {}", r.m, r.n, r.k, list.join(" | "));
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "{:>6} {:>6} {:>6} {:>24} {:>9} {:>9} {:>9} {:>8} {:>6} {:>8} {:>8} {:>8} {:>8} {:>10} {:>9}",
        "M",
        "N",
        "K",
        "ours (dispatcher's pick)",
        "ours µs",
        "sm80 µs",
        "sm90 µs",
        "TOPS",
        "%peak",
        "vs LtI8",
        "vs BF16",
        "bf16 epi",
        "i8 epi",
        "layer/BF16",
        "W/copy"
    );
    for r in rows {
        let w = r
            .weight_fraction_of_copy
            .map_or("-".into(), |f| format!("{:.0}%", f * 100.0));
        let sm90 = r.sm90_i32_us.map_or("-".into(), |t| format!("{t:.1}"));
        println!(
            "{:>6} {:>6} {:>6} {:>24} {:>9.1} {:>9.1} {:>9} {:>8.1} {:>5.1}% {:>7.2}x {:>7.2}x {:>+7.1}% {:>+7.1}% \
             {:>9.2}x {:>9}",
            r.m,
            r.n,
            r.k,
            r.kernel,
            r.ours_i32_us,
            r.sm80_i32_us,
            sm90,
            r.ours_tops,
            r.percent_of_peak,
            r.vs_cublaslt,
            r.vs_cublas_bf16,
            r.fused_epilogue_cost * 100.0,
            r.requant_epilogue_cost * 100.0,
            r.layer_vs_cublas_bf16,
            w
        );
    }
    for r in rows.iter().filter(|r| r.kernel_float_out != r.kernel) {
        println!(
            "{}x{}x{}: bf16 and i8 out and the layer through {} (the float-epilogue pick)",
            r.m, r.n, r.k, r.kernel_float_out
        );
    }
}

/// A plotted line: its label, its color and the time it reads from a row.
type Series = (&'static str, RGBColor, fn(&Row) -> f64);

/// TOPS against M for each (N, K): ours, cuBLASLt INT8, cuBLAS BF16.
fn plot(path: &Path, rows: &[Row], device: &str) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| Error::Io(format!("{}: {e}", path.display()));
    let root = SVGBackend::new(path, (1600, 1000)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(&format!("INT8 GEMM on {device}: TOPS vs M"), ("sans-serif", 22))
        .map_err(|e| err(&e))?;
    let panels = root.split_evenly((2, 4));
    for (panel, &(n, k)) in panels.iter().zip(LLM_NK.iter()) {
        let pts: Vec<&Row> = rows.iter().filter(|r| (r.n, r.k) == (n, k)).collect();
        if pts.is_empty() {
            continue;
        }
        let ymax = pts
            .iter()
            .map(|r| {
                let ops = 2.0 * (r.m * r.n * r.k) as f64;
                (ops / r.cublaslt_i8_us.min(r.ours_i32_us).min(r.cublas_bf16_us) / 1e6).max(1.0)
            })
            .fold(1.0, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("N={n} K={k}"), ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(45)
            .build_cartesian_2d((1f64..4096f64).log_scale(), 0f64..ymax)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("M")
            .y_desc("TOPS")
            .draw()
            .map_err(|e| err(&e))?;
        let series: [Series; 3] = [
            ("ours", RED, |r| r.ours_i32_us),
            ("cuBLASLt INT8", BLUE, |r| r.cublaslt_i8_us),
            ("cuBLAS BF16", GREEN, |r| r.cublas_bf16_us),
        ];
        for (label, color, time) in series {
            let line: Vec<(f64, f64)> = pts
                .iter()
                .filter(|r| time(r).is_finite())
                .map(|r| (r.m as f64, 2.0 * (r.m * r.n * r.k) as f64 / time(r) / 1e6))
                .collect();
            chart
                .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
            chart
                .draw_series(line.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}

fn write(path: Option<&Path>, report: &Report, say: bool) -> Result<()> {
    if let Some(p) = path {
        let text = serde_json::to_string_pretty(report).map_err(|e| Error::Io(e.to_string()))?;
        std::fs::write(p, text + "\n").map_err(|e| Error::Io(format!("{}: {e}", p.display())))?;
        if say {
            println!("wrote {}", p.display());
        }
    }
    Ok(())
}

fn cpu_gemm(json: Option<&Path>) -> Result<()> {
    let (n, k) = (1024, 1024);
    let mut rows = Vec::new();
    println!("{:>6} {:>6} {:>6} {:>12} {:>8}", "M", "N", "K", "median µs", "GOPS");
    for m in [1, 16, 64] {
        let a = RawMatrix::new(IntType::I8, m, k, random_bytes(m * k, 1), None)?;
        let b = RawMatrix::new(IntType::I8, n, k, random_bytes(n * k, 2), None)?;
        let (ao, bo) = (a.operand()?, b.operand()?);
        let mut y = vec![0i32; m * n];
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            cpu::gemm_into(&ao, &bo, None, &mut y)?;
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let us = median(times);
        let gops = 2.0 * (m * n * k) as f64 / us / 1e3;
        println!("{m:>6} {n:>6} {k:>6} {us:>12.1} {gops:>8.2}");
        rows.push(serde_json::json!({"m": m, "n": n, "k": k, "median_us": us, "gops": gops}));
    }
    if let Some(p) = json {
        let report = serde_json::json!({
            "tool": "qk bench gemm", "backend": "cpu", "device": "CPU reference (no CUDA device)",
            "git_rev": git_rev(), "date_utc": date_utc(), "rows": rows,
            "note": "CPU reference (i32 output, rayon); not a GPU figure",
        });
        let text = serde_json::to_string_pretty(&report).map_err(|e| Error::Io(e.to_string()))?;
        std::fs::write(p, text + "\n").map_err(|e| Error::Io(format!("{}: {e}", p.display())))?;
        println!("wrote {}", p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row with synthetic timings (i32 out `1 + m` µs; cuBLASLt 2 + m, cuBLAS BF16 3 + m).
    fn row(m: usize, n: usize, k: usize) -> Row {
        Row {
            m,
            n,
            k,
            kernel: "sm80 128x128".into(),
            kernel_float_out: "sm80 128x128".into(),
            ours_i32_us: 1.0 + m as f64,
            sm80_i32_us: 1.0 + m as f64,
            sm90_i32_us: None,
            ours_bf16_fused_us: 1.0 + m as f64,
            ours_i8_requant_us: 1.0 + m as f64,
            ours_layer_us: 1.5 + m as f64,
            // A baseline that rejected the shape (M = 1) has no time.
            cublaslt_i8_us: if m == 1 { f64::NAN } else { 2.0 + m as f64 },
            cublaslt_algos_tried: 1,
            cublas_bf16_us: 3.0 + m as f64,
            ours_tops: 0.0,
            percent_of_peak: 0.0,
            vs_cublaslt: if m == 1 {
                f64::NAN
            } else {
                (2.0 + m as f64) / (1.0 + m as f64)
            },
            vs_cublas_bf16: (3.0 + m as f64) / (1.0 + m as f64),
            layer_vs_cublas_bf16: (3.0 + m as f64) / (1.5 + m as f64),
            fused_epilogue_cost: 0.0,
            requant_epilogue_cost: 0.0,
            weight_gbps: None,
            weight_fraction_of_copy: None,
            baseline_errors: Vec::new(),
            kernels_i32_us: BTreeMap::new(),
            kernels_bf16_fused_us: BTreeMap::new(),
            kernels_bf16_pair_i32_us: BTreeMap::new(),
        }
    }

    #[test]
    fn device_bytes_of_shapes() {
        assert_eq!(device_bytes((1, 2, 16)), Some(3 * 16 * 3 + 16 + 2 * 7 + 3 * 16));
        assert_eq!(device_bytes((1, 1, usize::MAX / 2)), None);
        assert_eq!(device_bytes((usize::MAX / 4, usize::MAX / 4, 1)), None);
    }

    #[test]
    fn shapes_parse_as_m_x_n_x_k() {
        assert_eq!(parse_shape("8192x4096x14336"), Ok((8192, 4096, 14336)));
        for bad in ["8192x8192", "1x2x3x4", "0x8x8", "axbxc", "8x8x", ""] {
            let e = parse_shape(bad).unwrap_err();
            assert!(e.contains("MxNxK"), "{bad}: {e}");
        }
    }

    /// The plot renders every (N, K) panel from rows shaped like a real sweep (synthetic
    /// timings: this checks the drawing, not any performance figure).
    #[test]
    fn plot_renders_all_panels() {
        let rows: Vec<Row> = shapes(false).into_iter().map(|(m, n, k)| row(m, n, k)).collect();
        let path = std::env::temp_dir().join(format!("qk-plot-{}.svg", std::process::id()));
        plot(&path, &rows, "test device").unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(svg.starts_with("<svg"));
        for (n, k) in LLM_NK {
            assert!(svg.contains(&format!("N={n} K={k}")), "panel {n} {k}");
        }
        assert!(svg.contains("cuBLASLt INT8") && svg.contains("cuBLAS BF16"));
        assert!(!svg.contains("NaN"));
        // A missing baseline is written as null in the JSON.
        let json = serde_json::to_string(&rows[3]).unwrap();
        assert!(json.contains("\"cublaslt_i8_us\":null"), "{json}");
    }

    /// The summary's geometric means: prefill rows only (squares and M outside 512-4096
    /// left out), baselines without a time skipped, and the best-configuration ratios from
    /// the fastest of the sweep and the main table.
    #[test]
    fn summary_of_known_rows() {
        let mut rows = vec![
            row(1, 4096, 4096),
            row(512, 4096, 4096),
            row(2048, 4096, 4096),
            row(4096, 4096, 4096),
        ];
        rows[1].vs_cublaslt = 2.0;
        rows[2].vs_cublaslt = 0.5;
        rows[1].vs_cublas_bf16 = 4.0;
        rows[2].vs_cublas_bf16 = 1.0;
        rows[1].fused_epilogue_cost = 0.10;
        rows[2].fused_epilogue_cost = 0.02;
        rows[3].fused_epilogue_cost = f64::NAN;
        rows[0].requant_epilogue_cost = 0.3;
        // bf16 out twice as fast as cuBLAS BF16 at M = 512; at M = 2048 it failed (no time).
        rows[1].ours_bf16_fused_us = rows[1].cublas_bf16_us / 2.0;
        rows[2].ours_bf16_fused_us = f64::NAN;
        let s = summarize(&rows);
        assert_eq!(s.prefill_vs_cublaslt, Some(1.0));
        assert_eq!(s.prefill_vs_cublas_bf16, Some(2.0));
        assert_eq!(s.prefill_bf16_out_vs_cublas_bf16, Some(2.0));
        assert_eq!(s.decode_vs_cublaslt, None); // M = 1's cuBLASLt has no time
        assert_eq!(s.fused_epilogue_cost_median, Some(0.02));
        assert_eq!(s.requant_epilogue_cost_median, Some(0.0));
        // The layer: (3 + m) / (1.5 + m) at M = 512 and 2048; M = 1 alone for decode.
        let layer = |m: f64| (3.0 + m) / (1.5 + m);
        let want = (layer(512.0) * layer(2048.0)).sqrt();
        assert!((s.prefill_layer_vs_cublas_bf16.unwrap() - want).abs() < 1e-12);
        assert_eq!(s.decode_layer_vs_cublas_bf16, Some(layer(1.0)));
        assert_eq!(s.prefill_best_config_vs_cublaslt, None); // no --all-kernels sweep
        assert_eq!(s.decode_best_config_vs_cublaslt, None);
        // A configuration twice as fast as ours on every prefill shape doubles the ratios.
        for r in &mut rows[1..3] {
            r.kernels_i32_us.insert("x".into(), r.ours_i32_us / 2.0);
        }
        let s = summarize(&rows);
        let want = |r: &Row, base: f64| base / (r.ours_i32_us / 2.0);
        let g = (want(&rows[1], rows[1].cublaslt_i8_us) * want(&rows[2], rows[2].cublaslt_i8_us)).sqrt();
        assert!((s.prefill_best_config_vs_cublaslt.unwrap() - g).abs() < 1e-12);
        assert_eq!(s.decode_best_config_vs_cublaslt, None); // the decode row has no sweep
        // A decode row with a sweep: cuBLASLt 20 µs against a configuration at 0.5 µs (ours,
        // in the main table, is 2 µs).
        rows[0].cublaslt_i8_us = 20.0;
        rows[0].kernels_i32_us.insert("decode".into(), 0.5);
        assert_eq!(summarize(&rows).decode_best_config_vs_cublaslt, Some(40.0));
    }
}
