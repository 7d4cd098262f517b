//! Image training pieces: the preconditioned U-Net denoiser, batches drawn from an image set,
//! the learner (network + Adam + EMA) with per-example losses, and guided Heun sampling
//! (class-free guidance and autoguidance).

use std::collections::BTreeMap;

use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

use super::ema;
use super::learner::Losses;
use super::optim::Adam;
use super::params::{self, HostParam};
use crate::data::images::ImageSet;
use crate::diffusion::denoiser::Denoiser;
use crate::diffusion::loss::{f_target, Weighting};
use crate::diffusion::noise::NoiseSampler;
use crate::diffusion::precond::Precond;
use crate::diffusion::sampler::{edm_sigmas, heun};
use crate::error::{Error, Result};
use crate::models::unet::{Fourier, Unet, UnetConfig};
use crate::rng::{Rng, Stream};

/// The U-Net in EDM preconditioning: D(x; σ, class) = c_skip·x + c_out·F(c_in·x; c_noise, class).
#[derive(Debug, Clone)]
pub struct UnetDenoiser {
    pub net: Unet,
    pub fourier: Fourier,
    pub sigma_data: f64,
    pub num_classes: usize,
    /// [C, H, W] of one image.
    pub shape: [usize; 3],
}

/// Per-example columns `[b, 1, 1, 1]` of a preconditioning coefficient.
fn column(sigma: &[f64], f: impl Fn(f64) -> f64, device: &Device) -> Tensor<4> {
    let v: Vec<f32> = sigma.iter().map(|&s| f(s) as f32).collect();
    Tensor::<4>::from_data(TensorData::new(v, [sigma.len(), 1, 1, 1]), device)
}

impl UnetDenoiser {
    /// Class vectors `[b, classes]`: one-hot for `Some(k)`, zero (unconditional) for `None`.
    /// `None` when the network is unconditional.
    pub fn class_vectors(&self, labels: &[Option<usize>], device: &Device) -> Option<Tensor<2>> {
        if self.num_classes == 0 {
            return None;
        }
        let k = self.num_classes;
        let mut v = vec![0.0f32; labels.len() * k];
        for (i, l) in labels.iter().enumerate() {
            if let Some(c) = l.filter(|&c| c < k) {
                v[i * k + c] = 1.0;
            }
        }
        Some(Tensor::<2>::from_data(
            TensorData::new(v, [labels.len(), k]),
            device,
        ))
    }

    /// Fourier features of c_noise = ln σ / 4, `[b, noise_channels]`.
    pub fn noise_features(&self, sigma: &[f64], device: &Device) -> Tensor<2> {
        let c: Vec<f64> = sigma.iter().map(|s| s.ln() / 4.0).collect();
        let f = self.fourier.features(&c);
        let n = self.fourier.freqs.len();
        Tensor::<2>::from_data(TensorData::new(f, [sigma.len(), n]), device)
    }

    /// F(c_in·x; σ, class) and, with the uncertainty head, u(σ).
    pub fn predict(
        &self,
        x: Tensor<4>,
        sigma: &[f64],
        labels: &[Option<usize>],
    ) -> (Tensor<4>, Option<Tensor<1>>) {
        let device = x.device();
        let sd = self.sigma_data;
        let c_in = column(sigma, |s| Precond::new(s, sd).c_in, &device);
        let noise = self.noise_features(sigma, &device);
        let class = self.class_vectors(labels, &device);
        let f = self.net.forward(x * c_in, noise.clone(), class);
        (f, self.net.logvar(noise))
    }

    /// D(x; σ, class).
    pub fn denoise_labels(
        &self,
        x: Tensor<4>,
        sigma: &[f64],
        labels: &[Option<usize>],
    ) -> Tensor<4> {
        let device = x.device();
        let sd = self.sigma_data;
        let c_skip = column(sigma, |s| Precond::new(s, sd).c_skip, &device);
        let c_out = column(sigma, |s| Precond::new(s, sd).c_out, &device);
        let (f, _) = self.predict(x.clone(), sigma, labels);
        x * c_skip + f * c_out
    }
}

