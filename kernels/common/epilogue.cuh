// epilogue.cuh — the GEMM epilogue of the numeric contract; src/cpu/epilogue.rs is its twin.
#pragma once

#include "numeric.cuh"

namespace qk {

// acc' = Σab − za·ΣB − zb·ΣA + K·za·zb in wrapping (unsigned) 32-bit arithmetic: exact,
// because the true value fits in int32 (the exactness bound is checked on the host).
__device__ __forceinline__ int32_t corrected_acc(int32_t acc, int32_t k, int32_t za, int32_t zb, int32_t sum_a,
                                                 int32_t sum_b) {
  uint32_t r = (uint32_t)acc - (uint32_t)za * (uint32_t)sum_b - (uint32_t)zb * (uint32_t)sum_a +
               (uint32_t)k * (uint32_t)za * (uint32_t)zb;
  return (int32_t)r;
}

// y = (f32(acc')·sa)·sb [+ (offa·f32(colsum))·sb] [+ bias]; rounded once by the caller.
__device__ __forceinline__ float float_part(int32_t acc, float sa, float sb, bool min_offset, float off_a,
                                            int32_t col_sum, bool has_bias, float bias) {
  float y = __fmul_rn(__fmul_rn(__int2float_rn(acc), sa), sb);
  if (min_offset) y = __fadd_rn(y, __fmul_rn(__fmul_rn(off_a, __int2float_rn(col_sum)), sb));
  if (has_bias) y = __fadd_rn(y, bias);
  return y;
}

}  // namespace qk
