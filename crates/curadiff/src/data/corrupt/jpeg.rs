//! JPEG at quality q (1..=100): a real encode and decode with the `image` crate's baseline
//! encoder (4:2:0 chroma for RGB, the libjpeg quality scaling of the standard tables) and the
//! zune-jpeg decoder. The image is quantised to bytes first (x ↦ round((x + 1)·127.5)), as a
//! saved photo would be; the decoded bytes come back as b/127.5 − 1.

use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, ImageEncoder, ImageFormat};

use crate::data::images::u8_to_unit;
use crate::error::{Error, Result};

/// A value in [-1, 1] as a byte.
fn to_u8(v: f32) -> u8 {
    ((v as f64 + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8
}

/// Encodes `image` (`[channels, h, w]`, channels 1 or 3) as JPEG at `quality` and decodes it
/// back in place.
pub fn jpeg(image: &mut [f32], channels: usize, h: usize, w: usize, quality: u8) -> Result<()> {
    let failed = |what: &str, e: image::ImageError| {
        Error::Model(format!(
            "JPEG {what} of a {channels}×{h}×{w} image at quality {quality} failed: {e}"
        ))
    };
    let plane = h * w;
    // CHW → HWC bytes.
    let bytes: Vec<u8> = (0..plane * channels)
        .map(|k| to_u8(image[(k % channels) * plane + k / channels]))
        .collect();
    let color = match channels {
        1 => ExtendedColorType::L8,
        3 => ExtendedColorType::Rgb8,
        c => {
            return Err(Error::Model(format!(
                "JPEG takes grayscale or RGB images; this one has {c} channels"
            )))
        }
    };
    let mut buf = Vec::new();
    JpegEncoder::new_with_quality(&mut buf, quality)
        .write_image(&bytes, w as u32, h as u32, color)
        .map_err(|e| failed("encoding", e))?;
    let decoded = image::load_from_memory_with_format(&buf, ImageFormat::Jpeg)
        .map_err(|e| failed("decoding", e))?;
    let back: Vec<u8> = if channels == 1 {
        decoded.into_luma8().into_raw()
    } else {
        decoded.into_rgb8().into_raw()
    };
    if back.len() != bytes.len() {
        return Err(Error::Model(format!(
            "JPEG decoding of a {channels}×{h}×{w} image gave {} values",
            back.len()
        )));
    }
    for (k, &b) in back.iter().enumerate() {
        image[(k % channels) * plane + k / channels] = u8_to_unit(b);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Rng, Stream};

    /// A 32×32 test picture: a smooth gradient, a bright disc and mild pixel noise.
    fn picture(channels: usize) -> Vec<f32> {
        let mut rng = Rng::new(1, Stream::Eval, 0);
        let mut v = Vec::new();
        for c in 0..channels {
            for y in 0..32 {
                for x in 0..32 {
                    let (fx, fy) = (x as f64 / 31.0, y as f64 / 31.0);
                    let disc = ((fx - 0.5).powi(2) + (fy - 0.4).powi(2) < 0.06) as i32 as f64;
                    let base = -0.8 + 0.9 * fx + 0.3 * fy * c as f64 + 0.6 * disc;
                    v.push((base + 0.05 * rng.normal()).clamp(-1.0, 1.0) as f32);
                }
            }
        }
        v
    }

    fn mean_abs(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() as f64)
            .sum::<f64>()
            / a.len() as f64
    }

    /// Mean |difference| of horizontally adjacent pixels across the 8×8 block edges (x = 7|8,
    /// 15|16, …) over that within blocks: above 1 for blocky images.
    fn blockiness(img: &[f32], w: usize) -> f64 {
        let (mut edge, mut inner, mut ne, mut ni) = (0.0, 0.0, 0, 0);
        for y in 0..img.len() / w {
            for x in 0..w - 1 {
                let d = (img[y * w + x + 1] - img[y * w + x]).abs() as f64;
                if x % 8 == 7 {
                    edge += d;
                    ne += 1;
                } else {
                    inner += d;
                    ni += 1;
                }
            }
        }
        (edge / ne as f64) / (inner / ni as f64)
    }

    #[test]
    fn quality_100_is_near_identity_and_low_quality_is_blocky() {
        for channels in [1, 3] {
            let clean = picture(channels);
            let quantised: Vec<f32> = clean.iter().map(|&v| u8_to_unit(to_u8(v))).collect();
            let at = |q| {
                let mut img = clean.clone();
                jpeg(&mut img, channels, 32, 32, q).unwrap();
                img
            };
            let (q100, q50, q5) = (at(100), at(50), at(5));
            let (e100, e50, e5) = (
                mean_abs(&q100, &quantised),
                mean_abs(&q50, &quantised),
                mean_abs(&q5, &quantised),
            );
            // q = 100 is within ~2 grey levels on average (1/127.5 per level) …
            assert!(e100 < 2.0 / 127.5, "{channels} ch: q100 error {e100}");
            // … but a real codec ran: the bytes differ from the input.
            assert_ne!(q100, quantised, "{channels} ch: q100 is the identity");
            // Lower quality is measurably worse, and q = 5 shows the 8×8 block grid.
            assert!(e50 > 5.0 * e100 && e5 > 1.5 * e50, "{e100} {e50} {e5}");
            let (b_clean, b5) = (blockiness(&quantised, 32), blockiness(&q5, 32));
            assert!(
                b5 > 1.5 && b5 > 1.4 * b_clean,
                "blockiness {b_clean} → {b5}"
            );
            // Deterministic.
            assert_eq!(at(5), q5);
        }
    }
}
