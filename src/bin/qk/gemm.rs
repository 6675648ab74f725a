//! `qk gemm`: Y = dequant(A · Bᵀ) from two folders written by `qk quantize` (or raw
//! integer folders: only `q.npy`, optionally `zero_point.npy`, giving i32 output). Float and
//! i32 results go to one `.npy`; i8/u8 results (requantized with one static per-tensor set)
//! to a folder as `qk quantize` writes it, which the next `qk gemm` takes as `--a`.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use qkernels::cpu::{self, Bias, HostOperand, HostQuantized, RawMatrix};
use qkernels::cuda::{
    self, DeviceBias, DeviceGemmOutput, DeviceOperand, DeviceQuantized, DeviceRaw, GemmKernel, GemmPath, Gpu,
};
use qkernels::gemm::check_requantized;
use qkernels::npy::{self, FloatData, IntKind};
use qkernels::{Error, Granularity, IntType, QuantParams, QuantSpec, Result, bf16, f16};

use crate::files::{SchemeArg, read_quantized, write_quantized};
use crate::{Backend, DeviceArg};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GemmOut {
    I32,
    F32,
    F16,
    Bf16,
    /// Requantized (`--out-scale`, `--out-scheme`): a folder, as `qk quantize` writes.
    I8,
    U8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PathArg {
    Auto,
    Sm80,
    Sm90,
}

#[derive(Args)]
pub struct GemmArgs {
    /// Folder of A [M, K] (activations), written by `qk quantize` or holding raw q.npy.
    #[arg(long)]
    a: PathBuf,
    /// Folder of B [N, K] (weights, one row per output channel).
    #[arg(long)]
    b: PathBuf,
    /// Bias [N], float32 or float16.
    #[arg(long)]
    bias: Option<PathBuf>,
    #[arg(long, value_enum)]
    out_dtype: GemmOut,
    /// Output .npy (bf16 results are written as float32 values that are exactly bf16); for
    /// i8/u8, an output folder (q.npy, scale.npy, zero_point.npy or offset.npy, meta.json).
    #[arg(long)]
    out: PathBuf,
    /// i8/u8 output: its scheme (default symmetric for i8, affine for u8).
    #[arg(long, value_enum)]
    out_scheme: Option<SchemeArg>,
    /// i8/u8 output: the static per-tensor scale the f32 results are quantized with.
    #[arg(long, allow_hyphen_values = true)]
    out_scale: Option<f32>,
    /// i8/u8 output, affine: the zero point (default 0).
    #[arg(long, allow_hyphen_values = true)]
    out_zero_point: Option<i32>,
    /// i8/u8 output, min-offset: the offset subtracted before scaling.
    #[arg(long, allow_hyphen_values = true)]
    out_offset: Option<f32>,
    /// i8/u8 output: write non-finite results (scales that overflow f32) as their scheme's
    /// defined values instead of failing.
    #[arg(long)]
    allow_nonfinite: bool,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// GPU kernel family (auto: the dispatcher's choice).
    #[arg(long, value_enum, default_value = "auto")]
    path: PathArg,
    /// Pin one GPU kernel configuration by name, e.g. "sm80 decode 8x16" or "sm90 64x256
    /// pingpong" (`qk bench gemm --all-kernels` lists them); GPU only.
    #[arg(long, conflicts_with = "path")]
    kernel: Option<String>,
}

/// Which GPU kernel runs: the dispatcher's choice within a family, or one configuration.
#[derive(Clone, Copy)]
enum Pick {
    Path(GemmPath),
    Kernel(GemmKernel),
}

/// A GEMM operand read from a folder.
pub enum Loaded {
    Quantized(HostQuantized),
    Raw(RawMatrix),
}

impl Loaded {
    fn operand(&self) -> Result<cpu::HostOperand<'_>> {
        match self {
            Loaded::Quantized(q) => q.operand(),
            Loaded::Raw(r) => r.operand(),
        }
    }
}

