//! Image training pieces: the preconditioned U-Net denoiser, batches drawn from an image set,
//! the learner (network + Adam + EMA) with per-example losses, and guided Heun sampling
//! (class-free guidance and autoguidance).

use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};

pub use super::image_batch::{image_batch, ImageBatch};
pub use super::image_learner::ImageLearner;
use crate::diffusion::denoiser::Denoiser;
use crate::diffusion::precond::Precond;
use crate::diffusion::sampler::{edm_sigmas, heun};
use crate::error::{Error, Result};
use crate::models::unet::{Fourier, Unet};
use crate::models::unet_fused::{FusedUnet, Inputs, Prepared};
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
    /// The same weights on the fused CPU engine; when set, predictions use it.
    pub fused: Option<Arc<FusedWeights>>,
}

/// A fused engine with weights prepared for inference.
#[derive(Debug)]
pub struct FusedWeights {
    pub net: Arc<FusedUnet>,
    pub weights: Prepared,
}

/// A batch in the fused engine's host form: c_in·x, Fourier features of c_noise and class
/// vectors (see [`crate::models::unet_fused::Inputs`]).
pub struct HostInputs {
    pub n: usize,
    pub x: Vec<f32>,
    pub noise: Vec<f32>,
    pub class: Option<Vec<f32>>,
}

impl HostInputs {
    pub fn as_inputs(&self) -> Inputs<'_> {
        Inputs {
            n: self.n,
            x: &self.x,
            noise: &self.noise,
            class: self.class.as_deref(),
        }
    }
}

/// Per-example columns `[b, 1, 1, 1]` of a preconditioning coefficient.
fn column(sigma: &[f64], f: impl Fn(f64) -> f64, device: &Device) -> Tensor<4> {
    let v: Vec<f32> = sigma.iter().map(|&s| f(s) as f32).collect();
    Tensor::<4>::from_data(TensorData::new(v, [sigma.len(), 1, 1, 1]), device)
}

impl UnetDenoiser {
    /// Class vectors `[b, classes]` flattened: one-hot for `Some(k)`, zero (unconditional)
    /// for `None`. `None` when the network is unconditional.
    pub fn class_host(&self, labels: &[Option<usize>]) -> Option<Vec<f32>> {
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
        Some(v)
    }

    /// [`UnetDenoiser::class_host`] as a tensor `[b, classes]`.
    pub fn class_vectors(&self, labels: &[Option<usize>], device: &Device) -> Option<Tensor<2>> {
        let k = self.num_classes;
        self.class_host(labels)
            .map(|v| Tensor::<2>::from_data(TensorData::new(v, [labels.len(), k]), device))
    }

    /// Fourier features of c_noise = ln σ / 4, `[b, noise_channels]` flattened.
    pub fn noise_host(&self, sigma: &[f64]) -> Vec<f32> {
        let c: Vec<f64> = sigma.iter().map(|s| s.ln() / 4.0).collect();
        self.fourier.features(&c)
    }

    /// [`UnetDenoiser::noise_host`] as a tensor `[b, noise_channels]`.
    pub fn noise_features(&self, sigma: &[f64], device: &Device) -> Tensor<2> {
        let n = self.fourier.freqs.len();
        Tensor::<2>::from_data(
            TensorData::new(self.noise_host(sigma), [sigma.len(), n]),
            device,
        )
    }

    /// The fused engine's inputs for noisy images `x` (`[b, C, H, W]` flattened).
    pub fn host_inputs(&self, x: &[f32], sigma: &[f64], labels: &[Option<usize>]) -> HostInputs {
        let per = x.len() / sigma.len().max(1);
        let sd = self.sigma_data;
        let xin = x
            .chunks(per.max(1))
            .zip(sigma)
            .flat_map(|(r, &s)| {
                let c_in = Precond::new(s, sd).c_in as f32;
                r.iter().map(move |v| v * c_in)
            })
            .collect();
        HostInputs {
            n: sigma.len(),
            x: xin,
            noise: self.noise_host(sigma),
            class: self.class_host(labels),
        }
    }

