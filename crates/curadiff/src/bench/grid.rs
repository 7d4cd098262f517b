//! `curadiff bench --grid FILE.toml --out DIR`: runs every arm × seed cell (or one shard's
//! share, `bench::shard`), evaluates each budget snapshot and appends one line per (cell,
//! snapshot) to the run's results file. Resumable: a cell complete in a results file of
//! `DIR` is skipped, a cell cut by a kill runs again (its training resumes), and a failed
//! cell is recorded, the rest go on, and it is tried again on the next run.
//!
//! Toy grids evaluate the exact toy metrics, unguided and autoguided by a guide trained once
//! per seed. Image grids (every arm an image preset) evaluate class-conditional EMA samples
//! with the Fashion-MNIST feature classifier (FD, KID, precision, recall, class accuracy
//! overall and per class) against the test split: unguided, autoguided when the grid has a
//! `[guide]` (trained once per seed, also the `{guide}` of selection arms), and with
//! class-free guidance when it sets `cfg`.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::shard::{self, Shard};
use crate::data::images::{self, ImageSet, Split};
use crate::diffusion::guidance::Guided;
use crate::error::{Error, Result};
use crate::eval::classifier::{self, Classifier};
use crate::eval::toy::{sample_metrics, sample_toy, SampleMetrics};
use crate::imagejob;
use crate::train::config::RunConfig;
use crate::train::presets::preset;
use crate::train::run::{self, Observer, Quiet, RunDir};
use crate::train::toy_task;

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
    /// Guidance weight of the autoguided evaluation (toy grids: required; image grids: with
    /// a `[guide]`, none evaluates unguided only and the guide is just `{guide}`, e.g. a DRO
    /// or selection reference).
    #[serde(default)]
    pub guidance: Option<f64>,
    /// Image grids: class-free guidance weight of an extra evaluation of every point.
    #[serde(default)]
    pub cfg: Option<f64>,
    /// Image grids: evaluate the guided samples (autoguidance, CFG) at every budget point
    /// (false: only at the end of training, which saves their sampling time).
    #[serde(default = "default_true")]
    pub guided_every_point: bool,
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
    /// The guide, trained once per seed: the autoguided evaluation's guide and `{guide}` in
    /// the arms' overrides (e.g. the selection reference). Required for toy grids.
    #[serde(default)]
    pub guide: Option<GuideSpec>,
    /// Where image grids find the feature classifier and the reference images.
    #[serde(default)]
    pub images: ImagesEval,
    #[serde(default)]
    pub budgets: Budgets,
    #[serde(rename = "arm")]
    pub arms: Vec<Arm>,
    /// Target qualities: the report gives the images and seconds each arm needs to reach them.
    #[serde(default)]
    pub targets: Targets,
}

/// The evaluation of image grids.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagesEval {
    /// The feature classifier (default: the cache path of `curadiff classifier`).
    pub classifier: Option<PathBuf>,
    /// The Fashion-MNIST folder whose test split is the reference (default: the Debian
    /// package's location).
    pub data: Option<PathBuf>,
}

/// Quality targets of a grid (unguided, EMA weights).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// Exact score-matching loss at or below this (the toy's log-normal σ distribution).
    pub exact_loss: Option<f64>,
    /// Classification score at or above this.
    pub classification: Option<f64>,
    /// Image grids: FD on the classifier's features at or below this.
    pub fd: Option<f64>,
    /// The arm the speed-ups are relative to (default: the first arm).
    pub baseline: Option<String>,
}

fn default_true() -> bool {
    true
}

fn default_sample_seed() -> u64 {
    7
}

