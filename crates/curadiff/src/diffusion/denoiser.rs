//! The `Denoiser` seam: anything that maps noisy examples and their σ to a clean estimate.

use burn::tensor::Tensor;

/// D(x; σ): x is `[batch, …]`, σ one value per example.
pub trait Denoiser<const D: usize> {
    /// The denoised estimate, same shape as `x`.
    fn denoise(&self, x: Tensor<D>, sigma: &[f64]) -> Tensor<D>;
}
