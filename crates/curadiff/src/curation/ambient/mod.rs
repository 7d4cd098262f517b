//! Ambient-Omni (reference §C): examples of low quality are trained only above a per-example
//! noise floor, found by a noise-conditional classifier, and with the ambient (noisy-target)
//! loss there. The classifier ([`classifier`]) gives each corrupted example a p(corrupted)
//! curve over σ ([`annotate`], stored by [`curves`]); the threshold rule ([`threshold`])
//! turns a curve into the floor σ_tn. The floors reach training as noise windows
//! ([`crate::data::windows`]); the loss as a target rule ([`target::Ambient`]). Locality
//! (§C.4): crop classifiers ([`crops`]) find the largest crop side at which an
//! out-of-distribution image passes as in-distribution, and the locality map ([`locality`])
//! turns the side into a ceiling σ_max below which the image trains.
pub mod annotate;
pub mod classifier;
pub mod crops;
pub mod curves;
pub mod locality;
pub mod target;
pub mod threshold;