/// Reads a folder: with meta.json as `qk quantize` wrote it; without, by its files — a
/// scale of shape [1] is per tensor, [rows] per row; offset.npy means MinOffset, a zero
/// point Affine, a scale alone Symmetric (Affine with zero point 0 for u8); no scale: raw.
pub fn load_operand(dir: &Path) -> Result<Loaded> {
    if dir.join("meta.json").is_file() {
        return read_quantized(dir, None, None).map(Loaded::Quantized);
    }
    let (q, kind) = npy::read_int(&dir.join("q.npy"))?;
    let int_type = match kind {
        IntKind::I8 => IntType::I8,
        IntKind::U8 => IntType::U8,
        IntKind::I32 => {
            return Err(Error::InvalidArgument(format!(
                "{}/q.npy must be int8 or uint8",
                dir.display()
            )));
        }
    };
    let [rows, _cols] = q.shape[..] else {
        return Err(Error::Shape(format!(
            "{}/q.npy must be 2-D, found {:?}",
            dir.display(),
            q.shape
        )));
    };
    let scale_path = dir.join("scale.npy");
    if !scale_path.is_file() {
        let zp = dir.join("zero_point.npy");
        let zero_points = if zp.is_file() {
            Some(npy::read_int(&zp)?.0.data)
        } else {
            None
        };
        let data = q.data.iter().map(|&v| v as u8).collect();
        return RawMatrix::new(int_type, rows, q.shape[1], data, zero_points).map(Loaded::Raw);
    }
    let scale = npy::read_f32(&scale_path)?;
    let granularity = match scale.data.len() {
        1 => Granularity::Tensor,
        n if n == rows => Granularity::Row,
        n => {
            return Err(Error::Shape(format!(
                "{}: {n} scales for {rows} rows; the GEMM takes 1 (per tensor) or {rows} (per row)",
                scale_path.display()
            )));
        }
    };
    let scheme = if dir.join("offset.npy").is_file() {
        SchemeArg::MinOffset
    } else if dir.join("zero_point.npy").is_file() || int_type == IntType::U8 {
        SchemeArg::Affine
    } else {
        SchemeArg::Symmetric
    };
    read_quantized(dir, Some(scheme), Some(granularity)).map(Loaded::Quantized)
}

fn bias_of(data: &FloatData) -> Bias<'_> {
    match data {
        FloatData::F32(v) => Bias::F32(v),
        FloatData::F16(v) => Bias::F16(v),
    }
}

/// Runs `on_cpu` or `on_gpu` with the operands and the bias on the chosen backend (uploaded
/// for the GPU).
fn with_operands<R>(
    backend: &Backend,
    a: &Loaded,
    b: &Loaded,
    bias: Option<&FloatData>,
    on_cpu: impl FnOnce(&HostOperand, &HostOperand, Option<Bias>) -> Result<R>,
    on_gpu: impl FnOnce(&Gpu, &DeviceOperand, &DeviceOperand, Option<&DeviceBias>) -> Result<R>,
) -> Result<R> {
    match backend {
        Backend::Cpu => on_cpu(&a.operand()?, &b.operand()?, bias.map(bias_of)),
        Backend::Gpu(g) => {
            let s = &g.stream;
            let upload = |l: &Loaded| -> Result<DevOp> {
                Ok(match l {
                    Loaded::Quantized(q) => DevOp::Q(DeviceQuantized::upload(s, q)?),
                    Loaded::Raw(r) => DevOp::R(DeviceRaw::upload(s, r)?),
                })
            };
            let (da, db) = (upload(a)?, upload(b)?);
            let dbias = match bias {
                None => None,
                Some(FloatData::F32(v)) => Some(BiasBuf::F32(s.clone_htod(v)?)),
                Some(FloatData::F16(v)) => Some(BiasBuf::F16(s.clone_htod(v)?)),
            };
            let view = dbias.as_ref().map(|b| match b {
                BiasBuf::F32(v) => DeviceBias::F32(v.as_view()),
                BiasBuf::F16(v) => DeviceBias::F16(v.as_view()),
            });
            on_gpu(g, &da.operand()?, &db.operand()?, view.as_ref())
        }
    }
}

