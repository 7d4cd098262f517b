//! From a p(corrupted) curve over a sorted σ grid to the example's noise floor σ_tn
//! (reference §C.2, step 3): smooth the curve along ascending σ with an exponential moving
//! average, m₀ = p₀, m_k = α·p_k + (1 − α)·m_{k−1} with α = 2/(span + 1) (pandas'
//! `ewm(span, adjust=False)`; span 1 leaves the curve as it is), then σ_tn is the first σ_k
//! with m_k < 0.5 + ε. When no point qualifies, σ_tn is the grid's last σ and the example is
//! reported ([`Floors::never`]). The smoothing lags toward higher σ, so it errs on the safe
//! side (a higher floor).

use serde::{Deserialize, Serialize};

use crate::data::windows::NoiseWindow;
use crate::error::{Error, Result};

/// The threshold rule's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ThresholdConfig {
    /// EMA span along the σ grid, ≥ 1 (default 3: α = 0.5).
    pub span: f64,
    /// ε of the rule p < 0.5 + ε, in [0, 0.5) (default 0.05, the reference's `cls_epsilon`).
    pub epsilon: f64,
}

impl Default for ThresholdConfig {
    fn default() -> Self {
        Self {
            span: 3.0,
            epsilon: 0.05,
        }
    }
}

impl ThresholdConfig {
    /// Checks the span and ε; errors name `--span` / `--epsilon`.
    pub fn validate(&self) -> Result<()> {
        if !(self.span.is_finite() && self.span >= 1.0) {
            return Err(Error::InvalidValue {
                field: "--span".into(),
                why: format!(
                    "the EMA span must be a number ≥ 1 (1: no smoothing), got {}",
                    self.span
                ),
            });
        }
        if !(self.epsilon.is_finite() && (0.0..0.5).contains(&self.epsilon)) {
            return Err(Error::InvalidValue {
                field: "--epsilon".into(),
                why: format!(
                    "must be in [0, 0.5) (the rule is p < 0.5 + ε), got {}",
                    self.epsilon
                ),
            });
        }
        Ok(())
    }
}

/// The EMA of `curve` with `span` (see the module doc).
pub fn smooth(curve: &[f32], span: f64) -> Vec<f64> {
    let alpha = 2.0 / (span + 1.0);
    let mut out = Vec::with_capacity(curve.len());
    let mut m = 0.0;
    for (k, &p) in curve.iter().enumerate() {
        m = if k == 0 {
            p as f64
        } else {
            alpha * p as f64 + (1.0 - alpha) * m
        };
        out.push(m);
    }
    out
}

/// σ_tn of one curve over `sigmas` (ascending): `(σ_tn, crossed)`, `crossed` false when no
/// point qualified and σ_tn is the last σ.
pub fn sigma_tn(curve: &[f32], sigmas: &[f64], t: &ThresholdConfig) -> (f64, bool) {
    let m = smooth(curve, t.span);
    match m.iter().position(|&v| v < 0.5 + t.epsilon) {
        Some(k) => (sigmas[k], true),
        None => (sigmas[sigmas.len() - 1], false),
    }
}

/// The floors of a set of curves.
#[derive(Debug, Clone, PartialEq)]
pub struct Floors {
    /// (id, window) per curve: σ_min = σ_tn, σ_max = 0.
    pub rows: Vec<(u64, NoiseWindow)>,
    /// Ids whose curve never fell below 0.5 + ε (floor = the grid's last σ).
    pub never: Vec<u64>,
}

impl Floors {
    /// The warning for examples that never crossed, if any.
    pub fn warning(&self) -> Option<String> {
        if self.never.is_empty() {
            return None;
        }
        let first: Vec<String> = self.never.iter().take(5).map(|i| i.to_string()).collect();
        Some(format!(
            "{} example(s) never fell below p(corrupted) = 0.5 + ε on the σ grid (ids {}{}); \
             they get the grid's largest σ as their floor. A longer or wider grid, a larger \
             ε, or a better-trained classifier may place them",
            self.never.len(),
            first.join(", "),
            if self.never.len() > 5 { ", …" } else { "" }
        ))
    }
}

/// The floors of `curves` (`[ids.len(), sigmas.len()]` row-major) under `t`.
pub fn floors(ids: &[u64], sigmas: &[f64], curves: &[f32], t: &ThresholdConfig) -> Floors {
    let k = sigmas.len();
    let mut rows = Vec::with_capacity(ids.len());
    let mut never = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        let (s, crossed) = sigma_tn(&curves[i * k..(i + 1) * k], sigmas, t);
        if !crossed {
            never.push(id);
        }
        rows.push((
            id,
            NoiseWindow {
                sigma_min: s,
                sigma_max: 0.0,
            },
        ));
    }
    Floors { rows, never }
}

