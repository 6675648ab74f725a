// gemm_epilogue.cuh — the fused GEMM epilogue shared by the sm_80 and sm_90a kernels: zero-
// point corrections, scales, MinOffset term, bias, rounding and (paired) stores. The
// arithmetic is common/epilogue.cuh (twin of src/cpu/epilogue.rs).
#pragma once

#include <cmath>
#include <type_traits>

#include <cuda_runtime.h>

#include "epilogue.cuh"
#include "host.cuh"

namespace qk {

// The output quantizer of a requantizing GEMM (QK_OUT_S8 / QK_OUT_U8), derived once by the
// launcher from qk_gemm_args.y_quant: the contract's static per-tensor quantization of the
// f32 value, as the quantize kernel applies it (numeric.cuh).
struct OutQuantizer {
  Quantizer z;  // z.p.offset is 0 unless MinOffset, so x − offset is x for the other schemes
  qk_scheme scheme;
  IntRange ir;
  int32_t nan_q;  // q of a NaN: the zero point (Symmetric 0), MinOffset qmin
  unsigned long long *nonfinite;
};

// The kernels' parameter: the C ABI's arguments and what the launcher derives from them.
// NOTE: passed as a __grid_constant__ kernel parameter, so the epilogue reads the quantizer
// from the parameter bank (no registers held for it through the main loop).
struct GemmArgs : qk_gemm_args {
  OutQuantizer yq;
};

__host__ inline GemmArgs kernel_args(const qk_gemm_args &a) {
  GemmArgs g;
  static_cast<qk_gemm_args &>(g) = a;
  g.yq = OutQuantizer{};
  if (a.y_type == QK_OUT_S8 || a.y_type == QK_OUT_U8) {
    const qk_requant &q = a.y_quant;
    g.yq.scheme = q.scheme;
    g.yq.ir = int_range(q.scheme, a.y_type == QK_OUT_S8 ? QK_S8 : QK_U8);
    g.yq.z = make_quantizer(q.scheme, g.yq.ir, Params{q.scale, q.zero_point, q.scheme == QK_MIN_OFFSET ? q.offset : 0.0f});
    g.yq.nan_q = nan_value(q.scheme, g.yq.ir, q.zero_point);
    g.yq.nonfinite = reinterpret_cast<unsigned long long *>(q.nonfinite);
  }
  return g;
}

// Whether a requantized output's parameters are ones `requantize` computes exactly (the Rust
// side checks them first; a C caller gets cudaErrorInvalidValue): Symmetric into s8,
// MinOffset into u8, a scale within quantize_fast's range, zero point within the type, a
// counter to count into.
__host__ inline bool out_quantizer_ok(const qk_gemm_args &a) {
  if (a.y_type != QK_OUT_S8 && a.y_type != QK_OUT_U8) return true;
  const qk_requant &q = a.y_quant;
  const bool s8 = a.y_type == QK_OUT_S8;
  const bool scheme_ok = q.scheme == QK_AFFINE || (q.scheme == QK_SYMMETRIC && s8) || (q.scheme == QK_MIN_OFFSET && !s8);
  const IntRange ir = int_range(q.scheme, s8 ? QK_S8 : QK_U8);
  return scheme_ok && q.scale >= 0x1p-64f && q.scale <= 0x1p64f && q.zero_point >= ir.qmin && q.zero_point <= ir.qmax &&
         (q.scheme == QK_AFFINE || q.zero_point == 0) && std::isfinite(q.offset) && q.nonfinite != nullptr;
}

// q of the f32 value y for a requantized output: quantize_fast's division-free quotient (the
// scale lies in its range: out_quantizer_ok), with q0 first clamped to [lo − 1, hi + 1].
// NOTE: inside that interval nothing changes, so the quotient is the contract's. Outside it
// the contract's result is the clamp bound on q0's side (|x/s| is then at least 1 − 2^-23
// beyond the bound), and so is ours: with q0 at the bound the residual has x's side, and
// t = q0 + e·r lands beyond the bound, ±Inf included (x = ±Inf: e = ±Inf, t = ±Inf). This
// also covers a MinOffset x − offset that overflows. A NaN takes the scheme's NaN value.
// x − 0 is x bit for bit, so one instance serves every scheme. No branch: a non-finite y adds
// one to the thread's count `nf`, which flush_nonfinite adds to the launch's counter once.
// NOTE: a branch or an atomic per output here spilled the sm80 128x128 kernel, which sits at
// its 168-register cap.
__device__ __forceinline__ int32_t requantize(float y, const OutQuantizer &q, uint32_t &nf) {
  const Quantizer &z = q.z;
  const float x = __fsub_rn(y, z.p.offset);
  const float q0 = fminf(fmaxf(__fmul_rn(x, z.r), z.lo - 1.0f), z.hi + 1.0f);
  const float e = __fmaf_rn(-q0, z.p.scale, x);
  const float t = fminf(fmaxf(__fmaf_rn(e, z.r, q0), z.lo), z.hi);
  const int32_t r = (int32_t)(__float_as_uint(__fadd_rn(t, 12582912.0f)) - 0x4B400000u) + z.p.zp;
  nf += fabsf(y) < INFINITY ? 0u : 1u;
  return isnan(y) ? q.nan_q : r;
}

// Adds a thread's count of non-finite requantized values to the launch's counter (8-bit
// outputs only; the other types count nothing).
template <typename TOut>
__device__ __forceinline__ void flush_nonfinite(uint32_t nf, const OutQuantizer &q) {
  if constexpr (sizeof(TOut) == 1)
    if (nf) atomicAdd(q.nonfinite, (unsigned long long)nf);
}

__device__ __forceinline__ float param_f(const float *p, qk_param_layout l, int64_t r) {
  return l == QK_PARAM_NONE ? 0.0f : p[l == QK_PARAM_ROW ? r : 0];
}
__device__ __forceinline__ int32_t param_i(const int32_t *p, qk_param_layout l, int64_t r) {
  return l == QK_PARAM_NONE ? 0 : p[l == QK_PARAM_ROW ? r : 0];
}

// Per-launch constants of the epilogue.
struct EpilogueCtx {
  int32_t k;
  bool float_out, min_offset, has_bias, pairs_aligned;
  // Whether every output row starts 16-byte aligned (y and the row pitch N · sizeof(TOut)):
  // the sm_90a kernels' staged 1- and 2-byte stores write 16-byte row pieces.
  bool rows16_aligned;
  // Whether the row sums enter the result: ΣA only through zb·ΣA, ΣB only through za·ΣB
  // and the MinOffset term. Without zero points (raw i8·i8, Symmetric) neither is loaded;
  // the skipped products are zero, so the bits do not change.
  bool need_sum_a, need_sum_b;
};

__device__ __forceinline__ EpilogueCtx make_epilogue_ctx(const qk_gemm_args &args) {
  EpilogueCtx c;
  c.k = (int32_t)args.k;
  c.float_out = args.y_type != QK_OUT_I32;
  c.min_offset = args.a.offset_layout != QK_PARAM_NONE;
  c.has_bias = args.bias != nullptr;
  c.need_sum_a = args.b.zero_point_layout != QK_PARAM_NONE;
  c.need_sum_b = args.a.zero_point_layout != QK_PARAM_NONE || c.min_offset;
  const int out_bytes = args.y_type == QK_OUT_I32 || args.y_type == QK_OUT_F32 ? 4
                        : args.y_type == QK_OUT_S8 || args.y_type == QK_OUT_U8 ? 1
                                                                                : 2;
  c.pairs_aligned = (args.b.rows % 2 == 0) && ((uintptr_t)args.y % (2 * out_bytes) == 0);
  c.rows16_aligned = (args.b.rows * out_bytes) % 16 == 0 && (uintptr_t)args.y % 16 == 0;
  return c;
}

// Parameters of one row of A.
struct RowParams {
  int32_t za, sum_a;
  float sa, off_a;
};

__device__ __forceinline__ RowParams row_params(const qk_gemm_operand &A, const EpilogueCtx &ctx, int64_t m) {
  return {param_i(A.zero_point, A.zero_point_layout, m), ctx.need_sum_a ? A.row_sums[m] : 0,
          param_f(A.scale, A.scale_layout, m), param_f(A.offset, A.offset_layout, m)};
}

// One output: i32 out stores acc, the float types v rounded once, the 8-bit (requantized)
// types v quantized with yq.
template <typename TOut>
__device__ __forceinline__ void store_out(void *y, int64_t i, int32_t acc, float v, const OutQuantizer &yq,
                                          uint32_t &nf) {
  TOut *const p = static_cast<TOut *>(y) + i;
  if constexpr (std::is_same<TOut, int32_t>::value) *p = acc;
  else if constexpr (std::is_same<TOut, float>::value) *p = v;
  else if constexpr (std::is_same<TOut, __half>::value) *p = __float2half_rn(v);
  else if constexpr (std::is_same<TOut, __nv_bfloat16>::value) *p = __float2bfloat16_rn(v);
  else *p = (TOut)requantize(v, yq, nf);
}

// Two adjacent 2-byte outputs (f16 or bf16) of one row, each rounded once to nearest even,
// as the 32-bit word that holds them in memory (v0 in the low half: the lower address).
// NOTE: one cvt.rn.{f16,bf16}x2.f32, what __floats2half2_rn / __floats2bfloat162_rn compile
// to, without taking the address of a local to reinterpret their result.
template <typename TOut> __device__ __forceinline__ uint32_t pack2(float v0, float v1) {
  static_assert(sizeof(TOut) == 2, "f16 and bf16 pairs");
  uint32_t r;
  if constexpr (std::is_same<TOut, __half>::value) asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(v1), "f"(v0));
  else asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(v1), "f"(v0));
  return r;
}

