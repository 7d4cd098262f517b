//! Plots written as PNG files.
pub mod canvas;
pub mod grid;
pub mod lines;
pub mod scatter;