/// The fixed-floor mode, no classifier: every one of `ids` gets σ_tn = `sigma_tn`.
pub fn fixed(ids: &[u64], sigma_tn: f64) -> Result<Floors> {
    if !(sigma_tn.is_finite() && sigma_tn > 0.0) {
        return Err(Error::InvalidValue {
            field: "--fixed-sigma-tn".into(),
            why: format!(
                "must be a finite σ > 0 (the reference's blur σ_B = 0.8 example uses 1.89), got \
                 {sigma_tn}"
            ),
        });
    }
    let w = NoiseWindow {
        sigma_min: sigma_tn,
        sigma_max: 0.0,
    };
    Ok(Floors {
        rows: ids.iter().map(|&id| (id, w)).collect(),
        never: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRID: [f64; 6] = [0.01, 0.1, 0.5, 1.0, 2.0, 5.0];

    #[test]
    fn the_ema_matches_the_hand_computed_values() {
        // span 3 → α = 0.5: 1, 0.5·0.2 + 0.5·1 = 0.6, 0.5·0.6 + 0.5·0.6 = 0.6, 0.5·0 + 0.3 = 0.3
        let m = smooth(&[1.0, 0.2, 0.6, 0.0], 3.0);
        let want = [1.0, 0.6, 0.6, 0.3];
        assert!(
            m.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-7),
            "{m:?}"
        );
        assert_eq!(smooth(&[0.9, 0.1], 1.0), vec![0.9f32 as f64, 0.1f32 as f64]);
    }

    /// Hand-made curves: the floor is the first σ whose smoothed p is below 0.55.
    #[test]
    fn the_floor_is_the_first_sigma_below_one_half_plus_epsilon() {
        let raw = ThresholdConfig {
            span: 1.0,
            epsilon: 0.05,
        };
        // Falls below 0.55 at σ = 1.0 (0.54), not at 0.5 (0.56).
        let c = [1.0, 0.98, 0.56, 0.54, 0.5, 0.49];
        assert_eq!(sigma_tn(&c, &GRID, &raw), (1.0, true));
        // Already indistinguishable at the lowest σ: floor = the first point.
        assert_eq!(sigma_tn(&[0.5; 6], &GRID, &raw), (0.01, true));
        // A single dip at 0.1 is taken raw, but smoothing (α = 0.5) holds it above:
        // m = 1, 0.75, 0.875, 0.6875, 0.59375, 0.546875 → σ = 5.
        let dip = [1.0, 0.5, 1.0, 0.5, 0.5, 0.5];
        assert_eq!(sigma_tn(&dip, &GRID, &raw), (0.1, true));
        assert_eq!(
            sigma_tn(&dip, &GRID, &ThresholdConfig::default()),
            (5.0, true)
        );
        // Never below: the last σ, reported.
        let f = floors(&[7, 9], &GRID, &[c.as_slice(), &[0.9; 6]].concat(), &raw);
        assert_eq!(
            f.rows[0],
            (
                7,
                NoiseWindow {
                    sigma_min: 1.0,
                    sigma_max: 0.0
                }
            )
        );
        assert_eq!(f.rows[1].1.sigma_min, 5.0);
        assert_eq!(f.never, vec![9]);
        assert!(f.warning().unwrap().contains("ids 9"));
        // A larger ε moves the floor down.
        let wide = ThresholdConfig {
            epsilon: 0.07,
            ..raw
        };
        assert_eq!(sigma_tn(&c, &GRID, &wide), (0.5, true));
    }

    #[test]
    fn fixed_floors_and_bad_parameters() {
        let f = fixed(&[3, 4], 1.89).unwrap();
        assert!(f
            .rows
            .iter()
            .all(|r| r.1.sigma_min == 1.89 && r.1.sigma_max == 0.0));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = fixed(&[3], bad).unwrap_err().to_string();
            assert!(e.contains("--fixed-sigma-tn"), "{e}");
        }
        let e = ThresholdConfig {
            span: 0.5,
            epsilon: 0.05,
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("--span"), "{e}");
        let e = ThresholdConfig {
            span: 3.0,
            epsilon: 0.5,
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("--epsilon"), "{e}");
    }
}
