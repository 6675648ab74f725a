/*
 * qkernels.h — the C ABI of the qkernels CUDA kernels.
 *
 * Plain C, read by bindgen to produce src/cuda/ffi.rs (committed; CI regenerates it and
 * fails on a diff). Every launcher takes a stream (a CUstream / cudaStream_t passed as an
 * opaque pointer), enqueues its work and returns the CUDA status as an int (0 = success).
 * Launchers never synchronize and never allocate. They do not validate arguments: the
 * Rust layer checks shapes, lengths, alignment and parameter values before calling.
 *
 * Numeric contract: DESIGN.md section 2 and the README's table; src/cpu/ is the reference.
 */
#ifndef QKERNELS_H
#define QKERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** An opaque CUDA stream (CUstream == cudaStream_t). */
typedef void *qk_stream_t;

/** Floating-point element types of inputs and outputs. */
typedef enum { QK_F32 = 0, QK_F16 = 1, QK_BF16 = 2 } qk_float_type;

/** 8-bit integer element types. */
typedef enum { QK_S8 = 0, QK_U8 = 1 } qk_int_type;

/** Quantization schemes (DESIGN.md section 1). */
typedef enum { QK_SYMMETRIC = 0, QK_AFFINE = 1, QK_MIN_OFFSET = 2 } qk_scheme;

/** Which elements share one set of parameters. */
typedef enum { QK_TENSOR = 0, QK_ROW = 1, QK_COL = 2, QK_GROUP = 3 } qk_granularity;

/**
 * Quantize a row-major [rows, cols] float matrix.
 *
 * Parameters live in `scale` (always), `zero_point` (Affine) and `offset` (MinOffset), with
 * one entry per tensor / row / column / (row, group). When `dynamic` is nonzero the kernels
 * compute them (and overwrite those buffers); otherwise they are read. `row_sums` (may be
 * NULL) receives the sum of each row's quantized values. `nonfinite` points to three u64:
 * word 0 receives the number of NaN/Inf inputs met; words 1 and 2 are scratch that must be
 * zero before the first call (allocate zeroed) and that every completed call leaves zero.
 * rows and cols must be nonzero.
 */
typedef struct {
  const void *x;
  qk_float_type x_type;
  void *q;
  qk_int_type q_type;
  int64_t rows;
  int64_t cols;
  int64_t group; /* elements per group along a row (QK_GROUP); ignored otherwise */
  qk_scheme scheme;
  qk_granularity granularity;
  int32_t dynamic;
  float *scale;
  int32_t *zero_point;
  float *offset;
  int32_t *row_sums;
  uint64_t *nonfinite;
} qk_quantize_args;

/** Dequantize a row-major [rows, cols] 8-bit matrix to floats. */
typedef struct {
  const void *q;
  qk_int_type q_type;
  void *y;
  qk_float_type y_type;
  int64_t rows;
  int64_t cols;
  int64_t group;
  qk_scheme scheme;
  qk_granularity granularity;
  const float *scale;
  const int32_t *zero_point;
  const float *offset;
} qk_dequantize_args;

int qk_quantize(const qk_quantize_args *args, qk_stream_t stream);
int qk_dequantize(const qk_dequantize_args *args, qk_stream_t stream);

/** out[r] = sum over c of q[r, c] (as int32), for a row-major [rows, cols] 8-bit matrix. */
int qk_row_sums(const void *q, qk_int_type q_type, int64_t rows, int64_t cols, int32_t *out,
                qk_stream_t stream);

/** What the launch after a requantizing GEMM finishes besides the row sums, so that the call
 *  takes two launches and no copies: it writes the output's per-tensor parameters into its
 *  buffers and publishes the non-finite count that the GEMM added into nonfinite[1] (its
 *  qk_requant.nonfinite) into nonfinite[0], leaving nonfinite[1] zero again, as the buffer's
 *  contract in qk_quantize_args asks. */
typedef struct {
  float scale;
  int32_t zero_point;
  float offset;
  float *scale_out;        /* one float */
  int32_t *zero_point_out; /* one int32_t (Affine), or NULL */
  float *offset_out;       /* one float (MinOffset), or NULL */
  uint64_t *nonfinite;     /* the three words of qk_quantize_args.nonfinite */
} qk_requant_finish;

/** qk_row_sums of a requantizing GEMM's output, plus `finish` (read before the call returns).
 *  rows may be 0 (the parameters and the count are still finished). */
int qk_row_sums_finish(const void *q, qk_int_type q_type, int64_t rows, int64_t cols, int32_t *out,
                       const qk_requant_finish *finish, qk_stream_t stream);

/** The description of a CUDA status code (static storage). */
const char *qk_status_string(int status);

/** GEMM output types. QK_OUT_S8 and QK_OUT_U8: the f32 value of the float epilogue quantized
 *  again with the static per-tensor parameters of qk_gemm_args.y_quant (requantization). */
typedef enum {
  QK_OUT_I32 = 0,
  QK_OUT_F32 = 1,
  QK_OUT_F16 = 2,
  QK_OUT_BF16 = 3,
  QK_OUT_S8 = 4,
  QK_OUT_U8 = 5
} qk_out_type;

