// gemm_sm90.cuh — INT8 GEMM for Hopper (sm_90a): wgmma + TMA, warp-specialized and
// persistent, with the same fused epilogue as the sm_80 path (common/gemm_epilogue.cuh),
// so the results are bit-identical to it and to the CPU reference.
//
// Y[m, n] = epilogue(Σ_k A[m, k] · B[n, k]); A [M, K], B [N, K] row-major i8/u8 (K-major:
// the only layout wgmma takes for 8-bit types). Compiled for sm_90a only.
//
// Structure (one CTA per SM, looping over output tiles):
// - warpgroup 0 (producer; registers lowered with setmaxnreg): one thread issues TMA loads
//   (cp.async.bulk.tensor, 128-byte swizzle) of an A tile and a BN x 128 B tile per stage
//   into a ring of stages; each stage has a "full" mbarrier (TMA transaction bytes) and an
//   "empty" mbarrier (one arrival per consumer warpgroup that reads it, of both CTAs of a
//   multicast pair).
// - warpgroups 1 and 2 (consumers; registers raised) issue wgmma.m64nBNk32 from shared-
//   memory descriptors, 4 per stage, keeping one wgmma group in flight; then the epilogue
//   runs from the accumulator registers. Two schedules:
//   cooperative: both consumers work on one 128-row tile, 64 rows each; the tensor cores
//     idle while they run the epilogue (the producer only prefetches the next stages).
//   ping-pong: each consumer owns whole 64-row tiles, the CTA's tiles alternating between
//     them, and an ordered hand-off (two "turn" mbarriers) runs their main loops one after
//     the other, so one consumer's epilogue overlaps the other's main loop.
// - tiles are visited in bands of GROUP_ROWS rows (L2 reuse of the B tiles), the grid is
//   the device's SM count (passed in by the host, never hard-coded).
// TMA zero-fills rows beyond M and N and bytes beyond K, so tails need no predication in
// the main loop; the epilogue predicates its stores.
//
// Kernel versions and why each exists:
//   gemm_s90<TA, TB, 256, 1, false>  128x256x128 tiles, cooperative, 128 accumulators per
//                             consumer thread: the large-shape configuration (most MACs
//                             per byte loaded).
//   gemm_s90<TA, TB, 256, 2, false>  the same in clusters of two CTAs on vertically adjacent
//                             tiles that load each B tile once, by TMA multicast: 64 instead
//                             of 96 KiB from L2 per pair and K tile, for when L2 bandwidth,
//                             not the tensor cores, limits the 8192^3 class of shapes.
//   gemm_s90<TA, TB, 128, 1, false>  128x128x128 tiles: twice the tiles for shapes whose
//                             128x256 tile count leaves SMs idle.
//   gemm_s90<TA, TB, 256, CM, true>  64x256x128 tiles in ping-pong (alone, CM = 1, or in
//                             multicast pairs, CM = 2, which bring L2 traffic per MAC back
//                             to the cooperative 128x256 kernel's): the epilogue, which costs
//                             ~6 us per 128x256 tile and idles the tensor cores in the
//                             cooperative schedule, runs under the other consumer's main
//                             loop; for short K (4096), where it is ~20% of a tile's time.
//                             Measured (H200): in i32 out faster than 128x256 only where
//                             those tiles fill waves badly (there 1-7% ahead of 128x128, the
//                             same tile count), 2-7% slower at M >= 2048 with K = 4096: one
//                             warpgroup's m64n256 stream keeps the tensor cores less busy
//                             than two. In bf16 out, with the staged stores below, 6-14%
//                             faster than 128x256 at every K <= 8192 (the dispatcher's float
//                             pick there).
// The epilogue of whole tiles with 1- or 2-byte outputs (bf16, f16, requantized i8/u8) is
// staged per warp through 1 KiB of shared memory (StagedRows) and stored as 16-byte pieces
// of 64-byte rows: with one 2- or 4-byte store per fragment pair the bf16 epilogue cost
// +4-5% over i32 out at the median and up to +12%, and stalls on those stores were most of
// it (ncu, H200).
//   QK_TILE_64x256_PINGPONG_STAGED_I32  the ping-pong kernel with i32 outputs staged the
//                             same way (one 8-byte shared store per fragment pair): with
//                             the paired 8-byte stores i32 out through ping-pong ran 8-10%
//                             slower than bf16 out (H200) and up to 1.6x slower than the
//                             128x256 kernel (H100); staged, 9-10% faster than paired on
//                             the H200 and 18-20% on the H100 (K <= 8192, geometric means),
//                             with the same bytes to L2. The dispatcher's ping-pong for
//                             i32 out (benches/NOTES.md).
//   gemm_s90_splitk<TA, TB>   64x256x128 tiles, not persistent, each tile's K split across a
//                             cluster of 1-8 CTAs that reduce through distributed shared
//                             memory: small M (decode), where there are too few tiles to
//                             keep the SMs streaming weights (section "small M" below).
// The launcher declines (cudaErrorNotSupported) what TMA cannot describe: K == 0,
// K % 16 != 0, operands not 16-byte aligned, 2^31 rows or more. The Rust dispatcher
// (src/cuda/gemm.rs) rejects the same cases first with Error::Unsupported; the default
// path (sm_80) takes all of them.
//
// Translation units: this header holds the kernels and launchers; gemm_sm90_a_s8.cu and
// gemm_sm90_a_u8.cu instantiate them for each type of A (two operand pairs each), so that
// the build compiles the halves on two cores; gemm_sm90.cu holds the C entry point and
// instantiates nothing (the `extern template` declarations at the end).
#pragma once
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include "common/gemm_epilogue.cuh"

namespace qk {
namespace sm90 {

constexpr int BK = 128;      // K bytes per stage: exactly one 128-byte swizzle row
constexpr int THREADS = 384; // producer warpgroup + two consumer warpgroups
constexpr int GROUP_ROWS = 1024;  // tile rasterization band, in rows of the output
constexpr int PRODUCER_REGS = 40, CONSUMER_REGS = 232;
// NOTE: setmaxnreg.inc blocks until registers are free: the two budgets must fit in what
// __launch_bounds__(THREADS, 1) allocates (65536 / 384 = 170, rounded down to 168).
static_assert(PRODUCER_REGS * 128 + CONSUMER_REGS * 256 <= 168 * THREADS, "register budgets exceed the CTA's");

// Shared memory of the persistent kernel: STAGES x (A tile + B tile), the full and empty
// barriers, the ping-pong turn barriers, each consumer's staged column parameters, and each
// consumer warp's 1 KiB output buffer (the staged stores: StagedRows).
template <int BN, bool PP> struct Cfg {
  static constexpr int BM = PP ? 64 : 128;    // tile rows: one consumer's (ping-pong) or both's
  static constexpr int STAGES = PP ? 5 : 4;   // 5 x (8 + 32) KiB or 4 x (16 + 32) KiB of 227 KiB
  static constexpr int A_BYTES = BM * BK;
  static constexpr int STAGE_BYTES = (BM + BN) * BK;
  static constexpr int ACC = BN / 2;  // int32 accumulators per consumer thread: 64 x BN / 128
  static constexpr int FULL_OFF = STAGES * STAGE_BYTES, EMPTY_OFF = FULL_OFF + STAGES * 8;
  static constexpr int TURN_OFF = EMPTY_OFF + STAGES * 8;  // two barriers (ping-pong only)
  static constexpr int PARAMS_OFF = (TURN_OFF + 2 * 8 + 15) / 16 * 16;
  static constexpr int PARAM_BYTES = 2 * (int)sizeof(TileCols<BN>);
  static constexpr int OUT_OFF = PARAMS_OFF + PARAM_BYTES;  // 8 consumer warps x 1 KiB
  static constexpr int SMEM = OUT_OFF + 8 * 1024 + 1024;     // + alignment of the base
  static_assert(STAGE_BYTES % 1024 == 0 && A_BYTES % 1024 == 0, "128-byte-swizzled tiles must start 1024-byte aligned");
  static_assert(OUT_OFF % 16 == 0, "StagedRows reads its buffers with 16-byte shared loads");
  static_assert(SMEM <= 227 * 1024, "more shared memory than a Hopper CTA may have");
};

// ---- PTX wrappers -------------------------------------------------------------------------

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count));
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred done;\nWAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT;\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}

