//! `stats.jsonl`: one JSON object per logging interval. On resume, lines written after the
//! checkpoint being resumed are dropped, so the file never holds a step twice.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One logging interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsLine {
    pub step: u64,
    /// Images trained on so far.
    pub nimg: u64,
    /// Images scored so far (≥ nimg when a selector scores a super-batch).
    pub nimg_scored: u64,
    /// Mean weighted training loss over the interval.
    pub loss: f64,
    /// Learning rate at the last step.
    pub lr: f64,
    /// Cumulative seconds by phase (data, train, score, select, eval, checkpoint) and total.
    pub seconds: BTreeMap<String, f64>,
    /// 10%, 50% and 90% quantiles of the training σ over the interval.
    pub sigma_q: [f64; 3],
    /// Whether online selection was on at the last step (None: no selector).
    #[serde(default)]
    pub selection: Option<bool>,
}

/// Appends stats lines to a run's `stats.jsonl`.
pub struct StatsWriter {
    path: PathBuf,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

impl StatsWriter {
    /// Opens `path`, keeping only lines with `nimg ≤ keep_until_nimg`.
    pub fn open(path: PathBuf, keep_until_nimg: u64) -> Result<Self> {
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| {
                    serde_json::from_str::<StatsLine>(l)
                        .map(|s| s.nimg <= keep_until_nimg)
                        .unwrap_or(false)
                })
                .collect();
            let mut body = kept.join("\n");
            if !body.is_empty() {
                body.push('\n');
            }
            crate::fsutil::write_atomic(&path, body.as_bytes())?;
        }
        Ok(Self { path })
    }

    /// Appends one line.
    pub fn write(&mut self, line: &StatsLine) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io(&self.path))?;
        let text = serde_json::to_string(line)
            .map_err(|e| Error::Model(format!("cannot serialise stats: {e}")))?;
        writeln!(f, "{text}").map_err(io(&self.path))
    }
}

/// The running sums of one logging interval: the mean loss and the σ quantiles of a
/// [`StatsLine`].
#[derive(Debug, Default)]
pub struct StatsWindow {
    loss_sum: f64,
    steps: usize,
    sigmas: Vec<f64>,
    /// The mean loss of the last interval written (NaN before the first).
    pub last_loss: f64,
}

impl StatsWindow {
    pub fn new() -> Self {
        Self {
            last_loss: f64::NAN,
            ..Default::default()
        }
    }

    /// Adds one step's mean loss and training σ.
    pub fn add(&mut self, mean_loss: f64, sigmas: &[f64]) {
        self.loss_sum += mean_loss;
        self.steps += 1;
        self.sigmas.extend_from_slice(sigmas);
    }

    /// Writes the interval's line (counters and cumulative seconds from `c`) and starts the
    /// next interval.
    pub fn flush(
        &mut self,
        out: &mut StatsWriter,
        c: &super::run::Counters,
        lr: f64,
        selection: Option<bool>,
    ) -> Result<()> {
        self.last_loss = self.loss_sum / self.steps as f64;
        let mut seconds = c.seconds.clone();
        seconds.insert("total".into(), c.total_seconds());
        out.write(&StatsLine {
            step: c.step,
            nimg: c.nimg,
            nimg_scored: c.nimg_scored,
            loss: self.last_loss,
            lr,
            seconds,
            sigma_q: [
                quantile(&mut self.sigmas, 0.1),
                quantile(&mut self.sigmas, 0.5),
                quantile(&mut self.sigmas, 0.9),
            ],
            selection,
        })?;
        (self.loss_sum, self.steps) = (0.0, 0);
        self.sigmas.clear();
        Ok(())
    }
}

/// Reads every line of a `stats.jsonl`.
pub fn read(path: &Path) -> Result<Vec<StatsLine>> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::BadFile {
                path: path.to_path_buf(),
                why: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}

/// The q-quantile (0..1) of `v` by nearest rank; NaN for an empty slice.
pub fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i]
}
