//! The per-example training-target seam: how one example becomes a training pair (noisy input
//! x, target) at the σ the sampler drew for it. The learner regresses D(x; σ) on the target
//! with the EDM weight λ(σ), so a rule that changes the target changes what the step learns
//! without the learner knowing why.
//!
//! [`Clean`] is EDM's pair, x = y + σ·n and target y (EDM eq. 2). A curation method brings its
//! own rule, e.g. the ambient target of examples with a noise floor ([`super::ambient`]).

use crate::rng::Rng;

/// Makes the training pair of one example.
pub trait Targets: Send + Sync {
    /// Appends to `x` and `target` the noisy input and the target of the stored example `y`
    /// trained at `sigma`, when the example carries the noise floor `floor` ≤ `sigma` there
    /// (0: clean), with noise from `rng`.
    fn make(
        &self,
        y: &[f32],
        sigma: f64,
        floor: f64,
        rng: &mut Rng,
        x: &mut Vec<f32>,
        target: &mut Vec<f32>,
    );
}

/// EDM's pair: x = y + σ·n, target y, for every example (a noise floor is ignored: the plain
/// x0 loss against the stored example).
pub struct Clean;

impl Targets for Clean {
    fn make(
        &self,
        y: &[f32],
        sigma: f64,
        _floor: f64,
        rng: &mut Rng,
        x: &mut Vec<f32>,
        target: &mut Vec<f32>,
    ) {
        for &v in y {
            target.push(v);
            x.push(v + (rng.normal() * sigma) as f32);
        }
    }
}
