// quantize.cu — quantize, dequantize, dynamic parameters and row sums.
//
// Layout: row-major [rows, cols] matrices; parameters indexed per tensor (0), row (r),
// column (c) or (row, group) (r * cols/G + c/G). Arch: any (sm_80, sm_89, sm_90a builds).
// Numbers: DESIGN.md section 2 through common/numeric.cuh; src/cpu/quantize.rs is the
// bit-exact reference.
//
// Kernel versions and why each exists:
//   quantize_rows<T, VEC, R>  one block per row at a time (grid of up to 8 blocks per SM,
//                             each looping over rows). The row is loaded once into
//                             registers (R 16-byte vectors per thread), dynamic per-row or
//                             per-group parameters are reduced from those registers, then
//                             the row is quantized and stored with VEC-byte stores, its sum
//                             reduced in the same pass. R = 0 is the two-pass variant for
//                             rows too long for registers; VEC = 1 is the scalar variant for
//                             unaligned pointers or widths.
//   group_params_scalar<T>    per-group parameters, one thread per group, for group sizes
//                             that do not map onto lane segments (G/VEC not a power of two
//                             <= 32); quantize_rows then runs with the parameters given.
//   reduce_columns<T>         finite min/max (or absmax) per column or per tensor, with
//                             order-preserving atomics into the parameter buffers; then
//                             finalize_params turns them into parameters on the device, so
//                             per-tensor dynamic quantization needs no host round trip.
//   dequantize_elems<T, VEC>  element-wise, grid-stride, 4-wide when aligned.
//   row_sums_kernel           one block per row.
#include <cuda_runtime.h>

#include "common/numeric.cuh"
#include "common/reduce.cuh"

namespace qk {

enum QuantMode { kGiven = 0, kDynRow = 1, kDynGroup = 2 };

// ---- vector memory helpers ------------------------------------------------------------

// Loads VEC consecutive elements; for VEC > 1 the pointer is 16-byte aligned and
// VEC * sizeof(T) == 16.
template <typename T, int VEC>
__device__ __forceinline__ void load_floats(const T *p, float (&out)[VEC]) {
  if constexpr (VEC == 1) {
    out[0] = to_f32(p[0]);
  } else {
    static_assert(VEC * sizeof(T) == 16, "vector loads are exactly 16 bytes");
    uint4 raw = *reinterpret_cast<const uint4 *>(p);
    const T *e = reinterpret_cast<const T *>(&raw);
#pragma unroll
    for (int j = 0; j < VEC; ++j) out[j] = to_f32(e[j]);
  }
}

// Stores VEC 8-bit values (low byte of each int); the pointer is VEC-byte aligned.
template <int VEC>
__device__ __forceinline__ void store_bytes(uint8_t *p, const int32_t (&q)[VEC]) {
  if constexpr (VEC == 1) {
    p[0] = (uint8_t)q[0];
  } else {
    static_assert(VEC == 4 || VEC == 8, "byte vectors are 4 or 8 wide");
    uint32_t w[VEC / 4];
#pragma unroll
    for (int k = 0; k < VEC / 4; ++k)
      w[k] = (uint32_t)(q[4 * k] & 0xff) | ((uint32_t)(q[4 * k + 1] & 0xff) << 8) |
             ((uint32_t)(q[4 * k + 2] & 0xff) << 16) | ((uint32_t)(q[4 * k + 3] & 0xff) << 24);
    if constexpr (VEC == 4) *reinterpret_cast<uint32_t *>(p) = w[0];
    else *reinterpret_cast<uint2 *>(p) = make_uint2(w[0], w[1]);
  }
}

__device__ __forceinline__ int32_t load_q(const uint8_t *p, qk_int_type t) {
  return t == QK_S8 ? (int32_t)(int8_t)*p : (int32_t)*p;
}

// ---- parameters ---------------------------------------------------------------------------

__device__ __forceinline__ int64_t param_index(qk_granularity g, int64_t row, int64_t col, int64_t group,
                                               int64_t ngroups) {
  switch (g) {
    case QK_TENSOR: return 0;
    case QK_ROW: return row;
    case QK_COL: return col;
    default: return row * ngroups + col / group;
  }
}

__device__ __forceinline__ Params load_params(qk_scheme scheme, const float *scale, const int32_t *zp,
                                              const float *offset, int64_t i) {
  Params p;
  p.scale = scale[i];
  p.zp = scheme == QK_AFFINE ? zp[i] : 0;
  p.offset = scheme == QK_MIN_OFFSET ? offset[i] : 0.0f;
  return p;
}

__device__ __forceinline__ void store_params(const qk_quantize_args &a, int64_t i, Params p) {
  a.scale[i] = p.scale;
  if (a.scheme == QK_AFFINE) a.zero_point[i] = p.zp;
  if (a.scheme == QK_MIN_OFFSET) a.offset[i] = p.offset;
}

// ---- quantize_rows ------------------------------------------------------------------------

template <typename T, int VEC, int R>
__global__ void __launch_bounds__(kMaxBlock) quantize_rows(qk_quantize_args a, int mode) {
  __shared__ Range s_range[kMaxWarps];
  __shared__ int32_t s_sum[kMaxWarps];
  const T *x = static_cast<const T *>(a.x);
  uint8_t *q = static_cast<uint8_t *>(a.q);
  const int nt = blockDim.x;
  const int64_t nvec = a.cols / VEC;
  const IntRange ir = int_range(a.scheme, a.q_type);
  const int64_t ngroups = a.granularity == QK_GROUP ? a.cols / a.group : 1;
  const int seg = mode == kDynGroup ? (int)(a.group / VEC) : 1;  // lanes per group
  unsigned long long nonfinite = 0;

  for (int64_t row = blockIdx.x; row < a.rows; row += gridDim.x) {
    const T *xr = x + row * a.cols;
    uint8_t *qr = q + row * a.cols;
    float v[R > 0 ? R : 1][VEC];
    if constexpr (R > 0) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int64_t i = (int64_t)r * nt + threadIdx.x;
        if (i < nvec) load_floats<T, VEC>(xr + i * VEC, v[r]);
      }
    }

