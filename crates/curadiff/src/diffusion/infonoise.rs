//! Adaptive training noise distributions on a grid uniform in log σ: InfoNoise and a
//! loss-proportional baseline (VDM++ style).
//!
//! Both keep a running per-bin mean of the unweighted x0-error m̂(σ), fed by the errors the
//! training step computes anyway, and refresh the sampling distribution π every
//! `refresh_every` steps after a warm-up on the base prior (EDM's log-normal, with just
//! enough rows of each batch stratified over the prior's range that its bins are measured,
//! see [`super::warmup`]):
//!
//! - **InfoNoise** (Raya et al. 2026, Algorithm 1): by I-MMSE the conditional entropy rate of
//!   the forward process is mmse(σ)/σ³ per dσ; with m̂ as the plug-in estimate of mmse,
//!   r = (m̂/σ³)·g_{c,n}(σ) gates out the low-noise end where m̂ overestimates mmse early in
//!   training (see [`super::gate`] for g and its pivot c), and π ∝ r / w(σ) (Eq. 15) makes
//!   the *effective* allocation π·w follow the profile while the loss weight w itself stays
//!   fixed. With EDM2's learned log-variance u(σ) the loss is λ‖D − y‖²/e^u + u, so
//!   w = λ(σ)/e^{u(σ)}, u read at the bin centres at each refresh.
//! - **Adaptive**: π per bin ∝ the running mean of the weighted loss w(σ)·m̂(σ).
//!
//! A bin is *observed* once a refresh window held `min_bin_count` finite errors in it; m̂ in
//! the other bins is filled from the observed ones (linear between them, constant beyond), is
//! never smoothed into an observed bin and never sets the gate's pivot. π is tabulated as bin
//! masses with a CDF at the bin edges and sampled by inverse CDF, linear in log σ inside a
//! bin. A small share of the base prior is mixed in as a floor. Bad windows (no usable bin,
//! non-finite errors or log-variances, a zero profile) keep the previous π and report a
//! warning; σ outside the grid and non-finite errors are not binned.

use serde::{Deserialize, Serialize};

use super::binned_state::State;
use super::gate::{gate, GateSource, OnsetRule};
use super::log_grid::{cdf_of, interpolate, normalised, smooth, LogGrid};
use super::loss::Weighting;
use super::noise::{
    normal_cdf, LogNormal, LogVarianceAt, NoiseSampler, ScheduleConfig, ScheduleKind,
};
use super::warmup;
use crate::error::{Error, Result};
use crate::rng::Rng;

/// What a refresh turns the running error into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// π ∝ w·m̂ (the weighted loss).
    Loss,
    /// π ∝ gated m̂/σ³ / w (InfoNoise).
    EntropyRate,
}

/// One refresh of π, for the run's diagnostics (a line of `noise/refreshes.jsonl`; fields
/// added later default when reading older lines).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refresh {
    /// Steps observed when π was refreshed.
    pub step: u64,
    /// Bin centres σ_k.
    pub sigma: Vec<f64>,
    /// The smoothed running x0-error m̂(σ_k) (per dimension).
    pub m_hat: Vec<f64>,
    /// Whether bin k's m̂ was measured (≥ `min_bin_count` errors in some window); the others
    /// are filled from it.
    #[serde(default)]
    pub observed: Vec<bool>,
    /// Finite errors binned in each bin during the window that ended here.
    #[serde(default)]
    pub counts: Vec<u64>,
    /// Observations of the window not binned (non-finite, or σ off the grid).
    #[serde(default)]
    pub skipped: u64,
    /// The ungated entropy-rate profile as mass per bin (∝ m̂/σ² per d ln σ), summing to 1.
    pub rate: Vec<f64>,
    /// The learned log-variance u(σ_k) the loss weight was divided by (None: no such head).
    #[serde(default)]
    pub log_variance: Option<Vec<f64>>,
    /// The new π as mass per bin (floor included), summing to 1.
    pub pi: Vec<f64>,
    /// The gate's pivot c (InfoNoise only).
    pub gate_c: Option<f64>,
    /// Where c came from: "onset", "fallback" or "fixed" (InfoNoise only).
    #[serde(default)]
    pub gate_c_source: Option<GateSource>,
    /// σ at the 10%, 50% and 90% quantiles of π.
    pub quantiles: [f64; 3],
}

/// What happened during `observe`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Refresh(Box<Refresh>),
    Warning(String),
}

