//! The image learner: the U-Net, Adam and the EMA of one image run, on one of two engines
//! (`unet.engine`): the fused CPU engine ([`crate::models::unet_fused`], the default; host
//! parameters and [`HostState`]'s Adam) or burn's autodiff (any backend, and the networks
//! with attention, which the fused engine does not have). Both start from the same weights,
//! keep the same checkpoint groups, and compute the same loss.

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

use super::ema::{self, Profile};
use super::host_state::{phema_groups, restore_phema, HostState};
use super::image::{FusedWeights, HostInputs, ImageBatch, UnetDenoiser};
use super::learner::Losses;
use super::optim::Adam;
use super::params::{self, HostParam};
use crate::diffusion::loss::{f_target, Weighting};
use crate::diffusion::precond::Precond;
use crate::error::{Error, Result};
use crate::models::unet::{UnetConfig, UnetEngine};
use crate::models::unet_fused::{FusedUnet, LossInputs};

/// The U-Net, Adam and the EMA of one image run.
pub struct ImageLearner {
    engine: Engine,
    weighting: Weighting,
}

enum Engine {
    Burn(BurnState),
    Fused(FusedState),
}

/// The burn engine: the network on the autodiff device, burn's Adam and a flat EMA; the
/// post-hoc EMA profiles on the host.
struct BurnState {
    den: UnetDenoiser,
    adam: Adam,
    ema: Option<Vec<Tensor<1>>>,
    gamma: f64,
    phema: Vec<Profile>,
}

/// The fused engine: host parameters and state, and a burn network of the same shape (on
/// the inference device) for [`ImageLearner::inference`]'s other uses.
struct FusedState {
    state: HostState,
    net: Arc<FusedUnet>,
    template: UnetDenoiser,
}

fn read<const D: usize>(t: Tensor<D>, what: &str) -> Result<Vec<f32>> {
    t.try_into_vec_as::<f32>()
        .map_err(|e| Error::Model(format!("cannot read {what}: {e:?}")))
}

/// The fused engine's loss inputs for `batch`: F-space targets, λ·c_out² and c_out².
struct HostLoss {
    target: Vec<f32>,
    weight: Vec<f32>,
    to_x0: Vec<f32>,
    example_weight: Option<Vec<f32>>,
}

impl HostLoss {
    fn new(batch: &ImageBatch, weighting: Weighting, sd: f64) -> Self {
        let x64: Vec<f64> = batch.x.iter().map(|&v| v as f64).collect();
        let y64: Vec<f64> = batch.clean.iter().map(|&v| v as f64).collect();
        let c_out2 = |s: f64| Precond::new(s, sd).c_out.powi(2);
        Self {
            target: f_target(&x64, &y64, &batch.sigma, sd),
            weight: batch
                .sigma
                .iter()
                .map(|&s| (weighting.lambda(s, sd) * c_out2(s)) as f32)
                .collect(),
            to_x0: batch.sigma.iter().map(|&s| c_out2(s) as f32).collect(),
            example_weight: None,
        }
    }

    fn as_inputs(&self) -> LossInputs<'_> {
        LossInputs {
            target: &self.target,
            weight: &self.weight,
            to_x0: &self.to_x0,
            example_weight: self.example_weight.as_deref(),
        }
    }
}

