//! Image grids: `rows × cols` images in [-1, 1] tiled into one PNG with a 2-pixel gap, under
//! a title and above a grey scale bar (pixel value −1 … +1), both in the vendored font.
//!
//! [`sample_grid_png`] is the near-square overview of a sample set (`curadiff sample --plot`):
//! at most [`MAX_GRID_SIDE`]² images, so the PNG stays small however many samples there are.

use std::path::Path;

use plotters::prelude::*;

use super::font::{self, draw_error, FAMILY};
use crate::error::{Error, Result};

const GAP: usize = 2;
/// Height of the title band above the tiles and of the scale band below them, in pixels.
pub const TITLE_HEIGHT: usize = 28;
pub const SCALE_HEIGHT: usize = 30;
/// The picture is at least this wide, so that the title and the scale fit; narrower tile
/// blocks are centred.
pub const MIN_WIDTH: usize = 260;

/// Images per side of the [`sample_grid_png`] overview, at most.
pub const MAX_GRID_SIDE: usize = 16;

/// Where the tiles sit: picture size and the top-left corner of the tile block (its first
/// gap included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GridLayout {
    pub width: usize,
    pub height: usize,
    pub left: usize,
    pub top: usize,
}

/// The near-square layout of `n` images in at most `MAX_GRID_SIDE × MAX_GRID_SIDE` cells:
/// `(shown, rows, cols)` with `shown = min(n, MAX_GRID_SIDE²)`, `cols = ⌈√shown⌉` and
/// `rows = ⌈shown / cols⌉`, so rows ≤ cols ≤ rows + 1 (the last row may be short).
pub fn square_layout(n: usize) -> (usize, usize, usize) {
    let shown = n.min(MAX_GRID_SIDE * MAX_GRID_SIDE);
    let mut cols = shown.isqrt();
    if cols * cols < shown {
        cols += 1;
    }
    (shown, shown.div_ceil(cols.max(1)), cols)
}

/// Tiles `images` (`[n, C, H, W]` flattened, C = 1 or 3, values in [-1, 1], clipped) row by
/// row into a grid `cols` wide, each image enlarged `scale` times, titled `title`, and
/// writes it as a PNG. Returns where the tiles are.
pub fn image_grid_png(
    images: &[f32],
    shape: [usize; 3],
    cols: usize,
    scale: usize,
    title: &str,
    path: &Path,
) -> Result<GridLayout> {
    let bad = |why: String| Error::BadFile {
        path: path.to_path_buf(),
        why,
    };
    let (rgb, layout) =
        image_grid_rgb(images, shape, cols, scale, title).map_err(|e| bad(e.to_string()))?;
    super::png::save_rgb(&rgb, layout.width as u32, layout.height as u32, path)?;
    Ok(layout)
}

