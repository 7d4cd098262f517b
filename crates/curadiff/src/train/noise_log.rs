//! Diagnostics of an adaptive noise schedule in the run directory: every refresh of π as a
//! line of `noise/refreshes.jsonl`, plots of the entropy-rate profile and of π over log σ
//! (one curve per refresh, `noise/profile.{svg,png}` and `noise/pi.{svg,png}`), and the
//! schedule's warnings in `noise/warnings.txt`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::diffusion::infonoise::Refresh;
use crate::error::{Error, Result};
use crate::plot::lines::{line_plot, LinePlot, Series};

/// The schedule's folder in run directory `root`.
pub fn dir(root: &Path) -> PathBuf {
    root.join("noise")
}

/// The refresh records of a run, oldest first (empty when there are none).
pub fn read(root: &Path) -> Result<Vec<Refresh>> {
    let path = dir(root).join("refreshes.jsonl");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Io {
        path: path.clone(),
        source: e,
    })?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).map_err(|e| Error::BadFile {
                path: path.clone(),
                why: format!("malformed refresh record: {e}"),
            })
        })
        .collect()
}

/// Adds a refresh (replacing any record of the same or a later step, left by a run that
/// was killed before its next checkpoint) and redraws the plots.
pub fn record(root: &Path, r: &Refresh) -> Result<()> {
    let folder = dir(root);
    crate::fsutil::create_dir(&folder)?;
    let mut all: Vec<Refresh> = read(root)?
        .into_iter()
        .filter(|old| old.step < r.step)
        .collect();
    all.push(r.clone());
    let mut text = String::new();
    for rec in &all {
        let line = serde_json::to_string(rec)
            .map_err(|e| Error::Config(format!("cannot write a refresh record: {e}")))?;
        text.push_str(&line);
        text.push('\n');
    }
    crate::fsutil::write_atomic(&folder.join("refreshes.jsonl"), text.as_bytes())?;
    plot(&all, &folder)
}

/// Up to eight refreshes, evenly spread and always with the first and the newest.
fn shown(all: &[Refresh]) -> Vec<&Refresh> {
    let n = all.len();
    if n <= 8 {
        return all.iter().collect();
    }
    let mut idx: Vec<usize> = (0..8).map(|i| i * (n - 1) / 7).collect();
    idx.dedup();
    idx.into_iter().map(|i| &all[i]).collect()
}

fn plot(all: &[Refresh], folder: &Path) -> Result<()> {
    let curves = |f: &dyn Fn(&Refresh) -> &[f64]| -> Vec<Series> {
        shown(all)
            .into_iter()
            .enumerate()
            .map(|(i, r)| Series {
                name: format!("step {}", r.step),
                color: i,
                points: r
                    .sigma
                    .iter()
                    .zip(f(r))
                    .map(|(s, v)| (s.log10(), *v, 0.0))
                    .collect(),
            })
            .collect()
    };
    line_plot(
        &curves(&|r| &r.rate),
        &LinePlot {
            title: "Entropy-rate profile (mass per log-σ bin, ∝ m̂(σ)/σ²)",
            xlabel: "log10 σ",
            ylabel: "share of mass per bin",
        },
        &folder.join("profile"),
    )?;
    line_plot(
        &curves(&|r| &r.pi),
        &LinePlot {
            title: "Training noise distribution π (mass per log-σ bin)",
            xlabel: "log10 σ",
            ylabel: "share of mass per bin",
        },
        &folder.join("pi"),
    )?;
    Ok(())
}

/// Appends a warning line.
pub fn warn(root: &Path, step: u64, message: &str) -> Result<()> {
    let folder = dir(root);
    crate::fsutil::create_dir(&folder)?;
    let path = folder.join("warnings.txt");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::Io {
            path: path.clone(),
            source: e,
        })?;
    writeln!(f, "step {step}: {message}").map_err(|e| Error::Io { path, source: e })
}
