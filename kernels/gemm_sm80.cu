// gemm_sm80.cu — INT8 GEMM on tensor cores with mma.sync (sm_80, sm_89, and the fallback
// on sm_90), with the fused dequantize epilogue.
//
// Y[m, n] = epilogue(Σ_k A[m, k] · B[n, k]); A [M, K] and B [N, K] row-major (K-major),
// i8 or u8 each (mma.sync.m16n8k32 has all four type pairs); Y [M, N] row-major, i32, f32,
// f16 or bf16. The epilogue (common/epilogue.cuh) is bit-identical to src/cpu/gemm.rs.
//
// Structure: a block computes a BM x BN tile of Y. K advances in BK = 64-byte tiles through
// a STAGES-deep shared-memory ring filled with cp.async (16-byte, zero-fill beyond M, N
// and K), read with ldmatrix.x4 into mma fragments. Rows of a tile are 64 bytes = four
// 16-byte chunks; chunk c of row r is stored at chunk c ^ ((r >> 1) & 3), so the 8 rows
// an ldmatrix phase reads hit 8 distinct 16-byte bank groups (conflict-free).
//
// Kernel versions and why each exists:
//   gemm_s80<TA, TB, BM=128, BN=128, WM=64, WN=64, 4 stages, 16>   large M: 4 warps of 64x64
//   gemm_s80<TA, TB, BM=64,  BN=128, WM=32, WN=64, 4 stages, 16>   medium M (17..64)
//   gemm_s80<TA, TB, BM=16,  BN=128, WM=16, WN=32, 4 stages, 16>   decode, M = 1..16: the
//                                                                   weights stream once
//   The output type is switched once per tile in the epilogue (outside the K loop), which
//   keeps the number of instantiations (and the build time) down.
//   LOADW = 1 instead of 16: any K (not a multiple of 16) or unaligned operands; tiles are
//   filled byte by byte with plain loads (correct, slower), never an error.
#include <cuda_runtime.h>

#include "common/gemm_epilogue.cuh"

namespace qk {
namespace sm80 {

constexpr int BK = 64;  // K bytes per tile: four 16-byte chunks per row

// Byte offset of 16-byte chunk `c` (0..3) of row `r` in a tile (see the header comment).
__device__ __forceinline__ uint32_t swz(int r, int c) { return (uint32_t)(r * BK + ((c ^ ((r >> 1) & 3)) << 4)); }

// 16 bytes global → shared, through L2 only (.cg), or also kept in L1 (.ca, L1 = true: data
// that other blocks on the SM read too).
template <bool L1 = false>
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool valid) {
  const int n = valid ? 16 : 0;  // src-size 0: the 16 bytes are zero-filled, nothing is read
  if constexpr (L1) asm volatile("cp.async.ca.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
  else asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

template <typename T> struct MmaType;
template <> struct MmaType<int8_t> { static constexpr bool is_signed = true; };
template <> struct MmaType<uint8_t> { static constexpr bool is_signed = false; };

// D = A·B + D for one m16n8k32 tile.
template <typename TA, typename TB>
__device__ __forceinline__ void mma(int32_t (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#define QK_MMA(AT, BT)                                                                                  \
  asm volatile("mma.sync.aligned.m16n8k32.row.col.s32." AT "." BT ".s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, " \
               "{%8,%9}, {%0,%1,%2,%3};\n"                                                              \
               : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])                                         \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]))
  constexpr bool sa = MmaType<TA>::is_signed, sb = MmaType<TB>::is_signed;
  if constexpr (sa && sb) QK_MMA("s8", "s8");
  else if constexpr (sa && !sb) QK_MMA("s8", "u8");
  else if constexpr (!sa && sb) QK_MMA("u8", "s8");
  else QK_MMA("u8", "u8");
#undef QK_MMA
}

