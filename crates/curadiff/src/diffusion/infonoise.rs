//! Adaptive training noise distributions on a grid uniform in log σ: InfoNoise and a
//! loss-proportional baseline (VDM++ style).
//!
//! Both keep a running per-bin mean of the unweighted x0-error m̂(σ), fed by the errors the
//! training step computes anyway, and refresh the sampling distribution π every
//! `refresh_every` steps after a warm-up on the base prior (EDM's log-normal):
//!
//! - **InfoNoise** (Raya et al. 2026, Algorithm 1): by I-MMSE the conditional entropy rate of
//!   the forward process is mmse(σ)/σ³ per dσ; with m̂ as the plug-in estimate of mmse,
//!   r = (m̂/σ³)·σⁿ/(σⁿ + cⁿ) gates out the low-noise end where m̂ overestimates mmse early in
//!   training, and π ∝ r / w(σ) makes the *effective* allocation π·w follow the profile while
//!   the loss weight w itself stays fixed. The pivot c is the largest σ where the ungated
//!   profile still reaches p = 0.002 of its maximum (the onset-of-information rule).
//! - **Adaptive**: π per bin ∝ the running mean of the weighted loss w(σ)·m̂(σ).
//!
//! π is tabulated as bin masses with a CDF at the bin edges and sampled by inverse CDF,
//! linear in log σ inside a bin. A small share of the base prior is mixed in as a floor.
//! Bad windows (no usable bin, non-finite errors, a zero profile) keep the previous π and
//! report a warning; σ outside the grid and non-finite errors are not binned.

use serde::{Deserialize, Serialize};

use super::loss::Weighting;
use super::noise::{normal_cdf, LogNormal, NoiseSampler, ScheduleConfig, ScheduleKind};
use crate::rng::Rng;

/// What a refresh turns the running error into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// π ∝ w·m̂ (the weighted loss).
    Loss,
    /// π ∝ gated m̂/σ³ / w (InfoNoise).
    EntropyRate,
}

/// One refresh of π, for the run's diagnostics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refresh {
    /// Steps observed when π was refreshed.
    pub step: u64,
    /// Bin centres σ_k.
    pub sigma: Vec<f64>,
    /// The smoothed running x0-error m̂(σ_k) (per dimension).
    pub m_hat: Vec<f64>,
    /// The ungated entropy-rate profile as mass per bin (∝ m̂/σ² per d ln σ), summing to 1.
    pub rate: Vec<f64>,
    /// The new π as mass per bin (floor included), summing to 1.
    pub pi: Vec<f64>,
    /// The gate's pivot c (InfoNoise only).
    pub gate_c: Option<f64>,
    /// σ at the 10%, 50% and 90% quantiles of π.
    pub quantiles: [f64; 3],
}

/// What happened during `observe`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Refresh(Box<Refresh>),
    Warning(String),
}

/// The part of the sampler a checkpoint stores.
#[derive(Debug, Clone, PartialEq)]
struct State {
    steps: u64,
    sum: Vec<f64>,
    cnt: Vec<u64>,
    /// Observations not binned in the current window (non-finite, or σ off the grid).
    skipped: u64,
    m_hat: Option<Vec<f64>>,
    /// π as bin masses; None while the base prior is in use.
    mass: Option<Vec<f64>>,
    gate_c: Option<f64>,
}

