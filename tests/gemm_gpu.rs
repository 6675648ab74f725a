//! GPU GEMM vs the CPU reference, bit for bit: every A scheme × B scheme × output type ×
//! bias type, M = 1..130, N and K around the tile sizes (and K of both load paths), primes,
//! a large shape, operands at offsets inside larger allocations, the int32 extremes at the
//! largest K the bound allows, and repeated runs.
//!
//! Every comparison runs the dispatcher's default path and, on a Hopper device, both forced
//! paths too (the wgmma path may decline K % 16 ≠ 0 and unaligned operands, and only that).
//! Shapes with more tiles than SMs, fewer, and one tile exercise its persistent scheduler;
//! small-M shapes chosen for each cluster size the dispatcher picks (1, 2, 4) exercise its
//! split-K kernel, shapes with 1 to ~6 tiles per CTA its ping-pong kernels, and every
//! configuration (split 8 and the decode kernel too) runs pinned.
//!
//! Without a GPU each test prints `SKIPPED: no CUDA device` and passes;
//! `QKERNELS_REQUIRE_GPU=1` turns a missing device into a failure.

mod common;

use cudarc::driver::CudaSlice;
use qkernels::cpu::{self, Bias, HostOperand, HostQuantized, RawMatrix};
use qkernels::cuda::{self, DeviceBias, DeviceGemmOutput, DeviceOperand, DeviceQuantized, DeviceRaw, GemmPath, Gpu};
use qkernels::gemm::{OperandMeta, OutType, ParamLayout};
use qkernels::{Error, Granularity, IntType, QuantSpec, bf16, f16};

/// Host operands of every kind the GEMM takes.
enum HostOp {
    Q(HostQuantized),
    Raw(RawMatrix),
}

impl HostOp {
    fn operand(&self) -> HostOperand<'_> {
        match self {
            HostOp::Q(q) => q.operand().unwrap(),
            HostOp::Raw(r) => r.operand().unwrap(),
        }
    }
}

enum DevOp {
    Q(DeviceQuantized),
    Raw(DeviceRaw),
}

