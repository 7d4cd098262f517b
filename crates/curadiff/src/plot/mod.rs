//! Plots drawn with `plotters` (one drawing code for the SVG and bitmap backends), text in the
//! vendored DejaVu Sans: line plots with ± std bands, the toy scatter plot, image grids.
pub mod font;
pub mod grid;
pub mod lines;
pub mod png;
pub mod scatter;
pub mod ticks;