/// How a sample is guided: D_w = D_guide + w·(D_main − D_guide).
pub enum Guide<'a> {
    /// No guidance: D_main.
    None,
    /// Autoguidance: the guide is another (smaller or less trained) network, same class.
    Auto(&'a UnetDenoiser, f64),
    /// Classifier-free guidance: the guide is the main network without the class.
    Cfg(f64),
}

/// The denoiser a sampler sees: a main network, its labels and its guidance.
pub struct Guided<'a> {
    pub main: &'a UnetDenoiser,
    pub labels: Vec<Option<usize>>,
    pub guide: Guide<'a>,
}

impl Denoiser<4> for Guided<'_> {
    fn denoise(&self, x: Tensor<4>, sigma: &[f64]) -> Tensor<4> {
        let d_main = self.main.denoise_labels(x.clone(), sigma, &self.labels);
        let (d_guide, w) = match &self.guide {
            Guide::None => return d_main,
            Guide::Auto(g, w) => (g.denoise_labels(x, sigma, &self.labels), *w),
            Guide::Cfg(w) => {
                let none = vec![None; self.labels.len()];
                (self.main.denoise_labels(x, sigma, &none), *w)
            }
        };
        d_guide.clone() + (d_main - d_guide).mul_scalar(w)
    }
}

/// Sampler settings for images.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSampling {
    pub steps: usize,
    pub sigma_min: f64,
    pub sigma_max: f64,
    pub rho: f64,
    /// Images per Heun batch.
    pub chunk: usize,
}

/// `labels.len()` images `[n, C, H, W]` (flattened, values as sampled, not clipped): image i
/// starts from x_T ~ N(0, σ_max²I) drawn from the `(seed, Sample, i)` stream, so results do not
/// depend on the chunk size.
pub fn sample_images(
    main: &UnetDenoiser,
    guide: &Guide,
    labels: &[Option<usize>],
    s: &ImageSampling,
    seed: u64,
    device: &Device,
) -> Result<Vec<f32>> {
    let [c, h, w] = main.shape;
    let len = c * h * w;
    let sigmas = edm_sigmas(s.steps, s.sigma_min, s.sigma_max, s.rho);
    let mut out = Vec::with_capacity(labels.len() * len);
    for lo in (0..labels.len()).step_by(s.chunk.max(1)) {
        let hi = (lo + s.chunk.max(1)).min(labels.len());
        let x0: Vec<f32> = (lo..hi)
            .flat_map(|i| {
                let mut rng = Rng::new(seed, Stream::Sample, i as u64);
                (0..len)
                    .map(|_| (rng.normal() * s.sigma_max) as f32)
                    .collect::<Vec<_>>()
            })
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(x0, [hi - lo, c, h, w]), device);
        let den = Guided {
            main,
            labels: labels[lo..hi].to_vec(),
            guide: match guide {
                Guide::None => Guide::None,
                Guide::Auto(g, w) => Guide::Auto(g, *w),
                Guide::Cfg(w) => Guide::Cfg(*w),
            },
        };
        let v = heun(&den, x, &sigmas)
            .try_into_vec_as::<f32>()
            .map_err(|e| Error::Model(format!("cannot read samples: {e:?}")))?;
        out.extend(v);
    }
    Ok(out)
}

/// A training batch of images.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageBatch {
    /// Dataset index of each example.
    pub index: Vec<usize>,
    /// Clean images y, flattened.
    pub clean: Vec<f32>,
    /// Noisy images x = y + σ·n.
    pub x: Vec<f32>,
    pub sigma: Vec<f64>,
    /// The class the network sees (None: dropped or unlabelled).
    pub labels: Vec<Option<usize>>,
}

/// The dataset position `k` of the endless sequence of epochs: epoch k / n is a permutation
/// drawn from the `(seed, Data, 2^40 + epoch)` stream.
fn epoch_order(seed: u64, epoch: u64, n: usize) -> Vec<usize> {
    let mut rng = Rng::new(seed, Stream::Data, (1 << 40) + epoch);
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        p.swap(i, j);
    }
    p
}