    // Phase 1: dynamic parameters, written to the parameter buffers and read back in
    // phase 2 by every thread of the block after the barrier.
    if (mode == kDynRow) {
      Range rg{};
      if constexpr (R > 0) {
#pragma unroll
        for (int r = 0; r < R; ++r)
          if ((int64_t)r * nt + threadIdx.x < nvec)
#pragma unroll
            for (int j = 0; j < VEC; ++j) rg.add(v[r][j]);
      } else {
        for (int64_t i = threadIdx.x; i < nvec; i += nt) {
          float t[VEC];
          load_floats<T, VEC>(xr + i * VEC, t);
#pragma unroll
          for (int j = 0; j < VEC; ++j) rg.add(t[j]);
        }
      }
      rg = block_reduce_range(rg, s_range);
      if (threadIdx.x == 0) store_params(a, row, params_from_range(a.scheme, ir, rg));
      __syncthreads();
    } else if (mode == kDynGroup) {
      // NOTE: a group is `seg` consecutive vectors held by `seg` consecutive lanes in one
      // step (nt is a multiple of 32 and seg a power of two <= 32), so a segmented
      // shuffle reduces it; the segment's first lane writes the group's parameters.
      const int64_t steps = (nvec + nt - 1) / nt;  // uniform across the block
      for (int64_t st = 0; st < steps; ++st) {
        const int64_t i = st * nt + threadIdx.x;
        Range rg{};
        if (i < nvec) {
          float t[VEC];
          if constexpr (R > 0) {
#pragma unroll
            for (int r = 0; r < R; ++r)
              if (r == st)
#pragma unroll
                for (int j = 0; j < VEC; ++j) t[j] = v[r][j];
          } else {
            load_floats<T, VEC>(xr + i * VEC, t);
          }
#pragma unroll
          for (int j = 0; j < VEC; ++j) rg.add(t[j]);
        }
        rg = segment_reduce_range(rg, seg);
        if (i < nvec && i % seg == 0)
          store_params(a, row * ngroups + i / seg, params_from_range(a.scheme, ir, rg));
      }
      __syncthreads();
    }