/// `State` with every float as its IEEE-754 bit pattern (JSON numbers would round).
#[derive(Serialize, Deserialize)]
struct StateBits {
    steps: u64,
    sum: Vec<u64>,
    cnt: Vec<u64>,
    skipped: u64,
    m_hat: Option<Vec<u64>>,
    mass: Option<Vec<u64>>,
    gate_c: Option<u64>,
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn floats(v: &[u64]) -> Vec<f64> {
    v.iter().map(|&x| f64::from_bits(x)).collect()
}

impl From<&State> for StateBits {
    fn from(s: &State) -> Self {
        Self {
            steps: s.steps,
            sum: bits(&s.sum),
            cnt: s.cnt.clone(),
            skipped: s.skipped,
            m_hat: s.m_hat.as_deref().map(bits),
            mass: s.mass.as_deref().map(bits),
            gate_c: s.gate_c.map(f64::to_bits),
        }
    }
}

impl From<StateBits> for State {
    fn from(s: StateBits) -> Self {
        Self {
            steps: s.steps,
            sum: floats(&s.sum),
            cnt: s.cnt,
            skipped: s.skipped,
            m_hat: s.m_hat.as_deref().map(floats),
            mass: s.mass.as_deref().map(floats),
            gate_c: s.gate_c.map(f64::from_bits),
        }
    }
}

/// An adaptive sampler on a log-σ grid (see the module docs).
#[derive(Debug, Clone)]
pub struct Binned {
    rule: Rule,
    cfg: ScheduleConfig,
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
            cfg,
            base,
            weighting,
            sigma_data,
            state: State {
                steps: 0,
                sum: vec![0.0; k],
                cnt: vec![0; k],
                skipped: 0,
                m_hat: None,
                mass: None,
                gate_c: None,
            },
            cdf: Vec::new(),
            events: Vec::new(),
        }
    }

    fn log_min(&self) -> f64 {
        self.cfg.sigma_min.ln()
    }

    fn step_width(&self) -> f64 {
        (self.cfg.sigma_max.ln() - self.log_min()) / self.cfg.bins as f64
    }

    /// ln σ at bin edge `i` (0..=K).
    fn edge(&self, i: usize) -> f64 {
        self.log_min() + i as f64 * self.step_width()
    }

    /// The bin centres σ_k (geometric midpoints).
    pub fn centers(&self) -> Vec<f64> {
        (0..self.cfg.bins)
            .map(|i| (self.edge(i) + 0.5 * self.step_width()).exp())
            .collect()
    }

    fn bin_of(&self, sigma: f64) -> Option<usize> {
        if !(sigma >= self.cfg.sigma_min && sigma <= self.cfg.sigma_max) {
            return None;
        }
        let i = ((sigma.ln() - self.log_min()) / self.step_width()).floor();
        Some((i.max(0.0) as usize).min(self.cfg.bins - 1))
    }

    /// The current π as bin masses (None: still the base prior).
    pub fn pi(&self) -> Option<&[f64]> {
        self.state.mass.as_deref()
    }

    /// The base prior's mass per bin, renormalised to the grid (uniform if it misses it).
    pub fn base_mass(&self) -> Vec<f64> {
        let c: Vec<f64> = (0..=self.cfg.bins)
            .map(|i| normal_cdf((self.edge(i) - self.base.p_mean) / self.base.p_std))
            .collect();
        let m: Vec<f64> = c.windows(2).map(|w| (w[1] - w[0]).max(0.0)).collect();
        normalised(&m).unwrap_or_else(|| vec![1.0 / self.cfg.bins as f64; self.cfg.bins])
    }

    /// σ at quantile `q` of the current π.
    fn quantile(&self, q: f64) -> f64 {
        let i = self
            .cdf
            .partition_point(|&c| c <= q)
            .clamp(1, self.cfg.bins)
            - 1;
        let width = self.cdf[i + 1] - self.cdf[i];
        let frac = if width > 0.0 {
            ((q - self.cdf[i]) / width).clamp(0.0, 1.0)
        } else {
            0.0
        };
        (self.edge(i) + frac * self.step_width()).exp()
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The checkpointed state; floats are stored as their bit patterns so a resumed run
    /// draws bit-identical σ.
    pub fn state(&self) -> serde_json::Value {
        serde_json::to_value(StateBits::from(&self.state)).unwrap_or(serde_json::Value::Null)
    }

    pub fn restore(&mut self, v: &serde_json::Value) -> std::result::Result<(), String> {
        let s: StateBits = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        let s = State::from(s);
        let k = self.cfg.bins;
        let ok = |v: &Option<Vec<f64>>| v.as_ref().is_none_or(|v| v.len() == k);
        if s.sum.len() != k || s.cnt.len() != k || !ok(&s.m_hat) || !ok(&s.mass) {
            return Err(format!("the noise sampler state does not have {k} bins"));
        }
        self.state = s;
        self.cdf = self.state.mass.as_deref().map(cdf_of).unwrap_or_default();
        Ok(())
    }

    fn warn(&mut self, why: String) {
        self.events.push(Event::Warning(format!(
            "noise schedule, step {}: {why}; keeping the previous π",
            self.state.steps
        )));
    }

    /// Recomputes π from the window since the last refresh.
    fn refresh(&mut self) {
        let k = self.cfg.bins;
        let min = self.cfg.min_bin_count;
        let raw: Vec<Option<f64>> = (0..k)
            .map(|i| {
                let m = self.state.sum[i] / self.state.cnt[i] as f64;
                (self.state.cnt[i] >= min && m.is_finite()).then_some(m)
            })
            .collect();
        let skipped = self.state.skipped;
        self.state.sum = vec![0.0; k];
        self.state.cnt = vec![0; k];
        self.state.skipped = 0;
        if raw.iter().all(Option::is_none) {
            self.warn(format!(
                "no bin had {min} finite observations inside [{}, {}] since the last refresh \
                 ({skipped} observations were non-finite or off the grid)",
                self.cfg.sigma_min, self.cfg.sigma_max
            ));
            return;
        }
        let m_hat = match &self.state.m_hat {
            None => interpolate(&raw),
            Some(prev) => prev
                .iter()
                .zip(&raw)
                .map(|(&p, r)| match r {
                    Some(r) => self.cfg.beta * p + (1.0 - self.cfg.beta) * r,
                    None => p,
                })
                .collect(),
        };
        let smooth: Vec<f64> = smooth(&m_hat, self.cfg.smooth_bins)
            .into_iter()
            .map(|v| v.max(0.0))
            .collect();
        let sigma = self.centers();
        let w: Vec<f64> = sigma
            .iter()
            .map(|&s| self.weighting.lambda(s, self.sigma_data))
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
        let (target, gate_c) = match self.rule {
            Rule::Loss => (smooth.iter().zip(&w).map(|(m, w)| m * w).collect(), None),
            Rule::EntropyRate => {
                let c = self.pivot(&rate_dsigma, &sigma);
                let n = self.cfg.gate_n;
                let t: Vec<f64> = (0..k)
                    .map(|i| {
                        let g = sigma[i].powf(n) / (sigma[i].powf(n) + c.powf(n));
                        rate_dsigma[i] * g / w[i] * sigma[i]
                    })
                    .collect();
                (t, Some(c))
            }
        };
        let Some(target) = normalised(&target) else {
            self.warn("the target profile is zero or not finite".into());
            return;
        };
        let eps = self.cfg.floor_mix;
        let mass: Vec<f64> = target
            .iter()
            .zip(self.base_mass())
            .map(|(t, b)| (1.0 - eps) * t + eps * b)
            .collect();
        self.cdf = cdf_of(&mass);
        self.state.m_hat = Some(m_hat);
        self.state.mass = Some(mass.clone());
        self.state.gate_c = gate_c;
        let quantiles = [self.quantile(0.1), self.quantile(0.5), self.quantile(0.9)];
        self.events.push(Event::Refresh(Box::new(Refresh {
            step: self.state.steps,
            sigma,
            m_hat: smooth,
            rate,
            pi: mass,
            gate_c,
            quantiles,
        })));
    }

    /// The gate's pivot c: fixed, or the onset rule on the per-dσ profile (largest σ where
    /// it reaches p of its maximum), with the fallback when that lands in the lowest quarter.
    fn pivot(&mut self, rate_dsigma: &[f64], sigma: &[f64]) -> f64 {
        if self.cfg.gate_c > 0.0 {
            return self.cfg.gate_c;
        }
        let max = rate_dsigma.iter().cloned().fold(0.0, f64::max);
        let onset = (0..rate_dsigma.len())
            .rev()
            .find(|&i| rate_dsigma[i] >= self.cfg.onset_p * max)
            .unwrap_or(0);
        if onset < rate_dsigma.len() / 4 && self.cfg.gate_c_fallback > 0.0 {
            self.events.push(Event::Warning(format!(
                "noise schedule, step {}: the onset rule put the gate's pivot at σ = {:.4}, in \
                 the lowest quarter of the grid; using gate_c_fallback = {}",
                self.state.steps, sigma[onset], self.cfg.gate_c_fallback
            )));
            return self.cfg.gate_c_fallback;
        }
        sigma[onset]
    }
}

