//! Vendor baselines for the benchmarks: cuBLASLt INT8 (i8·i8 → i32) with a heuristic
//! search, and cuBLAS BF16 GEMM, on the same row-major problem our GEMM solves.
//!
//! Row-major `Y[M, N] = A[M, K] · B[N, K]ᵀ` is, in cuBLAS's column-major terms,
//! `Yᵀ[N, M] = op(B) · A'` with B stored as a K×N column-major matrix transposed (`T`) and A
//! as a K×M column-major matrix (`N`): the "TN" layout cuBLASLt requires for INT8.
//! cudarc exposes cuBLASLt's INT8 path only through `cudarc::cublaslt::sys`, so this module
//! wraps those calls with owned handles that are released on drop.

use std::sync::Arc;

use cudarc::cublas::{CudaBlas, Gemm, GemmConfig, sys as blas_sys};
use cudarc::cublaslt::sys as lt;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut};
use half::bf16;

use crate::error::{Error, Result};

/// The workspace cuBLASLt's heuristic may use (and the benchmark gives it).
pub const LT_WORKSPACE_BYTES: usize = 32 << 20;

fn lt_check(op: &'static str, s: lt::cublasStatus_t) -> Result<()> {
    if s == lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(Error::Cuda {
            op,
            code: s as i32,
            message: format!("{s:?}"),
        })
    }
}

/// cuBLASLt `i8 · i8 → i32` for one `M × N × K` problem, with the algorithms its heuristic
/// returned (best first by its own estimate).
pub struct LtInt8 {
    handle: lt::cublasLtHandle_t,
    desc: lt::cublasLtMatmulDesc_t,
    layouts: [lt::cublasLtMatrixLayout_t; 3],
    algos: Vec<lt::cublasLtMatmulAlgo_t>,
    workspace: CudaSlice<u8>,
    shape: (usize, usize, usize),
}

impl LtInt8 {
    /// Creates the descriptors for `M × N × K` and asks the heuristic for up to `max_algos`
    /// algorithms that fit a 32 MiB workspace.
    pub fn new(stream: &Arc<CudaStream>, m: usize, n: usize, k: usize, max_algos: usize) -> Result<Self> {
        stream.context().bind_to_thread()?;
        let workspace = stream.alloc_zeros::<u8>(LT_WORKSPACE_BYTES)?;
        let mut this = Self {
            handle: std::ptr::null_mut(),
            desc: std::ptr::null_mut(),
            layouts: [std::ptr::null_mut(); 3],
            algos: Vec::new(),
            workspace,
            shape: (m, n, k),
        };
        // SAFETY: each call matches its cuBLASLt signature; out-pointers point to fields of
        // `this`, which Drop releases (null handles are skipped there).
        unsafe {
            lt_check("cublasLtCreate", lt::cublasLtCreate(&mut this.handle))?;
            lt_check(
                "cublasLtMatmulDescCreate",
                lt::cublasLtMatmulDescCreate(
                    &mut this.desc,
                    lt::cublasComputeType_t::CUBLAS_COMPUTE_32I,
                    lt::cudaDataType_t::CUDA_R_32I,
                ),
            )?;
            let trans = blas_sys::cublasOperation_t::CUBLAS_OP_T;
            lt_check(
                "cublasLtMatmulDescSetAttribute",
                lt::cublasLtMatmulDescSetAttribute(
                    this.desc,
                    lt::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                    &trans as *const _ as *const _,
                    std::mem::size_of_val(&trans),
                ),
            )?;
            let (m64, n64, k64) = (m as u64, n as u64, k as u64);
            let specs = [
                (lt::cudaDataType_t::CUDA_R_8I, k64, n64, k as i64), // B: K x N col-major, op T
                (lt::cudaDataType_t::CUDA_R_8I, k64, m64, k as i64), // A: K x M col-major
                (lt::cudaDataType_t::CUDA_R_32I, n64, m64, n as i64), // Y: N x M col-major
            ];
            for (layout, (t, rows, cols, ld)) in this.layouts.iter_mut().zip(specs) {
                lt_check(
                    "cublasLtMatrixLayoutCreate",
                    lt::cublasLtMatrixLayoutCreate(layout, t, rows, cols, ld),
                )?;
            }
            let mut pref: lt::cublasLtMatmulPreference_t = std::ptr::null_mut();
            lt_check(
                "cublasLtMatmulPreferenceCreate",
                lt::cublasLtMatmulPreferenceCreate(&mut pref),
            )?;
            let ws = LT_WORKSPACE_BYTES as u64;
            let set = lt::cublasLtMatmulPreferenceSetAttribute(
                pref,
                lt::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                &ws as *const _ as *const _,
                std::mem::size_of_val(&ws),
            );
            let mut results = vec![std::mem::zeroed::<lt::cublasLtMatmulHeuristicResult_t>(); max_algos.max(1)];
            let mut count = 0;
            let heur = lt::cublasLtMatmulAlgoGetHeuristic(
                this.handle,
                this.desc,
                this.layouts[0],
                this.layouts[1],
                this.layouts[2],
                this.layouts[2],
                pref,
                results.len() as i32,
                results.as_mut_ptr(),
                &mut count,
            );
            lt::cublasLtMatmulPreferenceDestroy(pref);
            lt_check("cublasLtMatmulPreferenceSetAttribute", set)?;
            lt_check("cublasLtMatmulAlgoGetHeuristic", heur)?;
            this.algos = results[..count.max(0) as usize]
                .iter()
                .filter(|r| r.state == lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS)
                .map(|r| r.algo)
                .collect();
        }
        if this.algos.is_empty() {
            return Err(Error::Unsupported(format!(
                "cuBLASLt returned no INT8 algorithm for {m}x{n}x{k}"
            )));
        }
        Ok(this)
    }