/** The output parameters of a requantized GEMM (one per-tensor set): q = the scheme's
 *  quantization of the f32 value y, as qk_quantize quantizes with static parameters. */
typedef struct {
  qk_scheme scheme;    /* Symmetric (QK_OUT_S8), Affine (S8 or U8) or MinOffset (U8) */
  float scale;         /* finite, positive and normal */
  int32_t zero_point;  /* Affine: within the output type; otherwise 0 */
  float offset;        /* MinOffset: finite; otherwise 0 */
  uint64_t *nonfinite; /* incremented by the number of non-finite y (qkernels passes word 1
                         of qk_requant_finish.nonfinite; other callers zero it first) */
} qk_requant;

/** How a GEMM operand parameter is laid out: absent, one value, or one per row. */
typedef enum { QK_PARAM_NONE = 0, QK_PARAM_TENSOR = 1, QK_PARAM_ROW = 2 } qk_param_layout;

/** Tile configurations (rows of A x rows of B per block). sm_80: 128x128, 64x128, 16x128,
 *  and the decode kernel's 8x16 and 16x32 (all of K per block, weights on the mma's M side;
 *  needs K > 0, K % 16 == 0 and 16-byte aligned operands); sm_90a: 128x256 and 128x128
 *  (persistent, both consumer warpgroups on one tile), 64x256 (split along K across a
 *  cluster), 64x256 ping-pong (persistent, one tile per consumer warpgroup, one's epilogue
 *  under the other's main loop), and the same ping-pong kernel storing i32 outputs through
 *  shared memory as 16-byte row pieces (QK_TILE_64x256_PINGPONG_STAGED_I32: the 1- and 2-byte
 *  outputs' staged stores, applied to i32: the form the dispatcher picks for i32 out; the
 *  same results). */
typedef enum {
  QK_TILE_128x128 = 0,
  QK_TILE_64x128 = 1,
  QK_TILE_16x128 = 2,
  QK_TILE_128x256 = 3,
  QK_TILE_64x256 = 4,
  QK_TILE_64x256_PINGPONG = 5,
  QK_TILE_DECODE_8x16 = 6,
  QK_TILE_DECODE_16x32 = 7,
  QK_TILE_64x256_PINGPONG_STAGED_I32 = 8
} qk_gemm_tile;

/** One GEMM operand: a row-major [rows, k] 8-bit matrix with its parameters. */
typedef struct {
  const void *data;
  qk_int_type type;
  int64_t rows;
  const float *scale;
  qk_param_layout scale_layout;
  const int32_t *zero_point;
  qk_param_layout zero_point_layout;
  const float *offset; /* MinOffset A only */
  qk_param_layout offset_layout;
  const int32_t *row_sums; /* sum of each row's values; read only where they enter the result
                              (A's: B has zero points; B's: A has zero points or offsets),
                              otherwise may be NULL */
} qk_gemm_operand;

/**
 * Y[m, n] = epilogue(sum_k A[m, k] * B[n, k]), Y row-major [M, N]; A = a, B = b, both
 * K-major. The epilogue is DESIGN.md section 2: zero-point corrections from the row sums,
 * (f32(acc') * sa) * sb, the MinOffset term, + bias, one rounding to y_type (QK_OUT_I32
 * stores acc'; QK_OUT_S8 / QK_OUT_U8 quantize the f32 value with y_quant). `bias` is NULL or
 * N values of bias_type.
 */
typedef struct {
  qk_gemm_operand a;
  qk_gemm_operand b;
  int64_t k;
  void *y;
  qk_out_type y_type;
  const void *bias;
  qk_float_type bias_type;
  qk_gemm_tile tile;
  int32_t sms;     /* multiprocessors of the device: the persistent sm_90a grid */
  int32_t cluster; /* sm_90a CTAs per cluster: QK_TILE_64x256 splits each tile's K across 1, 2,
                      4 or 8; QK_TILE_128x256 and QK_TILE_64x256_PINGPONG pair (2) vertically
                      adjacent tiles that share each B tile by TMA multicast; otherwise 1.
                      sm_80: ignored. */
  qk_requant y_quant; /* QK_OUT_S8 / QK_OUT_U8 only */
} qk_gemm_args;

/** The mma.sync (sm_80+) GEMM. Needs M, N >= 1; any K >= 0 (K % 16 == 0 with 16-byte aligned
 *  operands takes the cp.async path, any other K a byte-wise path). The decode tiles decline
 *  (cudaErrorNotSupported) K % 16 != 0 and operands not 16-byte aligned (K == 0 works, but
 *  the Rust side sends it to the tiled kernels). */
int qk_gemm_sm80(const qk_gemm_args *args, qk_stream_t stream);

/** The wgmma + TMA (sm_90a) GEMM: same arguments and results as qk_gemm_sm80. Declines
 *  (returns cudaErrorNotSupported) K == 0, K % 16 != 0 and operands not 16-byte aligned;
 *  an invalid tile or split is cudaErrorInvalidValue. */
int qk_gemm_sm90(const qk_gemm_args *args, qk_stream_t stream);

/** Launch one empty kernel (one block, 32 threads): the launch-overhead baseline of benchmarks. */
int qk_empty_kernel(qk_stream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* QKERNELS_H */
