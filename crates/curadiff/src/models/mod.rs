//! Denoiser networks and the magnitude-preserving layers they are built from.
pub mod fused;
pub mod gemm;
pub mod layers;
pub mod mlp;
pub mod optim;
pub mod params;
pub mod toy_denoiser;
pub mod unet;
pub mod unet_fused;
