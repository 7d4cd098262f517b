//! Exact metrics on the tree toy, computed against the analytic density and score.
//!
//! Sample metrics (from a `.npy` of samples alone):
//! - classification: fraction of samples with ground-truth log p(x) ≥ −2.12 (the outline
//!   contour; AJEST `is_sample_in_fractal`), counted over all samples;
//! - mandala: over a 101×101 grid of cells 0.03 wide centred on the tree origin, the cells
//!   holding at least one hit over the cells holding any sample (a precision that rewards
//!   spread; samples outside the grid are dropped);
//! - RBF MMD² (unbiased) against exact samples, and the mean ground-truth log-likelihood.
//!
//! Model metrics (need the network): the exact score-matching loss σ²·mean_d(s − s_θ)² on
//! fresh samples at the training σ distribution (all components, and the outer branches of
//! depth ≥ 5), and ODE-L2: the mean distance between endpoints of the model's and the exact
//! score's probability-flow ODE from the same x_T ~ p(x; σ_max).

use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::fastmath::exp_nonpos;
use crate::data::toy2d::{Mixture, ORIGIN};
use crate::diffusion::denoiser::Denoiser;
use crate::diffusion::loss::LossTarget;
use crate::diffusion::loss::Weighting;
use crate::diffusion::noise::LogNormal;
use crate::diffusion::sampler::SamplerConfig;
use crate::diffusion::sampler::{edm_sigmas, sample_batched};
use crate::diffusion::toy_batch::toy_batch;
use crate::error::{Error, Result};
use crate::rng::{Rng, Stream};

/// The ground-truth log-density threshold of a "hit" (the outline contour level).
pub const HIT_LOGP: f64 = -2.12;
/// Mandala grid: cells per axis and the half-width of the box of cell centres.
pub const MANDALA_CELLS: usize = 101;
pub const MANDALA_HALF: f64 = 1.5;
/// Bandwidth of the RBF kernel of the MMD, in data units.
pub const MMD_BANDWIDTH: f64 = 0.1;
/// How many samples (of each side) enter the MMD.
pub const MMD_SAMPLES: usize = 4096;

/// Metrics computed from samples alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleMetrics {
    pub n: usize,
    pub classification: f64,
    pub mandala: f64,
    pub mmd: f64,
    pub mean_loglik: f64,
}

/// (classification, mandala) of samples with ground-truth log-densities `logp`.
pub fn classification_and_mandala(samples: &[[f64; 2]], logp: &[f64]) -> (f64, f64) {
    let cell = 2.0 * MANDALA_HALF / (MANDALA_CELLS - 1) as f64;
    let lower = [
        ORIGIN[0] - MANDALA_HALF - cell / 2.0,
        ORIGIN[1] - MANDALA_HALF - cell / 2.0,
    ];
    let mut occupied = vec![false; MANDALA_CELLS * MANDALA_CELLS];
    let mut hit = vec![false; MANDALA_CELLS * MANDALA_CELLS];
    let mut hits_in_grid = 0usize;
    for (x, &lp) in samples.iter().zip(logp) {
        let i = ((x[0] - lower[0]) / cell).floor();
        let j = ((x[1] - lower[1]) / cell).floor();
        let n = MANDALA_CELLS as f64;
        if !(0.0..n).contains(&i) || !(0.0..n).contains(&j) {
            continue;
        }
        let k = i as usize * MANDALA_CELLS + j as usize;
        occupied[k] = true;
        if lp >= HIT_LOGP {
            hit[k] = true;
            hits_in_grid += 1;
        }
    }
    let occ = occupied.iter().filter(|&&o| o).count();
    let hits = hit.iter().filter(|&&h| h).count();
    let classification = hits_in_grid as f64 / samples.len().max(1) as f64;
    let mandala = if occ == 0 {
        0.0
    } else {
        hits as f64 / occ as f64
    };
    (classification, mandala)
}

