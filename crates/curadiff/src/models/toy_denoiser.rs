//! The toy MLP wrapped in EDM preconditioning (Karras et al. 2022, Table 1), and the
//! forward-only per-example losses any toy model (learner, reference, guide) is scored by.

use burn::tensor::{Device, Tensor, TensorData};

use super::mlp::Mlp;
use crate::diffusion::denoiser::Denoiser;
use crate::diffusion::loss::{self, f_target, score_target, Losses, Space, Weighting};
use crate::diffusion::precond::Precond;
use crate::diffusion::toy_batch::Batch;
use crate::error::{Error, Result};

/// The toy MLP wrapped in EDM preconditioning.
#[derive(Debug, Clone)]
pub struct ToyDenoiser {
    pub net: Mlp,
    pub sigma_data: f64,
}

/// Per-example preconditioning columns `[batch, 1]` on a device.
struct Columns {
    c_in: Tensor<2>,
    c_skip: Tensor<2>,
    c_out: Tensor<2>,
    inv_sigma: Tensor<2>,
    sigma2: Tensor<2>,
    /// [c_noise, 1] per example, `[batch, 2]`.
    extra: Tensor<2>,
}

impl Columns {
    fn new(sigma: &[f64], sigma_data: f64, device: &Device) -> Self {
        let n = sigma.len();
        let col = |f: &dyn Fn(f64) -> f64| {
            let v: Vec<f32> = sigma.iter().map(|&s| f(s) as f32).collect();
            Tensor::<2>::from_data(TensorData::new(v, [n, 1]), device)
        };
        let p = |s: f64| Precond::new(s, sigma_data);
        let extra: Vec<f32> = sigma
            .iter()
            .flat_map(|&s| [p(s).c_noise as f32, 1.0])
            .collect();
        Self {
            c_in: col(&|s| p(s).c_in),
            c_skip: col(&|s| p(s).c_skip),
            c_out: col(&|s| p(s).c_out),
            inv_sigma: col(&|s| 1.0 / s),
            sigma2: col(&|s| s * s),
            extra: Tensor::<2>::from_data(TensorData::new(extra, [n, 2]), device),
        }
    }
}

impl ToyDenoiser {
    fn is_energy(&self) -> bool {
        self.net.out.is_none()
    }

    /// The model's prediction in its own loss space: the score s(x; σ) (energy form) or the
    /// preconditioned output F (denoiser form). x: [batch, 2] → [batch, 2].
    pub fn predict(&self, x: Tensor<2>, sigma: &[f64]) -> (Tensor<2>, Space) {
        let c = Columns::new(sigma, self.sigma_data, &x.device());
        let x_hat = x * c.c_in.clone(); // [batch, 2]
        let features = Tensor::cat(vec![x_hat.clone(), c.extra], 1); // [batch, 4]
        if self.is_energy() {
            let g = self.net.energy_grad(features, c.inv_sigma);
            ((g - x_hat) * c.c_in, Space::Score) // ∂/∂x of log p̂
        } else {
            (self.net.forward(features), Space::F)
        }
    }

    /// The regression target of [`ToyDenoiser::predict`] for noisy `x` and clean target `y`.
    pub fn target(&self, x: &[f64], y: &[f64], sigma: &[f64]) -> Vec<f32> {
        if self.is_energy() {
            score_target(x, y, sigma)
        } else {
            f_target(x, y, sigma, self.sigma_data)
        }
    }
}

impl Denoiser<2> for ToyDenoiser {
    fn denoise(&self, x: Tensor<2>, sigma: &[f64]) -> Tensor<2> {
        let c = Columns::new(sigma, self.sigma_data, &x.device());
        let (pred, space) = self.predict(x.clone(), sigma);
        match space {
            Space::Score => x + pred * c.sigma2,       // D = x + σ²·s
            Space::F => x * c.c_skip + pred * c.c_out, // D = c_skip·x + c_out·F
        }
    }
}

/// A trained toy model for inference: a denoiser that can also score per-example losses.
pub trait ToyModel: Denoiser<2> + Sync {
    /// Forward-only per-example losses on `batch`.
    fn losses(&self, batch: &Batch, weighting: Weighting) -> Result<Losses>;
}

impl ToyModel for ToyDenoiser {
    fn losses(&self, batch: &Batch, weighting: Weighting) -> Result<Losses> {
        losses_of(self, batch, weighting)
    }
}

/// Forward-only per-example losses of any toy denoiser (learner, reference, guide).
pub fn losses_of(den: &ToyDenoiser, batch: &Batch, weighting: Weighting) -> Result<Losses> {
    let device = den.net.gain.val().device();
    let l = per_example_losses(den, batch, weighting, &device);
    Ok(Losses {
        weighted: read(l.weighted, "the per-example loss")?,
        x0_error: read(l.x0_error, "the per-example x0-error")?,
    })
}

/// The per-example losses of `den` on `batch` (with autodiff when `device` has it).
pub(crate) fn per_example_losses(
    den: &ToyDenoiser,
    batch: &Batch,
    weighting: Weighting,
    device: &Device,
) -> loss::PerExample {
    let n = batch.len();
    let x: Vec<f32> = batch.x.iter().map(|&v| v as f32).collect();
    let x = Tensor::<2>::from_data(TensorData::new(x, [n, batch.dim]), device);
    let target = den.target(&batch.x, &batch.target, &batch.sigma);
    let target = Tensor::<2>::from_data(TensorData::new(target, [n, batch.dim]), device);
    let (pred, space) = den.predict(x, &batch.sigma); // [batch, 2]
    loss::per_example(pred, target, space, &batch.sigma, den.sigma_data, weighting)
}

fn read(t: Tensor<1>, what: &str) -> Result<Vec<f32>> {
    t.try_into_vec_as::<f32>()
        .map_err(|e| Error::Model(format!("cannot read {what}: {e:?}")))
}
