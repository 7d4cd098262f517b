//! InfoNoise's low-noise gate (Raya et al. 2026, Eq. 14): g_{c,n}(σ) = σⁿ/(σⁿ + cⁿ), and its
//! pivot c from the onset-of-information rule (App. B.6): scanning from high σ down, c is the
//! largest σ where the ungated per-dσ profile q̂ ∝ m̂(σ)/σ³ (Eq. 13) still reaches p of its
//! maximum.
//!
//! Both the maximum and the scan read only *observed* bins, those whose m̂ was measured from at
//! least `min_bin_count` errors at some refresh. A bin filled by inter- or extrapolation never
//! sets c: with constant extrapolation below the lowest measured σ, m̂/σ³ would peak at the
//! grid's σ_min on values never measured and put c near (σ_min³/p)^{1/3} ≈ 8·σ_min whatever the
//! data. Note that the rule stays relative to the maximum: where m̂ ∝ σ² at low noise (a
//! continuous density, or an early network with D ≈ x), m̂/σ³ ∝ 1/σ peaks at the lowest
//! observed bin, so c depends on how low the measurements reach (the warm-up's range, see
//! [`super::warmup`]), not on the grid.

use serde::{Deserialize, Serialize};

/// Where a refresh's pivot c came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GateSource {
    /// The onset rule on the observed bins.
    Onset,
    /// `gate_c_fallback`: the rule landed in the lowest quarter of the grid (or no bin was
    /// observed).
    Fallback,
    /// `gate_c` > 0, set by the config.
    Fixed,
}

impl GateSource {
    /// "onset", "fallback" or "fixed", as the refresh records write it.
    pub fn name(self) -> &'static str {
        match self {
            GateSource::Onset => "onset",
            GateSource::Fallback => "fallback",
            GateSource::Fixed => "fixed",
        }
    }
}

/// The pivot of one refresh.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pivot {
    pub c: f64,
    pub source: GateSource,
    /// The bin the onset rule chose (None for a fixed c or when no bin was observed).
    pub onset_bin: Option<usize>,
}

/// The rule's settings (`diffusion.schedule.{gate_c, gate_c_fallback, onset_p}`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OnsetRule {
    /// A fixed pivot > 0; 0 selects the onset rule.
    pub gate_c: f64,
    /// The pivot used when the rule lands in the lowest quarter of the grid; 0: keep it.
    pub fallback: f64,
    /// The onset threshold p relative to the maximum.
    pub p: f64,
}

/// g_{c,n}(σ) = σⁿ/(σⁿ + cⁿ) (Eq. 14).
pub fn gate(sigma: f64, c: f64, n: f64) -> f64 {
    let s = sigma.powf(n);
    s / (s + c.powf(n))
}

impl OnsetRule {
    /// The pivot for the per-dσ profile `rate` (∝ m̂/σ³) at bin centres `sigma`, reading only
    /// the bins with `observed[i]`.
    pub fn pivot(&self, rate: &[f64], sigma: &[f64], observed: &[bool]) -> Pivot {
        if self.gate_c > 0.0 {
            return Pivot {
                c: self.gate_c,
                source: GateSource::Fixed,
                onset_bin: None,
            };
        }
        let seen = || (0..rate.len()).filter(|&i| observed[i] && rate[i].is_finite());
        let max = seen().map(|i| rate[i]).fold(0.0, f64::max);
        let onset = seen().rev().find(|&i| max > 0.0 && rate[i] >= self.p * max);
        match onset {
            Some(i) if i >= rate.len() / 4 || self.fallback <= 0.0 => Pivot {
                c: sigma[i],
                source: GateSource::Onset,
                onset_bin: Some(i),
            },
            _ if self.fallback > 0.0 => Pivot {
                c: self.fallback,
                source: GateSource::Fallback,
                onset_bin: onset,
            },
            // Nothing observed and no fallback: the gate's pivot at the lowest bin.
            _ => Pivot {
                c: sigma[0],
                source: GateSource::Onset,
                onset_bin: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(gate_c: f64, fallback: f64) -> OnsetRule {
        OnsetRule {
            gate_c,
            fallback,
            p: 0.01,
        }
    }

    #[test]
    fn extrapolated_bins_never_set_the_maximum_or_the_onset() {
        // Twelve bins at σ = 2^(i−6), p = 0.01. Observed bins 4..12 hold the rates
        // [100, 50, 20, 10, 5, 1, 0.5, 0.1]; the unobserved bins 0..4 hold huge
        // (extrapolated) values. They must neither be the maximum (which would make the
        // threshold 0.01·1e6 = 1e4 and put the onset at bin 2) nor the onset. Observed
        // maximum 100, threshold 1: the largest observed bin with rate ≥ 1 is bin 9.
        let sigma: Vec<f64> = (0..12).map(|i| 2f64.powi(i - 6)).collect();
        let mut rate = vec![1e6, 1e5, 1e4, 1e3];
        rate.extend([100.0, 50.0, 20.0, 10.0, 5.0, 1.0, 0.5, 0.1]);
        let observed: Vec<bool> = (0..12).map(|i| i >= 4).collect();
        let p = rule(0.0, 0.2).pivot(&rate, &sigma, &observed);
        assert_eq!(
            p,
            Pivot {
                c: sigma[9],
                source: GateSource::Onset,
                onset_bin: Some(9),
            }
        );
        // The same profile with every bin counted (the old behaviour): the maximum is the
        // extrapolated 1e6, the onset bin 2 lies in the lowest quarter (bins 0..3) and the
        // fallback fires.
        let all = vec![true; 12];
        let old = rule(0.0, 0.2).pivot(&rate, &sigma, &all);
        assert_eq!(
            (old.c, old.source, old.onset_bin),
            (0.2, GateSource::Fallback, Some(2))
        );
        // Without a fallback the rule's own value is kept.
        let keep = rule(0.0, 0.0).pivot(&rate, &sigma, &all);
        assert_eq!((keep.c, keep.source), (sigma[2], GateSource::Onset));
        // A fixed c wins over everything.
        let fixed = rule(0.7, 0.2).pivot(&rate, &sigma, &observed);
        assert_eq!(
            (fixed.c, fixed.source, fixed.onset_bin),
            (0.7, GateSource::Fixed, None)
        );
        // Only bins 0..3 observed (the lowest quarter): the fallback, named as such.
        let low: Vec<bool> = (0..12).map(|i| i < 3).collect();
        let f = rule(0.0, 0.2).pivot(&rate, &sigma, &low);
        assert_eq!(
            (f.c, f.source, f.onset_bin),
            (0.2, GateSource::Fallback, Some(2))
        );
        // Nothing observed: the fallback, with no onset bin.
        let none = rule(0.0, 0.2).pivot(&rate, &sigma, &[false; 12]);
        assert_eq!(
            (none.c, none.source, none.onset_bin),
            (0.2, GateSource::Fallback, None)
        );
        assert_eq!(gate(2.0, 2.0, 3.0), 0.5);
        assert!((gate(1.0, 2.0, 3.0) - 1.0 / 9.0).abs() < 1e-15);
    }
}