// Fills one operand tile (rows r0.. of a [rows, K] matrix, K bytes k0..k0+BK) of `ROWS` rows.
template <int ROWS, int THREADS, int LOADW>
__device__ __forceinline__ void load_tile(uint32_t smem, const uint8_t *g, int64_t rows, int64_t K, int64_t r0,
                                          int64_t k0) {
  for (int i = threadIdx.x; i < ROWS * 4; i += THREADS) {
    const int r = i >> 2, c = i & 3;
    const int64_t gr = r0 + r, gk = k0 + c * 16;
    if constexpr (LOADW == 16) {
      const bool valid = gr < rows && gk < K;  // K % 16 == 0: a chunk is all in or all out
      cp_async16(smem + swz(r, c), valid ? (const void *)(g + gr * K + gk) : (const void *)g, valid);
    } else {
      uint32_t w[4] = {0, 0, 0, 0};
      if (gr < rows) {
        const uint8_t *src = g + gr * K;
#pragma unroll
        for (int b = 0; b < 16; ++b)
          if (gk + b < K) w[b >> 2] |= (uint32_t)src[gk + b] << ((b & 3) * 8);
      }
      asm volatile("st.shared.v4.u32 [%0], {%1, %2, %3, %4};\n" ::"r"(smem + swz(r, c)), "r"(w[0]), "r"(w[1]),
                   "r"(w[2]), "r"(w[3]));
    }
  }
}