/// The batch of step `step`: the next `b` examples of the shuffled epochs, σ from `noise`,
/// Gaussian noise and label dropout from the `(seed, Data, step)` stream.
pub fn image_batch(
    set: &ImageSet,
    noise: &mut dyn NoiseSampler,
    label_dropout: f64,
    seed: u64,
    step: u64,
    b: usize,
) -> ImageBatch {
    let n = set.len();
    let start = step * b as u64;
    let mut order: Option<(u64, Vec<usize>)> = None;
    let index: Vec<usize> = (0..b as u64)
        .map(|k| {
            let pos = start + k;
            let epoch = pos / n as u64;
            if order.as_ref().map(|o| o.0) != Some(epoch) {
                order = Some((epoch, epoch_order(seed, epoch, n)));
            }
            order
                .as_ref()
                .map(|o| o.1[(pos % n as u64) as usize])
                .unwrap_or(0)
        })
        .collect();
    let mut rng = Rng::new(seed, Stream::Data, step);
    let sigma = noise.draw(&mut rng, b);
    let len = set.image_len();
    let mut clean = Vec::with_capacity(b * len);
    let mut x = Vec::with_capacity(b * len);
    for (&i, &s) in index.iter().zip(&sigma) {
        for &y in set.image(i) {
            clean.push(y);
            x.push(y + (rng.normal() * s) as f32);
        }
    }
    let labels = index
        .iter()
        .map(|&i| {
            let drop = rng.uniform() < label_dropout;
            set.labels.get(i).map(|&c| c as usize).filter(|_| !drop)
        })
        .collect();
    ImageBatch {
        index,
        clean,
        x,
        sigma,
        labels,
    }
}

/// The U-Net, Adam and the EMA of one image run.
pub struct ImageLearner {
    pub den: UnetDenoiser,
    pub adam: Adam,
    pub ema: Option<Vec<Tensor<1>>>,
    gamma: f64,
    weighting: Weighting,
}

fn read<const D: usize>(t: Tensor<D>, what: &str) -> Result<Vec<f32>> {
    t.try_into_vec_as::<f32>()
        .map_err(|e| Error::Model(format!("cannot read {what}: {e:?}")))
}