impl DevOp {
    fn upload(g: &Gpu, h: &HostOp) -> Self {
        match h {
            HostOp::Q(q) => DevOp::Q(DeviceQuantized::upload(&g.stream, q).unwrap()),
            HostOp::Raw(r) => DevOp::Raw(DeviceRaw::upload(&g.stream, r).unwrap()),
        }
    }
    fn operand(&self) -> DeviceOperand<'_> {
        match self {
            DevOp::Q(q) => q.operand().unwrap(),
            DevOp::Raw(r) => r.operand().unwrap(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Sym(Granularity),
    Aff(IntType, Granularity),
    MinOff(Granularity),
    Raw(IntType, bool),
}

fn make(kind: Kind, rows: usize, k: usize, seed: u64) -> HostOp {
    let x = qkernels::bench::random_f32(rows * k, seed, 2.0);
    let q = |spec| HostOp::Q(cpu::quantize(&x, rows, k, spec, None, false).unwrap());
    match kind {
        Kind::Sym(g) => q(QuantSpec::symmetric(g).unwrap()),
        Kind::Aff(t, g) => q(QuantSpec::affine(t, g).unwrap()),
        Kind::MinOff(g) => q(QuantSpec::min_offset(g).unwrap()),
        Kind::Raw(t, zp) => {
            let data: Vec<u8> = x
                .iter()
                .map(|v| ((v * 64.0) as i32 + if t == IntType::U8 { 128 } else { 0 }) as u8)
                .collect();
            let zps = zp.then(|| {
                (0..rows)
                    .map(|r| {
                        if t == IntType::U8 {
                            (r * 13 % 256) as i32
                        } else {
                            (r * 13 % 256) as i32 - 128
                        }
                    })
                    .collect()
            });
            HostOp::Raw(RawMatrix::new(t, rows, k, data, zps).unwrap())
        }
    }
}

const A_KINDS: &[Kind] = &[
    Kind::Sym(Granularity::Row),
    Kind::Sym(Granularity::Tensor),
    Kind::Aff(IntType::U8, Granularity::Row),
    Kind::Aff(IntType::U8, Granularity::Tensor),
    Kind::Aff(IntType::I8, Granularity::Row),
    Kind::MinOff(Granularity::Row),
    Kind::MinOff(Granularity::Tensor),
    Kind::Raw(IntType::I8, false),
    Kind::Raw(IntType::U8, true),
];

const B_KINDS: &[Kind] = &[
    Kind::Sym(Granularity::Row),
    Kind::Sym(Granularity::Tensor),
    Kind::Aff(IntType::I8, Granularity::Row),
    Kind::Aff(IntType::U8, Granularity::Tensor),
    Kind::Raw(IntType::I8, true),
    Kind::Raw(IntType::U8, false),
];

/// The same bias values as f32, f16 and bf16, on the host and on the device.
struct Biases {
    b32: Vec<f32>,
    b16: Vec<f16>,
    bb: Vec<bf16>,
    d32: CudaSlice<f32>,
    d16: CudaSlice<f16>,
    db: CudaSlice<bf16>,
}

fn biases(g: &Gpu, n: usize) -> Biases {
    let b32 = qkernels::bench::random_f32(n, 77, 3.0);
    let b16: Vec<f16> = b32.iter().map(|&v| f16::from_f32(v)).collect();
    let bb: Vec<bf16> = b32.iter().map(|&v| bf16::from_f32(v)).collect();
    let d32 = g.stream.clone_htod(&b32).unwrap();
    let d16 = g.stream.clone_htod(&b16).unwrap();
    let db = g.stream.clone_htod(&bb).unwrap();
    Biases {
        b32,
        b16,
        bb,
        d32,
        d16,
        db,
    }
}

/// Runs output type O with every bias choice; both paths must agree (values or errors).
fn compare<O: DeviceGemmOutput + PartialEq>(
    g: &Gpu,
    ha: &HostOperand,
    hb: &HostOperand,
    da: &DeviceOperand,
    db: &DeviceOperand,
    what: &str,
) {
    let n = hb.meta.rows;
    let bs = biases(g, n);
    let cases: [(Option<Bias>, Option<DeviceBias>); 4] = [
        (None, None),
        (Some(Bias::F32(&bs.b32)), Some(DeviceBias::F32(bs.d32.as_view()))),
        (Some(Bias::F16(&bs.b16)), Some(DeviceBias::F16(bs.d16.as_view()))),
        (Some(Bias::BF16(&bs.bb)), Some(DeviceBias::BF16(bs.db.as_view()))),
    ];
    let hopper = g.ctx.compute_capability().unwrap().0 == 9;
    // On Hopper, Auto is the wgmma path where TMA allows: force sm80 too, so that both
    // families go through every comparison.
    let paths: &[GemmPath] = if hopper {
        &[GemmPath::Auto, GemmPath::Sm80, GemmPath::Sm90]
    } else {
        &[GemmPath::Auto]
    };
    for (hbias, dbias) in cases {
        let want = cpu::gemm::<O>(ha, hb, hbias);
        for &path in paths {
            let got = cuda::gemm::<O>(&g.stream, da, db, dbias.as_ref(), path);
            match (&want, got) {
                (Ok(w), Ok(d)) => {
                    let d = g.stream.clone_dtoh(&d).unwrap();
                    assert!(
                        d == *w,
                        "{what} {path:?} out {:?} bias {}: GPU and CPU differ",
                        O::TYPE,
                        hbias.is_some()
                    );
                }
                (Err(_), Err(_)) => {}
                // The wgmma path declines what TMA cannot describe, and nothing else.
                (Ok(_), Err(Error::Unsupported(_))) if path == GemmPath::Sm90 && !tma_ok(g, da, db) => {}
                (w, d) => panic!(
                    "{what} {path:?} out {:?}: CPU {:?} vs GPU {:?}",
                    O::TYPE,
                    w.as_ref().err(),
                    d.err()
                ),
            }
        }
    }
}

/// Whether TMA can describe the operands: K > 0, K % 16 == 0, 16-byte aligned data.
fn tma_ok(g: &Gpu, a: &DeviceOperand, b: &DeviceOperand) -> bool {
    use cudarc::driver::DevicePtr;
    let k = a.meta.cols;
    let (pa, _ga) = a.data.device_ptr(&g.stream);
    let (pb, _gb) = b.data.device_ptr(&g.stream);
    k > 0 && k.is_multiple_of(16) && pa.is_multiple_of(16) && pb.is_multiple_of(16)
}

fn compare_all_outputs(g: &Gpu, ha: &HostOp, hb: &HostOp, what: &str) {
    let (da, db) = (DevOp::upload(g, ha), DevOp::upload(g, hb));
    let (ho_a, ho_b, do_a, do_b) = (ha.operand(), hb.operand(), da.operand(), db.operand());
    compare::<i32>(g, &ho_a, &ho_b, &do_a, &do_b, what);
    compare::<f32>(g, &ho_a, &ho_b, &do_a, &do_b, what);
    compare::<f16>(g, &ho_a, &ho_b, &do_a, &do_b, what);
    compare::<bf16>(g, &ho_a, &ho_b, &do_a, &do_b, what);
}

#[test]
fn every_scheme_pair_output_and_bias() {
    let Some(g) = common::gpu() else { return };
    for (m, n, k) in [(5, 7, 64), (33, 130, 100)] {
        for (i, &ka) in A_KINDS.iter().enumerate() {
            for (j, &kb) in B_KINDS.iter().enumerate() {
                let a = make(ka, m, k, i as u64 + 1);
                let b = make(kb, n, k, j as u64 + 100);
                compare_all_outputs(&g, &a, &b, &format!("{ka:?} x {kb:?} {m}x{n}x{k}"));
            }
        }
    }
}

#[test]
fn every_m_up_to_130() {
    let Some(g) = common::gpu() else { return };
    let b = make(Kind::Sym(Granularity::Row), 72, 96, 2);
    for m in 1..=130 {
        let a = make(Kind::Aff(IntType::U8, Granularity::Row), m, 96, m as u64);
        compare_all_outputs(&g, &a, &b, &format!("M = {m}"));
    }
}

#[test]
fn n_and_k_around_tiles_and_primes() {
    let Some(g) = common::gpu() else { return };
    let ks = [1, 3, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 191, 257, 1009];
    let ns = [1, 2, 7, 127, 128, 129, 255, 256, 257, 521];
    for &k in &ks {
        for &n in &ns {
            for m in [1, 17, 129] {
                let a = make(Kind::Sym(Granularity::Row), m, k, (k * 7 + m) as u64);
                let b = make(Kind::Aff(IntType::I8, Granularity::Row), n, k, (n * 3 + k) as u64);
                let (da, db) = (DevOp::upload(&g, &a), DevOp::upload(&g, &b));
                let what = format!("{m}x{n}x{k}");
                compare::<i32>(&g, &a.operand(), &b.operand(), &da.operand(), &db.operand(), &what);
                compare::<bf16>(&g, &a.operand(), &b.operand(), &da.operand(), &db.operand(), &what);
            }
        }
    }
}

#[test]
fn persistent_scheduler_tile_counts() {
    let Some(g) = common::gpu() else { return };
    // More tiles than SMs (256 tiles of 128x256), a few, exactly one, and ragged edges.
    for (m, n, k) in [(2048, 4096, 256), (256, 512, 384), (100, 100, 128), (129, 257, 4096)] {
        let a = make(Kind::Aff(IntType::U8, Granularity::Row), m, k, 3);
        let b = make(Kind::Sym(Granularity::Row), n, k, 4);
        let (da, db) = (DevOp::upload(&g, &a), DevOp::upload(&g, &b));
        let what = format!("{m}x{n}x{k}");
        compare::<i32>(&g, &a.operand(), &b.operand(), &da.operand(), &db.operand(), &what);
        compare::<bf16>(&g, &a.operand(), &b.operand(), &da.operand(), &db.operand(), &what);
    }
}

/// Pinned kernel configurations against the CPU reference: no bias, and an f32 and a bf16
/// bias for float outputs (i32 output takes no bias).
fn compare_pinned<O: DeviceGemmOutput + PartialEq>(
    g: &Gpu,
    ha: &HostOperand,
    hb: &HostOperand,
    da: &DeviceOperand,
    db: &DeviceOperand,
    kernels: &[cuda::GemmKernel],
    what: &str,
) {
    let (m, n) = (ha.meta.rows, hb.meta.rows);
    let bs = biases(g, n);
    let cases = [
        (None, None),
        (Some(Bias::F32(&bs.b32)), Some(DeviceBias::F32(bs.d32.as_view()))),
        (Some(Bias::BF16(&bs.bb)), Some(DeviceBias::BF16(bs.db.as_view()))),
    ];
    let cases = if O::TYPE == OutType::I32 {
        &cases[..1]
    } else {
        &cases[..]
    };
    for (hbias, dbias) in cases {
        let want = cpu::gemm::<O>(ha, hb, *hbias);
        for &kernel in kernels {
            // Poisoned output (0xA5 bytes): an element the kernel skips cannot pass as written.
            let mut bytes = g
                .stream
                .clone_htod(&vec![0xA5u8; m * n * std::mem::size_of::<O>()])
                .unwrap();
            // SAFETY: the buffer holds exactly m · n values of O, and any bit pattern is a
            // valid i32 / f32 / f16 / bf16.
            let mut out = unsafe { bytes.transmute_mut::<O>(m * n) }.unwrap();
            let got = cuda::gemm_into_kernel(&g.stream, da, db, dbias.as_ref(), &mut out, kernel);
            match (&want, got) {
                (Ok(w), Ok(())) => assert!(
                    g.stream.clone_dtoh(&out).unwrap() == *w,
                    "{what} {kernel} out {:?} bias {}: GPU and CPU differ",
                    O::TYPE,
                    hbias.is_some()
                ),
                // What the contract leaves out (i32 output of a MinOffset A): declined by
                // every kernel too, never computed.
                (Err(Error::Unsupported(_)), Err(Error::Unsupported(_))) => {}
                (w, d) => panic!(
                    "{what} {kernel} out {:?}: CPU {:?} vs GPU {d:?}",
                    O::TYPE,
                    w.as_ref().err()
                ),
            }
        }
    }
}

/// Every kernel configuration the device runs, pinned (not through the dispatcher's
/// thresholds), with every epilogue path (general; whole tiles with and without zero points
/// and the MinOffset term), on shapes each configuration accepts: ragged M (an odd number of 128-row
/// tiles leaves the multicast kernel's last pair half outside M; M = 200 puts one consumer
/// warpgroup of the last row band on the fast epilogue and the other on the general one), N
/// and K tails, and N = 384 (the multicast kernel's second B half of the last column lies
/// wholly beyond N).
#[test]
fn every_kernel_configuration() {
    let Some(g) = common::gpu() else { return };
    let info = cuda::DispatchInfo::for_device(&g.ctx, true).unwrap();
    let cc = info.cc;
    let shapes = [
        (300, 500, 256),
        (200, 512, 256),
        (384, 384, 512),
        (129, 257, 4096),
        (1, 1000, 2048),
        (64, 256, 16),
    ];
    for (m, n, k) in shapes {
        let shape = qkernels::gemm::GemmShape { m, n, k };
        let mut kernels = Vec::new();
        for kernel in cuda::GemmKernel::all() {
            match cuda::check_kernel(info, shape, kernel) {
                Ok(()) => kernels.push(kernel),
                // Only the wgmma kernels may be declined, and only off Hopper.
                Err(Error::Unsupported(_)) if kernel.wgmma() && cc.0 != 9 => {}
                Err(e) => panic!("{m}x{n}x{k} {kernel}: {e}"),
            }
        }
        let all = cuda::GemmKernel::all();
        let expected = if cc.0 == 9 {
            all.len()
        } else {
            all.into_iter().filter(|k| !k.wgmma()).count()
        };
        assert_eq!(kernels.len(), expected, "{m}x{n}x{k}: configurations run");
        // Affine and MinOffset activations take the epilogues with zero-point corrections (and
        // the MinOffset term); Symmetric ones those without, in every output type.
        let b = make(Kind::Sym(Granularity::Row), n, k, 22);
        let db = DevOp::upload(&g, &b);
        for ka in [
            Kind::Aff(IntType::U8, Granularity::Row),
            Kind::MinOff(Granularity::Row),
            Kind::Sym(Granularity::Row),
        ] {
            let a = make(ka, m, k, 21);
            let da = DevOp::upload(&g, &a);
            let what = format!("{ka:?} {m}x{n}x{k}");
            let (ha, hb, dao, dbo) = (a.operand(), b.operand(), da.operand(), db.operand());
            compare_pinned::<i32>(&g, &ha, &hb, &dao, &dbo, &kernels, &what);
            compare_pinned::<bf16>(&g, &ha, &hb, &dao, &dbo, &kernels, &what);
            if matches!(ka, Kind::Sym(_)) {
                compare_pinned::<f32>(&g, &ha, &hb, &dao, &dbo, &kernels, &what);
                compare_pinned::<f16>(&g, &ha, &hb, &dao, &dbo, &kernels, &what);
            }
        }
    }
}

/// The decode kernel, pinned: tokens within one block row and beyond (M = 9, 17, 40 take
/// two to five), weight rows around its 16- and 32-row blocks, K below one 64-byte chunk,
/// between chunks and long (each warp's ring wraps many times), all four operand type
/// pairs (u8 activations and u8 weights select the mma's types), zero points and MinOffset,
/// every output type; the int32 extremes at the largest K it takes (all seven sign and
/// zero-point cases); and what it declines.
#[test]
fn decode_kernels() {
    let Some(g) = common::gpu() else { return };
    let kernels = [(8, 16), (16, 32)].map(|tile| cuda::GemmKernel::Sm80Decode { tile });
    let info = cuda::DispatchInfo::for_device(&g.ctx, true).unwrap();
    let cases = [
        (1, 1, 16),
        (1, 17, 48),
        (5, 33, 80),
        (8, 16, 64),
        (9, 100, 1040),
        (16, 31, 4112),
        (17, 40, 208),
        (40, 7, 96),
        (3, 1000, 2048),
    ];
    let pairs = [
        (Kind::Sym(Granularity::Row), Kind::Sym(Granularity::Row)),
        (
            Kind::Aff(IntType::U8, Granularity::Row),
            Kind::Aff(IntType::I8, Granularity::Row),
        ),
        (Kind::MinOff(Granularity::Tensor), Kind::Raw(IntType::U8, false)),
        (
            Kind::Raw(IntType::I8, false),
            Kind::Aff(IntType::U8, Granularity::Tensor),
        ),
    ];
    for (m, n, k) in cases {
        let shape = qkernels::gemm::GemmShape { m, n, k };
        for kernel in kernels {
            cuda::check_kernel(info, shape, kernel).unwrap_or_else(|e| panic!("{m}x{n}x{k} {kernel}: {e}"));
        }
        for (i, &(ka, kb)) in pairs.iter().enumerate() {
            let a = make(ka, m, k, 41 + i as u64);
            let b = make(kb, n, k, 51 + i as u64);
            let (da, db) = (DevOp::upload(&g, &a), DevOp::upload(&g, &b));
            let what = format!("{ka:?} x {kb:?} {m}x{n}x{k}");
            let (ha, hb, dao, dbo) = (a.operand(), b.operand(), da.operand(), db.operand());
            compare_pinned::<i32>(&g, &ha, &hb, &dao, &dbo, &kernels, &what);
            compare_pinned::<bf16>(&g, &ha, &hb, &dao, &dbo, &kernels, &what);
            compare_pinned::<f32>(&g, &ha, &hb, &dao, &dbo, &kernels, &what);
            compare_pinned::<f16>(&g, &ha, &hb, &dao, &dbo, &kernels, &what);
        }
    }
    // The int32 extremes, at the K the decode kernel takes (multiples of 16).
    for (a, b, what, _) in int32_extremes() {
        let HostOp::Raw(ra) = &a else { unreachable!() };
        if !ra.cols.is_multiple_of(16) {
            continue;
        }
        let (da, db) = (DevOp::upload(&g, &a), DevOp::upload(&g, &b));
        let (ha, hb, dao, dbo) = (a.operand(), b.operand(), da.operand(), db.operand());
        compare_pinned::<i32>(&g, &ha, &hb, &dao, &dbo, &kernels, &what);
    }

    // Declined, never computed: K % 16 != 0, and operands off 16-byte alignment.
    let a = make(Kind::Sym(Granularity::Row), 4, 40, 1);
    let b = make(Kind::Sym(Granularity::Row), 8, 40, 2);
    let (da, db) = (DevOp::upload(&g, &a), DevOp::upload(&g, &b));
    let mut y = g.stream.alloc_zeros::<i32>(32).unwrap();
    for kernel in kernels {
        let r = cuda::gemm_into_kernel(&g.stream, &da.operand(), &db.operand(), None, &mut y, kernel);
        assert!(matches!(r, Err(Error::Unsupported(_))), "K = 40 {kernel}: {r:?}");
    }
    let a = make(Kind::Sym(Granularity::Row), 4, 64, 1);
    let b = make(Kind::Sym(Granularity::Row), 8, 64, 2);
    let HostOp::Q(qa) = &a else { unreachable!() };
    let mut big = vec![0u8; 3 + qa.data.len()];
    big[3..].copy_from_slice(&qa.data);
    let dbig = g.stream.clone_htod(&big).unwrap();
    let (da, db) = (DevOp::upload(&g, &a), DevOp::upload(&g, &b));
    let oa = da.operand();
    let shifted = at_offset(&dbig, 3, &oa);
    for kernel in kernels {
        let r = cuda::gemm_into_kernel(&g.stream, &shifted, &db.operand(), None, &mut y, kernel);
        assert!(matches!(r, Err(Error::Unsupported(_))), "unaligned {kernel}: {r:?}");
    }
}

#[test]
fn split_k_cluster_sizes() {
    let Some(g) = common::gpu() else { return };
    let info = cuda::DispatchInfo::for_device(&g.ctx, true).unwrap();
    // (M, N, K, cluster size): at most 7 tiles of 64x256, so K alone limits the split on any
    // Hopper part (≥ 114 SMs); ragged M, N and K tails; uneven K shares (9 tiles over 2);
    // and one shape with more tiles than SMs.
    let cases = [
        (1, 256, 16, 1),
        (64, 300, 1040, 2),
        (37, 1000, 2000, 4),
        (3, 520, 4000, 4),
        (1, 1792, 8192, 4),
        (50, 40_000, 256, 1),
    ];
    for (m, n, k, split) in cases {
        if info.cc.0 == 9 {
            let shape = qkernels::gemm::GemmShape { m, n, k };
            // The split does not depend on the output type (both are compared below).
            for out in [OutType::I32, OutType::BF16] {
                assert_eq!(
                    cuda::choose_kernel(info, shape, out, GemmPath::Sm90).unwrap(),
                    cuda::GemmKernel::Sm90SplitK { split },
                    "{m}x{n}x{k} {out:?}"
                );
            }
        }
        for (i, ka) in [Kind::Sym(Granularity::Row), Kind::Aff(IntType::U8, Granularity::Row)]
            .into_iter()
            .enumerate()
        {
            let a = make(ka, m, k, 7 + i as u64);
            let b = make(Kind::Sym(Granularity::Row), n, k, 8);
            let (da, db) = (DevOp::upload(&g, &a), DevOp::upload(&g, &b));
            let what = format!("{ka:?} {m}x{n}x{k}");
            compare::<i32>(&g, &a.operand(), &b.operand(), &da.operand(), &db.operand(), &what);
            compare::<bf16>(&g, &a.operand(), &b.operand(), &da.operand(), &db.operand(), &what);
        }
    }
}

/// The ping-pong kernels with several tiles per CTA, so that the two consumer warpgroups
/// take turns: 2 to ~6 tiles per CTA (an odd count gives the first consumer one more), each
/// with a number of K tiles that a consumer skipping the other's tile advances the 5-stage
/// ring by in a different way (1, 7, 5, 6, 9, 13 K tiles: every remainder and both round
/// parities; one K tile is where a single arrival on the turn barrier could hang); an odd
/// number of 64-row tile rows (the multicast pair's last tile lies beyond M) with one and
/// with thirteen K tiles; ragged M, N and K tails.
#[test]
fn pingpong_turns() {
    let Some(g) = common::gpu() else { return };
    let info = cuda::DispatchInfo::for_device(&g.ctx, true).unwrap();
    if info.cc.0 != 9 {
        // every_kernel_configuration checks that other devices decline these configurations.
        println!(
            "pingpong_turns: compute capability {}.{}, not Hopper",
            info.cc.0, info.cc.1
        );
        return;
    }
    let kernels: Vec<_> = cuda::GemmKernel::all()
        .into_iter()
        .filter(|k| matches!(k, cuda::GemmKernel::Sm90PingPong { .. }))
        .collect();
    let sms = info.sms;
    let shapes = [
        (128 * sms + 64, 256, 16),
        (128 * sms, 256, 880),
        (64 * sms + 200, 520, 640),
        (192 * sms - 37, 260, 656),
        (128 * sms - 5, 200, 1152),
        (128 * sms + 182, 300, 1648),
    ];
    for (m, n, k) in shapes {
        let shape = qkernels::gemm::GemmShape { m, n, k };
        for &kernel in &kernels {
            cuda::check_kernel(info, shape, kernel).unwrap_or_else(|e| panic!("{m}x{n}x{k} {kernel}: {e}"));
        }
        let b = make(Kind::Sym(Granularity::Row), n, k, 31);
        let db = DevOp::upload(&g, &b);
        for ka in [Kind::Aff(IntType::U8, Granularity::Row), Kind::Sym(Granularity::Row)] {
            let a = make(ka, m, k, 32);
            let da = DevOp::upload(&g, &a);
            let what = format!("{ka:?} {m}x{n}x{k}");
            let (ha, hb, dao, dbo) = (a.operand(), b.operand(), da.operand(), db.operand());
            if matches!(ka, Kind::Aff(..)) {
                compare_pinned::<i32>(&g, &ha, &hb, &dao, &dbo, &kernels, &what);
            }
            compare_pinned::<bf16>(&g, &ha, &hb, &dao, &dbo, &kernels, &what);
        }
    }
}

#[test]
fn a_large_shape() {
    let Some(g) = common::gpu() else { return };
    let a = make(Kind::Sym(Granularity::Row), 1024, 2048, 1);
    let b = make(Kind::Sym(Granularity::Row), 1536, 2048, 2);
    compare_all_outputs(&g, &a, &b, "1024x1536x2048");
}

/// An operand whose data sits at `offset` bytes inside a larger allocation.
fn at_offset<'a>(big: &'a CudaSlice<u8>, offset: usize, d: &'a DeviceOperand<'a>) -> DeviceOperand<'a> {
    let len = d.meta.rows * d.meta.cols;
    DeviceOperand::new(
        d.meta,
        big.slice(offset..offset + len),
        d.scales.as_ref().map(|v| v.slice(..)),
        d.zero_points.as_ref().map(|v| v.slice(..)),
        d.offsets.as_ref().map(|v| v.slice(..)),
        d.row_sums.slice(..),
    )
    .unwrap()
}

