//! The `[reweight]` section of a run config: adaptive class weights during training.

use serde::{Deserialize, Serialize};

/// Adaptive reweighting of a run (fixed weights are `train.class_weights`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReweightConfig {
    /// "none" or "dro" (class weights by DRO against `reference`, [`super::dro`]).
    #[serde(default = "none")]
    pub method: String,
    /// The frozen reference model: an image run directory (relative paths also resolve
    /// against the run directory).
    #[serde(default)]
    pub reference: String,
    /// The exponentiated-gradient step η (DoReMi: 1).
    #[serde(default = "eta")]
    pub eta: f64,
    /// Smoothing c toward uniform weights (DoReMi: 10⁻³).
    #[serde(default = "smoothing")]
    pub smoothing: f64,
}

fn none() -> String {
    "none".into()
}
fn eta() -> f64 {
    1.0
}
fn smoothing() -> f64 {
    1e-3
}

impl Default for ReweightConfig {
    fn default() -> Self {
        Self {
            method: none(),
            reference: String::new(),
            eta: eta(),
            smoothing: smoothing(),
        }
    }
}

impl ReweightConfig {
    /// True at the defaults (left out of config.toml, so older runs keep matching).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Whether DRO reweighting is on.
    pub fn is_dro(&self) -> bool {
        self.method == "dro"
    }
}
