//! Evaluation: exact metrics on the toy; a Fashion-MNIST classifier and the feature-space
//! image metrics built on it.
pub mod classifier;
pub mod images;
pub mod toy;
