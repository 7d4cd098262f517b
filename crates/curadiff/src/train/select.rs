//! Online selection inside the training loop: score the super-batch with the learner (and the
//! reference when needed), let the schedule decide whether to select, and choose the
//! mini-batch. Every second spent here is booked as `score` or `select`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::learner::ToyLearner;
use super::run::Counters;
use crate::curation::jest::Jest;
use crate::curation::schedule::{Schedule, Switch};
use crate::curation::select_config::{Method, SelectConfig};
use crate::curation::selector::{Full, Rho, Scores, Selector, Uniform};
use crate::diffusion::loss::Weighting;
use crate::diffusion::toy_batch::Batch;
use crate::error::{Error, Result};
use crate::models::toy_denoiser::ToyModel;
use crate::rng::{Rng, Stream};

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