impl ImageLearner {
    /// A fresh learner; the burn engine trains on `device` (an autodiff device).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        unet: &UnetConfig,
        seed: u64,
        sigma_data: f64,
        weighting: Weighting,
        adam: Adam,
        ema_sigma_rel: f64,
        device: &Device,
    ) -> Result<Self> {
        let fused = unet.engine == UnetEngine::Fused && unet.attn_levels.is_empty();
        let den = |dev: &Device| UnetDenoiser {
            net: unet.init(seed, dev),
            fourier: unet.fourier(seed),
            sigma_data,
            num_classes: unet.num_classes,
            shape: [unet.img_channels, unet.resolution, unet.resolution],
            fused: None,
        };
        let engine = if fused {
            let template = den(&device.clone().without_autodiff());
            let host = params::to_host(&template.net)?;
            let net = Arc::new(FusedUnet::new(unet, &host)?);
            Engine::Fused(FusedState {
                state: HostState::new(host, (adam.beta1, adam.beta2, adam.eps), ema_sigma_rel),
                net,
                template,
            })
        } else {
            let d = den(device);
            let ema = (ema_sigma_rel > 0.0).then(|| params::to_flat(&d.net));
            Engine::Burn(BurnState {
                den: d,
                adam,
                ema,
                gamma: if ema_sigma_rel > 0.0 {
                    ema::gamma_from_sigma_rel(ema_sigma_rel)
                } else {
                    0.0
                },
                phema: Vec::new(),
            })
        };
        Ok(Self { engine, weighting })
    }

    /// "fused" or "burn".
    pub fn engine_name(&self) -> &'static str {
        match self.engine {
            Engine::Burn(_) => "burn",
            Engine::Fused(_) => "fused",
        }
    }

    /// The precision the convolutions run at: "bf16" when `unet.precision = "bf16"` is in
    /// effect (fused engine, CPU with AVX-512-BF16), else "f32".
    pub fn precision_name(&self) -> &'static str {
        match &self.engine {
            Engine::Fused(f) if f.net.plan.bf16 => "bf16",
            _ => "f32",
        }
    }

    /// Multiply-adds ×2 of one image's forward pass (None on the burn engine).
    pub fn forward_flops(&self) -> Option<f64> {
        match &self.engine {
            Engine::Fused(f) => Some(f.net.plan.forward_flops()),
            Engine::Burn(_) => None,
        }
    }

    /// Per-example losses (weighted, x0-error) as tensors `[b]` of a burn denoiser on `batch`.
    pub(crate) fn per_example(
        den: &UnetDenoiser,
        batch: &ImageBatch,
        weighting: Weighting,
        device: &Device,
    ) -> (Tensor<1>, Tensor<1>) {
        let [c, h, w] = den.shape;
        let b = batch.sigma.len();
        let len = c * h * w;
        let hl = HostLoss::new(batch, weighting, den.sigma_data);
        let x = Tensor::<4>::from_data(TensorData::new(batch.x.clone(), [b, c, h, w]), device);
        let ft = Tensor::<4>::from_data(TensorData::new(hl.target, [b, c, h, w]), device);
        let (f, u) = den.predict(x, &batch.sigma, &batch.labels);
        let err = (f - ft).square().reshape([b, len]).mean_dim(1).reshape([b]); // F-space
        let col = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [b]), device);
        let x0 = err.clone() * col(hl.to_x0);
        let mut weighted = err * col(hl.weight);
        if let Some(u) = u {
            weighted = weighted / u.clone().exp() + u;
        }
        (weighted, x0)
    }

    /// EDM2's learned log-variance u(σ) of the current weights at `sigma` (the uncertainty
    /// head on the Fourier features of c_noise; the loss is λ‖D − y‖²/e^u + u), or `None`
    /// without the head (`unet.uncertainty = false`).
    pub fn log_variance(&self, sigma: &[f64]) -> Result<Option<Vec<f64>>> {
        let den = match &self.engine {
            Engine::Burn(s) => inference_of(&s.den),
            Engine::Fused(f) => UnetDenoiser {
                net: params::from_host(f.template.net.clone(), &f.state.params)?,
                ..f.template.clone()
            },
        };
        let device = den.net.out_gain.val().device();
        match den.net.logvar(den.noise_features(sigma, &device)) {
            None => Ok(None),
            Some(u) => Ok(Some(
                read(u, "the learned log-variance")?
                    .into_iter()
                    .map(f64::from)
                    .collect(),
            )),
        }
    }

    /// Forward-only per-example losses of the current weights.
    pub fn losses(&self, batch: &ImageBatch) -> Result<Losses> {
        self.losses_of(false, batch)
    }

    /// Forward-only per-example losses of the EMA weights (the current ones when the EMA is
    /// off), e.g. for a reference model.
    pub fn ema_losses(&self, batch: &ImageBatch) -> Result<Losses> {
        self.losses_of(true, batch)
    }

    fn losses_of(&self, ema: bool, batch: &ImageBatch) -> Result<Losses> {
        match &self.engine {
            Engine::Burn(s) => {
                let den = if ema {
                    self.ema_inference()
                } else {
                    inference_of(&s.den)
                };
                let device = s.den.net.out_gain.val().device().without_autodiff();
                let (w, x0) = Self::per_example(&den, batch, self.weighting, &device);
                Ok(Losses {
                    weighted: read(w, "the per-example loss")?,
                    x0_error: read(x0, "the per-example x0-error")?,
                })
            }
            Engine::Fused(f) => {
                let hi = f.inputs(batch);
                let hl = HostLoss::new(batch, self.weighting, f.template.sigma_data);
                let ps = if ema {
                    f.state.ema_params()
                } else {
                    &f.state.params
                };
                let w = f.net.prepare(ps);
                let (weighted, x0_error) = f.net.losses(&w, &hi.as_inputs(), &hl.as_inputs());
                Ok(Losses { weighted, x0_error })
            }
        }
    }

    /// One Adam step on the mean weighted loss of `batch` at learning rate `lr`; returns the
    /// per-example losses before the step.
    pub fn step(&mut self, batch: &ImageBatch, lr: f64) -> Result<Losses> {
        self.step_weighted(batch, None, lr)
    }

    /// [`Self::step`] on mean(wᵢ·lossᵢ) with per-example weights `weights` (the reweighting
    /// seam; mean 1 over the batch, `None` for all 1); the returned losses are unweighted.
    pub fn step_weighted(
        &mut self,
        batch: &ImageBatch,
        weights: Option<&[f32]>,
        lr: f64,
    ) -> Result<Losses> {
        if let Some(v) = weights {
            if v.len() != batch.sigma.len() {
                return Err(Error::Config(format!(
                    "{} per-example weights for a batch of {}",
                    v.len(),
                    batch.sigma.len()
                )));
            }
        }
        match &mut self.engine {
            Engine::Burn(s) => {
                let device = s.den.net.out_gain.val().device();
                let (w, x0) = Self::per_example(&s.den, batch, self.weighting, &device);
                let objective = match weights {
                    None => w.clone().mean(),
                    Some(v) => {
                        let t =
                            Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), &device);
                        (w.clone() * t).mean()
                    }
                };
                let grads = GradientsParams::from_grads(objective.backward(), &s.den.net);
                let net = s.den.net.clone();
                s.den.net = s.adam.step(net, &grads, lr);
                Ok(Losses {
                    weighted: read(w.inner(), "the per-example loss")?,
                    x0_error: read(x0.inner(), "the per-example x0-error")?,
                })
            }
            Engine::Fused(f) => {
                let hi = f.inputs(batch);
                let mut hl = HostLoss::new(batch, self.weighting, f.template.sigma_data);
                hl.example_weight = weights.map(<[f32]>::to_vec);
                let w = f.net.prepare(&f.state.params);
                let out =
                    f.net
                        .loss_and_grads(&f.state.params, &w, &hi.as_inputs(), &hl.as_inputs());
                f.state.adam_step(&out.grads, lr);
                Ok(Losses {
                    weighted: out.weighted,
                    x0_error: out.x0_error,
                })
            }
        }
    }

    /// EMA update after a step of `batch` images that brought the count to `nimg`.
    pub fn update_ema(&mut self, nimg: u64, batch: usize) {
        match &mut self.engine {
            Engine::Burn(s) => {
                if let Some(ema) = s.ema.as_mut() {
                    let beta = ema::beta(s.gamma, nimg as f64, batch as f64);
                    let cur = params::to_flat(&s.den.net);
                    for (e, p) in ema.iter_mut().zip(cur) {
                        *e = e.clone().mul_scalar(beta) + p.mul_scalar(1.0 - beta);
                    }
                }
                if !s.phema.is_empty() {
                    // The network's own parameters always read back.
                    let host = params::to_host(&s.den.net).unwrap_or_else(|e| {
                        panic!("internal: cannot read the network's parameters: {e}")
                    });
                    s.phema
                        .iter_mut()
                        .for_each(|p| p.update(&host, nimg, batch));
                }
            }
            Engine::Fused(f) => f.state.update_ema(nimg, batch),
        }
    }

    /// Keeps post-hoc EMA profiles at `sigma_rels` beside the EMA, starting from the current
    /// weights ([`Profile`]s on the host on both engines).
    pub fn add_phema(&mut self, sigma_rels: &[f64]) -> Result<()> {
        match &mut self.engine {
            Engine::Fused(f) => f.state.add_phema(sigma_rels),
            Engine::Burn(s) => {
                let host = params::to_host(&s.den.net)?;
                s.phema
                    .extend(sigma_rels.iter().map(|&r| Profile::new(r, &host)));
            }
        }
        Ok(())
    }

    /// The post-hoc EMA profiles (empty when none are kept).
    pub fn phema_profiles(&self) -> &[Profile] {
        match &self.engine {
            Engine::Fused(f) => &f.state.phema,
            Engine::Burn(s) => &s.phema,
        }
    }

    /// Replaces the EMA weights (what [`Self::ema_inference`] samples with) by `ps`, e.g. a
    /// post-hoc reconstruction at `sigma_rel`; `ps` must have the network's names and shapes.
    pub fn set_ema_params(&mut self, sigma_rel: f64, ps: &[HostParam]) -> Result<()> {
        match &mut self.engine {
            Engine::Burn(s) => {
                let net = params::from_host(s.den.net.clone(), ps)?;
                s.ema = Some(params::to_flat(&net));
            }
            Engine::Fused(f) => {
                params::from_host(f.template.net.clone(), ps)?;
                f.state.ema = Some(Profile {
                    sigma_rel,
                    gamma: ema::gamma_from_sigma_rel(sigma_rel),
                    params: ps.to_vec(),
                });
            }
        }
        Ok(())
    }

    /// The current weights as an inference denoiser (no autodiff).
    pub fn inference(&self) -> UnetDenoiser {
        match &self.engine {
            Engine::Burn(s) => inference_of(&s.den),
            Engine::Fused(f) => f.denoiser(&f.state.params),
        }
    }

    /// The EMA weights as an inference denoiser (the raw weights when the EMA is off).
    pub fn ema_inference(&self) -> UnetDenoiser {
        match &self.engine {
            Engine::Burn(s) => {
                let mut d = inference_of(&s.den);
                if let Some(ema) = &s.ema {
                    d.net = params::from_flat(d.net, ema);
                }
                d
            }
            Engine::Fused(f) => f.denoiser(f.state.ema_params()),
        }
    }

    /// The current parameters on the host.
    pub fn params(&self) -> Result<Vec<HostParam>> {
        match &self.engine {
            Engine::Burn(s) => params::to_host(&s.den.net),
            Engine::Fused(f) => Ok(f.state.params.clone()),
        }
    }

    /// Replaces the current parameters (same names and shapes).
    pub fn set_params(&mut self, ps: &[HostParam]) -> Result<()> {
        match &mut self.engine {
            Engine::Burn(s) => {
                s.den.net = params::from_host(s.den.net.clone(), ps)?;
            }
            Engine::Fused(f) => {
                params::from_host(f.template.net.clone(), ps)?;
                f.state.params = ps.to_vec();
            }
        }
        Ok(())
    }

    /// Checkpoint groups "net", "ema", "adam_m", "adam_v" (the same on both engines).
    pub fn to_groups(&self) -> Result<BTreeMap<String, Vec<HostParam>>> {
        match &self.engine {
            Engine::Burn(s) => {
                let mut g = params::learner_groups(&s.den.net, s.ema.as_deref(), &s.adam)?;
                phema_groups(&s.phema, &mut g);
                Ok(g)
            }
            Engine::Fused(f) => Ok(f.state.to_groups()),
        }
    }

    /// Restores network, EMA and Adam moments; `adam_t` optimiser steps taken.
    pub fn load_groups(&mut self, g: &BTreeMap<String, Vec<HostParam>>, adam_t: u64) -> Result<()> {
        match &mut self.engine {
            Engine::Burn(s) => {
                let device = s.den.net.out_gain.val().device().without_autodiff();
                let net = s.den.net.clone();
                s.den.net =
                    params::restore_learner(net, &mut s.ema, &mut s.adam, g, adam_t, &device)?;
                restore_phema(&mut s.phema, g)
            }
            Engine::Fused(f) => f.state.load_groups(g, adam_t),
        }
    }

    /// Number of trained parameters.
    pub fn num_params(&self) -> usize {
        match &self.engine {
            Engine::Burn(s) => params::to_flat(&s.den.net)
                .iter()
                .map(|t| t.dims()[0])
                .sum(),
            Engine::Fused(f) => f.state.params.iter().map(|p| p.data.len()).sum(),
        }
    }
}

