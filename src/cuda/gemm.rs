//! The INT8 GEMM on the GPU: operands as device views, the fused epilogue, and the one
//! dispatcher that picks a kernel by compute capability and shape.
//!
//! Dispatch (all of it is in [`choose_kernel`]; [`check_kernel`] holds every constraint of
//! every configuration, and [`gemm_into_kernel`] lets a caller pin one):
//! - compute capability < 8.0 → `Error::Unsupported`;
//! - `Auto` on Hopper (9.x), when the operands allow it (K > 0, K % 16 == 0, 16-byte aligned
//!   A and B): M ≤ 16 → the decode kernel of `kernels/gemm_sm80.cu` (all of K per block, so
//!   that a few tokens' GEMM streams the weights from every SM; 8×16 blocks up to M = 8
//!   and K = 16384, 16×32 otherwise), unless N is wide enough for the split-K kernel to
//!   fill ¾ of the SMs unsplit, or M > 8 with K ≥ 12288 and about one wave of 16×32 blocks
//!   (split-K then); larger M → the wgmma + TMA kernels of
//!   `kernels/gemm_sm90.cuh` as `Sm90` below. Both passed the whole GEMM suite bit for bit,
//!   and the sanitizers, on an H200 (2026-11-27). Otherwise, and on every other device, the `mma.sync` kernel of
//!   `kernels/gemm_sm80.cu`, tile by M: M ≤ 16 → 16×128, M ≤ 64 → 64×128, else 128×128
//!   (the decode kernel is not timed off Hopper yet, so it stays pinned-only there).
//! - `Sm80` forces the tiled `mma.sync` kernel;
//! - `Sm90` forces the wgmma kernels (Hopper only; `Error::Unsupported` for what TMA cannot
//!   describe): M ≤ 64 → 64×256 tiles with K split across a cluster of up to 4 CTAs;
//!   M ≤ 128 with few tiles (at any K with at most a quarter of the SMs' worth, or K ≥ 12288
//!   with a third) → the same with split 2; above → the persistent kernel, with smaller
//!   tiles where 128×256 tiles would leave a wave badly filled (64×256 in ping-pong when
//!   there are more of them than SMs or K ≥ 12288, or for i32 out; else 128×128
//!   cooperative), else 128×256 tiles (in multicast pairs when there are ≥ 4 waves of K ≥
//!   8192), except that for K ≤ 8192 64×256 ping-pong replaces them with a float epilogue
//!   (any output but i32) and, on parts with the H200's 60 MiB of L2, with i32 out (unless
//!   the 128×256 tiles fit one wave with K ≥ 6144): its epilogue runs under the other
//!   consumer's main loop. With i32 out the dispatcher's ping-pong is the `staged_i32`
//!   form. The rules are fitted to H200 and H100 sweeps (see `sm90_kernel`);
//!   `tests/dispatch_measured.rs` holds them against the committed sweeps.

use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaSlice, CudaStream, CudaView, DevicePtr, DevicePtrMut, DeviceRepr, ValidAsZeroBits,
};

use super::device::{check_aligned, device_props, kernels_built};
use super::ffi;
use super::quantize::{DeviceQuantized, int_type, ptr_or_null, scheme};
use crate::cpu::RawMatrix;
use crate::error::{Error, Result};
use crate::gemm::{GemmOutput, GemmShape, OperandMeta, OutType, ParamLayout, check_gemm, check_requantized};
use crate::scheme::{IntType, QuantParams};
use half::{bf16, f16};

/// A GEMM operand in device memory: an 8-bit `[rows, K]` matrix (a view, so it may sit at
/// an offset inside a larger allocation), its parameters and its row sums.
#[derive(Debug)]
pub struct DeviceOperand<'a> {
    pub meta: OperandMeta,
    pub data: CudaView<'a, u8>,
    pub scales: Option<CudaView<'a, f32>>,
    pub zero_points: Option<CudaView<'a, i32>>,
    pub offsets: Option<CudaView<'a, f32>>,
    pub row_sums: CudaView<'a, i32>,
}

impl<'a> DeviceOperand<'a> {
    /// Checks that every buffer has the length `meta` implies.
    pub fn new(
        meta: OperandMeta,
        data: CudaView<'a, u8>,
        scales: Option<CudaView<'a, f32>>,
        zero_points: Option<CudaView<'a, i32>>,
        offsets: Option<CudaView<'a, f32>>,
        row_sums: CudaView<'a, i32>,
    ) -> Result<Self> {
        let len = |v: &Option<CudaView<'a, f32>>| v.as_ref().map_or(0, |v| v.len());
        let zps = zero_points.as_ref().map_or(0, |v| v.len());
        meta.check_lengths(data.len(), len(&scales), zps, len(&offsets), row_sums.len())?;
        Ok(Self {
            meta,
            data,
            scales,
            zero_points,
            offsets,
            row_sums,
        })
    }
}

impl DeviceQuantized {
    /// This matrix as a GEMM operand (per-tensor or per-row parameters only).
    pub fn operand(&self) -> Result<DeviceOperand<'_>> {
        DeviceOperand::new(
            OperandMeta::quantized(&self.spec, self.rows, self.cols)?,
            self.data.as_view(),
            Some(self.scales.as_view()),
            self.zero_points.as_ref().map(|z| z.as_view()),
            self.offsets.as_ref().map(|o| o.as_view()),
            self.row_sums.as_view(),
        )
    }
}

/// Raw 8-bit integers in device memory (the device twin of [`RawMatrix`]).
#[derive(Debug)]
pub struct DeviceRaw {
    pub int_type: IntType,
    pub rows: usize,
    pub cols: usize,
    pub data: CudaSlice<u8>,
    pub zero_points: Option<CudaSlice<i32>>,
    pub row_sums: CudaSlice<i32>,
}

impl DeviceRaw {
    /// Copies a checked host matrix to the device.
    pub fn upload(stream: &Arc<CudaStream>, h: &RawMatrix) -> Result<Self> {
        h.operand()?;
        Ok(Self {
            int_type: h.int_type,
            rows: h.rows,
            cols: h.cols,
            data: stream.clone_htod(&h.data)?,
            zero_points: h.zero_points.as_ref().map(|z| stream.clone_htod(z)).transpose()?,
            row_sums: stream.clone_htod(&h.row_sums)?,
        })
    }

    /// This matrix as a GEMM operand.
    pub fn operand(&self) -> Result<DeviceOperand<'_>> {
        let zps = self.zero_points.as_ref().map(|z| z.len());
        DeviceOperand::new(
            OperandMeta::raw(self.int_type, self.rows, self.cols, zps)?,
            self.data.as_view(),
            None,
            self.zero_points.as_ref().map(|z| z.as_view()),
            None,
            self.row_sums.as_view(),
        )
    }
}

/// A bias in device memory (N values; its type is independent of the output type).
#[derive(Debug)]
pub enum DeviceBias<'a> {
    F32(CudaView<'a, f32>),
    F16(CudaView<'a, f16>),
    BF16(CudaView<'a, bf16>),
}

impl DeviceBias<'_> {
    /// Number of values (N).
    pub(crate) fn len(&self) -> usize {
        match self {
            DeviceBias::F32(b) => b.len(),
            DeviceBias::F16(b) => b.len(),
            DeviceBias::BF16(b) => b.len(),
        }
    }
}

/// Which GEMM kernel family to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemmPath {
    /// The dispatcher's choice by compute capability and shape.
    Auto,
    /// Force the `mma.sync` kernel (sm_80+).
    Sm80,
    /// Force the Hopper `wgmma` kernel (sm_90a).
    Sm90,
}

