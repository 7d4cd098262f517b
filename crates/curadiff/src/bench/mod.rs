//! Equal-budget comparisons: a grid of arms × seeds, each trained with weight snapshots at
//! fixed budget points (images trained, seconds), evaluated unguided and autoguided, and
//! summarised as a report (Markdown and self-contained HTML) with plots; the HTML report of
//! a single run; a tuned-autoguidance sweep over post-hoc EMA widths; and the speed
//! benchmarks; and classifier grids (DisCL's curricula).
pub mod annotate_speed;
pub mod classifier_grid;
pub mod doc;
pub mod grid;
pub mod guidance_sweep;
pub mod image_speed;
pub mod prune_speed;
pub mod report;
pub mod report_cells;
pub mod report_html;
pub mod run_report;
pub mod shard;
pub mod speed;