    // Phase 2: quantize, store, sum.
    int32_t sum = 0;
    auto quantize_vec = [&](int64_t i, const float(&t)[VEC]) {
      const int64_t c0 = i * VEC;
      int32_t qv[VEC];
      Params p;
      if (a.granularity != QK_COL)  // a vector never straddles a group (checked at launch)
        p = load_params(a.scheme, a.scale, a.zero_point, a.offset,
                        param_index(a.granularity, row, c0, a.group, ngroups));
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        if (a.granularity == QK_COL) p = load_params(a.scheme, a.scale, a.zero_point, a.offset, c0 + j);
        qv[j] = quantize_value(t[j], a.scheme, ir, p, nonfinite);
        sum += qv[j];
      }
      store_bytes<VEC>(qr + c0, qv);
    };
    if constexpr (R > 0) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int64_t i = (int64_t)r * nt + threadIdx.x;
        if (i < nvec) quantize_vec(i, v[r]);
      }
    } else {
      for (int64_t i = threadIdx.x; i < nvec; i += nt) {
        float t[VEC];
        load_floats<T, VEC>(xr + i * VEC, t);
        quantize_vec(i, t);
      }
    }
    if (a.row_sums != nullptr) {
      sum = block_sum(sum, s_sum);
      if (threadIdx.x == 0) a.row_sums[row] = sum;
    }
  }

  // NOTE: the non-finite count needs no memset before the launch (one launch for M = 1).
  // Each block adds its count into a scratch word; the last block to take a ticket
  // publishes the total into word 0 and zeroes the scratch and the ticket, so the buffer
  // is ready for the next call. The fence orders a block's add before its ticket.
  __shared__ unsigned long long s_nf[kMaxWarps];
  nonfinite = warp_sum(nonfinite);
  if ((threadIdx.x & 31) == 0) s_nf[threadIdx.x >> 5] = nonfinite;
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned long long total = 0;
    for (int w = 0; w < (nt + 31) / 32; ++w) total += s_nf[w];
    unsigned long long *slot = reinterpret_cast<unsigned long long *>(a.nonfinite);
    if (total != 0) atomicAdd(slot + 1, total);
    __threadfence();
    if (atomicAdd(slot + 2, 1ull) == gridDim.x - 1) {
      slot[0] = atomicExch(slot + 1, 0ull);
      atomicExch(slot + 2, 0ull);
    }
  }
}

// ---- dynamic parameters that quantize_rows cannot reduce itself -------------------------

template <typename T>
__global__ void group_params_scalar(qk_quantize_args a) {
  const T *x = static_cast<const T *>(a.x);
  const IntRange ir = int_range(a.scheme, a.q_type);
  const int64_t ngroups = a.cols / a.group;
  const int64_t total = a.rows * ngroups;
  for (int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; g < total;
       g += (int64_t)gridDim.x * blockDim.x) {
    const T *xg = x + (g / ngroups) * a.cols + (g % ngroups) * a.group;
    Range rg{};
    for (int64_t c = 0; c < a.group; ++c) rg.add(to_f32(xg[c]));
    store_params(a, g, params_from_range(a.scheme, ir, rg));
  }
}

// Buffer that holds the encoded minimum during the reduction (the scale buffer holds the
// encoded maximum, or the absolute maximum's bits for Symmetric).
__device__ __forceinline__ uint32_t *min_slots(const qk_quantize_args &a) {
  return a.scheme == QK_AFFINE ? reinterpret_cast<uint32_t *>(a.zero_point)
                               : reinterpret_cast<uint32_t *>(a.offset);
}

template <typename T>
__global__ void __launch_bounds__(256) reduce_columns(qk_quantize_args a, int64_t rows_per_chunk) {
  __shared__ Range s_range[kMaxWarps];
  const T *x = static_cast<const T *>(a.x);
  const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t r0 = (int64_t)blockIdx.y * rows_per_chunk;
  const int64_t r1 = min(a.rows, r0 + rows_per_chunk);
  Range rg{};
  if (c < a.cols)
    for (int64_t r = r0; r < r1; ++r) rg.add(to_f32(x[r * a.cols + c]));
  int64_t slot = c;
  if (a.granularity == QK_TENSOR) {
    rg = block_reduce_range(rg, s_range);
    if (threadIdx.x != 0) return;
    slot = 0;
  }
  if (c >= a.cols && a.granularity != QK_TENSOR) return;
  if (!rg.any) return;
  uint32_t *maxs = reinterpret_cast<uint32_t *>(a.scale);
  if (a.scheme == QK_SYMMETRIC) {
    atomicMax(maxs + slot, __float_as_uint(fmaxf(fabsf(rg.lo), fabsf(rg.hi))));
  } else {
    atomicMin(min_slots(a) + slot, order_encode(rg.lo));
    atomicMax(maxs + slot, order_encode(rg.hi));
  }
}

__global__ void finalize_params(qk_quantize_args a, int64_t n) {
  const IntRange ir = int_range(a.scheme, a.q_type);
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const uint32_t emax = reinterpret_cast<const uint32_t *>(a.scale)[i];
    Range rg{};
    if (a.scheme == QK_SYMMETRIC) {
      rg.any = 1;
      rg.lo = 0.0f;
      rg.hi = __uint_as_float(emax);
    } else {
      const uint32_t emin = min_slots(a)[i];
      if (emin != kEncMinInit) {
        rg.any = 1;
        rg.lo = order_decode(emin);
        rg.hi = order_decode(emax);
      }
    }
    store_params(a, i, params_from_range(a.scheme, ir, rg));
  }
}