// NOTE: the 128x128 tile's 64 KiB of shared memory allows 3 blocks per SM; the minimum of 3
// blocks caps registers at 168 so that they allow it too (the compiler otherwise drifts to
// ~190 on sm_90a with small epilogue changes, which costs a third of the occupancy).
template <typename TA, typename TB, int BM, int BN, int WM, int WN, int STAGES, int LOADW>
__global__ void __launch_bounds__((BM / WM) * (BN / WN) * 32, BM == 128 ? 3 : 1)
    gemm_s80(const __grid_constant__ GemmArgs args) {
  constexpr int WARPS_N = BN / WN, THREADS = (BM / WM) * WARPS_N * 32;
  constexpr int MT = WM / 16, NT = WN / 8;
  constexpr int A_BYTES = BM * BK, STAGE_BYTES = (BM + BN) * BK;
  static_assert(NT % 2 == 0, "B fragments are loaded two n8 tiles at a time");
  static_assert(BM % WM == 0 && BN % WN == 0 && WM % 16 == 0, "warp tiles must tile the block tile");
  extern __shared__ __align__(128) uint8_t smem_raw[];

  const qk_gemm_operand &A = args.a, &B = args.b;
  const int64_t M = A.rows, N = B.rows, K = args.k;
  const int64_t m0 = (int64_t)blockIdx.x * BM, n0 = (int64_t)blockIdx.y * BN;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int wm0 = (warp / WARPS_N) * WM, wn0 = (warp % WARPS_N) * WN;
  const uint32_t smem = (uint32_t)__cvta_generic_to_shared(smem_raw);
  const uint8_t *ga = static_cast<const uint8_t *>(A.data), *gb = static_cast<const uint8_t *>(B.data);

  int32_t acc[MT][NT][4];
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0;

  const int64_t ktiles = (K + BK - 1) / BK;
  auto load_stage = [&](int stage, int64_t kt) {
    const uint32_t s = smem + stage * STAGE_BYTES;
    load_tile<BM, THREADS, LOADW>(s, ga, M, K, m0, kt * BK);
    load_tile<BN, THREADS, LOADW>(s + A_BYTES, gb, N, K, n0, kt * BK);
  };
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < ktiles) load_stage(s, s);
    cp_async_commit();
  }

  for (int64_t kt = 0; kt < ktiles; ++kt) {
    // NOTE: after the wait, tile kt has landed for this thread; the barrier makes every
    // thread's part visible and also guarantees that all warps are done with the stage the
    // prefetch below overwrites (it was read in iteration kt - 1).
    cp_async_wait<STAGES - 2>();
    __syncthreads();
    const int64_t next = kt + STAGES - 1;
    if (next < ktiles) load_stage((int)(next % STAGES), next);
    cp_async_commit();

    const uint32_t sa = smem + (int)(kt % STAGES) * STAGE_BYTES, sb = sa + A_BYTES;
#pragma unroll
    for (int ks = 0; ks < BK / 32; ++ks) {
      uint32_t af[MT][4], bf[NT][2];
      const int mi = lane >> 3, r8 = lane & 7;
#pragma unroll
      for (int i = 0; i < MT; ++i)  // matrices: rows 0-7 / 8-15 x k 0-15 / 16-31
        ldmatrix_x4(af[i], sa + swz(wm0 + i * 16 + (mi & 1) * 8 + r8, ks * 2 + (mi >> 1)));
#pragma unroll
      for (int j = 0; j < NT; j += 2) {  // matrices: n 0-7 / 8-15 x k 0-15 / 16-31
        uint32_t r[4];
        ldmatrix_x4(r, sb + swz(wn0 + j * 8 + (mi >> 1) * 8 + r8, ks * 2 + (mi & 1)));
        bf[j][0] = r[0];
        bf[j][1] = r[1];
        bf[j + 1][0] = r[2];
        bf[j + 1][1] = r[3];
      }
#pragma unroll
      for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j) mma<TA, TB>(acc[i][j], af[i], bf[j]);
    }
  }
  cp_async_wait<0>();

  // The tile's column parameters (scale, bias, zero point, ΣB), staged in the stage
  // buffers once the main loop's last reads are done: one coalesced load per column instead
  // of one dependent global load per fragment quad.
  // NOTE: the same per-quad loads cost the sm_90a kernel's fused bf16 epilogue +28–69%
  // over i32 out on H200, until it staged them (benches/NOTES.md, epilogue v4).
  const EpilogueCtx ctx = make_epilogue_ctx(args);
  TileCols<BN> *const cols = reinterpret_cast<TileCols<BN> *>(smem_raw);
  static_assert(sizeof(TileCols<BN>) <= STAGES * STAGE_BYTES, "column parameters reuse the stage buffers");
  __syncthreads();
  for (int j = threadIdx.x; j < BN; j += THREADS)
    if (n0 + j < N) cols->set(j, col_params(args, ctx, n0 + j));
  __syncthreads();

  // Epilogue from registers: thread holds rows gid and gid + 8 of each m16 tile and
  // columns 2·tig, 2·tig + 1 of each n8 tile. Whole tiles without zero points take the
  // whole-tile path (no bounds checks, no integer corrections); with zero points they stay on
  // the general path here: a third unrolled variant spilled the 128x128 tile at its 168
  // registers.
  const int gid = lane >> 2, tig = lane & 3;
  const EpiPath path = epilogue_path(ctx, m0 + BM <= M && n0 + BN <= N, false);
  with_out_type(args.y_type, [&]<typename TOut>() {
    uint32_t nf = 0;
    with_epilogue_path<TOut>(path, [&]<EpiPath P>() {
#pragma unroll
      for (int i = 0; i < MT; ++i) {
        const int64_t mr0 = m0 + wm0 + i * 16 + gid, mr1 = mr0 + 8;
        const bool ok0 = mr0 < M, ok1 = mr1 < M;
        if (!ok0) continue;
        const RowParams r0 = row_params(args.a, ctx, mr0), r1 = ok1 ? row_params(args.a, ctx, mr1) : r0;
        TOut *const y0 = static_cast<TOut *>(args.y) + mr0 * N + n0 + wn0 + tig * 2, *const y1 = y0 + 8 * N;
#pragma unroll
        for (int j = 0; j < NT; ++j) {
          const int col = wn0 + j * 8 + tig * 2;
          // NOTE: the whole-tile path covers tiles inside M, where ok1 holds.
          epilogue_quad<TOut, P>(args, ctx, *cols, col, n0 + col, mr0, ok0, r0, mr1, P == EpiPath::General ? ok1 : true,
                                 r1, y0 + j * 8, y1 + j * 8, acc[i][j][0], acc[i][j][1], acc[i][j][2], acc[i][j][3],
                                 nf);
        }
      }
    });
    flush_nonfinite<TOut>(nf, args.yq);
  });
}