impl NoiseSampler for Binned {
    fn draw(&mut self, rng: &mut Rng, n: usize) -> Vec<f64> {
        if self.state.mass.is_none() {
            return self.base.draw(rng, n);
        }
        (0..n)
            .map(|_| {
                let xi = rng.uniform();
                // The last edge with CDF ≤ ξ starts a bin of positive mass.
                let i = self
                    .cdf
                    .partition_point(|&c| c <= xi)
                    .clamp(1, self.cfg.bins)
                    - 1;
                let width = self.cdf[i + 1] - self.cdf[i];
                let frac = if width > 0.0 {
                    ((xi - self.cdf[i]) / width).clamp(0.0, 1.0)
                } else {
                    0.5
                };
                (self.edge(i) + frac * self.step_width()).exp()
            })
            .collect()
    }

    fn observe(&mut self, sigma: &[f64], x0_error: &[f64]) {
        for (&s, &e) in sigma.iter().zip(x0_error) {
            match self.bin_of(s) {
                Some(i) if e.is_finite() && e >= 0.0 => {
                    self.state.sum[i] += e;
                    self.state.cnt[i] += 1;
                }
                _ => self.state.skipped += 1,
            }
        }
        self.state.steps += 1;
        let (steps, warm) = (self.state.steps, self.cfg.warmup_steps);
        if steps >= warm.max(1) && (steps - warm) % self.cfg.refresh_every == 0 {
            self.refresh();
        }
    }
}

