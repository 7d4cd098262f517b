//! A small RGB raster with alpha-blended points and lines, saved as PNG.

use crate::error::{Error, Result};
use std::path::Path;

/// An RGB image, row-major, origin at the top left.
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<[u8; 3]>,
}

impl Canvas {
    pub fn new(width: usize, height: usize, background: [u8; 3]) -> Self {
        Self {
            width,
            height,
            pixels: vec![background; width * height],
        }
    }

    /// Blends `color` into pixel (x, y) with opacity `alpha` (0..1); out of range is ignored.
    pub fn blend(&mut self, x: i64, y: i64, color: [u8; 3], alpha: f64) {
        if x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 {
            return;
        }
        let p = &mut self.pixels[y as usize * self.width + x as usize];
        for c in 0..3 {
            p[c] = (p[c] as f64 * (1.0 - alpha) + color[c] as f64 * alpha).round() as u8;
        }
    }

    /// A filled disc of radius `r` pixels.
    pub fn dot(&mut self, x: f64, y: f64, r: f64, color: [u8; 3], alpha: f64) {
        let ri = r.ceil() as i64;
        for dy in -ri..=ri {
            for dx in -ri..=ri {
                if ((dx * dx + dy * dy) as f64) <= r * r {
                    self.blend(x.round() as i64 + dx, y.round() as i64 + dy, color, alpha);
                }
            }
        }
    }

    /// A straight line (Bresenham-like sampling).
    pub fn line(&mut self, a: (f64, f64), b: (f64, f64), color: [u8; 3], alpha: f64) {
        let n = ((b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil() as usize).max(1);
        for i in 0..=n {
            let t = i as f64 / n as f64;
            let x = a.0 + t * (b.0 - a.0);
            let y = a.1 + t * (b.1 - a.1);
            self.blend(x.round() as i64, y.round() as i64, color, alpha);
        }
    }

    /// Writes the image as an 8-bit RGB PNG (atomically).
    pub fn save_png(&self, path: &Path) -> Result<()> {
        let mut bytes = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut bytes, self.width as u32, self.height as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let err = |e: png::EncodingError| Error::BadFile {
                path: path.to_path_buf(),
                why: format!("cannot encode PNG: {e}"),
            };
            let mut w = enc.write_header().map_err(err)?;
            let flat: Vec<u8> = self.pixels.iter().flatten().copied().collect();
            w.write_image_data(&flat).map_err(err)?;
        }
        crate::fsutil::write_atomic(path, &bytes)
    }
}
