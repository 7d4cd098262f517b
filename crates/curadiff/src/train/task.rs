//! The seam between the one training loop ([`super::run::run_task`]) and what it trains.
//!
//! A task owns a learner (toy MLP on either engine, or the image U-Net on either engine) and
//! its data, and answers the loop's questions in the loop's order: the super-batch of a step,
//! which of its rows to train on, with which loss weights, one optimiser step on the chosen
//! rows, the EMA, the per-example x0-errors the noise schedule observes (of the whole scored
//! super-batch under selection) and the loss's learned log-variance u(σ), evaluation at
//! intervals, and its parameters and state for checkpoints. Everything else (resume, budgets
//! in images, seconds and snapshots, phases and their seconds, stats, checkpoints, the noise
//! schedule and its state, the NaN guard) lives once in the loop.
//!
//! The seams a curation method plugs into, each typed and tested where it acts on a step:
//! - **examples**: stable ids and a content fingerprint ([`crate::data::fingerprint`]),
//!   recorded in the run's config and checked on resume;
//! - **subset**: `data.subset` ([`crate::data::subset`]), refused on a fingerprint mismatch;
//! - **noise windows**: `data.windows` ([`crate::data::windows`]) with the noise-first walk
//!   of [`super::image_batch::draw_batch`];
//! - **targets**: per-example training pairs ([`crate::curation::targets::Targets`]);
//! - **weights**: per-example loss weights ([`crate::curation::reweighter::Reweighter`]),
//!   scaled to mean 1 by the loop (phase `reweight`);
//! - **reference losses**: any model's per-example losses on the learner's own (x, σ, noise)
//!   ([`super::scorer::Scorer`]), used by the selection seam ([`Task::choose`],
//!   [`super::select`], phases `score` and `select`);
//! - **curation seconds**: offline work that produced the data (subset, windows) is booked
//!   to the `curate` phase, so equal-seconds comparisons pay for it.

use std::collections::BTreeMap;
use std::path::Path;

use super::run::{Counters, RunDir};
use crate::diffusion::loss::Losses;
use crate::diffusion::noise::Schedule;
use crate::error::Result;
use crate::models::params::HostParam;

/// Named parameter groups of a learner (network, EMA, Adam moments), as checkpoints store them.
pub type Groups = BTreeMap<String, Vec<HostParam>>;

/// What the selection seam decided for one step.
pub struct Chosen<B> {
    /// The rows to train on: the whole super-batch or a subset of it.
    pub batch: B,
    /// Whether a forward pass scored the whole super-batch (its images count as scored).
    pub scored: bool,
    /// Whether selection was on this step (`None`: the task has no selection).
    pub selecting: Option<bool>,
    /// The whole super-batch with the learner's losses on it (before the step), when the
    /// learner scored it and `batch` is a subset: the noise schedule observes these rows.
    pub super_batch: Option<(B, Losses)>,
}

impl<B> Chosen<B> {
    /// The whole super-batch, unscored.
    pub fn all(batch: B) -> Self {
        Self {
            batch,
            scored: false,
            selecting: None,
            super_batch: None,
        }
    }

    /// The rows and losses the noise schedule observes: the scored super-batch when
    /// selection trained on a subset of it, else the trained rows with the step's `losses`.
    pub fn observed<'a>(&'a self, losses: &'a Losses) -> (&'a B, &'a Losses) {
        match &self.super_batch {
            Some((b, l)) => (b, l),
            None => (&self.batch, losses),
        }
    }
}

/// A learner with its data, as the loop drives it.
pub trait Task {
    /// A training batch.
    type Batch;

    /// The super-batch of step `step`: a pure function of the run seed, the step and the noise
    /// schedule's state, so that resume is bit-identical.
    fn batch(&mut self, noise: &mut Schedule, step: u64) -> Result<Self::Batch>;

    /// The selection seam: the rows of `b` to train on. Books its own phases to `c`. The
    /// default trains on the whole super-batch.
    fn choose(
        &mut self,
        b: Self::Batch,
        _noise: &Schedule,
        _step: u64,
        _c: &mut Counters,
    ) -> Result<Chosen<Self::Batch>> {
        Ok(Chosen::all(b))
    }

    /// Number of examples in `b`.
    fn len(b: &Self::Batch) -> usize;

    /// σ per example of `b`.
    fn sigma(b: &Self::Batch) -> &[f64];

    /// The reweighting seam: per-example loss weights for the rows of `b` (any scale ≥ 0;
    /// the loop scales them to mean 1). The default, `None`, weighs every example 1.
    fn weights(&mut self, _b: &Self::Batch) -> Result<Option<Vec<f32>>> {
        Ok(None)
    }

    /// The per-example losses the step measured on `b`, for the reweighter; a warning for
    /// the run's log, if any.
    fn observe_losses(&mut self, _b: &Self::Batch, _losses: &Losses) -> Result<Option<String>> {
        Ok(None)
    }

    /// One optimiser step on the mean of `weights`ᵢ·lossᵢ over `b` (`None`: all 1) at
    /// learning rate `lr`; the unweighted per-example losses before the step.
    fn step(&mut self, b: &Self::Batch, weights: Option<&[f32]>, lr: f64) -> Result<Losses>;

    /// The EMA update after a step that brought the schedule position to `position` images.
    fn update_ema(&mut self, position: u64, batch: usize);

    /// Per-example x0-errors ‖y − D‖² per dimension against the clean examples, which the
    /// noise schedules estimate mmse(σ) from.
    fn x0_errors(b: &Self::Batch, losses: &Losses) -> Vec<f64>;

    /// EDM2's learned log-variance u(σ) of the current weights at `sigma`, which divides the
    /// loss weight (λ(σ)/e^{u(σ)}) that an adaptive noise schedule compensates; `None` (the
    /// default) when the loss has none.
    fn log_variance(&self, _sigma: &[f64]) -> Result<Option<Vec<f64>>> {
        Ok(None)
    }

    /// Whether an evaluation is due after the step that reached `position` (`done`: the last
    /// step of this call). The default never evaluates.
    fn eval_due(&self, _position: u64, _batch: u64, _done: bool) -> bool {
        false
    }

    /// Evaluates at an interval (booked to the `eval` phase).
    fn eval(&mut self, _run: &RunDir, _c: &Counters) -> Result<()> {
        Ok(())
    }

    /// Writes the post-hoc EMA snapshot due after the step that reached schedule position
    /// `position` (every `train.phema_every_nimg`); whether one was written. The default keeps
    /// none.
    fn write_phema(&self, _run: &RunDir, _position: u64, _batch: u64) -> Result<bool> {
        Ok(false)
    }

    /// The learner's parameters, EMA and optimiser state.
    fn groups(&self) -> Result<Groups>;

    /// Restores what [`Task::groups`] saved; `step` is the optimiser's step count.
    fn load_groups(&mut self, g: &Groups, step: u64) -> Result<()>;

    /// The task's own checkpoint state (beside the loop's `noise`), e.g. a selection switch.
    fn state(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }

    /// Restores [`Task::state`] from a checkpoint's `extra` (found in `dir`).
    fn restore_state(&mut self, _extra: &serde_json::Value, _dir: &Path) -> Result<()> {
        Ok(())
    }
}