__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap *map, uint32_t bar, int32_t c0, int32_t c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(c0), "r"(c1)
      : "memory");
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Keeps the compiler from moving accumulator accesses across wgmma fences and waits.
template <int N> __device__ __forceinline__ void fence_operands(int32_t (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(d[i])::"memory");
}

__device__ __forceinline__ uint32_t cluster_ctarank() {
  uint32_t r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
  return r;
}
__device__ __forceinline__ uint32_t cluster_nctarank() {
  uint32_t r;
  asm volatile("mov.u32 %0, %%cluster_nctarank;\n" : "=r"(r));
  return r;
}
// Cluster barriers count every thread of every CTA in the cluster. With RELEASE, shared-
// memory writes before the barrier are visible to reads (local or remote) after it (it
// costs a GPU-scope memory barrier: MEMBAR.ALL.GPU in the SASS); without, it only orders
// execution, which is all a thread that wrote nothing the others read needs.
template <bool RELEASE> __device__ __forceinline__ void cluster_sync() {
  if constexpr (RELEASE) asm volatile("barrier.cluster.arrive.release;\nbarrier.cluster.wait.acquire;\n" ::: "memory");
  else asm volatile("barrier.cluster.arrive.relaxed;\nbarrier.cluster.wait.acquire;\n" ::: "memory");
}
// Address of the same shared-memory location in CTA `rank` of the cluster.
__device__ __forceinline__ uint32_t map_rank(uint32_t addr, uint32_t rank) {
  uint32_t r;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(r) : "r"(addr), "r"(rank));
  return r;
}
// Named barrier `id` (1..15) among THREADS_ threads (a warpgroup: 128; both consumers: 256).
template <int THREADS_ = 128> __device__ __forceinline__ void named_bar_sync(int id) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "n"(THREADS_) : "memory");
}

// Stores four 8x8 matrices of 16-bit values held in the mma fragment layout (lane l: row
// l / 4, columns 2 (l % 4) and + 1 of each, r0..r3 one register per matrix) into shared
// memory; lane l gives the address of row l % 8 of matrix l / 8.
__device__ __forceinline__ void stmatrix_x4(uint32_t addr, uint32_t r0, uint32_t r1, uint32_t r2, uint32_t r3) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(r0), "r"(r1),
               "r"(r2), "r"(r3)
               : "memory");
}

// A warp's 16-row piece of 4-byte outputs (16 columns), 2-byte outputs (32 columns) or
// 1-byte outputs (64 columns) staged in its 1 KiB shared-memory buffer, so that it reaches
// global memory as 16-byte stores of whole 64-byte row pieces instead of one store per
// fragment pair (8, 4 or 2 bytes: 8 rows x 32, 16 or 8 bytes per warp store, and for 1 and
// 2 bytes partly used sectors and four or eight times the store instructions, which stalled
// on the LSU queue: ncu, H200).
// Layout: row r (0..15) at 64 r; its 16-byte chunk c (0..3) at chunk c ^ swz(r). For 1 and
// 2 bytes swz(r) = (r / 2) % 4, under which stmatrix (8 rows, one chunk) and the byte
// pairs' 2-byte stores (8 rows, one chunk) touch every bank once; for 4 bytes swz(r) =
// 2 ((r / 2) % 2), under which a half warp's 8-byte stores (4 rows, 32 bytes each) do. The
// 16-byte reads (2 whole rows per quarter warp) are conflict-free under any chunk swizzle.
template <int ELEM_BYTES> struct StagedRows {
  static_assert(ELEM_BYTES == 1 || ELEM_BYTES == 2 || ELEM_BYTES == 4, "1-, 2- and 4-byte outputs");
  static constexpr int COLS = 64 / ELEM_BYTES;      // a piece's columns
  static constexpr int WORDS = ELEM_BYTES == 4 ? 2 : 1;  // 32-bit words per fragment pair
  uint32_t st[2];  // 4-byte: rows gid's and gid + 8's first 8-byte pair (block 0 unswizzled);
                   // 2-byte: this lane's stmatrix row address for chunks 0-1 and 2-3;
                   // 1-byte: row gid's and gid + 8's first byte pair (chunk 0 unswizzled)
  uint32_t ld[2];  // this lane's two 16-byte reads: rows lane / 4 and + 8, chunk lane % 4
  int64_t gofs[2];  // their element offsets in the output from the warp's first row and column
  int swz[2];       // 1- and 4-byte: rows gid's and gid + 8's swizzle
  __device__ __forceinline__ static int swizzle(int r) {
    return ELEM_BYTES == 4 ? ((r >> 1) & 1) << 1 : (r >> 1) & 3;
  }
  __device__ __forceinline__ static uint32_t at(uint32_t buf, int r, int c) {
    return buf + 64 * r + ((c ^ swizzle(r)) << 4);
  }
  __device__ __forceinline__ StagedRows(uint32_t buf, int lane, int64_t ld_y) {
    if constexpr (ELEM_BYTES == 2) {
      const int mi = lane >> 3, r = (lane & 7) + 8 * (mi & 1);  // matrix mi, its row
#pragma unroll
      for (int k = 0; k < 2; ++k) st[k] = at(buf, r, 2 * k + (mi >> 1));
    } else {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = (lane >> 2) + 8 * h;
        st[h] = buf + 64 * r + 2 * ELEM_BYTES * (lane & 3), swz[h] = swizzle(r);
      }
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      ld[i] = at(buf, 8 * i + (lane >> 2), lane & 3);
      gofs[i] = (int64_t)(8 * i + (lane >> 2)) * ld_y + (16 / ELEM_BYTES) * (lane & 3);
    }
  }
  // Stores the piece to the outputs from y (the warp's first row, the piece's first column;
  // row pitch ld_y). p[q][h]: what this lane holds of the piece's n8 block q in row gid
  // (h = 0) or gid + 8 (h = 1): two 4-byte values (two words), a packed 2-byte pair (one
  // word) or a byte pair (the low 16 bits of one word).
  template <typename TOut>
  __device__ __forceinline__ void store(const uint32_t (&p)[COLS / 8][2][WORDS], TOut *y) const {
    static_assert(sizeof(TOut) == ELEM_BYTES, "the piece's element size");
    if constexpr (ELEM_BYTES == 4) {
      // Block q's pair of row h: chunk 2q + tig / 2 at byte 8 (tig % 2), that is byte
      // 32 q + 8 tig of the unswizzled row; the swizzle swaps the row's two 32-byte halves.
#pragma unroll
      for (int q = 0; q < 2; ++q)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const uint32_t a = st[h] + 32 * (q ^ (swz[h] >> 1));
          asm volatile("st.shared.v2.u32 [%0], {%1, %2};\n" ::"r"(a), "r"(p[q][h][0]), "r"(p[q][h][1]) : "memory");
        }
    } else if constexpr (ELEM_BYTES == 2) {
#pragma unroll
      for (int k = 0; k < 2; ++k)
        stmatrix_x4(st[k], p[2 * k][0][0], p[2 * k][1][0], p[2 * k + 1][0][0], p[2 * k + 1][1][0]);
    } else {
#pragma unroll
      for (int q = 0; q < 8; ++q)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const uint32_t a = st[h] + (((q >> 1) ^ swz[h]) << 4) + 8 * (q & 1);
          asm volatile("st.shared.u16 [%0], %1;\n" ::"r"(a), "h"((unsigned short)p[q][h][0]) : "memory");
        }
    }
    __syncwarp();
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      uint4 v;
      asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(ld[i]));
      *reinterpret_cast<uint4 *>(y + gofs[i]) = v;
    }
    // NOTE: the next piece's writes overwrite the buffer: every lane's reads come first.
    __syncwarp();
  }
};