    /// How many algorithms the heuristic returned.
    pub fn algo_count(&self) -> usize {
        self.algos.len()
    }

    /// `y[M, N] (i32) = a[M, K] · b[N, K]ᵀ` with algorithm `algo`, enqueued on `stream`.
    pub fn run(
        &mut self,
        stream: &Arc<CudaStream>,
        algo: usize,
        a: &impl DevicePtr<u8>,
        b: &impl DevicePtr<u8>,
        y: &mut impl DevicePtrMut<i32>,
    ) -> Result<()> {
        let (m, n, k) = self.shape;
        if a.len() < m * k || b.len() < n * k || y.len() < m * n || algo >= self.algos.len() {
            return Err(Error::Shape(format!(
                "cuBLASLt INT8 buffers or algorithm do not fit {m}x{n}x{k}"
            )));
        }
        let (one, zero) = (1i32, 0i32);
        let (pa, _ga) = a.device_ptr(stream);
        let (pb, _gb) = b.device_ptr(stream);
        let (py, _gy) = y.device_ptr_mut(stream);
        let (pw, _gw) = self.workspace.device_ptr_mut(stream);
        // SAFETY: matches cublasLtMatmul; the buffers hold at least the sizes the layouts
        // describe (checked above) and stay alive until the call is enqueued.
        let s = unsafe {
            lt::cublasLtMatmul(
                self.handle,
                self.desc,
                &one as *const _ as *const _,
                pb as *const _,
                self.layouts[0],
                pa as *const _,
                self.layouts[1],
                &zero as *const _ as *const _,
                py as *const _,
                self.layouts[2],
                py as *mut _,
                self.layouts[2],
                &self.algos[algo],
                pw as *mut _,
                LT_WORKSPACE_BYTES,
                stream.cu_stream() as lt::cudaStream_t,
            )
        };
        lt_check("cublasLtMatmul", s)
    }
}

impl Drop for LtInt8 {
    fn drop(&mut self) {
        // SAFETY: each handle was created by the matching create call (or is null).
        unsafe {
            for l in self.layouts {
                if !l.is_null() {
                    lt::cublasLtMatrixLayoutDestroy(l);
                }
            }
            if !self.desc.is_null() {
                lt::cublasLtMatmulDescDestroy(self.desc);
            }
            if !self.handle.is_null() {
                lt::cublasLtDestroy(self.handle);
            }
        }
    }
}

/// cuBLAS BF16 GEMM (`cublasGemmEx`, f32 compute, default algorithm), row-major
/// `y[M, N] = a[M, K] · b[N, K]ᵀ`.
pub struct Bf16Gemm {
    blas: CudaBlas,
}

impl Bf16Gemm {
    pub fn new(stream: &Arc<CudaStream>) -> Result<Self> {
        let blas = CudaBlas::new(stream.clone()).map_err(|e| Error::Cuda {
            op: "cublasCreate",
            code: -1,
            message: format!("{e:?}"),
        })?;
        Ok(Self { blas })
    }

    pub fn run(
        &self,
        m: usize,
        n: usize,
        k: usize,
        a: &impl DevicePtr<bf16>,
        b: &impl DevicePtr<bf16>,
        y: &mut impl DevicePtrMut<bf16>,
    ) -> Result<()> {
        if a.len() < m * k || b.len() < n * k || y.len() < m * n {
            return Err(Error::Shape(format!("cuBLAS BF16 buffers do not fit {m}x{n}x{k}")));
        }
        let cfg = GemmConfig {
            transa: blas_sys::cublasOperation_t::CUBLAS_OP_T,
            transb: blas_sys::cublasOperation_t::CUBLAS_OP_N,
            m: n as i32,
            n: m as i32,
            k: k as i32,
            alpha: bf16::ONE,
            lda: k as i32,
            ldb: k as i32,
            beta: bf16::ZERO,
            ldc: n as i32,
        };
        // SAFETY: the buffers hold the sizes the configuration describes (checked above).
        unsafe { self.blas.gemm(cfg, b, a, y) }.map_err(|e| Error::Cuda {
            op: "cublasGemmEx",
            code: -1,
            message: format!("{e:?}"),
        })
    }
}