/// A GEMM kernel configuration: what the dispatcher picks, or what a caller pins with
/// [`gemm_into_kernel`] (after [`check_kernel`] accepts it for the device and problem).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemmKernel {
    /// `gemm_sm80.cu` with a tile of `rows_a x rows_b` outputs per block: 128×128, 64×128
    /// or 16×128.
    Sm80 { tile: (usize, usize) },
    /// The decode kernel of `gemm_sm80.cu` (sm_80+) with `tile` = (tokens, weight rows) per
    /// block: (8, 16) or (16, 32). Each block runs all of K for its rows, so every SM streams
    /// weights; more tokens than the tile holds take further block rows (each reading the
    /// weights again). Needs K > 0, K % 16 == 0 and 16-byte aligned A and B. `Auto` picks it
    /// on Hopper for M ≤ 16, where it was timed; elsewhere it is pinned only.
    Sm80Decode { tile: (usize, usize) },
    /// The persistent kernel of `gemm_sm90.cuh` (one CTA per SM) with 128×256 or 128×128
    /// tiles. With `multicast` (128×256 only), clusters of two CTAs on vertically adjacent
    /// tiles load each B tile from L2 once, by TMA multicast.
    Sm90 { tile: (usize, usize), multicast: bool },
    /// The small-M kernel of `gemm_sm90.cuh`: 64×256 tiles, each tile's K split across a
    /// cluster of `split` CTAs (1, 2, 4 or 8) that reduce through distributed shared memory.
    Sm90SplitK { split: usize },
    /// The persistent kernel of `gemm_sm90.cuh` in ping-pong: 64×256 tiles, one per consumer
    /// warpgroup, whose main loops take turns so that one's epilogue runs under the other's
    /// main loop. With `multicast`, in pairs that share each B tile by TMA multicast (as
    /// `Sm90 { multicast: true }`). The dispatcher picks the single-CTA form for the
    /// smaller tiles when there are more of them than SMs (the same tile count as 128×128
    /// tiles, and faster there). With `staged_i32`, i32 outputs of whole tiles go through
    /// shared memory and out as 16-byte row pieces, as the 1- and 2-byte outputs always do
    /// (the same results; named `… staged-i32`): the form the dispatcher picks for i32 out,
    /// faster than the paired stores by 9–10% on the H200 and 18–20% on the H100 (K ≤ 8192,
    /// M ≥ 512, geometric means; 8192³ on the H100 733 against 1178 µs; `benches/NOTES.md`).
    /// For the other outputs the flag changes nothing but the name.
    Sm90PingPong { multicast: bool, staged_i32: bool },
}

impl GemmKernel {
    /// Every configuration there is (for benchmarks and tests that sweep them).
    pub fn all() -> Vec<GemmKernel> {
        let mut v: Vec<_> = [(128, 128), (64, 128), (16, 128)]
            .into_iter()
            .map(|tile| GemmKernel::Sm80 { tile })
            .collect();
        v.extend([(8, 16), (16, 32)].map(|tile| GemmKernel::Sm80Decode { tile }));
        v.push(GemmKernel::Sm90 {
            tile: (128, 256),
            multicast: true,
        });
        v.push(GemmKernel::Sm90 {
            tile: (128, 256),
            multicast: false,
        });
        v.push(GemmKernel::Sm90 {
            tile: (128, 128),
            multicast: false,
        });
        v.extend([1, 2, 4, 8].map(|split| GemmKernel::Sm90SplitK { split }));
        for staged_i32 in [false, true] {
            v.extend([true, false].map(|multicast| GemmKernel::Sm90PingPong { multicast, staged_i32 }));
        }
        v
    }

    /// Whether this is a kernel of `gemm_sm90.cuh` (wgmma, Hopper only); the others are
    /// `gemm_sm80.cu`'s (`mma.sync`, any sm_80+ device).
    pub fn wgmma(self) -> bool {
        !matches!(self, GemmKernel::Sm80 { .. } | GemmKernel::Sm80Decode { .. })
    }
}

/// The condition of the kernels that read the operands as 16-byte vectors (TMA boxes, or
/// the decode kernel's 16-byte copies): K > 0, K % 16 == 0 and both operands' data 16-byte
/// aligned. `Error::Unsupported` naming `what` otherwise.
fn check_vector_operands(info: DispatchInfo, shape: GemmShape, what: &str) -> Result<()> {
    if shape.k == 0 || !shape.k.is_multiple_of(16) || !info.aligned16 {
        return Err(Error::Unsupported(format!(
            "{what} declines K = {} or unaligned operands (it needs K > 0, K % 16 == 0 and \
             16-byte aligned A and B); the sm80 tiles take any K",
            shape.k
        )));
    }
    Ok(())
}

impl std::fmt::Display for GemmKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            GemmKernel::Sm80 { tile: (m, n) } => write!(f, "sm80 {m}x{n}"),
            GemmKernel::Sm80Decode { tile: (m, n) } => write!(f, "sm80 decode {m}x{n}"),
            GemmKernel::Sm90 {
                tile: (m, n),
                multicast,
            } => write!(f, "sm90 {m}x{n}{}", if multicast { " multicast" } else { "" }),
            GemmKernel::Sm90SplitK { split } => write!(f, "sm90 64x256 split {split}"),
            GemmKernel::Sm90PingPong { multicast, staged_i32 } => write!(
                f,
                "sm90 64x256 pingpong{}{}",
                if multicast { " multicast" } else { "" },
                if staged_i32 { " staged-i32" } else { "" }
            ),
        }
    }
}

/// A configuration by its name, as `Display` writes it (`"sm80 decode 8x16"`, `"sm90
/// 128x256 multicast"`): how the command line and benchmark files name them.
impl std::str::FromStr for GemmKernel {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let all = GemmKernel::all();
        all.iter().copied().find(|k| k.to_string() == s).ok_or_else(|| {
            let names: Vec<String> = all.iter().map(|k| format!("\"{k}\"")).collect();
            Error::InvalidArgument(format!(
                "no GEMM kernel configuration is named \"{s}\"; there are {}",
                names.join(", ")
            ))
        })
    }
}

/// What the dispatcher needs to know about the device and operands beyond the shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DispatchInfo {
    pub cc: (i32, i32),
    pub sms: usize,
    /// The L2 cache's size in bytes: what tells the H200 (60 MiB), where i32 out through
    /// ping-pong pays at K ≤ 8192, from the H100 80GB (50 MiB), where it does not (see
    /// `SM90_PINGPONG_MIN_L2`).
    pub l2_bytes: usize,
    /// Both operands' data start 16-byte aligned (TMA needs it).
    pub aligned16: bool,
}

impl DispatchInfo {
    /// The device's compute capability, SM count and L2 size (read once per device), with
    /// the operands' alignment as given.
    pub fn for_device(ctx: &CudaContext, aligned16: bool) -> Result<Self> {
        let p = device_props(ctx)?;
        Ok(Self {
            cc: p.cc,
            sms: p.sms,
            l2_bytes: p.l2_bytes,
            aligned16,
        })
    }
}