// Arrives on the mbarrier at shared::cluster address `bar` (this CTA's or a peer's).
// NOTE: default semantics (release at CTA scope). What the arrival publishes is that this
// warpgroup's wgmma reads of a stage are complete, which wgmma.wait_group already ensured;
// .release.cluster would add a GPU-scope MEMBAR per stage, waiting on the previous tile's
// epilogue stores.
__device__ __forceinline__ void mbar_arrive_cluster(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// TMA load multicast to the CTAs of `mask` (same CTA-relative smem offset and mbarrier).
__device__ __forceinline__ void tma_load_2d_multicast(uint32_t dst, const CUtensorMap *map, uint32_t bar, int32_t c0,
                                                      int32_t c1, uint16_t mask) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1, {%3, %4}], [%2], %5;\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(c0), "r"(c1), "h"(mask)
      : "memory");
}

// Shared-memory matrix descriptor of a K-major tile with 128-byte swizzle: rows of 128
// bytes, 8-row core groups 1024 bytes apart (stride byte offset). The leading byte offset
// is unused for swizzled K-major layouts. Advancing the start address by 32 bytes selects
// the next k32 slice inside the swizzle row (the hardware applies the swizzle to the
// address bits, and the tile base is 1024-byte aligned so the base offset stays 0).
__device__ __forceinline__ uint64_t smem_desc(uint32_t addr) {
  uint64_t d = (uint64_t)((addr & 0x3FFFF) >> 4);
  d |= (uint64_t)1 << 16;
  d |= (uint64_t)(1024 >> 4) << 32;
  d |= (uint64_t)1 << 62;
  return d;
}

// The accumulator operands of the wgmma asm statements: registers %0..%63 (and %64..%127)
// and the matching "+r" constraints on d[0..63] (and d[64..127]).
#define QK_ACC_REGS_LO "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15," "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31," "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47," "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define QK_ACC_REGS_HI "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79," "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95," "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111," "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
#define QK_ACC_OPS_LO "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]) , "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]) , "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]) , "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]) , "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]) , "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]) , "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]) , "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63])
#define QK_ACC_OPS_HI , "+r"(d[64]), "+r"(d[65]), "+r"(d[66]), "+r"(d[67]), "+r"(d[68]), "+r"(d[69]), "+r"(d[70]), "+r"(d[71]) , "+r"(d[72]), "+r"(d[73]), "+r"(d[74]), "+r"(d[75]), "+r"(d[76]), "+r"(d[77]), "+r"(d[78]), "+r"(d[79]) , "+r"(d[80]), "+r"(d[81]), "+r"(d[82]), "+r"(d[83]), "+r"(d[84]), "+r"(d[85]), "+r"(d[86]), "+r"(d[87]) , "+r"(d[88]), "+r"(d[89]), "+r"(d[90]), "+r"(d[91]), "+r"(d[92]), "+r"(d[93]), "+r"(d[94]), "+r"(d[95]) , "+r"(d[96]), "+r"(d[97]), "+r"(d[98]), "+r"(d[99]), "+r"(d[100]), "+r"(d[101]), "+r"(d[102]), "+r"(d[103]) , "+r"(d[104]), "+r"(d[105]), "+r"(d[106]), "+r"(d[107]), "+r"(d[108]), "+r"(d[109]), "+r"(d[110]), "+r"(d[111]) , "+r"(d[112]), "+r"(d[113]), "+r"(d[114]), "+r"(d[115]), "+r"(d[116]), "+r"(d[117]), "+r"(d[118]), "+r"(d[119]) , "+r"(d[120]), "+r"(d[121]), "+r"(d[122]), "+r"(d[123]), "+r"(d[124]), "+r"(d[125]), "+r"(d[126]), "+r"(d[127])

#define QK_WGMMA_M64N256K32(AT, BT)                                             \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"                   \
               "wgmma.mma_async.sync.aligned.m64n256k32.s32." AT "." BT " {"      \
               QK_ACC_REGS_LO "," QK_ACC_REGS_HI "}, %128, %129, p;\n}\n"        \
               : QK_ACC_OPS_LO QK_ACC_OPS_HI                                    \
               : "l"(da), "l"(db), "r"(scale_d))

#define QK_WGMMA_M64N128K32(AT, BT)                                             \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                    \
               "wgmma.mma_async.sync.aligned.m64n128k32.s32." AT "." BT " {"      \
               QK_ACC_REGS_LO "}, %64, %65, p;\n}\n"                             \
               : QK_ACC_OPS_LO                                                  \
               : "l"(da), "l"(db), "r"(scale_d))

template <typename TA, typename TB, int N>
__device__ __forceinline__ void wgmma(int32_t (&d)[N / 2], uint64_t da, uint64_t db, int scale_d) {
  constexpr bool sa = std::is_same<TA, int8_t>::value, sb = std::is_same<TB, int8_t>::value;
  if constexpr (N == 256) {
    if constexpr (sa && sb) QK_WGMMA_M64N256K32("s8", "s8");
    else if constexpr (sa) QK_WGMMA_M64N256K32("s8", "u8");
    else if constexpr (sb) QK_WGMMA_M64N256K32("u8", "s8");
    else QK_WGMMA_M64N256K32("u8", "u8");
  } else {
    static_assert(N == 128, "wgmma tiles are 64x256 or 64x128");
    if constexpr (sa && sb) QK_WGMMA_M64N128K32("s8", "s8");
    else if constexpr (sa) QK_WGMMA_M64N128K32("s8", "u8");
    else if constexpr (sb) QK_WGMMA_M64N128K32("u8", "s8");
    else QK_WGMMA_M64N128K32("u8", "u8");
  }
}

