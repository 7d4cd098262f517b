//! The maths of post-hoc EMA on profiles alone: the inner product of two power-function
//! profiles in closed form, and the least-squares combination of stored profiles that comes
//! closest to a target profile (EDM2 Algorithm 3), with its relative L2 residual.
//!
//! A power-function EMA with exponent γ, read at time t (in images), weighs the training
//! weights of time τ by the unit-mass profile p(τ) = (γ+1) τ^γ / t^(γ+1) on [0, t]
//! (EDM2 eq. 3 normalised).

use faer::Mat;

use crate::error::{Error, Result};

/// One profile: exponent γ, read at time `t` images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerProfile {
    pub gamma: f64,
    pub t: f64,
}

impl PowerProfile {
    /// The profile's density at τ.
    pub fn at(&self, tau: f64) -> f64 {
        if tau < 0.0 || tau > self.t {
            return 0.0;
        }
        (self.gamma + 1.0) * (tau / self.t).powf(self.gamma) / self.t
    }
}

/// ⟨p_a, p_b⟩ = ∫ p_a p_b dτ. With t_a ≤ t_b both are non-zero on [0, t_a] and
/// ∫₀^{t_a} (γa+1)(γb+1) τ^{γa+γb} / (t_a^{γa+1} t_b^{γb+1}) dτ
/// = (γa+1)(γb+1) / ((γa+γb+1) t_b) · (t_a/t_b)^{γb}  (EDM2 Appendix C.2, `p_dot_p`).
pub fn dot(a: PowerProfile, b: PowerProfile) -> f64 {
    let (lo, hi) = if a.t <= b.t { (a, b) } else { (b, a) };
    (lo.gamma + 1.0) * (hi.gamma + 1.0) / ((lo.gamma + hi.gamma + 1.0) * hi.t)
        * (lo.t / hi.t).powf(hi.gamma)
}

/// The least-squares weights of `stored` profiles for `target`, and how well they fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    /// x solving A·x = b in the least-squares sense (A_ij = ⟨p_i, p_j⟩, b_i = ⟨p_i, p_target⟩),
    /// scaled to sum 1 (each profile has unit mass, so the combination is an average).
    pub coefficients: Vec<f64>,
    /// Σ x_i before that scaling (≈ 1 when the target is reconstructable).
    pub mass: f64,
    /// ‖p_target − Σ x_i p_i‖ / ‖p_target‖ of the unscaled least-squares solution.
    pub residual: f64,
}

/// A solver for targets over one fixed set of stored profiles: A's pseudo-inverse, computed
/// once (singular values below `n · ε · s_max` are dropped, as numpy's `lstsq` does).
pub struct Solver {
    stored: Vec<PowerProfile>,
    a: Vec<Vec<f64>>,
    pinv: Mat<f64>,
}

impl Solver {
    /// The solver over `stored` (at least one profile).
    pub fn new(stored: &[PowerProfile]) -> Result<Self> {
        let n = stored.len();
        if n == 0 {
            return Err(Error::Config(
                "post-hoc EMA needs at least one stored profile".into(),
            ));
        }
        let a: Vec<Vec<f64>> = stored
            .iter()
            .map(|&pi| stored.iter().map(|&pj| dot(pi, pj)).collect())
            .collect();
        let m = Mat::<f64>::from_fn(n, n, |i, j| a[i][j]);
        let svd = m
            .thin_svd()
            .map_err(|e| Error::Model(format!("post-hoc EMA: SVD did not converge: {e:?}")))?;
        let s = svd.S().column_vector();
        let s_max = (0..n).map(|i| s[i]).fold(0.0, f64::max);
        let cutoff = n as f64 * f64::EPSILON * s_max;
        let (u, v) = (svd.U(), svd.V());
        let pinv = Mat::<f64>::from_fn(n, n, |i, j| {
            (0..n)
                .filter(|&k| s[k] > cutoff)
                .map(|k| v[(i, k)] * u[(j, k)] / s[k])
                .sum()
        });
        Ok(Self {
            stored: stored.to_vec(),
            a,
            pinv,
        })
    }