/// A burn denoiser without autodiff.
fn inference_of(den: &UnetDenoiser) -> UnetDenoiser {
    UnetDenoiser {
        net: burn::module::Module::valid(&den.net),
        ..den.clone()
    }
}

impl FusedState {
    fn inputs(&self, batch: &ImageBatch) -> HostInputs {
        self.template
            .host_inputs(&batch.x, &batch.sigma, &batch.labels)
    }

    /// An inference denoiser of `ps` that predicts with the fused engine.
    fn denoiser(&self, ps: &[HostParam]) -> UnetDenoiser {
        // The parameters are this learner's own, of the template's names and shapes.
        let net = params::from_host(self.template.net.clone(), ps)
            .unwrap_or_else(|e| panic!("internal: fused parameters do not fit the network: {e}"));
        UnetDenoiser {
            net,
            fused: Some(Arc::new(FusedWeights {
                net: self.net.clone(),
                weights: self.net.prepare(ps),
            })),
            ..self.template.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Rng, Stream};
    use crate::train::image::image_batch;
    use crate::train::image::tests::{fixture, lognormal, tiny};
    use burn::module::{Module, ModuleVisitor, Param};

    fn adam() -> Adam {
        Adam::new(0.9, 0.99, 1e-8)
    }

    fn burn_tiny() -> UnetConfig {
        UnetConfig {
            engine: UnetEngine::Burn,
            ..tiny()
        }
    }
    #[test]
    fn untrained_unet_is_the_c_skip_denoiser() {
        // The output gain starts at 0, so D(x; σ) = c_skip(σ)·x exactly.
        let l = ImageLearner::new(
            &burn_tiny(),
            0,
            0.5,
            Weighting::Edm,
            adam(),
            0.0,
            &Device::flex(),
        )
        .unwrap();
        let set = fixture(4);
        let b = image_batch(&set, &mut lognormal(), 0.0, 0, 0, 4).unwrap();
        let x = Tensor::<4>::from_data(
            TensorData::new(b.x.clone(), [4, 1, 28, 28]),
            &Device::flex(),
        );
        let d: Vec<f32> = l
            .inference()
            .denoise_labels(x, &b.sigma, &b.labels)
            .try_into_vec_as::<f32>()
            .unwrap();
        for (i, (dv, xv)) in d.iter().zip(&b.x).enumerate() {
            let c_skip = Precond::new(b.sigma[i / 784], 0.5).c_skip as f32;
            assert!((dv - c_skip * xv).abs() < 1e-5 * (1.0 + xv.abs()));
        }
    }

    /// Gradients of the mean weighted loss of a burn denoiser on `b`, by autodiff, one per
    /// parameter in declaration order.
    fn burn_grads(den: &UnetDenoiser, b: &ImageBatch) -> Grads<'static> {
        let dev = den.net.out_gain.val().device();
        let (w, _) = ImageLearner::per_example(den, b, Weighting::Edm, &dev);
        let grads = GradientsParams::from_grads(w.mean().backward(), &den.net);
        let grads: &'static GradientsParams = Box::leak(Box::new(grads));
        let mut g = Grads(grads, Vec::new());
        den.net.visit(&mut g);
        g
    }

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
    fn unet_gradients_match_finite_differences() {
        // Directional derivative of the mean loss along a random direction: autodiff against
        // central differences (f32, h = 1e-2), with every gain set away from 0 so that every
        // layer, the class embedding and attention contribute, and with the uncertainty head.
        let cfg = UnetConfig {
            uncertainty: true,
            ..burn_tiny()
        };
        let mut l = ImageLearner::new(
            &cfg,
            1,
            0.5,
            Weighting::Edm,
            adam(),
            0.0,
            &crate::device::training(),
        )
        .unwrap();
        let mut host = l.params().unwrap();
        for p in host.iter_mut().filter(|p| p.name.ends_with("gain")) {
            p.data.iter_mut().for_each(|v| *v = 0.7);
        }
        l.set_params(&host).unwrap();
        let set = fixture(8);
        let b = image_batch(&set, &mut lognormal(), 0.0, 0, 0, 8).unwrap();
        let Engine::Burn(s) = &l.engine else {
            panic!("the burn engine was asked for")
        };
        let g = burn_grads(&s.den, &b);
        let mut rng = Rng::new(3, Stream::Eval, 0);
        let dir: Vec<Vec<f32>> = host
            .iter()
            .map(|p| p.data.iter().map(|_| rng.normal() as f32).collect())
            .collect();
        let auto: f64 =
            g.1.iter()
                .zip(&dir)
                .map(|(gv, dv)| {
                    gv.iter()
                        .zip(dv)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum::<f64>()
                })
                .sum();
        let loss_at = |h: f32| {
            let moved: Vec<HostParam> = host
                .iter()
                .zip(&dir)
                .map(|(p, d)| HostParam {
                    data: p.data.iter().zip(d).map(|(v, dv)| v + h * dv).collect(),
                    ..p.clone()
                })
                .collect();
            let net = params::from_host(s.den.net.clone(), &moved)
                .unwrap()
                .valid();
            let den = UnetDenoiser {
                net,
                ..s.den.clone()
            };
            let (w, _) = ImageLearner::per_example(&den, &b, Weighting::Edm, &Device::flex());
            w.mean().into_scalar::<f32>() as f64
        };
        let h = 1e-2;
        let fd = (loss_at(h) - loss_at(-h)) / (2.0 * h as f64);
        assert!(auto.abs() > 1e-3, "degenerate direction: {auto}");
        assert!(
            (auto - fd).abs() < 0.02 * fd.abs(),
            "autodiff {auto} vs differences {fd}"
        );
    }

