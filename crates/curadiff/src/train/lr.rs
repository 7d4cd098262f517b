//! Learning-rate schedule (EDM2 `learning_rate_schedule`): inverse-square-root decay after
//! `t_ref`, with an optional linear ramp-up, both counted in images trained (`nimg`).
//!
//! lr(nimg) = α_ref / sqrt(max(nimg / t_ref, 1)) · min(nimg / ramp, 1).

use serde::{Deserialize, Serialize};

/// The learning-rate schedule, in images trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LrConfig {
    /// α_ref, the base learning rate.
    pub lr: f64,
    /// Images after which the rate decays as 1/sqrt(nimg / t_ref). 0 disables the decay.
    pub t_ref_nimg: f64,
    /// Length of the linear warm-up in images. 0 disables it.
    pub rampup_nimg: f64,
}

impl LrConfig {
    /// The learning rate after `nimg` images have been trained.
    pub fn at(&self, nimg: f64) -> f64 {
        let mut lr = self.lr;
        if self.t_ref_nimg > 0.0 {
            lr /= (nimg / self.t_ref_nimg).max(1.0).sqrt();
        }
        if self.rampup_nimg > 0.0 {
            lr *= (nimg / self.rampup_nimg).min(1.0);
        }
        lr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toy_schedule_matches_seed() {
        // The toy: lr = 0.01 / sqrt(max(t / 512, 1)) at iteration t, batch 4096.
        let c = LrConfig {
            lr: 0.01,
            t_ref_nimg: 512.0 * 4096.0,
            rampup_nimg: 0.0,
        };
        assert_eq!(c.at(0.0), 0.01);
        assert_eq!(c.at(512.0 * 4096.0), 0.01);
        assert!((c.at(2048.0 * 4096.0) - 0.005).abs() < 1e-15);
    }
}
