//! `qk`: the qkernels command line over `.npy` files.
//!
//! `qk info`, `qk quantize`, `qk dequantize`, `qk gemm`, `qk bench quant`, `qk bench gemm`.
//! Other tools drive it, so the names of commands and flags are an interface. Errors print
//! one line and exit 1.

mod bench;
mod bench_gemm;
mod files;
mod gemm;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use qkernels::cuda::GemmKernel;
use qkernels::{Error, Result, cuda};

#[derive(Parser)]
#[command(
    name = "qk",
    version,
    about = "INT8 quantization kernels: CPU reference and CUDA (Hopper first)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// CUDA devices and the architectures the kernels were built for (or why CPU only).
    Info,
    /// Quantize a 2-D f32/f16 .npy matrix into DIR (q.npy, scale.npy, zero_point.npy or
    /// offset.npy, meta.json).
    Quantize(files::QuantizeArgs),
    /// Dequantize a folder written by `qk quantize` into a .npy file.
    Dequantize(files::DequantizeArgs),
    /// Y = dequant(A · Bᵀ): INT8 GEMM with the fused epilogue, from two quantized folders.
    Gemm(gemm::GemmArgs),
    /// Benchmarks (GPU when there is one; otherwise the CPU reference, said plainly).
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Quantize kernels against the device's measured copy bandwidth.
    Quant {
        /// Write the results as JSON to FILE.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// INT8 GEMM against cuBLASLt INT8 and cuBLAS BF16 (same process, same card).
    Gemm {
        /// Write the results as JSON to FILE.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write an SVG plot (TOPS against M per (N, K)) to FILE.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// A handful of shapes instead of the full sweep.
        #[arg(long)]
        quick: bool,
        /// Time this shape, MxNxK (repeatable), instead of the sweep.
        #[arg(long, value_parser = bench_gemm::parse_shape, conflicts_with = "quick")]
        shape: Vec<(usize, usize, usize)>,
        /// Do not run the wgmma (sm_90a) kernels: time the mma.sync path only.
        #[arg(long)]
        skip_sm90: bool,
        /// Also time every kernel configuration that accepts each shape, i32 out, and the
        /// two fastest, the float-epilogue pick and ping-pong with bf16 out and the fused
        /// epilogue (for tuning the dispatcher).
        #[arg(long)]
        all_kernels: bool,
        /// Leave the ping-pong configurations out of `--all-kernels` (where they hang or
        /// fail on a device).
        #[arg(long)]
        skip_pingpong: bool,
        /// Leave the decode kernel's configurations out of `--all-kernels` (where they fail
        /// on a device).
        #[arg(long)]
        skip_decode: bool,
        /// Time this configuration (e.g. "sm90 64x256 pingpong"; `GemmKernel` names) pinned,
        /// for i32, bf16 and i8 out, in place of the dispatcher's picks; a shape it cannot
        /// run is an error.
        #[arg(long, value_parser = parse_kernel, conflicts_with_all = ["skip_sm90", "all_kernels"])]
        kernel: Option<GemmKernel>,
    },
}

/// Where to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// The GPU when one is usable, else the CPU reference (said on stderr).
    Auto,
    Cpu,
    Cuda,
}

/// The backend a command runs on.
pub enum Backend {
    Cpu,
    Gpu(cuda::Gpu),
}

impl Backend {
    pub fn pick(device: DeviceArg) -> Result<Self> {
        match device {
            DeviceArg::Cpu => Ok(Backend::Cpu),
            DeviceArg::Cuda => Ok(Backend::Gpu(cuda::Gpu::new(0)?)),
            DeviceArg::Auto => match cuda::Gpu::new(0) {
                Ok(g) => Ok(Backend::Gpu(g)),
                Err(e) => {
                    eprintln!("qk: using the CPU path ({e})");
                    Ok(Backend::Cpu)
                }
            },
        }
    }
}

/// A kernel configuration by name, as `GemmKernel`'s `Display` writes it.
fn parse_kernel(s: &str) -> std::result::Result<GemmKernel, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

fn info() -> Result<()> {
    match cuda::kernels_built() {
        Ok(archs) => println!("kernels built for: {archs}"),
        Err(e) => {
            println!("CPU only: {e}");
            return Ok(());
        }
    }
    match cuda::devices() {
        Ok(devs) => {
            for d in devs {
                println!(
                    "device {}: {} (compute capability {}.{}, {} SMs, {:.1} GiB, L2 {} MiB)",
                    d.ordinal,
                    d.name,
                    d.compute_capability.0,
                    d.compute_capability.1,
                    d.sms,
                    d.memory_bytes as f64 / (1u64 << 30) as f64,
                    d.l2_bytes >> 20
                );
            }
        }
        Err(e) => println!("CPU only: {e}"),
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info => info(),
        Command::Quantize(a) => files::quantize(a),
        Command::Dequantize(a) => files::dequantize(a),
        Command::Gemm(a) => gemm::gemm(a),
        Command::Bench {
            which: BenchCommand::Quant { json },
        } => bench::quant(json.as_deref()),
        Command::Bench {
            which:
                BenchCommand::Gemm {
                    json,
                    svg,
                    quick,
                    shape,
                    skip_sm90,
                    all_kernels,
                    skip_pingpong,
                    skip_decode,
                    kernel,
                },
        } => bench_gemm::gemm(
            json.as_deref(),
            svg.as_deref(),
            &if shape.is_empty() {
                bench_gemm::shapes(quick)
            } else {
                shape
            },
            bench_gemm::GemmBenchOpts {
                skip_sm90,
                all_kernels,
                skip_pingpong,
                skip_decode,
                kernel,
            },
        ),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = e.to_string().replace('\n', " ");
            let hint = if matches!(e, Error::NoCudaKernels(_) | Error::NoDevice(_)) {
                " (--device cpu runs the CPU reference)"
            } else {
                ""
            };
            eprintln!("qk: error: {msg}{hint}");
            ExitCode::FAILURE
        }
    }
}
