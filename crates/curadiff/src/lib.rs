//! curadiff: training EDM-style diffusion models with data-curation methods that can be
//! switched on, combined and compared at equal wall-clock time and equal training samples.
pub mod ambientjob;
pub mod bench;
pub mod curation;
pub mod data;
pub mod device;
pub mod diffusion;
pub mod error;
pub mod eval;
pub mod fsutil;
pub mod imagejob;
pub mod localityjob;
pub mod models;
pub mod plot;
pub mod rng;
pub mod synthjob;
pub mod toyjob;
pub mod train;
pub mod trainjob;

pub use error::{Error, Result};
