//! RGB pixel buffers (row-major, 3 bytes a pixel, as plotters' bitmap backend draws them)
//! encoded as 8-bit PNG.

use std::path::Path;

use crate::error::{Error, Result};

/// The PNG bytes of an RGB buffer of `width × height` pixels.
pub fn encode_rgb(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let err = |e: png::EncodingError| Error::Model(format!("cannot encode a PNG: {e}"));
    {
        let mut enc = png::Encoder::new(&mut bytes, width, height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(err)?;
        w.write_image_data(rgb).map_err(err)?;
    }
    Ok(bytes)
}

/// Writes an RGB buffer as a PNG file (atomically).
pub fn save_rgb(rgb: &[u8], width: u32, height: u32, path: &Path) -> Result<()> {
    let bytes = encode_rgb(rgb, width, height).map_err(|e| Error::BadFile {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    crate::fsutil::write_atomic(path, &bytes)
}

/// Decodes an 8-bit RGB or RGBA PNG into `(rgb, width, height)` (alpha dropped).
pub fn decode_rgb(bytes: &[u8]) -> Result<(Vec<u8>, u32, u32)> {
    let err = |e: png::DecodingError| Error::Model(format!("cannot decode a PNG: {e}"));
    let mut dec = png::Decoder::new(std::io::Cursor::new(bytes));
    dec.set_transformations(png::Transformations::EXPAND);
    let mut r = dec.read_info().map_err(err)?;
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).map_err(err)?;
    buf.truncate(info.buffer_size());
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        other => {
            return Err(Error::Model(format!(
                "unsupported PNG colour type {other:?}"
            )))
        }
    };
    let rgb = buf
        .chunks(channels)
        .flat_map(|p| match channels {
            1 | 2 => [p[0], p[0], p[0]],
            _ => [p[0], p[1], p[2]],
        })
        .collect();
    Ok((rgb, info.width, info.height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgb_round_trips_through_png() {
        let rgb: Vec<u8> = (0..2 * 3 * 3).map(|i| (i * 13) as u8).collect();
        let bytes = encode_rgb(&rgb, 3, 2).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert_eq!(decode_rgb(&bytes).unwrap(), (rgb, 3, 2));
        assert!(decode_rgb(b"not a png").is_err());
    }
}
