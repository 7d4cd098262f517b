//! The training loop, top to bottom: resume or start, then per step the phases
//! data → step → EMA → stats → checkpoint, until the image budget is spent.
//!
//! To resume, run the same command again: the run directory's `config.toml` must match, and
//! training continues from the newest checkpoint with bit-identical results.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::checkpoint::{self, CheckpointMeta};
use super::config::RunConfig;
use super::learner::ToyLearner;
use super::select::{Choice, OnlineSelection};
use super::stats::{StatsWindow, StatsWriter};
use crate::data::toy2d::Mixture;
use crate::diffusion::infonoise::Event;
use crate::diffusion::noise::{NoiseSampler, Schedule};
use crate::diffusion::toy_batch::{redraw_noise, toy_batch, Batch};
use crate::error::{Error, Result};

/// Sampling seed of the end-of-training plot.
const FINAL_PLOT_SEED: u64 = 7;

/// Receives progress; the CLI draws a progress bar from it.
pub trait Observer {
    fn progress(&mut self, _nimg: u64, _total_nimg: u64, _loss: f64) {}
    fn note(&mut self, _message: &str) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

/// Counters of a run; saved in every checkpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    pub step: u64,
    pub nimg: u64,
    pub nimg_scored: u64,
    /// Cumulative seconds by phase.
    pub seconds: BTreeMap<String, f64>,
}

impl Counters {
    /// Books the time since `since` to `phase`.
    pub fn add(&mut self, phase: &str, since: Instant) {
        *self.seconds.entry(phase.to_string()).or_insert(0.0) += since.elapsed().as_secs_f64();
    }

    /// Seconds of all phases so far.
    pub fn total_seconds(&self) -> f64 {
        self.seconds.values().sum()
    }
}

/// How a training call ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub counters: Counters,
    /// The step the run resumed from (None: started fresh).
    pub resumed_from: Option<u64>,
    /// Mean loss of the last logging interval.
    pub last_loss: f64,
}

/// The files of a run directory.
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    pub fn stats(&self) -> PathBuf {
        self.root.join("stats.jsonl")
    }
    pub fn samples(&self) -> PathBuf {
        self.root.join("samples")
    }
    /// Budget snapshots: one checkpoint folder per budget point, e.g. `nimg-000001024`.
    pub fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// The config stored in the run directory.
    pub fn read_config(&self) -> Result<RunConfig> {
        let path = self.config();
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Io {
            path: path.clone(),
            source: e,
        })?;
        RunConfig::from_toml(&text).map_err(|e| Error::BadFile {
            path,
            why: e.to_string(),
        })
    }
}

/// Writes `config.toml` for a new run, or checks that an existing run has the same config.
pub(crate) fn claim(run: &RunDir, cfg: &RunConfig) -> Result<()> {
    crate::fsutil::create_dir(&run.root)?;
    if run.config().exists() {
        let stored = run.read_config()?;
        let diff = stored.diff(cfg);
        if !diff.is_empty() {
            return Err(Error::ConfigMismatch {
                dir: run.root.clone(),
                diff: diff.join("; "),
            });
        }
        return Ok(());
    }
    crate::fsutil::write_atomic(&run.config(), cfg.to_toml()?.as_bytes())
}

/// Restores learner and counters from the checkpoint `pick` chooses (training resumes from
/// [`checkpoint::resume_point`], readers use [`checkpoint::latest`]), if any.
fn resume(
    run: &RunDir,
    learner: &mut ToyLearner,
    obs: &mut dyn Observer,
    pick: fn(&Path) -> Result<Option<checkpoint::Checkpoint>>,
) -> Result<Option<(Counters, serde_json::Value)>> {
    let Some(ck) = pick(&run.checkpoints())? else {
        return Ok(None);
    };
    ck.warnings.iter().for_each(|w| obs.note(w));
    learner
        .load_groups(&ck.groups, ck.meta.step)
        .map_err(|e| Error::BadCheckpoint {
            path: ck.path.clone(),
            why: e.to_string(),
            hint: "it does not fit this config's model".into(),
        })?;
    let counters = Counters {
        step: ck.meta.step,
        nimg: ck.meta.nimg,
        nimg_scored: ck.meta.nimg_scored,
        seconds: ck.meta.seconds,
    };
    Ok(Some((counters, ck.meta.extra)))
}