/// Largest N: the sm_80 kernel's grid has ceil(N / 128) ≤ 65535 blocks along y.
const MAX_N_SM80: usize = 65_535 * 128;
/// Largest M the wgmma path serves with its 64-row split-K kernel (one 64-row tile: the
/// persistent kernel's 128-row tiles would be half empty).
const SM90_SMALL_M: usize = 64;
/// Fewest 128-byte K tiles per CTA of a split: below, pipeline fill and the reduction
/// outweigh the extra SMs.
const SM90_MIN_KTILES_PER_CTA: usize = 4;
/// Largest split the dispatcher picks: 8 lost to 4 on every decode shape measured (H200,
/// 2026-11-26: 1×4096×4096 in 20.7 µs split 8, 16.0 µs split 4); 8 stays pinnable.
const SM90_MAX_SPLIT: usize = 4;
/// From M = 65 to 128, K at least this long makes two 64-row tiles split 2 beat the
/// persistent kernels (H200: 128×4096×14336 in 38.1 µs against 48.4 with 128×128 tiles)...
const SM90_SPLIT_M128_MIN_K: usize = 12_288;
/// ...while there are at least this many SMs per 64-row tile (H200, 2026-11-27: split 2
/// first at 128×4096×14336 and 128×5120×13824, 32 and 40 tiles on 132 SMs; ping-pong 7–13%
/// faster at 128×8192×28672, 64 tiles).
const SM90_SPLIT_M128_SMS_PER_TILE: usize = 3;
/// ...and at any K with at least this many SMs per 64-row tile (H200, 2026-11-27:
/// 128×4096×4096, 32 tiles on 132 SMs: split 2 3–8% faster than 128×128 tiles in i32 out in
/// 9 of 11 sweeps and 10–12% in bf16 out in the three of the staged epilogue; 2% slower on
/// the H100; 128×6144×4096, 48 tiles, within ±5% either way).
const SM90_SPLIT_M128_ANY_K_SMS_PER_TILE: usize = 4;
/// Cost of a 128×256 tile in units of a 64×256 ping-pong tile's (twice the work, ~10% more
/// efficient per MAC on H200): the persistent kernel takes the tile whose waves cost less.
const SM90_TILE_256_COST: usize = 18;
const SM90_TILE_64_COST: usize = 10;
/// 64×256 ping-pong instead of 128×256 tiles for K up to this: ping-pong runs each tile's
/// epilogue under the other consumer's main loop, and its stores go through shared memory
/// as 16-byte row pieces (epilogue v6 for the 2- and 1-byte outputs; `staged_i32` for i32
/// out, `benches/NOTES.md`). Float outputs, on every Hopper part: bf16 out faster than the
/// cooperative 128×256 kernel's on every shape with K ≤ 8192 of the H200 sweep at 6c637a7
/// (6–14%, 17 shapes), within ±2.5% at K = 13824–28672; on the H100 80GB 6–8% faster than
/// the fastest cooperative configuration timed with bf16 out (geometric means 0.919–0.937
/// over 20–26 shapes in four sweeps, `tests/dispatch_measured.rs`; plain ping-pong's i32
/// out there was slow from its paired stores, not its main loop). i32 out through
/// staged-i32 ping-pong, on parts with `SM90_PINGPONG_MIN_L2`: H200, 987f03f, two sweeps,
/// 3–12% faster than the cooperative picks on every such shape with M ≥ 512 (8192³ in 721
/// and 717 µs against 761 and 749), 5% slower at 128×28672×8192 (the rule below), mixed
/// (−3.5% to +9%) at K ≥ 13824. Here there are always more 64×256 tiles than SMs: with
/// fewer, the wave rule has already taken 128×128 tiles (or, for i32 out, staged-i32
/// ping-pong).
const SM90_PINGPONG_MAX_K: usize = 8192;
/// ...for i32 out, only on parts with at least this much L2 (the H200's 60 MiB). On the
/// H100 80GB (50 MiB, the same 132 SMs) staged-i32 ping-pong was 2–3% faster than the
/// fastest cooperative configuration over those shapes (geometric mean of 22, M ≥ 512, in
/// each of four sweeps at 2abf93d and 8b0a62b) but 6–11% slower at 4096³ and 10–42% at
/// 1024–2048×28672×8192, more than the per-shape loss the dispatcher allows (12%), so the
/// H100 keeps the cooperative tiles there. Why the two parts differ is not known: i32 out
/// writes 4 bytes per element and the H100's HBM3 has 70% of the H200's bandwidth (3.0
/// against 4.2 TB/s copy), a hypothesis, not a measurement; the L2 size is only what tells
/// the parts apart to the dispatcher.
const SM90_PINGPONG_MIN_L2: usize = 60 << 20;
/// ...and not where the 128×256 tiles fit in one wave with K at least this: each tile's
/// main loop is long, so ping-pong's hidden epilogue saves little, while its 64-row tiles
/// need a second, partial wave (128×28672×8192, 224 against 112 tiles on 132 SMs: staged-i32
/// 5–7% slower in all four H200 sweeps; 512×6144×4096, the same wave counts at K = 4096,
/// 4–6% faster). Nothing between was timed: the threshold sits halfway.
const SM90_PINGPONG_I32_ONE_WAVE_MIN_K: usize = 6144;
/// Largest M the decode kernel takes under `Auto` on Hopper, and the largest M and K it
/// runs with 8-token blocks (H200, 2026-11-27: at M = 1, 8×16 first or within 3% on 7 of
/// 8 weight shapes, 16×32 10–17% faster at 8192×28672; at M = 16, 16×32 first on 4 and
/// split-K on the rest, within 12%).
const DECODE_MAX_M: usize = 16;
const DECODE_8_MAX_M: usize = 8;
const DECODE_8_MAX_K: usize = 16_384;
/// ...unless the split-K kernel's 64×256 tiles alone fill this share of the SMs (in
/// quarters): then it streams the weights from a full wave unsplit (16×28672×8192: split-K
/// 9–14% faster on H200 and H100 with 112 tiles on 132 SMs; decode first or within 6% up to
/// 56 tiles).
const DECODE_MAX_SM_QUARTERS_OF_TILES: usize = 3;
/// ...and unless there are more than 8 tokens (16-token blocks), K is at least
/// `DECODE_16_SPLIT_MIN_K` and the 16×32 blocks are at most this many per 4 SMs: about one
/// wave of blocks, each streaming a long K, where split-K spreads the weights over more SMs
/// (H200, 2026-11-27, nine sweeps: split 4 3–13% faster at 16×4096×14336 and
/// 16×5120×13824, 128 and 160 blocks on 132 SMs; decode 2–12% faster at K = 4096 with as
/// few blocks, and at 16×8192×28672 with 256; one H100 sweep has decode 3% ahead at the
/// first two).
const DECODE_16_MAX_BLOCKS_PER_4_SMS: usize = 5;
const DECODE_16_SPLIT_MIN_K: usize = 12_288;

/// The decode kernel with its tile, where `Auto` on Hopper takes it (the constants above).
fn decode_kernel(shape: GemmShape, sms: usize) -> Option<GemmKernel> {
    let wide = shape.n.div_ceil(256) * 4 >= DECODE_MAX_SM_QUARTERS_OF_TILES * sms;
    let long_one_wave = shape.m > DECODE_8_MAX_M
        && shape.k >= DECODE_16_SPLIT_MIN_K
        && shape.n.div_ceil(32) * 4 <= DECODE_16_MAX_BLOCKS_PER_4_SMS * sms;
    if shape.m > DECODE_MAX_M || wide || long_one_wave {
        return None;
    }
    let eight = shape.m <= DECODE_8_MAX_M && shape.k <= DECODE_8_MAX_K;
    Some(GemmKernel::Sm80Decode {
        tile: if eight { (8, 16) } else { (16, 32) },
    })
}

/// The ping-pong configurations the dispatcher picks, single CTAs: the plain form for float
/// outputs (whose stores are staged either way), the staged-i32 form for i32 out.
const PINGPONG: GemmKernel = GemmKernel::Sm90PingPong {
    multicast: false,
    staged_i32: false,
};
const PINGPONG_STAGED_I32: GemmKernel = GemmKernel::Sm90PingPong {
    multicast: false,
    staged_i32: true,
};