// A position in a ring of S stages, for the producer and the consumers of every kernel
// here: the stage and the parity of its round (the phase a wait on that stage's barrier
// names), advanced incrementally: no 64-bit division by S per K tile. `wrapped`: the ring
// has gone round at least once (a producer's first round waits for no release).
template <int S> struct Ring {
  uint32_t stage = 0, phase = 0;
  bool wrapped = false;
  __device__ __forceinline__ void next() {
    if (++stage == S) stage = 0, phase ^= 1, wrapped = true;
  }
  // Skips n stages at once (a ping-pong consumer passing the other consumer's tile).
  __device__ __forceinline__ void skip(int64_t n) {
    stage += (uint32_t)(n % S), phase ^= (uint32_t)((n / S) & 1);
    if (stage >= S) stage -= S, phase ^= 1;
  }
};

// The staged column parameters at byte offset `off` of the 1024-aligned shared-memory base.
template <int N_>
__device__ __forceinline__ TileCols<N_> *staged_cols(uint8_t *smem_raw, uint32_t base, int off) {
  return reinterpret_cast<TileCols<N_> *>(smem_raw + (base - (uint32_t)__cvta_generic_to_shared(smem_raw)) + off);
}

// Unit `t` of a units_m x units_n grid, visited in bands of `group` unit-rows: consecutive
// clusters share a B tile, and a band's A tiles stay in L2 while it sweeps N.
__device__ __forceinline__ void unit_coords(int64_t t, int64_t units_m, int64_t units_n, int64_t group, int64_t &um,
                                            int64_t &un) {
  const int64_t span = group * units_n;
  const int64_t first = (t / span) * group;
  const int64_t rows = min(group, units_m - first);
  const int64_t r = t % span;
  um = first + r % rows;
  un = r / rows;
}