/// Unbiased MMD² with the RBF kernel exp(−‖a − b‖² / (2h²)).
pub fn mmd_rbf(a: &[[f64; 2]], b: &[[f64; 2]], h: f64) -> f64 {
    let c = 1.0 / (2.0 * h * h);
    // Per-row sums in parallel, then added serially in row order: thread-count independent.
    let sum_rows = |rows: &[[f64; 2]], cols: &[[f64; 2]]| -> f64 {
        rows.par_iter()
            .map(|p| kernel_row_sum(*p, cols, c))
            .collect::<Vec<f64>>()
            .iter()
            .sum()
    };
    // Within a set, drop the diagonal terms k(x, x) = 1.
    let within = |s: &[[f64; 2]]| {
        let n = s.len() as f64;
        (sum_rows(s, s) - n) / (n * (n - 1.0))
    };
    let cross = sum_rows(a, b) / (a.len() * b.len()) as f64;
    within(a) + within(b) - 2.0 * cross
}

/// Σ_j exp(−c·‖p − q_j‖²), on the widest vector unit the CPU has (the variants compute the
/// same sums in the same order).
fn kernel_row_sum(p: [f64; 2], qs: &[[f64; 2]], c: f64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
        {
            // SAFETY: the CPU supports the features `row_sum_avx512` is compiled for.
            return unsafe { row_sum_avx512(p, qs, c) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports the features `row_sum_avx2` is compiled for.
            return unsafe { row_sum_avx2(p, qs, c) };
        }
    }
    row_sum(p, qs, c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx2")]
unsafe fn row_sum_avx512(p: [f64; 2], qs: &[[f64; 2]], c: f64) -> f64 {
    row_sum(p, qs, c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn row_sum_avx2(p: [f64; 2], qs: &[[f64; 2]], c: f64) -> f64 {
    row_sum(p, qs, c)
}

/// Eight fixed accumulation lanes, so the loop vectorises without reassociation.
#[inline(always)]
fn row_sum(p: [f64; 2], qs: &[[f64; 2]], c: f64) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut chunks = qs.chunks_exact(8);
    for ch in &mut chunks {
        for l in 0..8 {
            let d = (p[0] - ch[l][0]) * (p[0] - ch[l][0]) + (p[1] - ch[l][1]) * (p[1] - ch[l][1]);
            acc[l] += exp_nonpos(-c * d);
        }
    }
    for (l, q) in chunks.remainder().iter().enumerate() {
        let d = (p[0] - q[0]) * (p[0] - q[0]) + (p[1] - q[1]) * (p[1] - q[1]);
        acc[l] += exp_nonpos(-c * d);
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

/// All sample metrics. Exact reference samples for the MMD come from the `Eval` stream of
/// `seed`.
pub fn sample_metrics(mixture: &Mixture, samples: &[[f64; 2]], seed: u64) -> Result<SampleMetrics> {
    if samples.is_empty() {
        return Err(Error::Config("no samples to evaluate".into()));
    }
    if let Some(bad) = samples
        .iter()
        .position(|s| !(s[0].is_finite() && s[1].is_finite()))
    {
        return Err(Error::Config(format!(
            "sample {bad} is not finite ({:?}); the sampler diverged",
            samples[bad]
        )));
    }
    let logp = mixture.logp_batch(samples, 0.0);
    let (classification, mandala) = classification_and_mandala(samples, &logp);
    let m = MMD_SAMPLES.min(samples.len());
    let mut rng = Rng::new(seed, Stream::Eval, 1);
    let exact: Vec<[f64; 2]> = (0..m).map(|_| mixture.sample(&mut rng, 0.0)).collect();
    let mmd = if m >= 2 {
        mmd_rbf(&samples[..m], &exact, MMD_BANDWIDTH)
    } else {
        f64::NAN
    };
    Ok(SampleMetrics {
        n: samples.len(),
        classification,
        mandala,
        mmd,
        mean_loglik: logp.iter().sum::<f64>() / logp.len() as f64,
    })
}

/// Metrics that need the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetrics {
    /// Exact score-matching loss σ²·mean_d(s − s_θ)², all components.
    pub loss: f64,
    /// The same on the outer branches (depth ≥ 5).
    pub loss_outer: f64,
    /// Mean endpoint distance of model vs exact probability-flow ODE from shared x_T.
    pub ode_l2: f64,
}

/// The exact denoiser of the mixture: D(x; σ) = x + σ²∇log p(x; σ).
pub struct ExactDenoiser<'a>(pub &'a Mixture);

impl Denoiser<2> for ExactDenoiser<'_> {
    fn denoise(&self, x: Tensor<2>, sigma: &[f64]) -> Tensor<2> {
        let device = x.device();
        // Reading back a tensor this program created is an internal invariant.
        let v: Vec<f32> = x
            .try_into_vec_as::<f32>()
            .unwrap_or_else(|e| panic!("internal: cannot read a sampler tensor: {e:?}"));
        let pts: Vec<[f64; 2]> = v.chunks(2).map(|c| [c[0] as f64, c[1] as f64]).collect();
        let s = self.0.score_batch(&pts, sigma);
        let d: Vec<f32> = pts
            .iter()
            .zip(&s)
            .zip(sigma)
            .flat_map(|((p, g), sg)| {
                [
                    (p[0] + sg * sg * g[0]) as f32,
                    (p[1] + sg * sg * g[1]) as f32,
                ]
            })
            .collect();
        Tensor::<2>::from_data(TensorData::new(d, [pts.len(), 2]), &device)
    }
}

/// Exact score-matching loss of `den` on `n` fresh samples of `mixture` at ln σ ~ N(p_mean,
/// p_std²), from the `Eval` stream of `seed`.
pub fn exact_loss(
    den: &dyn crate::models::toy_denoiser::ToyModel,
    mixture: &Mixture,
    noise: &LogNormal,
    n: usize,
    seed: u64,
) -> Result<f64> {
    let mut noise = noise.clone();
    let b = toy_batch(
        mixture,
        &mut noise,
        LossTarget::Exact,
        seed ^ 0xE7A1,
        u64::MAX,
        n,
    );
    Ok(den.losses(&b, Weighting::Score)?.mean())
}

/// Mean distance between the endpoints of `den`'s and the exact ODE from `n` shared x_T.
pub fn ode_l2(
    den: &dyn Denoiser<2>,
    mixture: &Mixture,
    sampler: &SamplerConfig,
    n: usize,
    seed: u64,
) -> Result<f64> {
    let from = (Stream::Eval, 1000, 4096);
    let a = integrate(den, mixture, sampler, n, seed, from)?;
    let b = integrate(&ExactDenoiser(mixture), mixture, sampler, n, seed, from)?;
    let d: f64 = a
        .iter()
        .zip(&b)
        .map(|(p, q)| ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt())
        .sum();
    Ok(d / n as f64)
}

/// Draws `n` samples with `den` from x_T ~ p(x; σ_max) of `mixture`; sample `i` uses the
/// `(seed, Sample, i)` stream.
pub fn sample_toy(
    den: &dyn Denoiser<2>,
    mixture: &Mixture,
    sampler: &SamplerConfig,
    n: usize,
    seed: u64,
) -> Result<Vec<[f64; 2]>> {
    integrate(den, mixture, sampler, n, seed, (Stream::Sample, 0, 16384))
}

/// Heun ODE from x_T ~ p(x; σ_max), point `i` starting from the `(seed, stream, offset + i)`
/// stream, integrated in chunks of `chunk` points.
fn integrate(
    den: &dyn Denoiser<2>,
    mixture: &Mixture,
    sampler: &SamplerConfig,
    n: usize,
    seed: u64,
    (stream, offset, chunk): (Stream, u64, usize),
) -> Result<Vec<[f64; 2]>> {
    let sigmas = edm_sigmas(
        sampler.steps,
        sampler.sigma_min,
        sampler.sigma_max,
        sampler.rho,
    );
    let start = |i: u64| -> Vec<f64> {
        mixture
            .sample(&mut Rng::new(seed, stream, offset + i), sampler.sigma_max)
            .to_vec()
    };
    let v = sample_batched(
        den,
        &start,
        2,
        n,
        &sigmas,
        chunk,
        &crate::device::inference(),
    )?;
    Ok(v.chunks(2).map(|c| [c[0] as f64, c[1] as f64]).collect())
}

/// The exact minimum mean squared error of denoising the toy at σ, per dimension:
/// mmse(σ) = E_x tr Cov(y | x) / 2 with x = y + σn. For a Gaussian mixture the posterior is a
/// mixture of Gaussian posteriors: component k has responsibility r_k ∝ φ_k N(x; μ_k, Σ_k+σ²I),
/// mean m_k = μ_k + Σ_k S_k⁻¹(x − μ_k) and covariance C_k = Σ_k − Σ_k S_k⁻¹ Σ_k
/// (S_k = Σ_k + σ²I), so tr Cov(y|x) = Σ r_k (tr C_k + ‖m_k‖²) − ‖Σ r_k m_k‖². The outer
/// expectation is a Monte Carlo average over `n` exact samples x of p(x; σ).
pub fn exact_mmse(mixture: &Mixture, sigma: f64, n: usize, seed: u64) -> f64 {
    struct Post {
        mu: [f64; 2],
        /// S⁻¹ as (a, b, c) of [[a, b], [b, c]].
        inv: [f64; 3],
        /// Σ S⁻¹ (row-major).
        gain: [f64; 4],
        /// log φ − ½ log det(2π S).
        log_norm: f64,
        trace_c: f64,
    }
    let s2 = sigma * sigma;
    let posts: Vec<Post> = mixture
        .components()
        .iter()
        .map(|c| {
            let (sxx, sxy, syy) = (c.cov[0][0], 0.5 * (c.cov[0][1] + c.cov[1][0]), c.cov[1][1]);
            let (a, b, d) = (sxx + s2, sxy, syy + s2);
            let det = a * d - b * b;
            let inv = [d / det, -b / det, a / det];
            // Σ S⁻¹ with Σ = [[sxx, sxy], [sxy, syy]].
            let gain = [
                sxx * inv[0] + sxy * inv[1],
                sxx * inv[1] + sxy * inv[2],
                sxy * inv[0] + syy * inv[1],
                sxy * inv[1] + syy * inv[2],
            ];
            // C = Σ − Σ S⁻¹ Σ; its trace.
            let trace_c =
                sxx - (gain[0] * sxx + gain[1] * sxy) + syy - (gain[2] * sxy + gain[3] * syy);
            Post {
                mu: c.mu,
                inv,
                gain,
                log_norm: c.phi.ln()
                    - 0.5 * (4.0 * std::f64::consts::PI * std::f64::consts::PI * det).ln(),
                trace_c,
            }
        })
        .collect();
    let total: f64 = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut rng = Rng::new(seed, Stream::Eval, i as u64);
            let x = mixture.sample(&mut rng, sigma);
            let logs: Vec<f64> = posts
                .iter()
                .map(|p| {
                    let (dx, dy) = (x[0] - p.mu[0], x[1] - p.mu[1]);
                    let q = p.inv[0] * dx * dx + 2.0 * p.inv[1] * dx * dy + p.inv[2] * dy * dy;
                    p.log_norm - 0.5 * q
                })
                .collect();
            let top = logs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let (mut z, mut second, mut mean) = (0.0, 0.0, [0.0, 0.0]);
            for (p, l) in posts.iter().zip(&logs) {
                let r = (l - top).exp();
                let (dx, dy) = (x[0] - p.mu[0], x[1] - p.mu[1]);
                let m = [
                    p.mu[0] + p.gain[0] * dx + p.gain[1] * dy,
                    p.mu[1] + p.gain[2] * dx + p.gain[3] * dy,
                ];
                z += r;
                second += r * (p.trace_c + m[0] * m[0] + m[1] * m[1]);
                mean[0] += r * m[0];
                mean[1] += r * m[1];
            }
            let (mx, my) = (mean[0] / z, mean[1] / z);
            (second / z - mx * mx - my * my) / 2.0
        })
        .collect::<Vec<_>>()
        .iter()
        .sum();
    total / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::toy2d::Classes;

    #[test]
    fn exact_mmse_has_the_right_limits() {
        // σ far below the components' scale: the posterior covariance is ≈ σ²I. σ far above
        // the data's spread: the posterior is the prior, so mmse = Var(y) per dimension.
        let m = Mixture::tree(Classes::AB);
        let small = exact_mmse(&m, 1e-3, 2000, 1);
        assert!((small / 1e-6 - 1.0).abs() < 0.01, "mmse(1e-3) = {small}");
        let mut rng = Rng::new(2, Stream::Eval, 0);
        let ys: Vec<[f64; 2]> = (0..200_000).map(|_| m.sample(&mut rng, 0.0)).collect();
        let var = |j: usize| {
            let mean = ys.iter().map(|y| y[j]).sum::<f64>() / ys.len() as f64;
            ys.iter().map(|y| (y[j] - mean).powi(2)).sum::<f64>() / ys.len() as f64
        };
        let prior = (var(0) + var(1)) / 2.0;
        let large = exact_mmse(&m, 1e3, 2000, 1);
        assert!((large / prior - 1.0).abs() < 0.01, "{large} vs Var {prior}");
    }

    #[test]
    fn infonoise_profile_matches_the_exact_toy_mmse() {
        // The InfoNoise error profile fed by the exact denoiser E[y|x] = x + σ²∇log p(x; σ)
        // must match mmse(σ) from the analytic posterior, bin by bin.
        use crate::diffusion::infonoise::Binned;
        use crate::diffusion::noise::{NoiseSampler, ScheduleConfig, ScheduleKind};
        let m = Mixture::tree(Classes::AB);
        let cfg = ScheduleConfig {
            kind: ScheduleKind::Infonoise,
            sigma_min: 0.01,
            sigma_max: 10.0,
            bins: 48,
            warmup_steps: 24,
            refresh_every: 1000,
            smooth_bins: 0.0,
            ..Default::default()
        };
        let base = LogNormal {
            p_mean: -1.2,
            p_std: 1.2,
        };
        let mut s = Binned::new(cfg, base, Weighting::Score, 0.5);
        let mut counts = vec![0u64; 48];
        let edges = |x: f64| ((x.ln() - 0.01f64.ln()) / (1000f64.ln() / 48.0)).floor();
        for step in 0..24 {
            let mut rng = Rng::new(4, Stream::Data, step);
            let sigma = s.draw(&mut rng, 8192);
            let pairs: Vec<([f64; 2], [f64; 2])> = sigma
                .iter()
                .map(|&sg| m.sample_pair(&mut rng, sg))
                .collect();
            let xs: Vec<[f64; 2]> = pairs.iter().map(|p| p.1).collect();
            let g = m.score_batch(&xs, &sigma);
            let err: Vec<f64> = pairs
                .iter()
                .zip(&g)
                .zip(&sigma)
                .map(|(((y, x), g), sg)| {
                    let d = [x[0] + sg * sg * g[0] - y[0], x[1] + sg * sg * g[1] - y[1]];
                    (d[0] * d[0] + d[1] * d[1]) / 2.0
                })
                .collect();
            for &sg in &sigma {
                let k = edges(sg);
                if (0.0..48.0).contains(&k) {
                    counts[k as usize] += 1;
                }
            }
            s.observe(&sigma, &err);
        }
        let refresh = s
            .take_events()
            .into_iter()
            .find_map(|e| match e {
                crate::diffusion::infonoise::Event::Refresh(r) => Some(r),
                _ => None,
            })
            .expect("a refresh after the warm-up");
        let mut checked = 0;
        for (k, (&sg, &est)) in refresh.sigma.iter().zip(&refresh.m_hat).enumerate() {
            if counts[k] < 3000 {
                continue;
            }
            let exact = exact_mmse(&m, sg, 20_000, 9);
            assert!(
                (est / exact - 1.0).abs() < 0.08,
                "σ = {sg}: profile {est} vs exact mmse {exact} ({} samples)",
                counts[k]
            );
            checked += 1;
        }
        assert!(checked >= 15, "only {checked} bins had enough samples");
    }

    #[test]
    fn the_gate_pivot_does_not_move_when_the_grid_reaches_lower() {
        // InfoNoise's pivot c on the toy's exact mmse, on two grids that share their bins
        // (Δ = ln 2/4) from σ_a = 5·2⁻¹² ≈ 0.00122 up to 5 (48 bins) and differ below it:
        // the second reaches σ_a/2 (52 bins). A warm-up of 20 steps × 256 draws from EDM's
        // prior (15 rows a step stratified over the 37 bins of ln σ ∈ −1.2 ± 3.6 on the
        // grid, 8-9 per bin) measures the bins from σ ≈ 0.009 up; the four new bins below σ_a
        // get nothing (the prior puts 2e-6 of its mass there), are filled, and are never read
        // by the onset rule, so both grids see the same draws, the same measured profile and
        // the same c (≈ 0.81). Tolerance 1e-12 relative: c is then the same bin centre
        // computed from two different ln σ_min (edges ln σ_min + i·Δ round differently,
        // ≈ 1e-15).
        use crate::diffusion::gate::{GateSource, OnsetRule};
        use crate::diffusion::infonoise::{Binned, Event, Refresh};
        use crate::diffusion::noise::{NoiseSampler, ScheduleConfig, ScheduleKind};
        let m = Mixture::tree(Classes::AB);
        let grid = |bins: usize| ScheduleConfig {
            kind: ScheduleKind::Infonoise,
            sigma_min: 5.0 * 0.5f64.powf(bins as f64 / 4.0),
            sigma_max: 5.0,
            bins,
            warmup_steps: 20,
            refresh_every: 1000,
            ..Default::default()
        };
        let edm = LogNormal {
            p_mean: -1.2,
            p_std: 1.2,
        };
        let new = |c: &ScheduleConfig| Binned::new(c.clone(), edm.clone(), Weighting::Score, 0.5);
        // The exact mmse at the wide grid's bin centres; an error is looked up by its bin.
        let wide = grid(52);
        let probe = new(&wide);
        let mmse: Vec<f64> = probe
            .centers()
            .iter()
            .map(|&s| exact_mmse(&m, s, 2000, 9))
            .collect();
        let bin = |s: f64| ((s / wide.sigma_min).ln() / (2f64.ln() / 4.0)).floor();
        let error = |s: f64| match bin(s) {
            k if (0.0..52.0).contains(&k) => mmse[k as usize],
            _ => f64::NAN,
        };
        let refresh = |c: &ScheduleConfig| -> Refresh {
            let mut s = new(c);
            for step in 0..20 {
                let sigma = s.draw(&mut Rng::new(3, Stream::Data, step), 256);
                let err: Vec<f64> = sigma.iter().map(|&x| error(x)).collect();
                s.observe(&sigma, &err);
            }
            s.take_events()
                .into_iter()
                .find_map(|e| match e {
                    Event::Refresh(r) => Some(*r),
                    Event::Warning(_) => None,
                })
                .expect("a refresh after the warm-up")
        };
        let (a, b) = (refresh(&grid(48)), refresh(&wide));
        assert_eq!(a.observed, b.observed[4..]);
        assert!(b.observed[..4].iter().all(|&o| !o));
        assert_eq!(a.gate_c_source, Some(GateSource::Onset));
        assert_eq!(b.gate_c_source, Some(GateSource::Onset));
        let (ca, cb) = (a.gate_c.unwrap(), b.gate_c.unwrap());
        assert!(
            (cb / ca - 1.0).abs() < 1e-12,
            "c = {ca} on [σ_a, 5], {cb} on [σ_a/2, 5]"
        );
        // The old rule read the filled bins too: its maximum sat at σ_min, c near 8·σ_min,
        // and halving σ_min moved it by about half.
        let old = |r: &Refresh| {
            let rate: Vec<f64> = r
                .m_hat
                .iter()
                .zip(&r.sigma)
                .map(|(m, s)| m / s.powi(3))
                .collect();
            let rule = OnsetRule {
                gate_c: 0.0,
                fallback: 0.0,
                p: 0.002,
            };
            rule.pivot(&rate, &r.sigma, &vec![true; rate.len()]).c
        };
        assert!(
            old(&b) < 0.75 * old(&a),
            "old rule: {} vs {}",
            old(&a),
            old(&b)
        );
        // The limit of the invariance: when every bin down to σ_min is measured, m̂/σ³ of this
        // continuous density grows like 1/σ (mmse → σ²), its maximum is the lowest bin, and
        // c moves with σ_min again. It is the warm-up's range, not the grid, that sets it.
        let full = |c: &ScheduleConfig, from: usize| {
            let mut s = new(&ScheduleConfig {
                warmup_steps: 1,
                min_bin_count: 1,
                ..c.clone()
            });
            let sigma = s.centers();
            s.observe(&sigma, &mmse[from..]);
            match s.take_events().remove(0) {
                Event::Refresh(r) => r.gate_c.unwrap(),
                Event::Warning(w) => panic!("{w}"),
            }
        };
        assert!(full(&wide, 0) < full(&grid(48), 4));
    }

    #[test]
    fn exact_samples_score_near_perfect_and_noise_scores_low() {
        // Exact samples of the tree are hits wherever the density is above the contour: the
        // contour encloses most of the mass, so classification is high.
        let m = Mixture::tree(Classes::A);
        let mut rng = Rng::new(9, Stream::Eval, 0);
        let exact: Vec<[f64; 2]> = (0..20_000).map(|_| m.sample(&mut rng, 0.0)).collect();
        let s = sample_metrics(&m, &exact, 1).unwrap();
        assert!(s.classification > 0.95, "{s:?}");
        assert!(s.mandala > 0.9, "{s:?}");
        assert!(s.mmd.abs() < 2e-3, "{s:?}");
        // Uniform noise over the grid box: few hits, large MMD.
        let noise: Vec<[f64; 2]> = (0..20_000)
            .map(|_| {
                [
                    ORIGIN[0] + 3.0 * rng.uniform() - 1.5,
                    ORIGIN[1] + 3.0 * rng.uniform() - 1.5,
                ]
            })
            .collect();
        let n = sample_metrics(&m, &noise, 1).unwrap();
        assert!(n.classification < 0.2 && n.mandala < 0.2, "{n:?}");
        assert!(n.mmd > 50.0 * s.mmd.abs().max(1e-4), "{n:?}");
    }

    #[test]
    fn mandala_hand_case() {
        // Three samples: two hits in one cell, one miss in another cell, one outside the grid.
        let o = ORIGIN;
        let samples = [
            [o[0], o[1]],
            [o[0] + 0.001, o[1]],
            [o[0] + 0.5, o[1]],
            [o[0] + 9.0, o[1]],
        ];
        let logp = [0.0, 0.0, -5.0, 0.0];
        let (c, m) = classification_and_mandala(&samples, &logp);
        assert!((c - 0.5).abs() < 1e-12, "{c}"); // 2 in-grid hits of 4 samples
        assert!((m - 0.5).abs() < 1e-12, "{m}"); // 1 hit cell of 2 occupied
    }

    #[test]
    fn sampling_with_the_exact_score_reproduces_the_data() {
        // The Heun sampler driven by the analytic score must match exact samples' scores.
        let m = Mixture::tree(Classes::A);
        let s = sample_toy(&ExactDenoiser(&m), &m, &heun(32), 4096, 7).unwrap();
        let got = sample_metrics(&m, &s, 7).unwrap();
        assert!(got.classification > 0.98 && got.mandala > 0.9, "{got:?}");
        assert!(got.mmd.abs() < 2e-3, "{got:?}");
    }

    fn heun(steps: usize) -> SamplerConfig {
        SamplerConfig {
            steps,
            sigma_min: 0.002,
            sigma_max: 5.0,
            rho: 7.0,
        }
    }

    #[test]
    fn exact_denoiser_has_zero_ode_l2() {
        let m = Mixture::tree(Classes::A);
        let d = ode_l2(&ExactDenoiser(&m), &m, &heun(8), 64, 3).unwrap();
        assert!(d < 1e-5, "{d}");
    }
}
