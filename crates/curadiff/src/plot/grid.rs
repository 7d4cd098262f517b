//! Image grids: `rows × cols` images in [-1, 1] tiled into one PNG, with a 2-pixel gap.
//!
//! [`sample_grid_png`] is the near-square overview of a sample set (`curadiff sample --plot`):
//! at most [`MAX_GRID_SIDE`]² images, so the PNG stays small however many samples there are.

use std::path::Path;

use super::canvas::Canvas;
use crate::error::{Error, Result};

const GAP: usize = 2;

/// Images per side of the [`sample_grid_png`] overview, at most.
pub const MAX_GRID_SIDE: usize = 16;

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
/// row into a grid `cols` wide and writes it as a PNG; each image is enlarged `scale` times.
pub fn image_grid_png(
    images: &[f32],
    shape: [usize; 3],
    cols: usize,
    scale: usize,
    path: &Path,
) -> Result<()> {
    let [c, h, w] = shape;
    let len = c * h * w;
    if len == 0 || !images.len().is_multiple_of(len) || !(c == 1 || c == 3) || cols == 0 {
        return Err(Error::BadFile {
            path: path.to_path_buf(),
            why: format!(
                "cannot tile {} values as images of shape [{c}, {h}, {w}] (C must be 1 or 3)",
                images.len()
            ),
        });
    }
    let n = images.len() / len;
    let rows = n.div_ceil(cols);
    let s = scale.max(1);
    let (cw, ch) = (w * s + GAP, h * s + GAP);
    let mut canvas = Canvas::new(cols * cw + GAP, rows * ch + GAP, [255, 255, 255]);
    for (i, img) in images.chunks(len).enumerate() {
        let (ox, oy) = (GAP + (i % cols) * cw, GAP + (i / cols) * ch);
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
                canvas.pixels[(oy + y) * canvas.width + ox + x] = rgb;
            }
        }
    }
    canvas.save_png(path)
}

/// Writes the near-square overview of a sample set (`images` as in [`image_grid_png`], one
/// entry of `labels` per image, `None` for unconditional samples): the first
/// [`square_layout`]`(n).0` images (at most 256), stably ordered by class so that each class
/// is one run in reading order (unconditional samples come last), laid out by
/// [`square_layout`]. Samples are conditioned on classes in turn (sample i on class
/// i mod classes), so the first 256 are already balanced across classes: ⌊256/k⌋ or one more
/// per class. Returns `(shown, rows, cols)`.
pub fn sample_grid_png(
    images: &[f32],
    shape: [usize; 3],
    labels: &[Option<usize>],
    scale: usize,
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
    image_grid_png(&picked, shape, cols, scale, path)?;
    Ok((shown, rows, cols))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_pixels_and_rejects_bad_shapes() {
        let dir = std::env::temp_dir().join(format!("curadiff-grid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("g.png");
        // Two 1×2×2 images: black and white, values clipped.
        let imgs = vec![-1.0, -1.0, -1.0, -5.0, 1.0, 1.0, 1.0, 3.0];
        image_grid_png(&imgs, [1, 2, 2], 2, 1, &path).unwrap();
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size()];
        let info = r.next_frame(&mut buf).unwrap();
        // Width: 2 gaps + 2 × (2 + gap) = 10; height 2 + 4 = 6.
        assert_eq!((info.width, info.height), (10, 6));
        let at = |x: usize, y: usize| buf[(y * 10 + x) * 3];
        assert_eq!(at(2, 2), 0); // first image
        assert_eq!(at(6, 3), 255); // second image
        assert_eq!(at(0, 0), 255); // gap
        assert!(image_grid_png(&imgs[..7], [1, 2, 2], 2, 1, &path).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    fn png_size(path: &Path) -> (u32, u32) {
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let info = dec.read_info().unwrap();
        (info.info().width, info.info().height)
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
            let got = sample_grid_png(&images, shape, &labels, 2, &path).unwrap();
            assert_eq!(got, (n.min(256), rows, cols), "n = {n}");
            let want = ((cols * 8 + 2) as u32, (rows * 8 + 2) as u32);
            assert_eq!(png_size(&path), want, "n = {n}");
        }
        // Ordered by class: with 100 samples of 10 classes in turn, row r is class r.
        let labels: Vec<Option<usize>> = (0..100).map(|i| Some(i % 10)).collect();
        let images: Vec<f32> = (0..900).map(|k| (k / 9 % 10) as f32 / 5.0 - 1.0).collect();
        sample_grid_png(&images, shape, &labels, 1, &path).unwrap();
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size()];
        let info = r.next_frame(&mut buf).unwrap();
        let width = info.width as usize;
        for row in 0..10 {
            for col in [0, 9] {
                // Cell (row, col) starts at 2 + 5·index (3 px image + 2 px gap).
                let (x, y) = (2 + 5 * col, 2 + 5 * row);
                let want = ((row as f32 / 5.0 - 1.0 + 1.0) * 127.5).round() as u8;
                assert_eq!(buf[(y * width + x) * 3], want, "row {row} col {col}");
            }
        }
        let e = sample_grid_png(&images[..899], shape, &labels, 1, &path).unwrap_err();
        assert!(e.to_string().contains("100 images"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
