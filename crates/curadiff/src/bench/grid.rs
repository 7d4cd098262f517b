//! `curadiff bench --grid FILE.toml --out DIR`: runs every arm × seed cell (resumable: a cell
//! with a `done.json` is skipped; a failed cell is recorded and the rest go on), evaluates
//! each budget snapshot and appends one line per (cell, snapshot) to `results.jsonl`.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::diffusion::guidance::Guided;
use crate::error::{Error, Result};
use crate::eval::toy::{sample_metrics, sample_toy, SampleMetrics};
use crate::train::presets::preset;
use crate::train::run::{self, Observer, Quiet, RunDir};

/// One arm of the grid: a preset plus overrides. `{guide}` in a value stands for the seed's
/// guide run directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arm {
    pub name: String,
    #[serde(default = "default_preset")]
    pub preset: String,
    #[serde(default)]
    pub set: Vec<String>,
}

fn default_preset() -> String {
    "toy".into()
}

fn default_guide_preset() -> String {
    "toy-guide".into()
}

/// The guide trained once per seed (autoguidance at evaluation, reference for AJEST).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuideSpec {
    #[serde(default = "default_guide_preset")]
    pub preset: String,
    #[serde(default)]
    pub set: Vec<String>,
}

/// Budget points at which weights are snapshotted and evaluated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    /// Images trained on.
    #[serde(default)]
    pub nimg: Vec<u64>,
    /// Seconds of training (all phases, selection overhead included).
    #[serde(default)]
    pub seconds: Vec<f64>,
}

/// A grid file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    pub seeds: Vec<u64>,
    /// Guidance weight of the autoguided evaluation.
    pub guidance: f64,
    /// Samples at the final evaluation of each cell.
    pub samples: usize,
    /// Samples at the other budget points.
    pub eval_samples: usize,
    /// Sampling seed of every evaluation.
    #[serde(default = "default_sample_seed")]
    pub sample_seed: u64,
    /// Overrides applied to every arm (e.g. a shorter duration for a quick grid).
    #[serde(default)]
    pub set: Vec<String>,
    pub guide: GuideSpec,
    #[serde(default)]
    pub budgets: Budgets,
    #[serde(rename = "arm")]
    pub arms: Vec<Arm>,
    /// Target qualities: the report gives the images and seconds each arm needs to reach them.
    #[serde(default)]
    pub targets: Targets,
}

/// Quality targets of a grid (unguided, EMA weights).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// Exact score-matching loss at or below this (the toy's log-normal σ distribution).
    pub exact_loss: Option<f64>,
    /// Classification score at or above this.
    pub classification: Option<f64>,
    /// The arm the speed-ups are relative to (default: the first arm).
    pub baseline: Option<String>,
}

fn default_sample_seed() -> u64 {
    7
}

impl Grid {
    /// Reads and checks a grid file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let g: Grid = toml::from_str(&text).map_err(|e| Error::BadFile {
            path: path.to_path_buf(),
            why: format!("malformed grid: {}", e.message()),
        })?;
        let bad = |why: &str| Error::BadFile {
            path: path.to_path_buf(),
            why: why.to_string(),
        };
        if g.seeds.is_empty() || g.arms.is_empty() {
            return Err(bad("a grid needs at least one seed and one [[arm]]"));
        }
        if g.samples == 0 || g.eval_samples == 0 {
            return Err(bad("samples and eval_samples must be at least 1"));
        }
        for p in g.arms.iter().map(|a| &a.preset).chain([&g.guide.preset]) {
            if preset(p)?.data.is_images() {
                return Err(bad(&format!(
                    "preset '{p}' trains on images; grids evaluate the toy's exact metrics \
                     only so far (for images, train runs with snapshots and use \
                     `curadiff eval images --run RUN --snapshots`)"
                )));
            }
        }
        let mut names: Vec<&str> = g.arms.iter().map(|a| a.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(bad("arm names must be distinct"));
        }
        if let Some(a) = g
            .arms
            .iter()
            .find(|a| a.name.is_empty() || a.name.contains(['/', '\\']))
        {
            return Err(bad(&format!(
                "arm name '{}' must be non-empty without slashes",
                a.name
            )));
        }
        Ok(g)
    }
}

/// Metrics of one evaluation, unguided and autoguided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointResult {
    pub arm: String,
    pub seed: u64,
    /// "nimg", "seconds" or "final".
    pub kind: String,
    /// The budget point (images or seconds; for "final", the images trained).
    pub point: f64,
    pub step: u64,
    pub nimg: u64,
    pub nimg_scored: u64,
    /// Cumulative seconds by phase at the snapshot.
    pub seconds: std::collections::BTreeMap<String, f64>,
    pub unguided: SampleMetrics,
    pub guided: SampleMetrics,
    /// Exact score-matching loss of the EMA model under the fixed log-normal σ
    /// distribution (the same for every noise schedule, so arms compare).
    #[serde(default)]
    pub exact_loss: Option<f64>,
}

/// A line of `results.jsonl`: a result, or a failed cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ResultLine {
    Point(Box<PointResult>),
    Failed {
        arm: String,
        seed: u64,
        error: String,
    },
}

