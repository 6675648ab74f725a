// gemm_sm90.cu — the C entry point of the Hopper GEMM (gemm_sm90.cuh): checks what TMA can
// describe and calls the launcher of the operands' types. The kernels themselves are
// compiled in gemm_sm90_a_s8.cu and gemm_sm90_a_u8.cu.
#include "gemm_sm90.cuh"

extern "C" int qk_gemm_sm90(const qk_gemm_args *args, qk_stream_t stream) {
  if (!qk::out_quantizer_ok(*args)) return (int)cudaErrorInvalidValue;
  const qk::GemmArgs a = qk::kernel_args(*args);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (a.a.rows == 0 || a.b.rows == 0) return 0;
  const int64_t max_rows = (int64_t)1 << 31;  // TMA coordinates are 32-bit
  if (a.k == 0 || a.k % 16 != 0 || (uintptr_t)a.a.data % 16 != 0 || (uintptr_t)a.b.data % 16 != 0 || a.sms < 1 ||
      a.a.rows >= max_rows || a.b.rows >= max_rows)
    return (int)cudaErrorNotSupported;
  return (int)qk::with_operand_types(a, [&]<typename TA, typename TB>() { return qk::sm90::launch_tile<TA, TB>(a, s); });
}
