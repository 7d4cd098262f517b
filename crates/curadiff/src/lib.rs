//! curadiff: training EDM-style diffusion models with data-curation methods that can be
//! switched on, combined and compared at equal wall-clock time and equal training samples.
pub mod data;
pub mod diffusion;
pub mod error;
pub mod fsutil;
pub mod models;
pub mod rng;
pub mod train;

pub use error::{Error, Result};