/// The wgmma configuration for a shape and output. Rules fitted to the sweeps of 2026-11-27
/// (`benches/results/`, fifteen H200 and five H100 `--all-kernels` sweeps of 59 shapes,
/// every candidate timed in turn; `tests/dispatch_measured.rs` holds them against all of
/// them): the decode kernel for M ≤ 16 (`choose_kernel`), split-K for small M, then the
/// persistent kernels by wave cost; ping-pong replaces 128×256 tiles up to K = 8192 for
/// float outputs (`float_out`: every output type but i32) and, staged-i32, for i32 out on
/// parts with the H200's L2.
fn sm90_kernel(shape: GemmShape, info: DispatchInfo, float_out: bool) -> GemmKernel {
    let (m, n, k, sms) = (shape.m, shape.n, shape.k, info.sms);
    let ktiles = k.div_ceil(128);
    // Decode: 64×256 tiles, K split (≤ 4) while the CTAs still fit one wave and each keeps
    // at least 4 K tiles.
    let split_for = |tiles: usize| {
        let mut split = 1;
        while split < SM90_MAX_SPLIT && tiles * split * 2 <= sms && ktiles >= split * 2 * SM90_MIN_KTILES_PER_CTA {
            split *= 2;
        }
        split
    };
    if m <= SM90_SMALL_M {
        return GemmKernel::Sm90SplitK {
            split: split_for(n.div_ceil(256)),
        };
    }
    let tiles_64 = m.div_ceil(64) * n.div_ceil(256);
    let few_tiles = (k >= SM90_SPLIT_M128_MIN_K && tiles_64 * SM90_SPLIT_M128_SMS_PER_TILE <= sms)
        || tiles_64 * SM90_SPLIT_M128_ANY_K_SMS_PER_TILE <= sms;
    if m <= 128 && few_tiles && ktiles >= 2 * SM90_MIN_KTILES_PER_CTA {
        return GemmKernel::Sm90SplitK { split: 2 };
    }
    // Persistent: the tile whose waves cost less (wave quantization decides between them).
    // The smaller tiles are 64×256 in ping-pong, whose epilogues run under the other
    // consumer's main loop; with at most one tile per SM there is no other main loop, and
    // one warpgroup would carry a whole tile's epilogue, so 128×128 cooperative tiles (as
    // many) split it over two. H200, 2026-11-27, bf16 out: 128×128 3–8% faster at
    // 128×{6144, 13824, 14336}×K and 512×4096×4096 (≤ 132 tiles) in the sweeps before
    // staged-i32 (within the rounds' noise since), ping-pong 5% faster at 1024×5120×13824
    // (320 tiles). With K ≥ 12288 the epilogue is a small share and the m64n256 main loop
    // wins: plain ping-pong 4–12% faster in i32 out and 3–9% in bf16 out than the fastest
    // cooperative configuration at 128×8192×28672 (64 tiles) in every H200 sweep (fifteen),
    // 0–5% in i32 out on the H100 (five).
    //
    // With i32 out, staged-i32 ping-pong wherever ping-pong or 128×128 tiles would run: its
    // i32 stores leave as 16-byte row pieces. Faster than 128×128 tiles at 512×4096×4096
    // and M = 128 with N 6144–14336 (K ≤ 5120): 3–5% on the H200 (987f03f), 2–9% on the
    // H100 (2abf93d), in both sweeps of each; and 1–22% faster than plain ping-pong where
    // that ran.
    let pingpong = if float_out { PINGPONG } else { PINGPONG_STAGED_I32 };
    let t256 = m.div_ceil(128) * n.div_ceil(256);
    if tiles_64.div_ceil(sms) * SM90_TILE_64_COST < t256.div_ceil(sms) * SM90_TILE_256_COST {
        return if tiles_64 <= sms && k < SM90_SPLIT_M128_MIN_K && float_out {
            GemmKernel::Sm90 {
                tile: (128, 128),
                multicast: false,
            }
        } else {
            pingpong
        };
    }
    let i32_pingpong = info.l2_bytes >= SM90_PINGPONG_MIN_L2 && !(t256 <= sms && k >= SM90_PINGPONG_I32_ONE_WAVE_MIN_K);
    if k <= SM90_PINGPONG_MAX_K && (float_out || i32_pingpong) {
        return pingpong;
    }
    // Multicast pairs pay off with many waves of long K (H200: 4096×28672×8192 in 1305 µs
    // against 1495), and cost 1–3% at K = 4096.
    GemmKernel::Sm90 {
        tile: (128, 256),
        multicast: t256 >= 4 * sms && k >= 8192,
    }
}

/// The dispatcher: the kernel for a device, a problem and its output type (every type but
/// i32 runs the float epilogue, whose cost moves some picks; see `sm90_kernel`).
pub fn choose_kernel(info: DispatchInfo, shape: GemmShape, out: OutType, path: GemmPath) -> Result<GemmKernel> {
    let float_out = out != OutType::I32;
    let sm80 = GemmKernel::Sm80 {
        tile: match shape.m {
            0..=16 => (16, 128),
            17..=64 => (64, 128),
            _ => (128, 128),
        },
    };
    let kernel = match path {
        GemmPath::Sm90 => sm90_kernel(shape, info, float_out),
        // Auto on Hopper: the decode kernel for a few tokens, the wgmma kernels above,
        // wherever check_kernel accepts them (what TMA and 16-byte loads can take); the
        // tiled sm80 kernel otherwise.
        GemmPath::Auto => [
            decode_kernel(shape, info.sms).filter(|_| info.cc.0 == 9),
            Some(sm90_kernel(shape, info, float_out)),
        ]
        .into_iter()
        .flatten()
        .find(|&k| check_kernel(info, shape, k).is_ok())
        .unwrap_or(sm80),
        GemmPath::Sm80 => sm80,
    };
    check_kernel(info, shape, kernel)?;
    Ok(kernel)
}

/// Whether `kernel` can run this problem on this device: `Error::Unsupported` (or
/// `Error::Limit` for a grid too large) with the reason when it cannot.
pub fn check_kernel(info: DispatchInfo, shape: GemmShape, kernel: GemmKernel) -> Result<()> {
    let cc = info.cc;
    if cc.0 < 8 {
        return Err(Error::Unsupported(format!(
            "compute capability {}.{}: the INT8 GEMM needs 8.0 or newer",
            cc.0, cc.1
        )));
    }
    let (tile_ok, split): (bool, Option<usize>) = match kernel {
        GemmKernel::Sm80 { tile } => {
            if shape.n > MAX_N_SM80 {
                return Err(Error::Limit(format!(
                    "N = {} exceeds the sm80 GEMM's grid limit of {MAX_N_SM80}",
                    shape.n
                )));
            }
            return match tile {
                (128, 128) | (64, 128) | (16, 128) => Ok(()),
                _ => Err(Error::Unsupported(format!("{kernel}: no such sm80 tile"))),
            };
        }
        GemmKernel::Sm80Decode { tile } => {
            if !matches!(tile, (8, 16) | (16, 32)) {
                return Err(Error::Unsupported(format!("{kernel}: no such decode tile")));
            }
            check_vector_operands(info, shape, &kernel.to_string())?;
            if shape.m.div_ceil(tile.0) > 65_535 || shape.n.div_ceil(tile.1) > i32::MAX as usize {
                return Err(Error::Limit(format!(
                    "{kernel}: {}x{} needs more than 65535 x 2^31 blocks; use a tiled configuration",
                    shape.m, shape.n
                )));
            }
            return Ok(());
        }
        GemmKernel::Sm90 { tile, multicast } => {
            (matches!((tile, multicast), ((128, 256), _) | ((128, 128), false)), None)
        }
        GemmKernel::Sm90SplitK { split } => (matches!(split, 1 | 2 | 4 | 8), Some(split)),
        GemmKernel::Sm90PingPong { .. } => (true, None),
    };
    if !tile_ok {
        return Err(Error::Unsupported(format!("{kernel}: no such wgmma configuration")));
    }
    let min_sms = if matches!(
        kernel,
        GemmKernel::Sm90 { multicast: true, .. } | GemmKernel::Sm90PingPong { multicast: true, .. }
    ) {
        2
    } else {
        1
    };
    if info.sms < min_sms {
        return Err(Error::Unsupported(format!(
            "{kernel} needs at least {min_sms} SMs; the device reports {}",
            info.sms
        )));
    }
    if cc.0 != 9 {
        return Err(Error::Unsupported(format!(
            "the wgmma GEMM needs an sm_90 (Hopper) device; this one is {}.{}",
            cc.0, cc.1
        )));
    }
    if shape.m >= 1 << 31 || shape.n >= 1 << 31 {
        return Err(Error::Unsupported(
            "the wgmma GEMM takes fewer than 2^31 rows per operand".into(),
        ));
    }
    check_vector_operands(info, shape, "the wgmma GEMM")?;
    // The split-K grid is one CTA per tile and split (the persistent grids are ≤ SMs).
    if let Some(split) = split
        && shape.m.div_ceil(64) * shape.n.div_ceil(256) * split > i32::MAX as usize
    {
        return Err(Error::Limit(format!(
            "{kernel}: {}x{} needs more than 2^31 CTAs; use fewer rows or the persistent kernel",
            shape.m, shape.n
        )));
    }
    Ok(())
}