impl Grid {
    /// Whether the grid trains on images (judged by its first arm).
    pub fn is_images(&self) -> Result<bool> {
        match self.arms.first() {
            Some(a) => Ok(preset(&a.preset)?.data.is_images()),
            None => Ok(false),
        }
    }

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
        if let Some(s) = g
            .budgets
            .seconds
            .iter()
            .find(|s| !(s.is_finite() && **s > 0.0))
        {
            return Err(bad(&format!(
                "budgets.seconds holds {s}; budget points must be finite and > 0"
            )));
        }
        let t = &g.targets;
        for (key, v) in [
            ("exact_loss", t.exact_loss),
            ("classification", t.classification),
            ("fd", t.fd),
        ] {
            if let Some(v) = v.filter(|v| !v.is_finite()) {
                return Err(bad(&format!(
                    "targets.{key} = {v}; a target must be finite"
                )));
            }
        }
        let images = g.is_images()?;
        for a in &g.arms {
            if preset(&a.preset)?.data.is_images() != images {
                return Err(bad(&format!(
                    "arm '{}' mixes a toy and an image preset in one grid; the arms of a grid \
                     must all train the toy or all train on images",
                    a.name
                )));
            }
        }
        if images {
            if let Some(guide) = &g.guide {
                if !preset(&guide.preset)?.data.is_images() {
                    return Err(bad(&format!(
                        "the guide of an image grid must be an image preset (e.g. \
                         \"fmnist-guide\"), not '{}'",
                        guide.preset
                    )));
                }
            }
            match (&g.guide, g.guidance) {
                (Some(_), Some(w)) if !w.is_finite() => {
                    return Err(bad(&format!("guidance = {w}; it must be finite")));
                }
                (None, Some(_)) => {
                    return Err(bad(
                        "guidance is the autoguidance weight and needs a [guide] section \
                         (e.g. preset = \"fmnist-guide\"); for class-free guidance set cfg",
                    ))
                }
                // With a guide and no weight, the guide is only `{guide}` in the arms (a
                // reference); the evaluation is unguided.
                _ => {}
            }
            if let Some(w) = g.cfg.filter(|w| !w.is_finite()) {
                return Err(bad(&format!("cfg = {w}; it must be finite")));
            }
            if g.targets.exact_loss.is_some() || g.targets.classification.is_some() {
                return Err(bad(
                    "targets.exact_loss and targets.classification are toy metrics; \
                     image grids take targets.fd",
                ));
            }
        } else {
            let Some(guide) = &g.guide else {
                return Err(bad(
                    "a toy grid needs a [guide] section (e.g. preset = \"toy-guide\")",
                ));
            };
            if preset(&guide.preset)?.data.is_images() {
                return Err(bad("the guide of a toy grid must be a toy preset"));
            }
            if g.guidance.is_none_or(|w| !w.is_finite()) {
                return Err(bad(
                    "a toy grid needs a finite guidance weight (e.g. guidance = 3.0)",
                ));
            }
            if g.targets.fd.is_some() {
                return Err(bad("targets.fd is an image metric; toy grids take \
                                targets.exact_loss or targets.classification"));
            }
            if g.cfg.is_some() {
                return Err(bad(
                    "cfg (class-free guidance) is an image-grid evaluation; toy grids are \
                     autoguided with guidance",
                ));
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
    /// Toy sample metrics, unguided and autoguided.
    #[serde(default)]
    pub unguided: Option<SampleMetrics>,
    #[serde(default)]
    pub guided: Option<SampleMetrics>,
    /// Image metrics of class-conditional samples (image grids): unguided, autoguided by
    /// the grid's guide, and with class-free guidance.
    #[serde(default)]
    pub images: Option<ImagePoint>,
    #[serde(default)]
    pub images_guided: Option<ImagePoint>,
    #[serde(default)]
    pub images_cfg: Option<ImagePoint>,
    /// Exact score-matching loss of the EMA model under the fixed log-normal σ
    /// distribution (the same for every noise schedule, so arms compare).
    #[serde(default)]
    pub exact_loss: Option<f64>,
}

impl PointResult {
    /// A point of `arm` and `seed` at the counters `c`, without metrics yet; a "final"
    /// point is placed at the images trained.
    fn at(arm: &str, seed: u64, kind: &str, point: f64, c: run::Counters) -> Self {
        Self {
            arm: arm.to_string(),
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
            unguided: None,
            guided: None,
            images: None,
            images_guided: None,
            images_cfg: None,
            exact_loss: None,
        }
    }
}

/// Image metrics at one evaluation point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImagePoint {
    pub fd: f64,
    pub kid: f64,
    pub precision: f64,
    pub recall: f64,
    pub class_accuracy: Option<f64>,
    /// The same per class (NaN, null in JSON, for a class without samples).
    #[serde(default)]
    pub per_class_accuracy: Option<Vec<f64>>,
    /// Generated images evaluated.
    pub n: usize,
    pub feature_network: String,
    /// Seconds spent sampling them (not part of training time).
    pub sample_seconds: f64,
}

/// What image grids evaluate against, loaded once per grid.
struct ImageRef {
    clf: Classifier,
    reference: ImageSet,
}

impl ImageRef {
    fn load(e: &ImagesEval) -> Result<Self> {
        let path = e
            .classifier
            .clone()
            .unwrap_or_else(classifier::default_path);
        if !path.exists() {
            return Err(Error::Config(format!(
                "image grids need the feature classifier, and there is none at {}; train it \
                 once with `curadiff classifier` (about 4 minutes), or set images.classifier",
                path.display()
            )));
        }
        let dir = e
            .data
            .clone()
            .unwrap_or_else(|| PathBuf::from(images::FASHION_MNIST_DIR));
        Ok(Self {
            clf: Classifier::load(&path)?,
            reference: images::load_fashion_mnist(&dir, Split::Test)?,
        })
    }
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

/// Runs the grid (or one shard of it) into `out`; `note` receives progress lines. Returns
/// (cells run now, cells skipped as done, cells failed) among the cells of the shard.
pub fn run_grid(
    grid: &Grid,
    out: &Path,
    shard: Option<&Shard>,
    note: &mut dyn FnMut(&str),
) -> Result<(usize, usize, usize)> {
    crate::fsutil::create_dir(out)?;
    let text =
        toml::to_string(grid).map_err(|e| Error::Config(format!("cannot write the grid: {e}")))?;
    crate::fsutil::write_atomic(&out.join(GRID_FILE), text.as_bytes())?;
    let results = shard::results_file(out, shard);
    let done = shard::prepare(out, shard, note)?;
    let mine: Vec<(&Arm, u64)> = grid
        .seeds
        .iter()
        .flat_map(|&s| grid.arms.iter().map(move |a| (a, s)))
        .enumerate()
        .filter(|(k, _)| shard.is_none_or(|sh| sh.owns(*k)))
        .map(|(_, c)| c)
        .collect();
    let total = mine.len();
    let started = Instant::now();
    let (mut ran, mut skipped, mut failed) = (0, 0, 0);
    let todo = |a: &Arm, s: u64| !done.contains(&(a.name.clone(), s));
    let image_ref = if grid.is_images()? && mine.iter().any(|&(a, s)| todo(a, s)) {
        Some(ImageRef::load(&grid.images)?)
    } else {
        None
    };
    let tag = shard.map_or("all".to_string(), |s| format!("{}-of-{}", s.index, s.count));
    let mut guided: Vec<u64> = Vec::new();
    for &(arm, seed) in &mine {
        if !todo(arm, seed) {
            skipped += 1;
            continue;
        }
        let guide_dir = out.join("guides").join(format!("seed-{seed}"));
        if let (Some(guide), false) = (&grid.guide, guided.contains(&seed)) {
            let mut g = preset(&guide.preset)?
                .with_overrides(&grid.set)?
                .with_overrides(&guide.set)?;
            g.seed = seed;
            shard::ensure_guide(&guide_dir, &g, &tag)?;
            guided.push(seed);
        }
        let cell = out
            .join("cells")
            .join(&arm.name)
            .join(format!("seed-{seed}"));
        let t = Instant::now();
        let result = match &image_ref {
            Some(r) => run_image_cell(grid, arm, seed, &cell, r, &guide_dir),
            None => run_cell(grid, arm, seed, &cell, &guide_dir),
        };
        match result {
            Ok(points) => {
                let lines: Vec<ResultLine> = points
                    .into_iter()
                    .map(|p| ResultLine::Point(Box::new(p)))
                    .collect();
                shard::append_cell(&results, &lines)?;
                crate::fsutil::write_atomic(&cell.join("done.json"), b"{}")?;
                ran += 1;
            }
            Err(e) => {
                let line = ResultLine::Failed {
                    arm: arm.name.clone(),
                    seed,
                    error: e.to_string(),
                };
                shard::append_cell(&results, &[line])?;
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
    Ok((ran, skipped, failed))
}

fn run_cell(
    grid: &Grid,
    arm: &Arm,
    seed: u64,
    cell: &Path,
    guide_dir: &Path,
) -> Result<Vec<PointResult>> {
    let cfg = cell_config(grid, arm, seed, Some(guide_dir))?;
    crate::trainjob::train(cell, &cfg, &mut Quiet as &mut dyn Observer)?;
    let (_, guide, _) = toy_task::load_learner(guide_dir)?;
    let guide = guide.ema_inference();
    let mixture = crate::data::toy2d::Mixture::tree(cfg.data.classes);
    let mut points = Vec::new();
    let mut eval = |kind: &str, point: f64, label: Option<String>| -> Result<()> {
        let (learner, c, n) = match &label {
            Some(l) => {
                let (_, learner, c) = toy_task::load_snapshot(cell, l)?;
                (learner, c, grid.eval_samples)
            }
            None => {
                let (_, learner, c) = toy_task::load_snapshot_latest(cell)?;
                (learner, c, grid.samples)
            }
        };
        let main = learner.ema_inference();
        let unguided = sample_toy(main.as_ref(), &mixture, &cfg.sampler, n, grid.sample_seed)?;
        let guided_den = Guided {
            main: main.as_ref(),
            guide: guide.as_ref(),
            weight: grid.guidance.unwrap_or(1.0),
        };
        let guided = sample_toy(&guided_den, &mixture, &cfg.sampler, n, grid.sample_seed)?;
        let exact_loss = crate::eval::toy::exact_loss(
            main.as_ref(),
            &mixture,
            &cfg.diffusion.lognormal(),
            16_384,
            grid.sample_seed,
        )?;
        let mut p = PointResult::at(&arm.name, seed, kind, point, c);
        p.unguided = Some(sample_metrics(&mixture, &unguided, grid.sample_seed)?);
        p.guided = Some(sample_metrics(&mixture, &guided, grid.sample_seed)?);
        p.exact_loss = Some(exact_loss);
        points.push(p);
        Ok(())
    };
    each_point(grid, cell, &mut eval)?;
    Ok(points)
}

/// Evaluates one point of a cell: (kind, budget point, snapshot label or `None` for the end).
type EvalPoint<'a> = dyn FnMut(&str, f64, Option<String>) -> Result<()> + 'a;

/// Calls `eval(kind, point, snapshot label)` for every budget snapshot the cell has, then
/// for the end of training (label `None`).
fn each_point(grid: &Grid, cell: &Path, eval: &mut EvalPoint) -> Result<()> {
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
    eval("final", 0.0, None)
}

/// The arm's config for `seed` with the grid's and the arm's overrides and the budget points
/// as snapshot points.
fn cell_config(grid: &Grid, arm: &Arm, seed: u64, guide: Option<&Path>) -> Result<RunConfig> {
    let guide_str = guide.map(|g| g.display().to_string());
    let mut sets = Vec::new();
    for s in grid.set.iter().chain(&arm.set) {
        match (&guide_str, s.contains("{guide}")) {
            (Some(g), _) => sets.push(s.replace("{guide}", g)),
            (None, true) => {
                return Err(Error::Config(format!(
                    "arm '{}': '{s}' refers to {{guide}}, but this grid has no guide",
                    arm.name
                )))
            }
            (None, false) => sets.push(s.clone()),
        }
    }
    let mut cfg = preset(&arm.preset)?.with_overrides(&sets)?;
    cfg.seed = seed;
    cfg.train.snapshot_nimg = grid.budgets.nimg.clone();
    cfg.train.snapshot_seconds = grid.budgets.seconds.clone();
    cfg.validate()?;
    Ok(cfg)
}

/// An image cell: train, then sample and score every budget snapshot and the end
/// (unguided; autoguided by the seed's guide at `guide_dir` when the grid has one; with
/// class-free guidance when it sets `cfg`).
fn run_image_cell(
    grid: &Grid,
    arm: &Arm,
    seed: u64,
    cell: &Path,
    r: &ImageRef,
    guide_dir: &Path,
) -> Result<Vec<PointResult>> {
    let guide = grid.guide.as_ref().map(|_| guide_dir);
    let cfg = cell_config(grid, arm, seed, guide)?;
    crate::trainjob::train(cell, &cfg, &mut Quiet as &mut dyn Observer)?;
    let mut points = Vec::new();
    let mut eval = |kind: &str, point: f64, label: Option<String>| -> Result<()> {
        let n = if label.is_some() {
            grid.eval_samples
        } else {
            grid.samples
        };
        let score = |guide: Option<(PathBuf, f64)>, cfg: Option<f64>| {
            score_image_point(cell, label.as_deref(), n, guide, cfg, grid.sample_seed, r)
        };
        let (unguided, c) = score(None, None)?;
        let mut p = PointResult::at(&arm.name, seed, kind, point, c);
        p.images = Some(unguided);
        let guided = grid.guided_every_point || label.is_none();
        if let (Some(_), Some(w), true) = (guide, grid.guidance, guided) {
            p.images_guided = Some(score(Some((guide_dir.to_path_buf(), w)), None)?.0);
        }
        if let (Some(w), true) = (grid.cfg, guided) {
            p.images_cfg = Some(score(None, Some(w))?.0);
        }
        points.push(p);
        Ok(())
    };
    each_point(grid, cell, &mut eval)?;
    Ok(points)
}

/// Class-conditional EMA samples of one snapshot (classes in turn), optionally guided,
/// scored against the reference; also the run's counters at that snapshot.
fn score_image_point(
    cell: &Path,
    snapshot: Option<&str>,
    n: usize,
    guide: Option<(PathBuf, f64)>,
    cfg: Option<f64>,
    seed: u64,
    r: &ImageRef,
) -> Result<(ImagePoint, run::Counters)> {
    let t = Instant::now();
    let s = imagejob::sample(&imagejob::SampleRequest {
        run: cell.to_path_buf(),
        snapshot: snapshot.map(str::to_string),
        guide,
        cfg,
        class: None,
        unconditional: false,
        n,
        seed,
        raw: false,
        phema: None,
        guide_phema: None,
    })?;
    let sample_seconds = t.elapsed().as_secs_f64();
    let labels: Option<Vec<usize>> = s.labels.iter().copied().collect();
    let m =
        crate::eval::images::evaluate(&r.clf, &s.images, n, labels.as_deref(), &r.reference, seed)?;
    Ok((
        ImagePoint {
            fd: m.fd,
            kid: m.kid_mean,
            precision: m.precision,
            recall: m.recall,
            class_accuracy: m.class_accuracy,
            per_class_accuracy: m.per_class_accuracy,
            n,
            feature_network: m.feature_network,
            sample_seconds,
        },
        s.counters,
    ))
}

/// The grid as run, written into the output folder (the provenance of its report).
pub const GRID_FILE: &str = "grid.toml";

/// Where a grid's outputs go.
pub fn results_path(out: &Path) -> PathBuf {
    out.join("results.jsonl")
}