/// The snapshot folder name of a seconds budget point.
pub fn seconds_label(p: f64) -> String {
    format!("seconds-{:012.3}", p)
}

fn save(
    run: &RunDir,
    cfg: &RunConfig,
    learner: &ToyLearner,
    c: &Counters,
    extra: serde_json::Value,
) -> Result<()> {
    save_to(
        &run.checkpoints(),
        learner,
        c,
        extra,
        cfg.train.keep_checkpoints,
    )
}

fn save_to(
    dir: &Path,
    learner: &ToyLearner,
    c: &Counters,
    extra: serde_json::Value,
    keep: usize,
) -> Result<()> {
    let meta = CheckpointMeta {
        step: c.step,
        nimg: c.nimg,
        nimg_scored: c.nimg_scored,
        seconds: c.seconds.clone(),
        tensors: String::new(),
        bytes: 0,
        checksum: String::new(),
        extra,
    };
    checkpoint::save(dir, meta, &learner.to_groups()?, keep)?;
    Ok(())
}

/// The budget snapshots to write after a step that took the images trained from
/// `trained_before` to `c.nimg`: nimg points just crossed, and seconds points reached whose
/// folder does not exist yet.
pub(crate) fn snapshots_due(
    cfg: &RunConfig,
    run: &RunDir,
    trained_before: u64,
    c: &Counters,
) -> Vec<String> {
    let seconds_now = c.total_seconds();
    let mut labels: Vec<String> = cfg
        .train
        .snapshot_nimg
        .iter()
        .filter(|&&p| trained_before < p && c.nimg >= p)
        .map(|p| format!("nimg-{p:012}"))
        .collect();
    labels.extend(
        cfg.train
            .snapshot_seconds
            .iter()
            .filter(|&&p| seconds_now >= p && !run.snapshots().join(seconds_label(p)).exists())
            .map(|&p| seconds_label(p)),
    );
    labels
}

/// True when the count moved past a multiple of `every` during the last `batch` images.
pub(crate) fn crossed(nimg: u64, batch: u64, every: u64) -> bool {
    nimg / every > nimg.saturating_sub(batch) / every
}

/// Per-example ‖y − D‖² per dimension against the clean examples y, which is what the
/// noise schedules estimate mmse(σ) from. The step's error is against its target; with the
/// exact target E[y|x] the two differ by ‖y − E[y|x]‖² plus a cross term of zero mean, so
/// that gap is added (exact in expectation; zero for denoising score matching).
fn x0_errors(b: &Batch, err: &[f32]) -> Vec<f64> {
    let d = b.dim;
    err.iter()
        .enumerate()
        .map(|(i, &e)| {
            let gap: f64 = (0..d)
                .map(|j| (b.clean[i * d + j] - b.target[i * d + j]).powi(2))
                .sum();
            e as f64 + gap / d as f64
        })
        .collect()
}

/// Writes the schedule's refreshes and warnings to the run directory.
pub(crate) fn noise_events(
    run: &RunDir,
    noise: &mut Schedule,
    step: u64,
    obs: &mut dyn Observer,
) -> Result<()> {
    for ev in noise.take_events() {
        match ev {
            Event::Refresh(r) => super::noise_log::record(&run.root, &r)?,
            Event::Warning(w) => {
                obs.note(&w);
                super::noise_log::warn(&run.root, step, &w)?;
            }
        }
    }
    Ok(())
}

