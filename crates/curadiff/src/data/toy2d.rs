//! The 2-D "tree" toy: a Gaussian mixture shaped like two fractal trees (classes A and B),
//! with exact log-density, exact score and exact sampling at any noise level σ.
//!
//! Construction: Karras et al. 2024, "Guiding a diffusion model with a bad version of
//! itself", `toy_example.py` (`gt()`), ported so that the components are bit-compatible:
//! NumPy's legacy `RandomState(seed).randn()` drives branch lengths and angles.
//!
//! Noisy density (heat diffusion): p(x; σ) = Σ_k φ_k N(x; μ_k, Σ_k + σ²I), and the score
//! ∇ log p = Σ_k w_k (Σ_k + σ²I)⁻¹ (μ_k − x) / Σ_k w_k with w_k = φ_k N(x; μ_k, Σ_k + σ²I).
//!
//! The hot path is the exact score of a training batch (4096 points × 1016 components).
//! [`Mixture::eval`] makes two dense, vectorisable passes per point over the components in
//! structure-of-arrays form, with no logarithm per component: the weight of component k is
//! φ_k·det(Σ_k+σ²I)^(-1/2)·exp(−q_k/2 + q_min/2), with q_k the Mahalanobis form and q_min its
//! minimum over k (so the largest exponential is 1 and nothing underflows to an all-zero
//! sum); sums use four fixed lanes, so results do not depend on thread count.

use super::fastmath::{exp_nonpos, exp_nonpos_f32};
use super::mt19937::LegacyRandomState;
use crate::rng::Rng;
use rayon::prelude::*;
use std::f64::consts::PI;

/// ln(2π), the Gaussian normaliser in two dimensions.
const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// Which trees the mixture contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Classes {
    A,
    B,
    AB,
}

impl Classes {
    fn contains(self, class: u8) -> bool {
        match self {
            Classes::A => class == 0,
            Classes::B => class == 1,
            Classes::AB => true,
        }
    }
}

/// One Gaussian of the tree, before normalisation of the weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// Mixture weight (normalised over the selected classes by [`tree`]).
    pub phi: f64,
    pub mu: [f64; 2],
    /// Covariance, row-major `[[xx, xy], [yx, yy]]`.
    pub cov: [[f64; 2]; 2],
    /// Branch depth 0..6.
    pub depth: u32,
    /// 0 for class A, 1 for class B.
    pub class: u8,
}

/// The published construction parameters.
pub const ORIGIN: [f64; 2] = [0.0030, 0.0325];
pub const SCALE: [f64; 2] = [1.3136, 1.3844];
/// The seed of the published toy.
pub const TREE_SEED: u32 = 2;

/// The tree's components in generation order, weights normalised over `classes`.
pub fn tree(classes: Classes, seed: u32) -> Vec<Component> {
    let mut rnd = LegacyRandomState::new(seed);
    let mut comps = Vec::with_capacity(2032);
    recurse(&mut rnd, &mut comps, 0, 0, ORIGIN, PI * 0.25);
    recurse(&mut rnd, &mut comps, 1, 0, ORIGIN, PI * 1.25);
    comps.retain(|c| classes.contains(c.class));
    let total: f64 = comps.iter().map(|c| c.phi).sum();
    for c in &mut comps {
        c.phi /= total;
    }
    comps
}

fn recurse(
    rnd: &mut LegacyRandomState,
    comps: &mut Vec<Component>,
    class: u8,
    depth: u32,
    pos: [f64; 2],
    angle: f64,
) {
    if depth >= 7 {
        return;
    }
    let dir = [angle.cos(), angle.sin()];
    let dist = 0.292 * 0.8f64.powi(depth as i32) * (rnd.randn() * 0.2 + 1.0);
    let thick = 0.2 * 0.8f64.powi(depth as i32) / dist;
    let size = [SCALE[0] * dist * 0.06, SCALE[1] * dist * 0.06];
    let outer = [
        [dir[0] * dir[0], dir[0] * dir[1]],
        [dir[1] * dir[0], dir[1] * dir[1]],
    ];
    // np.linspace(0.07, 0.93, 8): i * step + start, the last one exactly the stop.
    let step = (0.93 - 0.07) / 7.0;
    for i in 0..8 {
        let t = if i == 7 { 0.93 } else { i as f64 * step + 0.07 };
        let mut cov = [[0.0; 2]; 2];
        for r in 0..2 {
            for c in 0..2 {
                let eye = if r == c { 1.0 } else { 0.0 };
                cov[r][c] =
                    (outer[r][c] + (eye - outer[r][c]) * (thick * thick)) * (size[r] * size[c]);
            }
        }
        comps.push(Component {
            phi: dist * 0.5f64.powi(depth as i32),
            mu: [
                (pos[0] + dir[0] * dist * t) * SCALE[0],
                (pos[1] + dir[1] * dist * t) * SCALE[1],
            ],
            cov,
            depth,
            class,
        });
    }
    for sign in [1.0, -1.0] {
        let child_angle = angle + sign * 0.7f64.powi(depth as i32) * (rnd.randn() * 0.2 + 1.0);
        let child_pos = [pos[0] + dir[0] * dist, pos[1] + dir[1] * dist];
        recurse(rnd, comps, class, depth + 1, child_pos, child_angle);
    }
}

