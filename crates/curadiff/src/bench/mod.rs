//! Equal-budget comparisons: a grid of arms × seeds, each trained with weight snapshots at
//! fixed budget points (images trained, seconds), evaluated unguided and autoguided, and
//! summarised as a report with plots; and the speed benchmarks.
pub mod grid;
pub mod image_speed;
pub mod report;
pub mod shard;
pub mod speed;