/// The image grid of [`image_grid_png`] as an RGB buffer and its layout.
pub fn image_grid_rgb(
    images: &[f32],
    shape: [usize; 3],
    cols: usize,
    scale: usize,
    title: &str,
) -> Result<(Vec<u8>, GridLayout)> {
    let [c, h, w] = shape;
    let len = c * h * w;
    if len == 0 || !images.len().is_multiple_of(len) || !(c == 1 || c == 3) || cols == 0 {
        return Err(Error::Config(format!(
            "cannot tile {} values as images of shape [{c}, {h}, {w}] (C must be 1 or 3)",
            images.len()
        )));
    }
    font::ensure()?;
    let n = images.len() / len;
    let rows = n.div_ceil(cols);
    let s = scale.max(1);
    let (cw, ch) = (w * s + GAP, h * s + GAP);
    let (block_w, block_h) = (cols * cw + GAP, rows * ch + GAP);
    let width = block_w.max(MIN_WIDTH);
    let layout = GridLayout {
        width,
        height: TITLE_HEIGHT + block_h + SCALE_HEIGHT,
        left: (width - block_w) / 2,
        top: TITLE_HEIGHT,
    };
    let mut buf = vec![255u8; layout.width * layout.height * 3];
    let put = |buf: &mut [u8], x: usize, y: usize, rgb: [u8; 3]| {
        let k = (y * layout.width + x) * 3;
        buf[k..k + 3].copy_from_slice(&rgb);
    };
    for (i, img) in images.chunks(len).enumerate() {
        let (ox, oy) = (
            layout.left + GAP + (i % cols) * cw,
            layout.top + GAP + (i / cols) * ch,
        );
        for y in 0..h * s {
            for x in 0..w * s {
                let px = |k: usize| {
                    let v = img[k * h * w + (y / s) * w + x / s];
                    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
                };
                let rgb = if c == 1 {
                    [px(0); 3]
                } else {
                    [px(0), px(1), px(2)]
                };
                put(&mut buf, ox + x, oy + y, rgb);
            }
        }
    }
    // The scale: a 128-px ramp from −1 (black) to +1 (white), framed.
    let (rx, ry) = (layout.left + GAP + 28, layout.top + block_h + 8);
    for x in 0..128 {
        let g = (x as f64 / 127.0 * 255.0).round() as u8;
        for y in 0..10 {
            put(&mut buf, rx + x, ry + y, [g, g, g]);
        }
    }
    let err = |e: DrawingAreaErrorKind<_>| draw_error("an image grid", e);
    {
        let root =
            BitMapBackend::with_buffer(&mut buf, (layout.width as u32, layout.height as u32))
                .into_drawing_area();
        let (rx, ry) = (rx as i32, ry as i32);
        root.draw(&Rectangle::new(
            [(rx - 1, ry - 1), (rx + 128, ry + 10)],
            RGBColor(120, 120, 120).stroke_width(1),
        ))
        .map_err(err)?;
        let small = (FAMILY, 12).into_font().color(&BLACK);
        root.draw(&Text::new("−1", (rx - 24, ry - 2), small.clone()))
            .map_err(err)?;
        root.draw(&Text::new("+1", (rx + 134, ry - 2), small.clone()))
            .map_err(err)?;
        root.draw(&Text::new(
            format!("{w}×{h} px ×{s}"),
            (rx + 160, ry - 2),
            small,
        ))
        .map_err(err)?;
        root.draw(&Text::new(
            title.to_string(),
            ((layout.left + GAP) as i32, 6),
            (FAMILY, 15).into_font().color(&BLACK),
        ))
        .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok((buf, layout))
}

/// Writes the near-square overview of a sample set (`images` as in [`image_grid_png`], one
/// entry of `labels` per image, `None` for unconditional samples): the first
/// [`square_layout`]`(n).0` images (at most 256), stably ordered by class so that each class
/// is one run in reading order (unconditional samples come last), laid out by
/// [`square_layout`]. Samples are conditioned on classes in turn (sample i on class
/// i mod classes), so the first 256 are already balanced across classes: ⌊256/k⌋ or one more
/// per class. Titled `title`. Returns `(shown, rows, cols)`.
pub fn sample_grid_png(
    images: &[f32],
    shape: [usize; 3],
    labels: &[Option<usize>],
    scale: usize,
    title: &str,
    path: &Path,
) -> Result<(usize, usize, usize)> {
    let len = shape.iter().product::<usize>();
    if len == 0 || labels.len().checked_mul(len) != Some(images.len()) {
        return Err(Error::BadFile {
            path: path.to_path_buf(),
            why: format!(
                "cannot tile {} values as {} images of shape {shape:?}",
                images.len(),
                labels.len()
            ),
        });
    }
    let (shown, rows, cols) = square_layout(labels.len());
    let mut order: Vec<usize> = (0..shown).collect();
    order.sort_by_key(|&i| labels[i].unwrap_or(usize::MAX));
    let picked: Vec<f32> = order
        .iter()
        .flat_map(|&i| &images[i * len..(i + 1) * len])
        .copied()
        .collect();
    image_grid_png(&picked, shape, cols, scale, title, path)?;
    Ok((shown, rows, cols))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(path: &Path) -> (Vec<u8>, usize, usize) {
        let bytes = std::fs::read(path).unwrap();
        let (rgb, w, h) = super::super::png::decode_rgb(&bytes).unwrap();
        (rgb, w as usize, h as usize)
    }

    #[test]
    fn grid_places_pixels_and_rejects_bad_shapes() {
        let dir = std::env::temp_dir().join(format!("curadiff-grid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("g.png");
        // Two 1×2×2 images: black and white, values clipped.
        let imgs = vec![-1.0, -1.0, -1.0, -5.0, 1.0, 1.0, 1.0, 3.0];
        let l = image_grid_png(&imgs, [1, 2, 2], 2, 1, "two", &path).unwrap();
        let (buf, width, height) = decode(&path);
        // Tile block: 2 gaps + 2 × (2 + gap) = 10 wide, 6 high, centred in MIN_WIDTH.
        assert_eq!(
            (width, height),
            (MIN_WIDTH, TITLE_HEIGHT + 6 + SCALE_HEIGHT)
        );
        assert_eq!((l.left, l.top), ((MIN_WIDTH - 10) / 2, TITLE_HEIGHT));
        let at = |x: usize, y: usize| buf[((l.top + y) * width + l.left + x) * 3];
        assert_eq!(at(2, 2), 0); // first image
        assert_eq!(at(6, 3), 255); // second image
        assert_eq!(at(0, 0), 255); // gap
        assert!(image_grid_png(&imgs[..7], [1, 2, 2], 2, 1, "", &path).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn grid_has_a_title_and_a_scale() {
        let imgs: Vec<f32> = (0..16 * 64).map(|k| (k % 64) as f32 / 32.0 - 1.0).collect();
        let (a, l) = image_grid_rgb(&imgs, [1, 8, 8], 4, 2, "samples after 2048 images").unwrap();
        let (b, _) = image_grid_rgb(&imgs, [1, 8, 8], 4, 2, "").unwrap();
        let title_changed = (0..TITLE_HEIGHT * l.width)
            .filter(|&p| a[p * 3..p * 3 + 3] != b[p * 3..p * 3 + 3])
            .count();
        assert!(title_changed > 100, "{title_changed} title pixels");
        // The scale band holds the ramp (black to white) and dark label pixels.
        let band = &a[(l.height - SCALE_HEIGHT) * l.width * 3..];
        assert!(band.chunks(3).any(|p| p == [0, 0, 0]));
        let dark = band.chunks(3).filter(|p| p[0] < 90).count();
        assert!(dark > 200, "{dark} dark pixels in the scale band");
    }

    #[test]
    fn sample_grid_is_near_square_and_at_most_16_by_16() {
        assert_eq!(square_layout(0), (0, 0, 0));
        assert_eq!(square_layout(1), (1, 1, 1));
        assert_eq!(square_layout(10), (10, 3, 4));
        assert_eq!(square_layout(12), (12, 3, 4));
        assert_eq!(square_layout(100), (100, 10, 10));
        assert_eq!(square_layout(255), (255, 16, 16));
        assert_eq!(square_layout(1000), (256, 16, 16));
        let dir = std::env::temp_dir().join(format!("curadiff-sgrid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.png");
        // 1×3×3 images (scale 2: 6×6 cells, 8 px with the gap, plus one 2 px border).
        let shape = [1, 3, 3];
        for (n, (rows, cols)) in [(10, (3, 4)), (100, (10, 10)), (1000, (16, 16))] {
            let labels: Vec<Option<usize>> = (0..n).map(|i| Some(i % 10)).collect();
            let images: Vec<f32> = (0..n * 9)
                .map(|k| (k / 9 % 10) as f32 / 5.0 - 1.0)
                .collect();
            let got = sample_grid_png(&images, shape, &labels, 2, "s", &path).unwrap();
            assert_eq!(got, (n.min(256), rows, cols), "n = {n}");
            let (_, w, h) = decode(&path);
            let want = (
                (cols * 8 + 2).max(MIN_WIDTH),
                rows * 8 + 2 + TITLE_HEIGHT + SCALE_HEIGHT,
            );
            assert_eq!((w, h), want, "n = {n}");
        }
        // Ordered by class: with 100 samples of 10 classes in turn, row r is class r.
        let labels: Vec<Option<usize>> = (0..100).map(|i| Some(i % 10)).collect();
        let images: Vec<f32> = (0..900).map(|k| (k / 9 % 10) as f32 / 5.0 - 1.0).collect();
        sample_grid_png(&images, shape, &labels, 1, "s", &path).unwrap();
        let (buf, width, _) = decode(&path);
        let left = (width - (10 * 5 + 2)) / 2;
        for row in 0..10 {
            for col in [0, 9] {
                // Cell (row, col) starts at 2 + 5·index (3 px image + 2 px gap).
                let (x, y) = (left + 2 + 5 * col, TITLE_HEIGHT + 2 + 5 * row);
                let want = ((row as f32 / 5.0 - 1.0 + 1.0) * 127.5).round() as u8;
                assert_eq!(buf[(y * width + x) * 3], want, "row {row} col {col}");
            }
        }
        let e = sample_grid_png(&images[..899], shape, &labels, 1, "s", &path).unwrap_err();
        assert!(e.to_string().contains("100 images"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
