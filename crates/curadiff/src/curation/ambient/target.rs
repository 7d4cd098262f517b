//! The ambient (noisy-target) loss as a training target (reference §C.3, Ambient-Omni's VE
//! form). An example y carrying the noise floor σ_tn is trained at σ > σ_tn as
//!
//! - x_tn = y + σ_tn·ε₁ (the example brought up to its own floor),
//! - x_t = x_tn + √(σ² − σ_tn²)·ε₂,
//! - loss λ(σ)·σ⁴/(σ² − σ_tn²)²·‖x̂_tn − x_tn‖² with x̂_tn = (1 − a)·D(x_t) + a·x_t and
//!   a = σ_tn²/σ².
//!
//! Since x̂_tn − x_tn = (1 − a)·(D(x_t) − T) with T = (x_tn − a·x_t)/(1 − a), and
//! σ⁴/(σ² − σ_tn²)² = 1/(1 − a)², the loss is exactly EDM's λ(σ)·‖D(x_t) − T‖²: the rule
//! hands the learner the pair (x_t, T) and the learner stays unchanged. With σ_tn = 0 the pair
//! is EDM's (and draws the same noise), so clean examples train exactly as without it.

use crate::curation::targets::Targets;
use crate::rng::Rng;

/// The ambient target rule.
pub struct Ambient;

impl Targets for Ambient {
    fn make(
        &self,
        y: &[f32],
        sigma: f64,
        floor: f64,
        rng: &mut Rng,
        x: &mut Vec<f32>,
        target: &mut Vec<f32>,
    ) {
        if floor <= 0.0 {
            return super::super::targets::Clean.make(y, sigma, 0.0, rng, x, target);
        }
        let a = floor * floor / (sigma * sigma);
        let rest = (sigma * sigma - floor * floor).max(0.0).sqrt();
        for &v in y {
            let x_tn = v as f64 + floor * rng.normal();
            let x_t = x_tn + rest * rng.normal();
            x.push(x_t as f32);
            target.push(((x_tn - a * x_t) / (1.0 - a)) as f32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::curation::targets::Clean;
    use crate::rng::Stream;

    fn pair(rule: &dyn Targets, y: &[f32], s: f64, floor: f64, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let (mut x, mut t) = (Vec::new(), Vec::new());
        rule.make(
            y,
            s,
            floor,
            &mut Rng::new(seed, Stream::Data, 0),
            &mut x,
            &mut t,
        );
        (x, t)
    }

    #[test]
    fn without_a_floor_the_pair_is_edms_with_the_same_noise() {
        let y = [0.5f32, -0.25, 1.0];
        assert_eq!(
            pair(&Ambient, &y, 0.7, 0.0, 3),
            pair(&Clean, &y, 0.7, 0.0, 3)
        );
    }

    /// The reduced loss λ‖D − T‖² equals the reference's form, term by term, written out from
    /// the same draws: x_tn, x_t, x̂_tn = (1 − a)·D + a·x_t, and the factor σ⁴/(σ² − σ_tn²)².
    #[test]
    fn the_target_gives_the_reference_ambient_loss() {
        let (s, floor) = (1.5f64, 0.9f64);
        let y = [0.3f32, -0.8, 0.0, 0.95];
        let (x, t) = pair(&Ambient, &y, s, floor, 11);
        let mut rng = Rng::new(11, Stream::Data, 0);
        let a = floor * floor / (s * s);
        let factor = s.powi(4) / (s * s - floor * floor).powi(2);
        for (k, &v) in y.iter().enumerate() {
            let x_tn = v as f64 + floor * rng.normal();
            let x_t = x_tn + (s * s - floor * floor).sqrt() * rng.normal();
            assert!((x[k] as f64 - x_t).abs() < 1e-6);
            for d in [-1.0f64, 0.2, 0.7] {
                let x_hat_tn = (1.0 - a) * d + a * x_t;
                let reference = factor * (x_hat_tn - x_tn).powi(2);
                let reduced = (d - t[k] as f64).powi(2);
                assert!(
                    (reference - reduced).abs() < 1e-5 * reference.max(1.0),
                    "{reference} vs {reduced}"
                );
            }
        }
    }

    /// E[T | y] = y: the target is unbiased for the stored example, and its spread grows as σ
    /// approaches the floor (Var = σ_tn²·(1 + a/(1 − a)) per pixel).
    #[test]
    fn the_target_is_centred_on_the_example() {
        let (s, floor) = (2.0f64, 1.0f64);
        let a = floor * floor / (s * s);
        let y = vec![0.25f32; 40_000];
        let (_, t) = pair(&Ambient, &y, s, floor, 5);
        let n = t.len() as f64;
        let mean = t.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = t.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let want = floor * floor / (1.0 - a);
        assert!((mean - 0.25).abs() < 4.0 * (want / n).sqrt(), "mean {mean}");
        assert!((var / want - 1.0).abs() < 0.03, "var {var} vs {want}");
    }
}