#[test]
fn operands_at_offsets_inside_larger_allocations() {
    let Some(g) = common::gpu() else { return };
    for (k, off) in [(64, 16), (64, 3), (96, 1), (33, 5)] {
        let a = make(Kind::Aff(IntType::U8, Granularity::Row), 40, k, 1);
        let b = make(Kind::Sym(Granularity::Row), 50, k, 2);
        let (HostOp::Q(qa), HostOp::Q(qb)) = (&a, &b) else {
            unreachable!()
        };
        let mut big_a = vec![0xA5u8; off + qa.data.len() + 7];
        big_a[off..off + qa.data.len()].copy_from_slice(&qa.data);
        let mut big_b = vec![0x5Au8; off + qb.data.len() + 7];
        big_b[off..off + qb.data.len()].copy_from_slice(&qb.data);
        let (dba, dbb) = (
            g.stream.clone_htod(&big_a).unwrap(),
            g.stream.clone_htod(&big_b).unwrap(),
        );
        let (da, db) = (DevOp::upload(&g, &a), DevOp::upload(&g, &b));
        let (oa, ob) = (da.operand(), db.operand());
        let (va, vb) = (at_offset(&dba, off, &oa), at_offset(&dbb, off, &ob));
        let what = format!("K {k} offset {off}");
        compare::<i32>(&g, &a.operand(), &b.operand(), &va, &vb, &what);
        compare::<f16>(&g, &a.operand(), &b.operand(), &va, &vb, &what);
    }
}

