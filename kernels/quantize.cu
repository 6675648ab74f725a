// quantize.cu — quantize, dequantize, dynamic parameters and row sums.
//
// Layout: row-major [rows, cols] matrices; parameters indexed per tensor (0), row (r),
// column (c) or (row, group) (r * cols/G + c/G). Arch: any (sm_80, sm_89, sm_90a builds).
// Numbers: DESIGN.md section 2 through common/numeric.cuh; src/cpu/quantize.rs is the
// bit-exact reference.
//
// Kernel versions and why each exists:
//   quantize_rows<T, VEC, R, MODE>
//                             one block per row at a time (a grid of as many blocks as the
//                             SMs hold, each looping over rows). The row is loaded once into
//                             registers (R 16-byte vectors per thread; the next row's load
//                             is issued while this one is processed), dynamic per-row or
//                             per-group parameters (MODE) are reduced from those registers,
//                             then the row is quantized and stored with VEC-byte stores, its
//                             sum reduced in the same pass. Rows of up to 1024 vectors take
//                             R = 4 (fewer for short rows) and as few threads as that allows
//                             (launch_rows, v4: a row's reductions cost every thread alike);
//                             longer ones R = 8 (no next row in flight). R = 0 is the
//                             two-pass variant for rows too long for registers; VEC = 1 is
//                             the scalar variant for unaligned pointers or widths.
//   group_params_scalar<T>    per-group parameters, one thread per group, for group sizes
//                             that do not map onto lane segments (G/VEC not a power of two
//                             <= 32); quantize_rows then runs with the parameters given.
//   reduce_columns<T>         finite min/max (or absmax) per column or per tensor, with
//                             order-preserving atomics into the parameter buffers; then
//                             finalize_params turns them into parameters on the device, so
//                             per-tensor dynamic quantization needs no host round trip.
//   dequantize_elems<T, VEC>  element-wise, grid-stride, 4-wide when aligned.
//   row_sums_vec<S8>          one warp per row, 16-byte loads, four bytes per dp4a: rows of
//                             whole 16-byte vectors (a requantized GEMM output's row sums,
//                             which a second launch computes). The byte-wise kernel below
//                             read 8192 x 8192 bytes in ~125 us on H200 (0.5 TB/s), a 25%
//                             surcharge on the 8192^3 requantized GEMM.
//   row_sums_kernel           one block per row, byte loads: any width or alignment.
//   Both take a qk_requant_finish, which the first thread of block 0 carries out when the
//   row sums are a requantizing GEMM's (finish_requant): the output's parameters and its
//   non-finite count, which would otherwise cost two to four copies or memsets per call.
#include <cuda_runtime.h>

#include <type_traits>

#include "common/host.cuh"
#include "common/numeric.cuh"
#include "common/reduce.cuh"

