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

/// A candidate of [`time_interleaved`]: one run of the work to time.
pub type Candidate<'a> = Box<dyn FnMut() -> Result<()> + 'a>;

/// Medians, in microseconds, of candidates timed in turn: `warmup` untimed rounds, then
/// `rounds` rounds that each time every candidate once (CUDA events around the one run).
///
/// Why in turn: timed one after another, candidates meet the card in different states
/// (its clocks settle lower under sustained tensor-core load), and a ratio of two of them
/// measures that drift as well. An H200 timed the same kernel's bf16 out at +2.6% over its
/// i32 out in one run and +19.8% in another, each timed after the other; in turn, every
/// candidate sees the same drift.
///
/// A candidate that fails keeps its error and is not run again; the others go on.
pub fn time_interleaved(g: &Gpu, warmup: usize, rounds: usize, candidates: Vec<Candidate>) -> Vec<Result<f64>> {
    let mut runs: Vec<(Candidate, Result<Vec<f64>>)> = candidates.into_iter().map(|f| (f, Ok(Vec::new()))).collect();
    for round in 0..warmup + rounds.max(1) {
        for (f, times) in &mut runs {
            let Ok(t) = times else { continue };
            match elapsed(g, 1, &mut *f) {
                Ok(d) if round >= warmup => t.push(d.as_secs_f64() * 1e6),
                Ok(_) => {}
                Err(e) => *times = Err(e),
            }
        }
    }
    runs.into_iter().map(|(_, times)| times.map(median)).collect()
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
