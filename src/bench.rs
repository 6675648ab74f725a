//! Benchmark support shared by `qk bench`, the criterion benches and the tests:
//! deterministic pseudo-random inputs and CUDA-event timing. Not part of the numeric API.

use std::time::Duration;

use cudarc::driver::sys::CUevent_flags;

use crate::cuda::Gpu;
use crate::error::Result;

/// A xorshift64 generator: the same sequence for the same seed on every machine.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `n` pseudo-random f32 values, uniform in [-range, range).
pub fn random_f32(n: usize, seed: u64, range: f32) -> Vec<f32> {
    let mut g = XorShift::new(seed);
    (0..n)
        .map(|_| ((g.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * range)
        .collect()
}

/// `n` pseudo-random bytes (full range: as i8 or u8 operands).
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut g = XorShift::new(seed);
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        out.extend_from_slice(&g.next().to_le_bytes());
    }
    out.truncate(n);
    out
}

/// Time of `iters` back-to-back runs of `f`, measured with CUDA events on `g`'s stream
/// (for criterion's `iter_custom`).
pub fn elapsed(g: &Gpu, iters: u64, mut f: impl FnMut() -> Result<()>) -> Result<Duration> {
    let start = g.ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
    let end = g.ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
    start.record(&g.stream)?;
    for _ in 0..iters {
        f()?;
    }
    end.record(&g.stream)?;
    end.synchronize()?;
    Ok(Duration::from_secs_f64(start.elapsed_ms(&end)? as f64 / 1e3))
}

/// Median over `iters` timed runs of `f` after `warmup` untimed ones, in microseconds.
pub fn time_us(g: &Gpu, warmup: usize, iters: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..warmup {
        f()?;
    }
    let times = (0..iters.max(1))
        .map(|_| Ok(elapsed(g, 1, &mut f)?.as_secs_f64() * 1e6))
        .collect::<Result<Vec<f64>>>()?;
    Ok(median(times))
}

/// The median of a non-empty sample (the upper one for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Device-to-device copy bandwidth (bytes read + bytes written per second), in GB/s.
pub fn copy_gbps(g: &Gpu) -> Result<f64> {
    let n = 1usize << 28; // 1 GiB of u32, far beyond L2
    let src = g.stream.alloc_zeros::<u32>(n)?;
    let mut dst = g.stream.alloc_zeros::<u32>(n)?;
    let us = time_us(g, 2, 10, || Ok(g.stream.memcpy_dtod(&src, &mut dst)?))?;
    Ok(2.0 * (n * 4) as f64 / us / 1e3)
}
