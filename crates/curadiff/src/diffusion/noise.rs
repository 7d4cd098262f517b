//! Training noise-level distributions. A `NoiseSampler` draws σ per example and may observe
//! the per-example (σ, unweighted x0-error) after each step to adapt.
//!
//! `Schedule` is the configured sampler of a run: EDM's log-normal, a Laplace in log-SNR
//! (Hang et al. 2024), a loss-proportional adaptive sampler (VDM++ style) or InfoNoise
//! (see `infonoise`). Its state goes into every checkpoint so a resumed run draws the same σ.

use serde::{Deserialize, Serialize};

use super::infonoise::{Binned, Event};
use super::loss::Weighting;
use crate::error::{Error, Result};
use crate::rng::Rng;

/// u(σ) of EDM2's learned log-variance at the given σ (None: the loss has none). The
/// adaptive schedules ask for it at their bin centres when they refresh π, since the loss
/// weight that π compensates is then λ(σ)/e^{u(σ)}.
pub type LogVarianceAt<'a> = &'a mut dyn FnMut(&[f64]) -> Result<Option<Vec<f64>>>;

/// Draws training noise levels; adaptive samplers learn from observed errors.
pub trait NoiseSampler {
    /// One σ per example.
    fn draw(&mut self, rng: &mut Rng, n: usize) -> Vec<f64>;
    /// Per-example (σ, unweighted x0-error per dimension) of the last step. Fixed schedules
    /// ignore it.
    fn observe(&mut self, _sigma: &[f64], _x0_error: &[f64]) {}
}

/// EDM's log-normal: ln σ ~ N(P_mean, P_std²).
#[derive(Debug, Clone, PartialEq)]
pub struct LogNormal {
    pub p_mean: f64,
    pub p_std: f64,
}

impl LogNormal {
    /// P(σ ≤ s).
    pub fn cdf(&self, s: f64) -> f64 {
        normal_cdf((s.ln() - self.p_mean) / self.p_std)
    }
}

impl NoiseSampler for LogNormal {
    fn draw(&mut self, rng: &mut Rng, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| (self.p_mean + self.p_std * rng.normal()).exp())
            .collect()
    }
}

/// Hang et al. (2024): the log-SNR λ = ln(1/σ²) is Laplace(μ, b), density e^{−|λ−μ|/b}/2b.
/// σ is clamped to [σ_min, σ_max] so the heavy tails never reach σ = 0 or ∞.
#[derive(Debug, Clone, PartialEq)]
pub struct Laplace {
    pub mu: f64,
    pub b: f64,
    pub sigma_min: f64,
    pub sigma_max: f64,
}

impl NoiseSampler for Laplace {
    fn draw(&mut self, rng: &mut Rng, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| {
                // Inverse CDF on u ∈ (−½, ½); u = −½ exactly would give λ = −∞.
                let u = rng.uniform() - 0.5;
                let tail = (1.0 - 2.0 * u.abs()).max(f64::MIN_POSITIVE);
                let lambda = self.mu - self.b * u.signum() * tail.ln();
                (-0.5 * lambda).exp().clamp(self.sigma_min, self.sigma_max)
            })
            .collect()
    }
}

/// Φ(z), the standard normal CDF (erfc-based, |error| < 1.2e-7 relative).
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// erfc(x) by the Numerical Recipes Chebyshev fit (fractional error < 1.2e-7 everywhere).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Which training noise distribution a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// EDM: ln σ ~ N(P_mean, P_std²) (`diffusion.p_mean`, `diffusion.p_std`).
    Lognormal,
    /// Laplace in log-SNR (Hang et al. 2024).
    Laplace,
    /// Bins of log σ drawn ∝ the running mean of the weighted training loss (VDM++ style).
    Adaptive,
    /// InfoNoise: π ∝ gated entropy-rate profile / loss weight, from the running x0-errors.
    Infonoise,
}

