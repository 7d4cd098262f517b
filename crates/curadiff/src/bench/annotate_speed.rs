//! `curadiff bench --speed annotate`: the cost of Ambient-Omni's annotation, one JSON line:
//! the p(corrupted) curves of N blurred Fashion-MNIST training images (the first N, default
//! 54,000, σ_B = 1) over the default grid (24 log-spaced σ from 0.002 to 80, 1 draw each),
//! then the threshold rule on them. Overrides: `--set n=N`, `--set points=K`,
//! `--set draws=D`.
//!
//! The classifier's weights do not change its cost, so it is trained for one step on 128
//! images (no file needed). The target is 54,000 images in under 10 minutes on 2 cores.

use std::time::Instant;

use crate::curation::ambient::annotate::{curves, AnnotateConfig};
use crate::curation::ambient::classifier::{train, NoiseClassifierConfig};
use crate::curation::ambient::threshold::{floors, ThresholdConfig};
use crate::data::corrupt::apply::apply;
use crate::data::corrupt::config::CorruptConfig;
use crate::data::images::{load_fashion_mnist, Split, FASHION_MNIST_DIR};
use crate::error::{Error, Result};

/// Times the annotation; see the module doc.
pub fn annotate_speed(sets: &[String]) -> Result<serde_json::Value> {
    let mut n = 54_000usize;
    let mut grid = AnnotateConfig::default();
    for s in sets {
        let bad = || {
            Error::Config(format!(
                "--set {s}: bench --speed annotate takes n=N, points=K and draws=D (whole \
                 numbers)"
            ))
        };
        let (k, v) = s.split_once('=').ok_or_else(bad)?;
        let v: usize = v.trim().parse().map_err(|_| bad())?;
        match k.trim() {
            "n" => n = v,
            "points" => grid.points = v,
            "draws" => grid.draws = v,
            _ => return Err(bad()),
        }
    }
    grid.validate()?;
    let all = load_fashion_mnist(std::path::Path::new(FASHION_MNIST_DIR), Split::Train)?;
    let n = n.clamp(1, all.len());
    let blur = CorruptConfig {
        kind: "blur".into(),
        ..Default::default()
    };
    let few = all.subset(&(0..128.min(all.len())).collect::<Vec<_>>());
    let cfg = NoiseClassifierConfig {
        epochs: 1,
        batch: 256,
        ..Default::default()
    };
    let clf = train(&few, &blur, &cfg, &mut |_, _, _| {})?;
    let set = apply(&all.subset(&(0..n).collect::<Vec<_>>()), &blur)?;
    let rows: Vec<usize> = (0..n).collect();
    let t = Instant::now();
    let p = curves(&clf, &set, &rows, &grid, &mut |_, _| {})?;
    let t_curves = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let f = floors(&set.ids, &grid.grid(), &p, &ThresholdConfig::default());
    let t_rule = t.elapsed().as_secs_f64();
    let total = t_curves + t_rule;
    Ok(serde_json::json!({
        "preset": "annotate", "n": n, "points": grid.points, "draws": grid.draws,
        "sigma_lo": grid.sigma_lo, "sigma_hi": grid.sigma_hi,
        "threads": std::thread::available_parallelism().map_or(1, |t| t.get()),
        "seconds": {"curves": t_curves, "threshold": t_rule}, "total_seconds": total,
        "images_per_s": n as f64 / total,
        "forward_passes_per_s": (n * grid.points * grid.draws) as f64 / t_curves,
        "projected_seconds_54000": 54_000.0 * total / n as f64,
        "floors": f.rows.len(),
    }))
}
