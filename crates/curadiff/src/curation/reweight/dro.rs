//! Class weights by DRO against a reference model, DoReMi style (reference §B.1 step 3, a
//! reconstruction; the paper gives one sentence and no code).
//!
//! After each step, per class k present in the batch, the excess loss of the learner over
//! the frozen reference on the same (x, σ, noise) is e_k = max(L_k − R_k, 0), with L_k and R_k
//! the mean per-example losses of class k's examples. The weights follow an
//! exponentiated-gradient step α_k ← α_k·exp(η·e_k), renormalised to sum 1, and the step
//! trains on the smoothed α'_k = (1 − c)·α_k + c/K (DoReMi: η = 1, c = 10⁻³).
//!
//! **Choice** (the paper is silent): an example of class k gets the loss weight α'_k, which
//! the loop scales to mean 1 over the batch; uniform α trains exactly as without
//! reweighting, whatever the class frequencies. (DoReMi's Σ_k α_k·L_k would instead also
//! re-balance the classes of a long-tailed set at uniform α.)

use crate::curation::reweighter::{Examples, Reweighter};
use crate::error::{Error, Result};

/// Online DRO class weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Dro {
    /// The weights α, summing to 1.
    alpha: Vec<f64>,
    eta: f64,
    smoothing: f64,
    /// Updates made so far (one per observed step).
    pub updates: u64,
}

impl Dro {
    /// Uniform weights over `classes` classes, step `eta` > 0, smoothing `smoothing` in [0, 1].
    pub fn new(classes: usize, eta: f64, smoothing: f64) -> Result<Self> {
        let bad = |field: &str, why: &str| Error::InvalidValue {
            field: field.into(),
            why: why.into(),
        };
        if classes == 0 {
            return Err(bad(
                "reweight.method",
                "DRO reweights classes, but the data has no labels",
            ));
        }
        if !(eta.is_finite() && eta > 0.0) {
            return Err(bad("reweight.eta", "must be finite and > 0"));
        }
        if !(0.0..=1.0).contains(&smoothing) {
            return Err(bad("reweight.smoothing", "must be in [0, 1]"));
        }
        Ok(Self {
            alpha: vec![1.0 / classes as f64; classes],
            eta,
            smoothing,
            updates: 0,
        })
    }

    /// The smoothed weights α' the step trains on.
    pub fn smoothed(&self) -> Vec<f64> {
        let k = self.alpha.len() as f64;
        self.alpha
            .iter()
            .map(|a| (1.0 - self.smoothing) * a + self.smoothing / k)
            .collect()
    }
}

impl Reweighter for Dro {
    fn weights(&mut self, b: &Examples) -> Vec<f32> {
        let s = self.smoothed();
        b.labels
            .iter()
            .map(|&c| s.get(c as usize).copied().unwrap_or(0.0) as f32)
            .collect()
    }

    fn needs_reference(&self) -> bool {
        true
    }

    fn observe(
        &mut self,
        b: &Examples,
        losses: &[f32],
        reference: Option<&[f32]>,
    ) -> Option<String> {
        self.updates += 1;
        let Some(reference) = reference else {
            return Some("DRO reweighting got no reference losses; weights kept".into());
        };
        let k = self.alpha.len();
        let (mut l, mut r, mut n) = (vec![0.0; k], vec![0.0; k], vec![0usize; k]);
        for ((&c, &x), &y) in b.labels.iter().zip(losses).zip(reference) {
            if let Some(slot) = n.get_mut(c as usize) {
                *slot += 1;
                l[c as usize] += x as f64;
                r[c as usize] += y as f64;
            }
        }
        // A non-finite loss must not vanish in the clip at 0 (max(NaN, 0) is 0).
        let finite = l.iter().chain(&r).all(|v| v.is_finite());
        let mut next: Vec<f64> = (0..k)
            .map(|j| {
                let e = if n[j] > 0 {
                    ((l[j] - r[j]) / n[j] as f64).max(0.0)
                } else {
                    0.0
                };
                self.alpha[j] * (self.eta * e).exp()
            })
            .collect();
        let sum: f64 = next.iter().sum();
        if !(finite && sum.is_finite() && sum > 0.0) || next.iter().any(|v| !v.is_finite()) {
            return Some(format!(
                "DRO update {} gave non-finite class weights (learner or reference losses \
                 not finite, or reweight.eta too large); the previous weights are kept",
                self.updates
            ));
        }
        next.iter_mut().for_each(|v| *v /= sum);
        self.alpha = next;
        None
    }