// ---- dequantize and row sums ------------------------------------------------------------

template <typename T, int VEC>
__global__ void dequantize_elems(qk_dequantize_args a) {
  const uint8_t *q = static_cast<const uint8_t *>(a.q);
  T *y = static_cast<T *>(a.y);
  const int64_t ngroups = a.granularity == QK_GROUP ? a.cols / a.group : 1;
  const int64_t nvec = a.rows * a.cols / VEC;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < nvec; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t e0 = i * VEC, row = e0 / a.cols, c0 = e0 % a.cols;
    alignas(16) T out[VEC];
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const Params p = load_params(a.scheme, a.scale, a.zero_point, a.offset,
                                   param_index(a.granularity, row, c0 + j, a.group, ngroups));
      out[j] = from_f32<T>(dequantize_value(load_q(q + e0 + j, a.q_type), a.scheme, p));
    }
    if constexpr (VEC == 1) {
      y[e0] = out[0];
    } else {
      static_assert(VEC == 4, "dequantize vectors are 4 wide");
      if constexpr (sizeof(T) == 4) *reinterpret_cast<float4 *>(y + e0) = *reinterpret_cast<float4 *>(out);
      else *reinterpret_cast<uint2 *>(y + e0) = *reinterpret_cast<uint2 *>(out);
    }
  }
}

__global__ void row_sums_kernel(const uint8_t *q, qk_int_type t, int64_t rows, int64_t cols, int32_t *out) {
  __shared__ int32_t s_sum[kMaxWarps];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    int32_t sum = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) sum += load_q(q + row * cols + c, t);
    sum = block_sum(sum, s_sum);
    if (threadIdx.x == 0) out[row] = sum;
  }
}

__global__ void empty_kernel() {}

// ---- launchers ----------------------------------------------------------------------------

constexpr int64_t kMaxGrid = 1 << 20;

inline int grid_for(int64_t work, int block) {
  int64_t g = (work + block - 1) / block;
  return (int)(g < 1 ? 1 : (g > kMaxGrid ? kMaxGrid : g));
}

inline bool aligned(const void *p, uintptr_t n) { return reinterpret_cast<uintptr_t>(p) % n == 0; }
inline bool pow2_upto32(int64_t w) { return w >= 1 && w <= 32 && (w & (w - 1)) == 0; }

// Blocks of quantize_rows: at most 8 per SM (2048 threads of 256), each looping over rows.
// NOTE: one block per row (a grid of M blocks) ran at 13-21% of copy bandwidth on H200
// (2026-11-26): every block ends with a GPU-scope fence and a ticket for the non-finite
// count, which drains its stores, so each row paid a full memory round trip after its
// store. With a grid the SMs can hold at once, that cost is paid once per block.
inline cudaError_t rows_grid(int64_t rows, int *grid) {
  *grid = (int)(rows < 8 ? rows : 8);
  if (rows <= 8) return cudaSuccess;  // within the cap on any device: no query (decode, M = 1)
  int dev = 0, sms = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (err != cudaSuccess) return err;
  const int64_t cap = 8 * (int64_t)(sms > 0 ? sms : 1);
  *grid = (int)(rows < cap ? rows : cap);
  return cudaSuccess;
}