// CM = 1: one CTA per tile. CM = 2: clusters of two CTAs on vertically adjacent tiles
// (rows 2u and 2u + 1 of tiles, same columns); each CTA loads half of the shared B tile and
// multicasts it to both, so the pair reads B from L2 once. A stage of either CTA is then
// refilled only when the consumers of both have released it (empty barriers count the
// readers of a stage in the cluster, half of them remote).
// PP = false: cooperative, both consumers read every stage (64 rows each of a 128-row tile).
// PP = true: ping-pong, 64-row tiles; consumer c takes the CTA's tiles c, c + 2, c + 4, …,
// and only it reads their stages.
template <typename TA, typename TB, int BN, int CM, bool PP>
__global__ void __launch_bounds__(THREADS, 1)
    gemm_s90(const __grid_constant__ GemmArgs args, const __grid_constant__ CUtensorMap map_a,
             const __grid_constant__ CUtensorMap map_b) {
  static_assert(CM == 1 || CM == 2, "clusters of one or two CTAs along M");
  using C = Cfg<BN, PP>;
  constexpr int STAGES = C::STAGES, BM = C::BM;
  constexpr int READERS = PP ? 1 : 2;  // consumer warpgroups per CTA that read a stage
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  // NOTE: 128-byte swizzled TMA tiles and the wgmma descriptors assume 1024-byte aligned
  // tiles; the dynamic allocation is over-sized by 1024 bytes for this.
  const uint32_t base = ((uint32_t)__cvta_generic_to_shared(smem_raw) + 1023u) & ~1023u;
  const uint32_t full = base + C::FULL_OFF, empty = base + C::EMPTY_OFF, turn = base + C::TURN_OFF;

  const int64_t M = args.a.rows, N = args.b.rows, K = args.k;
  const int64_t tiles_m = (M + BM - 1) / BM, tiles_n = (N + BN - 1) / BN;
  const int64_t units_m = (tiles_m + CM - 1) / CM, units = units_m * tiles_n;
  const int64_t ktiles = (K + BK - 1) / BK;
  constexpr int GROUP = GROUP_ROWS / (BM * CM);  // band height in units
  // NOTE: the grid is a multiple of CM; cluster ranks are consecutive along x.
  const uint32_t rank = CM > 1 ? cluster_ctarank() : 0;
  const int64_t first_unit = blockIdx.x / CM, unit_stride = gridDim.x / CM;
  const int wg = threadIdx.x / 128;

  if (threadIdx.x == 0) {
    for (int s = 0; s < STAGES; ++s) {
      mbar_init(full + 8 * s, 1);                 // the producer's arrive.expect_tx
      mbar_init(empty + 8 * s, READERS * CM);     // one arrival per reading warpgroup of the cluster
    }
    if constexpr (PP) {
      // Consumer 0's turn (every thread of consumer 1 finished a main loop), and consumer 1's.
      // NOTE: all 128 threads arrive, not one: a leader's arrival would not show that the
      // other warps of its warpgroup have passed their own turn wait (with one K tile its
      // wgmma_wait<1> returns at once), and a warp that lags a whole epilogue behind could
      // then find the barrier two phases on, which its parity wait reads as not yet.
      mbar_init(turn, 128);
      mbar_init(turn + 8, 128);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  // NOTE: with CM = 2 the peer multicasts into this CTA's stages and arrives on its
  // barriers: both CTAs' barriers must be initialized before either starts.
  if constexpr (CM > 1) cluster_sync<true>();
  else __syncthreads();

  if (wg == 0) {
    // NOTE: setmaxnreg needs the kernel's register cap (__launch_bounds__(THREADS, 1)) and
    // each warpgroup's role in one branch; the producer gives registers to the consumers.
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(PRODUCER_REGS));
    if (threadIdx.x == 0) {
      Ring<STAGES> ring;
      for (int64_t u = first_unit; u < units; u += unit_stride) {
        int64_t um, tn;
        unit_coords(u, units_m, tiles_n, GROUP, um, tn);
        const int64_t tm = um * CM + rank;  // beyond tiles_m for rank 1 of a last odd row
        // NOTE: a TMA box must overlap the tensor (zero fill and the transaction count are
        // specified for boxes that cross its edge). Rank 1 of a last odd tile row loads the
        // row above again, and a B half wholly beyond N loads from row N - 1: both fill
        // outputs the epilogue skips (rows >= M, columns >= N).
        const int64_t a_row = min(tm, tiles_m - 1) * BM;
        for (int64_t kt = 0; kt < ktiles; ++kt, ring.next()) {
          const uint32_t s = ring.stage;
          // NOTE: round r reuses the stage the consumers released in round r - 1.
          if (ring.wrapped) mbar_wait(empty + 8 * s, ring.phase ^ 1);
          const uint32_t sa = base + s * C::STAGE_BYTES;
          // NOTE: the full barrier counts this CTA's A tile and the whole B tile, half of
          // which the peer's multicast delivers (possibly before this expect_tx: the
          // transaction count may run negative within a phase).
          mbar_expect_tx(full + 8 * s, C::STAGE_BYTES);
          tma_load_2d(sa, &map_a, full + 8 * s, (int32_t)(kt * BK), (int32_t)a_row);
          if constexpr (CM == 1) {
            tma_load_2d(sa + C::A_BYTES, &map_b, full + 8 * s, (int32_t)(kt * BK), (int32_t)(tn * BN));
          } else {
            constexpr int HALF = BN / 2;
            const int64_t b_row = min(tn * BN + rank * HALF, N - 1);
            tma_load_2d_multicast(sa + C::A_BYTES + rank * HALF * BK, &map_b, full + 8 * s, (int32_t)(kt * BK),
                                  (int32_t)b_row, (uint16_t)0x3);
          }
        }
      }
    }
    // NOTE: with CM = 2 no CTA may exit while its peer can still arrive on its barriers.
    if constexpr (CM > 1) cluster_sync<false>();
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(CONSUMER_REGS));
  const int c = wg - 1;                    // consumer index
  const int tw = threadIdx.x % 128, warp = tw / 32, lane = tw % 32;
  const int gid = lane >> 2, tig = lane & 3;
  const bool leader = tw == 0;
  // Releases stage s to the producers (both CTAs' with CM = 2: both read it).
  auto release = [&](int s) {
    if (!leader) return;
    if constexpr (CM == 1) {
      mbar_arrive(empty + 8 * s);
    } else {
#pragma unroll
      for (int r = 0; r < CM; ++r) mbar_arrive_cluster(map_rank(empty + 8 * s, (uint32_t)r));
    }
  };
  const EpilogueCtx ctx = make_epilogue_ctx(args);
  TileCols<BN> *const cols = staged_cols<BN>(smem_raw, base, C::PARAMS_OFF) + c;
  // This consumer's rows of a tile and its A rows in a stage: rows 64c.. of the 128-row
  // tile (cooperative), or the whole 64-row tile (ping-pong).
  const int row_off = PP ? 0 : c * 64;
  Ring<STAGES> ring;  // every unit of the CTA takes ktiles stages of the ring
  // The CTA's unit count: only its two low bits are used (a wrap at 2^32 keeps them).
  uint32_t j = 0;
  for (int64_t u = first_unit; u < units; u += unit_stride, ++j) {
    if constexpr (PP) {
      if ((j & 1) != (uint32_t)c) {  // the other consumer's unit
        ring.skip(ktiles);
        continue;
      }
    }
    int64_t um, tn;
    unit_coords(u, units_m, tiles_n, GROUP, um, tn);
    const int64_t tm = um * CM + rank;
    // The tile's column parameters this thread stages (columns tw, tw + 128), loaded now so
    // that their latency passes under the (turn wait and) main loop; written to shared
    // memory after it.
    constexpr int PER = BN / 128;
    ColParams pre[PER];
#pragma unroll
    for (int jj = 0; jj < PER; ++jj) {
      const int64_t n = tn * BN + tw + 128 * jj;
      pre[jj] = n < N ? col_params(args, ctx, n) : ColParams{};
    }
    // This thread's two output rows (warp `warp` holds rows 16·warp + gid and + 8 of the
    // consumer's 64) and their parameters, loaded now for the same reason.
    // NOTE: loaded after the main loop, the per-token scale was a dependent global load
    // (from DRAM, the tile's loads having cycled L2) between the main loop and the first
    // store of every tile, with the tensor cores idle in the cooperative schedule.
    const int64_t row0 = tm * BM + row_off;
    const int64_t mr0 = row0 + warp * 16 + gid, mr1 = mr0 + 8;
    const bool ok0 = mr0 < M, ok1 = mr1 < M;
    const RowParams r0 = ok0 ? row_params(args.a, ctx, mr0) : RowParams{}, r1 = ok1 ? row_params(args.a, ctx, mr1) : r0;
    if constexpr (PP) {
      // NOTE: wait until the other consumer has passed every full barrier of unit j - 1.
      // Correctness, not only scheduling: a parity wait cannot tell a phase from the one two
      // phases later, so no consumer may wait on a stage more than one round ahead of the
      // producer. With this hand-off, every full barrier of the units before j has
      // completed when unit j's waits begin. Turn barrier c completes one phase per main
      // loop of the other consumer (all 128 threads arrive), whose unit j - 1 is its
      // ((j - 1) / 2)-th; the consumers strictly alternate, and each thread arrives only
      // after its own turn wait, so neither turn barrier runs a phase ahead of any waiter.
      if (j > 0) mbar_wait(turn + 8 * c, ((j - 1) >> 1) & 1);
    }
    int32_t acc[C::ACC];
#pragma unroll
    for (int i = 0; i < C::ACC; ++i) acc[i] = 0;
    int prev = -1;
    for (int64_t kt = 0; kt < ktiles; ++kt, ring.next()) {
      const int s = (int)ring.stage;
      mbar_wait(full + 8 * s, ring.phase);
      const uint32_t sa = base + s * C::STAGE_BYTES + row_off * BK, sb = base + s * C::STAGE_BYTES + C::A_BYTES;
      fence_operands(acc);
      wgmma_fence();
#pragma unroll
      for (int q = 0; q < BK / 32; ++q) wgmma<TA, TB, BN>(acc, smem_desc(sa + 32 * q), smem_desc(sb + 32 * q), 1);
      wgmma_commit();
      fence_operands(acc);
      // NOTE: keep this stage's group in flight; once the previous group has completed,
      // its stage's shared memory is no longer read and goes back to the producer.
      wgmma_wait<1>();
      if (prev >= 0) release(prev);
      prev = s;
    }
    // Ping-pong: the other consumer's turn (its main loop runs under this one's epilogue).
    if constexpr (PP) mbar_arrive(turn + 8 * (1 - c));
    wgmma_wait<0>();
    fence_operands(acc);
    if (prev >= 0) release(prev);

    // Column parameters (scale, bias, zero point, ΣB) of the tile, staged in shared memory by
    // the warpgroup: one coalesced load per column (issued before the main loop) instead of
    // one dependent global load per fragment quad. The first barrier waits until the
    // previous tile's epilogue has read the copy.
    // NOTE: loading them per quad from global memory cost 15–19 µs per 128×256 tile of
    // bf16 output on H200 (the fused epilogue at +28% to +69% over i32 out).
    named_bar_sync(1 + c);
#pragma unroll
    for (int jj = 0; jj < PER; ++jj) cols->set(tw + 128 * jj, pre[jj]);
    named_bar_sync(1 + c);

    // Epilogue: rows mr0 and mr1 and, for each n8 block q, columns 8q + 2·tig and
    // 8q + 2·tig + 1.
    if (ok0) {
      // NOTE: the whole-tile paths (no bounds checks) cover the warpgroup's part of a tile
      // wholly inside the output: every tile but the last row and column. There ok1 holds.
      const bool inside = tn * BN + BN <= N && row0 + 64 <= M;
      with_out_type(args.y_type, [&]<typename TOut>() {
        uint32_t nf = 0;
        // 1- and 2-byte outputs on the whole-tile paths go through StagedRows, which needs
        // 16-byte aligned rows; otherwise those tiles take the General path. i32 outputs do
        // too in the ping-pong configuration QK_TILE_64x256_PINGPONG_STAGED_I32 (the
        // dispatcher's ping-pong for i32 out), where rows that are not 16-byte aligned keep
        // the paired stores.
        constexpr bool NARROW = sizeof(TOut) <= 2;
        constexpr bool WIDE_STAGE = PP && std::is_same<TOut, int32_t>::value;
        const bool stage_wide = WIDE_STAGE && args.tile == QK_TILE_64x256_PINGPONG_STAGED_I32 && ctx.rows16_aligned;
        const EpiPath path = epilogue_path(ctx, inside && (!NARROW || ctx.rows16_aligned), true);
        with_epilogue_path<TOut>(path, [&]<EpiPath P>() {
          // The warp's rows of the tile through StagedRows (the Whole paths only).
          auto stage_tile = [&] {
            using Staged = StagedRows<sizeof(TOut)>;
            constexpr int QS = Staged::COLS / 8;  // n8 blocks per piece
            constexpr bool ZP = P == EpiPath::WholeZp;
            const uint32_t buf = base + C::OUT_OFF + (uint32_t)(c * 4 + warp) * 1024u;
            const Staged stage(buf, lane, N);
            TOut *const yw = static_cast<TOut *>(args.y) + (row0 + warp * 16) * N + tn * BN;
#pragma unroll
            for (int piece = 0; piece < BN / Staged::COLS; ++piece) {
              uint32_t p[QS][2][Staged::WORDS];
#pragma unroll
              for (int qq = 0; qq < QS; ++qq) {
                const int q = piece * QS + qq;
                const PairCols pc = pair_cols<ZP>(ctx, *cols, q * 8 + tig * 2);
                const PairResults h0 = pair_results<TOut, ZP>(ctx, pc, r0, acc[q * 4], acc[q * 4 + 1]);
                const PairResults h1 = pair_results<TOut, ZP>(ctx, pc, r1, acc[q * 4 + 2], acc[q * 4 + 3]);
                if constexpr (sizeof(TOut) == 4) {
                  // i32: the corrected sums; f32: the values (a 4-byte output's bits).
                  auto word = [](const PairResults &h, int e) -> uint32_t {
                    if constexpr (std::is_same<TOut, int32_t>::value) return (uint32_t)h.acc[e];
                    else return __float_as_uint(h.v[e]);
                  };
                  p[qq][0][0] = word(h0, 0), p[qq][0][1] = word(h0, 1);
                  p[qq][1][0] = word(h1, 0), p[qq][1][1] = word(h1, 1);
                } else if constexpr (sizeof(TOut) == 2) {
                  p[qq][0][0] = pack2<TOut>(h0.v[0], h0.v[1]);
                  p[qq][1][0] = pack2<TOut>(h1.v[0], h1.v[1]);
                } else {
                  p[qq][0][0] = pack_bytes<TOut>(h0.v[0], h0.v[1], args.yq, nf);
                  p[qq][1][0] = pack_bytes<TOut>(h1.v[0], h1.v[1], args.yq, nf);
                }
              }
              stage.template store<TOut>(p, yw + piece * Staged::COLS);
            }
          };
          if constexpr (NARROW && P != EpiPath::General) {
            stage_tile();
          } else {
            if constexpr (WIDE_STAGE && P != EpiPath::General) {
              if (stage_wide) return stage_tile();
            }
            TOut *const y0 = static_cast<TOut *>(args.y) + mr0 * N + tn * BN + tig * 2, *const y1 = y0 + 8 * N;
#pragma unroll
            for (int q = 0; q < BN / 8; ++q) {
              const int col = q * 8 + tig * 2;
              epilogue_quad<TOut, P>(args, ctx, *cols, col, tn * BN + col, mr0, ok0, r0, mr1,
                                     P == EpiPath::General ? ok1 : true, r1, y0 + q * 8, y1 + q * 8, acc[q * 4],
                                     acc[q * 4 + 1], acc[q * 4 + 2], acc[q * 4 + 3], nf);
            }
          }
        });
        flush_nonfinite<TOut>(nf, args.yq);
      });
    }
  }
  // NOTE: the releasing barrier orders this CTA's last remote arrivals before the peer exits.
  if constexpr (CM > 1) cluster_sync<true>();
}

// ---- small M: 64 x 256 tiles, K split across a thread-block cluster ------------------------
//
// For M <= 64 the persistent kernel has ceil(N / 256) tiles: a few dozen SMs stream the
// weights and most of the card idles. Here each tile is computed by a cluster of `split`
// CTAs (1, 2, 4 or 8, from the dispatcher), each over its own share of the K tiles; the
// int32 partial sums meet through distributed shared memory, where every CTA of the
// cluster reduces and stores 1/split of the tile. Integer sums are exact in any order, so
// the result is bit-identical to the unsplit kernels, with no workspace and no atomics.
// Both consumer warpgroups share the 64-row A tile and take 128 columns each (m64n128k32).

namespace sk {
constexpr int BM = 64, BN = 256, HALF = BN / 2;
constexpr int STAGES = 5;               // 5 x (8 + 32) KiB = 200 KiB
constexpr int A_BYTES = BM * BK;
constexpr int STAGE_BYTES = (BM + BN) * BK;
constexpr int ACC = HALF / 2;           // int32 accumulators per consumer thread: 64 x 128 / 128
constexpr int QUADS = ACC / 4;          // epilogue quads (one n8 block) per consumer thread
constexpr int CONSUMERS = 256;          // consumer threads; partial sums are [QUADS][CONSUMERS] x int4
// The tile's column parameters, after the barriers (staged before the main loop).
constexpr int PARAMS_OFF = STAGES * STAGE_BYTES + 2 * STAGES * 8;
constexpr int SMEM = PARAMS_OFF + (int)sizeof(TileCols<BN>) + 1024;  // + alignment of the base
static_assert(PARAMS_OFF % 16 == 0, "column parameters are read as 8-byte vectors");
static_assert(QUADS * CONSUMERS * 16 <= STAGES * STAGE_BYTES, "partial sums reuse the stage buffers");
static_assert(STAGE_BYTES % 1024 == 0 && A_BYTES % 1024 == 0, "128-byte-swizzled tiles must start 1024-byte aligned");
}  // namespace sk

__device__ __forceinline__ int4 ld_cluster_v4(uint32_t addr) {
  int4 v;
  asm volatile("ld.shared::cluster.v4.b32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "r"(addr)
               : "memory");
  return v;
}
__device__ __forceinline__ void st_shared_v4(uint32_t addr, int32_t a, int32_t b, int32_t c, int32_t d) {
  asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(a), "r"(b), "r"(c), "r"(d) : "memory");
}