/// The `[diffusion.schedule]` table. The adaptive samplers share the log-σ grid, the running
/// per-bin error and the refresh cadence. Defaults: n = 3 and p = 0.002 are the InfoNoise
/// paper's constants; the grid, smoothing, minimum count, warm-up and cadence are not
/// published and take the values of the public re-implementation for MNIST-scale runs; the
/// base-prior floor (5%), the pivot fallback and the stratified warm-up are this project's
/// additions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// "lognormal", "laplace", "adaptive" or "infonoise".
    pub kind: ScheduleKind,
    /// Laplace: location μ of the log-SNR ln(1/σ²).
    pub laplace_mu: f64,
    /// Laplace: scale b of the log-SNR.
    pub laplace_b: f64,
    /// Lower end of the log-σ grid (also clamps the Laplace draws).
    pub sigma_min: f64,
    /// Upper end of the log-σ grid.
    pub sigma_max: f64,
    /// Number of bins, uniform in log σ.
    pub bins: usize,
    /// Steps drawn from the base prior (the log-normal) before the first refresh.
    pub warmup_steps: u64,
    /// Stratify the warm-up (while π is still the base prior): just enough rows of each batch,
    /// m = ⌈R·min_bin_count/warmup_steps⌉, walk the R bins of the prior's central range
    /// ln σ ∈ P_mean ± 3·P_std (clipped to the grid) in turn, uniform in log σ inside each,
    /// so every bin there holds min_bin_count errors at the first refresh and the onset rule
    /// reads measured values where the prior trains; the other rows come from the prior. It
    /// moves the warm-up's σ marginal by m/batch (24 of 128 with 256 bins, 8 errors, 60
    /// steps). false: the prior only (the behaviour before this key).
    pub warmup_stratified: bool,
    /// Steps between refreshes of π after the warm-up.
    pub refresh_every: u64,
    /// Temporal EMA of the per-bin error: m̂ ← β m̂ + (1−β) m_raw.
    pub beta: f64,
    /// A bin's window mean is used only with at least this many observations.
    pub min_bin_count: u64,
    /// Standard deviation, in bins, of the Gaussian smoothing across bins (0: none).
    pub smooth_bins: f64,
    /// Exponent n of the low-noise gate σⁿ/(σⁿ + cⁿ).
    pub gate_n: f64,
    /// Onset threshold p of the automatic pivot c (relative to the profile's maximum).
    pub onset_p: f64,
    /// A fixed pivot c > 0; 0 selects c by the onset rule.
    pub gate_c: f64,
    /// The pivot used when the onset rule lands in the lowest quarter of the grid (where π
    /// would collapse onto the low-noise end); 0 keeps the rule's value.
    pub gate_c_fallback: f64,
    /// Fraction ε of the base prior mixed into π as a floor: π ← (1−ε)π + ε π₀.
    pub floor_mix: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            kind: ScheduleKind::Lognormal,
            laplace_mu: 0.0,
            laplace_b: 0.5,
            sigma_min: 0.002,
            sigma_max: 80.0,
            bins: 256,
            warmup_steps: 2000,
            warmup_stratified: true,
            refresh_every: 1000,
            beta: 0.9,
            min_bin_count: 8,
            smooth_bins: 2.0,
            gate_n: 3.0,
            onset_p: 0.002,
            gate_c: 0.0,
            gate_c_fallback: 0.2,
            floor_mix: 0.05,
        }
    }
}

impl ScheduleConfig {
    /// Checks every field; errors name the `diffusion.schedule.*` key.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, why: &str| {
            Err(Error::InvalidValue {
                field: format!("diffusion.schedule.{field}"),
                why: why.to_string(),
            })
        };
        let pos = |v: f64| v.is_finite() && v > 0.0;
        if !self.laplace_mu.is_finite() {
            return bad("laplace_mu", "must be a finite number");
        }
        if !pos(self.laplace_b) {
            return bad("laplace_b", "must be a positive number, e.g. 0.5");
        }
        if !pos(self.sigma_min) || !pos(self.sigma_max) || self.sigma_min >= self.sigma_max {
            return bad(
                "sigma_min",
                "the grid needs 0 < sigma_min < sigma_max (EDM: 0.002 and 80)",
            );
        }
        if self.bins < 4 {
            return bad(
                "bins",
                "must be at least 4 (the published grids use 128-256)",
            );
        }
        if self.refresh_every == 0 {
            return bad("refresh_every", "must be at least 1 step");
        }
        if !(0.0..1.0).contains(&self.beta) {
            return bad("beta", "must be in [0, 1)");
        }
        if self.min_bin_count == 0 {
            return bad("min_bin_count", "must be at least 1");
        }
        if !(self.smooth_bins.is_finite() && self.smooth_bins >= 0.0) {
            return bad("smooth_bins", "must be ≥ 0");
        }
        if !pos(self.gate_n) {
            return bad("gate_n", "must be positive (published: 3)");
        }
        if !(self.onset_p > 0.0 && self.onset_p < 1.0) {
            return bad("onset_p", "must be in (0, 1) (published: 0.002)");
        }
        if !(self.gate_c.is_finite() && self.gate_c >= 0.0) {
            return bad("gate_c", "must be ≥ 0 (0: the onset rule)");
        }
        if !(self.gate_c_fallback.is_finite() && self.gate_c_fallback >= 0.0) {
            return bad(
                "gate_c_fallback",
                "must be ≥ 0 (0: keep the onset rule's value)",
            );
        }
        if !(0.0..=1.0).contains(&self.floor_mix) {
            return bad("floor_mix", "must be in [0, 1]");
        }
        Ok(())
    }
}

