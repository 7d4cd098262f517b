//! The toy learner: network, optimiser state and EMA, with forward-only per-example losses
//! (for scoring a super-batch) and a training step on a (sub-)batch.

use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use std::collections::BTreeMap;

use super::config::RunConfig;
use super::ema;
use super::fused_learner::FusedLearner;
use super::optim::Adam;
use super::params::{self, HostParam};
use crate::diffusion::loss::{self, Weighting};
use crate::diffusion::toy_batch::Batch;
use crate::error::{Error, Result};
use crate::models::mlp::Engine;
pub use crate::models::toy_denoiser::{losses_of, ToyModel};
use crate::models::toy_denoiser::{per_example_losses, ToyDenoiser};

pub use crate::diffusion::loss::Losses;

/// Network + Adam + EMA of one toy run, on burn (any backend, both model forms).
pub struct BurnLearner {
    /// The trained network (on the autodiff device).
    pub den: ToyDenoiser,
    pub adam: Adam,
    /// EMA parameters, flat, in declaration order; `None` when the EMA is disabled.
    pub ema: Option<Vec<Tensor<1>>>,
    gamma: f64,
    weighting: Weighting,
    negative_gain: bool,
}

fn read(t: Tensor<1>, what: &str) -> Result<Vec<f32>> {
    t.try_into_vec_as::<f32>()
        .map_err(|e| Error::Model(format!("cannot read {what}: {e:?}")))
}

impl BurnLearner {
    /// A fresh learner for `cfg` on `device` (an autodiff device).
    pub fn new(cfg: &RunConfig, device: &Device) -> Self {
        let net = cfg.model.init(cfg.seed, device);
        let ema = (cfg.train.ema_sigma_rel > 0.0).then(|| params::to_flat(&net));
        Self {
            den: ToyDenoiser {
                net,
                sigma_data: cfg.diffusion.sigma_data,
            },
            adam: Adam::new(cfg.train.beta1, cfg.train.beta2, cfg.train.eps),
            ema,
            gamma: if cfg.train.ema_sigma_rel > 0.0 {
                ema::gamma_from_sigma_rel(cfg.train.ema_sigma_rel)
            } else {
                0.0
            },
            weighting: cfg.diffusion.weighting,
            negative_gain: cfg.model.negative_gain,
        }
    }

    /// Forward-only per-example losses of the current weights (no gradient).
    pub fn losses(&self, batch: &Batch) -> Result<Losses> {
        losses_of(&self.inference(), batch, self.weighting)
    }

    /// One optimiser step on `batch` at learning rate `lr`, minimising the mean weighted loss;
    /// returns the per-example losses before the step.
    pub fn step(&mut self, batch: &Batch, lr: f64) -> Result<Losses> {
        let (l, grads) = self.loss_and_grads(batch);
        let net = self.den.net.clone();
        self.den.net = self.adam.step(net, &grads, lr);
        if self.negative_gain {
            let g = self.den.net.gain.clone();
            self.den.net.gain = g.map(|t| {
                let grad = t.is_require_grad();
                let fresh = Tensor::from_inner(t.inner().abs().neg());
                if grad {
                    fresh.require_grad()
                } else {
                    fresh
                }
            });
        }
        Ok(Losses {
            weighted: read(l.weighted.inner(), "the per-example loss")?,
            x0_error: read(l.x0_error.inner(), "the per-example x0-error")?,
        })
    }

    /// Per-example losses and the gradients of their mean with respect to the network.
    pub(crate) fn loss_and_grads(&self, batch: &Batch) -> (loss::PerExample, GradientsParams) {
        let device = self.den.net.gain.val().device();
        let l = per_example_losses(&self.den, batch, self.weighting, &device);
        let total = l.weighted.clone().mean();
        let grads = GradientsParams::from_grads(total.backward(), &self.den.net);
        (l, grads)
    }

    /// EMA update after a step of `batch` images that brought the count to `nimg`.
    pub fn update_ema(&mut self, nimg: u64, batch: usize) {
        let Some(ema) = self.ema.as_mut() else {
            return;
        };
        let beta = ema::beta(self.gamma, nimg as f64, batch as f64);
        let cur = params::to_flat(&self.den.net);
        for (e, p) in ema.iter_mut().zip(cur) {
            *e = e.clone().mul_scalar(beta) + p.mul_scalar(1.0 - beta);
        }
    }

    /// The current weights as an inference denoiser (no autodiff).
    pub fn inference(&self) -> ToyDenoiser {
        ToyDenoiser {
            net: burn::module::Module::valid(&self.den.net),
            sigma_data: self.den.sigma_data,
        }
    }

    /// The EMA weights as an inference denoiser (the raw weights when the EMA is off).
    pub fn ema_inference(&self) -> ToyDenoiser {
        let mut d = self.inference();
        if let Some(ema) = &self.ema {
            d.net = params::from_flat(d.net, ema);
        }
        d
    }

    /// Everything a checkpoint needs: "net", "ema", "adam_m", "adam_v".
    pub fn to_groups(&self) -> Result<BTreeMap<String, Vec<HostParam>>> {
        params::learner_groups(&self.den.net, self.ema.as_deref(), &self.adam)
    }

    /// Restores network, EMA and Adam moments from checkpoint groups; `adam_t` steps taken.
    pub fn load_groups(&mut self, g: &BTreeMap<String, Vec<HostParam>>, adam_t: u64) -> Result<()> {
        let device = self.den.net.gain.val().device().without_autodiff();
        let net = self.den.net.clone();
        self.den.net =
            params::restore_learner(net, &mut self.ema, &mut self.adam, g, adam_t, &device)?;
        Ok(())
    }
}

/// The toy learner on the engine the config names.
pub enum ToyLearner {
    Burn(BurnLearner),
    Fused(FusedLearner),
}