namespace qk {

enum QuantMode { kGiven = 0, kDynRow = 1, kDynGroup = 2 };

// ---- vector memory helpers ------------------------------------------------------------

// The VEC elements of one 16-byte vector, widened to f32.
// NOTE: by shifts and masks of the four words, not through a T pointer into the vector: taking
// its address put the row buffers in local memory.
template <typename T, int VEC>
__device__ __forceinline__ void unpack(const uint4 &raw, float (&out)[VEC]) {
  static_assert(VEC * sizeof(T) == 16, "vectors are exactly 16 bytes");
  const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    if constexpr (std::is_same<T, float>::value) {
      out[k] = __uint_as_float(w[k]);
    } else if constexpr (std::is_same<T, __nv_bfloat16>::value) {
      out[2 * k] = __uint_as_float(w[k] << 16);  // bf16 is the high half of an f32
      out[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
    } else {
      out[2 * k] = __half2float(__ushort_as_half((unsigned short)(w[k] & 0xffffu)));
      out[2 * k + 1] = __half2float(__ushort_as_half((unsigned short)(w[k] >> 16)));
    }
  }
}

// Loads VEC consecutive elements; for VEC > 1 the pointer is 16-byte aligned and
// VEC * sizeof(T) == 16.
template <typename T, int VEC>
__device__ __forceinline__ void load_floats(const T *p, float (&out)[VEC]) {
  if constexpr (VEC == 1) out[0] = to_f32(p[0]);
  else unpack<T, VEC>(*reinterpret_cast<const uint4 *>(p), out);
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

// quantize_value out of line (the per-element path of per-column parameters and of scales
// outside the Quantizer's range): inlined into every unrolled vector, its IEEE division and
// slow-path branches made the kernels large enough that ptxas spilled the row buffers.
// Returns q in .x and 1 for a non-finite x in .y (a counter passed by reference would
// live on the stack).
__device__ __noinline__ int2 quantize_out_of_line(float x, qk_scheme scheme, IntRange ir, Params p) {
  uint32_t nf = 0;
  const int32_t v = quantize_value(x, scheme, ir, p, nf);
  return make_int2(v, (int)nf);
}

// The slow path for one element: inline in the scalar variant (one element per vector, and
// the call's register convention made it spill), out of line in the vector variants.
template <int VEC>
__device__ __forceinline__ int32_t quantize_slow(float x, qk_scheme scheme, IntRange ir, Params p, uint32_t &nonfinite) {
  if constexpr (VEC == 1) {
    return quantize_value(x, scheme, ir, p, nonfinite);
  } else {
    const int2 r = quantize_out_of_line(x, scheme, ir, p);
    nonfinite += (uint32_t)r.y;
    return r.x;
  }
}

// Largest block a quantize_rows<., VEC, R, .> launch uses (launch_rows): 256 threads for
// R = 1..4 and for the scalar variant, up to 512 for R = 8 and the two-pass R = 0. The
// tighter bound lets ptxas give the register-resident variants the registers of both row
// buffers.
template <int VEC, int R> constexpr int kRowsMaxBlock = VEC == 1 || (R >= 1 && R <= 4) ? 256 : kMaxBlock;

// NOTE (v3): per element the kernel issues a handful of full-rate instructions: the range
// is reduced without branches (FiniteRange / FiniteAbsMax) and the quotient comes from the
// group's reciprocal with one exact correction (Quantizer, numeric.cuh) instead of an IEEE
// division with its slow-path branch; every thread derives the row's or group's
// parameters from the reduced range itself (no store and reload through global memory);
// and the next row's vectors are loaded while this one is reduced and quantized.
template <typename T, int VEC, int R, int MODE>
__global__ void __launch_bounds__(kRowsMaxBlock<VEC, R>) quantize_rows(qk_quantize_args a) {
  static_assert(R == 0 || VEC > 1, "rows held in registers are 16-byte vectors");
  __shared__ float2 s_acc[kMaxWarps];
  __shared__ int32_t s_sum[kMaxWarps];
  const T *x = static_cast<const T *>(a.x);
  uint8_t *q = static_cast<uint8_t *>(a.q);
  const int nt = blockDim.x;
  const int64_t nvec = a.cols / VEC;
  const IntRange ir = int_range(a.scheme, a.q_type);
  const int64_t ngroups = a.granularity == QK_GROUP ? a.cols / a.group : 1;
  const int seg = MODE == kDynGroup ? (int)(a.group / VEC) : 1;  // lanes per group
  const bool row_uniform = a.granularity == QK_TENSOR || a.granularity == QK_ROW;
  // NOTE: 32 bits per thread suffice: a thread sees at most VEC · ceil(nvec / nt) elements
  // of each of ceil(rows / grid) rows, fewer than 2^32 for any matrix that fits in device
  // memory; the block total is 64-bit.
  uint32_t nonfinite = 0;

  constexpr int RB = R > 0 ? R : 1;
  // NOTE: with R <= 4 the next row's vectors are loaded while this row is processed; R = 8
  // has no registers for a second copy (the 512-thread cap is 128 per thread).
  constexpr bool PREFETCH = R > 0 && R <= 4;
  auto load_row = [&](int64_t row, uint4(&buf)[RB]) {
    if constexpr (R > 0) {
      const T *xr = x + row * a.cols;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int64_t i = (int64_t)r * nt + threadIdx.x;
        buf[r] = i < nvec ? *reinterpret_cast<const uint4 *>(xr + i * VEC) : make_uint4(0, 0, 0, 0);
      }
    }
  };
  uint4 nxt[RB];
  if (PREFETCH && blockIdx.x < a.rows) load_row(blockIdx.x, nxt);

  for (int64_t row = blockIdx.x; row < a.rows; row += gridDim.x) {
    const T *xr = x + row * a.cols;
    uint8_t *qr = q + row * a.cols;
    uint4 cur[RB];
    if constexpr (PREFETCH) {
#pragma unroll
      for (int r = 0; r < RB; ++r) cur[r] = nxt[r];
      if (row + gridDim.x < a.rows) load_row(row + gridDim.x, nxt);
    } else {
      load_row(row, cur);
    }

    // Phase 1: dynamic parameters. Every thread derives them from the reduced range (the
    // same operations, so the same values); one thread per row or group stores them.
    Params prow{};
    constexpr int NG = MODE == kDynGroup ? RB : 1;
    Params gpar[NG]{};  // R > 0 with groups: the parameters of each of this thread's vectors
    // Accumulator `acc` (FiniteRange or FiniteAbsMax) over this thread's vectors; FINITE:
    // with add_finite (the second try of a range with an infinity).
    auto row_acc = [&]<bool FINITE>(auto acc) {
      if constexpr (R > 0) {
#pragma unroll
        for (int r = 0; r < R; ++r)
          if ((int64_t)r * nt + threadIdx.x < nvec) {
            float t[VEC];
            unpack<T, VEC>(cur[r], t);
            accumulate<FINITE>(acc, t);
          }
      } else {
        for (int64_t i = threadIdx.x; i < nvec; i += nt) {
          float t[VEC];
          load_floats<T, VEC>(xr + i * VEC, t);
          accumulate<FINITE>(acc, t);
        }
      }
      return acc;
    };
    // The block's range of the row (every thread gets it). The reduction is uniform: every
    // thread sees the same total, so all or none take the second try.
    // NOTE (v4): the accumulators themselves are merged (one or two floats), not Ranges
    // (three values and a merge that branches on `any`).
    auto block_range = [&](auto acc) {
      using Acc = decltype(acc);
      Acc fast = row_acc.template operator()<false>(acc);
      block_merge(fast, s_acc);
      Range rg = fast.to_range();
      if (Acc::has_inf(rg)) {
        Acc fin = row_acc.template operator()<true>(acc);
        block_merge(fin, s_acc);
        rg = fin.to_range();
      }
      return rg;
    };
    // The range of the group of the vector `t` (every lane of the warp calls it; lanes past
    // the row pass valid = false): a segmented shuffle over the group's `seg` lanes.
    auto group_range = [&](auto acc, bool valid, const float(&t)[VEC]) {
      using Acc = decltype(acc);
      Acc fast = acc;
      if (valid) accumulate<false>(fast, t);
      segment_merge(fast, seg);
      Range rg = fast.to_range();
      if (__any_sync(0xffffffffu, Acc::has_inf(rg))) {
        if (valid) accumulate<true>(acc, t);
        segment_merge(acc, seg);
        rg = acc.to_range();
      }
      return rg;
    };
    if constexpr (MODE == kDynRow) {
      const Range rg = a.scheme == QK_SYMMETRIC ? block_range(FiniteAbsMax{}) : block_range(FiniteRange{});
      prow = params_from_range(a.scheme, ir, rg);
      if (threadIdx.x == 0) store_params(a, row, prow);
    } else if constexpr (MODE == kDynGroup) {
      // NOTE: a group is `seg` consecutive vectors held by `seg` consecutive lanes in one
      // step (nt is a multiple of 32 and seg a power of two <= 32), so a segmented
      // shuffle reduces it; the loop bounds are uniform across the block, so every lane
      // takes part in every shuffle.
      auto group_step = [&](int64_t i, const float(&t)[VEC]) {
        const bool valid = i < nvec;
        const Range rg =
            a.scheme == QK_SYMMETRIC ? group_range(FiniteAbsMax{}, valid, t) : group_range(FiniteRange{}, valid, t);
        const Params p = params_from_range(a.scheme, ir, rg);
        if (valid && i % seg == 0) store_params(a, row * ngroups + i / seg, p);
        return p;
      };
      if constexpr (R > 0) {
#pragma unroll
        for (int r = 0; r < R; ++r)
          if ((int64_t)r * nt < nvec) {
            float t[VEC];
            unpack<T, VEC>(cur[r], t);
            gpar[r] = group_step((int64_t)r * nt + threadIdx.x, t);
          }
      } else {
        const int64_t steps = (nvec + nt - 1) / nt;
        for (int64_t st = 0; st < steps; ++st) {
          const int64_t i = st * nt + threadIdx.x;
          float t[VEC] = {};
          if (i < nvec) load_floats<T, VEC>(xr + i * VEC, t);
          group_step(i, t);
        }
        // The second pass reads the groups' parameters back from global memory.
        __syncthreads();
      }
    }

    // Phase 2: quantize, store, sum.
    int32_t sum = 0;
    Quantizer zrow{};
    if (row_uniform)
      zrow = make_quantizer(a.scheme, ir,
                            MODE == kDynRow ? prow
                                            : load_params(a.scheme, a.scale, a.zero_point, a.offset,
                                                          a.granularity == QK_ROW ? row : 0));
    // `gp`: the vector's group parameters when `have_gp` (held in registers).
    auto quantize_vec = [&](int64_t i, const float(&t)[VEC], bool have_gp, Params gp) {
      const int64_t c0 = i * VEC;
      int32_t qv[VEC];
      if (a.granularity == QK_COL) {
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          qv[j] = quantize_slow<VEC>(t[j], a.scheme, ir, load_params(a.scheme, a.scale, a.zero_point, a.offset, c0 + j), nonfinite);
        }
      } else {
        // NOTE: a vector never straddles a group (checked at launch).
        const Quantizer z =
            row_uniform ? zrow
                        : make_quantizer(a.scheme, ir,
                                         have_gp ? gp
                                                 : load_params(a.scheme, a.scale, a.zero_point, a.offset,
                                                               param_index(a.granularity, row, c0, a.group, ngroups)));
        const bool min_offset = a.scheme == QK_MIN_OFFSET;
        // NOTE: a vector with a non-finite x (or an overflowing quotient) is redone exactly.
        if (!z.fast || (min_offset ? quantize_fast<true>(t, z, qv) : quantize_fast<false>(t, z, qv))) {
#pragma unroll
          for (int j = 0; j < VEC; ++j) qv[j] = quantize_slow<VEC>(t[j], a.scheme, ir, z.p, nonfinite);
        }
      }
#pragma unroll
      for (int j = 0; j < VEC; ++j) sum += qv[j];
      store_bytes<VEC>(qr + c0, qv);
    };
    if constexpr (R > 0) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int64_t i = (int64_t)r * nt + threadIdx.x;
        if (i < nvec) {
          float t[VEC];
          unpack<T, VEC>(cur[r], t);
          quantize_vec(i, t, MODE == kDynGroup, gpar[r % NG]);
        }
      }
    } else {
      for (int64_t i = threadIdx.x; i < nvec; i += nt) {
        float t[VEC];
        load_floats<T, VEC>(xr + i * VEC, t);
        quantize_vec(i, t, false, Params{});
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
  const unsigned long long warp_nf = warp_sum((unsigned long long)nonfinite);
  if ((threadIdx.x & 31) == 0) s_nf[threadIdx.x >> 5] = warp_nf;
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned long long total = 0;
    for (int w = 0; w < (nt + 31) / 32; ++w) total += s_nf[w];
    unsigned long long *slot = reinterpret_cast<unsigned long long *>(a.nonfinite);
    if (gridDim.x == 1) {
      slot[0] = total;  // one block (M = 1): no other block to wait for, no fence, no atomics
    } else {
      if (total != 0) atomicAdd(slot + 1, total);
      __threadfence();
      if (atomicAdd(slot + 2, 1ull) == gridDim.x - 1) {
        __threadfence();  // acquire side: every block's add is ordered before this read
        slot[0] = atomicExch(slot + 1, 0ull);
        atomicExch(slot + 2, 0ull);
      }
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
      rg = FiniteAbsMax{__uint_as_float(emax)}.to_range();
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

// What a requantizing GEMM leaves to the launch after it (qk_requant_finish; nothing when
// f.nonfinite is NULL). Plain stores suffice: the GEMM, whose atomics fill word 1, finished
// before this launch began, and nothing else writes these words meanwhile.
__device__ __forceinline__ void finish_requant(const qk_requant_finish &f) {
  if (f.nonfinite == nullptr || blockIdx.x != 0 || threadIdx.x != 0) return;
  f.scale_out[0] = f.scale;
  if (f.zero_point_out != nullptr) f.zero_point_out[0] = f.zero_point;
  if (f.offset_out != nullptr) f.offset_out[0] = f.offset;
  f.nonfinite[0] = f.nonfinite[1];
  f.nonfinite[1] = 0;
}

__global__ void row_sums_kernel(const uint8_t *q, qk_int_type t, int64_t rows, int64_t cols, int32_t *out,
                                qk_requant_finish f) {
  finish_requant(f);
  __shared__ int32_t s_sum[kMaxWarps];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    int32_t sum = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) sum += load_q(q + row * cols + c, t);
    sum = block_sum(sum, s_sum);
    if (threadIdx.x == 0) out[row] = sum;
  }
}

template <bool S8>
__global__ void row_sums_vec(const uint4 *q, int64_t rows, int64_t vecs, int32_t *out, qk_requant_finish f) {
  finish_requant(f);
  const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  for (int64_t row = (int64_t)blockIdx.x * warps + (threadIdx.x >> 5); row < rows; row += (int64_t)gridDim.x * warps) {
    const uint4 *p = q + row * vecs;
    int32_t sum = 0;
#pragma unroll 4
    for (int64_t v = lane; v < vecs; v += 32) {
      const uint4 x = __ldg(p + v);
      if constexpr (S8) {
        sum = __dp4a((int)x.x, 0x01010101, sum), sum = __dp4a((int)x.y, 0x01010101, sum);
        sum = __dp4a((int)x.z, 0x01010101, sum), sum = __dp4a((int)x.w, 0x01010101, sum);
      } else {
        uint32_t u = (uint32_t)sum;
        u = __dp4a(x.x, 0x01010101u, u), u = __dp4a(x.y, 0x01010101u, u);
        u = __dp4a(x.z, 0x01010101u, u), u = __dp4a(x.w, 0x01010101u, u);
        sum = (int32_t)u;
      }
    }
    sum = warp_sum(sum);
    if (lane == 0) out[row] = sum;
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

// Launches a quantize_rows variant with as many blocks as the SMs hold at once (its
// occupancy at this block size), each looping over rows.
// NOTE: one block per row (a grid of M blocks) ran at 13-21% of copy bandwidth on H200
// (2026-11-26): every block ends with a GPU-scope fence and a ticket for the non-finite
// count, which drains its stores. A resident grid pays that once per block, and a grid no
// larger than what is resident has no second round of blocks that start late.
template <auto Kernel>
cudaError_t launch_rows_kernel(const qk_quantize_args &a, int nt, cudaStream_t s) {
  int grid = (int)(a.rows < 8 ? a.rows : 8);
  if (a.rows > 8) {  // up to 8 blocks fit on any device: no query (decode, M = 1)
    // Resident blocks of this kernel per device and block size (a multiple of 32, <= 512).
    static PerDevice<kMaxBlock / 32 + 1> resident;
    int cap = 0;
    const cudaError_t err = resident.get(nt / 32, &cap, [&](int dev, int *o) {
      int sms = 0, per_sm = 0;
      cudaError_t e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
      if (e == cudaSuccess) e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, Kernel, nt, 0);
      *o = (per_sm > 0 ? per_sm : 1) * (sms > 0 ? sms : 1);
      return e;
    });
    if (err != cudaSuccess) return err;
    grid = (int)(a.rows < cap ? a.rows : cap);
  }
  Kernel<<<grid, nt, 0, s>>>(a);
  return cudaGetLastError();
}

template <typename T, int VEC, int MODE>
cudaError_t launch_rows(const qk_quantize_args &a, cudaStream_t s) {
  const int64_t nvec = a.cols / VEC;
  if constexpr (VEC == 1) {
    return launch_rows_kernel<quantize_rows<T, 1, 0, MODE>>(a, 256, s);
  } else {
    // NOTE: rows of up to 4 vectors per thread of 256 take the fewest threads (a multiple of
    // 32) that hold the row in 4 vectors each: a row's reductions, barriers and parameters
    // cost each thread the same whatever its share of the row, so more elements per thread
    // make them cheaper per element (v3 at K = 4096 bf16, 256 threads x 2 vectors, issued
    // ~40 instructions per element, ~13 of them the element's own).
    if (nvec <= 4 * 256) {
      const int nt = (int)((nvec + 127) / 128 * 32);  // ceil(nvec / 4), rounded up to 32
      const int64_t per = (nvec + nt - 1) / nt;
      if (per <= 1) return launch_rows_kernel<quantize_rows<T, VEC, 1, MODE>>(a, nt, s);
      if (per <= 2) return launch_rows_kernel<quantize_rows<T, VEC, 2, MODE>>(a, nt, s);
      return launch_rows_kernel<quantize_rows<T, VEC, 4, MODE>>(a, nt, s);
    }
    // Longer rows: 5 to 8 vectors per thread of 256 or 512 (no registers for the next
    // row), then the two-pass variant.
    const int nt = nvec <= 8 * 256 ? 256 : 512;
    if (nvec <= 8 * nt) return launch_rows_kernel<quantize_rows<T, VEC, 8, MODE>>(a, nt, s);
    return launch_rows_kernel<quantize_rows<T, VEC, 0, MODE>>(a, nt, s);
  }
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
  // NOTE: the mode is a template parameter: a kernel for all three kept the per-group
  // parameters and both phases' state live and spilled its row buffers.
  auto launch = [&]<int MODE>() { return vec_ok ? launch_rows<T, VEC, MODE>(a, s) : launch_rows<T, 1, MODE>(a, s); };
  if (mode == kDynRow) return launch.template operator()<kDynRow>();
  if (mode == kDynGroup) return launch.template operator()<kDynGroup>();
  return launch.template operator()<kGiven>();
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

namespace qk {

// One launch of the row sums (and of `f`, when f.nonfinite is not NULL; then also for
// rows == 0, on one block).
static int row_sums(const void *q, qk_int_type q_type, int64_t rows, int64_t cols, int32_t *out,
                    const qk_requant_finish &f, cudaStream_t s) {
  if (rows == 0 && f.nonfinite == nullptr) return 0;
  if (cols % 16 == 0 && aligned(q, 16)) {
    constexpr int kBlock = 256, kRowsPerBlock = kBlock / 32;
    const int grid = grid_for(rows, kRowsPerBlock);
    const uint4 *v = static_cast<const uint4 *>(q);
    if (q_type == QK_S8) row_sums_vec<true><<<grid, kBlock, 0, s>>>(v, rows, cols / 16, out, f);
    else row_sums_vec<false><<<grid, kBlock, 0, s>>>(v, rows, cols / 16, out, f);
    return (int)cudaGetLastError();
  }
  const int grid = (int)(rows < 1 ? 1 : rows < kMaxGrid ? rows : kMaxGrid);
  row_sums_kernel<<<grid, 256, 0, s>>>(static_cast<const uint8_t *>(q), q_type, rows, cols, out, f);
  return (int)cudaGetLastError();
}

}  // namespace qk

extern "C" int qk_row_sums(const void *q, qk_int_type q_type, int64_t rows, int64_t cols, int32_t *out,
                           qk_stream_t stream) {
  return qk::row_sums(q, q_type, rows, cols, out, qk_requant_finish{}, static_cast<cudaStream_t>(stream));
}

extern "C" int qk_row_sums_finish(const void *q, qk_int_type q_type, int64_t rows, int64_t cols, int32_t *out,
                                  const qk_requant_finish *finish, qk_stream_t stream) {
  if (finish == nullptr || finish->nonfinite == nullptr || finish->scale_out == nullptr)
    return (int)cudaErrorInvalidValue;
  return qk::row_sums(q, q_type, rows, cols, out, *finish, static_cast<cudaStream_t>(stream));
}

extern "C" int qk_empty_kernel(qk_stream_t stream) {
  qk::empty_kernel<<<1, 32, 0, static_cast<cudaStream_t>(stream)>>>();
  return (int)cudaGetLastError();
}

extern "C" const char *qk_status_string(int status) {
  // NOTE: cudaGetErrorString returns static storage, valid for the life of the process.
  return cudaGetErrorString(static_cast<cudaError_t>(status));
}