fn out_type(t: OutType) -> ffi::qk_out_type {
    match t {
        OutType::I32 => ffi::qk_out_type_QK_OUT_I32,
        OutType::F32 => ffi::qk_out_type_QK_OUT_F32,
        OutType::F16 => ffi::qk_out_type_QK_OUT_F16,
        OutType::BF16 => ffi::qk_out_type_QK_OUT_BF16,
        OutType::Quantized(IntType::I8) => ffi::qk_out_type_QK_OUT_S8,
        OutType::Quantized(IntType::U8) => ffi::qk_out_type_QK_OUT_U8,
    }
}

fn layout(l: ParamLayout) -> ffi::qk_param_layout {
    match l {
        ParamLayout::None => ffi::qk_param_layout_QK_PARAM_NONE,
        ParamLayout::Tensor => ffi::qk_param_layout_QK_PARAM_TENSOR,
        ParamLayout::PerRow => ffi::qk_param_layout_QK_PARAM_ROW,
    }
}

/// A GEMM output element the kernels write on the device.
pub trait DeviceGemmOutput: GemmOutput + DeviceRepr + ValidAsZeroBits {}
impl<T: GemmOutput + DeviceRepr + ValidAsZeroBits> DeviceGemmOutput for T {}

/// `Y = epilogue(A · Bᵀ)` into a new `M · N` device buffer (row-major).
pub fn gemm<O: DeviceGemmOutput>(
    stream: &Arc<CudaStream>,
    a: &DeviceOperand,
    b: &DeviceOperand,
    bias: Option<&DeviceBias>,
    path: GemmPath,
) -> Result<CudaSlice<O>> {
    kernels_built()?;
    // SAFETY: uninitialized; the kernel writes all M · N outputs (K = 0 included) before the
    // buffer is returned (on error it is dropped unread).
    let mut out = unsafe { stream.alloc::<O>(a.meta.rows * b.meta.rows) }?;
    gemm_into(stream, a, b, bias, &mut out, path)?;
    Ok(out)
}

/// `Y = epilogue(A · Bᵀ)` into caller-owned device memory (`M · N` outputs, row-major).
/// Stream-ordered; no allocation, no synchronization.
pub fn gemm_into<O: DeviceGemmOutput>(
    stream: &Arc<CudaStream>,
    a: &DeviceOperand,
    b: &DeviceOperand,
    bias: Option<&DeviceBias>,
    out: &mut impl DevicePtrMut<O>,
    path: GemmPath,
) -> Result<()> {
    launch_typed(stream, a, b, bias, out, Choice::Path(path))
}

/// [`gemm_into`] with the kernel configuration pinned instead of chosen (as one pins a
/// cuBLASLt algorithm after timing them); `kernel` must pass [`check_kernel`] for this
/// device and problem. Every configuration computes the same bits.
pub fn gemm_into_kernel<O: DeviceGemmOutput>(
    stream: &Arc<CudaStream>,
    a: &DeviceOperand,
    b: &DeviceOperand,
    bias: Option<&DeviceBias>,
    out: &mut impl DevicePtrMut<O>,
    kernel: GemmKernel,
) -> Result<()> {
    launch_typed(stream, a, b, bias, out, Choice::Pinned(kernel))
}

/// `Y = quantize(epilogue(A · Bᵀ))` into `out`, a `[M, N]` matrix whose spec takes one
/// static per-tensor set of parameters, `params` ([`crate::gemm::check_requantized`]): the
/// device twin of [`crate::cpu::gemm_quantized_into`], bit for bit. Two launches: the GEMM,
/// then `out`'s row sums (an `M · N`-byte read), which also write `params` into `out` and
/// publish the count of non-finite f32 values (an overflow of the scales) in `out`'s
/// counter, which [`DeviceQuantized::to_host`] checks. Stream-ordered; no allocation, no
/// copy, no synchronization. After an error `out` holds no defined result (its buffers stay
/// usable for the next call).
pub fn gemm_quantized_into(
    stream: &Arc<CudaStream>,
    a: &DeviceOperand,
    b: &DeviceOperand,
    bias: Option<&DeviceBias>,
    params: &QuantParams,
    out: &mut DeviceQuantized,
    path: GemmPath,
) -> Result<()> {
    launch_quantized(stream, a, b, bias, params, out, Choice::Path(path))
}

/// [`gemm_quantized_into`] with the kernel configuration pinned (see [`gemm_into_kernel`]).
pub fn gemm_quantized_into_kernel(
    stream: &Arc<CudaStream>,
    a: &DeviceOperand,
    b: &DeviceOperand,
    bias: Option<&DeviceBias>,
    params: &QuantParams,
    out: &mut DeviceQuantized,
    kernel: GemmKernel,
) -> Result<()> {
    launch_quantized(stream, a, b, bias, params, out, Choice::Pinned(kernel))
}

/// How a launch gets its kernel: the dispatcher's choice within a path, or a pinned one.
#[derive(Clone, Copy)]
enum Choice {
    Path(GemmPath),
    Pinned(GemmKernel),
}

impl Choice {
    fn kernel(self, info: DispatchInfo, shape: GemmShape, out: OutType) -> Result<GemmKernel> {
        match self {
            Choice::Path(path) => choose_kernel(info, shape, out, path),
            Choice::Pinned(kernel) => check_kernel(info, shape, kernel).map(|()| kernel),
        }
    }
}

fn launch_typed<O: DeviceGemmOutput>(
    stream: &Arc<CudaStream>,
    a: &DeviceOperand,
    b: &DeviceOperand,
    bias: Option<&DeviceBias>,
    out: &mut impl DevicePtrMut<O>,
    choice: Choice,
) -> Result<()> {
    kernels_built()?;
    let shape = check_gemm(&a.meta, &b.meta, O::TYPE, bias.map(|b| b.len()))?;
    let len = out.len();
    let (ptr, _guard) = out.device_ptr_mut(stream);
    let y = OutBuf {
        ptr,
        len,
        ty: O::TYPE,
        align: std::mem::align_of::<O>(),
        // Read by the kernels for 8-bit outputs only.
        quant: ffi::qk_requant {
            scheme: ffi::qk_scheme_QK_SYMMETRIC,
            scale: 0.0,
            zero_point: 0,
            offset: 0.0,
            nonfinite: std::ptr::null_mut(),
        },
    };
    launch_gemm(stream, a, b, bias, shape, y, choice)
}

