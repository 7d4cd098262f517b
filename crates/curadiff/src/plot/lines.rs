//! Line plots of mean ± std over seeds, one series per arm, drawn once with plotters into an
//! SVG (text as `<text>`, for reports) and a PNG (text in the vendored font): title, axis
//! labels with units, round ticks, a log-2 x axis where the budgets double, mean lines with
//! points, ± std bands and a legend beside the plot. An arm keeps its colour in every plot
//! ([`Series::color`] indexes [`COLORS`]).

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::font::{self, draw_error, FAMILY};
use super::ticks::{self, Axis};
use crate::error::Result;

/// One series: name, colour index and (x, mean, std) points in x order.
pub struct Series {
    pub name: String,
    /// Index into [`COLORS`] (taken modulo its length): the arm's position in its grid.
    pub color: usize,
    pub points: Vec<(f64, f64, f64)>,
}

/// What a line plot says: its title and axis labels (with units).
pub struct LinePlot<'a> {
    pub title: &'a str,
    pub xlabel: &'a str,
    pub ylabel: &'a str,
}

/// Series colours, in order (matplotlib's tab10).
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

/// Size of every line plot in pixels.
pub const WIDTH: u32 = 820;
pub const HEIGHT: u32 = 460;
/// Width of the legend column at the right.
pub const LEGEND_WIDTH: u32 = 200;
/// Left margin holding the y tick labels and the y axis label, bottom margin holding the x
/// tick labels and the x axis label (plus the outer margin of 10 px).
pub const Y_LABEL_AREA: u32 = 78;
pub const X_LABEL_AREA: u32 = 50;
/// The legend box: its top-left corner in the legend column and the height of one entry.
const LEGEND_TOP: i32 = 44;
const LEGEND_ROW: i32 = 22;

/// The colour of series `i`.
pub fn color(i: usize) -> RGBColor {
    let c = COLORS[i % COLORS.len()];
    RGBColor(c[0], c[1], c[2])
}

/// The legend box `(x0, y0, x1, y1)` in plot pixels for `entries` named series.
pub fn legend_box(entries: usize) -> (i32, i32, i32, i32) {
    let x0 = (WIDTH - LEGEND_WIDTH) as i32 + 6;
    (
        x0,
        LEGEND_TOP,
        WIDTH as i32 - 10,
        LEGEND_TOP + 10 + LEGEND_ROW * entries as i32,
    )
}

/// The plot as SVG text.
pub fn line_svg(series: &[Series], spec: &LinePlot) -> Result<String> {
    font::ensure()?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, series, spec)?;
        root.present().map_err(|e| draw_error("a line plot", e))?;
    }
    Ok(svg)
}

/// The plot as an RGB buffer of `WIDTH × HEIGHT` pixels.
pub fn line_rgb(series: &[Series], spec: &LinePlot) -> Result<Vec<u8>> {
    font::ensure()?;
    let mut buf = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, series, spec)?;
        root.present().map_err(|e| draw_error("a line plot", e))?;
    }
    Ok(buf)
}

/// Writes `stem.svg` and `stem.png`; returns the SVG text (to inline in a report).
pub fn line_plot(series: &[Series], spec: &LinePlot, stem: &Path) -> Result<String> {
    let svg = line_svg(series, spec)?;
    crate::fsutil::write_atomic(&stem.with_extension("svg"), svg.as_bytes())?;
    let rgb = line_rgb(series, spec)?;
    super::png::save_rgb(&rgb, WIDTH, HEIGHT, &stem.with_extension("png"))?;
    Ok(svg)
}

