//! Training: config and presets, the loop, optimiser, EMA, checkpoints and stats.
pub mod checkpoint;
pub mod config;
pub mod ema;
pub mod fused_learner;
pub mod host_state;
pub mod image;
pub mod image_learner;
pub mod image_run;
pub mod learner;
pub mod lr;
pub mod noise_log;
pub mod optim;
pub mod params;
pub mod presets;
pub mod run;
pub mod select;
pub mod stats;
