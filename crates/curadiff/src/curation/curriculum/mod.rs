//! The diffusion curriculum of DisCL (Liang et al., arXiv 2410.13674; reference §D): hard
//! real examples of a long-tailed training set, each turned into a spectrum of synthetic
//! images by image-guided diffusion, from far (λ = 0: plain class-conditional generation) to
//! near (λ → 1: close to the real image), filtered by a classifier.
//!
//! ```text
//! long-tailed set ──hard (K-fold out-of-fold p(true class) | all few-shot examples)──► ids file
//!   ──strength (s → σ_start on the sampler's schedule; λ = 1 − s)──► img2img per (id, s, seed)
//!   ──filter (p(intended class) ≥ τ on a classifier of the long-tailed set)──► spectrum set
//! ```
//! The sampling itself is the guided Heun sampler started part-way
//! ([`crate::train::image::sample_images_from`]); `curadiff synth` runs the whole chain
//! ([`crate::synthjob`]).
//!
//! The classifier then trains on a curriculum over λ ([`arm`]): the fixed "diverse →
//! specific" order ([`fixed`]), the adaptive choice by held-out progress ([`adaptive`]), or a
//! baseline (real only, class-balanced resampling ([`balanced`]), or all synthetic images in
//! one stage), each in stages of the one stateful trainer ([`crate::eval::staged`]).
pub mod adaptive;
pub mod arm;
pub mod balanced;
pub mod filter;
pub mod fixed;
pub mod hard;
pub mod spectrum;
pub mod strength;