fn launch_quantized(
    stream: &Arc<CudaStream>,
    a: &DeviceOperand,
    b: &DeviceOperand,
    bias: Option<&DeviceBias>,
    params: &QuantParams,
    out: &mut DeviceQuantized,
    choice: Choice,
) -> Result<()> {
    kernels_built()?;
    let spec = out.spec;
    let bias_len = bias.map(|b| b.len());
    let shape = check_requantized(&a.meta, &b.meta, bias_len, &spec, params, (out.rows, out.cols))?;
    out.check()?;
    let mut quant = ffi::qk_requant {
        scheme: scheme(spec.scheme()),
        scale: params.scales[0],
        zero_point: params.zero_points.as_ref().map_or(0, |z| z[0]),
        offset: params.offsets.as_ref().map_or(0.0, |o| o[0]),
        nonfinite: std::ptr::null_mut(),
    };
    let gemm = {
        // The GEMM counts into scratch word 1 (zero between calls), which the launch after
        // it publishes into word 0 and zeroes again: no memset before the GEMM.
        let (counter, _gc) = out.nonfinite.device_ptr_mut(stream);
        quant.nonfinite = (counter + 8) as *mut u64;
        let len = out.data.len();
        let (ptr, _gy) = out.data.device_ptr_mut(stream);
        let y = OutBuf {
            ptr,
            len,
            ty: OutType::Quantized(spec.int_type()),
            align: 1,
            quant,
        };
        launch_gemm(stream, a, b, bias, shape, y, choice)
    };
    // M = 0 and N = 0 included (an empty row's sum is 0; with no rows the launch still
    // finishes the parameters and the count).
    let done = gemm.and_then(|()| super::quantize::finish_requantized(stream, out, &quant));
    if done.is_err() {
        // A GEMM that reports an error may still have been queued (a launcher's status can
        // be an earlier call's pending error) and count into word 1, which no launch will now
        // clear. Best effort (the first error is the one to report): zero it, stream-ordered
        // after the GEMM, so the next call starts clean.
        let _ = stream.memset_zeros(&mut out.nonfinite.slice_mut(1..2));
    }
    done
}

/// Where the kernels write Y: device pointer, element count, type, the alignment its type
/// needs, and the output quantization (8-bit outputs only).
struct OutBuf {
    ptr: u64,
    len: usize,
    ty: OutType,
    align: usize,
    quant: ffi::qk_requant,
}

/// Launches a checked problem (`shape` from check_gemm or check_requantized).
fn launch_gemm(
    stream: &Arc<CudaStream>,
    a: &DeviceOperand,
    b: &DeviceOperand,
    bias: Option<&DeviceBias>,
    shape: GemmShape,
    y: OutBuf,
    choice: Choice,
) -> Result<()> {
    if y.len != shape.m * shape.n {
        return Err(Error::Shape(format!(
            "output has {} elements; M x N = {} x {} needs {}",
            y.len,
            shape.m,
            shape.n,
            shape.m * shape.n
        )));
    }
    if shape.m == 0 || shape.n == 0 {
        return Ok(());
    }
    let (sums_a, sums_b) = row_sums_read(&a.meta, &b.meta);
    let (pa, _ga) = operand_ptrs(stream, a, sums_a);
    let (pb, _gb) = operand_ptrs(stream, b, sums_b);
    let aligned16 = (pa.data as usize).is_multiple_of(16) && (pb.data as usize).is_multiple_of(16);
    let info = DispatchInfo::for_device(stream.context(), aligned16)?;
    let kernel = choice.kernel(info, shape, y.ty)?;
    let (tile, cluster) = match kernel {
        GemmKernel::Sm80 { tile: (16, _) } => (ffi::qk_gemm_tile_QK_TILE_16x128, 1),
        GemmKernel::Sm80 { tile: (64, _) } => (ffi::qk_gemm_tile_QK_TILE_64x128, 1),
        GemmKernel::Sm80 { .. } => (ffi::qk_gemm_tile_QK_TILE_128x128, 1),
        GemmKernel::Sm80Decode { tile: (8, _) } => (ffi::qk_gemm_tile_QK_TILE_DECODE_8x16, 1),
        GemmKernel::Sm80Decode { .. } => (ffi::qk_gemm_tile_QK_TILE_DECODE_16x32, 1),
        GemmKernel::Sm90 {
            tile: (_, 256),
            multicast,
        } => (ffi::qk_gemm_tile_QK_TILE_128x256, if multicast { 2 } else { 1 }),
        GemmKernel::Sm90 { .. } => (ffi::qk_gemm_tile_QK_TILE_128x128, 1),
        GemmKernel::Sm90SplitK { split } => (ffi::qk_gemm_tile_QK_TILE_64x256, split as i32),
        GemmKernel::Sm90PingPong { multicast, staged_i32 } => (
            if staged_i32 {
                ffi::qk_gemm_tile_QK_TILE_64x256_PINGPONG_STAGED_I32
            } else {
                ffi::qk_gemm_tile_QK_TILE_64x256_PINGPONG
            },
            if multicast { 2 } else { 1 },
        ),
    };

    check_aligned(y.ptr, y.align, "GEMM output")?;
    let (bias_type, bias_align) = match bias {
        None | Some(DeviceBias::F32(_)) => (ffi::qk_float_type_QK_F32, 4),
        Some(DeviceBias::F16(_)) => (ffi::qk_float_type_QK_F16, 2),
        Some(DeviceBias::BF16(_)) => (ffi::qk_float_type_QK_BF16, 2),
    };
    let (bias_ptr, _gbias) = match bias {
        None => (0, None),
        Some(DeviceBias::F32(v)) => ptr_or_null(Some(v), stream),
        Some(DeviceBias::F16(v)) => ptr_or_null(Some(v), stream),
        Some(DeviceBias::BF16(v)) => ptr_or_null(Some(v), stream),
    };
    check_aligned(bias_ptr, bias_align, "bias")?;

    let args = ffi::qk_gemm_args {
        a: pa,
        b: pb,
        k: shape.k as i64,
        y: y.ptr as *mut _,
        y_type: out_type(y.ty),
        bias: bias_ptr as *const _,
        bias_type,
        tile,
        sms: info.sms as i32,
        cluster,
        y_quant: y.quant,
    };
    match kernel {
        GemmKernel::Sm80 { .. } | GemmKernel::Sm80Decode { .. } => {
            super::quantize::launch(stream, "qk_gemm_sm80", |s| {
                // SAFETY: matches `int qk_gemm_sm80(const qk_gemm_args*, qk_stream_t)`. check_gemm
                // and DeviceOperand::new checked every length against M, N, K and the parameter
                // layouts (check_kernel: the decode tiles' K % 16 == 0, alignment and grid); the
                // views and guards keep the memory alive until the launch is enqueued.
                unsafe { ffi::qk_gemm_sm80(&args, s) }
            })
        }
        GemmKernel::Sm90 { .. } | GemmKernel::Sm90SplitK { .. } | GemmKernel::Sm90PingPong { .. } => {
            super::quantize::launch(stream, "qk_gemm_sm90", |s| {
                // SAFETY: matches `int qk_gemm_sm90(const qk_gemm_args*, qk_stream_t)`; the same
                // checks as above, plus check_kernel's K > 0, K % 16 == 0, 16-byte alignment and
                // configuration checks.
                unsafe { ffi::qk_gemm_sm90(&args, s) }
            })
        }
    }
}

type Guards<'a> = Vec<cudarc::driver::SyncOnDrop<'a>>;

/// Whether the kernels read A's and B's row sums: ΣA enters the result only through B's
/// zero points, ΣB only through A's zero points and A's MinOffset term (the kernels' rule,
/// `make_epilogue_ctx` in kernels/common/gemm_epilogue.cuh; `qk_gemm_operand.row_sums`).
fn row_sums_read(a: &OperandMeta, b: &OperandMeta) -> (bool, bool) {
    (
        b.zero_point != ParamLayout::None,
        a.zero_point != ParamLayout::None || a.offset != ParamLayout::None,
    )
}

