//! Training batches of the toy: noise levels, noisy points and their regression targets.

use super::loss::LossTarget;
use super::noise::NoiseSampler;
use crate::data::toy2d::Mixture;
use crate::rng::{Rng, Stream};

/// A batch of noisy examples; `x` and `target` hold `sigma.len()` rows of `dim` values.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub dim: usize,
    /// Noisy inputs x = y + n, n ~ N(0, σ²I).
    pub x: Vec<f64>,
    /// σ per example.
    pub sigma: Vec<f64>,
    /// What D(x; σ) regresses to: the clean y (denoising score matching) or the exact
    /// posterior mean E[y | x] = x + σ²∇log p(x; σ) (exact score matching).
    pub target: Vec<f64>,
    /// The clean examples y (x = y + n).
    pub clean: Vec<f64>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.sigma.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sigma.is_empty()
    }

    /// The rows at `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> Batch {
        let d = self.dim;
        let rows = |v: &[f64]| {
            idx.iter()
                .flat_map(|&i| v[i * d..(i + 1) * d].to_vec())
                .collect()
        };
        Batch {
            dim: d,
            x: rows(&self.x),
            sigma: idx.iter().map(|&i| self.sigma[i]).collect(),
            target: rows(&self.target),
            clean: rows(&self.clean),
        }
    }
}

/// The toy batch of step `step`: σ from `noise`, then fresh exact samples of the mixture.
/// Everything random comes from the `(seed, Data, step)` stream.
pub fn toy_batch(
    mixture: &Mixture,
    noise: &mut dyn NoiseSampler,
    target: LossTarget,
    seed: u64,
    step: u64,
    n: usize,
) -> Batch {
    let mut rng = Rng::new(seed, Stream::Data, step);
    let sigma = noise.draw(&mut rng, n);
    let mut x = Vec::with_capacity(2 * n);
    let mut clean = Vec::with_capacity(2 * n);
    for &s in &sigma {
        let (y, xn) = mixture.sample_pair(&mut rng, s);
        clean.extend(y);
        x.extend(xn);
    }
    with_targets(mixture, target, x, clean, sigma)
}

/// The same clean examples as `batch` with σ and noise re-drawn from the `(seed, Reference,
/// step)` stream: what a reference model scores when it does not share the learner's noise.
pub fn redraw_noise(
    mixture: &Mixture,
    batch: &Batch,
    noise: &mut dyn NoiseSampler,
    target: LossTarget,
    seed: u64,
    step: u64,
) -> Batch {
    let mut rng = Rng::new(seed, Stream::Reference, step);
    let sigma = noise.draw(&mut rng, batch.len());
    let mut x = Vec::with_capacity(batch.clean.len());
    for (y, &s) in batch.clean.chunks(2).zip(&sigma) {
        x.push(y[0] + s * rng.normal());
        x.push(y[1] + s * rng.normal());
    }
    with_targets(mixture, target, x, batch.clean.clone(), sigma)
}

fn with_targets(
    mixture: &Mixture,
    target: LossTarget,
    x: Vec<f64>,
    clean: Vec<f64>,
    sigma: Vec<f64>,
) -> Batch {
    let target = match target {
        LossTarget::Dsm => clean.clone(),
        LossTarget::Exact => {
            let pts: Vec<[f64; 2]> = x.chunks(2).map(|c| [c[0], c[1]]).collect();
            let scores = mixture.training_scores(&pts, &sigma);
            pts.iter()
                .zip(&scores)
                .zip(&sigma)
                .flat_map(|((p, g), s)| [p[0] + s * s * g[0], p[1] + s * s * g[1]])
                .collect()
        }
    };
    Batch {
        dim: 2,
        x,
        sigma,
        target,
        clean,
    }
}