// Two adjacent requantized 8-bit outputs of one row as the 16 bits that hold them in memory
// (v0 in the low byte), their non-finite values counted in nf.
template <typename TOut>
__device__ __forceinline__ uint32_t pack_bytes(float v0, float v1, const OutQuantizer &yq, uint32_t &nf) {
  static_assert(sizeof(TOut) == 1, "8-bit pairs");
  const uint32_t b0 = (uint8_t)(TOut)requantize(v0, yq, nf), b1 = (uint8_t)(TOut)requantize(v1, yq, nf);
  return b0 | (b1 << 8);
}

// Two adjacent outputs of one row as one store; y is 2·sizeof(TOut)-aligned (the callers
// check ctx.pairs_aligned). Values as store_out.
template <typename TOut>
__device__ __forceinline__ void store_pair(TOut *y, int32_t acc0, int32_t acc1, float v0, float v1,
                                           const OutQuantizer &yq, uint32_t &nf) {
  if constexpr (std::is_same<TOut, int32_t>::value) *reinterpret_cast<int2 *>(y) = make_int2(acc0, acc1);
  else if constexpr (std::is_same<TOut, float>::value) *reinterpret_cast<float2 *>(y) = make_float2(v0, v1);
  else if constexpr (sizeof(TOut) == 2) *reinterpret_cast<uint32_t *>(y) = pack2<TOut>(v0, v1);
  else *reinterpret_cast<uint16_t *>(y) = (uint16_t)pack_bytes<TOut>(v0, v1, yq, nf);  // int8_t, uint8_t
}

