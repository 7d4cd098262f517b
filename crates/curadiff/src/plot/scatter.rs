//! The toy scatter plot: samples over the ground-truth density (grey), with the log p = −2.12
//! outline contour (the level the classification and mandala scores use), a title and x/y
//! axes in data units.

use std::path::Path;

use plotters::prelude::*;

use super::font::{self, draw_error, FAMILY};
use super::ticks;
use crate::data::toy2d::Mixture;
use crate::error::Result;
use crate::eval::toy::HIT_LOGP;

/// Side of the square plotting area in pixels, and the margins around it.
pub const SIDE: u32 = 720;
const LEFT: u32 = 64;
const TOP: u32 = 40;
const RIGHT: u32 = 24;
const BOTTOM: u32 = 50;
/// Samples drawn, at most.
pub const MAX_POINTS: usize = 20_000;

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

/// The whole picture's size in pixels.
pub fn size() -> (u32, u32) {
    (LEFT + SIDE + RIGHT, TOP + SIDE + BOTTOM)
}

/// Draws `samples` (at most the first [`MAX_POINTS`]) over the density of `mixture` into
/// `path` (PNG), titled `title`.
pub fn scatter_png(
    mixture: &Mixture,
    samples: &[[f64; 2]],
    title: &str,
    path: &Path,
) -> Result<()> {
    let (w, h) = size();
    let rgb = scatter_rgb(mixture, samples, title)?;
    super::png::save_rgb(&rgb, w, h, path)
}