/// Trains (or resumes) the run in `dir` to `cfg.train.duration_nimg` images.
pub fn train(dir: &Path, cfg: &RunConfig, obs: &mut dyn Observer) -> Result<Outcome> {
    if cfg.data.is_images() {
        return super::image_run::train(dir, cfg, obs);
    }
    cfg.validate()?;
    let run = RunDir::new(dir);
    claim(&run, cfg)?;
    let mixture = Mixture::tree(cfg.data.classes);
    let mut noise = cfg.diffusion.noise();
    let mut learner = ToyLearner::new(cfg, &crate::device::training());
    let mut selection = OnlineSelection::new(&cfg.select, cfg.diffusion.weighting, dir)?;
    let resumed = resume(&run, &mut learner, obs, checkpoint::resume_point)?;
    let resumed_from = resumed.as_ref().map(|(c, _)| c.step);
    if let Some(step) = resumed_from {
        obs.note(&format!("resuming {} from step {step}", dir.display()));
    }
    let (mut c, extra) = resumed.unwrap_or_default();
    if let (Some(sel), Some(sw)) = (selection.as_mut(), extra.get("switch")) {
        sel.switch = serde_json::from_value(sw.clone()).map_err(|e| Error::BadCheckpoint {
            path: run.checkpoints(),
            why: format!("malformed selection state: {e}"),
            hint: String::new(),
        })?;
    }
    if let Some(state) = extra.get("noise").filter(|v| !v.is_null()) {
        noise.restore(state).map_err(|why| Error::BadCheckpoint {
            path: run.checkpoints(),
            why: format!("malformed noise schedule state: {why}"),
            hint: "it does not fit this config's diffusion.schedule".into(),
        })?;
    }
    let mut stats = StatsWriter::open(run.stats(), c.nimg)?;
    let batch = cfg.train.batch as u64;
    let total = cfg.train.duration_nimg;
    let mut last_saved = c.step;
    let mut window = StatsWindow::new();

    // The schedules (learning rate, EMA) advance per iteration of a super-batch of `batch`
    // images, as in the seed: selection changes what each iteration trains on, not its
    // position in the schedule. The run ends after `duration_nimg` images of super-batches.
    let budget_done = |c: &Counters| {
        (cfg.train.budget_nimg > 0 && c.nimg >= cfg.train.budget_nimg)
            || (cfg.train.budget_seconds > 0.0 && c.total_seconds() >= cfg.train.budget_seconds)
    };
    while c.step * batch < total && !budget_done(&c) {
        // Data: fresh exact samples of the toy at log-normal σ (the super-batch).
        let t = Instant::now();
        let b = toy_batch(
            &mixture,
            &mut noise,
            cfg.train.target,
            cfg.seed,
            c.step,
            cfg.train.batch,
        );
        c.add("data", t);

        // Score and select (online selection only).
        let choice = match selection.as_mut() {
            None => None,
            Some(sel) => {
                let step = c.step;
                let mut redraw = || {
                    let mut n = noise.clone();
                    redraw_noise(&mixture, &b, &mut n, cfg.train.target, cfg.seed, step)
                };
                Some(sel.choose(&learner, &b, &mut redraw, cfg.seed, step, &mut c)?)
            }
        };
        let subset;
        let (sub, scored): (&Batch, bool) = match &choice {
            Some(Choice {
                indices: Some(idx),
                scored,
                ..
            }) => {
                subset = b.subset(idx);
                (&subset, *scored)
            }
            Some(Choice { scored, .. }) => (&b, *scored),
            None => (&b, false),
        };

        // Step: forward, backward, Adam, forced weight normalisation; then the EMA.
        let t = Instant::now();
        let position = c.step * batch;
        let lr = cfg.train.lr.at(position as f64);
        let losses = learner.step(sub, lr)?;
        let mean = losses.mean();
        if !mean.is_finite() {
            return Err(Error::NonFiniteLoss {
                step: c.step,
                value: mean,
                last_good: last_saved,
                dir: run.checkpoints(),
            });
        }
        c.step += 1;
        c.nimg += sub.len() as u64;
        c.nimg_scored += if scored { batch } else { sub.len() as u64 };
        learner.update_ema(c.step * batch, cfg.train.batch);
        c.add("train", t);

        // Noise schedule: observe the per-example x0-errors; adaptive schedules refresh π.
        let t = Instant::now();
        noise.observe(&sub.sigma, &x0_errors(sub, &losses.x0_error));
        c.add("noise", t);
        noise_events(&run, &mut noise, c.step, obs)?;

        // Stats.
        window.add(mean, &sub.sigma);
        let position = c.step * batch;
        let done = position >= total || budget_done(&c);
        if crossed(position, batch, cfg.train.log_every_nimg) || done {
            window.flush(&mut stats, &c, lr, choice.as_ref().map(|ch| ch.selecting))?;
        }

        // Budget snapshots and checkpoint.
        let extra = serde_json::json!({
            "switch": selection.as_ref().map(|sel| &sel.switch),
            "noise": noise.state(),
        });
        let trained_before = c.nimg - sub.len() as u64;
        for label in snapshots_due(cfg, &run, trained_before, &c) {
            let t = Instant::now();
            save_to(&run.snapshots().join(label), &learner, &c, extra.clone(), 1)?;
            c.add("checkpoint", t);
        }
        if crossed(position, batch, cfg.train.checkpoint_every_nimg) || done {
            let t = Instant::now();
            save(&run, cfg, &learner, &c, extra)?;
            c.add("checkpoint", t);
            last_saved = c.step;
        }
        obs.progress(position.min(total), total, mean);
    }

    // Final scatter plot of EMA samples over the ground-truth density.
    let plot = run.samples().join("final.png");
    if !plot.exists() {
        crate::fsutil::create_dir(&run.samples())?;
        let samples = crate::eval::toy::sample_toy(
            learner.ema_inference().as_ref(),
            &mixture,
            &cfg.sampler,
            16_384,
            FINAL_PLOT_SEED,
        )?;
        crate::plot::scatter::scatter_png(
            &mixture,
            &samples,
            &format!("EMA samples after {} images (step {})", c.nimg, c.step),
            &plot,
        )?;
    }
    Ok(Outcome {
        counters: c,
        resumed_from,
        last_loss: window.last_loss,
    })
}

