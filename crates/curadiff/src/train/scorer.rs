//! The reference-loss seam: per-example losses λ(σ)·‖D(x; σ) − target‖² (and the x0-errors
//! ‖D − y‖²) of a model on a batch's own inputs (the same x, σ and noise the learner sees),
//! without a gradient. The online selectors score a super-batch with the learner and a
//! reference through it (RHO, JEST, AJEST's guide); the same scores can drive a reweighter,
//! and the learner's x0-errors on the whole super-batch feed the noise schedule.
//!
//! A scorer is a learner's current weights or its EMA ([`Weights`]), or a frozen model from
//! another run ([`FrozenToy`], [`FrozenImage`]), for the toy and for images alike.

use super::image::{ImageBatch, ImageLearner};
use super::learner::ToyLearner;
use crate::diffusion::loss::{Losses, Weighting};
use crate::diffusion::toy_batch::Batch;
use crate::error::Result;
use crate::models::toy_denoiser::ToyModel;

/// Where a reference run named in a config lives: `dir` as given, or relative to the run
/// directory `run_dir` when it is relative and does not exist from here.
pub fn reference_path(dir: &str, run_dir: &std::path::Path) -> std::path::PathBuf {
    let path = std::path::PathBuf::from(dir.trim());
    if path.is_relative() && !path.exists() {
        run_dir.join(path)
    } else {
        path
    }
}

/// Per-example losses of a model on batches of type `B`.
pub trait Scorer<B> {
    /// The per-example losses on `b` (forward only): the weighted ones the selectors rank
    /// and the x0-errors a noise schedule observes.
    fn losses(&self, b: &B) -> Result<Losses>;
}

/// A learner's current weights (`ema` false) or its EMA weights (`ema` true; the current ones
/// when its EMA is off).
pub struct Weights<'a, L> {
    pub learner: &'a L,
    pub ema: bool,
}

impl Scorer<Batch> for Weights<'_, ToyLearner> {
    fn losses(&self, b: &Batch) -> Result<Losses> {
        if self.ema {
            let w = self.learner.weighting();
            self.learner.ema_inference().losses(b, w)
        } else {
            self.learner.losses(b)
        }
    }
}

impl Scorer<ImageBatch> for Weights<'_, ImageLearner> {
    fn losses(&self, b: &ImageBatch) -> Result<Losses> {
        if self.ema {
            self.learner.ema_losses(b)
        } else {
            self.learner.losses(b)
        }
    }
}

/// A frozen toy model (e.g. a reference run's EMA), scored with the weighting of the run it
/// scores for.
pub struct FrozenToy {
    pub model: Box<dyn ToyModel>,
    pub weighting: Weighting,
}

impl Scorer<Batch> for FrozenToy {
    fn losses(&self, b: &Batch) -> Result<Losses> {
        self.model.losses(b, self.weighting)
    }
}

/// A frozen image learner (e.g. a reference run's), scored with its EMA weights.
pub struct FrozenImage(pub ImageLearner);

impl Scorer<ImageBatch> for FrozenImage {
    fn losses(&self, b: &ImageBatch) -> Result<Losses> {
        self.0.ema_losses(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::image::image_batch;
    use crate::train::image::tests::{fixture, lognormal, tiny};
    use crate::train::presets::preset;

    fn image_learner(ema_sigma_rel: f64) -> (ImageLearner, crate::data::images::ImageSet) {
        let mut cfg = preset("fmnist").unwrap();
        cfg.unet = Some(tiny());
        cfg.train.ema_sigma_rel = ema_sigma_rel;
        let l = crate::train::image_run::learner(&cfg).unwrap();
        (l, fixture(32))
    }

    /// The scores are the losses the training step itself reports for the same batch (the
    /// step returns its per-example losses before the update), for the current weights; the
    /// EMA scorer equals a frozen copy of the learner, and with the EMA off it equals the
    /// current weights.
    #[test]
    fn reference_losses_equal_the_learners_when_the_reference_is_the_learner() {
        let (mut l, set) = image_learner(0.05);
        for step in 0..3 {
            let b = image_batch(&set, &mut lognormal(), 0.1, 0, step, 16).unwrap();
            let scored = Weights {
                learner: &l,
                ema: false,
            }
            .losses(&b)
            .unwrap();
            let stepped = l.step(&b, 1e-2).unwrap();
            // The training forward (which keeps activations for the backward pass) and the
            // scoring forward are different kernels: equal up to f32 rounding, for the
            // weighted losses and for the x0-errors (what a noise schedule observes).
            let pairs = scored
                .weighted
                .iter()
                .zip(&stepped.weighted)
                .chain(scored.x0_error.iter().zip(&stepped.x0_error));
            for (s, t) in pairs {
                assert!((s - t).abs() <= 1e-5 * t.abs(), "step {step}: {s} vs {t}");
            }
            l.update_ema((step + 1) * 16, 16);
        }
        let b = image_batch(&set, &mut lognormal(), 0.1, 0, 9, 16).unwrap();
        let ema = Weights {
            learner: &l,
            ema: true,
        }
        .losses(&b)
        .unwrap();
        let current = Weights {
            learner: &l,
            ema: false,
        }
        .losses(&b)
        .unwrap();
        assert_ne!(
            ema, current,
            "three steps move the weights away from their EMA"
        );
        let mut frozen = image_learner(0.05).0;
        frozen.load_groups(&l.to_groups().unwrap(), 3).unwrap();
        assert_eq!(FrozenImage(frozen).losses(&b).unwrap(), ema);
        // EMA off: the EMA scorer is the current weights.
        let (mut off, _) = image_learner(0.0);
        off.step(&b, 1e-2).unwrap();
        let w = |ema| Weights { learner: &off, ema }.losses(&b).unwrap();
        assert_eq!(w(true), w(false));
    }

    #[test]
    fn toy_reference_losses_equal_the_learners() {
        use crate::diffusion::noise::LogNormal;
        use crate::diffusion::toy_batch::toy_batch;
        let cfg = preset("toy").unwrap();
        let l = ToyLearner::new(&cfg, &crate::device::training());
        let mixture = crate::data::toy2d::Mixture::tree(cfg.data.classes);
        let mut noise = LogNormal {
            p_mean: -1.2,
            p_std: 1.2,
        };
        let b = toy_batch(&mixture, &mut noise, cfg.train.target, 0, 0, 64);
        let current = Weights {
            learner: &l,
            ema: false,
        }
        .losses(&b)
        .unwrap();
        let frozen = FrozenToy {
            model: l.ema_inference(),
            weighting: cfg.diffusion.weighting,
        };
        // A fresh learner's EMA is its weights.
        assert_eq!(frozen.losses(&b).unwrap(), current);
        assert_eq!(current, l.losses(&b).unwrap());
        assert!(current.weighted.iter().all(|v| v.is_finite() && *v > 0.0));
    }
}