/// The x and y axes of the series: x from the points (log 2 when budgets double), y over
/// mean ± std with 5 % padding.
fn axes(series: &[Series]) -> (Axis, Axis) {
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .filter(|x| x.is_finite())
        .collect();
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().flat_map(|p| [p.1 - p.2, p.1 + p.2]))
        .filter(|y| y.is_finite())
        .collect();
    (ticks::x_axis(&xs), ticks::linear(&ys, 0.05))
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    series: &[Series],
    spec: &LinePlot,
) -> Result<()> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| draw_error("a line plot", e);
    root.fill(&WHITE).map_err(err)?;
    let (chart_area, legend_area) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
    let (xa, ya) = axes(series);
    let mut chart = ChartBuilder::on(&chart_area)
        .caption(spec.title, (FAMILY, 19))
        .margin(10)
        .x_label_area_size(X_LABEL_AREA)
        .y_label_area_size(Y_LABEL_AREA)
        .build_cartesian_2d(Ticked::of(&xa), Ticked::of(&ya))
        .map_err(err)?;
    let xfmt = |v: &f64| xa.label(*v);
    let yfmt = |v: &f64| ya.label(*v);
    chart
        .configure_mesh()
        .x_desc(spec.xlabel)
        .y_desc(spec.ylabel)
        .axis_desc_style((FAMILY, 15))
        .label_style((FAMILY, 13))
        .x_label_formatter(&xfmt)
        .y_label_formatter(&yfmt)
        .bold_line_style(RGBColor(228, 228, 228))
        .light_line_style(TRANSPARENT)
        .draw()
        .map_err(err)?;
    for s in series {
        let c = color(s.color);
        let pts: Vec<(f64, f64, f64)> = s
            .points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite() && (!xa.log2 || p.0 > 0.0))
            .map(|&(x, m, sd)| (xa.pos(x), m, if sd.is_finite() { sd } else { 0.0 }))
            .collect();
        if pts.iter().any(|p| p.2 > 0.0) {
            let band: Vec<(f64, f64)> = pts
                .iter()
                .map(|p| (p.0, p.1 + p.2))
                .chain(pts.iter().rev().map(|p| (p.0, p.1 - p.2)))
                .collect();
            chart
                .draw_series(std::iter::once(Polygon::new(band, c.mix(0.18).filled())))
                .map_err(err)?;
        }
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (p.0, p.1)),
                c.stroke_width(2),
            ))
            .map_err(err)?;
        chart
            .draw_series(pts.iter().map(|p| Circle::new((p.0, p.1), 3, c.filled())))
            .map_err(err)?;
    }
    legend(&legend_area, series).map_err(err)
}

