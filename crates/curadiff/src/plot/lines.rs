//! Line plots with ±std bands, one series per arm: an SVG with axes, ticks and a legend, and
//! a PNG of the same drawing (lines and bands; labels are in the SVG and the report).

use super::canvas::Canvas;
use crate::error::Result;
use std::fmt::Write as _;
use std::path::Path;

/// One series: name and (x, mean, std) points in x order.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64, f64)>,
}

/// Series colours, in order.
pub const COLORS: [[u8; 3]; 8] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
];

struct Frame {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
    w: f64,
    h: f64,
    left: f64,
    top: f64,
}

impl Frame {
    fn px(&self, x: f64, y: f64) -> (f64, f64) {
        let fx = if self.x1 > self.x0 {
            (x - self.x0) / (self.x1 - self.x0)
        } else {
            0.5
        };
        let fy = if self.y1 > self.y0 {
            (y - self.y0) / (self.y1 - self.y0)
        } else {
            0.5
        };
        (self.left + fx * self.w, self.top + (1.0 - fy) * self.h)
    }
}

fn frame(series: &[Series], width: f64, height: f64) -> Frame {
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for s in series {
        for &(x, m, sd) in &s.points {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(m - sd);
            y1 = y1.max(m + sd);
        }
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let pad = 0.05 * (y1 - y0).max(1e-9);
    Frame {
        x0,
        x1,
        y0: y0 - pad,
        y1: y1 + pad,
        w: width - 90.0,
        h: height - 80.0,
        left: 70.0,
        top: 30.0,
    }
}

/// Writes `stem.svg` and `stem.png`.
pub fn line_plot(
    series: &[Series],
    title: &str,
    xlabel: &str,
    ylabel: &str,
    stem: &Path,
) -> Result<()> {
    let (width, height) = (720.0, 440.0);
    let f = frame(series, width, height);
    // SVG.
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="18" text-anchor="middle" font-size="14">{}</text>"#,
        width / 2.0,
        esc(title)
    );
    let _ = writeln!(
        svg,
        r#"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="black"/>"#,
        f.left, f.top, f.w, f.h
    );
    for i in 0..=4 {
        let t = i as f64 / 4.0;
        let xv = f.x0 + t * (f.x1 - f.x0);
        let yv = f.y0 + t * (f.y1 - f.y0);
        let (px, _) = f.px(xv, f.y0);
        let (_, py) = f.px(f.x0, yv);
        let _ = writeln!(
            svg,
            r#"<text x="{px}" y="{}" text-anchor="middle">{}</text>"#,
            f.top + f.h + 16.0,
            fmt_tick(xv)
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            f.left - 6.0,
            py + 4.0,
            fmt_tick(yv)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        f.left + f.w / 2.0,
        height - 14.0,
        esc(xlabel)
    );
    let _ = writeln!(
        svg,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>"#,
        f.top + f.h / 2.0,
        f.top + f.h / 2.0,
        esc(ylabel)
    );
    for (i, s) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let rgb = format!("rgb({},{},{})", c[0], c[1], c[2]);
        let upper: Vec<String> = s
            .points
            .iter()
            .map(|&(x, m, sd)| {
                let (a, b) = f.px(x, m + sd);
                format!("{a:.1},{b:.1}")
            })
            .collect();
        let lower: Vec<String> = s
            .points
            .iter()
            .rev()
            .map(|&(x, m, sd)| {
                let (a, b) = f.px(x, m - sd);
                format!("{a:.1},{b:.1}")
            })
            .collect();
        let _ = writeln!(
            svg,
            r#"<polygon points="{} {}" fill="{rgb}" fill-opacity="0.18" stroke="none"/>"#,
            upper.join(" "),
            lower.join(" ")
        );
        let line: Vec<String> = s
            .points
            .iter()
            .map(|&(x, m, _)| {
                let (a, b) = f.px(x, m);
                format!("{a:.1},{b:.1}")
            })
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{rgb}" stroke-width="2"/>"#,
            line.join(" ")
        );
        let ly = f.top + 14.0 + 16.0 * i as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{rgb}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            f.left + 8.0,
            f.left + 28.0,
            f.left + 34.0,
            ly + 4.0,
            esc(&s.name)
        );
    }
    svg.push_str("</svg>\n");
    crate::fsutil::write_atomic(&stem.with_extension("svg"), svg.as_bytes())?;
    // PNG of the same drawing.
    let mut canvas = Canvas::new(width as usize, height as usize, [255, 255, 255]);
    let (l, t, r, b) = (f.left, f.top, f.left + f.w, f.top + f.h);
    for (a, c) in [
        ((l, t), (r, t)),
        ((r, t), (r, b)),
        ((r, b), (l, b)),
        ((l, b), (l, t)),
    ] {
        canvas.line(a, c, [0, 0, 0], 1.0);
    }
    for (i, s) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        for w in s.points.windows(2) {
            let (xa, ma, sa) = w[0];
            let (xb, mb, sb) = w[1];
            let steps = ((f.px(xb, mb).0 - f.px(xa, ma).0).abs().ceil() as usize).max(1);
            for k in 0..=steps {
                let u = k as f64 / steps as f64;
                let x = xa + u * (xb - xa);
                let (lo, hi) = (
                    ma - sa + u * ((mb - sb) - (ma - sa)),
                    ma + sa + u * ((mb + sb) - (ma + sa)),
                );
                canvas.line(f.px(x, lo), f.px(x, hi), c, 0.15);
            }
            canvas.line(f.px(xa, ma), f.px(xb, mb), c, 1.0);
        }
        for &(x, m, _) in &s.points {
            let (px, py) = f.px(x, m);
            canvas.dot(px, py, 3.0, c, 1.0);
        }
    }
    canvas.save_png(&stem.with_extension("png"))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn fmt_tick(v: f64) -> String {
    if v.abs() >= 1e5 {
        format!("{v:.2e}")
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}
