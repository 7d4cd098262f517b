//! Corruptions of images, applied at load time (`data.corrupt`) or exported
//! (`curadiff corrupt`): Gaussian blur, JPEG and motion blur. Which examples are corrupted,
//! and any random part of a corruption, depend only on the example's id and the corruption
//! seed, so an example is corrupted the same way whatever set, subset or order it is loaded
//! in. Ambient-Omni (reference §C.5) trains on such data above a per-example noise floor.
pub mod apply;
pub mod blur;
pub mod config;
pub mod export;
pub mod filter;
pub mod jpeg;
pub mod motion;
