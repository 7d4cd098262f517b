//! The `Denoiser` seam: anything that maps noisy examples and their σ to a clean estimate.

use burn::tensor::{Tensor, TensorData};

use super::precond::Precond;
use crate::models::mlp::Mlp;

/// D(x; σ): x is `[batch, …]`, σ one value per example.
pub trait Denoiser<const D: usize> {
    /// The denoised estimate, same shape as `x`.
    fn denoise(&self, x: Tensor<D>, sigma: &[f64]) -> Tensor<D>;
}

/// The toy MLP wrapped in EDM preconditioning.
#[derive(Debug, Clone)]
pub struct ToyDenoiser {
    pub net: Mlp,
    pub sigma_data: f64,
}

impl ToyDenoiser {
    /// Input features [c_in·x, c_noise, 1] and the per-example (c_skip, c_out) columns.
    pub fn inputs(&self, x: Tensor<2>, sigma: &[f64]) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
        let device = x.device();
        let n = sigma.len();
        let mut c_in = Vec::with_capacity(n);
        let mut extra = Vec::with_capacity(2 * n);
        let mut skip = Vec::with_capacity(n);
        let mut out = Vec::with_capacity(n);
        for &s in sigma {
            let p = Precond::new(s, self.sigma_data);
            c_in.push(p.c_in as f32);
            extra.push(p.c_noise as f32);
            extra.push(1.0);
            skip.push(p.c_skip as f32);
            out.push(p.c_out as f32);
        }
        let col = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [n, 1]), &device);
        let c_in = col(c_in); // [batch, 1]
        let extra = Tensor::<2>::from_data(TensorData::new(extra, [n, 2]), &device); // [batch, 2]
        let features = Tensor::cat(vec![x * c_in, extra], 1); // [batch, 4]
        (features, col(skip), col(out))
    }

    /// F(c_in·x; c_noise), the raw network output [batch, 2].
    pub fn raw(&self, x: Tensor<2>, sigma: &[f64]) -> Tensor<2> {
        let (features, _, _) = self.inputs(x, sigma);
        self.net.forward(features)
    }
}

impl Denoiser<2> for ToyDenoiser {
    fn denoise(&self, x: Tensor<2>, sigma: &[f64]) -> Tensor<2> {
        let (features, c_skip, c_out) = self.inputs(x.clone(), sigma);
        x * c_skip + self.net.forward(features) * c_out // [batch, 2]
    }
}