/// A run's training noise sampler.
#[derive(Debug, Clone)]
pub enum Schedule {
    LogNormal(LogNormal),
    Laplace(Laplace),
    /// The adaptive samplers (loss-proportional and InfoNoise).
    Binned(Box<Binned>),
}

impl Schedule {
    /// The sampler of `cfg` with the log-normal `base` as warm-up prior and floor.
    pub fn new(
        cfg: &ScheduleConfig,
        base: LogNormal,
        weighting: Weighting,
        sigma_data: f64,
    ) -> Self {
        match cfg.kind {
            ScheduleKind::Lognormal => Schedule::LogNormal(base),
            ScheduleKind::Laplace => Schedule::Laplace(Laplace {
                mu: cfg.laplace_mu,
                b: cfg.laplace_b,
                sigma_min: cfg.sigma_min,
                sigma_max: cfg.sigma_max,
            }),
            ScheduleKind::Adaptive | ScheduleKind::Infonoise => Schedule::Binned(Box::new(
                Binned::new(cfg.clone(), base, weighting, sigma_data),
            )),
        }
    }

    /// The state to store in a checkpoint (null for the fixed schedules).
    pub fn state(&self) -> serde_json::Value {
        match self {
            Schedule::Binned(s) => s.state(),
            _ => serde_json::Value::Null,
        }
    }

    /// Restores the state written by `state`.
    pub fn restore(&mut self, v: &serde_json::Value) -> std::result::Result<(), String> {
        match self {
            Schedule::Binned(s) => s.restore(v),
            _ => Ok(()),
        }
    }

    /// [`NoiseSampler::observe`] for a loss that may learn EDM2's log-variance u(σ):
    /// `log_variance` is asked for u at the bin centres only when this observation refreshes
    /// π (the fixed schedules never ask).
    pub fn observe_with(
        &mut self,
        sigma: &[f64],
        x0_error: &[f64],
        log_variance: LogVarianceAt<'_>,
    ) -> Result<()> {
        match self {
            Schedule::LogNormal(_) | Schedule::Laplace(_) => Ok(()),
            Schedule::Binned(s) => s.observe_with(sigma, x0_error, log_variance),
        }
    }

    /// Refreshes and warnings since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        match self {
            Schedule::Binned(s) => s.take_events(),
            _ => Vec::new(),
        }
    }
}

impl NoiseSampler for Schedule {
    fn draw(&mut self, rng: &mut Rng, n: usize) -> Vec<f64> {
        match self {
            Schedule::LogNormal(s) => s.draw(rng, n),
            Schedule::Laplace(s) => s.draw(rng, n),
            Schedule::Binned(s) => s.draw(rng, n),
        }
    }

    fn observe(&mut self, sigma: &[f64], x0_error: &[f64]) {
        match self {
            Schedule::LogNormal(_) | Schedule::Laplace(_) => {}
            Schedule::Binned(s) => s.observe(sigma, x0_error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    #[test]
    fn normal_cdf_matches_tabulated_values() {
        // Standard normal table: Φ(0) = 0.5, Φ(1) = 0.841344746, Φ(−1.96) = 0.024997895.
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.0) - 0.841_344_746).abs() < 2e-7);
        assert!((normal_cdf(-1.96) - 0.024_997_895).abs() < 2e-7);
    }

    #[test]
    fn laplace_log_snr_has_the_laplace_moments() {
        // λ = −2 ln σ ~ Laplace(μ, b): mean μ, mean |λ − μ| = b, P(λ < μ) = ½.
        let mut s = Laplace {
            mu: 0.7,
            b: 0.5,
            sigma_min: 1e-6,
            sigma_max: 1e6,
        };
        let mut rng = Rng::new(3, Stream::Data, 0);
        let lam: Vec<f64> = s
            .draw(&mut rng, 200_000)
            .iter()
            .map(|x| -2.0 * x.ln())
            .collect();
        let n = lam.len() as f64;
        let mean = lam.iter().sum::<f64>() / n;
        let mad = lam.iter().map(|l| (l - 0.7).abs()).sum::<f64>() / n;
        let below = lam.iter().filter(|&&l| l < 0.7).count() as f64 / n;
        assert!((mean - 0.7).abs() < 0.01, "mean {mean}");
        assert!((mad - 0.5).abs() < 0.01, "mad {mad}");
        assert!((below - 0.5).abs() < 0.005, "below {below}");
    }

    #[test]
    fn validation_names_the_field() {
        let cfg = ScheduleConfig {
            sigma_min: 5.0,
            sigma_max: 1.0,
            ..Default::default()
        };
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("diffusion.schedule.sigma_min"), "{e}");
        assert!(ScheduleConfig::default().validate().is_ok());
    }
}
