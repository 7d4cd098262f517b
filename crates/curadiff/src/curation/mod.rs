//! Online batch selection and its config: given per-example losses of a super-batch, choose the mini-batch to
//! train on (uniform, RHO-loss, JEST joint sampling) and when to select at all (schedules);
//! the reweighting seam (per-example loss weights), the target seam (per-example training
//! pairs) and the methods that plug into them; offline pruning (surrogate features, scores,
//! coresets).
pub mod ambient;
pub mod curriculum;
pub mod jest;
pub mod prune;
pub mod reweight;
pub mod reweighter;
pub mod schedule;
pub mod select_config;
pub mod selector;
pub mod targets;