template <typename TA, typename TB>
__global__ void __launch_bounds__(THREADS, 1)
    gemm_s90_splitk(const __grid_constant__ GemmArgs args, const __grid_constant__ CUtensorMap map_a,
                    const __grid_constant__ CUtensorMap map_b) {
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  const uint32_t base = ((uint32_t)__cvta_generic_to_shared(smem_raw) + 1023u) & ~1023u;
  const uint32_t full = base + sk::STAGES * sk::STAGE_BYTES, empty = full + sk::STAGES * 8;

  const int64_t M = args.a.rows, K = args.k;
  const int64_t tiles_m = (M + sk::BM - 1) / sk::BM;
  const uint32_t split = cluster_nctarank(), rank = cluster_ctarank();
  // NOTE: the grid is tiles x split CTAs with clusters of `split` consecutive CTAs along x.
  const int64_t tile = blockIdx.x / split, tm = tile % tiles_m, tn = tile / tiles_m;
  const int64_t ktiles = (K + BK - 1) / BK;
  const int64_t kt0 = ktiles * rank / split, kt1 = ktiles * (rank + 1) / split;
  const int wg = threadIdx.x / 128;

  if (threadIdx.x == 0) {
    for (int s = 0; s < sk::STAGES; ++s) {
      mbar_init(full + 8 * s, 1);
      mbar_init(empty + 8 * s, 2);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  if (wg == 0) {
    if (threadIdx.x == 0) {
      Ring<sk::STAGES> ring;
      for (int64_t kt = kt0; kt < kt1; ++kt, ring.next()) {
        const uint32_t s = ring.stage;
        if (ring.wrapped) mbar_wait(empty + 8 * s, ring.phase ^ 1);
        const uint32_t st = base + s * sk::STAGE_BYTES;
        mbar_expect_tx(full + 8 * s, sk::STAGE_BYTES);
        tma_load_2d(st, &map_a, full + 8 * s, (int32_t)(kt * BK), (int32_t)(tm * sk::BM));
        tma_load_2d(st + sk::A_BYTES, &map_b, full + 8 * s, (int32_t)(kt * BK), (int32_t)(tn * sk::BN));
      }
    }
    // NOTE: the producer warpgroup stays for the cluster barriers below (they count every
    // thread of the cluster).
    if (split > 1) {
      cluster_sync<false>();
      cluster_sync<false>();
    }
    return;
  }

  const int c = wg - 1;  // consumer: columns 128c..128c+127 of the tile, all 64 rows
  const int ct = threadIdx.x - 128, tw = threadIdx.x % 128, warp = tw / 32, lane = tw % 32;
  const int gid = lane >> 2, tig = lane & 3;
  const bool leader = tw == 0;
  // The tile's column parameters, one column per consumer thread, loaded while the first
  // stages are in flight; the barrier before the epilogue publishes them.
  // NOTE: loaded per fragment quad from global memory they cost 8–16% at decode sizes (H200).
  const EpilogueCtx ctx = make_epilogue_ctx(args);
  TileCols<sk::BN> *const cols = staged_cols<sk::BN>(smem_raw, base, sk::PARAMS_OFF);
  if (tn * sk::BN + ct < args.b.rows) cols->set(ct, col_params(args, ctx, tn * sk::BN + ct));
  int32_t acc[sk::ACC];
#pragma unroll
  for (int i = 0; i < sk::ACC; ++i) acc[i] = 0;
  int prev = -1;
  Ring<sk::STAGES> ring;
  for (int64_t kt = kt0; kt < kt1; ++kt, ring.next()) {
    const int s = (int)ring.stage;
    mbar_wait(full + 8 * s, ring.phase);
    const uint32_t sa = base + s * sk::STAGE_BYTES, sb = sa + sk::A_BYTES + c * sk::HALF * BK;
    fence_operands(acc);
    wgmma_fence();
#pragma unroll
    for (int j = 0; j < BK / 32; ++j) wgmma<TA, TB, sk::HALF>(acc, smem_desc(sa + 32 * j), smem_desc(sb + 32 * j), 1);
    wgmma_commit();
    fence_operands(acc);
    wgmma_wait<1>();
    if (prev >= 0 && leader) mbar_arrive(empty + 8 * prev);
    prev = s;
  }
  wgmma_wait<0>();
  fence_operands(acc);

  // Thread (warp, gid, tig) of consumer c holds rows 16·warp + gid (+8) and, for quad q,
  // columns 128c + 8q + 2·tig (+1): the same positions in every CTA of the cluster.
  const int64_t N = args.b.rows;
  const int64_t mr0 = tm * sk::BM + warp * 16 + gid, mr1 = mr0 + 8;
  const bool ok0 = mr0 < M, ok1 = mr1 < M;
  const RowParams r0 = ok0 ? row_params(args.a, ctx, mr0) : RowParams{}, r1 = ok1 ? row_params(args.a, ctx, mr1) : r0;
  const int lc0 = c * sk::HALF + tig * 2;  // this thread's first column in the tile
  const int64_t n0 = tn * sk::BN + lc0;
  // NOTE: the whole-tile paths (no bounds checks) cover warpgroups whose columns are all
  // below N; rows are checked per thread.
  const EpiPath path = epilogue_path(ctx, tn * sk::BN + (c + 1) * sk::HALF <= N, true);
  // The epilogue of quad q with accumulators a (rows mr0, mr1; columns n0 + 8q, +1).
  auto quad = [&]<typename TOut, EpiPath P>(int q, int32_t a00, int32_t a01, int32_t a10, int32_t a11, uint32_t &nf) {
    TOut *const y0 = static_cast<TOut *>(args.y) + mr0 * N + n0 + q * 8;
    epilogue_quad<TOut, P>(args, ctx, *cols, lc0 + q * 8, n0 + q * 8, mr0, ok0, r0, mr1, ok1, r1, y0, y0 + 8 * N, a00,
                           a01, a10, a11, nf);
  };
  // NOTE: both consumer warpgroups: after it the column parameters are visible, and the
  // stage buffers are free (both have finished their last wgmma, and every TMA load has
  // landed: each was waited for).
  named_bar_sync<256>(1);
  if (split == 1) {
    if (ok0) {
      with_out_type(args.y_type, [&]<typename TOut>() {
        uint32_t nf = 0;
        with_epilogue_path<TOut>(path, [&]<EpiPath P>() {
#pragma unroll
          for (int q = 0; q < sk::QUADS; ++q)
            quad.template operator()<TOut, P>(q, acc[q * 4], acc[q * 4 + 1], acc[q * 4 + 2], acc[q * 4 + 3], nf);
        });
        flush_nonfinite<TOut>(nf, args.yq);
      });
    }
    return;
  }

  // Partial sums to shared memory as [quad][consumer thread] int4 (consecutive threads,
  // consecutive 16 bytes: no bank conflicts).
#pragma unroll
  for (int q = 0; q < sk::QUADS; ++q)
    st_shared_v4(base + (uint32_t)((q * sk::CONSUMERS + ct) * 16), acc[q * 4], acc[q * 4 + 1], acc[q * 4 + 2],
                 acc[q * 4 + 3]);
  cluster_sync<true>();
  // CTA `rank` finishes quads [q0, q1) of every consumer thread: the sum over the cluster's
  // CTAs, then the epilogue.
  const int q0 = (int)(sk::QUADS * rank / split), q1 = (int)(sk::QUADS * (rank + 1) / split);
  if (ok0) {
    with_out_type(args.y_type, [&]<typename TOut>() {
      uint32_t nf = 0;
      with_epilogue_path<TOut>(path, [&]<EpiPath P>() {
        for (int q = q0; q < q1; ++q) {
          const uint32_t at = base + (uint32_t)((q * sk::CONSUMERS + ct) * 16);
          int32_t sum[4] = {0, 0, 0, 0};
          for (uint32_t r = 0; r < split; ++r) {
            const int4 v = ld_cluster_v4(map_rank(at, r));
            sum[0] += v.x, sum[1] += v.y, sum[2] += v.z, sum[3] += v.w;
          }
          quad.template operator()<TOut, P>(q, sum[0], sum[1], sum[2], sum[3], nf);
        }
      });
      flush_nonfinite<TOut>(nf, args.yq);
    });
  }
  // NOTE: no CTA may exit (releasing its shared memory) while another still reads it. The
  // barrier releases so that every remote read is ordered before it (a read whose value
  // went unused, for columns beyond N, is otherwise unordered).
  cluster_sync<true>();
}

// ---- host side ----------------------------------------------------------------------------

// cuTensorMapEncodeTiled through the runtime's driver entry point (no link-time libcuda).
static PFN_cuTensorMapEncodeTiled_v12000 encode_tiled() {
  // NOTE: a function-local static is initialized once, thread-safely.
  static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void *p = nullptr;
    cudaDriverEntryPointQueryResult q;
    const bool ok = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) ==
                        cudaSuccess &&
                    q == cudaDriverEntryPointSuccess;
    return ok ? reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p) : nullptr;
  }();
  return fn;
}