/// An adaptive sampler on a log-σ grid (see the module docs).
#[derive(Debug, Clone)]
pub struct Binned {
    rule: Rule,
    cfg: ScheduleConfig,
    grid: LogGrid,
    base: LogNormal,
    weighting: Weighting,
    sigma_data: f64,
    state: State,
    /// CDF of `state.mass` at the K+1 bin edges.
    cdf: Vec<f64>,
    events: Vec<Event>,
}

impl Binned {
    pub fn new(
        cfg: ScheduleConfig,
        base: LogNormal,
        weighting: Weighting,
        sigma_data: f64,
    ) -> Self {
        let rule = match cfg.kind {
            ScheduleKind::Adaptive => Rule::Loss,
            _ => Rule::EntropyRate,
        };
        let k = cfg.bins;
        Self {
            rule,
            grid: LogGrid::new(cfg.sigma_min, cfg.sigma_max, k),
            cfg,
            base,
            weighting,
            sigma_data,
            state: State::new(k),
            cdf: Vec::new(),
            events: Vec::new(),
        }
    }

    /// The bin centres σ_k (geometric midpoints).
    pub fn centers(&self) -> Vec<f64> {
        self.grid.centers()
    }

    /// The current π as bin masses (None: still the base prior).
    pub fn pi(&self) -> Option<&[f64]> {
        self.state.mass.as_deref()
    }

    /// The base prior's mass per bin, renormalised to the grid (uniform if it misses it).
    pub fn base_mass(&self) -> Vec<f64> {
        let c: Vec<f64> = (0..=self.cfg.bins)
            .map(|i| normal_cdf((self.grid.edge(i) - self.base.p_mean) / self.base.p_std))
            .collect();
        let m: Vec<f64> = c.windows(2).map(|w| (w[1] - w[0]).max(0.0)).collect();
        normalised(&m).unwrap_or_else(|| vec![1.0 / self.cfg.bins as f64; self.cfg.bins])
    }

    /// The bins the warm-up's stratified rows walk (see [`super::warmup`]).
    pub fn warmup_bins(&self) -> (usize, usize) {
        warmup::bins(&self.grid, &self.base)
    }

