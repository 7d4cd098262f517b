//! The pruning criteria by name: each turns the features of a whole pool into one score per
//! example, and the higher scores are kept first ([`super::select`]). Every criterion is
//! deterministic: the same features (and seed) give the same scores, bit for bit.

use serde::{Deserialize, Serialize};

use super::features::Features;
use super::{gaussian, kcenter, moderate};
use crate::error::Result;
use crate::rng::{Rng, Stream};

/// A pruning criterion and its parameters, as recorded in a score file's sidecar
/// (`"criterion": "gaussian", "delta": 0.0012`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "criterion", rename_all = "kebab-case")]
pub enum Criterion {
    /// Gaussian log-density under N(μ, Σ + δI) fitted to all features
    /// ([`super::gaussian`]); `delta` None takes the default (10⁻³ of the mean variance),
    /// and the score file records the δ used.
    Gaussian { delta: Option<f64> },
    /// Moderate-DS: near the class's median distance to the class median feature
    /// ([`super::moderate`]).
    ModerateDs,
    /// Closest to the class median feature ([`super::moderate`]).
    ClosestToMedian,
    /// k-center greedy order within each class, as the score 1 − p/n_k
    /// ([`super::kcenter`]).
    Kcenter,
    /// A uniform random score per example, keyed by (seed, example id): a random subset (per
    /// class with `--per-class`), the baseline every other criterion must beat.
    Random { seed: u64 },
}

/// The criterion names, for messages.
pub const NAMES: [&str; 5] = [
    "gaussian",
    "moderate-ds",
    "closest-to-median",
    "kcenter",
    "random",
];

impl Criterion {
    /// Its name as in [`NAMES`].
    pub fn name(&self) -> &'static str {
        match self {
            Criterion::Gaussian { .. } => NAMES[0],
            Criterion::ModerateDs => NAMES[1],
            Criterion::ClosestToMedian => NAMES[2],
            Criterion::Kcenter => NAMES[3],
            Criterion::Random { .. } => NAMES[4],
        }
    }

    /// Whether the criterion reads features (all but `random`).
    pub fn needs_features(&self) -> bool {
        !matches!(self, Criterion::Random { .. })
    }

    /// The scores of the rows of `f`, and the criterion as run (the Gaussian's with the δ it
    /// used).
    pub fn score(&self, f: &Features) -> Result<(Vec<f64>, Criterion)> {
        let (x, n, dim, labels) = (&f.data, f.len(), f.dim(), &f.meta.labels);
        Ok(match self {
            Criterion::Gaussian { delta } => {
                let g = gaussian::log_density(x, n, dim, *delta)?;
                let run = Criterion::Gaussian {
                    delta: Some(g.delta),
                };
                (g.log_density, run)
            }
            Criterion::ModerateDs => (moderate::moderate_ds(x, dim, labels), self.clone()),
            Criterion::ClosestToMedian => {
                (moderate::closest_to_median(x, dim, labels), self.clone())
            }
            Criterion::Kcenter => (kcenter::kcenter_scores(x, dim, labels), self.clone()),
            Criterion::Random { seed } => (random_scores(&f.meta.ids, *seed), self.clone()),
        })
    }
}

/// Uniform scores in [0, 1), one per id, each from its own stream (seed, `Curate`, id): the
/// score of an example does not depend on the others or on their order.
pub fn random_scores(ids: &[u64], seed: u64) -> Vec<f64> {
    ids.iter()
        .map(|&id| Rng::new(seed, Stream::Curate, id).uniform())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_scores_are_keyed_by_id_and_seed() {
        let a = random_scores(&[5, 9, 2], 0);
        let b = random_scores(&[2, 5], 0);
        assert_eq!((a[0], a[2]), (b[1], b[0]));
        assert_ne!(random_scores(&[5], 1)[0], a[0]);
        assert!(a.iter().all(|v| (0.0..1.0).contains(v)));
    }

    #[test]
    fn the_sidecar_form_names_the_criterion_and_its_parameters() {
        let g = Criterion::Gaussian { delta: Some(0.5) };
        assert_eq!(
            serde_json::to_string(&g).unwrap(),
            r#"{"criterion":"gaussian","delta":0.5}"#
        );
        let m: Criterion = serde_json::from_str(r#"{"criterion":"moderate-ds"}"#).unwrap();
        assert_eq!(m, Criterion::ModerateDs);
        for c in [
            g,
            Criterion::ModerateDs,
            Criterion::ClosestToMedian,
            Criterion::Kcenter,
            Criterion::Random { seed: 3 },
        ] {
            let v = serde_json::to_value(&c).unwrap();
            assert_eq!(v["criterion"], c.name());
        }
    }
}