/// A Gaussian mixture in 2-D, stored as structure-of-arrays for the exact-score kernel.
#[derive(Debug, Clone)]
pub struct Mixture {
    comps: Vec<Component>,
    mux: Vec<f64>,
    muy: Vec<f64>,
    cxx: Vec<f64>,
    cxy: Vec<f64>,
    cyy: Vec<f64>,
    phi: Vec<f64>,
    log_phi: Vec<f64>,
    /// Cholesky factors for sampling: Σ = L Lᵀ, L = [[l11, 0], [l21, l22]].
    chol: Vec<[f64; 3]>,
    /// Cumulative weights for exact component choice.
    cdf: Vec<f64>,
    /// Single-precision copies of cxx, cxy, cyy, phi for [`Mixture::training_scores`].
    single: [Vec<f32>; 4],
}

/// log p(x; σ) and ∇ log p(x; σ) at one point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Eval {
    pub logp: f64,
    pub score: [f64; 2],
}

impl Mixture {
    /// The published tree toy for `classes`.
    pub fn tree(classes: Classes) -> Self {
        Self::new(tree(classes, TREE_SEED))
    }

    /// A mixture of the given components; weights are renormalised to sum to one.
    pub fn new(mut comps: Vec<Component>) -> Self {
        assert!(!comps.is_empty(), "a mixture needs at least one component");
        let total: f64 = comps.iter().map(|c| c.phi).sum();
        for c in &mut comps {
            c.phi /= total;
        }
        let mut m = Mixture {
            mux: comps.iter().map(|c| c.mu[0]).collect(),
            muy: comps.iter().map(|c| c.mu[1]).collect(),
            cxx: comps.iter().map(|c| c.cov[0][0]).collect(),
            cxy: comps
                .iter()
                .map(|c| 0.5 * (c.cov[0][1] + c.cov[1][0]))
                .collect(),
            cyy: comps.iter().map(|c| c.cov[1][1]).collect(),
            phi: comps.iter().map(|c| c.phi).collect(),
            log_phi: comps.iter().map(|c| c.phi.ln()).collect(),
            chol: Vec::new(),
            cdf: Vec::new(),
            single: Default::default(),
            comps,
        };
        m.single = [&m.cxx, &m.cxy, &m.cyy, &m.phi].map(|v| v.iter().map(|&a| a as f32).collect());
        for k in 0..m.comps.len() {
            let (a, b, c) = (m.cxx[k], m.cxy[k], m.cyy[k]);
            let l11 = a.sqrt();
            let l21 = b / l11;
            let l22 = (c - l21 * l21).max(0.0).sqrt();
            m.chol.push([l11, l21, l22]);
        }
        let mut acc = 0.0;
        m.cdf = m
            .comps
            .iter()
            .map(|c| {
                acc += c.phi;
                acc
            })
            .collect();
        m
    }

    /// The components (weights normalised).
    pub fn components(&self) -> &[Component] {
        &self.comps
    }

    /// The sub-mixture of components with depth ≥ `min_depth` (the toy's "outer branches").
    pub fn outer(&self, min_depth: u32) -> Self {
        Self::new(
            self.comps
                .iter()
                .filter(|c| c.depth >= min_depth)
                .cloned()
                .collect(),
        )
    }

