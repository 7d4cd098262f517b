//! The one training loop ([`run_task`]) and what every run shares: the run directory, its
//! counters and phases, budgets and snapshots. What differs between the toy and images is a
//! [`Task`] ([`super::toy_task`], [`super::image_run`]).
//!
//! To resume, run the same command again: the run directory's `config.toml` must match, and
//! training continues from the newest checkpoint with bit-identical results.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::checkpoint::{self, CheckpointMeta};
use super::config::RunConfig;
use super::lr::LrClock;
use super::stats::{StatsWindow, StatsWriter};
use super::task::Task;
use crate::curation::reweighter::mean_one;
use crate::diffusion::infonoise::Event;
use crate::diffusion::noise::Schedule;
use crate::error::{Error, Result};

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

    /// The counters a checkpoint stored.
    pub fn of(meta: &CheckpointMeta) -> Self {
        Self {
            step: meta.step,
            nimg: meta.nimg,
            nimg_scored: meta.nimg_scored,
            seconds: meta.seconds.clone(),
        }
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
    /// Each training example's source (clean or corrupted, with kind and strength), one JSON
    /// line per example, when `data.corrupt` is on ([`crate::data::corrupt::apply`]).
    pub fn sources(&self) -> PathBuf {
        self.root.join("data").join("sources.jsonl")
    }
    pub fn samples(&self) -> PathBuf {
        self.root.join("samples")
    }
    /// Budget snapshots: one checkpoint folder per budget point, e.g. `nimg-000001024`.
    pub fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// The config of an existing run; an error naming the folder when it is not one.
    pub fn read_run_config(&self) -> Result<RunConfig> {
        if !self.config().exists() {
            return Err(Error::Config(format!(
                "{} is not a run directory (no config.toml); train one with `curadiff train \
                 --out {}`",
                self.root.display(),
                self.root.display()
            )));
        }
        self.read_config()
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
/// The one change allowed is a longer `train.duration_nimg`: the run is extended (nothing of
/// the learning rate, the EMA, the noise schedule or the data order depends on the
/// duration, so the extended run is the run that had the longer duration from its start).
pub(crate) fn claim(run: &RunDir, cfg: &RunConfig) -> Result<()> {
    crate::fsutil::create_dir(&run.root)?;
    if run.config().exists() {
        let stored = run.read_config()?;
        let mut same_length = cfg.clone();
        same_length.train.duration_nimg = stored.train.duration_nimg;
        if cfg.train.duration_nimg > stored.train.duration_nimg
            && stored.diff(&same_length).is_empty()
        {
            return crate::fsutil::write_atomic(&run.config(), cfg.to_toml()?.as_bytes());
        }
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

/// The snapshot folder name of a seconds budget point.
pub fn seconds_label(p: f64) -> String {
    format!("seconds-{:012.3}", p)
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

/// Trains (or resumes) the run in `dir` to `cfg.train.duration_nimg` images: the toy or the
/// image task through the one loop.
pub fn train(dir: &Path, cfg: &RunConfig, obs: &mut dyn Observer) -> Result<Outcome> {
    if cfg.data.is_images() {
        super::image_run::train(dir, cfg, obs)
    } else {
        super::toy_task::train(dir, cfg, obs)
    }
}

/// The one training loop: resume or start, then per step the phases data → select → reweight → train
/// (step and EMA) → noise → stats → eval → snapshots and checkpoint, until the image budget
/// (`train.duration_nimg`, or `budget_nimg` / `budget_seconds`) is spent. `run` must be
/// claimed for `cfg` and `curate_seconds` are the offline curation seconds booked to a
/// fresh run's `curate` phase.
pub fn run_task<T: Task>(
    run: &RunDir,
    cfg: &RunConfig,
    task: &mut T,
    curate_seconds: f64,
    obs: &mut dyn Observer,
) -> Result<Outcome> {
    let mut noise = cfg.diffusion.noise();
    let resumed = resume(run, task, obs)?;
    let resumed_from = resumed.as_ref().map(|(c, _)| c.step);
    if let Some(step) = resumed_from {
        obs.note(&format!("resuming {} from step {step}", run.root.display()));
    }
    let (mut c, extra) = resumed.unwrap_or_default();
    if resumed_from.is_none() && curate_seconds > 0.0 {
        // Offline curation (e.g. a subset's scoring) is paid for in the run's seconds.
        c.seconds.insert("curate".into(), curate_seconds);
    }
    task.restore_state(&extra, &run.checkpoints())?;
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
    let mut lr_clock = LrClock {
        decay_nimg: match extra.get("lr_decay_nimg") {
            Some(v) => v.as_f64().ok_or_else(|| Error::BadCheckpoint {
                path: run.checkpoints(),
                why: format!("malformed learning-rate position {v}"),
                hint: String::new(),
            })?,
            None => 0.0,
        },
    };

    // The schedules (learning rate, EMA) advance per iteration of a super-batch of `batch`
    // images, as in the seed: selection changes what each iteration trains on, not its
    // position in the schedule (unless `train.lr.selection_scaling` asks for the AJEST image
    // code's scaling). The run ends after `duration_nimg` images of super-batches.
    let budget_done = |c: &Counters| {
        (cfg.train.budget_nimg > 0 && c.nimg >= cfg.train.budget_nimg)
            || (cfg.train.budget_seconds > 0.0 && c.total_seconds() >= cfg.train.budget_seconds)
    };
    while c.step * batch < total && !budget_done(&c) {
        // Data: the super-batch of this step.
        let t = Instant::now();
        let b = task.batch(&mut noise, c.step)?;
        c.add("data", t);

        // Select: the rows to train on (the task books its scoring phases).
        let chosen = task.choose(b, &noise, c.step, &mut c)?;
        let sub = &chosen.batch;
        let n = T::len(sub) as u64;

        // Reweight: per-example loss weights, scaled to mean 1 over the batch.
        let t = Instant::now();
        let weights = match task.weights(sub)? {
            Some(mut w) => {
                mean_one(&mut w)?;
                c.add("reweight", t);
                Some(w)
            }
            None => None,
        };

        // Train: forward, backward, Adam; then the EMA.
        let t = Instant::now();
        let lr = lr_clock.rate(&cfg.train.lr, c.step, batch, n);
        let losses = task.step(sub, weights.as_deref(), lr)?;
        let mean = losses.mean();
        if !mean.is_finite() {
            return Err(Error::NonFiniteLoss {
                step: c.step,
                value: mean,
                last_good: last_saved,
                dir: run.checkpoints(),
            });
        }
        lr_clock.advance(batch, n);
        c.step += 1;
        c.nimg += n;
        c.nimg_scored += if chosen.scored { batch } else { n };
        task.update_ema(c.step * batch, cfg.train.batch);
        c.add("train", t);
        if weights.is_some() {
            let t = Instant::now();
            let warning = task.observe_losses(sub, &losses)?;
            c.add("reweight", t);
            if let Some(w) = warning {
                obs.note(&w);
                super::noise_log::warn(&run.root, c.step, &w)?;
            }
        }

        // Noise schedule: observe the per-example x0-errors (of every scored row of the
        // super-batch under selection); adaptive schedules refresh π, asking for the loss's
        // learned log-variance u(σ) at their bin centres.
        let t = Instant::now();
        let (seen, seen_losses) = chosen.observed(&losses);
        noise.observe_with(
            T::sigma(seen),
            &T::x0_errors(seen, seen_losses),
            &mut |sigma| task.log_variance(sigma),
        )?;
        c.add("noise", t);
        noise_events(run, &mut noise, c.step, obs)?;

        // Stats.
        window.add(mean, T::sigma(sub));
        let position = c.step * batch;
        let done = position >= total || budget_done(&c);
        if crossed(position, batch, cfg.train.log_every_nimg) || done {
            window.flush(&mut stats, &c, lr, chosen.selecting)?;
        }

        // Evaluation at intervals (e.g. sample grids): booked to "eval", outside the
        // training phases, counted in the total.
        if task.eval_due(position, batch, done) {
            let t = Instant::now();
            task.eval(run, &c)?;
            c.add("eval", t);
        }

        // Post-hoc EMA snapshots, budget snapshots and checkpoint (their state is gathered
        // only when one is due).
        let t = Instant::now();
        if task.write_phema(run, position, batch)? {
            c.add("checkpoint", t);
        }
        let extra = || {
            let mut m = task.state();
            m.insert("noise".into(), noise.state());
            if cfg.train.lr.selection_scaling {
                m.insert("lr_decay_nimg".into(), lr_clock.decay_nimg.into());
            }
            serde_json::Value::Object(m)
        };
        for label in snapshots_due(cfg, run, c.nimg - n, &c) {
            let t = Instant::now();
            save_to(&run.snapshots().join(label), task, &c, extra(), 1)?;
            c.add("checkpoint", t);
        }
        if crossed(position, batch, cfg.train.checkpoint_every_nimg) || done {
            let t = Instant::now();
            save_to(
                &run.checkpoints(),
                task,
                &c,
                extra(),
                cfg.train.keep_checkpoints,
            )?;
            c.add("checkpoint", t);
            last_saved = c.step;
        }
        obs.progress(position.min(total), total, mean);
    }
    Ok(Outcome {
        counters: c,
        resumed_from,
        last_loss: window.last_loss,
    })
}

/// Restores a task and the counters from the newest intact checkpoint of `run`, if any.
fn resume<T: Task>(
    run: &RunDir,
    task: &mut T,
    obs: &mut dyn Observer,
) -> Result<Option<(Counters, serde_json::Value)>> {
    let Some(ck) = checkpoint::resume_point(&run.checkpoints())? else {
        return Ok(None);
    };
    ck.warnings.iter().for_each(|w| obs.note(w));
    load_checkpoint(task, &ck).map(Some)
}

/// Loads checkpoint `ck` into `task`: the counters and the checkpoint's `extra`.
pub fn load_checkpoint<T: Task>(
    task: &mut T,
    ck: &checkpoint::Checkpoint,
) -> Result<(Counters, serde_json::Value)> {
    task.load_groups(&ck.groups, ck.meta.step)
        .map_err(|e| Error::BadCheckpoint {
            path: ck.path.clone(),
            why: e.to_string(),
            hint: "it does not fit this config's model".into(),
        })?;
    Ok((Counters::of(&ck.meta), ck.meta.extra.clone()))
}

/// Saves a checkpoint of `task` with counters `c` into `dir`, keeping the newest `keep`.
pub fn save_to<T: Task>(
    dir: &Path,
    task: &T,
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
    checkpoint::save(dir, meta, &task.groups()?, keep)?;
    Ok(())
}
