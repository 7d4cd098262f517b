//! Plots written as PNG files.
pub mod canvas;
pub mod lines;
pub mod scatter;