    /// Exact log p(x; σ) and score at one point. `scratch` is reused between calls.
    pub fn eval(&self, x: [f64; 2], sigma: f64, scratch: &mut Vec<f64>) -> Eval {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512dq")
            {
                // SAFETY: the CPU supports the features `eval_avx512` is compiled for.
                return unsafe { self.eval_avx512(x, sigma, scratch) };
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU supports the features `eval_avx2` is compiled for.
                return unsafe { self.eval_avx2(x, sigma, scratch) };
            }
        }
        self.eval_dense(x, sigma, scratch)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn eval_avx2(&self, x: [f64; 2], sigma: f64, scratch: &mut Vec<f64>) -> Eval {
        self.eval_dense(x, sigma, scratch)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
    unsafe fn eval_avx512(&self, x: [f64; 2], sigma: f64, scratch: &mut Vec<f64>) -> Eval {
        self.eval_dense(x, sigma, scratch)
    }

    #[inline(always)]
    fn eval_dense(&self, x: [f64; 2], sigma: f64, scratch: &mut Vec<f64>) -> Eval {
        let s2 = sigma * sigma;
        let n = self.mux.len();
        scratch.clear();
        scratch.resize(4 * n, 0.0);
        let (q, rest) = scratch.split_at_mut(n);
        let (coef, rest) = rest.split_at_mut(n);
        let (vx, vy) = rest.split_at_mut(n);
        // Pass 1: Mahalanobis form q_k, coefficient φ_k/sqrt(det_k), and (Σ'_k)⁻¹(μ_k − x).
        for k in 0..n {
            let dx = x[0] - self.mux[k];
            let dy = x[1] - self.muy[k];
            let a = self.cxx[k] + s2;
            let b = self.cxy[k];
            let c = self.cyy[k] + s2;
            let rs = 1.0 / (a * c - b * b).sqrt(); // det^(-1/2)
            let inv = rs * rs;
            let ix = (c * dx - b * dy) * inv;
            let iy = (a * dy - b * dx) * inv;
            q[k] = dx * ix + dy * iy;
            coef[k] = self.phi[k] * rs;
            vx[k] = -ix;
            vy[k] = -iy;
        }
        let q_min = q.iter().fold(f64::INFINITY, |m, &v| m.min(v));
        // Pass 2: weights w_k = coef_k·exp(−(q_k − q_min)/2), in place of q.
        for k in 0..n {
            q[k] = coef[k] * exp_nonpos(-0.5 * (q[k] - q_min));
        }
        let w = &*q;
        // Pass 3: Σw, Σw·v in four fixed lanes (vectorisable, thread-count independent).
        let mut acc = [[0.0f64; 4]; 3];
        let body = n - n % 4;
        for ((wc, xc), yc) in w[..body]
            .chunks_exact(4)
            .zip(vx[..body].chunks_exact(4))
            .zip(vy[..body].chunks_exact(4))
        {
            for l in 0..4 {
                acc[0][l] += wc[l];
                acc[1][l] += wc[l] * xc[l];
                acc[2][l] += wc[l] * yc[l];
            }
        }
        for k in body..n {
            acc[0][0] += w[k];
            acc[1][0] += w[k] * vx[k];
            acc[2][0] += w[k] * vy[k];
        }
        let total = |a: [f64; 4]| (a[0] + a[1]) + (a[2] + a[3]);
        let (sum, sx, sy) = (total(acc[0]), total(acc[1]), total(acc[2]));
        Eval {
            logp: -0.5 * q_min + sum.ln() - LN_2PI,
            score: [sx / sum, sy / sum],
        }
    }

    /// (log φ_k N(x; μ_k, Σ_k+σ²I), and (Σ_k+σ²I)⁻¹(μ_k − x)).
    #[inline]
    fn exact_term(&self, k: usize, x: [f64; 2], s2: f64) -> (f64, f64, f64) {
        let dx = x[0] - self.mux[k];
        let dy = x[1] - self.muy[k];
        let a = self.cxx[k] + s2;
        let b = self.cxy[k];
        let c = self.cyy[k] + s2;
        let det = a * c - b * b;
        let inv = 1.0 / det;
        let ix = (c * dx - b * dy) * inv; // (Σ')⁻¹ (x − μ)
        let iy = (a * dy - b * dx) * inv;
        let q = dx * ix + dy * iy;
        let lw = self.log_phi[k] - LN_2PI - 0.5 * det.ln() - 0.5 * q;
        (lw, -ix, -iy)
    }

    /// Exact log p(x; σ) for many points, in parallel.
    pub fn logp_batch(&self, xs: &[[f64; 2]], sigma: f64) -> Vec<f64> {
        xs.par_iter()
            .map_init(Vec::new, |s, &x| self.eval(x, sigma, s).logp)
            .collect()
    }

    /// Exact scores for many points, each with its own σ, in parallel.
    pub fn score_batch(&self, xs: &[[f64; 2]], sigmas: &[f64]) -> Vec<[f64; 2]> {
        assert_eq!(xs.len(), sigmas.len(), "one σ per point");
        xs.par_iter()
            .zip(sigmas.par_iter())
            .with_min_len(64)
            .map_init(Vec::new, |s, (&x, &sig)| self.eval(x, sig, s).score)
            .collect()
    }

    /// Scores for training targets, each point with its own σ, in parallel: the kernel of
    /// [`Mixture::eval`] in single precision (as the published toy computes its targets),
    /// with x − μ_k formed in double precision and the sums accumulated in double. Twice
    /// the vector lanes of [`Mixture::score_batch`]; relative error about 1e-6.
    pub fn training_scores(&self, xs: &[[f64; 2]], sigmas: &[f64]) -> Vec<[f64; 2]> {
        assert_eq!(xs.len(), sigmas.len(), "one σ per point");
        xs.par_iter()
            .zip(sigmas.par_iter())
            .with_min_len(64)
            .map_init(Vec::new, |s, (&x, &sig)| self.score_single(x, sig, s))
            .collect()
    }

    fn score_single(&self, x: [f64; 2], sigma: f64, scratch: &mut Vec<f32>) -> [f64; 2] {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512dq")
            {
                // SAFETY: the CPU supports the features `score_single_avx512` is compiled for.
                return unsafe { self.score_single_avx512(x, sigma, scratch) };
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU supports the features `score_single_avx2` is compiled for.
                return unsafe { self.score_single_avx2(x, sigma, scratch) };
            }
        }
        self.score_single_dense(x, sigma, scratch)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn score_single_avx2(&self, x: [f64; 2], sigma: f64, s: &mut Vec<f32>) -> [f64; 2] {
        self.score_single_dense(x, sigma, s)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
    unsafe fn score_single_avx512(&self, x: [f64; 2], sigma: f64, s: &mut Vec<f32>) -> [f64; 2] {
        self.score_single_dense(x, sigma, s)
    }

    #[inline(always)]
    fn score_single_dense(&self, x: [f64; 2], sigma: f64, scratch: &mut Vec<f32>) -> [f64; 2] {
        let n = self.mux.len();
        let s2 = (sigma * sigma) as f32;
        // Every entry read below is written first.
        if scratch.len() < 4 * n {
            scratch.resize(4 * n, 0.0);
        }
        let (q, rest) = scratch.split_at_mut(n);
        let (coef, rest) = rest.split_at_mut(n);
        let (vx, rest) = rest.split_at_mut(n);
        let vy = &mut rest[..n];
        let [cxx, cxy, cyy, phi] = &self.single;
        let (cxx, cxy, cyy, phi) = (&cxx[..n], &cxy[..n], &cyy[..n], &phi[..n]);
        let (mux, muy) = (&self.mux[..n], &self.muy[..n]);
        for k in 0..n {
            let dx = (x[0] - mux[k]) as f32;
            let dy = (x[1] - muy[k]) as f32;
            let a = cxx[k] + s2;
            let b = cxy[k];
            let c = cyy[k] + s2;
            let rs = 1.0 / (a * c - b * b).sqrt();
            let inv = rs * rs;
            let ix = (c * dx - b * dy) * inv;
            let iy = (a * dy - b * dx) * inv;
            q[k] = dx * ix + dy * iy;
            coef[k] = phi[k] * rs;
            vx[k] = -ix;
            vy[k] = -iy;
        }
        let q_min = q.iter().fold(f32::INFINITY, |m, &v| m.min(v));
        for k in 0..n {
            q[k] = coef[k] * exp_nonpos_f32(-0.5 * (q[k] - q_min));
        }
        // Σw, Σw·v in eight fixed double-precision lanes.
        let mut acc = [[0.0f64; 8]; 3];
        let body = n - n % 8;
        for k0 in (0..body).step_by(8) {
            for l in 0..8 {
                let w = q[k0 + l] as f64;
                acc[0][l] += w;
                acc[1][l] += w * vx[k0 + l] as f64;
                acc[2][l] += w * vy[k0 + l] as f64;
            }
        }
        for k in body..n {
            let w = q[k] as f64;
            acc[0][0] += w;
            acc[1][0] += w * vx[k] as f64;
            acc[2][0] += w * vy[k] as f64;
        }
        let total = |a: [f64; 8]| ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
        let (sum, sx, sy) = (total(acc[0]), total(acc[1]), total(acc[2]));
        [sx / sum, sy / sum]
    }

    /// An exact sample of p(x; σ): component k ∝ φ_k, then μ_k + L ε₁ + σ ε₂.
    pub fn sample(&self, rng: &mut Rng, sigma: f64) -> [f64; 2] {
        self.sample_pair(rng, sigma).1
    }

    /// A clean sample y ~ p(y; 0) and its noisy version x = y + σ·n, from the same draws
    /// as [`Mixture::sample`] (so x is an exact sample of p(x; σ)).
    pub fn sample_pair(&self, rng: &mut Rng, sigma: f64) -> ([f64; 2], [f64; 2]) {
        let u = rng.uniform();
        let k = self
            .cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1);
        let [l11, l21, l22] = self.chol[k];
        let (e1, e2) = (rng.normal(), rng.normal());
        let (n1, n2) = (rng.normal(), rng.normal());
        let y = [self.mux[k] + l11 * e1, self.muy[k] + l21 * e1 + l22 * e2];
        (y, [y[0] + sigma * n1, y[1] + sigma * n2])
    }

    /// The naive reference: every component, no pruning, direct sums. For tests.
    pub fn eval_naive(&self, x: [f64; 2], sigma: f64) -> Eval {
        let s2 = sigma * sigma;
        let terms: Vec<(f64, f64, f64)> = (0..self.mux.len())
            .map(|k| self.exact_term(k, x, s2))
            .collect();
        let max = terms.iter().map(|t| t.0).fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = terms.iter().map(|t| (t.0 - max).exp()).sum();
        let sx: f64 = terms.iter().map(|t| (t.0 - max).exp() * t.1).sum();
        let sy: f64 = terms.iter().map(|t| (t.0 - max).exp() * t.2).sum();
        Eval {
            logp: max + sum.ln(),
            score: [sx / sum, sy / sum],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::npy;
    use crate::rng::Stream;
    use std::path::PathBuf;

    fn shared(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name)
    }

    fn check_against(path: &str, classes: Classes) {
        let file = shared(path);
        let arr = match npy::read_f64(&file) {
            Ok(a) => a,
            Err(e) => panic!("reference table {} unreadable: {e}", file.display()),
        };
        let comps = tree(classes, TREE_SEED);
        assert_eq!(arr.shape, vec![comps.len(), 8]);
        let mut worst: f64 = 0.0;
        for (row, c) in arr.data.chunks(8).zip(&comps) {
            let ours = [
                c.phi,
                c.mu[0],
                c.mu[1],
                c.cov[0][0],
                c.cov[0][1],
                c.cov[1][0],
                c.cov[1][1],
                c.depth as f64,
            ];
            for (a, b) in row.iter().zip(ours) {
                worst = worst.max((a - b).abs());
            }
        }
        assert!(worst < 1e-12, "{path}: max abs difference {worst:e}");
    }

    #[test]
    fn reproduces_published_tree_a() {
        check_against("toy_tree_A.npy", Classes::A);
    }

    #[test]
    fn reproduces_published_tree_ab() {
        check_against("toy_tree_AB.npy", Classes::AB);
    }

    #[test]
    fn tree_has_1016_components_per_class() {
        assert_eq!(tree(Classes::A, 2).len(), 1016);
        assert_eq!(tree(Classes::B, 2).len(), 1016);
        assert_eq!(tree(Classes::AB, 2).len(), 2032);
        let s: f64 = tree(Classes::A, 2).iter().map(|c| c.phi).sum();
        assert!((s - 1.0).abs() < 1e-12);
    }

    #[test]
    fn fast_kernel_matches_naive_sum() {
        let m = Mixture::tree(Classes::A);
        let mut rng = Rng::new(3, Stream::Eval, 0);
        let mut s = Vec::new();
        for i in 0..400 {
            let sigma = [0.0, 0.002, 0.02, 0.1, 0.5, 2.0, 10.0][i % 7];
            // Points both on the data and far from it.
            let mut x = m.sample(&mut rng, sigma);
            if i % 5 == 0 {
                x = [rng.normal() * 3.0, rng.normal() * 3.0];
            }
            let a = m.eval(x, sigma, &mut s);
            let b = m.eval_naive(x, sigma);
            assert!(
                (a.logp - b.logp).abs() < 1e-10 * (1.0 + b.logp.abs()),
                "{a:?} {b:?}"
            );
            for d in 0..2 {
                let tol = 1e-9 * (1.0 + b.score[d].abs());
                assert!(
                    (a.score[d] - b.score[d]).abs() < tol,
                    "σ={sigma} {a:?} {b:?}"
                );
            }
        }
    }

    #[test]
    fn single_precision_training_scores_match_naive_sum() {
        let m = Mixture::tree(Classes::A);
        let mut rng = Rng::new(5, Stream::Eval, 0);
        let sig: Vec<f64> = (0..700)
            .map(|i| [0.002, 0.01, 0.05, 0.1, 0.5, 2.0, 10.0][i % 7])
            .collect();
        let xs: Vec<[f64; 2]> = sig.iter().map(|&s| m.sample(&mut rng, s)).collect();
        let fast = m.training_scores(&xs, &sig);
        let mut worst: f64 = 0.0;
        for ((x, &s), f) in xs.iter().zip(&sig).zip(&fast) {
            let b = m.eval_naive(*x, s).score;
            // In denoiser units: σ²·|Δs| relative to σ (the scale of D − x).
            for d in 0..2 {
                worst = worst.max(s * (f[d] - b[d]).abs());
            }
        }
        assert!(worst < 1e-5, "worst σ·|Δscore| {worst:e}");
    }

    #[test]
    fn score_is_gradient_of_logp() {
        // Central finite differences of the exact log-density.
        let m = Mixture::tree(Classes::A);
        let mut rng = Rng::new(4, Stream::Eval, 0);
        let mut s = Vec::new();
        for sigma in [0.05, 0.3, 1.5] {
            for _ in 0..20 {
                let x = m.sample(&mut rng, sigma);
                let e = m.eval(x, sigma, &mut s);
                let h = 1e-5 * sigma.max(0.01);
                for d in 0..2 {
                    let mut xp = x;
                    let mut xm = x;
                    xp[d] += h;
                    xm[d] -= h;
                    let fd = (m.eval(xp, sigma, &mut s).logp - m.eval(xm, sigma, &mut s).logp)
                        / (2.0 * h);
                    let tol = 1e-4 * (1.0 + e.score[d].abs());
                    assert!(
                        (fd - e.score[d]).abs() < tol,
                        "σ={sigma} fd {fd} vs {}",
                        e.score[d]
                    );
                }
            }
        }
    }

    #[test]
    fn density_integrates_to_one_and_samples_follow_it() {
        // ∫ p(x; σ) dx over a grid (midpoint rule), and the sample mean vs the exact mean.
        let m = Mixture::tree(Classes::A);
        let sigma = 0.05;
        let (lo, hi, n) = (-1.5, 2.5, 400);
        let h = (hi - lo) / n as f64;
        let mut pts = Vec::new();
        for i in 0..n {
            for j in 0..n {
                pts.push([lo + (i as f64 + 0.5) * h, lo + (j as f64 + 0.5) * h]);
            }
        }
        let mass: f64 = m
            .logp_batch(&pts, sigma)
            .iter()
            .map(|l| l.exp())
            .sum::<f64>()
            * h
            * h;
        assert!((mass - 1.0).abs() < 2e-3, "mass {mass}");
        let exact_mean: [f64; 2] = m.components().iter().fold([0.0, 0.0], |acc, c| {
            [acc[0] + c.phi * c.mu[0], acc[1] + c.phi * c.mu[1]]
        });
        let mut rng = Rng::new(5, Stream::Eval, 0);
        let k = 100_000;
        let mut mean = [0.0, 0.0];
        for _ in 0..k {
            let x = m.sample(&mut rng, sigma);
            mean[0] += x[0] / k as f64;
            mean[1] += x[1] / k as f64;
        }
        for d in 0..2 {
            // sd of the mean ≈ 0.3 / sqrt(1e5) ≈ 1e-3.
            assert!(
                (mean[d] - exact_mean[d]).abs() < 5e-3,
                "{mean:?} vs {exact_mean:?}"
            );
        }
    }
}
