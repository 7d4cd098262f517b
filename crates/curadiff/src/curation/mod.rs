//! Online batch selection and its config: given per-example losses of a super-batch, choose the mini-batch to
//! train on (uniform, RHO-loss, JEST joint sampling) and when to select at all (schedules).
pub mod jest;
pub mod schedule;
pub mod select_config;
pub mod selector;