/// A linear f64 coordinate whose tick marks are exactly the axis' ticks.
struct Ticked {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Ticked {
    fn of(a: &Axis) -> Self {
        Self {
            lo: a.lo,
            hi: a.hi,
            ticks: a.ticks.clone(),
        }
    }
}

impl plotters::coord::ranged1d::Ranged for Ticked {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;
    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let f = (v - self.lo) / (self.hi - self.lo);
        limit.0 + (f * (limit.1 - limit.0) as f64).round() as i32
    }
    fn key_points<H: plotters::coord::ranged1d::KeyPointHint>(&self, _hint: H) -> Vec<f64> {
        self.ticks.clone()
    }
    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// The legend column: one line sample and name per named series inside a framed box.
fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[Series],
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let named: Vec<&Series> = series.iter().filter(|s| !s.name.is_empty()).collect();
    if named.is_empty() {
        return Ok(());
    }
    let (x0, y0, x1, y1) = legend_box(named.len());
    let off = (WIDTH - LEGEND_WIDTH) as i32;
    let (x0, x1) = (x0 - off, x1 - off);
    area.draw(&Rectangle::new([(x0, y0), (x1, y1)], WHITE.filled()))?;
    area.draw(&Rectangle::new(
        [(x0, y0), (x1, y1)],
        RGBColor(160, 160, 160).stroke_width(1),
    ))?;
    for (i, s) in named.iter().enumerate() {
        let y = y0 + 5 + LEGEND_ROW * i as i32 + LEGEND_ROW / 2;
        let c = color(s.color);
        area.draw(&PathElement::new(
            vec![(x0 + 8, y), (x0 + 32, y)],
            c.stroke_width(3),
        ))?;
        area.draw(&Circle::new((x0 + 20, y), 3, c.filled()))?;
        let name: String = if s.name.chars().count() > 20 {
            s.name.chars().take(19).chain(['…']).collect()
        } else {
            s.name.clone()
        };
        area.draw(&Text::new(
            name,
            (x0 + 40, y - 8),
            (FAMILY, 14).into_font().color(&BLACK),
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo(names: bool) -> Vec<Series> {
        (0..3)
            .map(|i| Series {
                name: if names {
                    format!("arm-{i}")
                } else {
                    String::new()
                },
                color: i,
                points: [5.0, 10.0, 20.0, 40.0]
                    .iter()
                    .map(|&x| (x, 0.3 + 0.1 * i as f64 + 0.01 * x, 0.02))
                    .collect(),
            })
            .collect()
    }

    /// Pixels of `a` and `b` that differ inside the box `(x0, y0, x1, y1)` (exclusive end).
    fn differing(a: &[u8], b: &[u8], (x0, y0, x1, y1): (u32, u32, u32, u32)) -> usize {
        let mut n = 0;
        for y in y0..y1 {
            for x in x0..x1 {
                let i = ((y * WIDTH + x) * 3) as usize;
                if a[i..i + 3] != b[i..i + 3] {
                    n += 1;
                }
            }
        }
        n
    }

    /// Dark (text-like) pixels inside the box.
    fn dark(a: &[u8], (x0, y0, x1, y1): (u32, u32, u32, u32)) -> usize {
        let mut n = 0;
        for y in y0..y1 {
            for x in x0..x1 {
                let i = ((y * WIDTH + x) * 3) as usize;
                if a[i] < 110 && a[i + 1] < 110 && a[i + 2] < 110 {
                    n += 1;
                }
            }
        }
        n
    }

    #[test]
    fn png_has_text_in_the_label_margins_and_the_legend() {
        let spec = LinePlot {
            title: "mandala vs images trained",
            xlabel: "images trained",
            ylabel: "mandala (fraction of cells)",
        };
        let empty = LinePlot {
            title: "",
            xlabel: "",
            ylabel: "",
        };
        let with = line_rgb(&demo(true), &spec).unwrap();
        let without = line_rgb(&demo(false), &empty).unwrap();
        // The PNG round trip keeps the pixels.
        let png = super::super::png::encode_rgb(&with, WIDTH, HEIGHT).unwrap();
        let (decoded, w, h) = super::super::png::decode_rgb(&png).unwrap();
        assert_eq!((w, h), (WIDTH, HEIGHT));
        assert_eq!(decoded, with);
        // The y label sits in the leftmost 30 px of the y label area, the x label in the
        // lowest 25 px of the x label area, the title in the top 30 px.
        let y_label = (10, 40, 40, HEIGHT - X_LABEL_AREA - 10);
        let x_label = (10 + Y_LABEL_AREA, HEIGHT - 35, WIDTH - LEGEND_WIDTH, HEIGHT);
        let title = (10, 0, WIDTH - LEGEND_WIDTH, 32);
        let (lx0, ly0, lx1, ly1) = legend_box(3);
        let legend = (lx0 as u32, ly0 as u32, lx1 as u32, ly1 as u32);
        for (name, region, min) in [
            ("y label", y_label, 150),
            ("x label", x_label, 150),
            ("title", title, 300),
            ("legend", legend, 200),
        ] {
            let d = dark(&decoded, region);
            let changed = differing(&decoded, &without, region);
            assert!(
                d >= min && changed >= min,
                "{name}: {d} dark, {changed} changed pixels"
            );
            assert!(dark(&without, region) < d / 4, "{name} without labels");
        }
        // Each arm's colour is drawn.
        for (i, c) in COLORS.iter().take(3).enumerate() {
            assert!(
                decoded.chunks(3).any(|p| p == c),
                "colour of series {i} missing"
            );
        }
    }

    #[test]
    fn svg_carries_the_text_and_a_log2_axis() {
        let spec = LinePlot {
            title: "FD vs seconds",
            xlabel: "training time (s)",
            ylabel: "FD",
        };
        let svg = line_svg(&demo(true), &spec).unwrap();
        // The content of every <text> element (plotters puts it on its own line).
        let texts: Vec<&str> = svg
            .split("<text")
            .skip(1)
            .filter_map(|t| {
                let start = t.find('>')? + 1;
                let end = t.find("</text>")?;
                Some(t[start..end].trim())
            })
            .collect();
        for want in [
            "FD vs seconds",
            "training time (s)",
            "FD",
            "arm-0",
            "arm-2",
            "5",
            "10",
            "20",
            "40",
        ] {
            assert!(
                texts.contains(&want),
                "{want} missing from the SVG texts {texts:?}"
            );
        }
        // No linear mid-range ticks like 13.75.
        assert!(!svg.contains("13.75"));
    }
}
