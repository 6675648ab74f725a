//! `qk quantize` and `qk dequantize`: `.npy` in, `.npy` and `meta.json` out.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use qkernels::cpu::{self, HostQuantized};
use qkernels::npy::{self, FloatData, IntKind};
use qkernels::{Error, Granularity, IntType, QuantParams, QuantSpec, Result, Scheme, cuda, f16};
use serde::{Deserialize, Serialize};

use crate::{Backend, DeviceArg};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SchemeArg {
    Symmetric,
    Affine,
    MinOffset,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DtypeArg {
    I8,
    U8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutDtype {
    F32,
    F16,
}

impl From<SchemeArg> for Scheme {
    fn from(s: SchemeArg) -> Self {
        match s {
            SchemeArg::Symmetric => Scheme::Symmetric,
            SchemeArg::Affine => Scheme::Affine,
            SchemeArg::MinOffset => Scheme::MinOffset,
        }
    }
}

impl From<DtypeArg> for IntType {
    fn from(d: DtypeArg) -> Self {
        match d {
            DtypeArg::I8 => IntType::I8,
            DtypeArg::U8 => IntType::U8,
        }
    }
}

/// Parses `tensor`, `row`, `col` or `group:G`.
pub fn parse_granularity(s: &str) -> std::result::Result<Granularity, String> {
    match s {
        "tensor" => Ok(Granularity::Tensor),
        "row" => Ok(Granularity::Row),
        "col" => Ok(Granularity::Col),
        _ => match s.strip_prefix("group:").map(str::parse::<usize>) {
            Some(Ok(g)) if g > 0 => Ok(Granularity::Group(g)),
            _ => Err(format!("'{s}' is not tensor, row, col or group:G with G >= 1")),
        },
    }
}

fn granularity_name(g: Granularity) -> String {
    match g {
        Granularity::Tensor => "tensor".into(),
        Granularity::Row => "row".into(),
        Granularity::Col => "col".into(),
        Granularity::Group(n) => format!("group:{n}"),
    }
}

#[derive(Args)]
pub struct QuantizeArgs {
    /// 2-D float32 or float16 .npy matrix.
    input: PathBuf,
    /// Output folder (created if missing).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum)]
    scheme: SchemeArg,
    /// Quantized type (default: i8 for symmetric, u8 for affine and min-offset).
    #[arg(long, value_enum)]
    dtype: Option<DtypeArg>,
    /// tensor, row, col or group:G.
    #[arg(long, value_parser = parse_granularity)]
    granularity: Granularity,
    /// Static scale: a number or a float32 .npy (absent: dynamic).
    #[arg(long)]
    scale: Option<String>,
    /// Static Affine zero point: an integer or an int8/uint8/int32 .npy (default 0).
    #[arg(long, allow_hyphen_values = true)]
    zero_point: Option<String>,
    /// Static MinOffset offset: a number or a float32 .npy.
    #[arg(long, allow_hyphen_values = true)]
    offset: Option<String>,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// Quantize NaN/±Inf to their defined values instead of failing.
    #[arg(long)]
    allow_nonfinite: bool,
}

#[derive(Args)]
pub struct DequantizeArgs {
    /// Folder written by `qk quantize` (or holding q.npy, scale.npy and zero_point.npy or offset.npy).
    dir: PathBuf,
    /// Output .npy file.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "f32")]
    out_dtype: OutDtype,
    /// Scheme, when the folder has no meta.json (overrides it otherwise).
    #[arg(long, value_enum)]
    scheme: Option<SchemeArg>,
    /// Granularity, when the folder has no meta.json (overrides it otherwise).
    #[arg(long, value_parser = parse_granularity)]
    granularity: Option<Granularity>,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
}

/// `meta.json` of a quantized folder.
#[derive(Serialize, Deserialize)]
pub struct Meta {
    pub scheme: SchemeArg,
    pub dtype: DtypeArg,
    pub granularity: String,
    pub shape: [usize; 2],
    pub nonfinite: u64,
}

/// A parameter given as a number or a `.npy` path, expanded to `n` values.
fn param_f32(arg: &str, what: &str, spec: &QuantSpec, rows: usize, cols: usize) -> Result<Vec<f32>> {
    let n = spec.num_params(rows, cols);
    if let Ok(v) = arg.parse::<f32>() {
        return Ok(vec![v; n]);
    }
    let a = npy::read_f32(Path::new(arg))?;
    check_param_shape(&a.shape, a.data.len(), what, spec, rows, cols)?;
    Ok(a.data)
}

fn param_i32(arg: &str, what: &str, spec: &QuantSpec, rows: usize, cols: usize) -> Result<Vec<i32>> {
    let n = spec.num_params(rows, cols);
    if let Ok(v) = arg.parse::<i32>() {
        return Ok(vec![v; n]);
    }
    let (a, _) = npy::read_int(Path::new(arg))?;
    check_param_shape(&a.shape, a.data.len(), what, spec, rows, cols)?;
    Ok(a.data)
}

fn check_param_shape(
    shape: &[usize],
    len: usize,
    what: &str,
    spec: &QuantSpec,
    rows: usize,
    cols: usize,
) -> Result<()> {
    let want = spec.param_shape(rows, cols);
    let scalar_ok = want == [1] && len == 1;
    if shape == want.as_slice() || scalar_ok {
        Ok(())
    } else {
        Err(Error::Shape(format!(
            "{what} has shape {shape:?}; {} granularity of a {rows} x {cols} matrix needs {want:?}",
            granularity_name(spec.granularity())
        )))
    }
}

fn quantize_on<T: qkernels::cuda::DeviceElement>(
    backend: &Backend,
    x: &[T],
    rows: usize,
    cols: usize,
    spec: QuantSpec,
    params: Option<&QuantParams>,
    allow_nonfinite: bool,
) -> Result<HostQuantized> {
    match backend {
        Backend::Cpu => cpu::quantize(x, rows, cols, spec, params, allow_nonfinite),
        Backend::Gpu(g) => {
            let dx = g.stream.clone_htod(x)?;
            cuda::quantize(&g.stream, &dx, rows, cols, spec, params)?.to_host(&g.stream, allow_nonfinite)
        }
    }
}

pub fn quantize(a: QuantizeArgs) -> Result<()> {
    let scheme: Scheme = a.scheme.into();
    let dtype = a.dtype.unwrap_or(if scheme == Scheme::Symmetric {
        DtypeArg::I8
    } else {
        DtypeArg::U8
    });
    let spec = QuantSpec::new(scheme, dtype.into(), a.granularity)?;
    let (data, rows, cols) = npy::read_float_matrix(&a.input)?;
    spec.check(rows, cols)?;
    let params = match (&a.scale, &a.zero_point, &a.offset) {
        (None, None, None) => None,
        (None, _, _) => {
            return Err(Error::InvalidArgument(
                "static quantization needs --scale (omit all three for dynamic)".into(),
            ));
        }
        (Some(s), z, o) => Some(QuantParams {
            scales: param_f32(s, "--scale", &spec, rows, cols)?,
            zero_points: z
                .as_deref()
                .map(|z| param_i32(z, "--zero-point", &spec, rows, cols))
                .transpose()?,
            offsets: o
                .as_deref()
                .map(|o| param_f32(o, "--offset", &spec, rows, cols))
                .transpose()?,
        }),
    };
    if let Some(p) = &params {
        p.check(&spec, rows, cols)?;
    }
    let backend = Backend::pick(a.device)?;
    let q = match &data {
        FloatData::F32(x) => quantize_on(&backend, x, rows, cols, spec, params.as_ref(), a.allow_nonfinite)?,
        FloatData::F16(x) => quantize_on(&backend, x, rows, cols, spec, params.as_ref(), a.allow_nonfinite)?,
    };
    write_quantized(&a.out, &q, "input value(s)")
}

/// Writes `q` into `dir` as `qk quantize` does (`qk gemm` writes its i8/u8 output so too),
/// and says on stderr how many non-finite `values` took their defined values.
pub fn write_quantized(dir: &Path, q: &HostQuantized, values: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
    let shape = [q.rows, q.cols];
    let dtype = match q.spec.int_type() {
        IntType::I8 => {
            npy::write(&dir.join("q.npy"), q.as_i8(), &shape)?;
            DtypeArg::I8
        }
        IntType::U8 => {
            npy::write(&dir.join("q.npy"), &q.data, &shape)?;
            DtypeArg::U8
        }
    };
    let pshape = q.spec.param_shape(q.rows, q.cols);
    npy::write(&dir.join("scale.npy"), &q.scales, &pshape)?;
    if let Some(z) = &q.zero_points {
        npy::write(&dir.join("zero_point.npy"), z, &pshape)?;
    }
    if let Some(o) = &q.offsets {
        npy::write(&dir.join("offset.npy"), o, &pshape)?;
    }
    let meta = Meta {
        scheme: match q.spec.scheme() {
            Scheme::Symmetric => SchemeArg::Symmetric,
            Scheme::Affine => SchemeArg::Affine,
            Scheme::MinOffset => SchemeArg::MinOffset,
        },
        dtype,
        granularity: granularity_name(q.spec.granularity()),
        shape,
        nonfinite: q.nonfinite,
    };
    let text = serde_json::to_string_pretty(&meta).map_err(|e| Error::Io(e.to_string()))?;
    std::fs::write(dir.join("meta.json"), text + "\n").map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
    if q.nonfinite > 0 {
        eprintln!(
            "qk: {} non-finite {values} quantized to their defined values",
            q.nonfinite
        );
    }
    Ok(())
}

/// Reads a folder written by `qk quantize` (meta.json optional when scheme and
/// granularity are given).
pub fn read_quantized(
    dir: &Path,
    scheme: Option<SchemeArg>,
    granularity: Option<Granularity>,
) -> Result<HostQuantized> {
    let meta_path = dir.join("meta.json");
    let meta: Option<Meta> = if meta_path.is_file() {
        let text =
            std::fs::read_to_string(&meta_path).map_err(|e| Error::Io(format!("{}: {e}", meta_path.display())))?;
        Some(serde_json::from_str(&text).map_err(|e| Error::Io(format!("{}: {e}", meta_path.display())))?)
    } else {
        None
    };
    let scheme = scheme.or(meta.as_ref().map(|m| m.scheme)).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "{} has no meta.json; pass --scheme and --granularity",
            dir.display()
        ))
    })?;
    let granularity = match (granularity, &meta) {
        (Some(g), _) => g,
        (None, Some(m)) => parse_granularity(&m.granularity).map_err(Error::InvalidArgument)?,
        (None, None) => {
            return Err(Error::InvalidArgument(format!(
                "{} has no meta.json; pass --granularity",
                dir.display()
            )));
        }
    };
    let (q, kind) = npy::read_int(&dir.join("q.npy"))?;
    let int_type = match kind {
        IntKind::I8 => IntType::I8,
        IntKind::U8 => IntType::U8,
        IntKind::I32 => return Err(Error::InvalidArgument("q.npy must be int8 or uint8, not int32".into())),
    };
    let [rows, cols] = q.shape[..] else {
        return Err(Error::Shape(format!("q.npy must be 2-D, found shape {:?}", q.shape)));
    };
    let spec = QuantSpec::new(scheme.into(), int_type, granularity)?;
    spec.check(rows, cols)?;
    let scales = npy::read_f32(&dir.join("scale.npy"))?;
    check_param_shape(&scales.shape, scales.data.len(), "scale.npy", &spec, rows, cols)?;
    let zp_path = dir.join("zero_point.npy");
    let zero_points = if spec.scheme() == Scheme::Affine && zp_path.is_file() {
        let (z, _) = npy::read_int(&zp_path)?;
        check_param_shape(&z.shape, z.data.len(), "zero_point.npy", &spec, rows, cols)?;
        Some(z.data)
    } else {
        None
    };
    let offsets = if spec.scheme() == Scheme::MinOffset {
        let o = npy::read_f32(&dir.join("offset.npy"))?;
        check_param_shape(&o.shape, o.data.len(), "offset.npy", &spec, rows, cols)?;
        Some(o.data)
    } else {
        None
    };
    let data = q.data.iter().map(|&v| v as u8).collect();
    HostQuantized::from_parts(spec, rows, cols, data, scales.data, zero_points, offsets)
}

fn dequantize_on<T: qkernels::cuda::DeviceElement>(backend: &Backend, q: &HostQuantized) -> Result<Vec<T>> {
    match backend {
        Backend::Cpu => cpu::dequantize(q),
        Backend::Gpu(g) => {
            let dq = cuda::DeviceQuantized::upload(&g.stream, q)?;
            let y = cuda::dequantize::<T>(&g.stream, &dq)?;
            Ok(g.stream.clone_dtoh(&y)?)
        }
    }
}

pub fn dequantize(a: DequantizeArgs) -> Result<()> {
    let q = read_quantized(&a.dir, a.scheme, a.granularity)?;
    let backend = Backend::pick(a.device)?;
    let shape = [q.rows, q.cols];
    match a.out_dtype {
        OutDtype::F32 => npy::write(&a.out, &dequantize_on::<f32>(&backend, &q)?, &shape),
        OutDtype::F16 => npy::write(&a.out, &dequantize_on::<f16>(&backend, &q)?, &shape),
    }
}