/// bf16 and i32 outputs at offsets inside a larger allocation, through every configuration
/// that takes the shape and the dispatcher: 16-byte aligned rows (the sm_90a kernels' staged
/// stores), rows only pair-aligned (paired stores on the General path for bf16, the unstaged
/// paired stores for i32) and element-aligned (single stores); the elements around the
/// output stay as they were.
#[test]
fn outputs_at_offsets_inside_larger_allocations() {
    let Some(g) = common::gpu() else { return };
    outputs_at_offsets(&g, bf16::from_bits(0xA5A5), &[8, 2, 1]);
    outputs_at_offsets(&g, 0xA5A5_A5A5u32 as i32, &[4, 2, 1]);
}

/// `outputs_at_offsets_inside_larger_allocations` for one output type: the output at each
/// of `offsets` elements into an allocation filled with `poison`, compared bit for bit.
fn outputs_at_offsets<O: DeviceGemmOutput + bytemuck::Pod>(g: &Gpu, poison: O, offsets: &[usize]) {
    let info = cuda::DispatchInfo::for_device(&g.ctx, true).unwrap();
    let (m, n, k) = (256, 512, 256);
    let shape = qkernels::gemm::GemmShape { m, n, k };
    let kernels: Vec<_> = cuda::GemmKernel::all()
        .into_iter()
        .filter(|&kr| cuda::check_kernel(info, shape, kr).is_ok())
        .collect();
    let a = make(Kind::Aff(IntType::U8, Granularity::Row), m, k, 41);
    let b = make(Kind::Sym(Granularity::Row), n, k, 42);
    let (da, db) = (DevOp::upload(g, &a), DevOp::upload(g, &b));
    let (ha, hb, dao, dbo) = (a.operand(), b.operand(), da.operand(), db.operand());
    let sym = make(Kind::Sym(Granularity::Row), m, k, 43);
    let dsym = DevOp::upload(g, &sym);
    let (hs, ds) = (sym.operand(), dsym.operand());
    let bits = |v: &[O]| bytemuck::cast_slice::<O, u8>(v).to_vec();
    let poisoned = |v: &[O]| bits(v) == bits(&vec![poison; v.len()]);
    for (what, ha, da) in [("affine A", &ha, &dao), ("symmetric A", &hs, &ds)] {
        let want = cpu::gemm::<O>(ha, &hb, None).unwrap();
        let what = format!("{:?} out, {what}", O::TYPE);
        for &offset in offsets {
            let choices = kernels.iter().map(|&kr| Some(kr)).chain([None]);
            for kernel in choices {
                let mut big = g.stream.clone_htod(&vec![poison; offset + m * n + 8]).unwrap();
                let mut out = big.slice_mut(offset..offset + m * n);
                match kernel {
                    Some(kr) => cuda::gemm_into_kernel(&g.stream, da, &dbo, None, &mut out, kr),
                    None => cuda::gemm_into(&g.stream, da, &dbo, None, &mut out, GemmPath::Auto),
                }
                .unwrap_or_else(|e| panic!("{what} offset {offset} {kernel:?}: {e}"));
                let got = g.stream.clone_dtoh(&big).unwrap();
                assert!(
                    bits(&got[offset..offset + m * n]) == bits(&want),
                    "{what} offset {offset} {kernel:?}: GPU and CPU differ"
                );
                assert!(
                    poisoned(&got[..offset]) && poisoned(&got[offset + m * n..]),
                    "{what} offset {offset} {kernel:?}: an element outside the output changed"
                );
            }
        }
    }
}

