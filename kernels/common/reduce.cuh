// reduce.cuh — warp and block reductions used by the quantize kernels.
#pragma once

#include "numeric.cuh"

namespace qk {

constexpr int kMaxBlock = 512;               // largest block any kernel here launches
constexpr int kMaxWarps = kMaxBlock / 32;

__device__ __forceinline__ Range shfl_xor_range(const Range &r, int mask) {
  Range o{};
  o.lo = __shfl_xor_sync(0xffffffffu, r.lo, mask);
  o.hi = __shfl_xor_sync(0xffffffffu, r.hi, mask);
  o.any = __shfl_xor_sync(0xffffffffu, r.any, mask);
  return o;
}

// Merges ranges across aligned segments of `width` lanes (a power of two <= 32). Every lane
// of the warp must call it.
__device__ __forceinline__ Range segment_reduce_range(Range r, int width) {
  for (int m = width >> 1; m > 0; m >>= 1) r.merge(shfl_xor_range(r, m));
  return r;
}

// Range accumulators (FiniteAbsMax, FiniteRange in numeric.cuh) merged across aligned
// segments of `width` lanes (a power of two <= 32; every lane of the warp must call it):
// the accumulator's own one or two floats per step, where a Range takes three shuffles and
// a merge that branches on `any`.
template <typename Acc> __device__ __forceinline__ void segment_merge(Acc &acc, int width) {
  for (int m = width >> 1; m > 0; m >>= 1) {
    float2 v = acc.pack();
    v.x = __shfl_xor_sync(0xffffffffu, v.x, m);
    if constexpr (Acc::kFloats == 2) v.y = __shfl_xor_sync(0xffffffffu, v.y, m);
    acc.merge(v);
  }
}

// The block's merged accumulator, in every thread (every thread must call it); `smem` holds
// one float2 per warp.
// NOTE: ends with a barrier so that `smem` can be reused by the next call.
template <typename Acc> __device__ __forceinline__ void block_merge(Acc &acc, float2 *smem) {
  segment_merge(acc, 32);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nwarps = (blockDim.x + 31) >> 5;
  if (lane == 0) smem[warp] = acc.pack();
  __syncthreads();
  for (int w = 0; w < nwarps; ++w) acc.merge(smem[w]);
  __syncthreads();
}

template <typename T> __device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
  return v;
}

// Block-wide range; every thread of the block must call it; all threads get the result.
// NOTE: ends with a barrier so that `smem` can be reused by the next call.
__device__ __forceinline__ Range block_reduce_range(Range r, Range *smem) {
  r = segment_reduce_range(r, 32);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nwarps = (blockDim.x + 31) >> 5;
  if (lane == 0) smem[warp] = r;
  __syncthreads();
  Range total{};
  for (int w = 0; w < nwarps; ++w) total.merge(smem[w]);
  __syncthreads();
  return total;
}

// Block-wide sum; every thread must call it; all threads get the result.
__device__ __forceinline__ int32_t block_sum(int32_t v, int32_t *smem) {
  v = warp_sum(v);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nwarps = (blockDim.x + 31) >> 5;
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  int32_t total = 0;
  for (int w = 0; w < nwarps; ++w) total += smem[w];
  __syncthreads();
  return total;
}

}  // namespace qk