    fn history(&self) -> Option<Vec<f64>> {
        Some(self.smoothed())
    }

    fn state(&self) -> serde_json::Value {
        // As bit patterns: a JSON decimal need not parse back to the same f64, and resume
        // must be bit-identical.
        let bits: Vec<u64> = self.alpha.iter().map(|a| a.to_bits()).collect();
        serde_json::json!({"alpha_bits": bits, "updates": self.updates})
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        let bad = |why: String| Error::Config(format!("DRO state: {why}"));
        let bits: Vec<u64> = state
            .get("alpha_bits")
            .and_then(|a| serde_json::from_value(a.clone()).ok())
            .ok_or_else(|| bad("no alpha_bits".into()))?;
        let alpha: Vec<f64> = bits.into_iter().map(f64::from_bits).collect();
        if alpha.iter().any(|a| !(a.is_finite() && *a >= 0.0)) {
            return Err(bad(format!(
                "class weights {alpha:?} are not finite and ≥ 0"
            )));
        }
        if alpha.len() != self.alpha.len() {
            return Err(bad(format!(
                "{} class weights for {} classes",
                alpha.len(),
                self.alpha.len()
            )));
        }
        self.alpha = alpha;
        self.updates = state
            .get("updates")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| bad("no update count".into()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(labels: &[u32]) -> (Vec<u64>, Vec<f64>) {
        ((0..labels.len() as u64).collect(), vec![1.0; labels.len()])
    }

    /// A hand-computed update: class 0 has excess 3 − 1 = 2, class 1 none, class 2 a negative
    /// one (clipped to 0): α ∝ (e², 1, 1).
    #[test]
    fn one_update_by_hand() {
        let mut d = Dro::new(3, 1.0, 0.0).unwrap();
        let labels = [0, 0, 1, 2];
        let (ids, sigma) = batch(&labels);
        let b = Examples {
            ids: &ids,
            labels: &labels,
            sigma: &sigma,
        };
        assert_eq!(d.weights(&b), vec![(1.0f64 / 3.0) as f32; 4]);
        let warn = d.observe(&b, &[2.0, 4.0, 1.0, 1.0], Some(&[1.0, 1.0, 1.0, 2.0]));
        assert!(warn.is_none());
        let z = 2f64.exp() + 2.0; // exp(η·2) + 1 + 1
        let want = [2f64.exp() / z, 1.0 / z, 1.0 / z];
        for (a, w) in d.smoothed().iter().zip(want) {
            assert!((a - w).abs() < 1e-12, "{a} vs {w}");
        }
        // Smoothing toward uniform: c = 0.5 halves the distance to 1/3.
        let mut s = d.clone();
        s.smoothing = 0.5;
        assert!((s.smoothed()[1] - (0.5 * want[1] + 0.5 / 3.0)).abs() < 1e-12);
        // Weights per example follow the class.
        let w = d.weights(&b);
        assert_eq!(w[0], w[1]);
        assert!(w[0] > w[2] && w[2] == w[3]);
        assert_eq!(d.updates, 1);
    }

    #[test]
    fn non_finite_updates_keep_the_weights_and_warn_and_state_round_trips() {
        let mut d = Dro::new(2, 1.0, 1e-3).unwrap();
        let labels = [0, 1];
        let (ids, sigma) = batch(&labels);
        let b = Examples {
            ids: &ids,
            labels: &labels,
            sigma: &sigma,
        };
        d.observe(&b, &[1.5, 1.0], Some(&[1.0, 1.0]));
        let before = d.smoothed();
        let w = d.observe(&b, &[f32::NAN, 1.0], Some(&[1.0, 1.0]));
        assert!(w.unwrap().contains("previous weights are kept"));
        assert_eq!(d.smoothed(), before);
        let mut e = Dro::new(2, 1.0, 1e-3).unwrap();
        e.restore(&d.state()).unwrap();
        assert_eq!(e, d);
        assert!(Dro::new(3, 1.0, 0.0).unwrap().restore(&d.state()).is_err());
        for (k, eta, c, key) in [
            (0, 1.0, 0.0, "method"),
            (2, 0.0, 0.0, "eta"),
            (2, 1.0, 2.0, "smoothing"),
        ] {
            let e = Dro::new(k, eta, c).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
    }
}