    /// F(c_in·x; σ, class) and, with the uncertainty head, u(σ).
    pub fn predict(
        &self,
        x: Tensor<4>,
        sigma: &[f64],
        labels: &[Option<usize>],
    ) -> (Tensor<4>, Option<Tensor<1>>) {
        let device = x.device();
        if let Some(fw) = &self.fused {
            let [c, h, w] = self.shape;
            // Reading back a tensor this program created is an internal invariant.
            let xs: Vec<f32> = x
                .try_into_vec_as::<f32>()
                .unwrap_or_else(|e| panic!("internal: cannot read a sampler tensor: {e:?}"));
            let hi = self.host_inputs(&xs, sigma, labels);
            let (f, u) = fw.net.forward(&fw.weights, &hi.as_inputs());
            let b = sigma.len();
            let f = Tensor::<4>::from_data(TensorData::new(f, [b, c, h, w]), &device);
            let u = u.map(|u| Tensor::<1>::from_data(TensorData::new(u, [b]), &device));
            return (f, u);
        }
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
        let (d_main, d_guide, w) = match &self.guide {
            Guide::None => return self.main.denoise_labels(x, sigma, &self.labels),
            Guide::Auto(g, w) => (
                self.main.denoise_labels(x.clone(), sigma, &self.labels),
                g.denoise_labels(x, sigma, &self.labels),
                *w,
            ),
            Guide::Cfg(w) => {
                // Both branches in one pass over a doubled batch: with and without the class.
                let n = sigma.len();
                let labels: Vec<Option<usize>> = self
                    .labels
                    .iter()
                    .copied()
                    .chain(std::iter::repeat_n(None, n))
                    .collect();
                let sig: Vec<f64> = sigma.iter().chain(sigma).copied().collect();
                let both =
                    self.main
                        .denoise_labels(Tensor::cat(vec![x.clone(), x], 0), &sig, &labels);
                let [_, c, h, ww] = both.dims();
                (
                    both.clone().slice([0..n, 0..c, 0..h, 0..ww]),
                    both.slice([n..2 * n, 0..c, 0..h, 0..ww]),
                    *w,
                )
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

/// Where the Heun trajectories of a batch start: at step `step` of the sampler's σ schedule
/// (0: σ_max), from `images` noised to that σ (img2img) or from pure noise.
#[derive(Debug, Clone, Copy)]
pub struct Start<'a> {
    /// Index into the schedule σ_0 = σ_max > … > σ_{N−1} = σ_min > σ_N = 0 of the first
    /// noise level; `steps` (σ = 0) returns the start images themselves.
    pub step: usize,
    /// `[n, C, H, W]` images to start from, x = y + σ_step·ε; `None` starts from x = σ_step·ε.
    pub images: Option<&'a [f32]>,
}

impl Start<'_> {
    /// Plain generation: pure noise at σ_max.
    pub const NOISE: Start<'static> = Start {
        step: 0,
        images: None,
    };
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
    let noise: Vec<(u64, u64)> = (0..labels.len() as u64).map(|i| (seed, i)).collect();
    sample_images_from(main, guide, labels, s, &Start::NOISE, &noise, device)
}

/// Guided Heun sampling from `start`: image i starts at σ = σ_{start.step} of the schedule
/// from x_i = y_i + σ·ε_i (y_i the start image, 0 without one), ε_i ~ N(0, I) drawn from the
/// stream `(noise[i].0, Sample, noise[i].1)`, and is integrated down to σ = 0 over the rest of
/// the schedule. With [`Start::NOISE`] and `noise[i] = (seed, i)` this is
/// [`sample_images`]; a later step is img2img (SDEdit, Meng et al. 2022). Each image has its
/// own stream, so results do not depend on the chunk size. Returns `[n, C, H, W]` flattened.
pub fn sample_images_from(
    main: &UnetDenoiser,
    guide: &Guide,
    labels: &[Option<usize>],
    s: &ImageSampling,
    start: &Start,
    noise: &[(u64, u64)],
    device: &Device,
) -> Result<Vec<f32>> {
    let [c, h, w] = main.shape;
    let len = c * h * w;
    let n = labels.len();
    let sigmas = edm_sigmas(s.steps, s.sigma_min, s.sigma_max, s.rho);
    if noise.len() != n || start.step > s.steps || start.images.is_some_and(|y| y.len() != n * len)
    {
        return Err(Error::Model(format!(
            "img2img start: {n} labels need {n} noise keys (got {}), images of {n}·{len} \
             values (got {:?}) and a step in 0..={} (got {})",
            noise.len(),
            start.images.map(<[f32]>::len),
            s.steps,
            start.step
        )));
    }
    // σ_max itself at step 0 (the schedule's first entry can differ from it in the last
    // bit), so that plain sampling draws the very numbers it always drew.
    let sigma = if start.step == 0 {
        s.sigma_max
    } else {
        sigmas[start.step]
    };
    let mut out = Vec::with_capacity(n * len);
    for lo in (0..n).step_by(s.chunk.max(1)) {
        let hi = (lo + s.chunk.max(1)).min(n);
        let x0: Vec<f32> = (lo..hi)
            .flat_map(|i| {
                let (seed, index) = noise[i];
                let mut rng = Rng::new(seed, Stream::Sample, index);
                let y = start.images.map(|y| &y[i * len..(i + 1) * len]);
                (0..len)
                    .map(|j| {
                        let e = rng.normal() * sigma;
                        y.map_or(e, |y| y[j] as f64 + e) as f32
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        if sigma == 0.0 {
            out.extend(x0);
            continue;
        }
        let x = Tensor::<4>::from_data(TensorData::new(x0, [hi - lo, c, h, w]), device); // [b, C, H, W]
        let den = Guided {
            main,
            labels: labels[lo..hi].to_vec(),
            guide: match guide {
                Guide::None => Guide::None,
                Guide::Auto(g, w) => Guide::Auto(g, *w),
                Guide::Cfg(w) => Guide::Cfg(*w),
            },
        };
        let v = heun(&den, x, &sigmas[start.step..])
            .try_into_vec_as::<f32>()
            .map_err(|e| Error::Model(format!("cannot read samples: {e:?}")))?;
        out.extend(v);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::diffusion::noise::LogNormal;

    pub(crate) use crate::data::images::tests::{fixture, fixture_dir};

    /// A U-Net small enough for tests: 4/8 channels at 28/14, attention at 14×14 (2 heads).
    pub(crate) fn tiny() -> crate::models::unet::UnetConfig {
        crate::models::unet::UnetConfig {
            channels: 4,
            mults: vec![1, 2],
            blocks: 1,
            attn_levels: vec![1],
            head_channels: 4,
            noise_channels: 8,
            emb_channels: 8,
            ..crate::models::unet::UnetConfig::default()
        }
    }

    pub(crate) fn lognormal() -> LogNormal {
        LogNormal {
            p_mean: -1.2,
            p_std: 1.2,
        }
    }
}