#[test]
fn int32_extremes_at_the_largest_k() {
    let Some(g) = common::gpu() else { return };
    for (a, b, what, want0) in int32_extremes() {
        let (da, db) = (DevOp::upload(&g, &a), DevOp::upload(&g, &b));
        compare::<i32>(&g, &a.operand(), &b.operand(), &da.operand(), &db.operand(), &what);
        let got = cuda::gemm::<i32>(&g.stream, &da.operand(), &db.operand(), None, GemmPath::Auto).unwrap();
        assert_eq!(g.stream.clone_dtoh(&got).unwrap()[0] as i64, want0, "{what}");
    }
}

/// Operands whose int32 sums reach the contract's bound, with the exact first output: i8·i8
/// at ±128 / 127 for the largest K (131071) and the largest multiple of 16 below it (which the
/// wgmma path takes, split across a cluster of 4 for these few rows), and u8 activations with
/// a zero point against i8 weights at the largest u8·i8 K (65793) and 65792.
fn int32_extremes() -> Vec<(HostOp, HostOp, String, i64)> {
    let i8s = [131_071, 131_056]
        .into_iter()
        .flat_map(|k| [(k, -128i8, -128i8), (k, 127, 127), (k, -128, 127)])
        .map(|(k, va, vb)| {
            let a = HostOp::Raw(RawMatrix::new(IntType::I8, 3, k, vec![va as u8; 3 * k], None).unwrap());
            let b = HostOp::Raw(RawMatrix::new(IntType::I8, 5, k, vec![vb as u8; 5 * k], None).unwrap());
            (
                a,
                b,
                format!("i8 extremes K {k} {va} x {vb}"),
                k as i64 * va as i64 * vb as i64,
            )
        });
    let u8s = [65_793, 65_792]
        .into_iter()
        .flat_map(|k| {
            [
                (k, 255u8, 0, -128i8),
                (k, 0, 255, -128),
                (k, 255, 0, 127),
                (k, 0, 255, 127),
            ]
        })
        .map(|(k, va, za, vb)| {
            let a = HostOp::Raw(RawMatrix::new(IntType::U8, 2, k, vec![va; 2 * k], Some(vec![za])).unwrap());
            let b = HostOp::Raw(RawMatrix::new(IntType::I8, 3, k, vec![vb as u8; 3 * k], None).unwrap());
            let what = format!("u8 x i8 extremes K {k} ({va} - {za}) x {vb}");
            (a, b, what, k as i64 * (va as i64 - za as i64) * vb as i64)
        });
    i8s.chain(u8s).collect()
}

