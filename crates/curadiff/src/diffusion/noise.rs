//! Training noise-level distributions. A `NoiseSampler` draws σ per example and may observe
//! the per-example (σ, unweighted x0-error) after each step to adapt.

use crate::rng::Rng;

/// Draws training noise levels; adaptive samplers learn from observed errors.
pub trait NoiseSampler {
    /// One σ per example.
    fn draw(&mut self, rng: &mut Rng, n: usize) -> Vec<f64>;
    /// Per-example (σ, unweighted x0-error) of the last step. Fixed schedules ignore it.
    fn observe(&mut self, _sigma: &[f64], _x0_error: &[f64]) {}
}

/// EDM's log-normal: ln σ ~ N(P_mean, P_std²).
#[derive(Debug, Clone, PartialEq)]
pub struct LogNormal {
    pub p_mean: f64,
    pub p_std: f64,
}

impl NoiseSampler for LogNormal {
    fn draw(&mut self, rng: &mut Rng, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| (self.p_mean + self.p_std * rng.normal()).exp())
            .collect()
    }
}