    /// The combination of the stored profiles closest to `target`.
    pub fn fit(&self, target: PowerProfile) -> Fit {
        let n = self.stored.len();
        let b: Vec<f64> = self.stored.iter().map(|&p| dot(p, target)).collect();
        let x: Vec<f64> = (0..n)
            .map(|i| (0..n).map(|j| self.pinv[(i, j)] * b[j]).sum())
            .collect();
        // ‖p_t − Σ x_i p_i‖² = ⟨p_t, p_t⟩ − 2 xᵀb + xᵀAx.
        let xb: f64 = x.iter().zip(&b).map(|(x, b)| x * b).sum();
        let xax: f64 = (0..n)
            .map(|i| x[i] * (0..n).map(|j| self.a[i][j] * x[j]).sum::<f64>())
            .sum();
        let tt = dot(target, target);
        let residual = ((tt - 2.0 * xb + xax).max(0.0) / tt).sqrt();
        let mass: f64 = x.iter().sum();
        Fit {
            coefficients: x.iter().map(|v| v / mass).collect(),
            mass,
            residual,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::ema::gamma_from_sigma_rel;

    /// ∫ p_a p_b by composite Simpson's rule on [0, min(t_a, t_b)] (where both are non-zero).
    fn simpson(a: PowerProfile, b: PowerProfile) -> f64 {
        let end = a.t.min(b.t);
        let n = 200_000;
        let h = end / n as f64;
        let f = |k: usize| a.at(k as f64 * h) * b.at(k as f64 * h);
        let inner: f64 = (1..n)
            .map(|k| if k % 2 == 1 { 4.0 * f(k) } else { 2.0 * f(k) })
            .sum();
        (f(0) + inner + f(n)) * h / 3.0
    }

    #[test]
    fn the_inner_product_matches_quadrature() {
        let g = |s| gamma_from_sigma_rel(s);
        let cases = [
            (
                PowerProfile {
                    gamma: g(0.05),
                    t: 1.0e5,
                },
                PowerProfile {
                    gamma: g(0.10),
                    t: 6.0e4,
                },
            ),
            (
                PowerProfile {
                    gamma: g(0.10),
                    t: 3.0e4,
                },
                PowerProfile {
                    gamma: g(0.10),
                    t: 3.0e4,
                },
            ),
            (
                PowerProfile { gamma: 2.0, t: 2.0 },
                PowerProfile { gamma: 0.5, t: 5.0 },
            ),
        ];
        for (a, b) in cases {
            let (closed, quad) = (dot(a, b), simpson(a, b));
            assert!(
                (closed - quad).abs() < 1e-6 * quad,
                "{a:?} {b:?}: {closed} vs {quad}"
            );
            assert_eq!(dot(a, b), dot(b, a));
        }
        // By hand: γa = 2, t_a = 2 and γb = 0.5, t_b = 5: 3 · 1.5 / (3.5 · 5) · (2/5)^0.5.
        let want = 3.0 * 1.5 / (3.5 * 5.0) * 0.4f64.sqrt();
        assert!((dot(cases[2].0, cases[2].1) - want).abs() < 1e-15);
        // A profile's own squared norm: (γ+1)² / ((2γ+1) t).
        let p = PowerProfile { gamma: 3.0, t: 4.0 };
        assert!((dot(p, p) - 16.0 / 28.0).abs() < 1e-15);
    }

    /// Snapshots every 1/16 of a run of 2²⁰ images at σ_rel 0.05 and 0.10.
    fn stored() -> Vec<PowerProfile> {
        let mut v = Vec::new();
        for k in 1..=16 {
            for s in [0.05, 0.10] {
                v.push(PowerProfile {
                    gamma: gamma_from_sigma_rel(s),
                    t: k as f64 * 65536.0,
                });
            }
        }
        v
    }

    #[test]
    fn a_stored_profile_is_its_own_reconstruction() {
        let st = stored();
        let solver = Solver::new(&st).unwrap();
        for k in [3, 31] {
            let f = solver.fit(st[k]);
            assert!(f.residual < 1e-6, "{}", f.residual);
            assert!((f.mass - 1.0).abs() < 1e-6);
            let mixed: f64 = (0..st.len())
                .map(|i| f.coefficients[i] * dot(st[i], st[k]))
                .sum();
            assert!((mixed / dot(st[k], st[k]) - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn the_residual_grows_outside_the_stored_range() {
        let solver = Solver::new(&stored()).unwrap();
        let at = |s: f64| {
            solver
                .fit(PowerProfile {
                    gamma: gamma_from_sigma_rel(s),
                    t: 16.0 * 65536.0,
                })
                .residual
        };
        let inside = at(0.075);
        assert!(inside < 0.01, "{inside}");
        assert!(at(0.01) > 10.0 * inside, "{} vs {inside}", at(0.01));
        // The residual is measured, not assumed: a single stored profile cannot be another.
        let one = Solver::new(&stored()[..1]).unwrap();
        let f = one.fit(PowerProfile {
            gamma: gamma_from_sigma_rel(0.2),
            t: 65536.0,
        });
        assert!(f.residual > 0.1, "{}", f.residual);
    }
}