template <typename T, int VEC>
cudaError_t launch_rows(const qk_quantize_args &a, int mode, cudaStream_t s) {
  const int64_t nvec = a.cols / VEC;
  int grid = 1;
  const cudaError_t gerr = rows_grid(a.rows, &grid);
  if (gerr != cudaSuccess) return gerr;
  if constexpr (VEC == 1) {
    quantize_rows<T, 1, 0><<<grid, 256, 0, s>>>(a, mode);
  } else if (nvec <= 256) {
    quantize_rows<T, VEC, 1><<<grid, (int)((nvec + 31) / 32 * 32), 0, s>>>(a, mode);
  } else {
    const int nt = nvec <= 8 * 256 ? 256 : 512;
    const int64_t per = (nvec + nt - 1) / nt;
    if (per <= 2) quantize_rows<T, VEC, 2><<<grid, nt, 0, s>>>(a, mode);
    else if (per <= 4) quantize_rows<T, VEC, 4><<<grid, nt, 0, s>>>(a, mode);
    else if (per <= 8) quantize_rows<T, VEC, 8><<<grid, nt, 0, s>>>(a, mode);
    else quantize_rows<T, VEC, 0><<<grid, nt, 0, s>>>(a, mode);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_quantize(const qk_quantize_args &a, cudaStream_t s) {
  constexpr int VEC = 16 / sizeof(T);
  const bool vec_ok = a.cols % VEC == 0 && aligned(a.x, 16) && aligned(a.q, VEC) &&
                      (a.granularity != QK_GROUP || a.group % VEC == 0);
  const int vec = vec_ok ? VEC : 1;
  int mode = kGiven;
  cudaError_t err = cudaSuccess;
  if (a.dynamic) {
    if (a.granularity == QK_ROW) {
      mode = kDynRow;
    } else if (a.granularity == QK_GROUP) {
      if (pow2_upto32(a.group / vec)) {
        mode = kDynGroup;
      } else {
        group_params_scalar<T><<<grid_for(a.rows * (a.cols / a.group), 256), 256, 0, s>>>(a);
        if ((err = cudaGetLastError()) != cudaSuccess) return err;
      }
    } else {
      const int64_t n = a.granularity == QK_TENSOR ? 1 : a.cols;
      if ((err = cudaMemsetAsync(a.scale, 0x00, n * sizeof(float), s)) != cudaSuccess) return err;
      if (a.scheme != QK_SYMMETRIC) {
        void *mins = a.scheme == QK_AFFINE ? (void *)a.zero_point : (void *)a.offset;
        if ((err = cudaMemsetAsync(mins, 0xff, n * sizeof(uint32_t), s)) != cudaSuccess) return err;
      }
      int64_t chunk = 64;
      if ((a.rows + chunk - 1) / chunk > 65535) chunk = (a.rows + 65534) / 65535;
      const dim3 grid((unsigned)((a.cols + 255) / 256), (unsigned)((a.rows + chunk - 1) / chunk));
      reduce_columns<T><<<grid, 256, 0, s>>>(a, chunk);
      if ((err = cudaGetLastError()) != cudaSuccess) return err;
      finalize_params<<<grid_for(n, 256), 256, 0, s>>>(a, n);
      if ((err = cudaGetLastError()) != cudaSuccess) return err;
    }
  }
  return vec_ok ? launch_rows<T, VEC>(a, mode, s) : launch_rows<T, 1>(a, mode, s);
}

template <typename T>
cudaError_t launch_dequantize(const qk_dequantize_args &a, cudaStream_t s) {
  const bool vec_ok = a.cols % 4 == 0 && aligned(a.q, 4) && aligned(a.y, 4 * sizeof(T));
  const int64_t n = a.rows * a.cols;
  if (vec_ok) dequantize_elems<T, 4><<<grid_for(n / 4, 256), 256, 0, s>>>(a);
  else dequantize_elems<T, 1><<<grid_for(n, 256), 256, 0, s>>>(a);
  return cudaGetLastError();
}

}  // namespace qk

extern "C" int qk_quantize(const qk_quantize_args *args, qk_stream_t stream) {
  const qk_quantize_args a = *args;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (a.rows == 0 || a.cols == 0) return 0;
  switch (a.x_type) {
    case QK_F32: return (int)qk::launch_quantize<float>(a, s);
    case QK_F16: return (int)qk::launch_quantize<__half>(a, s);
    default: return (int)qk::launch_quantize<__nv_bfloat16>(a, s);
  }
}

extern "C" int qk_dequantize(const qk_dequantize_args *args, qk_stream_t stream) {
  const qk_dequantize_args a = *args;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (a.rows == 0 || a.cols == 0) return 0;
  switch (a.y_type) {
    case QK_F32: return (int)qk::launch_dequantize<float>(a, s);
    case QK_F16: return (int)qk::launch_dequantize<__half>(a, s);
    default: return (int)qk::launch_dequantize<__nv_bfloat16>(a, s);
  }
}

extern "C" int qk_row_sums(const void *q, qk_int_type q_type, int64_t rows, int64_t cols, int32_t *out,
                           qk_stream_t stream) {
  if (rows == 0) return 0;
  const int grid = (int)(rows < qk::kMaxGrid ? rows : qk::kMaxGrid);
  qk::row_sums_kernel<<<grid, 256, 0, static_cast<cudaStream_t>(stream)>>>(static_cast<const uint8_t *>(q),
                                                                              q_type, rows, cols, out);
  return (int)cudaGetLastError();
}

extern "C" int qk_empty_kernel(qk_stream_t stream) {
  qk::empty_kernel<<<1, 32, 0, static_cast<cudaStream_t>(stream)>>>();
  return (int)cudaGetLastError();
}

extern "C" const char *qk_status_string(int status) {
  // NOTE: cudaGetErrorString returns static storage, valid for the life of the process.
  return cudaGetErrorString(static_cast<cudaError_t>(status));
}