/// The scatter plot as an RGB buffer of [`size`] pixels.
pub fn scatter_rgb(mixture: &Mixture, samples: &[[f64; 2]], title: &str) -> Result<Vec<u8>> {
    font::ensure()?;
    let (w, h) = size();
    let (x0, x1, y0, y1) = bounds(mixture);
    let side = SIDE as usize;
    // Exact log-density at the pixel centres of the plotting area.
    let mut pts = Vec::with_capacity(side * side);
    for py in 0..side {
        for px in 0..side {
            let x = x0 + (px as f64 + 0.5) / side as f64 * (x1 - x0);
            let y = y1 - (py as f64 + 0.5) / side as f64 * (y1 - y0);
            pts.push([x, y]);
        }
    }
    let logp = mixture.logp_batch(&pts, 0.0);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let at = |px: usize, py: usize| ((TOP as usize + py) * w as usize + LEFT as usize + px) * 3;
    // Background: grey level from the density.
    for (i, &lp) in logp.iter().enumerate() {
        let shade = ((lp - HIT_LOGP + 4.0) / 8.0).clamp(0.0, 1.0);
        let g = (255.0 - 70.0 * shade).round() as u8;
        let k = at(i % side, i / side);
        buf[k..k + 3].copy_from_slice(&[g, g, g]);
    }
    let err = |e: DrawingAreaErrorKind<_>| draw_error("a scatter plot", e);
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let (tx0, ty0) = (LEFT as i32, TOP as i32);
        let (tx1, ty1) = (tx0 + SIDE as i32, ty0 + SIDE as i32);
        root.draw(&Text::new(
            title.to_string(),
            (tx0, 10),
            (FAMILY, 18).into_font().color(&BLACK),
        ))
        .map_err(err)?;
        // Samples, translucent.
        let to_px = |x: f64, y: f64| {
            (
                tx0 + ((x - x0) / (x1 - x0) * SIDE as f64).round() as i32,
                ty0 + ((1.0 - (y - y0) / (y1 - y0)) * SIDE as f64).round() as i32,
            )
        };
        let dot = RGBColor(230, 90, 20).mix(0.35).filled();
        for s in samples.iter().take(MAX_POINTS) {
            let (px, py) = to_px(s[0], s[1]);
            if (tx0..tx1).contains(&px) && (ty0..ty1).contains(&py) {
                root.draw(&Circle::new((px, py), 1, dot)).map_err(err)?;
            }
        }
        // Frame and ticks in data units.
        root.draw(&Rectangle::new(
            [(tx0, ty0), (tx1, ty1)],
            BLACK.stroke_width(1),
        ))
        .map_err(err)?;
        let style = (FAMILY, 13).into_font().color(&BLACK);
        for v in ticks::nice_ticks(x0, x1, 6) {
            let (px, _) = to_px(v, y0);
            root.draw(&PathElement::new(vec![(px, ty1), (px, ty1 + 5)], BLACK))
                .map_err(err)?;
            root.draw(&Text::new(
                ticks::fmt_tick(v),
                (px - 10, ty1 + 8),
                style.clone(),
            ))
            .map_err(err)?;
        }
        for v in ticks::nice_ticks(y0, y1, 6) {
            let (_, py) = to_px(x0, v);
            root.draw(&PathElement::new(vec![(tx0 - 5, py), (tx0, py)], BLACK))
                .map_err(err)?;
            root.draw(&Text::new(
                ticks::fmt_tick(v),
                (tx0 - 40, py - 7),
                style.clone(),
            ))
            .map_err(err)?;
        }
        root.draw(&Text::new(
            "x".to_string(),
            (tx0 + SIDE as i32 / 2, ty1 + 28),
            (FAMILY, 15).into_font().color(&BLACK),
        ))
        .map_err(err)?;
        root.draw(&Text::new(
            format!(
                "grey: ground-truth density; line: log p = {HIT_LOGP}; {} samples",
                samples.len().min(MAX_POINTS)
            ),
            (tx0 + SIDE as i32 / 2 + 24, ty1 + 28),
            (FAMILY, 12).into_font().color(&RGBColor(90, 90, 90)),
        ))
        .map_err(err)?;
        root.present().map_err(err)?;
    }
    // Outline: pixels whose right or lower neighbour is on the other side of the contour.
    for py in 0..side - 1 {
        for px in 0..side - 1 {
            let i = py * side + px;
            let inside = logp[i] >= HIT_LOGP;
            if inside != (logp[i + 1] >= HIT_LOGP) || inside != (logp[i + side] >= HIT_LOGP) {
                let k = at(px, py);
                for c in &mut buf[k..k + 3] {
                    *c = (*c as f64 * 0.1 + 20.0 * 0.9).round() as u8;
                }
            }
        }
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::toy2d::Classes;

    #[test]
    fn scatter_has_a_title_ticks_samples_and_the_outline() {
        let m = Mixture::tree(Classes::A);
        let (x0, x1, y0, y1) = bounds(&m);
        let samples: Vec<[f64; 2]> = m.components().iter().map(|c| c.mu).collect();
        let titled = scatter_rgb(&m, &samples, "toy samples").unwrap();
        let blank = scatter_rgb(&m, &samples, "").unwrap();
        let (w, _) = size();
        let px = |b: &[u8], x: u32, y: u32| {
            let i = ((y * w + x) * 3) as usize;
            [b[i], b[i + 1], b[i + 2]]
        };
        // The title band differs only where the title is.
        let title_px = (0..TOP)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .filter(|&(x, y)| px(&titled, x, y) != px(&blank, x, y))
            .count();
        assert!(title_px > 100, "{title_px} title pixels");
        // Tick labels below the frame (dark pixels).
        let tick_px = (TOP + SIDE + 8..TOP + SIDE + 24)
            .flat_map(|y| (LEFT..LEFT + SIDE).map(move |x| (x, y)))
            .filter(|&(x, y)| px(&titled, x, y)[0] < 100)
            .count();
        assert!(tick_px > 50, "{tick_px} tick pixels");
        // A sample at a component mean is orange-tinted; the corner is light grey background.
        let c = samples[0];
        let sx = LEFT + ((c[0] - x0) / (x1 - x0) * SIDE as f64).round() as u32;
        let sy = TOP + ((1.0 - (c[1] - y0) / (y1 - y0)) * SIDE as f64).round() as u32;
        let p = px(&titled, sx, sy);
        assert!(p[0] > p[2] + 20, "sample pixel {p:?}");
        let corner = px(&titled, LEFT + 2, TOP + 2);
        assert!(corner[0] == corner[2] && corner[0] > 180, "{corner:?}");
    }
}