// Parameters of one column of B (one output channel), loaded once per column.
struct ColParams {
  int32_t zb, sum_b, col_sum;  // col_sum = ΣB − K·zb (the MinOffset term's integer)
  float sb, bias;
};

__device__ __forceinline__ ColParams col_params(const qk_gemm_args &args, const EpilogueCtx &ctx, int64_t n) {
  const qk_gemm_operand &B = args.b;
  ColParams c;
  c.zb = param_i(B.zero_point, B.zero_point_layout, n);
  c.sum_b = ctx.need_sum_b ? B.row_sums[n] : 0;
  c.col_sum = (int32_t)((uint32_t)c.sum_b - (uint32_t)ctx.k * (uint32_t)c.zb);
  c.sb = param_f(B.scale, B.scale_layout, n);
  c.bias = 0.0f;
  if (ctx.has_bias) {
    if (args.bias_type == QK_F32) c.bias = static_cast<const float *>(args.bias)[n];
    else if (args.bias_type == QK_F16) c.bias = __half2float(static_cast<const __half *>(args.bias)[n]);
    else c.bias = __bfloat162float(static_cast<const __nv_bfloat16 *>(args.bias)[n]);
  }
  return c;
}

// The column parameters of a tile of N_ columns, staged in shared memory as arrays, so that
// the whole-tile epilogue reads each parameter of a column pair as one 8-byte load.
template <int N_> struct TileCols {
  int32_t zb[N_], sum_b[N_], col_sum[N_];
  float sb[N_], bias[N_];
  __device__ __forceinline__ void set(int j, const ColParams &c) {
    zb[j] = c.zb, sum_b[j] = c.sum_b, col_sum[j] = c.col_sum, sb[j] = c.sb, bias[j] = c.bias;
  }
  __device__ __forceinline__ ColParams get(int j) const { return {zb[j], sum_b[j], col_sum[j], sb[j], bias[j]}; }
  __device__ __forceinline__ float2 sb2(int j) const { return *reinterpret_cast<const float2 *>(sb + j); }
  __device__ __forceinline__ float2 bias2(int j) const { return *reinterpret_cast<const float2 *>(bias + j); }
};