/// The error for `--kernel` on the CPU path: a pinned GPU kernel never silently becomes the
/// CPU reference.
fn check_pick(backend: &Backend, pick: Pick) -> Result<()> {
    match (backend, pick) {
        (Backend::Cpu, Pick::Kernel(_)) => Err(Error::InvalidArgument(
            "--kernel pins a GPU kernel, but this run is on the CPU path".into(),
        )),
        _ => Ok(()),
    }
}

fn run_typed<O: DeviceGemmOutput>(
    backend: &Backend,
    a: &Loaded,
    b: &Loaded,
    bias: Option<&FloatData>,
    pick: Pick,
) -> Result<Vec<O>> {
    check_pick(backend, pick)?;
    with_operands(
        backend,
        a,
        b,
        bias,
        |a, b, bias| cpu::gemm::<O>(a, b, bias),
        |g, a, b, bias| {
            let s = &g.stream;
            let y = match pick {
                Pick::Path(path) => cuda::gemm::<O>(s, a, b, bias, path)?,
                Pick::Kernel(kernel) => {
                    // SAFETY: uninitialized; the kernel writes all M · N outputs before the
                    // copy below reads them (on error the buffer is dropped unread).
                    let mut y = unsafe { s.alloc::<O>(a.meta.rows * b.meta.rows) }?;
                    cuda::gemm_into_kernel(s, a, b, bias, &mut y, kernel)?;
                    y
                }
            };
            Ok(s.clone_dtoh(&y)?)
        },
    )
}

/// What `--out` receives: a matrix of one of these types, or a requantized folder.
enum Output {
    I32,
    F32,
    F16,
    Bf16,
    Quantized(QuantSpec, QuantParams),
}

/// The output the flags describe; the `--out-*` requantization flags with i8/u8 only.
fn output_of(args: &GemmArgs) -> Result<Output> {
    let plain = match args.out_dtype {
        GemmOut::I8 => return requant_of(args, IntType::I8),
        GemmOut::U8 => return requant_of(args, IntType::U8),
        GemmOut::I32 => Output::I32,
        GemmOut::F32 => Output::F32,
        GemmOut::F16 => Output::F16,
        GemmOut::Bf16 => Output::Bf16,
    };
    let given = [
        (args.out_scheme.is_some(), "--out-scheme"),
        (args.out_scale.is_some(), "--out-scale"),
        (args.out_zero_point.is_some(), "--out-zero-point"),
        (args.out_offset.is_some(), "--out-offset"),
        (args.allow_nonfinite, "--allow-nonfinite"),
    ];
    match given.iter().find(|(on, _)| *on) {
        Some((_, flag)) => Err(Error::InvalidArgument(format!(
            "{flag} describes a requantized output; it applies to --out-dtype i8 or u8 only"
        ))),
        None => Ok(plain),
    }
}

/// The requantized output of `int_type` the `--out-*` flags describe: one static
/// per-tensor set, as the GEMM's requantizing epilogue takes. The library checks the set
/// (`check_requantized`: the scheme against the type, a zero point or offset where the
/// scheme takes none, a missing offset, the scale's range).
fn requant_of(args: &GemmArgs, int_type: IntType) -> Result<Output> {
    let scale = args.out_scale.ok_or_else(|| {
        Error::InvalidArgument(
            "i8/u8 output is requantized with a static per-tensor scale: pass --out-scale (and \
             --out-scheme, --out-zero-point or --out-offset as the scheme needs)"
                .into(),
        )
    })?;
    let scheme = args.out_scheme.unwrap_or(if int_type == IntType::I8 {
        SchemeArg::Symmetric
    } else {
        SchemeArg::Affine
    });
    let spec = QuantSpec::new(scheme.into(), int_type, Granularity::Tensor)?;
    let params = QuantParams {
        scales: vec![scale],
        zero_points: args.out_zero_point.map(|z| vec![z]),
        offsets: args.out_offset.map(|o| vec![o]),
    };
    Ok(Output::Quantized(spec, params))
}

