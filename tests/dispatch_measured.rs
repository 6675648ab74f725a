//! The dispatcher against measured sweeps: for every shape of a committed
//! `qk bench gemm --all-kernels` run (i32 out, every configuration timed in one process on
//! one card), the configuration `choose_kernel` picks must be close to the fastest one
//! measured. A change to the dispatcher's rules that loses time on real measurements fails
//! here, on any machine; a rule that picks a configuration the sweep did not time fails
//! too (time a newer sweep and list it below).

use std::collections::BTreeMap;

use qkernels::cuda::{DispatchInfo, GemmPath, choose_kernel};
use qkernels::gemm::GemmShape;

/// The newest full sweeps, with the card's SM count (from the run's report): seven of one
/// H200 and one of an H100 80GB (2026-11-27; `qk bench gemm --all-kernels`, each its own
/// process),
/// every candidate of a shape timed in turn, with every configuration there is, decode and
/// ping-pong included. The older sweeps in `benches/results/` (H200 2d24884, H100 6aa0354)
/// predate those configurations.
const SWEEPS: [(&str, usize); 8] = [
    ("2026-11-27-h200-5f3baa1-gemm.json", 132),
    ("2026-11-27-h200-5f3baa1-gemm-2.json", 132),
    ("2026-11-27-h200-dd28e4c-gemm.json", 132),
    ("2026-11-27-h200-dd28e4c-gemm-2.json", 132),
    ("2026-11-27-h200-6536f9a-gemm.json", 132),
    ("2026-11-27-h200-6536f9a-gemm-2.json", 132),
    ("2026-11-27-h200-44ad703-gemm.json", 132),
    ("2026-11-27-h100-44ad703-gemm.json", 132),
];

/// Largest loss of the pick against the fastest configuration on any one shape. Timings of
/// one configuration move by a few percent between runs, so this is not 0.
const MAX_LOSS_PER_SHAPE: f64 = 0.12;
/// Largest loss over the sweep (geometric mean of pick / fastest).
const MAX_LOSS_GEOMEAN: f64 = 0.02;

#[test]
fn the_dispatcher_picks_near_the_fastest_measured_configuration() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results");
    for (file, sms) in SWEEPS {
        let text = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let report: serde_json::Value = serde_json::from_str(&text).unwrap();
        let info = DispatchInfo {
            cc: (9, 0),
            sms,
            aligned16: true,
        };
        let rows = report["rows"].as_array().expect("rows");
        let (mut log_loss, mut shapes, mut worst) = (0.0, 0, (0.0, String::new()));
        for row in rows {
            let dim = |k: &str| row[k].as_u64().expect("M, N, K") as usize;
            let shape = GemmShape {
                m: dim("m"),
                n: dim("n"),
                k: dim("k"),
            };
            let mut times: BTreeMap<String, f64> = serde_json::from_value(row["kernels_i32_us"].clone()).unwrap();
            assert!(!times.is_empty(), "{file}: {shape:?} has no --all-kernels timings");
            // The configuration that was "ours" in that run was timed twice (the main table
            // and the sweep): the faster of the two discounts a transient disturbance (one
            // sweep on the H100 timed every sm90 configuration of 128x6144x4096 at 3x the
            // main table's time).
            let ours = row["kernel"].as_str().expect("kernel").to_string();
            let ours_us = row["ours_i32_us"].as_f64().expect("ours_i32_us");
            times.entry(ours).and_modify(|t| *t = t.min(ours_us)).or_insert(ours_us);
            let pick = choose_kernel(info, shape, GemmPath::Auto).unwrap().to_string();
            let Some(&t) = times.get(&pick) else {
                panic!("{file}: {shape:?}: the dispatcher picks {pick}, which this sweep did not time")
            };
            let best = times.values().copied().fold(f64::INFINITY, f64::min);
            let loss = t / best - 1.0;
            assert!(
                loss <= MAX_LOSS_PER_SHAPE,
                "{file}: {shape:?}: {pick} takes {t:.1} µs, {:.0}% over the fastest ({best:.1} µs)",
                100.0 * loss
            );
            if loss > worst.0 {
                worst = (loss, format!("{shape:?} {pick}"));
            }
            log_loss += (t / best).ln();
            shapes += 1;
        }
        let geomean = (log_loss / shapes as f64).exp() - 1.0;
        println!(
            "{file}: {shapes} shapes, pick / fastest geometric mean +{:.2}%, worst +{:.1}% ({})",
            100.0 * geomean,
            100.0 * worst.0,
            worst.1
        );
        assert!(
            geomean <= MAX_LOSS_GEOMEAN,
            "{file}: the picks lose {:.1}% against the fastest configurations (geometric mean)",
            100.0 * geomean
        );
    }
}
