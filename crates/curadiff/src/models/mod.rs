//! Denoiser networks and the magnitude-preserving layers they are built from; the small CNN
//! classifier of the feature metrics and of curation.
pub mod cnn;
pub mod fused;
pub mod gemm;
pub mod layers;
pub mod mlp;
pub mod optim;
pub mod params;
pub mod stored_tensor;
pub mod toy_denoiser;
pub mod unet;
pub mod unet_fused;