// A [rows, k] row-major 8-bit matrix as a 2-D tensor map with box {BK, box_rows}.
static cudaError_t make_map(CUtensorMap *map, const void *data, int64_t rows, int64_t k, int box_rows) {
  PFN_cuTensorMapEncodeTiled_v12000 encode = encode_tiled();
  if (encode == nullptr) return cudaErrorNotSupported;
  const cuuint64_t dims[2] = {(cuuint64_t)k, (cuuint64_t)rows};
  const cuuint64_t strides[1] = {(cuuint64_t)k};
  const cuuint32_t box[2] = {(cuuint32_t)BK, (cuuint32_t)box_rows};
  const cuuint32_t elem_strides[2] = {1, 1};
  const CUresult r = encode(map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, const_cast<void *>(data), dims, strides, box,
                            elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                            CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

// A launch configuration of `grid` CTAs in clusters of `cluster` consecutive CTAs along x
// (for cudaLaunchKernelEx and the cluster occupancy query).
struct ClusterLaunch {
  cudaLaunchAttribute attr[1];
  cudaLaunchConfig_t cfg;
  ClusterLaunch(int64_t grid, int cluster, int smem, cudaStream_t s) : attr{}, cfg{} {
    cfg.gridDim = dim3((unsigned)grid);
    cfg.blockDim = dim3(THREADS);
    cfg.dynamicSmemBytes = (size_t)smem;
    cfg.stream = s;
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = (unsigned)cluster;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
  }
  ClusterLaunch(const ClusterLaunch &) = delete;  // cfg points into attr
};

// Launches `kernel` on `grid` CTAs in clusters of `cluster` consecutive CTAs along x.
template <typename Kernel>
static cudaError_t launch_clusters(Kernel kernel, int64_t grid, int cluster, int smem, cudaStream_t s,
                                   const GemmArgs &a, const CUtensorMap &map_a, const CUtensorMap &map_b) {
  if (grid < 1 || grid > INT32_MAX) return cudaErrorInvalidValue;  // the grid's x extent
  ClusterLaunch l(grid, cluster, smem, s);
  return cudaLaunchKernelEx(&l.cfg, kernel, a, map_a, map_b);
}

// How many clusters of `cluster` CTAs of `Kernel` the device holds at once (asked once per
// device: cudaOccupancyMaxActiveClusters).
template <auto Kernel>
static cudaError_t max_active_clusters_once(int cluster, int smem, int *out) {
  static PerDevice<> cached;
  return cached.get(0, out, [&](int, int *o) {
    ClusterLaunch l(cluster, cluster, smem, nullptr);
    return cudaOccupancyMaxActiveClusters(o, Kernel, &l.cfg);
  });
}

template <typename TA, typename TB, int BN, int CM, bool PP>
cudaError_t launch(const GemmArgs &a, cudaStream_t s) {
  using C = Cfg<BN, PP>;
  CUtensorMap map_a, map_b;
  cudaError_t err = make_map(&map_a, a.a.data, a.a.rows, a.k, C::BM);
  if (err == cudaSuccess) err = make_map(&map_b, a.b.data, a.b.rows, a.k, BN / CM);
  if (err != cudaSuccess) return err;
  constexpr auto kernel = gemm_s90<TA, TB, BN, CM, PP>;
  err = set_smem_limit_once<kernel>(C::SMEM);
  if (err != cudaSuccess) return err;
  const int64_t units = ((a.a.rows + C::BM * CM - 1) / (C::BM * CM)) * ((a.b.rows + BN - 1) / BN);
  int64_t clusters = units < a.sms / CM ? units : a.sms / CM;
  if constexpr (CM == 1) {
    kernel<<<(unsigned)clusters, THREADS, C::SMEM, s>>>(a, map_a, map_b);
    return cudaGetLastError();
  } else {
    // NOTE: pairs must fit in one GPC; with an odd number of SMs free in some GPCs, fewer
    // than sms / 2 pairs are resident at once, and the rest of a persistent grid would run
    // as a second wave. Cap the grid at what the device can hold.
    int resident = 0;
    err = max_active_clusters_once<kernel>(CM, C::SMEM, &resident);
    if (err != cudaSuccess) return err;
    if (resident > 0 && clusters > resident) clusters = resident;
    return launch_clusters(kernel, clusters * CM, CM, C::SMEM, s, a, map_a, map_b);
  }
}

template <typename TA, typename TB>
cudaError_t launch_splitk(const GemmArgs &a, cudaStream_t s) {
  const int split = a.cluster;
  if (split != 1 && split != 2 && split != 4 && split != 8) return cudaErrorInvalidValue;
  const int64_t tiles = ((a.a.rows + sk::BM - 1) / sk::BM) * ((a.b.rows + sk::BN - 1) / sk::BN);
  CUtensorMap map_a, map_b;
  cudaError_t err = make_map(&map_a, a.a.data, a.a.rows, a.k, sk::BM);
  if (err == cudaSuccess) err = make_map(&map_b, a.b.data, a.b.rows, a.k, sk::BN);
  if (err != cudaSuccess) return err;
  constexpr auto kernel = gemm_s90_splitk<TA, TB>;
  err = set_smem_limit_once<kernel>(sk::SMEM);
  if (err != cudaSuccess) return err;
  return launch_clusters(kernel, tiles * split, split, sk::SMEM, s, a, map_a, map_b);
}

template <typename TA, typename TB>
cudaError_t launch_tile(const GemmArgs &a, cudaStream_t s) {
  switch (a.tile) {
    case QK_TILE_128x256:
      if (a.cluster == 2) return launch<TA, TB, 256, 2, false>(a, s);
      return a.cluster == 1 ? launch<TA, TB, 256, 1, false>(a, s) : cudaErrorInvalidValue;
    case QK_TILE_128x128: return a.cluster == 1 ? launch<TA, TB, 128, 1, false>(a, s) : cudaErrorInvalidValue;
    case QK_TILE_64x256: return launch_splitk<TA, TB>(a, s);
    case QK_TILE_64x256_PINGPONG:
    case QK_TILE_64x256_PINGPONG_STAGED_I32:  // the kernel reads the tile to choose its i32 stores
      if (a.cluster == 2) return launch<TA, TB, 256, 2, true>(a, s);
      return a.cluster == 1 ? launch<TA, TB, 256, 1, true>(a, s) : cudaErrorInvalidValue;
    default: return cudaErrorInvalidValue;  // an sm_80 tile: not a configuration of this kernel
  }
}

// The launchers of A type TA (B s8 and u8), as explicit instantiations: declared `extern`
// here (PREFIX extern), defined in gemm_sm90_a_s8.cu and gemm_sm90_a_u8.cu (PREFIX empty).
#define QK_SM90_LAUNCHERS(PREFIX, TA)                                                   \
  PREFIX template cudaError_t launch_tile<TA, int8_t>(const GemmArgs &, cudaStream_t); \
  PREFIX template cudaError_t launch_tile<TA, uint8_t>(const GemmArgs &, cudaStream_t);
QK_SM90_LAUNCHERS(extern, int8_t)
QK_SM90_LAUNCHERS(extern, uint8_t)

}  // namespace sm90
}  // namespace qk
