//! Online selection inside the training loop: score the super-batch with the learner (and the
//! reference when needed, through the [`Scorer`] seam), let the schedule decide whether to
//! select, and choose the mini-batch. The same phase serves any batch type (toy points,
//! images). Every second spent here is booked as `score` or `select`.

use std::path::Path;
use std::time::Instant;

use super::run::Counters;
use super::scorer::{reference_path, Scorer};
use super::task::Chosen;
use crate::curation::jest::Jest;
use crate::curation::schedule::{Schedule, Switch};
use crate::curation::select_config::{Method, SelectConfig};
use crate::curation::selector::{Full, Rho, Scores, Selector, Uniform};
use crate::diffusion::loss::Losses;
use crate::error::{Error, Result};
use crate::rng::{Rng, Stream};

/// The selection phase of the loop, for batches of type `B`.
pub struct OnlineSelection<B> {
    selector: Box<dyn Selector>,
    pub switch: Switch,
    reference: Reference<B>,
    same_noise: bool,
}

enum Reference<B> {
    None,
    LearnerEma,
    Fixed(Box<dyn Scorer<B>>),
}

/// Loads a reference run's model as a scorer (the task knows how to read its runs).
pub type LoadReference<'a, B> = &'a dyn Fn(&Path) -> Result<Box<dyn Scorer<B>>>;

/// What the selection phase decided for one step.
pub struct Choice {
    /// The rows to train on; `None` for the whole super-batch.
    pub indices: Option<Vec<usize>>,
    /// Whether selection was on.
    pub selecting: bool,
    /// Whether any forward pass scored the super-batch.
    pub scored: bool,
    /// The learner's losses on the whole super-batch, when it scored it.
    pub learner: Option<Losses>,
}

impl<B> OnlineSelection<B> {
    /// The selection phase of `cfg`, or `None` when the method is "none" with no schedule.
    /// `run_dir` resolves a relative reference path, which `load` reads.
    pub fn new(
        cfg: &SelectConfig,
        run_dir: &Path,
        load: LoadReference<'_, B>,
    ) -> Result<Option<Self>> {
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
                let path = reference_path(dir, run_dir);
                Reference::Fixed(load(&path).map_err(|e| match e {
                    e @ Error::InvalidValue { .. } => e,
                    e => Error::InvalidValue {
                        field: "select.reference".into(),
                        why: format!("cannot load reference run {}: {e}", path.display()),
                    },
                })?)
            }
        };
        Ok(Some(Self {
            selector,
            switch: Switch::new(cfg.schedule),
            reference,
            same_noise: cfg.same_noise,
        }))
    }

    /// Scores the super-batch as needed and chooses the rows to train on: `learner` and
    /// `learner_ema` score with the learner's current and EMA weights. `redraw` gives a
    /// batch with re-drawn noise for the reference when `same_noise` is off.
    #[allow(clippy::too_many_arguments)]
    pub fn choose(
        &mut self,
        learner: &dyn Scorer<B>,
        learner_ema: &dyn Scorer<B>,
        batch: &B,
        len: usize,
        redraw: &mut dyn FnMut(&B) -> B,
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
            Some(learner.losses(batch)?)
        } else {
            None
        };
        let reference_losses = if need_reference {
            let scorer: &dyn Scorer<B> = match &self.reference {
                Reference::Fixed(d) => d.as_ref(),
                Reference::LearnerEma => learner_ema,
                Reference::None => {
                    return Err(Error::InvalidValue {
                        field: "select.reference".into(),
                        why: "a reference model is needed".into(),
                    })
                }
            };
            Some(if self.same_noise {
                scorer.losses(batch)?.weighted
            } else {
                scorer.losses(&redraw(batch))?.weighted
            })
        } else {
            None
        };
        c.add("score", t);
        if watching {
            let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len().max(1) as f64;
            if let (Some(l), Some(r)) = (&learner_losses, &reference_losses) {
                self.switch.observe(step, mean(&l.weighted), mean(r));
            }
        }
        let selecting = self.switch.selecting();
        let scored = learner_losses.is_some() || reference_losses.is_some();
        if !selecting {
            return Ok(Choice {
                indices: None,
                selecting,
                scored,
                learner: learner_losses,
            });
        }
        let t = Instant::now();
        let zeros;
        let learner_ref: &[f32] = match &learner_losses {
            Some(l) => &l.weighted,
            None => {
                zeros = vec![0.0; len];
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
            learner: learner_losses,
        })
    }
}

/// The selection seam of a task ([`super::task::Task::choose`]) with an optional selection
/// phase: the whole super-batch without one, else the rows `sel` chooses (`subset` cuts
/// them out of `b`). When the learner scored `b` and a subset was chosen, `b` and those
/// losses go along for the noise schedule, which must see every scored row, not the chosen
/// ones (a biased sample of σ and error).
#[allow(clippy::too_many_arguments)]
pub fn choose_rows<B>(
    sel: Option<&mut OnlineSelection<B>>,
    learner: &dyn Scorer<B>,
    learner_ema: &dyn Scorer<B>,
    b: B,
    len: usize,
    redraw: &mut dyn FnMut(&B) -> B,
    subset: fn(&B, &[usize]) -> B,
    seed: u64,
    step: u64,
    c: &mut Counters,
) -> Result<Chosen<B>> {
    let Some(sel) = sel else {
        return Ok(Chosen::all(b));
    };
    let choice = sel.choose(learner, learner_ema, &b, len, redraw, seed, step, c)?;
    let (batch, super_batch) = match (choice.indices, choice.learner) {
        (Some(idx), Some(l)) => (subset(&b, &idx), Some((b, l))),
        (Some(idx), None) => (subset(&b, &idx), None),
        (None, _) => (b, None),
    };
    Ok(Chosen {
        batch,
        scored: choice.scored,
        selecting: Some(choice.selecting),
        super_batch,
    })
}

/// Restores the schedule switch of `sel` from a checkpoint's `extra` (key `switch`).
pub fn restore_switch<B>(
    sel: Option<&mut OnlineSelection<B>>,
    extra: &serde_json::Value,
    dir: &Path,
) -> Result<()> {
    if let (Some(sel), Some(sw)) = (sel, extra.get("switch")) {
        sel.switch = serde_json::from_value(sw.clone()).map_err(|e| Error::BadCheckpoint {
            path: dir.to_path_buf(),
            why: format!("malformed selection state: {e}"),
            hint: String::new(),
        })?;
    }
    Ok(())
}
