// numeric.cuh — the arithmetic of the numeric contract (DESIGN.md section 2), shared by
// every kernel. Each function here has a twin in src/cpu/ that performs the same IEEE
// operations in the same order; change one, change both.
//
// NOTE: every float operation is an explicit round-to-nearest intrinsic (__fdiv_rn,
// __fmul_rn, __fadd_rn, __fsub_rn, and __fmaf_rn where an exact residual is meant) so that
// no unintended FMA contraction can creep in; the files are also compiled with -fmad=false
// as a second guard. The quotient x / s must be the correctly rounded IEEE division: the
// Quantizer below reaches it without a division per element, by a correction proven
// bit-identical (scripts/check-division-free.c), never by a bare multiply by 1/s.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "../qkernels.h"

namespace qk {

// ---- element conversions ----------------------------------------------------------------

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// ---- range reduction --------------------------------------------------------------------

// -0.0 becomes +0.0 so that min/max are unique values whatever the reduction order.
__device__ __forceinline__ float canonical_zero(float x) { return x == 0.0f ? 0.0f : x; }

// A float <-> uint32 map that preserves order (for atomicMin/atomicMax on floats).
__device__ __forceinline__ uint32_t order_encode(float f) {
  uint32_t b = __float_as_uint(f);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float order_decode(uint32_t u) {
  return (u & 0x80000000u) ? __uint_as_float(u & 0x7fffffffu) : __uint_as_float(~u);
}
// Initial values of the encoded reductions: nothing seen yet.
constexpr uint32_t kEncMinInit = 0xffffffffu;
constexpr uint32_t kEncMaxInit = 0u;

// Running range of the finite values of a group (NaN and +-Inf are ignored).
struct Range {
  float lo, hi;  // min and max of finite values; lo > hi means none seen
  int any;  // value-initialize (Range r{}) to start empty
  __device__ __forceinline__ void add(float x) {
    if (!isfinite(x)) return;
    x = canonical_zero(x);
    if (!any) { lo = x; hi = x; any = 1; }
    else { lo = fminf(lo, x); hi = fmaxf(hi, x); }
  }
  __device__ __forceinline__ void merge(const Range &o) {
    if (!o.any) return;
    if (!any) { *this = o; return; }
    lo = fminf(lo, o.lo); hi = fmaxf(hi, o.hi);
  }
};

// ---- parameters ---------------------------------------------------------------------------

struct Params {
  float scale;
  int32_t zp;
  float offset;
};

struct IntRange {
  int32_t qmin, qmax;
};

__host__ __device__ __forceinline__ IntRange int_range(qk_scheme scheme, qk_int_type t) {
  if (scheme == QK_SYMMETRIC) return {-127, 127};
  if (t == QK_S8) return {-128, 127};
  return {0, 255};
}

// The smallest positive normal f32: a computed scale is never subnormal.
constexpr float kMinNormal = 1.17549435e-38f;

// scale = span / steps, where span = hi - lo may overflow f32; then hi/steps - lo/steps.
__device__ __forceinline__ float span_scale(float hi, float lo, float steps) {
  float span = __fsub_rn(hi, lo);
  float s = isinf(span) ? __fsub_rn(__fdiv_rn(hi, steps), __fdiv_rn(lo, steps)) : __fdiv_rn(span, steps);
  return fmaxf(s, kMinNormal);
}

// Parameters of one group from the range of its finite values (contract, section 2).
__device__ __forceinline__ Params params_from_range(qk_scheme scheme, IntRange ir, const Range &r) {
  Params p{0.0f, 0, 0.0f};
  float mn = r.any ? r.lo : 0.0f;
  float mx = r.any ? r.hi : 0.0f;
  if (scheme == QK_SYMMETRIC) {
    float absmax = fmaxf(fabsf(mn), fabsf(mx));
    if (absmax != 0.0f) p.scale = fmaxf(__fdiv_rn(absmax, 127.0f), kMinNormal);
  } else if (scheme == QK_AFFINE) {
    float lo = fminf(0.0f, mn), hi = fmaxf(0.0f, mx);
    if (hi != lo) {
      p.scale = span_scale(hi, lo, (float)(ir.qmax - ir.qmin));
      float z = __fsub_rn((float)ir.qmin, rintf(__fdiv_rn(lo, p.scale)));
      z = fminf(fmaxf(z, (float)ir.qmin), (float)ir.qmax);
      p.zp = (int32_t)z;
    }
  } else {
    p.offset = mn;
    if (mx != mn) p.scale = span_scale(mx, mn, 255.0f);
  }
  return p;
}

// ---- quantize / dequantize one element --------------------------------------------------

// q of a NaN input: the zero point (Affine), 0 (Symmetric), qmin (MinOffset).
__host__ __device__ __forceinline__ int32_t nan_value(qk_scheme scheme, IntRange ir, int32_t zp) {
  return scheme == QK_AFFINE ? zp : (scheme == QK_SYMMETRIC ? 0 : ir.qmin);
}

// Returns q and counts a non-finite input in `nonfinite`.
__device__ __forceinline__ int32_t quantize_value(float x, qk_scheme scheme, IntRange ir, Params p,
                                                  uint32_t &nonfinite) {
  if (isnan(x)) { nonfinite++; return nan_value(scheme, ir, p.zp); }
  if (isinf(x)) { nonfinite++; return x > 0.0f ? ir.qmax : ir.qmin; }
  if (p.scale == 0.0f) return scheme == QK_AFFINE ? p.zp : 0;  // degenerate group: no division
  float t = scheme == QK_MIN_OFFSET ? __fdiv_rn(__fsub_rn(x, p.offset), p.scale) : __fdiv_rn(x, p.scale);
  t = rintf(t);  // round half to even
  int32_t zp = scheme == QK_AFFINE ? p.zp : 0;
  t = fminf(fmaxf(t, (float)(ir.qmin - zp)), (float)(ir.qmax - zp));
  return (int32_t)t + zp;
}

// The quantizer of one group (a row, a tensor or a per-group vector), prepared once so that
// each element costs a few full-rate instructions instead of an IEEE division.
//
// NOTE: the quotient is still the correctly rounded x / s of the contract, computed without a
// per-element division: with r = RN(1/s), q0 = RN(x·r) is within one ulp of x/s, the
// residual x − q0·s is exact in one FMA, and RN(q0 + residual·r) is RN(x/s) (Markstein's
// correction theorem). It needs the residual to stay a normal number, hence the range of s
// in `fast`. A q0 that is not finite (x = ±Inf or NaN, or a quotient beyond f32) flags the
// vector, which is then redone element by element with quantize_value. Checked exhaustively
// over every finite f32 x for 28 scales at the edges of the range and in the middle (and
// sampled for 100000 random scales): the quotient is bit-identical to the division wherever
// |x/s| ∈ [1/8, 2^19], below 1/4 in magnitude where the division's is below 1/8, and beyond
// 2^18 with the same sign where the division's is beyond 2^19, so the rounded and clamped
// result is the same everywhere (scripts/check-division-free.c); src/cpu/numeric.rs keeps a
// sampled copy of that check in its tests.
// Scales outside the range (and NaN) take quantize_value. Scale 0 (a degenerate group, e.g.
// an all-zero padding row) stays on the fast path with r = 0: q0 = 0 and t = 0 for every
// finite x, so q = zp, what quantize_value returns; a non-finite x (or x − offset) makes q0
// NaN and the vector is redone exactly.
struct Quantizer {
  Params p;      // zp is 0 unless Affine
  float r;       // RN(1 / scale) when fast (0 for scale 0)
  float lo, hi;  // clamp of the rounded quotient: qmin − zp, qmax − zp
  bool fast;
};

// Also built on the host (the requantizing GEMM's output quantizer), where 1.0f / scale is the
// same correctly rounded IEEE division.
__host__ __device__ __forceinline__ Quantizer make_quantizer(qk_scheme scheme, IntRange ir, Params p) {
  Quantizer z;
  z.p = p;
  if (scheme != QK_AFFINE) z.p.zp = 0;
  const bool in_range = p.scale >= 0x1p-64f && p.scale <= 0x1p64f;  // false for 0 and NaN
  z.fast = in_range || p.scale == 0.0f;
#ifdef __CUDA_ARCH__
  z.r = in_range ? __fdiv_rn(1.0f, p.scale) : 0.0f;
#else
  z.r = in_range ? 1.0f / p.scale : 0.0f;
#endif
  z.lo = (float)(ir.qmin - z.p.zp);
  z.hi = (float)(ir.qmax - z.p.zp);
  return z;
}

// quantize_value for the VEC elements of a vector with a fast quantizer (MIN_OFFSET: the
// scheme is MinOffset). Returns true when some q0 was not finite: the caller then redoes the
// vector with quantize_value, which also counts its non-finite inputs.
template <bool MIN_OFFSET, int VEC>
__device__ __forceinline__ bool quantize_fast(const float (&x)[VEC], const Quantizer &z, int32_t (&q)[VEC]) {
  bool redo = false;
#pragma unroll
  for (int j = 0; j < VEC; ++j) {
    const float xm = MIN_OFFSET ? __fsub_rn(x[j], z.p.offset) : x[j];
    const float q0 = __fmul_rn(xm, z.r);
    redo |= !(fabsf(q0) < INFINITY);
    const float e = __fmaf_rn(-q0, z.p.scale, xm);                        // exact residual
    const float t = fminf(fmaxf(__fmaf_rn(e, z.r, q0), z.lo), z.hi);      // RN(xm / s), clamped
    // Round half to even: |t| <= 255 (zp lies in the type's range), far below the 2^22 up to
    // which t + 1.5·2^23 has unit ulp, so the addition rounds t to an integer (the
    // contract's rne); the low bits of the sum are that integer.
    q[j] = (int32_t)(__float_as_uint(__fadd_rn(t, 12582912.0f)) - 0x4B400000u) + z.p.zp;
  }
  return redo;
}

// Range accumulators: add() is one or two min/max per element and lets ±Inf in; when the
// reduced result shows an infinity, the caller accumulates again with add_finite(), which
// ignores ±Inf like Range::add (NaN is ignored by both: fminf/fmaxf return the other
// operand). to_range() gives the Range that Range::add would have built from the values.
struct FiniteRange {
  float lo = __builtin_nanf(""), hi = __builtin_nanf("");  // NaN: nothing seen
  __device__ __forceinline__ void add(float x) {
    lo = fminf(lo, x);
    hi = fmaxf(hi, x);
  }
  __device__ __forceinline__ void add_finite(float x) { add(fabsf(x) < INFINITY ? x : __builtin_nanf("")); }
  __device__ __forceinline__ Range to_range() const {
    Range r{};
    r.any = !isnan(lo);
    r.lo = r.any ? canonical_zero(lo) : 0.0f;
    r.hi = r.any ? canonical_zero(hi) : 0.0f;
    return r;
  }
  __device__ __forceinline__ static bool has_inf(const Range &r) { return r.any && (isinf(r.lo) || isinf(r.hi)); }
  // Merging accumulators (reduce.cuh): min and max, NaN (nothing seen) the identity of both;
  // to_range() of the result is the merge of the to_range()s (canonical_zero commutes with
  // min and max, and `any` is whether some side saw a value).
  static constexpr int kFloats = 2;  // floats of pack() that carry the accumulator
  __device__ __forceinline__ float2 pack() const { return make_float2(lo, hi); }
  __device__ __forceinline__ void merge(float2 o) {
    lo = fminf(lo, o.x);
    hi = fmaxf(hi, o.y);
  }
};

// The largest |x| (what Symmetric needs of the range), as a Range with that absolute maximum
// (params_from_range uses only that for Symmetric).
struct FiniteAbsMax {
  float m = 0.0f;
  __device__ __forceinline__ void add(float x) { m = fmaxf(m, fabsf(x)); }
  __device__ __forceinline__ void add_finite(float x) { m = fmaxf(m, fabsf(x) < INFINITY ? fabsf(x) : 0.0f); }
  __device__ __forceinline__ Range to_range() const {
    Range r{};
    r.any = 1;
    r.lo = 0.0f;
    r.hi = m;
    return r;
  }
  __device__ __forceinline__ static bool has_inf(const Range &r) { return isinf(r.hi); }
  static constexpr int kFloats = 1;
  __device__ __forceinline__ float2 pack() const { return make_float2(m, 0.0f); }
  __device__ __forceinline__ void merge(float2 o) { m = fmaxf(m, o.x); }
};

// Adds the VEC values of a vector to a range accumulator (FiniteRange, FiniteAbsMax):
// add(), or add_finite() for the second try of a range that held an infinity.
template <bool FINITE, typename Acc, int VEC>
__device__ __forceinline__ void accumulate(Acc &acc, const float (&t)[VEC]) {
#pragma unroll
  for (int j = 0; j < VEC; ++j) FINITE ? acc.add_finite(t[j]) : acc.add(t[j]);
}

__device__ __forceinline__ float dequantize_value(int32_t q, qk_scheme scheme, Params p) {
  if (scheme == QK_SYMMETRIC) return __fmul_rn((float)q, p.scale);
  if (scheme == QK_AFFINE) return __fmul_rn((float)(q - p.zp), p.scale);
  return __fadd_rn(__fmul_rn((float)q, p.scale), p.offset);
}

}  // namespace qk