// Whether a tile's epilogue can skip the zero-point and MinOffset terms: no zero points
// on either operand and no MinOffset (raw i8·i8, or Symmetric with scales and bias: the
// common case). Without zero points corrected_acc returns acc, and without MinOffset
// float_part has no offset product: dropping those zero terms changes no bits.
__device__ __forceinline__ bool plain_epilogue(const EpilogueCtx &ctx) {
  return !ctx.need_sum_a && !ctx.need_sum_b && !ctx.min_offset;
}

// The parameters of staged columns col, col + 1 for a tile wholly inside the output, each
// column pair's parameter one 8-byte shared-memory load. ZP = false for plain_epilogue tiles
// (the integer corrections and the MinOffset product skipped: zb, sum_b and col_sum stay 0);
// ZP = true: the contract's full corrected_acc and float_part.
struct PairCols {
  float2 sb, bias;
  int2 zb, sum_b, col_sum;
};

template <bool ZP, int N_>
__device__ __forceinline__ PairCols pair_cols(const EpilogueCtx &ctx, const TileCols<N_> &cols, int col) {
  PairCols c{cols.sb2(col), ctx.has_bias ? cols.bias2(col) : float2{}, {}, {}, {}};
  if constexpr (ZP) {
    c.zb = *reinterpret_cast<const int2 *>(cols.zb + col);
    c.sum_b = *reinterpret_cast<const int2 *>(cols.sum_b + col);
    if (ctx.min_offset) c.col_sum = *reinterpret_cast<const int2 *>(cols.col_sum + col);
  }
  return c;
}

// The two results of one row (parameters r, raw sums a0, a1) in those columns: acc[e] and
// v[e] of column col + e, with no bounds checks.
struct PairResults {
  int32_t acc[2];
  float v[2];
};

template <typename TOut, bool ZP>
__device__ __forceinline__ PairResults pair_results(const EpilogueCtx &ctx, const PairCols &c, const RowParams &r,
                                                    int32_t a0, int32_t a1) {
  auto acc = [&](int32_t a, int e) -> int32_t {
    if constexpr (ZP) return corrected_acc(a, ctx.k, r.za, e ? c.zb.y : c.zb.x, r.sum_a, e ? c.sum_b.y : c.sum_b.x);
    else return a;
  };
  auto value = [&](int32_t a, int e) {
    if constexpr (std::is_same<TOut, int32_t>::value) return 0.0f;
    else
      return float_part(acc(a, e), r.sa, e ? c.sb.y : c.sb.x, ZP && ctx.min_offset, r.off_a,
                        e ? c.col_sum.y : c.col_sum.x, ctx.has_bias, e ? c.bias.y : c.bias.x);
  };
  return {{acc(a0, 0), acc(a1, 1)}, {value(a0, 0), value(a1, 1)}};
}

