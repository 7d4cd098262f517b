//! The reweighting seam: per-example loss weights for a training step.
//!
//! A [`Reweighter`] sees the step's examples (stable ids, true labels, σ) before the step and
//! gives each a weight ≥ 0; after the step it observes the per-example losses it weighted
//! (DRO-style methods update from them, with a reference model's losses on the same
//! (x, σ, noise)). The loop scales the weights to mean 1 over the batch
//! ([`mean_one`]), so a reweighter changes the mix of examples, never the learning rate. Its
//! state goes into the checkpoint, so resume stays bit-identical.

use crate::error::{Error, Result};

/// What a reweighter sees of one batch.
#[derive(Debug, Clone, Copy)]
pub struct Examples<'a> {
    /// Stable example ids (positions in the source the data was loaded from).
    pub ids: &'a [u64],
    /// True class of each example (never the dropped label the network sees).
    pub labels: &'a [u32],
    /// σ of each example.
    pub sigma: &'a [f64],
}

/// Per-example loss weights.
pub trait Reweighter {
    /// The weights of the examples of `b` for this step (any scale; the loop normalises).
    fn weights(&mut self, b: &Examples) -> Vec<f32>;

    /// Whether [`Reweighter::observe`] needs a reference model's losses.
    fn needs_reference(&self) -> bool {
        false
    }

    /// The per-example losses the step measured on `b` (before its update), and a reference
    /// model's on the same (x, σ, noise) when [`Reweighter::needs_reference`]. Returns a
    /// warning for the run's log, e.g. when an update was refused.
    fn observe(
        &mut self,
        _b: &Examples,
        _losses: &[f32],
        _reference: Option<&[f32]>,
    ) -> Option<String> {
        None
    }

    /// The current per-class weights when they change during training (for the run's
    /// history); `None` for fixed weights.
    fn history(&self) -> Option<Vec<f64>> {
        None
    }

    /// State to keep in the checkpoint.
    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Restores [`Reweighter::state`].
    fn restore(&mut self, _state: &serde_json::Value) -> Result<()> {
        Ok(())
    }
}

/// Scales `w` to mean 1. Refuses negative or non-finite weights, and a batch whose weights
/// are all 0 (it would train on nothing).
pub fn mean_one(w: &mut [f32]) -> Result<()> {
    if let Some(bad) = w.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
        return Err(Error::Config(format!(
            "a reweighter gave the weight {bad}; weights must be finite and ≥ 0"
        )));
    }
    let sum: f64 = w.iter().map(|&v| v as f64).sum();
    if sum <= 0.0 {
        return Err(Error::Config(
            "every example of a batch has weight 0: the step would train on nothing; give \
             some class a positive weight"
                .into(),
        ));
    }
    let scale = w.len() as f64 / sum;
    w.iter_mut().for_each(|v| *v = (*v as f64 * scale) as f32);
    Ok(())
}

/// Fixed weights per class (`train.class_weights`), e.g. the frozen weights of a two-stage
/// reweighting.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassWeights {
    pub weights: Vec<f64>,
}

impl ClassWeights {
    /// Checks the weights against a dataset of `classes` classes; errors name the key.
    pub fn new(weights: &[f64], classes: usize) -> Result<Self> {
        let bad = |why: String| Error::InvalidValue {
            field: "train.class_weights".into(),
            why,
        };
        if weights.len() != classes {
            return Err(bad(format!(
                "{} weights for a dataset of {classes} classes: give one weight per class",
                weights.len()
            )));
        }
        if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0))
            || weights.iter().sum::<f64>() <= 0.0
        {
            return Err(bad(format!(
                "weights must be finite, ≥ 0 and not all 0, got {weights:?}"
            )));
        }
        Ok(Self {
            weights: weights.to_vec(),
        })
    }
}

impl Reweighter for ClassWeights {
    fn weights(&mut self, b: &Examples) -> Vec<f32> {
        b.labels
            .iter()
            .map(|&c| self.weights.get(c as usize).copied().unwrap_or(0.0) as f32)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_weights_are_scaled_to_mean_one_over_the_batch() {
        let mut r = ClassWeights::new(&[1.0, 3.0], 2).expect("valid");
        let b = Examples {
            ids: &[10, 11, 12, 13],
            labels: &[0, 1, 1, 0],
            sigma: &[1.0; 4],
        };
        let mut w = r.weights(&b);
        mean_one(&mut w).expect("positive");
        // Raw 1, 3, 3, 1: sum 8 over 4 examples, so scale 1/2.
        assert_eq!(w, vec![0.5, 1.5, 1.5, 0.5]);
    }

    #[test]
    fn bad_weights_are_refused_with_the_key() {
        for (w, k) in [(&[1.0][..], 2), (&[1.0, -1.0][..], 2), (&[0.0, 0.0][..], 2)] {
            let e = ClassWeights::new(w, k).expect_err("refused").to_string();
            assert!(e.contains("train.class_weights"), "{e}");
        }
        let mut zeros = vec![0.0f32; 3];
        assert!(mean_one(&mut zeros).is_err());
        let mut nan = vec![1.0, f32::NAN];
        assert!(mean_one(&mut nan).is_err());
    }
}