/// The requantized GEMM on the chosen backend: the output matrix with its parameters and
/// row sums, and its count of non-finite f32 results (an error unless `allow_nonfinite`).
fn run_quantized(
    backend: &Backend,
    a: &Loaded,
    b: &Loaded,
    bias: Option<&FloatData>,
    pick: Pick,
    (spec, params): (QuantSpec, &QuantParams),
    allow_nonfinite: bool,
) -> Result<HostQuantized> {
    check_pick(backend, pick)?;
    with_operands(
        backend,
        a,
        b,
        bias,
        |a, b, bias| cpu::gemm_quantized(a, b, bias, spec, params, allow_nonfinite),
        |g, a, b, bias| {
            let s = &g.stream;
            let mut y = DeviceQuantized::alloc(s, spec, a.meta.rows, b.meta.rows)?;
            match pick {
                Pick::Path(path) => cuda::gemm_quantized_into(s, a, b, bias, params, &mut y, path)?,
                Pick::Kernel(kernel) => cuda::gemm_quantized_into_kernel(s, a, b, bias, params, &mut y, kernel)?,
            }
            y.to_host(s, allow_nonfinite)
        },
    )
}

enum DevOp {
    Q(DeviceQuantized),
    R(DeviceRaw),
}

impl DevOp {
    fn operand(&self) -> Result<cuda::DeviceOperand<'_>> {
        match self {
            DevOp::Q(q) => q.operand(),
            DevOp::R(r) => r.operand(),
        }
    }
}

enum BiasBuf {
    F32(cudarc::driver::CudaSlice<f32>),
    F16(cudarc::driver::CudaSlice<f16>),
}

pub fn gemm(args: GemmArgs) -> Result<()> {
    let a = load_operand(&args.a)?;
    let b = load_operand(&args.b)?;
    let bias = args.bias.as_deref().map(npy::read_floats).transpose()?;
    if let Some((_, shape)) = &bias
        && shape.len() != 1
    {
        return Err(Error::Shape(format!("the bias must be 1-D [N], found shape {shape:?}")));
    }
    let bias = bias.map(|(d, _)| d);
    let pick = match (&args.kernel, args.path) {
        (Some(name), _) => Pick::Kernel(name.parse()?),
        (None, PathArg::Auto) => Pick::Path(GemmPath::Auto),
        (None, PathArg::Sm80) => Pick::Path(GemmPath::Sm80),
        (None, PathArg::Sm90) => Pick::Path(GemmPath::Sm90),
    };
    // Check the problem (shapes, schemes, bounds) before choosing a device.
    a.operand()?;
    b.operand()?;
    let out = output_of(&args)?;
    let (m, n) = (a.operand()?.meta.rows, b.operand()?.meta.rows);
    if let Output::Quantized(spec, params) = &out {
        let bias_len = bias.as_ref().map(FloatData::len);
        check_requantized(&a.operand()?.meta, &b.operand()?.meta, bias_len, spec, params, (m, n))?;
    }
    let backend = Backend::pick(args.device)?;
    let shape = [m, n];
    match out {
        Output::I32 => npy::write(
            &args.out,
            &run_typed::<i32>(&backend, &a, &b, bias.as_ref(), pick)?,
            &shape,
        ),
        Output::F32 => npy::write(
            &args.out,
            &run_typed::<f32>(&backend, &a, &b, bias.as_ref(), pick)?,
            &shape,
        ),
        Output::F16 => npy::write(
            &args.out,
            &run_typed::<f16>(&backend, &a, &b, bias.as_ref(), pick)?,
            &shape,
        ),
        Output::Bf16 => {
            let y: Vec<f32> = run_typed::<bf16>(&backend, &a, &b, bias.as_ref(), pick)?
                .iter()
                .map(|v| v.to_f32())
                .collect();
            npy::write(&args.out, &y, &shape)
        }
        Output::Quantized(spec, params) => {
            let y = run_quantized(
                &backend,
                &a,
                &b,
                bias.as_ref(),
                pick,
                (spec, &params),
                args.allow_nonfinite,
            )?;
            write_quantized(&args.out, &y, "result(s)")
        }
    }
}
