//! Power-function EMA (Karras et al. 2024, EDM2, Sec. 3.1 and Appendix C.2).
//!
//! The averaged weights at time t weigh past weights ∝ τ^γ; the relative standard deviation of
//! that profile is σ_rel = sqrt((γ+1) / ((γ+2)²(γ+3))). One update with batch Δt at images t:
//! β = (1 − Δt/t)^(γ+1), p_ema ← β·p_ema + (1 − β)·p.
//!
//! [`Profile`] is the one EMA of host parameters: a run keeps one for inference
//! (`train.ema_sigma_rel`) and, for post-hoc reconstruction ([`super::phema`]), any number more
//! (`train.phema_sigma_rels`), all updated by [`Profile::update`].

use crate::models::params::HostParam;

/// One power-function EMA of a set of host parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub sigma_rel: f64,
    pub gamma: f64,
    pub params: Vec<HostParam>,
}

impl Profile {
    /// A profile at `sigma_rel` starting from `params`.
    pub fn new(sigma_rel: f64, params: &[HostParam]) -> Self {
        Self {
            sigma_rel,
            gamma: gamma_from_sigma_rel(sigma_rel),
            params: params.to_vec(),
        }
    }

    /// The update after a step of `batch` images that brought the count to `nimg`.
    pub fn update(&mut self, params: &[HostParam], nimg: u64, batch: usize) {
        let beta = beta(self.gamma, nimg as f64, batch as f64) as f32;
        for (e, p) in self.params.iter_mut().zip(params) {
            for (ev, pv) in e.data.iter_mut().zip(&p.data) {
                *ev = *ev * beta + pv * (1.0 - beta);
            }
        }
    }
}

/// γ of the power-function profile with relative standard deviation `sigma_rel`
/// (EDM2 eq. for `std_to_exp`: the largest real root of
/// g³ + 7g² + (16 − σ_rel⁻²)g + (12 − σ_rel⁻²) = 0).
pub fn gamma_from_sigma_rel(sigma_rel: f64) -> f64 {
    let t = sigma_rel.powi(-2);
    let f = |g: f64| ((g + 7.0) * g + (16.0 - t)) * g + (12.0 - t);
    // f is increasing beyond its largest root; bracket and bisect.
    let (mut lo, mut hi) = (0.0, 1.0);
    while f(hi) < 0.0 {
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if f(mid) < 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// σ_rel of the profile with exponent γ.
pub fn sigma_rel_from_gamma(gamma: f64) -> f64 {
    ((gamma + 1.0) / ((gamma + 2.0).powi(2) * (gamma + 3.0))).sqrt()
}

/// The decay β for an update of `batch` images that brings the count to `nimg`.
pub fn beta(gamma: f64, nimg: f64, batch: f64) -> f64 {
    if nimg <= 0.0 {
        return 0.0;
    }
    (1.0 - batch / nimg).max(0.0).powf(gamma + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_gammas() {
        // EDM2 quotes σ_rel 0.05 → γ ≈ 16.97, 0.10 → 6.94; the toy's 0.010 → 96.99.
        assert!((gamma_from_sigma_rel(0.05) - 16.97).abs() < 0.01);
        assert!((gamma_from_sigma_rel(0.10) - 6.94).abs() < 0.01);
        assert!((gamma_from_sigma_rel(0.010) - 96.99).abs() < 0.01);
        for s in [0.01, 0.05, 0.2] {
            assert!((sigma_rel_from_gamma(gamma_from_sigma_rel(s)) - s).abs() < 1e-12);
        }
    }

    #[test]
    fn beta_is_zero_first_then_grows() {
        let g = gamma_from_sigma_rel(0.05);
        assert_eq!(beta(g, 4096.0, 4096.0), 0.0);
        let b = beta(g, 4096.0 * 100.0, 4096.0);
        assert!((b - (0.99f64).powf(g + 1.0)).abs() < 1e-15);
    }

    #[test]
    fn ema_of_a_ramp_has_the_power_profile_mean() {
        // Weights p_t = t for t = 1..T, EMA with the power profile ∝ τ^γ has mean
        // Σ τ^{γ+1} / Σ τ^γ ≈ T (γ+1)/(γ+2) for large T.
        let g = 6.94;
        let mut ema = 0.0;
        let steps = 20_000;
        for t in 1..=steps {
            let b = beta(g, t as f64, 1.0);
            ema = b * ema + (1.0 - b) * t as f64;
        }
        let want = steps as f64 * (g + 1.0) / (g + 2.0);
        assert!((ema - want).abs() / want < 1e-3, "{ema} vs {want}");
    }
}