/// An operand's device pointers, with the guards that keep cudarc's stream ordering until
/// the launch is enqueued. Row sums the kernels do not read (`read_sums` false: raw and
/// Symmetric operands, the common case) go over as NULL, without a guard: with more than one
/// stream in the context each guard costs a cuStreamWaitEvent and a cuEventRecord on the host.
fn operand_ptrs<'a>(
    stream: &'a CudaStream,
    o: &'a DeviceOperand,
    read_sums: bool,
) -> (ffi::qk_gemm_operand, Guards<'a>) {
    let mut guards = Vec::new();
    let mut ptr = |p: (u64, cudarc::driver::SyncOnDrop<'a>)| {
        guards.push(p.1);
        p.0
    };
    let data = ptr(o.data.device_ptr(stream));
    let scale = o.scales.as_ref().map_or(0, |v| ptr(v.device_ptr(stream)));
    let zero_point = o.zero_points.as_ref().map_or(0, |v| ptr(v.device_ptr(stream)));
    let offset = o.offsets.as_ref().map_or(0, |v| ptr(v.device_ptr(stream)));
    let row_sums = if read_sums {
        ptr(o.row_sums.device_ptr(stream))
    } else {
        0
    };
    let op = ffi::qk_gemm_operand {
        data: data as *const _,
        type_: int_type(o.meta.int_type),
        rows: o.meta.rows as i64,
        scale: scale as *const f32,
        scale_layout: layout(o.meta.scale),
        zero_point: zero_point as *const i32,
        zero_point_layout: layout(o.meta.zero_point),
        offset: offset as *const f32,
        offset_layout: layout(o.meta.offset),
        row_sums: row_sums as *const i32,
    };
    (op, guards)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An H200-like device (132 SMs, 60 MiB of L2) of compute capability `cc`.
    fn info(cc: (i32, i32)) -> DispatchInfo {
        DispatchInfo {
            cc,
            sms: 132,
            l2_bytes: 60 << 20,
            aligned16: true,
        }
    }

    #[test]
    fn dispatch_table() {
        let s = |m, n, k| GemmShape { m, n, k };
        let auto = |i, sh| choose_kernel(i, sh, OutType::I32, GemmPath::Auto).unwrap();
        assert_eq!(
            auto(info((8, 0)), s(1, 4096, 4096)),
            GemmKernel::Sm80 { tile: (16, 128) }
        );
        assert_eq!(
            auto(info((8, 0)), s(64, 4096, 4096)),
            GemmKernel::Sm80 { tile: (64, 128) }
        );
        assert_eq!(
            auto(info((8, 9)), s(65, 4096, 4096)),
            GemmKernel::Sm80 { tile: (128, 128) }
        );
        // Hopper: Auto takes the decode kernel up to M = 16 and the wgmma kernels above, when
        // 16-byte loads and TMA can take the operands.
        let decode = |tile| GemmKernel::Sm80Decode { tile };
        assert_eq!(auto(info((9, 0)), s(1, 4096, 4096)), decode((8, 16)));
        assert_eq!(auto(info((9, 0)), s(8, 4096, 4096)), decode((8, 16)));
        assert_eq!(auto(info((9, 0)), s(1, 8192, 28672)), decode((16, 32))); // K > 16384
        assert_eq!(
            auto(info((9, 0)), s(16, 28672, 8192)), // 112 tiles of 64x256: >= 3/4 of 132 SMs
            GemmKernel::Sm90SplitK { split: 1 }
        );
        assert_eq!(auto(info((9, 0)), s(16, 4096, 4096)), decode((16, 32)));
        // M > 8, K ≥ 12288 and at most 5 blocks of 16x32 per 4 SMs (165 on 132): split-K.
        assert_eq!(
            auto(info((9, 0)), s(16, 4096, 14336)), // 128 blocks
            GemmKernel::Sm90SplitK { split: 4 }
        );
        assert_eq!(
            auto(info((9, 0)), s(16, 5280, 12288)), // 165 blocks
            GemmKernel::Sm90SplitK { split: 4 }
        );
        assert_eq!(auto(info((9, 0)), s(16, 5312, 12288)), decode((16, 32))); // 166 blocks
        assert_eq!(auto(info((9, 0)), s(16, 4096, 12272)), decode((16, 32))); // K < 12288
        assert_eq!(auto(info((9, 0)), s(8, 4096, 14336)), decode((8, 16))); // 8 tokens
        assert_eq!(auto(info((9, 0)), s(16, 8192, 28672)), decode((16, 32))); // 256 blocks
        assert_eq!(
            auto(info((9, 0)), s(17, 4096, 4096)),
            GemmKernel::Sm90SplitK { split: 4 }
        );
        assert_eq!(
            auto(info((9, 0)), s(1, 4096, 4100)),
            GemmKernel::Sm80 { tile: (16, 128) }
        );
        let unaligned9 = DispatchInfo {
            aligned16: false,
            ..info((9, 0))
        };
        assert_eq!(auto(unaligned9, s(1, 4096, 4096)), GemmKernel::Sm80 { tile: (16, 128) });
        assert_eq!(
            auto(unaligned9, s(512, 4096, 4096)),
            GemmKernel::Sm80 { tile: (128, 128) }
        );
        let sm90 = |i, sh| choose_kernel(i, sh, OutType::I32, GemmPath::Sm90);
        let h = info((9, 0));
        let big = |tile, multicast| GemmKernel::Sm90 { tile, multicast };
        // i32 out on the H200: staged-i32 ping-pong for K ≤ 8192 and wherever ping-pong or
        // 128×128 tiles would run; 128×256 tiles above.
        for sh in [
            s(8192, 8192, 8192),
            s(4096, 14336, 4096),
            s(4096, 28672, 8192),
            s(128, 65536, 4096), // one tile row
            s(512, 6144, 4096),  // 96 tiles of 128×256 in one wave, K < 8192
            s(512, 4096, 4096),  // 128 tiles ≤ 132 SMs, where float outputs take 128×128
            s(65, 6144, 4096),   // 48 tiles
            s(128, 8192, 12272), // K < 12288
            s(1024, 6144, 4096), // 3 waves of 64 rows vs 2 of 128
            s(128, 4352, 4096),  // 34 tiles
            s(128, 8192, 28672), // 64 > 132 / 3: no split; K ≥ 12288
        ] {
            assert_eq!(sm90(h, sh).unwrap(), PINGPONG_STAGED_I32, "{sh:?}");
        }
        assert_eq!(sm90(h, s(16384, 16384, 16384)).unwrap(), big((128, 256), true));
        assert_eq!(sm90(h, s(128, 28672, 8192)).unwrap(), big((128, 256), false)); // one wave, K = 8192
        assert_eq!(sm90(h, s(128, 28672, 6144)).unwrap(), big((128, 256), false)); // one wave, K = 6144
        assert_eq!(sm90(h, s(128, 28672, 6016)).unwrap(), PINGPONG_STAGED_I32); // K < 6144
        assert_eq!(sm90(h, s(4096, 6144, 8208)).unwrap(), big((128, 256), true)); // K > 8192
        assert_eq!(sm90(h, s(1024, 4096, 14336)).unwrap(), big((128, 256), false));
        // The H100's 50 MiB of L2: 128×256 tiles for i32 out at K ≤ 8192, staged-i32 where
        // the wave rule takes ping-pong or 128×128 tiles.
        let h100 = DispatchInfo {
            l2_bytes: 50 << 20,
            ..h
        };
        assert_eq!(sm90(h100, s(8192, 8192, 8192)).unwrap(), big((128, 256), true));
        assert_eq!(sm90(h100, s(128, 65536, 4096)).unwrap(), big((128, 256), false));
        assert_eq!(sm90(h100, s(4096, 14336, 4096)).unwrap(), big((128, 256), false));
        for sh in [
            s(512, 4096, 4096),
            s(65, 6144, 4096),
            s(128, 8192, 12272),
            s(1024, 6144, 4096),
            s(128, 8192, 28672),
        ] {
            assert_eq!(sm90(h100, sh).unwrap(), PINGPONG_STAGED_I32, "{sh:?}");
        }
        // A float epilogue: ping-pong instead of 128×256 tiles for K ≤ 8192, at any wave
        // count (and more 64-row tiles than SMs), on the H200 and the H100; plain ping-pong
        // and 128×128 tiles where i32 out takes staged-i32.
        for out in [
            OutType::BF16,
            OutType::F16,
            OutType::F32,
            OutType::Quantized(IntType::I8),
        ] {
            let float = |sh| choose_kernel(h, sh, out, GemmPath::Auto).unwrap();
            assert_eq!(float(s(4096, 4096, 4096)), PINGPONG); // 3.9 waves
            assert_eq!(float(s(4096, 14336, 4096)), PINGPONG); // 13.6 waves
            assert_eq!(float(s(4096, 6144, 5120)), PINGPONG);
            assert_eq!(float(s(512, 13824, 5120)), PINGPONG);
            assert_eq!(float(s(8192, 8192, 8192)), PINGPONG); // 15.5 waves, where i32 takes multicast
            assert_eq!(float(s(4096, 28672, 8192)), PINGPONG);
            assert_eq!(float(s(4096, 6144, 8208)), big((128, 256), true)); // K > 8192
            assert_eq!(float(s(1024, 4096, 14336)), big((128, 256), false)); // long K
            assert_eq!(float(s(16384, 16384, 16384)), big((128, 256), true));
            assert_eq!(float(s(512, 4096, 4096)), big((128, 128), false)); // 128 tiles ≤ 132 SMs
            assert_eq!(float(s(1024, 6144, 4096)), PINGPONG);
            assert_eq!(float(s(128, 8192, 28672)), PINGPONG);
            assert_eq!(float(s(1, 4096, 4096)), decode((8, 16)));
            // The same on the H100.
            for sh in [
                s(4096, 4096, 4096),
                s(8192, 8192, 8192),
                s(512, 13824, 5120),
                s(1024, 6144, 4096),
            ] {
                assert_eq!(choose_kernel(h100, sh, out, GemmPath::Auto).unwrap(), PINGPONG);
            }
            assert_eq!(
                choose_kernel(h100, s(512, 4096, 4096), out, GemmPath::Auto).unwrap(),
                big((128, 128), false)
            );
        }
        // M ≤ 64: 64×256 tiles, split (≤ 4) while the SMs are short of work and K allows.
        let small = |split| GemmKernel::Sm90SplitK { split };
        assert_eq!(sm90(h, s(128, 4096, 14336)).unwrap(), small(2)); // M ≤ 128, long K, 32 tiles
        assert_eq!(sm90(h, s(128, 4096, 4096)).unwrap(), small(2)); // 32 tiles ≤ 132 / 4
        assert_eq!(sm90(h, s(1, 4096, 4096)).unwrap(), small(4)); // 16 tiles, 32 K tiles
        assert_eq!(sm90(h, s(64, 14336, 4096)).unwrap(), small(2)); // 56 tiles
        assert_eq!(sm90(h, s(16, 28672, 8192)).unwrap(), small(1)); // 112 tiles
        assert_eq!(sm90(h, s(1, 4096, 1024)).unwrap(), small(2)); // 8 K tiles: 4 per CTA
        assert_eq!(sm90(h, s(1, 256, 16)).unwrap(), small(1)); // one K tile
        for bad in [s(128, 128, 0), s(128, 128, 40)] {
            assert!(matches!(sm90(info((9, 0)), bad), Err(Error::Unsupported(_))));
        }
        let unaligned = DispatchInfo {
            aligned16: false,
            ..info((9, 0))
        };
        assert!(matches!(sm90(unaligned, s(128, 128, 64)), Err(Error::Unsupported(_))));
        assert!(matches!(
            sm90(info((8, 0)), s(128, 128, 64)),
            Err(Error::Unsupported(_))
        ));
        assert!(matches!(
            choose_kernel(info((7, 5)), s(1, 1, 1), OutType::I32, GemmPath::Auto),
            Err(Error::Unsupported(_))
        ));
        assert!(matches!(
            choose_kernel(info((8, 0)), s(1, MAX_N_SM80 + 1, 16), OutType::I32, GemmPath::Auto),
            Err(Error::Limit(_))
        ));
    }

    #[test]
    fn pinned_kernels_are_checked() {
        let s = GemmShape { m: 300, n: 500, k: 256 };
        for kernel in GemmKernel::all() {
            let hopper = check_kernel(info((9, 0)), s, kernel);
            assert!(hopper.is_ok(), "{kernel} on sm_90: {hopper:?}");
            let ampere = check_kernel(info((8, 0)), s, kernel);
            assert_eq!(
                ampere.is_ok(),
                matches!(kernel, GemmKernel::Sm80 { .. } | GemmKernel::Sm80Decode { .. }),
                "{kernel} on sm_80"
            );
        }
        let bad = [
            GemmKernel::Sm80 { tile: (128, 256) },
            GemmKernel::Sm90 {
                tile: (128, 128),
                multicast: true,
            },
            GemmKernel::Sm90 {
                tile: (64, 256),
                multicast: false,
            },
            GemmKernel::Sm90SplitK { split: 3 },
            GemmKernel::Sm90SplitK { split: 16 },
            GemmKernel::Sm80Decode { tile: (16, 16) },
        ];
        for kernel in bad {
            assert!(
                matches!(check_kernel(info((9, 0)), s, kernel), Err(Error::Unsupported(_))),
                "{kernel}"
            );
        }
        let huge = GemmShape {
            m: 1 << 30,
            n: 1 << 30,
            k: 16,
        };
        assert!(matches!(
            check_kernel(info((9, 0)), huge, GemmKernel::Sm90SplitK { split: 1 }),
            Err(Error::Limit(_))
        ));
        let one_sm = DispatchInfo { sms: 1, ..info((9, 0)) };
        let pairs = [
            GemmKernel::Sm90 {
                tile: (128, 256),
                multicast: true,
            },
            GemmKernel::Sm90PingPong {
                multicast: true,
                staged_i32: false,
            },
        ];
        for persistent in pairs {
            assert!(check_kernel(info((9, 0)), huge, persistent).is_ok(), "{persistent}");
            assert!(
                matches!(check_kernel(one_sm, s, persistent), Err(Error::Unsupported(_))),
                "{persistent}"
            );
        }
        assert!(check_kernel(one_sm, s, PINGPONG).is_ok());
        // The decode kernel: K % 16 == 0 and aligned operands, on any sm_80+ device; M beyond
        // 65535 block rows is a limit.
        let decode = GemmKernel::Sm80Decode { tile: (8, 16) };
        for cc in [(8, 0), (8, 9), (9, 0), (12, 0)] {
            assert!(check_kernel(info(cc), s, decode).is_ok(), "{cc:?}");
        }
        for k in [0, 40] {
            let shape = GemmShape { k, ..s };
            assert!(matches!(
                check_kernel(info((8, 0)), shape, decode),
                Err(Error::Unsupported(_))
            ));
        }
        let unaligned = DispatchInfo {
            aligned16: false,
            ..info((8, 0))
        };
        assert!(matches!(check_kernel(unaligned, s, decode), Err(Error::Unsupported(_))));
        let tall = GemmShape { m: 8 * 65_535 + 1, ..s };
        assert!(matches!(check_kernel(info((8, 0)), tall, decode), Err(Error::Limit(_))));
        assert!(
            check_kernel(
                info((8, 0)),
                GemmShape { m: 16 * 65_535, ..s },
                GemmKernel::Sm80Decode { tile: (16, 32) }
            )
            .is_ok()
        );
        assert_eq!(decode.to_string(), "sm80 decode 8x16");
        assert_eq!(GemmKernel::Sm90SplitK { split: 4 }.to_string(), "sm90 64x256 split 4");
        // Every configuration parses back from its name; other names are an error that lists them.
        for kernel in GemmKernel::all() {
            assert_eq!(kernel.to_string().parse::<GemmKernel>().unwrap(), kernel);
        }
        let Err(Error::InvalidArgument(e)) = "sm80 64x64".parse::<GemmKernel>() else {
            panic!("an unknown name must be InvalidArgument")
        };
        assert!(e.contains("\"sm80 decode 16x32\""), "{e}");
        assert_eq!(
            GemmKernel::Sm90PingPong {
                multicast: true,
                staged_i32: false,
            }
            .to_string(),
            "sm90 64x256 pingpong multicast"
        );
    }
}
