//! The EDM diffusion core: preconditioning, loss, noise-level sampling, the Heun sampler and
//! guidance.
pub mod denoiser;
pub mod guidance;
pub mod loss;
pub mod noise;
pub mod precond;
pub mod sampler;

use serde::{Deserialize, Serialize};

/// Parameters of the diffusion process shared by training and sampling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffusionConfig {
    /// σ_data, the data's standard deviation assumed by the preconditioning (EDM: 0.5).
    pub sigma_data: f64,
    /// P_mean of the log-normal training noise distribution ln σ ~ N(P_mean, P_std²).
    pub p_mean: f64,
    /// P_std of the log-normal training noise distribution.
    pub p_std: f64,
    /// Per-example loss weighting: "score" (σ²‖s − s_θ‖², the toy's) or "edm" (λ(σ)).
    pub weighting: loss::Weighting,
}

impl DiffusionConfig {
    /// The log-normal training noise distribution ln σ ~ N(P_mean, P_std²).
    pub fn noise(&self) -> noise::LogNormal {
        noise::LogNormal {
            p_mean: self.p_mean,
            p_std: self.p_std,
        }
    }
}
