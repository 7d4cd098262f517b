//! Online selection inside the training loop: score the super-batch with the learner (and the
//! reference when needed), let the schedule decide whether to select, and choose the
//! mini-batch. Every second spent here is booked as `score` or `select`.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::learner::ToyLearner;
use super::run::Counters;
use crate::curation::jest::{Jest, JestForm};
use crate::curation::schedule::{Schedule, Switch};
use crate::curation::selector::{Full, Rho, Scores, Selector, Uniform};
use crate::diffusion::loss::Weighting;
use crate::diffusion::toy_batch::Batch;
use crate::error::{Error, Result};
use crate::models::toy_denoiser::ToyModel;
use crate::rng::{Rng, Stream};

/// The selection method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Train on the whole batch (no selection).
    None,
    /// A uniformly random sub-batch of ⌊B(1 − f)⌋.
    Uniform,
    /// RHO-loss: the top ⌊B(1 − f)⌋ by learner − reference loss.
    Rho,
    /// JEST joint chunked sampling on learnability (AJEST when the reference is the guide).
    Jest,
}

/// Online batch selection. `train.batch` is the super-batch B.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectConfig {
    /// "none", "uniform", "rho" or "jest".
    pub method: Method,
    /// f, the fraction of the super-batch filtered out (0.8 trains on 20%).
    pub filter_ratio: f64,
    /// N, JEST's number of chunks.
    pub chunks: usize,
    /// JEST's learnability form: "linear" (O(B)) or "pairwise" (O(B²)).
    pub form: JestForm,
    /// "always", "early" (until the learner beats the reference) or "late" (after).
    pub schedule: Schedule,
    /// The reference model: a run directory (for AJEST, the autoguidance guide), or "ema"
    /// for the learner's own EMA. Empty when no reference is needed.
    pub reference: String,
    /// Whether the reference is scored at the learner's σ and noise (true) or at re-drawn
    /// ones for the same clean examples (false, as the seed's image code does).
    pub same_noise: bool,
}

impl Default for SelectConfig {
    fn default() -> Self {
        Self {
            method: Method::None,
            filter_ratio: 0.8,
            chunks: 16,
            form: JestForm::Linear,
            schedule: Schedule::Always,
            reference: String::new(),
            same_noise: true,
        }
    }
}

impl SelectConfig {
    /// Whether any reference losses are ever needed.
    pub fn needs_reference(&self) -> bool {
        matches!(self.method, Method::Rho | Method::Jest) || self.schedule != Schedule::Always
    }

    /// Checks the fields; errors name the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |f: &str, why: String| Error::InvalidValue {
            field: format!("select.{f}"),
            why,
        };
        if !(self.filter_ratio.is_finite() && (0.0..1.0).contains(&self.filter_ratio)) {
            return Err(bad(
                "filter_ratio",
                format!("must be in [0, 1), got {}", self.filter_ratio),
            ));
        }
        if self.chunks == 0 {
            return Err(bad("chunks", "must be at least 1".into()));
        }
        if self.needs_reference() && self.reference.trim().is_empty() {
            return Err(bad(
                "reference",
                "this method or schedule compares against a reference model: set it to a run \
                 directory (for AJEST, the guide) or to \"ema\""
                    .into(),
            ));
        }
        Ok(())
    }
}

/// The selection phase of the loop.
pub struct OnlineSelection {
    selector: Box<dyn Selector>,
    pub switch: Switch,
    reference: Reference,
    same_noise: bool,
    weighting: Weighting,
}

enum Reference {
    None,
    LearnerEma,
    Fixed(Box<dyn ToyModel>),
}

/// What the selection phase decided for one step.
pub struct Choice {
    /// The rows to train on; `None` for the whole super-batch.
    pub indices: Option<Vec<usize>>,
    /// Whether selection was on.
    pub selecting: bool,
    /// Whether any forward pass scored the super-batch.
    pub scored: bool,
}

