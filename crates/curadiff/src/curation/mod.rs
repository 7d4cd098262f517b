//! Online batch selection and its config: given per-example losses of a super-batch, choose the mini-batch to
//! train on (uniform, RHO-loss, JEST joint sampling) and when to select at all (schedules);
//! and the reweighting seam (per-example loss weights).
pub mod jest;
pub mod reweighter;
pub mod schedule;
pub mod select_config;
pub mod selector;