// ---- decode: weights on the mma's M side ---------------------------------------------------
//
// For a handful of tokens the GEMM is a stream over the weights B (N·K bytes) and little
// else: 1×4096×4096 moves 16.8 MB for 34 MOP. The tiled kernel above gives such a problem
// ceil(N / 128) blocks (32 for N = 4096, a quarter of the SMs), each running all of K
// serially. Here a block owns ROWS = 16·RT rows of B and all of K, its WARPS warps take the
// 64-byte K chunks in turn (warp w: chunks w, w + WARPS, …), and the grid has ceil(N / ROWS)
// blocks (256 for N = 4096 with RT = 1): every SM streams weights.
//
// The mma's roles are swapped: its 16-row A operand is 16 weight rows and its 8-column B
// operand 8 tokens, so no tensor-core row is padding when M ≤ 8. The fragments need no
// ldmatrix and no swizzle: a sum over k does not depend on the order of k, so lane (g, q)
// (g = lane / 4, q = lane % 4) fetches the 16 bytes at k = 64c + 16q of weight rows g and
// g + 8 and of token g, and hands them to chunk c's two m16n8k32 as the fragments' k
// positions 4q..4q+3 and 16+4q..16+4q+3 (bytes 0–7 to the first, 8–15 to the second).
// Both operands see the same permutation of k, so the exact integer sum is the same.
//
// Each warp streams through its own STAGES-deep ring in shared memory with cp.async (16
// bytes per lane and row, zero-filled beyond N, M and K; weights .cg, tokens .ca since
// every block reads them), and each lane reads back only the bytes it copied itself, so
// the main loop has no barrier. NOTE: loads straight into registers were tried first; ptxas
// sank each load to its mma, which left one chunk's loads in flight per warp.
//
// The warps' partial sums meet in shared memory (reusing the rings); then one thread per
// (token, column pair) runs the shared epilogue (epilogue_quad_cols) on its two outputs.
// Tokens beyond 8·T take further block rows (gridDim.y), each streaming the weights again:
// the configurations are meant for M ≤ 8 and M ≤ 16.
//   gemm_s80_decode<TA, TB, RT=1, T=1, WARPS=8, STAGES=4>   8 tokens x 16 weight rows
//   gemm_s80_decode<TA, TB, RT=2, T=2, WARPS=4, STAGES=4>   16 x 32: each token chunk feeds
//                                                            32 weight rows (half the token
//                                                            traffic per weight byte of RT=1)
//   Both rings are 48 KiB per block (with 96 KiB, one 16x32 block per SM fit on A100 and
//   sm_86/89).
// Needs K % 16 == 0 and 16-byte aligned A and B (the launcher checks).
// Measured (H200, 2026-11-27): 1x4096x4096 in 13.3-13.6 us (split-K wgmma kernel 16.3,
// cuBLASLt 22.3), weights at 56-62% of copy bandwidth at N·K = 59-71 M and 74-84% at 235 M;
// the dispatcher takes it for M <= 16 on Hopper (benches/NOTES.md).
namespace decode {

constexpr int CHUNK = 64;  // K bytes per warp step: 4 lanes x 16 bytes per row

template <int RT, int T, int WARPS, int STAGES> struct Shape {
  static constexpr int ROWS = 16 * RT, TOKENS = 8 * T;
  static constexpr int LOADS = 2 * RT + T;  // 16-byte copies per lane and chunk
  static constexpr int RING = WARPS * STAGES * LOADS * 32 * 16;
  static constexpr int PITCH = ROWS + 4;  // partial sums [warp][token][row]: conflict-free stores
  static constexpr int PART = WARPS * TOKENS * PITCH * 4;
  static constexpr int SMEM = RING > PART ? RING : PART;
};

template <typename TA, typename TB, int RT, int T, int WARPS, int STAGES>
__global__ void __launch_bounds__(WARPS * 32) gemm_s80_decode(const __grid_constant__ GemmArgs args) {
  using S = Shape<RT, T, WARPS, STAGES>;
  constexpr int ROWS = S::ROWS, TOKENS = S::TOKENS, LOADS = S::LOADS, PITCH = S::PITCH;
  constexpr int ITEMS = (TOKENS * ROWS / 2 + WARPS * 32 - 1) / (WARPS * 32);  // epilogue items per thread
  static_assert(STAGES >= 2, "the ring needs a stage in flight while one is read");
  extern __shared__ __align__(16) uint8_t smem_raw[];

  const qk_gemm_operand &A = args.a, &B = args.b;
  const int64_t M = A.rows, N = B.rows, K = args.k;
  const int64_t n0 = (int64_t)blockIdx.x * ROWS, m0 = (int64_t)blockIdx.y * TOKENS;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const uint8_t *ga = static_cast<const uint8_t *>(A.data), *gb = static_cast<const uint8_t *>(B.data);

  // This lane's rows at its 16-byte column of chunk 0 (rows beyond the matrix copy zeros),
  // and its slot in the warp's ring: [stage][load][lane], 16 bytes each.
  const uint8_t *src[LOADS];
  bool ok[LOADS];
#pragma unroll
  for (int l = 0; l < LOADS; ++l) {
    const bool weight = l < 2 * RT;
    const int64_t r = weight ? n0 + (l >> 1) * 16 + (l & 1) * 8 + g : m0 + (l - 2 * RT) * 8 + g;
    ok[l] = r < (weight ? N : M);
    src[l] = (weight ? gb : ga) + (ok[l] ? r : 0) * K + q * 16;
  }
  const uint32_t ring = (uint32_t)__cvta_generic_to_shared(smem_raw) + (uint32_t)(warp * STAGES * LOADS * 512 + lane * 16);

  const int64_t chunks = (K + CHUNK - 1) / CHUNK;
  const int64_t steps = warp < chunks ? (chunks - warp + WARPS - 1) / WARPS : 0;  // this warp's chunks
  auto issue = [&](int64_t i) {
    const int64_t off = (warp + i * WARPS) * CHUNK;
    const bool in = off + q * 16 < K;  // K % 16 == 0: a lane's 16 bytes are all in or all out
    const uint32_t dst = ring + (uint32_t)((i % STAGES) * LOADS * 512);
#pragma unroll
    for (int l = 0; l < LOADS; ++l) {
      const bool valid = in && ok[l];
      // An invalid copy reads nothing (src-size 0) but still names an in-bounds address.
      const void *p = valid ? (const void *)(src[l] + off) : (const void *)(l < 2 * RT ? gb : ga);
      if (l < 2 * RT) cp_async16(dst + l * 512, p, valid);  // weights: read once
      else cp_async16<true>(dst + l * 512, p, valid);       // tokens: every block reads them
    }
  };

  int32_t acc[RT][T][4] = {};

  // The epilogue's items: one (token, column pair) each, ITEMS per thread. Their row and
  // column parameters load now, so that the loads' latency hides under the main loop
  // rather than adding a global round trip to every block's end.
  const EpilogueCtx ctx = make_epilogue_ctx(args);
  auto item = [&](int j, int &tok, int &col) {
    const int i = threadIdx.x + j * WARPS * 32;
    tok = i / (ROWS / 2), col = (i % (ROWS / 2)) * 2;
    return i < TOKENS * ROWS / 2;
  };
  bool item_ok[ITEMS];
  ColParams cp[ITEMS][2];
  RowParams rp[ITEMS];
#pragma unroll
  for (int j = 0; j < ITEMS; ++j) {
    int tok, col;
    const bool in_tile = item(j, tok, col);
    const int64_t m = m0 + tok, n = n0 + col;
    item_ok[j] = in_tile && m < M && n < N;
    if (item_ok[j]) {
      cp[j][0] = col_params(args, ctx, n);
      cp[j][1] = n + 1 < N ? col_params(args, ctx, n + 1) : cp[j][0];
      rp[j] = row_params(A, ctx, m);
    }
  }

#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < steps) issue(s);
    cp_async_commit();
  }
  for (int64_t i = 0; i < steps; ++i) {
    // NOTE: after the wait this lane's copies of step i have landed, and only this lane
    // reads them. The refill below overwrites the stage read in step i − 1, whose values
    // this lane's mma have already consumed.
    cp_async_wait<STAGES - 2>();
    const uint32_t at = ring + (uint32_t)((i % STAGES) * LOADS * 512);
    uint4 v[LOADS];
#pragma unroll
    for (int l = 0; l < LOADS; ++l)
      asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                   : "=r"(v[l].x), "=r"(v[l].y), "=r"(v[l].z), "=r"(v[l].w)
                   : "r"(at + l * 512));
    if (i + STAGES - 1 < steps) issue(i + STAGES - 1);
    cp_async_commit();
#pragma unroll
    for (int rt = 0; rt < RT; ++rt)
#pragma unroll
      for (int t = 0; t < T; ++t) {
        const uint4 &lo = v[rt * 2], &hi = v[rt * 2 + 1], &x = v[2 * RT + t];
        // A fragment: rows g, g + 8 at k 4q.. and 16+4q..; B fragment: token g.
        mma<TB, TA>(acc[rt][t], {lo.x, hi.x, lo.y, hi.y}, {x.x, x.y});
        mma<TB, TA>(acc[rt][t], {lo.z, hi.z, lo.w, hi.w}, {x.z, x.w});
      }
  }
  cp_async_wait<0>();
  __syncthreads();  // every warp is done with its ring: the partial sums reuse the space

  // Fragment (rt, t): acc[0..1] weight row g, tokens 2q, 2q + 1; acc[2..3] row g + 8.
  int32_t(*part)[TOKENS][PITCH] = reinterpret_cast<int32_t(*)[TOKENS][PITCH]>(smem_raw);