/// `v / Σv`, or None when the sum is not a positive finite number or an entry is negative.
fn normalised(v: &[f64]) -> Option<Vec<f64>> {
    let s: f64 = v.iter().sum();
    (s.is_finite() && s > 0.0 && v.iter().all(|x| x.is_finite() && *x >= 0.0))
        .then(|| v.iter().map(|x| x / s).collect())
}

/// CDF at the K+1 edges of bin masses summing to 1 (the last edge is exactly 1).
fn cdf_of(mass: &[f64]) -> Vec<f64> {
    let mut c = Vec::with_capacity(mass.len() + 1);
    let mut acc = 0.0;
    c.push(0.0);
    for m in mass {
        acc += m;
        c.push(acc.min(1.0));
    }
    if let Some(last) = c.last_mut() {
        *last = 1.0;
    }
    c
}

/// Fills missing bins linearly between observed neighbours; beyond the ends, the nearest.
fn interpolate(raw: &[Option<f64>]) -> Vec<f64> {
    let known: Vec<(usize, f64)> = raw
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (i, v)))
        .collect();
    (0..raw.len())
        .map(|i| {
            let right = known.partition_point(|&(j, _)| j < i);
            match (right.checked_sub(1).map(|l| known[l]), known.get(right)) {
                (_, Some(&(j, v))) if j == i => v,
                (Some((a, va)), Some(&(b, vb))) => va + (vb - va) * (i - a) as f64 / (b - a) as f64,
                (Some((_, v)), None) | (None, Some(&(_, v))) => v,
                (None, None) => 0.0,
            }
        })
        .collect()
}

/// Gaussian smoothing across bins with standard deviation `s` bins, renormalised at the ends.
fn smooth(v: &[f64], s: f64) -> Vec<f64> {
    if s <= 0.0 {
        return v.to_vec();
    }
    let r = (3.0 * s).ceil() as i64;
    let n = v.len() as i64;
    (0..n)
        .map(|i| {
            let (mut acc, mut wsum) = (0.0, 0.0);
            for j in (i - r).max(0)..=(i + r).min(n - 1) {
                let d = (j - i) as f64 / s;
                let w = (-0.5 * d * d).exp();
                acc += w * v[j as usize];
                wsum += w;
            }
            acc / wsum
        })
        .collect()
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
                if let Some(i) = s.bin_of(sg) {
                    counts[i] += 1;
                }
            }
            s.observe(&sigma, &err);
        }
        counts
    }

    #[test]
    fn profile_converges_to_the_gaussian_mmse() {
        // Unit Gaussian data: mmse(σ) = σ²/(1+σ²) per dimension (closed form). The exact
        // denoiser's errors, binned and smoothed, must converge to it wherever π puts data.
        let c = ScheduleConfig {
            kind: ScheduleKind::Infonoise,
            bins: 128,
            warmup_steps: 20,
            refresh_every: 20,
            beta: 0.5,
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
            hist[s.bin_of(x).unwrap()] += 1.0 / n as f64;
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
        let mut a = Binned::new(cfg(ScheduleKind::Adaptive), base(), Weighting::Score, 0.5);
        let _ = feed_gaussian(&mut a, 7, 1000, 2);
        let text = serde_json::to_string(&a.state()).unwrap();
        let mut b = Binned::new(cfg(ScheduleKind::Adaptive), base(), Weighting::Score, 0.5);
        b.restore(&serde_json::from_str(&text).unwrap()).unwrap();
        let mut r1 = Rng::new(2, Stream::Data, 3);
        let mut r2 = Rng::new(2, Stream::Data, 3);
        assert_eq!(a.draw(&mut r1, 1000), b.draw(&mut r2, 1000));
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

    #[test]
    fn interpolation_and_smoothing_by_hand() {
        let v = interpolate(&[None, Some(1.0), None, None, Some(4.0), None]);
        assert_eq!(v, vec![1.0, 1.0, 2.0, 3.0, 4.0, 4.0]);
        // Smoothing keeps a linear ramp inside (symmetric kernel) and constants everywhere.
        let ramp: Vec<f64> = (0..20).map(|i| i as f64).collect();
        let s = smooth(&ramp, 1.5);
        assert!((s[10] - 10.0).abs() < 1e-12);
        assert!(smooth(&[3.0; 9], 2.0)
            .iter()
            .all(|x| (x - 3.0).abs() < 1e-12));
    }
}