#[test]
fn repeated_runs_give_the_same_bits() {
    let Some(g) = common::gpu() else { return };
    let a = make(Kind::Aff(IntType::U8, Granularity::Row), 300, 512, 1);
    let b = make(Kind::Sym(Granularity::Row), 200, 512, 2);
    let (da, db) = (DevOp::upload(&g, &a), DevOp::upload(&g, &b));
    let run = || {
        let y = cuda::gemm::<f32>(&g.stream, &da.operand(), &db.operand(), None, GemmPath::Auto).unwrap();
        g.stream
            .clone_dtoh(&y)
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
    };
    let first = run();
    for _ in 0..5 {
        assert_eq!(run(), first);
    }
}

#[test]
fn gpu_gemm_errors_are_typed() {
    let Some(g) = common::gpu() else { return };
    let a = make(Kind::Sym(Granularity::Row), 4, 16, 1);
    let b = make(Kind::Sym(Granularity::Row), 3, 16, 2);
    let (da, db) = (DevOp::upload(&g, &a), DevOp::upload(&g, &b));
    let (oa, ob) = (da.operand(), db.operand());
    let mut short = g.stream.alloc_zeros::<f32>(11).unwrap();
    assert!(matches!(
        cuda::gemm_into(&g.stream, &oa, &ob, None, &mut short, GemmPath::Auto),
        Err(Error::Shape(_))
    ));
    // The wgmma path: the right answer on Hopper, Unsupported anywhere else.
    let sm90 = cuda::gemm::<f32>(&g.stream, &oa, &ob, None, GemmPath::Sm90);
    if g.ctx.compute_capability().unwrap().0 == 9 {
        let want = cpu::gemm::<f32>(&a.operand(), &b.operand(), None).unwrap();
        assert_eq!(g.stream.clone_dtoh(&sm90.unwrap()).unwrap(), want);
    } else {
        assert!(matches!(sm90, Err(Error::Unsupported(_))));
    }
    let b8 = make(Kind::Sym(Granularity::Row), 3, 8, 2);
    let db8 = DevOp::upload(&g, &b8);
    assert!(matches!(
        cuda::gemm::<f32>(&g.stream, &oa, &db8.operand(), None, GemmPath::Auto),
        Err(Error::Shape(_))
    ));
    // A parameter buffer of the wrong length is caught when the operand is built.
    let meta = OperandMeta {
        scale: ParamLayout::PerRow,
        ..oa.meta
    };
    let one = g.stream.alloc_zeros::<f32>(1).unwrap();
    let bad = DeviceOperand::new(
        meta,
        oa.data.slice(..),
        Some(one.as_view()),
        None,
        None,
        oa.row_sums.slice(..),
    );
    assert!(matches!(bad, Err(Error::Shape(_))));
}