    /// σ at quantile `q` of the current π.
    fn quantile(&self, q: f64) -> f64 {
        self.grid.inverse_cdf(&self.cdf, q, 0.0)
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The checkpointed state (floats as bit patterns, so a resumed run draws bit-identical
    /// σ).
    pub fn state(&self) -> serde_json::Value {
        self.state.to_json()
    }

    pub fn restore(&mut self, v: &serde_json::Value) -> std::result::Result<(), String> {
        self.state = State::from_json(v, self.cfg.bins)?;
        self.cdf = self.state.mass.as_deref().map(cdf_of).unwrap_or_default();
        Ok(())
    }

    fn warn(&mut self, why: String) {
        self.events.push(Event::Warning(format!(
            "noise schedule, step {}: {why}; keeping the previous π",
            self.state.steps
        )));
    }

    /// Bins one step's (σ, x0-error) pairs; whether a refresh is due now.
    fn record(&mut self, sigma: &[f64], x0_error: &[f64]) -> bool {
        for (&s, &e) in sigma.iter().zip(x0_error) {
            match self.grid.bin_of(s) {
                Some(i) if e.is_finite() && e >= 0.0 => {
                    self.state.sum[i] += e;
                    self.state.cnt[i] += 1;
                }
                _ => self.state.skipped += 1,
            }
        }
        self.state.steps += 1;
        let (steps, warm) = (self.state.steps, self.cfg.warmup_steps);
        steps >= warm.max(1) && (steps - warm) % self.cfg.refresh_every == 0
    }

    /// [`NoiseSampler::observe`] with the loss's learned log-variance, asked for at the bin
    /// centres when π is refreshed.
    pub fn observe_with(
        &mut self,
        sigma: &[f64],
        x0_error: &[f64],
        log_variance: LogVarianceAt<'_>,
    ) -> Result<()> {
        if self.record(sigma, x0_error) {
            let centers = self.centers();
            let u = log_variance(&centers)?;
            if let Some(u) = &u {
                if u.len() != centers.len() {
                    return Err(Error::Model(format!(
                        "the learned log-variance came at {} σ for {} bin centres",
                        u.len(),
                        centers.len()
                    )));
                }
            }
            self.refresh(u);
        }
        Ok(())
    }

    /// Recomputes π from the window since the last refresh; `u` is the loss's learned
    /// log-variance at the bin centres, if it has one.
    fn refresh(&mut self, u: Option<Vec<f64>>) {
        let k = self.cfg.bins;
        let min = self.cfg.min_bin_count;
        let raw: Vec<Option<f64>> = (0..k)
            .map(|i| {
                let m = self.state.sum[i] / self.state.cnt[i] as f64;
                (self.state.cnt[i] >= min && m.is_finite()).then_some(m)
            })
            .collect();
        let counts = std::mem::replace(&mut self.state.cnt, vec![0; k]);
        let skipped = std::mem::take(&mut self.state.skipped);
        self.state.sum = vec![0.0; k];
        if raw.iter().all(Option::is_none) {
            self.warn(format!(
                "no bin had {min} finite observations inside [{}, {}] since the last refresh \
                 ({skipped} observations were non-finite or off the grid)",
                self.cfg.sigma_min, self.cfg.sigma_max
            ));
            return;
        }
        if u.as_ref().is_some_and(|u| u.iter().any(|v| !v.is_finite())) {
            self.warn("the learned log-variance u(σ) is not finite".into());
            return;
        }
        // Observed bins: the window's mean, blended into the previous measurement (Alg. 1's
        // temporal EMA); the others are filled from the observed ones.
        let beta = self.cfg.beta;
        let measured: Vec<Option<f64>> = (0..k)
            .map(|i| {
                let prev = self
                    .state
                    .m_hat
                    .as_ref()
                    .filter(|_| self.state.observed[i])
                    .map(|p| p[i]);
                match (raw[i], prev) {
                    (Some(r), Some(p)) => Some(beta * p + (1.0 - beta) * r),
                    (Some(r), None) => Some(r),
                    (None, p) => p,
                }
            })
            .collect();
        let observed: Vec<bool> = measured.iter().map(Option::is_some).collect();
        let m_hat = interpolate(&measured);
        let smooth: Vec<f64> = smooth(&m_hat, self.cfg.smooth_bins, &observed)
            .into_iter()
            .map(|v| v.max(0.0))
            .collect();
        let sigma = self.centers();
        // The loss weight π compensates: λ(σ), over e^{u(σ)} with a learned log-variance.
        let w: Vec<f64> = (0..k)
            .map(|i| {
                let lambda = self.weighting.lambda(sigma[i], self.sigma_data);
                lambda / u.as_ref().map_or(1.0, |u| u[i].exp())
            })
            .collect();
        // Mass per bin of a density f(σ) per dσ on a log-uniform grid ∝ f(σ_k)·σ_k.
        let rate_dsigma: Vec<f64> = smooth
            .iter()
            .zip(&sigma)
            .map(|(m, s)| m / s.powi(3))
            .collect();
        let Some(rate) = normalised(
            &rate_dsigma
                .iter()
                .zip(&sigma)
                .map(|(r, s)| r * s)
                .collect::<Vec<_>>(),
        ) else {
            self.warn("the error profile is zero or not finite".into());
            return;
        };
        let (target, pivot) = match self.rule {
            Rule::Loss => (smooth.iter().zip(&w).map(|(m, w)| m * w).collect(), None),
            Rule::EntropyRate => {
                let onset = OnsetRule {
                    gate_c: self.cfg.gate_c,
                    fallback: self.cfg.gate_c_fallback,
                    p: self.cfg.onset_p,
                };
                let p = onset.pivot(&rate_dsigma, &sigma, &observed);
                let n = self.cfg.gate_n;
                let t: Vec<f64> = (0..k)
                    .map(|i| rate_dsigma[i] * gate(sigma[i], p.c, n) / w[i] * sigma[i])
                    .collect();
                (t, Some(p))
            }
        };
        let Some(target) = normalised(&target) else {
            self.warn("the target profile is zero or not finite".into());
            return;
        };
        if let Some(p) = pivot.filter(|p| p.source == GateSource::Fallback) {
            let at = p
                .onset_bin
                .map_or("no observed bin".into(), |i| format!("σ = {:.4}", sigma[i]));
            self.events.push(Event::Warning(format!(
                "noise schedule, step {}: the onset rule put the gate's pivot at {at}, in the \
                 lowest quarter of the grid; using gate_c_fallback = {}",
                self.state.steps, self.cfg.gate_c_fallback
            )));
        }
        let eps = self.cfg.floor_mix;
        let mass: Vec<f64> = target
            .iter()
            .zip(self.base_mass())
            .map(|(t, b)| (1.0 - eps) * t + eps * b)
            .collect();
        self.cdf = cdf_of(&mass);
        self.state.m_hat = Some(m_hat);
        self.state.observed = observed.clone();
        self.state.mass = Some(mass.clone());
        self.state.gate_c = pivot.map(|p| p.c);
        let quantiles = [self.quantile(0.1), self.quantile(0.5), self.quantile(0.9)];
        self.events.push(Event::Refresh(Box::new(Refresh {
            step: self.state.steps,
            sigma,
            m_hat: smooth,
            observed,
            counts,
            skipped,
            rate,
            log_variance: u,
            pi: mass,
            gate_c: pivot.map(|p| p.c),
            gate_c_source: pivot.map(|p| p.source),
            quantiles,
        })));
    }
}

impl NoiseSampler for Binned {
    fn draw(&mut self, rng: &mut Rng, n: usize) -> Vec<f64> {
        if self.state.mass.is_none() {
            let c = &self.cfg;
            // The first refresh comes at step W, or at refresh_every when W = 0 (`record`).
            let first = if c.warmup_steps == 0 {
                c.refresh_every
            } else {
                c.warmup_steps
            };
            let m = if c.warmup_stratified {
                warmup::rows(&self.grid, &self.base, c.min_bin_count, first, n)
            } else {
                0
            };
            return warmup::draw(&self.grid, &mut self.base, m, self.state.steps, rng, n);
        }
        (0..n)
            .map(|_| self.grid.inverse_cdf(&self.cdf, rng.uniform(), 0.5))
            .collect()
    }

    fn observe(&mut self, sigma: &[f64], x0_error: &[f64]) {
        if self.record(sigma, x0_error) {
            self.refresh(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    fn cfg(kind: ScheduleKind) -> ScheduleConfig {
        ScheduleConfig {
            kind,
            bins: 64,
            warmup_steps: 5,
            refresh_every: 5,
            min_bin_count: 8,
            ..Default::default()
        }
    }

    fn base() -> LogNormal {
        LogNormal {
            p_mean: -1.2,
            p_std: 1.2,
        }
    }

    /// Feeds `steps` batches of a d-dimensional unit Gaussian through the exact denoiser
    /// D(x) = x/(1+σ²), observing the per-dimension error ‖y − D‖²/d.
    fn feed_gaussian(s: &mut Binned, steps: u64, batch: usize, d: usize) -> Vec<u64> {
        let mut counts = vec![0u64; s.cfg.bins];
        for step in 0..steps {
            let mut rng = Rng::new(11, Stream::Data, s.state.steps + step);
            let sigma = s.draw(&mut rng, batch);
            let err: Vec<f64> = sigma
                .iter()
                .map(|&sg| {
                    (0..d)
                        .map(|_| {
                            let y = rng.normal();
                            let x = y + sg * rng.normal();
                            (y - x / (1.0 + sg * sg)).powi(2)
                        })
                        .sum::<f64>()
                        / d as f64
                })
                .collect();
            for &sg in &sigma {
                if let Some(i) = s.grid.bin_of(sg) {
                    counts[i] += 1;
                }
            }
            s.observe(&sigma, &err);
        }
        counts
    }

    #[test]
    fn a_zero_warm_up_stratifies_for_the_first_refresh_at_refresh_every() {
        // With W = 0 the first refresh comes at step refresh_every (`record`), so the
        // stratified share is sized for that many steps, not for one step (which would make
        // every row of the batch stratified).
        let c = ScheduleConfig {
            warmup_steps: 0,
            refresh_every: 100,
            ..cfg(ScheduleKind::Infonoise)
        };
        let mut s = Binned::new(c, base(), Weighting::Edm, 0.5);
        let m = warmup::rows(&s.grid, &s.base, 8, 100, 128);
        assert!(m > 0 && m < 128, "m = {m}");
        let got = s.draw(&mut Rng::new(3, Stream::Data, 0), 128);
        let want = warmup::draw(
            &s.grid,
            &mut base(),
            m,
            0,
            &mut Rng::new(3, Stream::Data, 0),
            128,
        );
        assert_eq!(got, want);
        assert_eq!(warmup::rows(&s.grid, &s.base, 8, 1, 128), 128);
    }

    #[test]
    fn profile_converges_to_the_gaussian_mmse() {
        // Unit Gaussian data: mmse(σ) = σ²/(1+σ²) per dimension (closed form). The exact
        // denoiser's errors, binned and smoothed, must converge to it wherever π puts data.
        // The pivot is pinned at 0.1 so that π spreads over many bins: the onset rule on
        // this profile, measured down to σ ≈ e^{−4.8} where 1/(σ(1+σ²)) peaks, puts c near
        // 1.5 (1/(c(1+c²)) = 0.002·e^{4.8}) and π on fewer, higher bins.
        let c = ScheduleConfig {
            kind: ScheduleKind::Infonoise,
            bins: 128,
            warmup_steps: 20,
            refresh_every: 20,
            beta: 0.5,
            gate_c: 0.1,
            ..Default::default()
        };
        let mut s = Binned::new(c, base(), Weighting::Edm, 1.0);
        let mut total = vec![0u64; 128];
        for _ in 0..8 {
            let counts = feed_gaussian(&mut s, 20, 2048, 8);
            for (t, c) in total.iter_mut().zip(counts) {
                *t += c;
            }
            for ev in s.take_events() {
                if let Event::Warning(w) = ev {
                    panic!("unexpected warning {w}");
                }
            }
        }
        let m_hat = s.state.m_hat.clone().unwrap();
        let mut checked = 0;
        for (i, sg) in s.centers().iter().enumerate() {
            if total[i] < 2000 {
                continue;
            }
            let exact = sg * sg / (1.0 + sg * sg);
            let rel = (m_hat[i] - exact).abs() / exact;
            assert!(rel < 0.05, "σ = {sg}: m̂ = {} vs mmse {exact}", m_hat[i]);
            checked += 1;
        }
        assert!(checked > 40, "only {checked} bins had enough data");
    }

    #[test]
    fn pi_follows_the_published_formula_on_a_known_profile() {
        // Feed the exact mmse of a unit Gaussian (no noise): π must equal, bin for bin,
        // (1−ε)·normalise(mmse/σ³ · σ³/(σ³+c³) / λ(σ) · σ) + ε·base, with c from the onset rule
        // computed here by hand.
        let c = ScheduleConfig {
            kind: ScheduleKind::Infonoise,
            bins: 32,
            warmup_steps: 1,
            refresh_every: 1,
            min_bin_count: 1,
            smooth_bins: 0.0,
            gate_c_fallback: 0.0,
            ..Default::default()
        };
        let mut s = Binned::new(c.clone(), base(), Weighting::Edm, 0.5);
        let sigma = s.centers();
        let mmse: Vec<f64> = sigma.iter().map(|x| x * x / (1.0 + x * x)).collect();
        s.observe(&sigma, &mmse);
        let pi = s.pi().unwrap().to_vec();
        // Onset: largest σ with (mmse/σ³) ≥ 0.002·max; mmse/σ³ = 1/(σ(1+σ²)) is decreasing,
        // so the max is at the first bin.
        let r: Vec<f64> = sigma.iter().map(|x| 1.0 / (x * (1.0 + x * x))).collect();
        let pivot = sigma[(0..32).rev().find(|&i| r[i] >= 0.002 * r[0]).unwrap()];
        assert_eq!(s.state.gate_c, Some(pivot));
        let lam = |x: f64| (x * x + 0.25) / (x * 0.5).powi(2);
        let t: Vec<f64> = sigma
            .iter()
            .zip(&r)
            .map(|(&x, &r)| r * x.powi(3) / (x.powi(3) + pivot.powi(3)) / lam(x) * x)
            .collect();
        let ts: f64 = t.iter().sum();
        let b = s.base_mass();
        for i in 0..32 {
            let want = 0.95 * t[i] / ts + 0.05 * b[i];
            assert!((pi[i] - want).abs() < 1e-12, "bin {i}: {} vs {want}", pi[i]);
        }
    }

    #[test]
    fn draws_follow_pi() {
        let mut s = Binned::new(cfg(ScheduleKind::Infonoise), base(), Weighting::Edm, 0.5);
        let _ = feed_gaussian(&mut s, 5, 4096, 4);
        let pi = s.pi().unwrap().to_vec();
        let mut rng = Rng::new(5, Stream::Data, 77);
        let n = 400_000;
        let mut hist = vec![0f64; 64];
        for x in s.draw(&mut rng, n) {
            hist[s.grid.bin_of(x).unwrap()] += 1.0 / n as f64;
        }
        for i in 0..64 {
            let sd = (pi[i] / n as f64).sqrt();
            assert!((hist[i] - pi[i]).abs() < 5.0 * sd + 1e-6, "bin {i}");
        }
    }

    #[test]
    fn bad_windows_keep_pi_and_warn() {
        let mut s = Binned::new(cfg(ScheduleKind::Infonoise), base(), Weighting::Edm, 0.5);
        let _ = feed_gaussian(&mut s, 5, 4096, 4);
        let good = s.pi().unwrap().to_vec();
        assert!(s
            .take_events()
            .iter()
            .any(|e| matches!(e, Event::Refresh(_))));
        // All-NaN errors, σ off the grid, then an all-zero profile: each window keeps π.
        let sig = vec![0.5; 4096];
        for (sigma, err) in [
            (sig.clone(), vec![f64::NAN; 4096]),
            (vec![1e4; 4096], vec![0.1; 4096]),
            (vec![], vec![]),
        ] {
            for _ in 0..5 {
                s.observe(&sigma, &err);
            }
            let ev = s.take_events();
            assert!(ev.iter().any(|e| matches!(e, Event::Warning(_))), "{ev:?}");
            assert_eq!(s.pi().unwrap(), good.as_slice());
        }
        let mut z = Binned::new(cfg(ScheduleKind::Infonoise), base(), Weighting::Edm, 0.5);
        let mut rng = Rng::new(1, Stream::Data, 0);
        for _ in 0..5 {
            let sigma = z.draw(&mut rng, 4096);
            z.observe(&sigma, &vec![0.0; 4096]);
        }
        assert!(z.pi().is_none(), "a zero profile must keep the base prior");
        assert!(z
            .take_events()
            .iter()
            .any(|e| matches!(e, Event::Warning(w) if w.contains("zero"))));
        for x in z.draw(&mut rng, 1000) {
            assert!(x.is_finite() && x > 0.0);
        }
    }

    #[test]
    fn state_round_trips_through_json_bit_for_bit() {
        // After 3 steps (mid-warm-up: the stratified walk continues from the step count)
        // and after 7 (π refreshed at step 5), a restored sampler draws what the original
        // draws.
        for steps in [3, 7] {
            let mut a = Binned::new(cfg(ScheduleKind::Adaptive), base(), Weighting::Score, 0.5);
            let _ = feed_gaussian(&mut a, steps, 1000, 2);
            assert_eq!(a.pi().is_some(), steps > 5);
            let text = serde_json::to_string(&a.state()).unwrap();
            let mut b = Binned::new(cfg(ScheduleKind::Adaptive), base(), Weighting::Score, 0.5);
            b.restore(&serde_json::from_str(&text).unwrap()).unwrap();
            let mut r1 = Rng::new(2, Stream::Data, 3);
            let mut r2 = Rng::new(2, Stream::Data, 3);
            assert_eq!(a.draw(&mut r1, 1000), b.draw(&mut r2, 1000));
        }
        let mut b = Binned::new(cfg(ScheduleKind::Adaptive), base(), Weighting::Score, 0.5);
        let short = serde_json::json!({"steps": 1, "sum": [0], "cnt": [0], "skipped": 0,
            "m_hat": null, "mass": null, "gate_c": null});
        assert!(b.restore(&short).unwrap_err().contains("64 bins"));
    }

    #[test]
    fn adaptive_is_proportional_to_the_weighted_loss() {
        let c = ScheduleConfig {
            kind: ScheduleKind::Adaptive,
            bins: 16,
            warmup_steps: 1,
            refresh_every: 1,
            min_bin_count: 1,
            smooth_bins: 0.0,
            floor_mix: 0.0,
            ..Default::default()
        };
        let mut s = Binned::new(c, base(), Weighting::Score, 0.5);
        let sigma = s.centers();
        let err: Vec<f64> = sigma.iter().map(|x| x * x / (1.0 + x * x)).collect();
        s.observe(&sigma, &err);
        // Weighted loss m/σ² = 1/(1+σ²).
        let t: Vec<f64> = sigma.iter().map(|x| 1.0 / (1.0 + x * x)).collect();
        let ts: f64 = t.iter().sum();
        for (p, t) in s.pi().unwrap().iter().zip(&t) {
            assert!((p - t / ts).abs() < 1e-12);
        }
    }

    /// The exact unit-Gaussian mmse σ²/(1+σ²) observed once at every bin centre, with the
    /// log-variance `u` at the centres when the refresh asks for it.
    fn known(c: ScheduleConfig, u: Option<Vec<f64>>) -> Binned {
        let mut s = Binned::new(c, base(), Weighting::Edm, 0.5);
        let sigma = s.centers();
        let mmse: Vec<f64> = sigma.iter().map(|x| x * x / (1.0 + x * x)).collect();
        s.observe_with(&sigma, &mmse, &mut |_| Ok(u.clone()))
            .unwrap();
        s
    }

    fn refreshes(s: &mut Binned) -> Vec<Refresh> {
        s.take_events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Refresh(r) => Some(*r),
                Event::Warning(_) => None,
            })
            .collect()
    }

    #[test]
    fn the_learned_log_variance_divides_the_loss_weight() {
        // EDM2's loss λ‖D − y‖²/e^u + u weighs σ by w = λ/e^u, so Eq. 15 (π ∝ r/w) gives
        // π_u ∝ π_0·e^u bin for bin (fixed pivot, no floor): π_u,k = π_0,k·e^{u_k}/Σ_j π_0,j·e^{u_j},
        // and the effective allocation π·w is the same with or without u. The adaptive
        // rule (π ∝ w·m̂) moves by e^{−u} instead.
        let c = ScheduleConfig {
            kind: ScheduleKind::Infonoise,
            bins: 16,
            warmup_steps: 1,
            refresh_every: 1,
            min_bin_count: 1,
            smooth_bins: 0.0,
            floor_mix: 0.0,
            gate_c: 0.3,
            ..Default::default()
        };
        let u: Vec<f64> = (0..16).map(|i| 0.1 * i as f64 - 0.5).collect();
        for (kind, sign) in [
            (ScheduleKind::Infonoise, 1.0),
            (ScheduleKind::Adaptive, -1.0),
        ] {
            let c = ScheduleConfig { kind, ..c.clone() };
            let p0 = known(c.clone(), None).pi().unwrap().to_vec();
            let mut with = known(c.clone(), Some(u.clone()));
            let pu = with.pi().unwrap();
            let z: f64 = (0..16).map(|i| p0[i] * (sign * u[i]).exp()).sum();
            for i in 0..16 {
                let want = p0[i] * (sign * u[i]).exp() / z;
                assert!(
                    (pu[i] / want - 1.0).abs() < 1e-12,
                    "{kind:?} bin {i}: {} vs {want}",
                    pu[i]
                );
            }
            assert_eq!(refreshes(&mut with)[0].log_variance, Some(u.clone()));
        }
        // u is asked for only when π is refreshed (steps 1 and 3 of 4), at the bin centres.
        let mut s = Binned::new(
            ScheduleConfig {
                refresh_every: 2,
                ..c.clone()
            },
            base(),
            Weighting::Edm,
            0.5,
        );
        let sigma = s.centers();
        let err = vec![0.1; 16];
        let mut asked = Vec::new();
        for _ in 0..4 {
            s.observe_with(&sigma, &err, &mut |at| {
                asked.push(at.to_vec());
                Ok(Some(vec![0.0; at.len()]))
            })
            .unwrap();
        }
        assert_eq!(asked, vec![sigma.clone(), sigma.clone()]);
        // A wrong length is an error; a non-finite u keeps π with a warning.
        let e = s.observe_with(&sigma, &err, &mut |_| Ok(Some(vec![0.0; 3])));
        assert!(e.unwrap_err().to_string().contains("16 bin centres"));
        let before = s.pi().unwrap().to_vec();
        s.take_events();
        for _ in 0..2 {
            s.observe_with(&sigma, &err, &mut |at| Ok(Some(vec![f64::NAN; at.len()])))
                .unwrap();
        }
        assert_eq!(s.pi().unwrap(), before.as_slice());
        assert!(s
            .take_events()
            .iter()
            .any(|e| matches!(e, Event::Warning(w) if w.contains("u(σ)"))));
    }

    #[test]
    fn only_measured_bins_are_observed_and_set_the_pivot() {
        // The Gaussian mmse fed twice at bins 8..32 of a 32-bin grid [0.002, 80], none
        // below: bins 0..8 are filled (constant m̂(σ_8)) and flagged unobserved. The pivot
        // is the onset rule on bins 8..32: mmse/σ³ = 1/(σ(1+σ²)) is decreasing, so the
        // observed maximum is at bin 8 (σ = 0.0334) and the onset is bin 20 (σ = 1.775),
        // out of the lowest quarter: source "onset". Counting the filled bins, the maximum
        // would be m̂(σ_8)/σ_0³ instead.
        let c = ScheduleConfig {
            kind: ScheduleKind::Infonoise,
            bins: 32,
            warmup_steps: 1,
            refresh_every: 1,
            min_bin_count: 2,
            smooth_bins: 0.0,
            ..Default::default()
        };
        let run = |c: &ScheduleConfig, from: usize, to: usize| {
            let mut s = Binned::new(c.clone(), base(), Weighting::Edm, 0.5);
            let sigma = s.centers();
            let seen: Vec<f64> = sigma[from..to].iter().flat_map(|&x| [x, x]).collect();
            let mmse: Vec<f64> = seen.iter().map(|x| x * x / (1.0 + x * x)).collect();
            s.observe(&seen, &mmse);
            let warned = s
                .events
                .iter()
                .any(|e| matches!(e, Event::Warning(w) if w.contains("gate_c_fallback")));
            (refreshes(&mut s).remove(0), sigma, warned)
        };
        let (r, sigma, warned) = run(&c, 8, 32);
        assert_eq!(r.observed, (0..32).map(|i| i >= 8).collect::<Vec<_>>());
        assert_eq!(
            r.counts,
            (0..32)
                .map(|i| if i >= 8 { 2 } else { 0 })
                .collect::<Vec<u64>>()
        );
        let rate: Vec<f64> = sigma.iter().map(|x| 1.0 / (x * (1.0 + x * x))).collect();
        let onset = (8..32).rev().find(|&i| rate[i] >= 0.002 * rate[8]).unwrap();
        assert_eq!(onset, 20);
        assert_eq!(
            (r.gate_c, r.gate_c_source),
            (Some(sigma[20]), Some(GateSource::Onset))
        );
        assert!(!warned);
        // Only bins 0..4 measured: the onset (bin 3, σ = 0.0064) lies in the lowest quarter,
        // so the fallback 0.2 is used, named and warned about.
        let (r, _, warned) = run(&c, 0, 4);
        assert_eq!(
            (r.gate_c, r.gate_c_source),
            (Some(0.2), Some(GateSource::Fallback))
        );
        assert!(warned);
        // A fixed pivot; the adaptive rule has none.
        let fixed = ScheduleConfig {
            gate_c: 0.5,
            ..c.clone()
        };
        let (r, _, _) = run(&fixed, 8, 32);
        assert_eq!(
            (r.gate_c, r.gate_c_source),
            (Some(0.5), Some(GateSource::Fixed))
        );
        let adaptive = ScheduleConfig {
            kind: ScheduleKind::Adaptive,
            ..c.clone()
        };
        let (r, _, _) = run(&adaptive, 8, 32);
        assert_eq!((r.gate_c, r.gate_c_source), (None, None));
        // The source is written as a lower-case word.
        let line = serde_json::to_value(&run(&c, 8, 32).0).unwrap();
        assert_eq!(line["gate_c_source"], "onset");
        // A later window that measures bin 5 for the first time takes its mean outright
        // (not blended with the filled value) and flags it.
        let mut s = Binned::new(c.clone(), base(), Weighting::Edm, 0.5);
        let sigma = s.centers();
        let twice: Vec<f64> = sigma[8..].iter().flat_map(|&x| [x, x]).collect();
        s.observe(&twice, &vec![0.5; 48]);
        s.observe(
            &[sigma[5], sigma[5], sigma[9], sigma[9]],
            &[0.125, 0.125, 1.0, 1.0],
        );
        let m = s.state.m_hat.clone().unwrap();
        assert_eq!(
            (m[5], s.state.observed[5], s.state.observed[4]),
            (0.125, true, false)
        );
        assert!((m[9] - (0.9 * 0.5 + 0.1 * 1.0)).abs() < 1e-15);
        // The filled bins below follow the measured bin 5.
        assert_eq!(m[0], 0.125);
    }

    #[test]
    fn refresh_lines_without_the_new_fields_still_load() {
        // A line written before `observed`, `counts`, `skipped`, `log_variance` and
        // `gate_c_source` existed reads with their defaults.
        let line = r#"{"step":5,"sigma":[0.1,1.0],"m_hat":[0.01,0.5],"rate":[0.6,0.4],
            "pi":[0.5,0.5],"gate_c":0.2,"quantiles":[0.1,0.5,1.0]}"#;
        let r: Refresh = serde_json::from_str(line).unwrap();
        assert!(r.observed.is_empty() && r.counts.is_empty() && r.skipped == 0);
        assert_eq!((r.log_variance, r.gate_c_source), (None, None));
    }
}
