//! The online-selection config (`[select]`): which selector, its filter ratio and chunks,
//! when to select (schedule), and the reference model it compares against.

use serde::{Deserialize, Serialize};

use super::jest::JestForm;
use super::schedule::Schedule;
use crate::error::{Error, Result};

/// The selection method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Train on the whole batch (no selection).
    None,
    /// A uniformly random sub-batch of ⌊B(1 − f)⌋.
    Uniform,
    /// RHO-loss: the top ⌊B(1 − f)⌋ by learner − reference loss.
    Rho,
    /// JEST joint chunked sampling on learnability (AJEST when the reference is the guide).
    Jest,
}

/// Online batch selection. `train.batch` is the super-batch B.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectConfig {
    /// "none", "uniform", "rho" or "jest".
    pub method: Method,
    /// f, the fraction of the super-batch filtered out (0.8 trains on 20%).
    pub filter_ratio: f64,
    /// N, JEST's number of chunks.
    pub chunks: usize,
    /// JEST's learnability form: "linear" (O(B)) or "pairwise" (O(B²)).
    pub form: JestForm,
    /// "always", "early" (until the learner beats the reference) or "late" (after).
    pub schedule: Schedule,
    /// The reference model: a run directory (for AJEST, the autoguidance guide), or "ema"
    /// for the learner's own EMA. Empty when no reference is needed.
    pub reference: String,
    /// Whether the reference is scored at the learner's σ and noise (true) or at re-drawn
    /// ones for the same clean examples (false, as the seed's image code does).
    pub same_noise: bool,
}

impl Default for SelectConfig {
    fn default() -> Self {
        Self {
            method: Method::None,
            filter_ratio: 0.8,
            chunks: 16,
            form: JestForm::Linear,
            schedule: Schedule::Always,
            reference: String::new(),
            same_noise: true,
        }
    }
}

impl SelectConfig {
    /// Whether any reference losses are ever needed.
    pub fn needs_reference(&self) -> bool {
        matches!(self.method, Method::Rho | Method::Jest) || self.schedule != Schedule::Always
    }

    /// Checks the fields; errors name the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |f: &str, why: String| Error::InvalidValue {
            field: format!("select.{f}"),
            why,
        };
        if !(self.filter_ratio.is_finite() && (0.0..1.0).contains(&self.filter_ratio)) {
            return Err(bad(
                "filter_ratio",
                format!("must be in [0, 1), got {}", self.filter_ratio),
            ));
        }
        if self.chunks == 0 {
            return Err(bad("chunks", "must be at least 1".into()));
        }
        if self.needs_reference() && self.reference.trim().is_empty() {
            return Err(bad(
                "reference",
                "this method or schedule compares against a reference model: set it to a run \
                 directory (for AJEST, the guide) or to \"ema\""
                    .into(),
            ));
        }
        Ok(())
    }
}