impl ImageLearner {
    /// A fresh learner on `device` (an autodiff device).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        unet: &UnetConfig,
        seed: u64,
        sigma_data: f64,
        weighting: Weighting,
        adam: Adam,
        ema_sigma_rel: f64,
        device: &Device,
    ) -> Self {
        let net = unet.init(seed, device);
        let ema = (ema_sigma_rel > 0.0).then(|| params::to_flat(&net));
        Self {
            den: UnetDenoiser {
                net,
                fourier: unet.fourier(seed),
                sigma_data,
                num_classes: unet.num_classes,
                shape: [unet.img_channels, unet.resolution, unet.resolution],
            },
            adam,
            ema,
            gamma: if ema_sigma_rel > 0.0 {
                ema::gamma_from_sigma_rel(ema_sigma_rel)
            } else {
                0.0
            },
            weighting,
        }
    }

    fn device(&self) -> Device {
        self.den.net.out_gain.val().device()
    }

    /// Per-example losses (weighted, x0-error) as tensors `[b]` of `den` on `batch`.
    fn per_example(
        den: &UnetDenoiser,
        batch: &ImageBatch,
        weighting: Weighting,
        device: &Device,
    ) -> (Tensor<1>, Tensor<1>) {
        let [c, h, w] = den.shape;
        let b = batch.sigma.len();
        let len = c * h * w;
        let x64: Vec<f64> = batch.x.iter().map(|&v| v as f64).collect();
        let y64: Vec<f64> = batch.clean.iter().map(|&v| v as f64).collect();
        let ft = f_target(&x64, &y64, &batch.sigma, den.sigma_data);
        let x = Tensor::<4>::from_data(TensorData::new(batch.x.clone(), [b, c, h, w]), device);
        let ft = Tensor::<4>::from_data(TensorData::new(ft, [b, c, h, w]), device);
        let (f, u) = den.predict(x, &batch.sigma, &batch.labels);
        let err = (f - ft).square().reshape([b, len]).mean_dim(1).reshape([b]); // F-space
        let sd = den.sigma_data;
        let col = |g: &dyn Fn(f64) -> f64| {
            let v: Vec<f32> = batch.sigma.iter().map(|&s| g(s) as f32).collect();
            Tensor::<1>::from_data(TensorData::new(v, [b]), device)
        };
        let c_out2 = col(&|s| Precond::new(s, sd).c_out.powi(2));
        let lam_c_out2 = col(&|s| weighting.lambda(s, sd) * Precond::new(s, sd).c_out.powi(2));
        let x0 = err.clone() * c_out2;
        let mut weighted = err * lam_c_out2;
        if let Some(u) = u {
            weighted = weighted / u.clone().exp() + u;
        }
        (weighted, x0)
    }

    /// Forward-only per-example losses of the current weights.
    pub fn losses(&self, batch: &ImageBatch) -> Result<Losses> {
        let den = self.inference();
        let device = self.device().without_autodiff();
        let (w, x0) = Self::per_example(&den, batch, self.weighting, &device);
        Ok(Losses {
            weighted: read(w, "the per-example loss")?,
            x0_error: read(x0, "the per-example x0-error")?,
        })
    }

    /// One Adam step on the mean weighted loss of `batch` at learning rate `lr`; returns the
    /// per-example losses before the step.
    pub fn step(&mut self, batch: &ImageBatch, lr: f64) -> Result<Losses> {
        let device = self.device();
        let (w, x0) = Self::per_example(&self.den, batch, self.weighting, &device);
        let grads = GradientsParams::from_grads(w.clone().mean().backward(), &self.den.net);
        let net = self.den.net.clone();
        self.den.net = self.adam.step(net, &grads, lr);
        Ok(Losses {
            weighted: read(w.inner(), "the per-example loss")?,
            x0_error: read(x0.inner(), "the per-example x0-error")?,
        })
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
    pub fn inference(&self) -> UnetDenoiser {
        UnetDenoiser {
            net: burn::module::Module::valid(&self.den.net),
            ..self.den.clone()
        }
    }

    /// The EMA weights as an inference denoiser (the raw weights when the EMA is off).
    pub fn ema_inference(&self) -> UnetDenoiser {
        let mut d = self.inference();
        if let Some(ema) = &self.ema {
            d.net = params::from_flat(d.net, ema);
        }
        d
    }

    /// Checkpoint groups "net", "ema", "adam_m", "adam_v".
    pub fn to_groups(&self) -> Result<BTreeMap<String, Vec<HostParam>>> {
        params::learner_groups(&self.den.net, self.ema.as_deref(), &self.adam)
    }

    /// Restores network, EMA and Adam moments; `adam_t` optimiser steps taken.
    pub fn load_groups(&mut self, g: &BTreeMap<String, Vec<HostParam>>, adam_t: u64) -> Result<()> {
        let device = self.device().without_autodiff();
        let net = self.den.net.clone();
        self.den.net =
            params::restore_learner(net, &mut self.ema, &mut self.adam, g, adam_t, &device)?;
        Ok(())
    }

    /// Number of trained parameters.
    pub fn num_params(&self) -> usize {
        params::to_flat(&self.den.net)
            .iter()
            .map(|t| t.dims()[0])
            .sum()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::diffusion::noise::LogNormal;
    use burn::module::{Module, ModuleVisitor, Param};

    pub(crate) fn fixture_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fmnist-fixture")
    }

    fn fixture(n: usize) -> ImageSet {
        let set = crate::data::images::load_fashion_mnist(
            &fixture_dir(),
            crate::data::images::Split::Train,
        )
        .expect("the committed fixture");
        set.subset(&(0..n).collect::<Vec<_>>())
    }

    /// A U-Net small enough for tests: 4/8 channels at 28/14, attention at 14×14 (2 heads).
    pub(crate) fn tiny() -> UnetConfig {
        UnetConfig {
            channels: 4,
            mults: vec![1, 2],
            blocks: 1,
            attn_levels: vec![1],
            head_channels: 4,
            noise_channels: 8,
            emb_channels: 8,
            ..UnetConfig::default()
        }
    }

    fn adam() -> Adam {
        Adam::new(0.9, 0.99, 1e-8)
    }

    fn lognormal() -> LogNormal {
        LogNormal {
            p_mean: -1.2,
            p_std: 1.2,
        }
    }

    #[test]
    fn untrained_unet_is_the_c_skip_denoiser() {
        // The output gain starts at 0, so D(x; σ) = c_skip(σ)·x exactly.
        let l = ImageLearner::new(
            &tiny(),
            0,
            0.5,
            Weighting::Edm,
            adam(),
            0.0,
            &Device::flex(),
        );
        let set = fixture(4);
        let b = image_batch(&set, &mut lognormal(), 0.0, 0, 0, 4);
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
            ..tiny()
        };
        let mut l = ImageLearner::new(
            &cfg,
            1,
            0.5,
            Weighting::Edm,
            adam(),
            0.0,
            &crate::device::training(),
        );
        let mut host = params::to_host(&l.den.net).unwrap();
        for p in host.iter_mut().filter(|p| p.name.ends_with("gain")) {
            p.data.iter_mut().for_each(|v| *v = 0.7);
        }
        l.den.net = params::from_host(l.den.net.clone(), &host).unwrap();
        let set = fixture(8);
        let b = image_batch(&set, &mut lognormal(), 0.0, 0, 0, 8);
        let dev = l.device();
        let (w, _) = ImageLearner::per_example(&l.den, &b, Weighting::Edm, &dev);
        let grads = GradientsParams::from_grads(w.mean().backward(), &l.den.net);
        let mut g = Grads(&grads, Vec::new());
        l.den.net.visit(&mut g);
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
            let net = params::from_host(l.den.net.clone(), &moved)
                .unwrap()
                .valid();
            let den = UnetDenoiser {
                net,
                ..l.den.clone()
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
            ..tiny()
        };
        let mut l = ImageLearner::new(
            &cfg,
            0,
            0.5,
            Weighting::Edm,
            adam(),
            0.0,
            &crate::device::training(),
        );
        let set = fixture(16);
        let mut noise = lognormal();
        let first = l
            .losses(&image_batch(&set, &mut noise, 0.0, 9, 0, 16))
            .unwrap()
            .mean();
        for step in 0..60 {
            let b = image_batch(&set, &mut noise, 0.0, 0, step, 16);
            l.step(&b, 0.01).unwrap();
        }
        let eval = image_batch(&set, &mut noise, 0.0, 9, 0, 16);
        let last = l.losses(&eval).unwrap().mean();
        assert!(last < 0.6 * first, "loss {first} → {last}");
        assert!(first.is_finite());
    }

    #[test]
    fn batches_walk_through_epochs_and_are_deterministic() {
        let set = fixture(10);
        let mut noise = lognormal();
        let mut seen = Vec::new();
        for step in 0..5 {
            let b = image_batch(&set, &mut noise, 0.0, 4, step, 4);
            seen.extend(b.index.clone());
            assert_eq!(b, image_batch(&set, &mut noise, 0.0, 4, step, 4));
            // x = y + σ·n: the noise scale matches σ.
            let r: f64 =
                b.x.iter()
                    .zip(&b.clean)
                    .take(784)
                    .map(|(x, y)| ((x - y) as f64).powi(2))
                    .sum::<f64>()
                    / 784.0;
            assert!((r.sqrt() / b.sigma[0] - 1.0).abs() < 0.1);
        }
        // Positions 0..9 and 10..19 are two permutations of the 10 images.
        for epoch in seen.chunks(10).take(2) {
            let mut e = epoch.to_vec();
            e.sort();
            assert_eq!(e, (0..10).collect::<Vec<_>>());
        }
        // Label dropout: about 30% of 1000 draws lose their class.
        let big = fixture(100);
        let dropped = (0..10)
            .flat_map(|s| image_batch(&big, &mut noise, 0.3, 1, s, 100).labels)
            .filter(Option::is_none)
            .count();
        assert!((250..350).contains(&dropped), "{dropped}");
    }
}
