//! Criterion benchmarks of the INT8 GEMM: the CPU reference always; on a GPU our kernel
//! and cuBLASLt INT8 at 4096³ (i8·i8 → i32), timed with CUDA events. The full comparison
//! table (TOPS, ratios, plot) is `qk bench gemm`; this bench tracks changes.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use cudarc::driver::sys::CUevent_flags;
use qkernels::cpu::{self, RawMatrix};
use qkernels::cuda::baseline::LtInt8;
use qkernels::cuda::{self, DeviceRaw, GemmPath, Gpu};
use qkernels::{IntType, Result};

fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect()
}

fn cpu_reference(c: &mut Criterion) {
    let (m, n, k) = (64, 1024, 1024);
    let a = RawMatrix::new(IntType::I8, m, k, bytes(m * k, 1), None).unwrap();
    let b = RawMatrix::new(IntType::I8, n, k, bytes(n * k, 2), None).unwrap();
    let (ao, bo) = (a.operand().unwrap(), b.operand().unwrap());
    let mut y = vec![0i32; m * n];
    let mut g = c.benchmark_group("cpu-gemm-i8");
    g.throughput(Throughput::Elements((2 * m * n * k) as u64));
    g.bench_function("64x1024x1024", |bch| {
        bch.iter(|| cpu::gemm_into(&ao, &bo, None, &mut y).unwrap())
    });
    g.finish();
}

/// Times `iters` back-to-back runs of `f` with CUDA events.
fn events(g: &Gpu, iters: u64, mut f: impl FnMut() -> Result<()>) -> Duration {
    let start = g.ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).unwrap();
    let end = g.ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).unwrap();
    start.record(&g.stream).unwrap();
    for _ in 0..iters {
        f().unwrap();
    }
    end.record(&g.stream).unwrap();
    end.synchronize().unwrap();
    Duration::from_secs_f64(start.elapsed_ms(&end).unwrap() as f64 / 1e3)
}

fn gpu_gemm(c: &mut Criterion) {
    let g = match Gpu::new(0) {
        Ok(g) => g,
        Err(e) => {
            println!("SKIPPED gpu-gemm benches: {e}");
            return;
        }
    };
    let s = 4096;
    let a = DeviceRaw::upload(
        &g.stream,
        &RawMatrix::new(IntType::I8, s, s, bytes(s * s, 1), None).unwrap(),
    )
    .unwrap();
    let b = DeviceRaw::upload(
        &g.stream,
        &RawMatrix::new(IntType::I8, s, s, bytes(s * s, 2), None).unwrap(),
    )
    .unwrap();
    let mut y = g.stream.alloc_zeros::<i32>(s * s).unwrap();
    let mut lt = LtInt8::new(&g.stream, s, s, s, 1).unwrap();
    let mut grp = c.benchmark_group("gpu-gemm-i8-4096");
    grp.throughput(Throughput::Elements((2 * s * s * s) as u64));
    grp.bench_function("qkernels-sm80", |bch| {
        bch.iter_custom(|iters| {
            events(&g, iters, || {
                cuda::gemm_into(&g.stream, &a.operand()?, &b.operand()?, None, &mut y, GemmPath::Sm80)
            })
        })
    });
    grp.bench_function("cublaslt", |bch| {
        bch.iter_custom(|iters| events(&g, iters, || lt.run(&g.stream, 0, &a.data, &b.data, &mut y)))
    });
    grp.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = cpu_reference, gpu_gemm
}
criterion_main!(benches);
