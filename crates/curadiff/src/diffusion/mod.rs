//! The EDM diffusion core: preconditioning, loss, noise-level sampling, the Heun sampler and
//! guidance.
pub mod binned_state;
pub mod denoiser;
pub mod gate;
pub mod guidance;
pub mod infonoise;
pub mod log_grid;
pub mod loss;
pub mod noise;
pub mod precond;
pub mod sampler;
pub mod toy_batch;
pub mod warmup;

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
    /// The training noise distribution (default: the log-normal above).
    #[serde(default)]
    pub schedule: noise::ScheduleConfig,
}

impl DiffusionConfig {
    /// The log-normal ln σ ~ N(P_mean, P_std²): EDM's training noise distribution, the
    /// adaptive schedules' warm-up prior and floor, and the σ distribution of the exact loss.
    pub fn lognormal(&self) -> noise::LogNormal {
        noise::LogNormal {
            p_mean: self.p_mean,
            p_std: self.p_std,
        }
    }

    /// The configured training noise sampler (`schedule`), in its initial state.
    pub fn noise(&self) -> noise::Schedule {
        noise::Schedule::new(
            &self.schedule,
            self.lognormal(),
            self.weighting,
            self.sigma_data,
        )
    }
}
