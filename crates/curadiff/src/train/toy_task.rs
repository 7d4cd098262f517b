//! The toy task: the tree toy's exact samples, the toy learner (burn or fused MLP), online
//! batch selection, and the readers of toy runs. The loop is [`super::run::run_task`].

use std::path::Path;

use super::checkpoint;
use super::config::RunConfig;
use super::learner::ToyLearner;
use super::run::{claim, load_checkpoint, run_task, Counters, Observer, Outcome, RunDir};
use super::scorer::{FrozenToy, Scorer, Weights};
use super::select::{choose_rows, restore_switch, OnlineSelection};
use super::task::{Chosen, Groups, Task};
use crate::data::toy2d::Mixture;
use crate::diffusion::loss::{LossTarget, Losses};
use crate::diffusion::noise::Schedule;
use crate::diffusion::toy_batch::{redraw_noise, toy_batch, Batch};
use crate::error::{Error, Result};

/// The toy learner on fresh exact samples of the tree mixture.
pub struct ToyTask {
    pub learner: ToyLearner,
    mixture: Mixture,
    target: LossTarget,
    seed: u64,
    batch: usize,
    selection: Option<OnlineSelection<Batch>>,
}

impl ToyTask {
    /// The task of `cfg`; `run_dir` resolves a relative selection reference.
    pub fn new(cfg: &RunConfig, run_dir: &Path) -> Result<Self> {
        let mut t = Self::reader(cfg);
        let weighting = cfg.diffusion.weighting;
        let load = |path: &Path| -> Result<Box<dyn Scorer<Batch>>> {
            let (_, learner, _) = load_learner(path)?;
            Ok(Box::new(FrozenToy {
                model: learner.ema_inference(),
                weighting,
            }))
        };
        t.selection = OnlineSelection::new(&cfg.select, run_dir, &load)?;
        Ok(t)
    }

    /// The task of `cfg` without its selection phase, for reading checkpoints.
    fn reader(cfg: &RunConfig) -> Self {
        Self {
            learner: ToyLearner::new(cfg, &crate::device::training()),
            mixture: Mixture::tree(cfg.data.classes),
            target: cfg.train.target,
            seed: cfg.seed,
            batch: cfg.train.batch,
            selection: None,
        }
    }
}

impl Task for ToyTask {
    type Batch = Batch;

    fn batch(&mut self, noise: &mut Schedule, step: u64) -> Result<Batch> {
        Ok(toy_batch(
            &self.mixture,
            noise,
            self.target,
            self.seed,
            step,
            self.batch,
        ))
    }

    fn choose(
        &mut self,
        b: Batch,
        noise: &Schedule,
        step: u64,
        c: &mut Counters,
    ) -> Result<Chosen<Batch>> {
        let (mixture, target, seed) = (&self.mixture, self.target, self.seed);
        let mut redraw = |b: &Batch| {
            let mut n = noise.clone();
            redraw_noise(mixture, b, &mut n, target, seed, step)
        };
        let len = b.len();
        choose_rows(
            self.selection.as_mut(),
            &Weights {
                learner: &self.learner,
                ema: false,
            },
            &Weights {
                learner: &self.learner,
                ema: true,
            },
            b,
            len,
            &mut redraw,
            Batch::subset,
            seed,
            step,
            c,
        )
    }

    fn len(b: &Batch) -> usize {
        b.len()
    }

    fn sigma(b: &Batch) -> &[f64] {
        &b.sigma
    }

    fn step(&mut self, b: &Batch, weights: Option<&[f32]>, lr: f64) -> Result<Losses> {
        if weights.is_some() {
            return Err(Error::Config(
                "the toy learner trains on unweighted losses (per-example weights are for \
                 image data)"
                    .into(),
            ));
        }
        self.learner.step(b, lr)
    }

    fn update_ema(&mut self, position: u64, batch: usize) {
        self.learner.update_ema(position, batch);
    }

    /// The step's error is against its target; with the exact target E[y|x] the two differ
    /// by ‖y − E[y|x]‖² plus a cross term of zero mean, so that gap is added (exact in
    /// expectation; zero for denoising score matching).
    fn x0_errors(b: &Batch, losses: &Losses) -> Vec<f64> {
        let d = b.dim;
        losses
            .x0_error
            .iter()
            .enumerate()
            .map(|(i, &e)| {
                let gap: f64 = (0..d)
                    .map(|j| (b.clean[i * d + j] - b.target[i * d + j]).powi(2))
                    .sum();
                e as f64 + gap / d as f64
            })
            .collect()
    }

    fn groups(&self) -> Result<Groups> {
        self.learner.to_groups()
    }

    fn load_groups(&mut self, g: &Groups, step: u64) -> Result<()> {
        self.learner.load_groups(g, step)
    }

    fn state(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        let switch = self.selection.as_ref().map(|sel| &sel.switch);
        m.insert(
            "switch".into(),
            serde_json::to_value(switch).unwrap_or(serde_json::Value::Null),
        );
        m
    }

    fn restore_state(&mut self, extra: &serde_json::Value, dir: &Path) -> Result<()> {
        restore_switch(self.selection.as_mut(), extra, dir)
    }
}

/// Trains (or resumes) the toy run in `dir`.
pub fn train(dir: &Path, cfg: &RunConfig, obs: &mut dyn Observer) -> Result<Outcome> {
    cfg.validate()?;
    let run = RunDir::new(dir);
    claim(&run, cfg)?;
    let mut task = ToyTask::new(cfg, dir)?;
    run_task(&run, cfg, &mut task, 0.0, obs)
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

/// The learner of toy run `dir` from the newest checkpoint in `folder`, with the counters.
fn read(dir: &Path, folder: &Path, what: &str) -> Result<(RunConfig, ToyLearner, Counters)> {
    let run = RunDir::new(dir);
    let cfg = run.read_run_config()?;
    toy_only(dir, &cfg)?;
    let mut task = ToyTask::reader(&cfg);
    let Some(ck) = checkpoint::latest(folder)? else {
        return Err(Error::Config(format!("{} has no {what}", folder.display())));
    };
    let (c, _) = load_checkpoint(&mut task, &ck)?;
    Ok((cfg, task.learner, c))
}

/// The learner of run `dir` at a budget snapshot (a folder under `RUN/snapshots`), with the
/// counters at that point.
pub fn load_snapshot(dir: &Path, label: &str) -> Result<(RunConfig, ToyLearner, Counters)> {
    read(dir, &RunDir::new(dir).snapshots().join(label), "snapshot")
}

/// The learner of run `dir` at its newest checkpoint, with the counters there.
pub fn load_snapshot_latest(dir: &Path) -> Result<(RunConfig, ToyLearner, Counters)> {
    read(
        dir,
        &RunDir::new(dir).checkpoints(),
        "checkpoint yet; run its training first",
    )
}

/// The trained learner of a finished (or partly trained) run, from its newest checkpoint.
pub fn load_learner(dir: &Path) -> Result<(RunConfig, ToyLearner, u64)> {
    let (cfg, learner, c) = load_snapshot_latest(dir)?;
    Ok((cfg, learner, c.step))
}
