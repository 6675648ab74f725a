//! `qk gemm`: Y = dequant(A · Bᵀ) from two folders written by `qk quantize` (or raw
//! integer folders: only `q.npy`, optionally `zero_point.npy`, giving i32 output).

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use qkernels::cpu::{self, Bias, HostQuantized, RawMatrix};
use qkernels::cuda::{self, DeviceBias, DeviceGemmOutput, DeviceQuantized, DeviceRaw, GemmKernel, GemmPath};
use qkernels::npy::{self, FloatData, IntKind};
use qkernels::{Error, Granularity, IntType, Result, bf16, f16};

use crate::files::{SchemeArg, read_quantized};
use crate::{Backend, DeviceArg};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GemmOut {
    I32,
    F32,
    F16,
    Bf16,
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
    /// Output .npy (bf16 results are written as float32 values that are exactly bf16).
    #[arg(long)]
    out: PathBuf,
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

fn run_typed<O: DeviceGemmOutput>(
    backend: &Backend,
    a: &Loaded,
    b: &Loaded,
    bias: Option<&FloatData>,
    pick: Pick,
) -> Result<Vec<O>> {
    let (ha, hb) = (a.operand()?, b.operand()?);
    match backend {
        Backend::Cpu if matches!(pick, Pick::Kernel(_)) => Err(Error::InvalidArgument(
            "--kernel pins a GPU kernel, but this run is on the CPU path".into(),
        )),
        Backend::Cpu => cpu::gemm::<O>(&ha, &hb, bias.map(bias_of)),
        Backend::Gpu(g) => {
            let s = &g.stream;
            let da = match a {
                Loaded::Quantized(q) => DevOp::Q(DeviceQuantized::upload(s, q)?),
                Loaded::Raw(r) => DevOp::R(DeviceRaw::upload(s, r)?),
            };
            let db = match b {
                Loaded::Quantized(q) => DevOp::Q(DeviceQuantized::upload(s, q)?),
                Loaded::Raw(r) => DevOp::R(DeviceRaw::upload(s, r)?),
            };
            let dbias = match bias {
                None => None,
                Some(FloatData::F32(v)) => Some(BiasBuf::F32(s.clone_htod(v)?)),
                Some(FloatData::F16(v)) => Some(BiasBuf::F16(s.clone_htod(v)?)),
            };
            let view = dbias.as_ref().map(|b| match b {
                BiasBuf::F32(v) => DeviceBias::F32(v.as_view()),
                BiasBuf::F16(v) => DeviceBias::F16(v.as_view()),
            });
            let (da, db) = (da.operand()?, db.operand()?);
            let y = match pick {
                Pick::Path(path) => cuda::gemm::<O>(s, &da, &db, view.as_ref(), path)?,
                Pick::Kernel(kernel) => {
                    // SAFETY: uninitialized; the kernel writes all M · N outputs before the
                    // copy below reads them (on error the buffer is dropped unread).
                    let mut y = unsafe { s.alloc::<O>(da.meta.rows * db.meta.rows) }?;
                    cuda::gemm_into_kernel(s, &da, &db, view.as_ref(), &mut y, kernel)?;
                    y
                }
            };
            Ok(s.clone_dtoh(&y)?)
        }
    }
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
    let backend = Backend::pick(args.device)?;
    let (m, n) = (a.operand()?.meta.rows, b.operand()?.meta.rows);
    let shape = [m, n];
    match args.out_dtype {
        GemmOut::I32 => npy::write(
            &args.out,
            &run_typed::<i32>(&backend, &a, &b, bias.as_ref(), pick)?,
            &shape,
        ),
        GemmOut::F32 => npy::write(
            &args.out,
            &run_typed::<f32>(&backend, &a, &b, bias.as_ref(), pick)?,
            &shape,
        ),
        GemmOut::F16 => npy::write(
            &args.out,
            &run_typed::<f16>(&backend, &a, &b, bias.as_ref(), pick)?,
            &shape,
        ),
        GemmOut::Bf16 => {
            let y: Vec<f32> = run_typed::<bf16>(&backend, &a, &b, bias.as_ref(), pick)?
                .iter()
                .map(|v| v.to_f32())
                .collect();
            npy::write(&args.out, &y, &shape)
        }
    }
}