/// The requantizing GEMM (8-bit output) against the CPU reference, bit for bit (data,
/// parameters, row sums, non-finite count): every output scheme, every configuration the
/// device runs pinned and the dispatcher's paths, with and without a bias; and scales that
/// overflow the f32 epilogue (±Inf, NaN through the MinOffset term), which are counted.
#[test]
fn requantized_output() {
    let Some(g) = common::gpu() else { return };
    let info = cuda::DispatchInfo::for_device(&g.ctx, true).unwrap();
    let outputs = common::requant_outputs();
    for (m, n, k, overflow) in [
        (200, 512, 256, false),
        (129, 257, 4096, false),
        (5, 300, 64, false),
        (40, 96, 128, true),
    ] {
        let shape = qkernels::gemm::GemmShape { m, n, k };
        let kernels: Vec<_> = cuda::GemmKernel::all()
            .into_iter()
            .filter(|&kr| cuda::check_kernel(info, shape, kr).is_ok())
            .collect();
        for ka in [
            Kind::Sym(Granularity::Row),
            Kind::Aff(IntType::U8, Granularity::Row),
            Kind::MinOff(Granularity::Row),
        ] {
            let mut a = make(ka, m, k, 31);
            let mut b = make(Kind::Sym(Granularity::Row), n, k, 32);
            if let (true, HostOp::Q(qa), HostOp::Q(qb)) = (overflow, &mut a, &mut b) {
                qa.scales.iter_mut().for_each(|s| *s = 3e38);
                if let Some(o) = qa.offsets.as_mut() {
                    o[0] = -3e38;
                }
                qb.scales.iter_mut().for_each(|s| *s = 1e20);
            }
            let (da, db) = (DevOp::upload(&g, &a), DevOp::upload(&g, &b));
            let (ha, hb, dao, dbo) = (a.operand(), b.operand(), da.operand(), db.operand());
            let bs = biases(&g, n);
            for (hbias, dbias) in [
                (None, None),
                (Some(Bias::F32(&bs.b32)), Some(DeviceBias::F32(bs.d32.as_view()))),
            ] {
                for (spec, params) in &outputs {
                    let want = cpu::gemm_quantized(&ha, &hb, hbias, *spec, params, true).unwrap();
                    assert_eq!(want.nonfinite > 0, overflow);
                    let what = format!("{ka:?} {m}x{n}x{k} -> {spec:?} bias {}", hbias.is_some());
                    let mut out = DeviceQuantized::alloc(&g.stream, *spec, m, n).unwrap();
                    cuda::gemm_quantized_into(&g.stream, &dao, &dbo, dbias.as_ref(), params, &mut out, GemmPath::Auto)
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert!(
                        out.to_host(&g.stream, true).unwrap() == want,
                        "{what} auto: GPU and CPU differ"
                    );
                    for &kernel in &kernels {
                        let mut out = DeviceQuantized::alloc(&g.stream, *spec, m, n).unwrap();
                        cuda::gemm_quantized_into_kernel(
                            &g.stream,
                            &dao,
                            &dbo,
                            dbias.as_ref(),
                            params,
                            &mut out,
                            kernel,
                        )
                        .unwrap_or_else(|e| panic!("{what} {kernel}: {e}"));
                        assert!(
                            out.to_host(&g.stream, true).unwrap() == want,
                            "{what} {kernel}: GPU and CPU differ"
                        );
                    }
                }
            }
        }
    }
}

