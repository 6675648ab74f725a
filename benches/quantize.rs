//! Criterion benchmarks of quantization: the CPU reference always, the GPU kernels when a
//! device is present (timed with CUDA events through `iter_custom`). The headline
//! figures (ratios to copy bandwidth) come from `qk bench quant`; this bench tracks changes.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use qkernels::bench::{elapsed, random_f32};
use qkernels::cuda::{self, DeviceQuantized, Gpu};
use qkernels::{Granularity, IntType, QuantSpec, bf16, cpu};

fn input(n: usize) -> Vec<bf16> {
    random_f32(n, 3, 4.0).into_iter().map(bf16::from_f32).collect()
}

fn specs() -> [(&'static str, QuantSpec); 3] {
    [
        ("symmetric-row", QuantSpec::symmetric(Granularity::Row).unwrap()),
        (
            "affine-u8-group128",
            QuantSpec::affine(IntType::U8, Granularity::Group(128)).unwrap(),
        ),
        ("symmetric-tensor", QuantSpec::symmetric(Granularity::Tensor).unwrap()),
    ]
}

fn cpu_reference(c: &mut Criterion) {
    let (rows, cols) = (256, 4096);
    let x = input(rows * cols);
    let mut group = c.benchmark_group("cpu-quantize-bf16");
    group.throughput(Throughput::Bytes((rows * cols * 3) as u64));
    for (name, spec) in specs() {
        let mut out = cpu::HostQuantized::zeroed(spec, rows, cols).unwrap();
        group.bench_function(BenchmarkId::new(name, format!("{rows}x{cols}")), |b| {
            b.iter(|| cpu::quantize_into(&x, rows, cols, None, &mut out).unwrap())
        });
    }
    group.finish();
}

fn gpu_kernels(c: &mut Criterion) {
    let g = match Gpu::new(0) {
        Ok(g) => g,
        Err(e) => {
            println!("SKIPPED gpu-quantize benches: {e}");
            return;
        }
    };
    let (rows, cols) = (16384, 4096);
    let x = g.stream.clone_htod(&input(rows * cols)).unwrap();
    let mut group = c.benchmark_group("gpu-quantize-bf16");
    group.throughput(Throughput::Bytes((rows * cols * 3 + rows * 4) as u64));
    for (name, spec) in specs() {
        let mut out = DeviceQuantized::alloc(&g.stream, spec, rows, cols).unwrap();
        group.bench_function(BenchmarkId::new(name, format!("{rows}x{cols}")), |b| {
            b.iter_custom(|iters| {
                elapsed(&g, iters, || {
                    cuda::quantize_into(&g.stream, &x, rows, cols, None, &mut out)
                })
                .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = cpu_reference, gpu_kernels
}
criterion_main!(benches);
