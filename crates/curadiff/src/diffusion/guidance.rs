//! Guidance: D_w = D_guide + w·(D_main − D_guide) (Karras et al. 2024, eq. 1).
//! Autoguidance when the guide is a smaller or less-trained model of the same task; CFG when it
//! is the unconditional branch. w = 1 is the main model alone.

use burn::tensor::Tensor;

use super::denoiser::Denoiser;

/// The guided denoiser.
pub struct Guided<'a, const D: usize> {
    pub main: &'a dyn Denoiser<D>,
    pub guide: &'a dyn Denoiser<D>,
    /// Guidance weight w.
    pub weight: f64,
}

impl<const D: usize> Denoiser<D> for Guided<'_, D> {
    fn denoise(&self, x: Tensor<D>, sigma: &[f64]) -> Tensor<D> {
        let d_main = self.main.denoise(x.clone(), sigma);
        if self.weight == 1.0 {
            return d_main;
        }
        let d_guide = self.guide.denoise(x, sigma);
        d_guide.clone() + (d_main - d_guide).mul_scalar(self.weight)
    }
}