    #[test]
    fn a_tiny_unet_learns_a_few_images() {
        // 60 Adam steps on 16 fixture images lower the held-noise loss well below its start.
        let cfg = UnetConfig {
            label_dropout: 0.0,
            ..burn_tiny()
        };
        let mut l = ImageLearner::new(
            &cfg,
            0,
            0.5,
            Weighting::Edm,
            adam(),
            0.0,
            &crate::device::training(),
        )
        .unwrap();
        let set = fixture(16);
        let mut noise = lognormal();
        let first = l
            .losses(&image_batch(&set, &mut noise, 0.0, 9, 0, 16).unwrap())
            .unwrap()
            .mean();
        for step in 0..60 {
            let b = image_batch(&set, &mut noise, 0.0, 0, step, 16).unwrap();
            l.step(&b, 0.01).unwrap();
        }
        let eval = image_batch(&set, &mut noise, 0.0, 9, 0, 16).unwrap();
        let last = l.losses(&eval).unwrap().mean();
        assert!(last < 0.6 * first, "loss {first} → {last}");
        assert!(first.is_finite());
    }

    /// A U-Net with every fused block kind: encoder blocks with and without a channel
    /// change, down, up, decoder blocks with skips, the class embedding and the uncertainty
    /// head; no attention.
    fn fused_cfg() -> UnetConfig {
        UnetConfig {
            channels: 4,
            mults: vec![1, 2, 3],
            blocks: 1,
            attn_levels: Vec::new(),
            noise_channels: 8,
            emb_channels: 12,
            uncertainty: true,
            ..tiny()
        }
    }

