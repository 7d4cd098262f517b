//! The Gaussian score (DeVries et al. 2020, "Instance Selection for GANs"; reference §B.1
//! step 2): fit μ and Σ to the features of the whole pool and score each example by its
//! log-density under N(μ, Σ + δI),
//!
//!   log N(z_i; μ, Σ + δI) = −½ (z_i − μ)ᵀ (Σ + δI)⁻¹ (z_i − μ) − ½ ln|Σ + δI| − (d/2) ln 2π.
//!
//! Keeping the highest scores keeps the densest, most typical examples. Σ is the unbiased
//! covariance (divisor n − 1, as NumPy's `np.cov`). With the Cholesky factor
//! Σ + δI = L·Lᵀ (faer), ln|Σ + δI| = 2 Σ_j ln L_jj and the quadratic form is ‖L⁻¹(z_i − μ)‖².
//! The ridge δ keeps Σ + δI positive definite when features are collinear or constant (dead
//! ReLU units); by default δ = [`DEFAULT_RELATIVE_DELTA`] · tr(Σ)/d, a thousandth of the mean
//! feature variance, so the default does not depend on the features' scale.

use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
use faer::{Mat, Par, Side};

use crate::error::{Error, Result};
use crate::eval::images::mean_cov;

/// The default δ relative to the mean feature variance tr(Σ)/d.
pub const DEFAULT_RELATIVE_DELTA: f64 = 1e-3;

/// Relative pivot below which Σ + δI counts as singular (see [`log_density`]).
const SINGULAR: f64 = 1e-12;

/// Examples per triangular solve (bounds the memory at `dim × CHUNK` doubles).
const CHUNK: usize = 2048;

/// Gaussian log-densities of a pool's examples and the ridge they were computed with.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianScores {
    /// log N(z_i; μ, Σ + δI) per example, in nats.
    pub log_density: Vec<f64>,
    /// The δ used.
    pub delta: f64,
}

