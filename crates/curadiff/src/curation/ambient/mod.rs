//! Ambient-Omni (reference §C): examples of low quality are trained only above a per-example
//! noise floor, found by a noise-conditional classifier, and with the ambient (noisy-target)
//! loss there. The floors reach training as noise windows ([`crate::data::windows`]); the
//! loss as a target rule ([`target::Ambient`]).
pub mod target;
