//! Evaluation: exact metrics on the toy; a Fashion-MNIST classifier and the feature-space
//! image metrics built on it; optionally, the Fréchet distance on ImageNet MobileNetV2 features.
pub mod classifier;
pub mod images;
pub mod mobilenet;
pub mod staged;
pub mod toy;