// The epilogue of one fragment quad of a tile wholly inside the output, with paired stores
// aligned (ctx.pairs_aligned): staged columns col, col + 1 (output columns n, n + 1) of rows
// m0 (valid) and m0 + 8 (valid when ok1); y0 and y1 point at (m0, n) and (m0 + 8, n).
// NOTE: row m0's pair is stored before row m0 + 8's is computed: computing all four first
// spilled the sm80 128x128 kernel, which sits at its register cap.
template <typename TOut, bool ZP, int N_>
__device__ __forceinline__ void store_quad_whole(const EpilogueCtx &ctx, const OutQuantizer &yq, uint32_t &nf,
                                                 const TileCols<N_> &cols, int col, TOut *y0, TOut *y1, bool ok1,
                                                 const RowParams &r0, const RowParams &r1, int32_t a00, int32_t a01,
                                                 int32_t a10, int32_t a11) {
  const PairCols c = pair_cols<ZP>(ctx, cols, col);
  const PairResults p0 = pair_results<TOut, ZP>(ctx, c, r0, a00, a01);
  store_pair<TOut>(y0, p0.acc[0], p0.acc[1], p0.v[0], p0.v[1], yq, nf);
  if (ok1) {
    const PairResults p1 = pair_results<TOut, ZP>(ctx, c, r1, a10, a11);
    store_pair<TOut>(y1, p1.acc[0], p1.acc[1], p1.v[0], p1.v[1], yq, nf);
  }
}

// The 2 x 2 outputs a thread holds in an m16n8 (or wgmma) fragment: rows m0 and m1 (each
// skipped when invalid), columns n and n + 1 (n + 1 only when < N; c1 is read only then)
// with their parameters c0, c1; acc_he is row h, column n + e.
template <typename TOut>
__device__ __forceinline__ void epilogue_quad_cols(const GemmArgs &args, const EpilogueCtx &ctx, int64_t m0,
                                                   bool ok0, const RowParams &r0, int64_t m1, bool ok1,
                                                   const RowParams &r1, int64_t n, const ColParams &c0,
                                                   const ColParams &c1, int32_t acc00, int32_t acc01, int32_t acc10,
                                                   int32_t acc11, uint32_t &nf) {
  const int64_t N = args.b.rows;
  if (n >= N) return;
  const bool two = n + 1 < N;
  const int32_t raw[2][2] = {{acc00, acc01}, {acc10, acc11}};
  const int64_t rows[2] = {m0, m1};
  const bool ok[2] = {ok0, ok1};
  const RowParams *rp[2] = {&r0, &r1};
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (!ok[h]) continue;
    int32_t out_acc[2] = {0, 0};
    float out_v[2] = {0.0f, 0.0f};
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      if (e == 1 && !two) break;
      const ColParams &c = e == 0 ? c0 : c1;
      out_acc[e] = corrected_acc(raw[h][e], ctx.k, rp[h]->za, c.zb, rp[h]->sum_a, c.sum_b);
      if constexpr (!std::is_same<TOut, int32_t>::value)
        out_v[e] = float_part(out_acc[e], rp[h]->sa, c.sb, ctx.min_offset, rp[h]->off_a, c.col_sum, ctx.has_bias, c.bias);
    }
    const int64_t i = rows[h] * N + n;
    if (ctx.pairs_aligned && two) {
      store_pair<TOut>(static_cast<TOut *>(args.y) + i, out_acc[0], out_acc[1], out_v[0], out_v[1], args.yq, nf);
    } else {
      store_out<TOut>(args.y, i, out_acc[0], out_v[0], args.yq, nf);
      if (two) store_out<TOut>(args.y, i + 1, out_acc[1], out_v[1], args.yq, nf);
    }
  }
}

// The epilogue a warpgroup's (or block's) part of a tile takes:
//   General  bounds checks, any parameters (epilogue_quad_cols);
//   Whole    wholly inside the output (`inside`), paired stores aligned, no zero points or
//            MinOffset (store_quad_whole<., false>): the common case;
//   WholeZp  inside and aligned, with zero points or MinOffset (store_quad_whole<., true>);
//            allow_zp = false keeps those tiles on General (a kernel without the registers
//            for a third unrolled epilogue).
enum class EpiPath { General, Whole, WholeZp };

