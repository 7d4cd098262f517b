//! Post-hoc EMA (Karras et al. 2024, EDM2, Sec. 3.2 and Appendix C.2): training keeps a few
//! power-function EMA profiles (`train.phema_sigma_rels`) and writes them to `RUN/phema` at
//! intervals (`train.phema_every_nimg`); afterwards the EMA at any σ_rel the snapshots span is
//! a least-squares combination of the stored ones.
pub mod profile;
pub mod reconstruct;
pub mod snapshot;

pub use reconstruct::{reconstruct, Reconstruction};