impl OnlineSelection {
    /// The selection phase of `cfg`, or `None` when the method is "none" with no schedule.
    /// `run_dir` resolves a relative reference path.
    pub fn new(cfg: &SelectConfig, weighting: Weighting, run_dir: &Path) -> Result<Option<Self>> {
        cfg.validate()?;
        if cfg.method == Method::None && cfg.schedule == Schedule::Always {
            return Ok(None);
        }
        let selector: Box<dyn Selector> = match cfg.method {
            Method::None => Box::new(Full),
            Method::Uniform => Box::new(Uniform {
                filter_ratio: cfg.filter_ratio,
            }),
            Method::Rho => Box::new(Rho {
                filter_ratio: cfg.filter_ratio,
            }),
            Method::Jest => Box::new(Jest {
                filter_ratio: cfg.filter_ratio,
                chunks: cfg.chunks,
                form: cfg.form,
            }),
        };
        let reference = match cfg.reference.trim() {
            "" => Reference::None,
            "ema" => Reference::LearnerEma,
            dir => {
                let mut path = PathBuf::from(dir);
                if path.is_relative() && !path.exists() {
                    path = run_dir.join(dir);
                }
                let (_, learner, _) =
                    super::toy_task::load_learner(&path).map_err(|e| Error::InvalidValue {
                        field: "select.reference".into(),
                        why: format!("cannot load reference run {}: {e}", path.display()),
                    })?;
                Reference::Fixed(learner.ema_inference())
            }
        };
        Ok(Some(Self {
            selector,
            switch: Switch::new(cfg.schedule),
            reference,
            same_noise: cfg.same_noise,
            weighting,
        }))
    }

    /// Scores the super-batch as needed and chooses the rows to train on. `redraw` gives the
    /// batch with re-drawn noise for the reference when `same_noise` is off.
    pub fn choose(
        &mut self,
        learner: &ToyLearner,
        batch: &Batch,
        redraw: &mut dyn FnMut() -> Batch,
        seed: u64,
        step: u64,
        c: &mut Counters,
    ) -> Result<Choice> {
        let selecting = self.switch.selecting();
        let watching = self.switch.watching();
        let need_learner = (selecting && self.selector.needs_learner()) || watching;
        let need_reference = (selecting && self.selector.needs_reference()) || watching;
        let t = Instant::now();
        let learner_losses = if need_learner {
            Some(learner.losses(batch)?.weighted)
        } else {
            None
        };
        let reference_losses = if need_reference {
            let scored = if self.same_noise {
                batch.clone()
            } else {
                redraw()
            };
            let own;
            let den: &dyn ToyModel = match &self.reference {
                Reference::Fixed(d) => d.as_ref(),
                Reference::LearnerEma => {
                    own = learner.ema_inference();
                    own.as_ref()
                }
                Reference::None => {
                    return Err(Error::InvalidValue {
                        field: "select.reference".into(),
                        why: "a reference model is needed".into(),
                    })
                }
            };
            Some(den.losses(&scored, self.weighting)?.weighted)
        } else {
            None
        };
        c.add("score", t);
        if watching {
            let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len().max(1) as f64;
            if let (Some(l), Some(r)) = (&learner_losses, &reference_losses) {
                self.switch.observe(step, mean(l), mean(r));
            }
        }
        let selecting = self.switch.selecting();
        let scored = learner_losses.is_some() || reference_losses.is_some();
        if !selecting {
            return Ok(Choice {
                indices: None,
                selecting,
                scored,
            });
        }
        let t = Instant::now();
        let zeros;
        let learner_ref: &[f32] = match &learner_losses {
            Some(l) => l,
            None => {
                zeros = vec![0.0; batch.len()];
                &zeros
            }
        };
        let sel = self.selector.select(
            &Scores {
                learner: learner_ref,
                reference: reference_losses.as_deref(),
            },
            &mut Rng::new(seed, Stream::Select, step),
        );
        c.add("select", t);
        Ok(Choice {
            indices: Some(sel.indices),
            selecting,
            scored,
        })
    }
}