/// One requantized output buffer through a sequence of calls, each compared with the CPU
/// reference as a fresh buffer would be. The launch after the GEMM writes the parameters and
/// publishes the non-finite count that the GEMM added into a scratch word (no copies or
/// memsets before it), so: one call's count must not leak into the next, the parameters must
/// be the last call's, a quantize call into the same buffer (whose kernels share the scratch
/// words) must count alone and leave them clean, and empty shapes still finish.
#[test]
fn requantized_output_reuses_its_buffers() {
    let Some(g) = common::gpu() else { return };
    let (m, n, k) = (40, 96, 128);
    let spec = QuantSpec::affine(IntType::U8, Granularity::Tensor).unwrap();
    let params = |s: f32, z: i32| qkernels::QuantParams {
        scales: vec![s],
        zero_points: Some(vec![z]),
        offsets: None,
    };
    let operands = |m, n, seed| {
        (
            make(Kind::Sym(Granularity::Row), m, k, seed),
            make(Kind::Sym(Granularity::Row), n, k, seed + 1),
        )
    };
    let finite = operands(m, n, 41);
    let mut over = operands(m, n, 41);
    if let (HostOp::Q(qa), HostOp::Q(qb)) = (&mut over.0, &mut over.1) {
        qa.scales.iter_mut().for_each(|s| *s = 3e38);
        qb.scales.iter_mut().for_each(|s| *s = 1e20);
    }
    let mut out = DeviceQuantized::alloc(&g.stream, spec, m, n).unwrap();
    let gemm = |(ha, hb): &(HostOp, HostOp), p: &qkernels::QuantParams, out: &mut DeviceQuantized, what: &str| {
        let want = cpu::gemm_quantized(&ha.operand(), &hb.operand(), None, spec, p, true).unwrap();
        let (da, db) = (DevOp::upload(&g, ha), DevOp::upload(&g, hb));
        cuda::gemm_quantized_into(&g.stream, &da.operand(), &db.operand(), None, p, out, GemmPath::Auto)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let got = out.to_host(&g.stream, true).unwrap();
        assert_eq!(got.nonfinite, want.nonfinite, "{what}: non-finite count");
        assert!(got == want, "{what}: GPU and CPU differ");
        want.nonfinite
    };
    assert!(gemm(&over, &params(0.41, 131), &mut out, "overflowing") > 0);
    assert_eq!(gemm(&finite, &params(0.2, 7), &mut out, "finite after overflowing"), 0);
    assert!(gemm(&over, &params(0.2, 7), &mut out, "overflowing again") > 0);

    // A dynamic quantize call into the same buffer, with three NaNs: its count alone.
    let mut x = qkernels::bench::random_f32(m * n, 43, 3.0);
    for i in [0, 777, m * n - 1] {
        x[i] = f32::NAN;
    }
    let want = cpu::quantize(&x, m, n, spec, None, true).unwrap();
    assert_eq!(want.nonfinite, 3);
    let dx = g.stream.clone_htod(&x).unwrap();
    cuda::quantize_into(&g.stream, &dx, m, n, None, &mut out).unwrap();
    assert!(
        out.to_host(&g.stream, true).unwrap() == want,
        "quantize after the GEMMs"
    );
    assert_eq!(gemm(&finite, &params(0.41, 131), &mut out, "finite after quantize"), 0);

    // Empty outputs (M = 0, N = 0): no GEMM launch, but the parameters and count finish.
    for (m, n) in [(0, n), (m, 0)] {
        let empty = operands(m, n, 44);
        let mut out = DeviceQuantized::alloc(&g.stream, spec, m, n).unwrap();
        gemm(&empty, &params(0.3, 9), &mut out, &format!("{m}x{n}"));
    }
}