__device__ __forceinline__ EpiPath epilogue_path(const EpilogueCtx &ctx, bool inside, bool allow_zp) {
  if (!inside || !ctx.pairs_aligned) return EpiPath::General;
  if (plain_epilogue(ctx)) return EpiPath::Whole;
  return allow_zp ? EpiPath::WholeZp : EpiPath::General;
}

// Runs `body.template operator()<P>()` with path `p` (one switch per tile, outside the
// unrolled store loops) for output type TOut.
// NOTE: 8-bit (requantized) outputs take WholeZp tiles on the General path: a third unrolled
// requantizing epilogue per kernel more than doubled the sm_90a kernels' compile time.
template <typename TOut, typename Body>
__device__ __forceinline__ void with_epilogue_path(EpiPath p, Body &&body) {
  constexpr EpiPath zp_path = sizeof(TOut) == 1 ? EpiPath::General : EpiPath::WholeZp;
  switch (p) {
    case EpiPath::Whole: body.template operator()<EpiPath::Whole>(); break;
    case EpiPath::WholeZp: body.template operator()<zp_path>(); break;
    default: body.template operator()<EpiPath::General>(); break;
  }
}

// One fragment quad through path P: staged columns col, col + 1 (output columns n, n + 1)
// of rows m0 and m1 = m0 + 8, with their validity ok0, ok1 (the Whole paths need ok0).
// y0 and y1 point at (m0, n) and (m1, n); the Whole paths store through them.
// NOTE: the callers form y0 and y1 from a row base hoisted out of their unrolled loops plus
// a constant column offset; computed here from m0, m1 and n, they cost a 64-bit multiply-add
// and address per quad (the SASS showed it).
template <typename TOut, EpiPath P, int N_>
__device__ __forceinline__ void epilogue_quad(const GemmArgs &args, const EpilogueCtx &ctx, const TileCols<N_> &cols,
                                              int col, int64_t n, int64_t m0, bool ok0, const RowParams &r0, int64_t m1,
                                              bool ok1, const RowParams &r1, TOut *y0, TOut *y1, int32_t acc00,
                                              int32_t acc01, int32_t acc10, int32_t acc11, uint32_t &nf) {
  if constexpr (P == EpiPath::General)
    epilogue_quad_cols<TOut>(args, ctx, m0, ok0, r0, m1, ok1, r1, n, cols.get(col), cols.get(col + 1), acc00, acc01,
                             acc10, acc11, nf);
  else
    store_quad_whole<TOut, P == EpiPath::WholeZp>(ctx, args.yq, nf, cols, col, y0, y1, ok1, r0, r1, acc00, acc01,
                                                  acc10, acc11);
}

// Runs `body.template operator()<TOut>()` with the output type of `args` (one switch per
// tile, outside the unrolled store loops).
template <typename Body>
__device__ __forceinline__ void with_out_type(qk_out_type t, Body &&body) {
  switch (t) {
    case QK_OUT_I32: body.template operator()<int32_t>(); break;
    case QK_OUT_F32: body.template operator()<float>(); break;
    case QK_OUT_F16: body.template operator()<__half>(); break;
    case QK_OUT_BF16: body.template operator()<__nv_bfloat16>(); break;
    case QK_OUT_S8: body.template operator()<int8_t>(); break;
    default: body.template operator()<uint8_t>(); break;
  }
}

// Runs `body.template operator()<TA, TB>()` with the operands' 8-bit types (int8_t for s8,
// uint8_t for u8): the one type switch of both GEMM entry points (host side).
template <typename Body>
cudaError_t with_operand_types(const qk_gemm_args &a, Body &&body) {
  const bool as = a.a.type == QK_S8, bs = a.b.type == QK_S8;
  if (as && bs) return body.template operator()<int8_t, int8_t>();
  if (as) return body.template operator()<int8_t, uint8_t>();
  if (bs) return body.template operator()<uint8_t, int8_t>();
  return body.template operator()<uint8_t, uint8_t>();
}

}  // namespace qk