#pragma unroll
  for (int rt = 0; rt < RT; ++rt)
#pragma unroll
    for (int t = 0; t < T; ++t)
#pragma unroll
      for (int e = 0; e < 4; ++e) part[warp][t * 8 + q * 2 + (e & 1)][rt * 16 + g + (e >> 1) * 8] = acc[rt][t][e];
  __syncthreads();

  with_out_type(args.y_type, [&]<typename TOut>() {
    uint32_t nf = 0;
#pragma unroll
    for (int j = 0; j < ITEMS; ++j) {
      int tok, col;
      item(j, tok, col);
      if (!item_ok[j]) continue;
      int32_t s0 = 0, s1 = 0;
#pragma unroll
      for (int w = 0; w < WARPS; ++w) {
        s0 += part[w][tok][col];
        s1 += part[w][tok][col + 1];
      }
      const int64_t m = m0 + tok, n = n0 + col;
      epilogue_quad_cols<TOut>(args, ctx, m, true, rp[j], m, false, rp[j], n, cp[j][0], cp[j][1], s0, s1, 0, 0, nf);
    }
    flush_nonfinite<TOut>(nf, args.yq);
  });
}

template <typename TA, typename TB, int RT, int T>
cudaError_t launch(const GemmArgs &a, cudaStream_t s) {
  // 48 KiB of ring per block either way: 4 blocks per SM on Hopper, 3 on A100, 2 on sm_86/89.
  constexpr int WARPS = 8 / RT, STAGES = 4;
  constexpr int SMEM = Shape<RT, T, WARPS, STAGES>::SMEM;
  constexpr auto kernel = gemm_s80_decode<TA, TB, RT, T, WARPS, STAGES>;
  const int64_t blocks_n = (a.b.rows + 16 * RT - 1) / (16 * RT), blocks_m = (a.a.rows + 8 * T - 1) / (8 * T);
  if (blocks_n > INT32_MAX || blocks_m > 65535) return cudaErrorInvalidValue;  // the Rust side checks first
  const cudaError_t err = set_smem_limit_once<kernel>(SMEM);
  if (err != cudaSuccess) return err;
  kernel<<<dim3((unsigned)blocks_n, (unsigned)blocks_m), WARPS * 32, SMEM, s>>>(a);
  return cudaGetLastError();
}

}  // namespace decode

