//! Online batch selection: given per-example losses of a super-batch, choose the mini-batch to
//! train on (uniform, RHO-loss, JEST joint sampling) and when to select at all (schedules).
pub mod jest;
pub mod schedule;
pub mod selector;
