//! The font of every plot: DejaVu Sans, vendored in `assets/fonts/` with its licence and
//! registered with plotters' `ab_glyph` renderer, so that PNG text looks the same on every
//! machine and no system font is read.

use std::sync::OnceLock;

use crate::error::{Error, Result};

/// The family name plots ask for; it is always the vendored DejaVu Sans.
pub const FAMILY: &str = "sans-serif";

static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Registers the vendored font (once per process); every drawing function calls it first.
pub fn ensure() -> Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font(FAMILY, plotters::style::FontStyle::Normal, DEJAVU_SANS)
            .is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(Error::Model(
            "the vendored font assets/fonts/DejaVuSans.ttf is not a valid TrueType file".into(),
        ))
    }
}

/// A plotters drawing error as a library error naming what was drawn.
pub fn draw_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Model(format!("cannot draw {what}: {e}"))
}