// ---- launchers ----------------------------------------------------------------------------

template <typename TA, typename TB, int BM, int BN, int WM, int WN, int STAGES, int LOADW>
cudaError_t launch_cfg(const GemmArgs &a, cudaStream_t s) {
  constexpr int THREADS = (BM / WM) * (BN / WN) * 32;
  constexpr int SMEM = STAGES * (BM + BN) * BK;
  constexpr auto kernel = gemm_s80<TA, TB, BM, BN, WM, WN, STAGES, LOADW>;
  const cudaError_t err = set_smem_limit_once<kernel>(SMEM);
  if (err != cudaSuccess) return err;
  const dim3 grid((unsigned)((a.a.rows + BM - 1) / BM), (unsigned)((a.b.rows + BN - 1) / BN));
  kernel<<<grid, THREADS, SMEM, s>>>(a);
  return cudaGetLastError();
}

// Tile configurations, chosen by the Rust dispatcher (src/cuda/gemm.rs) from M.
template <typename TA, typename TB, int LOADW>
cudaError_t launch_tile(const GemmArgs &a, cudaStream_t s) {
  switch (a.tile) {
    case QK_TILE_16x128: return launch_cfg<TA, TB, 16, 128, 16, 32, 4, LOADW>(a, s);   // decode
    case QK_TILE_64x128: return launch_cfg<TA, TB, 64, 128, 32, 64, 4, LOADW>(a, s);   // medium M
    case QK_TILE_128x128: return launch_cfg<TA, TB, 128, 128, 64, 64, 4, LOADW>(a, s); // large M
    default: return cudaErrorInvalidValue;  // an sm_90a tile: not a configuration of this kernel
  }
}

