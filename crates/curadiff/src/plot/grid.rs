//! Image grids: `rows × cols` images in [-1, 1] tiled into one PNG, with a 2-pixel gap.

use std::path::Path;

use super::canvas::Canvas;
use crate::error::{Error, Result};

const GAP: usize = 2;

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
}
