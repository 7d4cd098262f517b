//! The per-example denoising loss in F-space (Karras et al. 2022, eq. 2 and Sec. 5):
//!
//!   λ(σ)·‖D(x; σ) − y‖² = λ(σ)·c_out(σ)²·‖F − F_target‖²,  F_target = (y − c_skip·x)/c_out,
//!
//! computed per example so that online selection can rank examples. Both the weighted loss
//! and the unweighted x0-error ‖D − y‖² (per dimension) are returned.

use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::precond::Precond;

/// The regression target of the denoiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossTarget {
    /// Exact score matching: the target is the exact posterior mean x + σ²∇log p(x;σ) of the
    /// analytic toy (the published toy's training). Only for `data.kind = "toy"`.
    Exact,
    /// Ordinary denoising score matching: the target is the clean example y of x = y + n.
    Dsm,
}

/// Per-example losses on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Losses {
    /// λ(σ)-weighted loss per example.
    pub weighted: Vec<f32>,
    /// Unweighted x0-error per example.
    pub x0_error: Vec<f32>,
}

impl Losses {
    pub fn mean(&self) -> f64 {
        self.weighted.iter().map(|&v| v as f64).sum::<f64>() / self.weighted.len().max(1) as f64
    }
}

/// Per-example loss weighting λ(σ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weighting {
    /// λ = 1/σ²: the score-matching loss σ²‖s − s_θ‖² of the published toy.
    Score,
    /// λ = (σ² + σ_d²)/(σ·σ_d)²: EDM's weighting, which makes λ·c_out² = 1.
    Edm,
}

/// F_target = (y − c_skip·x)/c_out for a flat batch (`x`, `y` hold `sigma.len()` equal rows).
pub fn f_target(x: &[f64], y: &[f64], sigma: &[f64], sigma_data: f64) -> Vec<f32> {
    let per = x.len() / sigma.len().max(1);
    x.chunks(per)
        .zip(y.chunks(per))
        .zip(sigma)
        .flat_map(|((xr, yr), &s)| {
            let p = Precond::new(s, sigma_data);
            xr.iter()
                .zip(yr)
                .map(move |(&xv, &yv)| ((yv - p.c_skip * xv) / p.c_out) as f32)
        })
        .collect()
}

/// Per-example losses of one batch, each `[batch]`.
pub struct PerExample {
    /// λ(σ)·mean over dimensions of (D − y)²: what training minimises.
    pub weighted: Tensor<1>,
    /// mean over dimensions of (D − y)²: the unweighted x0-error (for noise schedules).
    pub x0_error: Tensor<1>,
}

/// The space a model's error is measured in, and the factor that turns its squared error
/// into the denoiser-space squared error ‖D − y‖².
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// F-space: D − y = c_out·(F − F_target).
    F,
    /// Score space: D − y = σ²·(s − s_target), s_target = (y − x)/σ².
    Score,
}

impl Space {
    /// ‖D − y‖² / ‖error in this space‖² at σ.
    pub fn to_x0(self, sigma: f64, sigma_data: f64) -> f64 {
        match self {
            Space::F => Precond::new(sigma, sigma_data).c_out.powi(2),
            Space::Score => sigma.powi(4),
        }
    }
}

impl Weighting {
    /// λ(σ).
    pub fn lambda(self, sigma: f64, sigma_data: f64) -> f64 {
        match self {
            Weighting::Score => 1.0 / (sigma * sigma),
            Weighting::Edm => {
                (sigma * sigma + sigma_data * sigma_data) / (sigma * sigma_data).powi(2)
            }
        }
    }
}

/// s_target = (y − x)/σ² for a flat batch.
pub fn score_target(x: &[f64], y: &[f64], sigma: &[f64]) -> Vec<f32> {
    let per = x.len() / sigma.len().max(1);
    x.chunks(per)
        .zip(y.chunks(per))
        .zip(sigma)
        .flat_map(|((xr, yr), &s)| {
            xr.iter()
                .zip(yr)
                .map(move |(&xv, &yv)| ((yv - xv) / (s * s)) as f32)
        })
        .collect()
}

/// Per-example losses from a prediction and its target in `space` (both `[batch, …]`).
pub fn per_example<const D: usize>(
    pred: Tensor<D>,
    target: Tensor<D>,
    space: Space,
    sigma: &[f64],
    sigma_data: f64,
    weighting: Weighting,
) -> PerExample {
    let n = sigma.len();
    let device = pred.device();
    let sq = (pred - target)
        .square()
        .flatten::<2>(1, D - 1)
        .mean_dim(1)
        .reshape([n]); // [batch]
    let col = |f: &dyn Fn(f64) -> f64| {
        let v: Vec<f32> = sigma.iter().map(|&s| f(s) as f32).collect();
        Tensor::<1>::from_data(TensorData::new(v, [n]), &device)
    };
    let to_x0 = |s: f64| space.to_x0(s, sigma_data);
    let weight = |s: f64| weighting.lambda(s, sigma_data) * space.to_x0(s, sigma_data);
    PerExample {
        weighted: sq.clone() * col(&weight),
        x0_error: sq.detach() * col(&to_x0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn f_space_loss_equals_denoiser_space_loss() {
        // Hand case: σ = 0.5 = σ_d, x = (1, 2), y = (0, 1), F = (0.3, −0.2).
        // c_skip = 0.5, c_out = 0.353553…; D = c_skip·x + c_out·F.
        let (s, sd) = (0.5, 0.5);
        let x = [1.0, 2.0];
        let y = [0.0, 1.0];
        let f = [0.3f32, -0.2];
        let ft = f_target(&x, &y, &[s], sd);
        let p = Precond::new(s, sd);
        let d: Vec<f64> = (0..2)
            .map(|i| p.c_skip * x[i] + p.c_out * f[i] as f64)
            .collect();
        let want_x0 = ((d[0] - y[0]).powi(2) + (d[1] - y[1]).powi(2)) / 2.0;
        let dev = Device::flex();
        let t = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [1, 2]), &dev);
        // EDM λ at σ = σ_d = 0.5: (0.25 + 0.25)/(0.25·0.25) = 8.
        for (wt, lam) in [(Weighting::Score, 1.0 / (s * s)), (Weighting::Edm, 8.0)] {
            let l = per_example(t(f.to_vec()), t(ft.clone()), Space::F, &[s], sd, wt);
            let x0: f32 = l.x0_error.into_scalar();
            let w: f32 = l.weighted.into_scalar();
            assert!((x0 as f64 - want_x0).abs() < 1e-6, "{x0} vs {want_x0}");
            assert!(
                (w as f64 - lam * want_x0).abs() < 1e-5,
                "{wt:?}: {w} vs {}",
                lam * want_x0
            );
        }
        // The same loss in score space: s = (D − x)/σ², s_target = (y − x)/σ².
        let sp: Vec<f32> = (0..2).map(|i| ((d[i] - x[i]) / (s * s)) as f32).collect();
        let st = score_target(&x, &y, &[s]);
        let l = per_example(t(sp), t(st), Space::Score, &[s], sd, Weighting::Score);
        let x0: f32 = l.x0_error.into_scalar();
        assert!((x0 as f64 - want_x0).abs() < 1e-6, "{x0} vs {want_x0}");
    }
}
