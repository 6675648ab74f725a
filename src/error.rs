//! One error type for the whole crate. Every public function returns `Result<T, Error>`;
//! library code never panics on bad input.

/// What went wrong, with a message that says what to change.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Shapes or lengths that do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A parameter value outside its domain (scale, zero point, group size, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A device pointer without the alignment its element type or a kernel needs.
    #[error("misaligned device buffer: {0}")]
    Misaligned(String),
    /// A size beyond what the kernels or the exactness bounds allow.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// Non-finite values to quantize (inputs, or a requantized GEMM's f32 results) met by a
    /// host-facing call that did not opt in to them.
    #[error(
        "{count} non-finite value(s) to quantize (NaN or ±Inf: in the input, or GEMM results that \
         overflowed f32); they quantize to the defined values (NaN → zero point, +Inf → qmax, \
         −Inf → qmin) only when allowed (allow_nonfinite / --allow-nonfinite)"
    )]
    NonFinite { count: u64 },
    /// A combination the library does not implement (never a wrong answer instead).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The crate was compiled without nvcc, so no GPU kernels exist.
    #[error("{0}")]
    NoCudaKernels(&'static str),
    /// No usable CUDA driver or device.
    #[error("no CUDA device: {0}")]
    NoDevice(String),
    /// A kernel launcher returned a CUDA status other than success.
    #[error("CUDA error {code} in {op}: {message}")]
    Cuda {
        op: &'static str,
        code: i32,
        message: String,
    },
    /// An error from the CUDA driver API (through cudarc).
    #[error("CUDA driver: {0}")]
    Driver(#[from] cudarc::driver::DriverError),
    /// Reading or writing files (the CLI's `.npy` and JSON files).
    #[error("{0}")]
    Io(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
