//! Evaluation: exact metrics on the toy.
pub mod toy;