impl ToyLearner {
    /// A fresh learner for `cfg`; `device` is used by the burn engine (an autodiff device).
    pub fn new(cfg: &RunConfig, device: &Device) -> Self {
        match cfg.model.engine {
            Engine::Burn => ToyLearner::Burn(BurnLearner::new(cfg, device)),
            Engine::Fused => ToyLearner::Fused(FusedLearner::new(cfg, device)),
        }
    }

    /// The loss weighting λ(σ) the learner trains with.
    pub fn weighting(&self) -> Weighting {
        match self {
            ToyLearner::Burn(l) => l.weighting,
            ToyLearner::Fused(l) => l.weighting(),
        }
    }

    /// Forward-only per-example losses of the current weights.
    pub fn losses(&self, batch: &Batch) -> Result<Losses> {
        match self {
            ToyLearner::Burn(l) => l.losses(batch),
            ToyLearner::Fused(l) => l.losses(batch),
        }
    }

    /// One optimiser step on `batch` at `lr`; per-example losses before the step.
    pub fn step(&mut self, batch: &Batch, lr: f64) -> Result<Losses> {
        match self {
            ToyLearner::Burn(l) => l.step(batch, lr),
            ToyLearner::Fused(l) => l.step(batch, lr),
        }
    }

    /// EMA update after a step of `batch` images that brought the count to `nimg`.
    pub fn update_ema(&mut self, nimg: u64, batch: usize) {
        match self {
            ToyLearner::Burn(l) => l.update_ema(nimg, batch),
            ToyLearner::Fused(l) => l.update_ema(nimg, batch),
        }
    }

    /// The current weights as an inference model.
    pub fn inference(&self) -> Box<dyn ToyModel> {
        match self {
            ToyLearner::Burn(l) => Box::new(l.inference()),
            ToyLearner::Fused(l) => Box::new(l.inference()),
        }
    }

    /// The EMA weights as an inference model.
    pub fn ema_inference(&self) -> Box<dyn ToyModel> {
        match self {
            ToyLearner::Burn(l) => Box::new(l.ema_inference()),
            ToyLearner::Fused(l) => Box::new(l.ema_inference()),
        }
    }

    /// Checkpoint groups "net", "ema", "adam_m", "adam_v" (the same for both engines).
    pub fn to_groups(&self) -> Result<BTreeMap<String, Vec<HostParam>>> {
        match self {
            ToyLearner::Burn(l) => l.to_groups(),
            ToyLearner::Fused(l) => Ok(l.to_groups()),
        }
    }

    /// Restores from checkpoint groups; `adam_t` optimiser steps taken.
    pub fn load_groups(&mut self, g: &BTreeMap<String, Vec<HostParam>>, adam_t: u64) -> Result<()> {
        match self {
            ToyLearner::Burn(l) => l.load_groups(g, adam_t),
            ToyLearner::Fused(l) => l.load_groups(g, adam_t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::toy2d::{Classes, Mixture};
    use crate::diffusion::noise::LogNormal;
    use crate::diffusion::toy_batch::toy_batch;
    use crate::models::mlp::Output;
    use crate::train::config::LossTarget;
    use crate::train::presets::preset;
    use burn::module::{Module, ModuleVisitor, Param};

    struct Grads<'a>(&'a GradientsParams, Vec<Vec<f32>>);
    impl ModuleVisitor for Grads<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let g = self
                .0
                .get::<D>(p.id)
                .map(|t| t.try_into_vec_as::<f32>().unwrap());
            self.1.push(g.unwrap_or_default());
        }
    }

    #[test]
    fn weight_gradients_match_finite_differences() {
        // Central differences of the mean loss in f32 (h = 1e-2) against autodiff through
        // both model forms, including the energy form's explicit input-gradient graph.
        for output in [Output::Energy, Output::Denoiser] {
            let mut cfg = preset("toy").unwrap();
            cfg.model.width = 8;
            cfg.model.output = output;
            let mut l = BurnLearner::new(&cfg, &crate::device::training());
            let mut host = params::to_host(&l.den.net).unwrap();
            host.iter_mut().find(|p| p.name == "gain").unwrap().data[0] = 0.8;
            l.den.net = params::from_host(l.den.net.clone(), &host).unwrap();
            let m = Mixture::tree(Classes::A);
            let mut noise = LogNormal {
                p_mean: -1.0,
                p_std: 1.0,
            };
            let b = toy_batch(&m, &mut noise, LossTarget::Exact, 0, 0, 128);
            let (_, grads) = l.loss_and_grads(&b);
            let mut g = Grads(&grads, Vec::new());
            l.den.net.visit(&mut g);
            let loss_at = |hp: &[HostParam]| {
                let net = params::from_host(l.den.net.clone(), hp).unwrap();
                let d = ToyDenoiser {
                    net: net.valid(),
                    sigma_data: 0.5,
                };
                losses_of(&d, &b, Weighting::Score).unwrap().mean()
            };
            let mut checked = 0;
            for (pi, p) in host.iter().enumerate() {
                for k in [0usize, 3, 7] {
                    let Some(&auto) = g.1[pi].get(k) else {
                        continue;
                    };
                    let h = 1e-2;
                    let mut a = host.clone();
                    a[pi].data[k] += h;
                    let mut c = host.clone();
                    c[pi].data[k] -= h;
                    let fd = (loss_at(&a) - loss_at(&c)) / (2.0 * h as f64);
                    let tol = 0.02 * fd.abs().max(1e-2);
                    assert!(
                        (auto as f64 - fd).abs() < tol,
                        "{output:?} {}[{k}]: {auto} vs {fd}",
                        p.name
                    );
                    checked += 1;
                }
            }
            assert!(checked >= 12);
        }
    }
}
