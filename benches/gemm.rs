//! Criterion benchmarks of the INT8 GEMM: the CPU reference always; on a GPU our kernel
//! and cuBLASLt INT8 at 4096³ (i8·i8 → i32), timed with CUDA events. The full comparison
//! table (TOPS, ratios, plot) is `qk bench gemm`; this bench tracks changes.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use qkernels::IntType;
use qkernels::bench::{elapsed, random_bytes};
use qkernels::cpu::{self, RawMatrix};
use qkernels::cuda::baseline::LtInt8;
use qkernels::cuda::{self, DeviceRaw, GemmPath, Gpu};

fn cpu_reference(c: &mut Criterion) {
    let (m, n, k) = (64, 1024, 1024);
    let a = RawMatrix::new(IntType::I8, m, k, random_bytes(m * k, 1), None).unwrap();
    let b = RawMatrix::new(IntType::I8, n, k, random_bytes(n * k, 2), None).unwrap();
    let (ao, bo) = (a.operand().unwrap(), b.operand().unwrap());
    let mut y = vec![0i32; m * n];
    let mut g = c.benchmark_group("cpu-gemm-i8");
    g.throughput(Throughput::Elements((2 * m * n * k) as u64));
    g.bench_function("64x1024x1024", |bch| {
        bch.iter(|| cpu::gemm_into(&ao, &bo, None, &mut y).unwrap())
    });
    g.finish();
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
        &RawMatrix::new(IntType::I8, s, s, random_bytes(s * s, 1), None).unwrap(),
    )
    .unwrap();
    let b = DeviceRaw::upload(
        &g.stream,
        &RawMatrix::new(IntType::I8, s, s, random_bytes(s * s, 2), None).unwrap(),
    )
    .unwrap();
    let mut y = g.stream.alloc_zeros::<i32>(s * s).unwrap();
    let mut lt = LtInt8::new(&g.stream, s, s, s, 1).unwrap();
    let mut grp = c.benchmark_group("gpu-gemm-i8-4096");
    grp.throughput(Throughput::Elements((2 * s * s * s) as u64));
    grp.bench_function("qkernels-sm80", |bch| {
        bch.iter_custom(|iters| {
            elapsed(&g, iters, || {
                cuda::gemm_into(&g.stream, &a.operand()?, &b.operand()?, None, &mut y, GemmPath::Sm80)
            })
            .unwrap()
        })
    });
    grp.bench_function("cublaslt", |bch| {
        bch.iter_custom(|iters| elapsed(&g, iters, || lt.run(&g.stream, 0, &a.data, &b.data, &mut y)).unwrap())
    });
    grp.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = cpu_reference, gpu_gemm
}
criterion_main!(benches);