/// The log-density of each of the `n` rows of `x` (`[n, dim]`, finite) under the Gaussian
/// fitted to them with ridge `delta` (`None`: the default, see the module doc).
pub fn log_density(x: &[f32], n: usize, dim: usize, delta: Option<f64>) -> Result<GaussianScores> {
    if n < 2 || dim == 0 || n.checked_mul(dim) != Some(x.len()) {
        return Err(Error::Model(format!(
            "the Gaussian score needs at least 2 rows of at least 1 feature; got {} values for \
             {n} rows of {dim}",
            x.len()
        )));
    }
    if let Some(d) = delta.filter(|d| !(d.is_finite() && *d >= 0.0)) {
        return Err(Error::InvalidValue {
            field: "--delta".into(),
            why: format!("the ridge δ of Σ + δI must be a finite number ≥ 0 (got {d})"),
        });
    }
    let (mu, cov) = mean_cov(x, n, dim); // [dim], [dim, dim]
    let delta = delta.unwrap_or_else(|| {
        let mean_var = (0..dim).map(|j| cov[j * dim + j]).sum::<f64>() / dim as f64;
        // Constant features (tr Σ = 0): any positive δ gives every example the same score.
        DEFAULT_RELATIVE_DELTA * if mean_var > 0.0 { mean_var } else { 1.0 }
    });
    let a = Mat::from_fn(dim, dim, |i, j| {
        cov[i * dim + j] + if i == j { delta } else { 0.0 }
    }); // Σ + δI, [dim, dim]
    let llt = a.llt(Side::Lower).map_err(|e| {
        Error::Model(format!(
            "Σ + δI is not positive definite (δ = {delta:e}, Cholesky: {e:?}); some features \
             are (nearly) collinear: raise --delta"
        ))
    })?;
    let l = llt.L(); // [dim, dim], lower triangular
                     // L_jj² / A_jj is the share of feature j's variance that the earlier features do not
                     // explain; at round-off level the factorisation succeeded only by rounding.
    if let Some(j) = (0..dim).find(|&j| l[(j, j)] * l[(j, j)] <= SINGULAR * a[(j, j)]) {
        return Err(Error::Model(format!(
            "Σ + δI is numerically singular (δ = {delta:e}): feature {j} is a linear \
             combination of the features before it; raise --delta"
        )));
    }
    let log_det: f64 = (0..dim).map(|j| 2.0 * l[(j, j)].ln()).sum();
    let constant = -0.5 * log_det - 0.5 * dim as f64 * (2.0 * std::f64::consts::PI).ln();
    let mut out = Vec::with_capacity(n);
    for c0 in (0..n).step_by(CHUNK) {
        let m = CHUNK.min(n - c0);
        // Column i holds z_i − μ; solving L·Y = Z − μ gives the whitened rows.
        let mut y = Mat::from_fn(dim, m, |j, i| x[(c0 + i) * dim + j] as f64 - mu[j]); // [dim, m]
        solve_lower_triangular_in_place(l, y.as_mut(), Par::rayon(0));
        for i in 0..m {
            let quad: f64 = (0..dim).map(|j| y[(j, i)] * y[(j, i)]).sum();
            out.push(constant - 0.5 * quad);
        }
    }
    Ok(GaussianScores {
        log_density: out,
        delta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Rng, Stream};

    const LN_2PI: f64 = 1.837_877_066_409_345_5;

    #[test]
    fn matches_a_hand_computed_two_dimensional_case() {
        // Four points: μ = (1, 1); deviations (−1, −1), (1, −1), (−1, 0), (1, 2).
        // Σ (divisor 3) = [[4/3, 2/3], [2/3, 2]]; with δ = 0.5: A = [[11/6, 2/3], [2/3, 5/2]],
        // |A| = 55/12 − 4/9 = 149/36, A⁻¹ = (36/149)·[[5/2, −2/3], [−2/3, 11/6]].
        let x = [0.0f32, 0.0, 2.0, 0.0, 0.0, 1.0, 2.0, 3.0];
        let g = log_density(&x, 4, 2, Some(0.5)).unwrap();
        assert_eq!(g.delta, 0.5);
        let det = 149.0 / 36.0;
        let inv = [
            [36.0 / 149.0 * 2.5, -36.0 / 149.0 * 2.0 / 3.0],
            [-36.0 / 149.0 * 2.0 / 3.0, 36.0 / 149.0 * 11.0 / 6.0],
        ];
        for (k, d) in [[-1.0, -1.0], [1.0, -1.0], [-1.0, 0.0], [1.0, 2.0]]
            .iter()
            .enumerate()
        {
            let q = d[0] * (inv[0][0] * d[0] + inv[0][1] * d[1])
                + d[1] * (inv[1][0] * d[0] + inv[1][1] * d[1]);
            let want = -0.5 * q - 0.5 * f64::ln(det) - LN_2PI;
            assert!(
                (g.log_density[k] - want).abs() < 1e-12,
                "{k}: {g:?} vs {want}"
            );
        }
        // By hand for the first point: q = (36/149)(5/2 − 4/3 + 11/6) = 108/149.
        let first = -0.5 * 108.0 / 149.0 - 0.5 * f64::ln(149.0 / 36.0) - LN_2PI;
        assert!((g.log_density[0] - first).abs() < 1e-12);
    }

    #[test]
    fn one_feature_is_the_normal_density_and_the_default_ridge_follows_the_scale() {
        // d = 1: the score is the normal log-density with the sample variance (divisor n − 1)
        // plus δ, computed here directly in f64.
        let mut rng = Rng::new(1, Stream::Eval, 0);
        let x: Vec<f32> = (0..1000)
            .map(|_| (3.0 + 2.0 * rng.normal()) as f32)
            .collect();
        let n = x.len() as f64;
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let g = log_density(&x, x.len(), 1, Some(0.3)).unwrap();
        for i in [0, 17, 999] {
            let (z, v) = (x[i] as f64 - mean, var + 0.3);
            let want = -0.5 * z * z / v - 0.5 * v.ln() - 0.5 * LN_2PI;
            assert!((g.log_density[i] - want).abs() < 1e-9, "{i}");
        }
        // The default δ is a thousandth of the mean variance, so scaling the features by 8
        // (exact in f32) scales δ by 64 and lowers every log-density by d·ln 8 (the
        // density's Jacobian).
        let d = 3;
        let y: Vec<f32> = (0..300 * d).map(|_| rng.normal() as f32).collect();
        let (_, cov) = mean_cov(&y, 300, d);
        let mean_var = (0..d).map(|j| cov[j * d + j]).sum::<f64>() / d as f64;
        let a = log_density(&y, 300, d, None).unwrap();
        assert!((a.delta - 1e-3 * mean_var).abs() < 1e-15);
        let y8: Vec<f32> = y.iter().map(|v| v * 8.0).collect();
        let b = log_density(&y8, 300, d, None).unwrap();
        assert!((b.delta / a.delta - 64.0).abs() < 1e-9);
        for (sa, sb) in a.log_density.iter().zip(&b.log_density) {
            assert!((sb - (sa - d as f64 * 8f64.ln())).abs() < 1e-9, "{sa} {sb}");
        }
    }

    #[test]
    fn a_diagonal_covariance_gives_the_sum_of_one_dimensional_densities() {
        // Rows ±a_j e_j patterns with an exactly diagonal Σ: the 8 rows (±1, ±2, ±3) (all
        // sign patterns) have mean 0 and Σ = diag(8/7, 32/7, 72/7) exactly (cross terms
        // cancel over the sign patterns).
        let mut x = Vec::new();
        for s in 0..8 {
            for (j, a) in [1.0f32, 2.0, 3.0].iter().enumerate() {
                x.push(if s >> j & 1 == 1 { -a } else { *a });
            }
        }
        let delta = 0.25;
        let g = log_density(&x, 8, 3, Some(delta)).unwrap();
        let var = [8.0 / 7.0 + delta, 32.0 / 7.0 + delta, 72.0 / 7.0 + delta];
        // Every row has z_j² = a_j², so every score is the same closed form.
        let want: f64 = [1.0f64, 2.0, 3.0]
            .iter()
            .zip(var)
            .map(|(a, v)| -0.5 * a * a / v - 0.5 * f64::ln(v) - 0.5 * LN_2PI)
            .sum();
        for s in &g.log_density {
            assert!((s - want).abs() < 1e-12, "{s} vs {want}");
        }
    }

    #[test]
    fn bad_input_is_named() {
        let e = log_density(&[1.0], 1, 1, None).unwrap_err().to_string();
        assert!(e.contains("at least 2 rows"), "{e}");
        let e = log_density(&[1.0, 2.0], 2, 1, Some(-1.0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--delta"), "{e}");
        // Two identical columns with δ = 0: singular.
        let e = log_density(&[1.0, 1.0, 2.0, 2.0, 4.0, 4.0], 3, 2, Some(0.0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("raise --delta"), "{e}");
        // Constant features with the default δ: every score the same, finite.
        let g = log_density(&[3.0; 8], 4, 2, None).unwrap();
        assert!(g
            .log_density
            .iter()
            .all(|v| v.is_finite() && *v == g.log_density[0]));
    }
}