/// Runs the grid into `out`; `note` receives progress lines. Returns (cells run now, cells
/// skipped as done, cells failed).
pub fn run_grid(
    grid: &Grid,
    out: &Path,
    note: &mut dyn FnMut(&str),
) -> Result<(usize, usize, usize)> {
    crate::fsutil::create_dir(out)?;
    let results = out.join("results.jsonl");
    let total = grid.arms.len() * grid.seeds.len();
    let started = Instant::now();
    let (mut ran, mut skipped, mut failed) = (0, 0, 0);
    for &seed in &grid.seeds {
        let guide_dir = out.join("guides").join(format!("seed-{seed}"));
        let mut g = preset(&grid.guide.preset)?
            .with_overrides(&grid.set)?
            .with_overrides(&grid.guide.set)?;
        g.seed = seed;
        run::train(&guide_dir, &g, &mut Quiet)?;
        for arm in &grid.arms {
            let cell = out
                .join("cells")
                .join(&arm.name)
                .join(format!("seed-{seed}"));
            if cell.join("done.json").exists() {
                skipped += 1;
                continue;
            }
            let t = Instant::now();
            match run_cell(grid, arm, seed, &cell, &guide_dir) {
                Ok(points) => {
                    for p in points {
                        append(&results, &ResultLine::Point(Box::new(p)))?;
                    }
                    crate::fsutil::write_atomic(&cell.join("done.json"), b"{}")?;
                    ran += 1;
                }
                Err(e) => {
                    append(
                        &results,
                        &ResultLine::Failed {
                            arm: arm.name.clone(),
                            seed,
                            error: e.to_string(),
                        },
                    )?;
                    failed += 1;
                    note(&format!("cell {} seed {seed} failed: {e}", arm.name));
                }
            }
            let done = ran + skipped + failed;
            let per_cell = started.elapsed().as_secs_f64() / (ran + failed).max(1) as f64;
            note(&format!(
                "[{done}/{total}] {} seed {seed}: {:.1} s; eta {:.0} s",
                arm.name,
                t.elapsed().as_secs_f64(),
                per_cell * (total - done) as f64
            ));
        }
    }
    Ok((ran, skipped, failed))
}

fn append(path: &Path, line: &ResultLine) -> Result<()> {
    use std::io::Write;
    let text = serde_json::to_string(line).map_err(|e| Error::Model(e.to_string()))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
    writeln!(f, "{text}").map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

fn run_cell(
    grid: &Grid,
    arm: &Arm,
    seed: u64,
    cell: &Path,
    guide_dir: &Path,
) -> Result<Vec<PointResult>> {
    let guide_str = guide_dir.display().to_string();
    let sets: Vec<String> = grid
        .set
        .iter()
        .chain(&arm.set)
        .map(|s| s.replace("{guide}", &guide_str))
        .collect();
    let mut cfg = preset(&arm.preset)?.with_overrides(&sets)?;
    cfg.seed = seed;
    cfg.train.snapshot_nimg = grid.budgets.nimg.clone();
    cfg.train.snapshot_seconds = grid.budgets.seconds.clone();
    cfg.validate()?;
    run::train(cell, &cfg, &mut Quiet as &mut dyn Observer)?;
    let (_, guide, _) = run::load_learner(guide_dir)?;
    let guide = guide.ema_inference();
    let mixture = crate::data::toy2d::Mixture::tree(cfg.data.classes);
    let mut points = Vec::new();
    let mut eval = |kind: &str, point: f64, label: Option<String>| -> Result<()> {
        let (learner, c, n) = match &label {
            Some(l) => {
                let (_, learner, c) = run::load_snapshot(cell, l)?;
                (learner, c, grid.eval_samples)
            }
            None => {
                let (_, learner, c) = run::load_snapshot_latest(cell)?;
                (learner, c, grid.samples)
            }
        };
        let main = learner.ema_inference();
        let unguided = sample_toy(main.as_ref(), &mixture, &cfg.sampler, n, grid.sample_seed)?;
        let guided_den = Guided {
            main: main.as_ref(),
            guide: guide.as_ref(),
            weight: grid.guidance,
        };
        let guided = sample_toy(&guided_den, &mixture, &cfg.sampler, n, grid.sample_seed)?;
        let exact_loss = crate::eval::toy::exact_loss(
            main.as_ref(),
            &mixture,
            &cfg.diffusion.lognormal(),
            16_384,
            grid.sample_seed,
        )?;
        points.push(PointResult {
            arm: arm.name.clone(),
            seed,
            kind: kind.into(),
            point: if kind == "final" {
                c.nimg as f64
            } else {
                point
            },
            step: c.step,
            nimg: c.nimg,
            nimg_scored: c.nimg_scored,
            seconds: c.seconds,
            unguided: sample_metrics(&mixture, &unguided, grid.sample_seed)?,
            guided: sample_metrics(&mixture, &guided, grid.sample_seed)?,
            exact_loss: Some(exact_loss),
        });
        Ok(())
    };
    let snaps = RunDir::new(cell).snapshots();
    for &p in &grid.budgets.nimg {
        let label = format!("nimg-{p:012}");
        if snaps.join(&label).exists() {
            eval("nimg", p as f64, Some(label))?;
        }
    }
    for &p in &grid.budgets.seconds {
        let label = run::seconds_label(p);
        if snaps.join(&label).exists() {
            eval("seconds", p, Some(label))?;
        }
    }
    eval("final", 0.0, None)?;
    Ok(points)
}

/// Where a grid's outputs go.
pub fn results_path(out: &Path) -> PathBuf {
    out.join("results.jsonl")
}
