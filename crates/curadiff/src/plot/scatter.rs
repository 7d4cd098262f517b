//! The toy scatter plot: samples over the ground-truth density, with the log p = −2.12
//! outline contour (the level the classification and mandala scores use).

use super::canvas::Canvas;
use crate::data::toy2d::Mixture;
use crate::error::Result;
use crate::eval::toy::HIT_LOGP;
use std::path::Path;

/// Plot bounds (x0, x1, y0, y1) around the mixture's components with a margin.
fn bounds(m: &Mixture) -> (f64, f64, f64, f64) {
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for c in m.components() {
        x0 = x0.min(c.mu[0]);
        x1 = x1.max(c.mu[0]);
        y0 = y0.min(c.mu[1]);
        y1 = y1.max(c.mu[1]);
    }
    let pad = 0.12 * (x1 - x0).max(y1 - y0);
    let (cx, cy) = (0.5 * (x0 + x1), 0.5 * (y0 + y1));
    let half = 0.5 * (x1 - x0).max(y1 - y0) + pad;
    (cx - half, cx + half, cy - half, cy + half)
}

/// Draws `samples` (at most the first 20,000) over the density of `mixture` into `path`.
pub fn scatter_png(mixture: &Mixture, samples: &[[f64; 2]], path: &Path) -> Result<()> {
    let size = 720;
    let (x0, x1, y0, y1) = bounds(mixture);
    let to_px = |x: f64, y: f64| {
        (
            (x - x0) / (x1 - x0) * size as f64,
            (1.0 - (y - y0) / (y1 - y0)) * size as f64,
        )
    };
    // Background: grey level from the exact log-density at pixel centres.
    let mut pts = Vec::with_capacity(size * size);
    for py in 0..size {
        for px in 0..size {
            let x = x0 + (px as f64 + 0.5) / size as f64 * (x1 - x0);
            let y = y1 - (py as f64 + 0.5) / size as f64 * (y1 - y0);
            pts.push([x, y]);
        }
    }
    let logp = mixture.logp_batch(&pts, 0.0);
    let mut canvas = Canvas::new(size, size, [255, 255, 255]);
    for (i, &lp) in logp.iter().enumerate() {
        let shade = ((lp - HIT_LOGP + 4.0) / 8.0).clamp(0.0, 1.0);
        let g = (255.0 - 70.0 * shade).round() as u8;
        canvas.pixels[i] = [g, g, g];
    }
    // Samples.
    for s in samples.iter().take(20_000) {
        let (px, py) = to_px(s[0], s[1]);
        canvas.dot(px, py, 1.2, [230, 90, 20], 0.35);
    }
    // Outline: pixels whose right or lower neighbour is on the other side of the contour.
    for py in 0..size - 1 {
        for px in 0..size - 1 {
            let i = py * size + px;
            let inside = logp[i] >= HIT_LOGP;
            if inside != (logp[i + 1] >= HIT_LOGP) || inside != (logp[i + size] >= HIT_LOGP) {
                canvas.blend(px as i64, py as i64, [20, 20, 20], 0.9);
            }
        }
    }
    canvas.save_png(path)
}
