// gemm_sm90_a_u8.cu — the Hopper GEMM's kernels and launchers for A of type u8 (B s8 or
// u8): one of the two halves of gemm_sm90.cuh, compiled on their own so that they build in
// parallel.
#include "gemm_sm90.cuh"

namespace qk::sm90 {
QK_SM90_LAUNCHERS(, uint8_t)
}  // namespace qk::sm90