    fn rel_err(a: &[f32], b: &[f32]) -> f64 {
        let d: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
        let n: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
        (d / n.max(1e-30)).sqrt()
    }

    const ALL_GROUPS: [&str; 4] = ["net", "ema", "adam_m", "adam_v"];

    #[test]
    fn the_log_variance_is_the_u_the_loss_divides_by() {
        // With the uncertainty head each example's loss is λ·x0/e^u + u (EDM2 eq. 21, x0 the
        // per-dimension ‖D − y‖²): the u that `log_variance` reports at the batch's σ must
        // satisfy it, on both engines, to f32 rounding. Without the head there is none.
        let set = fixture(8);
        let b = image_batch(&set, &mut lognormal(), 0.0, 0, 0, 8).unwrap();
        for engine in [UnetEngine::Fused, UnetEngine::Burn] {
            let cfg = UnetConfig {
                engine,
                ..fused_cfg()
            };
            let dev = crate::device::training();
            let mut l = ImageLearner::new(&cfg, 1, 0.5, Weighting::Edm, adam(), 0.0, &dev).unwrap();
            l.step(&b, 1e-2).unwrap();
            let losses = l.losses(&b).unwrap();
            let u = l.log_variance(&b.sigma).unwrap().unwrap();
            assert_eq!(u.len(), 8);
            assert!(u.iter().any(|&v| v.abs() > 1e-3), "{u:?}");
            for (i, &u) in u.iter().enumerate() {
                let lam = Weighting::Edm.lambda(b.sigma[i], 0.5);
                let want = lam * losses.x0_error[i] as f64 * (-u).exp() + u;
                let got = losses.weighted[i] as f64;
                assert!(
                    (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "{engine:?} example {i}: {got} vs {want}"
                );
            }
        }
        let plain = ImageLearner::new(
            &tiny(),
            1,
            0.5,
            Weighting::Edm,
            adam(),
            0.0,
            &Device::flex(),
        );
        assert_eq!(plain.unwrap().log_variance(&[0.5]).unwrap(), None);
    }

    #[test]
    fn fused_engine_matches_burn_autodiff() {
        // Channels 4/8/12 run the im2col convolutions; 16/32 the direct AVX-512 kernels
        // (tiles of 16 and 32 output channels) where the CPU has them.
        fused_engine_matches_burn_autodiff_for(fused_cfg(), 1e-4, 1e-3, &ALL_GROUPS);
        fused_engine_matches_burn_autodiff_for(
            UnetConfig {
                channels: 16,
                mults: vec![1, 2],
                ..fused_cfg()
            },
            1e-4,
            1e-3,
            &ALL_GROUPS,
        );
    }

    #[test]
    fn bf16_convolutions_stay_within_bf16_rounding_of_burn() {
        // bf16 operands carry 8 significant bits (relative rounding 2⁻⁹ ≈ 2e-3 per operand):
        // measured, F is within 4e-3 of burn's f32 autodiff and the gradients within 1e-2
        // (2026-12-02, AMD EPYC); after three Adam steps the weights and the EMA are checked
        // (the first moments differ by up to 3.2e-2, the second by 13% on a scalar gain).
        if !crate::models::unet_fused::bf16_supported() {
            eprintln!("skipped: no AVX-512-BF16 on this CPU");
            return;
        }
        fused_engine_matches_burn_autodiff_for(
            UnetConfig {
                channels: 16,
                mults: vec![1, 2],
                precision: crate::models::unet::UnetPrecision::Bf16,
                ..fused_cfg()
            },
            2e-2,
            5e-2,
            // Adam's second moments square the gradient differences (13% on a scalar gain).
            &["net", "ema"],
        );
    }

    /// `tol` bounds F, u, the losses and the gradients; `step_tol` the losses of three Adam steps
    /// and the checkpoint `groups` after them.
    fn fused_engine_matches_burn_autodiff_for(
        cfg: UnetConfig,
        tol: f64,
        step_tol: f64,
        groups: &[&str],
    ) {
        // Same weights (every gain set away from 0 so that every path contributes), same
        // batch of 11 images (two chunks, one partial; some classes dropped): per-example
        // losses, F and the gradient of every parameter agree to 1e-4 relative error.
        let make = |engine| {
            ImageLearner::new(
                &UnetConfig {
                    engine,
                    ..cfg.clone()
                },
                5,
                0.5,
                Weighting::Edm,
                adam(),
                0.05,
                &crate::device::training(),
            )
            .unwrap()
        };
        let (mut burn, mut fused) = (make(UnetEngine::Burn), make(UnetEngine::Fused));
        assert_eq!(fused.engine_name(), "fused");
        let mut host = burn.params().unwrap();
        let mut rng = Rng::new(2, Stream::Eval, 0);
        for p in host.iter_mut() {
            if p.name.ends_with("gain") {
                p.data[0] = 0.5 + rng.uniform() as f32;
            }
        }
        burn.set_params(&host).unwrap();
        fused.set_params(&host).unwrap();
        let set = fixture(11);
        let b = image_batch(&set, &mut lognormal(), 0.3, 0, 0, 11).unwrap();
        assert!(b.labels.iter().any(Option::is_none) && b.labels.iter().any(Option::is_some));
        // Forward: F (and u) of the inference denoisers.
        let x = Tensor::<4>::from_data(
            TensorData::new(b.x.clone(), [11, 1, 28, 28]),
            &Device::flex(),
        );
        let (fb, ub) = burn.inference().predict(x.clone(), &b.sigma, &b.labels);
        let (ff, uf) = fused.inference().predict(x, &b.sigma, &b.labels);
        let (fb, ff) = (read(fb, "F").unwrap(), read(ff, "F").unwrap());
        assert!(rel_err(&ff, &fb) < tol, "F: {}", rel_err(&ff, &fb));
        let (ub, uf) = (
            read(ub.unwrap(), "u").unwrap(),
            read(uf.unwrap(), "u").unwrap(),
        );
        assert!(rel_err(&uf, &ub) < tol, "u: {}", rel_err(&uf, &ub));
        // Losses and gradients.
        let Engine::Burn(s) = &burn.engine else {
            panic!("the burn engine was asked for")
        };
        let gb = burn_grads(&s.den, &b).1;
        let Engine::Fused(f) = &fused.engine else {
            panic!("the fused engine was asked for")
        };
        let hi = f.inputs(&b);
        let hl = HostLoss::new(&b, Weighting::Edm, 0.5);
        let w = f.net.prepare(&f.state.params);
        let out = f
            .net
            .loss_and_grads(&f.state.params, &w, &hi.as_inputs(), &hl.as_inputs());
        let lb = burn.losses(&b).unwrap();
        assert!(rel_err(&out.weighted, &lb.weighted) < tol);
        assert!(rel_err(&out.x0_error, &lb.x0_error) < tol);
        assert_eq!(gb.len(), host.len());
        for ((p, gf), gbv) in host.iter().zip(&out.grads).zip(&gb) {
            let e = rel_err(gf, gbv);
            assert!(e < tol, "{}: relative error {e}", p.name);
            assert!(gbv.iter().any(|v| *v != 0.0), "{}: zero gradient", p.name);
        }
        // Three Adam steps with EMA keep the two engines together.
        for step in 0..3 {
            let bt = image_batch(&set, &mut lognormal(), 0.3, 1, step, 11).unwrap();
            let lb = burn.step(&bt, 0.01).unwrap();
            let lf = fused.step(&bt, 0.01).unwrap();
            assert!(
                rel_err(&lf.weighted, &lb.weighted) < step_tol,
                "step {step}"
            );
            burn.update_ema(11 * (step + 1), 11);
            fused.update_ema(11 * (step + 1), 11);
        }
        let (gb, gf) = (burn.to_groups().unwrap(), fused.to_groups().unwrap());
        for &k in groups {
            for (a, c) in gb[k].iter().zip(&gf[k]) {
                assert_eq!(a.name, c.name);
                let e = rel_err(&c.data, &a.data);
                assert!(e < step_tol, "{k} {}: {e}", a.name);
            }
        }
    }

    /// Rows `from..` of `b`.
    fn rows_from(b: &ImageBatch, from: usize) -> ImageBatch {
        let len = b.x.len() / b.sigma.len();
        ImageBatch {
            index: b.index[from..].to_vec(),
            clean: b.clean[from * len..].to_vec(),
            x: b.x[from * len..].to_vec(),
            sigma: b.sigma[from..].to_vec(),
            labels: b.labels[from..].to_vec(),
        }
    }

    #[test]
    fn a_zero_example_weight_removes_the_example_from_the_gradient() {
        // mean over 4 of w·loss with w = [0, 4/3, 4/3, 4/3] is the mean over the last 3:
        // the fused gradient equals that of the 3-example batch (to f32 rounding), and weights
        // of 1 give exactly the unweighted gradient.
        let set = fixture(4);
        let b = image_batch(&set, &mut lognormal(), 0.0, 0, 0, 4).unwrap();
        let sub = rows_from(&b, 1);
        // Gains away from 0 so that every parameter has a gradient.
        let gains = |l: &mut ImageLearner| {
            let mut host = l.params().unwrap();
            let mut rng = Rng::new(2, Stream::Eval, 0);
            for p in host.iter_mut().filter(|p| p.name.ends_with("gain")) {
                p.data[0] = 0.5 + rng.uniform() as f32;
            }
            l.set_params(&host).unwrap();
        };
        let dev = crate::device::training();
        let mut l =
            ImageLearner::new(&fused_cfg(), 5, 0.5, Weighting::Edm, adam(), 0.05, &dev).unwrap();
        gains(&mut l);
        let Engine::Fused(f) = &l.engine else {
            panic!("the fused engine was asked for")
        };
        let w = f.net.prepare(&f.state.params);
        let grads = |batch: &ImageBatch, ew: Option<Vec<f32>>| {
            let hi = f.inputs(batch);
            let mut hl = HostLoss::new(batch, Weighting::Edm, 0.5);
            hl.example_weight = ew;
            f.net
                .loss_and_grads(&f.state.params, &w, &hi.as_inputs(), &hl.as_inputs())
        };
        let third = 4.0f32 / 3.0;
        let weighted = grads(&b, Some(vec![0.0, third, third, third]));
        let plain = grads(&sub, None);
        for (k, (a, c)) in weighted.grads.iter().zip(&plain.grads).enumerate() {
            let e = rel_err(a, c);
            assert!(e < 1e-5, "parameter {k}: relative error {e}");
        }
        assert!(plain.grads.iter().all(|g| g.iter().any(|v| *v != 0.0)));
        assert_eq!(grads(&b, Some(vec![1.0; 4])).grads, grads(&b, None).grads);
        // The returned losses are the unweighted ones.
        assert_eq!(weighted.weighted, grads(&b, None).weighted);

        // Both engines: one Adam step with the zero weight lands where the 3-example step does.
        for cfg in [
            fused_cfg(),
            UnetConfig {
                engine: UnetEngine::Burn,
                ..fused_cfg()
            },
        ] {
            let mk = || {
                let mut l =
                    ImageLearner::new(&cfg, 5, 0.5, Weighting::Edm, adam(), 0.05, &dev).unwrap();
                gains(&mut l);
                l
            };
            let (mut a, mut c) = (mk(), mk());
            a.step_weighted(&b, Some(&[0.0, third, third, third]), 0.01)
                .unwrap();
            c.step(&sub, 0.01).unwrap();
            let (ga, gc) = (a.to_groups().unwrap(), c.to_groups().unwrap());
            for (pa, pc) in ga["net"].iter().zip(&gc["net"]) {
                let e = rel_err(&pa.data, &pc.data);
                assert!(e < 1e-4, "{:?} {}: {e}", cfg.engine, pa.name);
            }
            assert!(a.step_weighted(&b, Some(&[1.0; 3]), 0.01).is_err());
        }
    }

    #[test]
    fn fused_results_do_not_depend_on_the_thread_count() {
        let cfg = fused_cfg();
        let set = fixture(20);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut l =
                    ImageLearner::new(&cfg, 3, 0.5, Weighting::Edm, adam(), 0.05, &Device::flex())
                        .unwrap();
                for step in 0..2 {
                    let b = image_batch(&set, &mut lognormal(), 0.1, 0, step, 20).unwrap();
                    l.step(&b, 0.01).unwrap();
                }
                l.to_groups().unwrap()
            })
        };
        assert_eq!(run(1), run(3));
    }
}