template <typename TA, typename TB>
cudaError_t launch_out(const GemmArgs &a, cudaStream_t s) {
  const bool fast = a.k % 16 == 0 && (uintptr_t)a.a.data % 16 == 0 && (uintptr_t)a.b.data % 16 == 0;
  if (a.tile == QK_TILE_DECODE_8x16 || a.tile == QK_TILE_DECODE_16x32) {
    if (!fast) return cudaErrorNotSupported;  // 16-byte loads straight from global memory
    return a.tile == QK_TILE_DECODE_8x16 ? decode::launch<TA, TB, 1, 1>(a, s) : decode::launch<TA, TB, 2, 2>(a, s);
  }
  return fast ? launch_tile<TA, TB, 16>(a, s) : launch_tile<TA, TB, 1>(a, s);
}

}  // namespace sm80
}  // namespace qk

extern "C" int qk_gemm_sm80(const qk_gemm_args *args, qk_stream_t stream) {
  if (!qk::out_quantizer_ok(*args)) return (int)cudaErrorInvalidValue;
  const qk::GemmArgs a = qk::kernel_args(*args);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (a.a.rows == 0 || a.b.rows == 0) return 0;
  return (int)qk::with_operand_types(a, [&]<typename TA, typename TB>() { return qk::sm80::launch_out<TA, TB>(a, s); });
}