/// Refuses an image run where a toy run is needed.
fn toy_only(dir: &Path, cfg: &RunConfig) -> Result<()> {
    if cfg.data.is_images() {
        return Err(Error::Config(format!(
            "{} is an image run ({}); this command needs a toy run (for images use \
             `curadiff sample` and `curadiff eval images --run`)",
            dir.display(),
            cfg.data.kind
        )));
    }
    Ok(())
}

/// The learner of run `dir` at a budget snapshot (a folder under `RUN/snapshots`), with the
/// counters at that point.
pub fn load_snapshot(dir: &Path, label: &str) -> Result<(RunConfig, ToyLearner, Counters)> {
    let run = RunDir::new(dir);
    let cfg = run.read_config()?;
    toy_only(dir, &cfg)?;
    let mut learner = ToyLearner::new(&cfg, &crate::device::training());
    let folder = run.snapshots().join(label);
    let Some(ck) = checkpoint::latest(&folder)? else {
        return Err(Error::Config(format!(
            "no snapshot in {}",
            folder.display()
        )));
    };
    learner.load_groups(&ck.groups, ck.meta.step)?;
    let c = Counters {
        step: ck.meta.step,
        nimg: ck.meta.nimg,
        nimg_scored: ck.meta.nimg_scored,
        seconds: ck.meta.seconds,
    };
    Ok((cfg, learner, c))
}

/// The learner of run `dir` at its newest checkpoint, with the counters there.
pub fn load_snapshot_latest(dir: &Path) -> Result<(RunConfig, ToyLearner, Counters)> {
    let run = RunDir::new(dir);
    if !run.config().exists() {
        return Err(Error::Config(format!(
            "{} is not a run directory (no config.toml); train one with `curadiff train --out {}`",
            dir.display(),
            dir.display()
        )));
    }
    let cfg = run.read_config()?;
    toy_only(dir, &cfg)?;
    let mut learner = ToyLearner::new(&cfg, &crate::device::training());
    let Some((c, _)) = resume(&run, &mut learner, &mut Quiet, checkpoint::latest)? else {
        return Err(Error::Config(format!(
            "{} has no checkpoint yet; run its training first",
            dir.display()
        )));
    };
    Ok((cfg, learner, c))
}

/// The trained learner of a finished (or partly trained) run, from its newest checkpoint.
pub fn load_learner(dir: &Path) -> Result<(RunConfig, ToyLearner, u64)> {
    let (cfg, learner, c) = load_snapshot_latest(dir)?;
    Ok((cfg, learner, c.step))
}
