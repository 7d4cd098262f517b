//! Reading and writing IDX files, the format of the original MNIST and Fashion-MNIST files.
//!
//! An IDX file is a 4-byte magic `00 00 <type> <rank>`, then `rank` big-endian u32 dimensions,
//! then the raw data in C order. Only unsigned bytes (type 0x08) are used by these datasets:
//! images are `0x00000803` (`[n, rows, cols]`) and labels `0x00000801` (`[n]`). Files may be
//! gzip-compressed; that is detected from the content (the `1f 8b` magic), not the name, so a
//! renamed or already-unpacked file still reads. Every size is checked against the header, so a
//! truncated download or a wrong file is an error naming the file rather than garbage data.

use crate::error::{Error, Result};
use std::io::{Read, Write};
use std::path::Path;

/// The IDX type code of unsigned bytes.
const TYPE_U8: u8 = 0x08;
/// Magic of a u8 image file, `[n, rows, cols]`.
pub const MAGIC_IMAGES: u32 = 0x0000_0803;
/// Magic of a u8 label file, `[n]`.
pub const MAGIC_LABELS: u32 = 0x0000_0801;

/// A stack of 8-bit grayscale images as stored in an IDX file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub n: usize,
    /// Height in pixels.
    pub rows: usize,
    /// Width in pixels.
    pub cols: usize,
    /// `n · rows · cols` bytes, image after image, each row-major (0 = black, 255 = white).
    pub pixels: Vec<u8>,
}

impl IdxImages {
    /// The pixels of image `i` (`rows · cols` bytes, row-major).
    pub fn image(&self, i: usize) -> &[u8] {
        let len = self.rows * self.cols;
        &self.pixels[i * len..(i + 1) * len]
    }
}

fn bad(path: &Path, why: impl Into<String>) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

/// Reads a whole file, gunzipping it when it starts with the gzip magic.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        // Multi-member aware: `gzip -c a b > c` style files are valid gzip too.
        let mut out = Vec::with_capacity(raw.len() * 2);
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| {
                bad(
                    path,
                    format!(
                        "is not a valid gzip stream ({e}); the download is probably truncated \
                         or corrupt: fetch the file again"
                    ),
                )
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Human-readable name of an IDX type code, for error messages.
fn type_name(code: u8) -> &'static str {
    match code {
        0x08 => "u8",
        0x09 => "i8",
        0x0B => "i16",
        0x0C => "i32",
        0x0D => "f32",
        0x0E => "f64",
        _ => "unknown",
    }
}

/// Checks the header of decompressed IDX `bytes` for a u8 array of the given rank and returns
/// its dimensions and data. `what` names the expected content for error messages.
fn parse<'a>(path: &Path, bytes: &'a [u8], rank: u8, what: &str) -> Result<(Vec<usize>, &'a [u8])> {
    let expected = format!(
        "expected an IDX {what} file (magic 0x{:08X}: u8, {rank}-D)",
        0x0800 | rank as u32
    );
    if bytes.len() < 4 {
        return Err(bad(
            path,
            format!(
                "is {} bytes long, too short for an IDX header; {expected}",
                bytes.len()
            ),
        ));
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(
            path,
            format!("magic 0x{magic:08X} is not an IDX magic; {expected}"),
        ));
    }
    if bytes[2] != TYPE_U8 {
        return Err(bad(
            path,
            format!(
                "magic 0x{magic:08X} declares {} data (type 0x{:02X}); {expected}",
                type_name(bytes[2]),
                bytes[2]
            ),
        ));
    }
    if bytes[3] != rank {
        let hint = match bytes[3] {
            1 => " (this looks like a label file)",
            3 => " (this looks like an image file)",
            _ => "",
        };
        return Err(bad(
            path,
            format!(
                "magic 0x{magic:08X} declares a {}-D array{hint}; {expected}",
                bytes[3]
            ),
        ));
    }
    let head = 4 + 4 * rank as usize;
    if bytes.len() < head {
        return Err(bad(
            path,
            format!(
                "is {} bytes long, too short for a {rank}-D IDX header ({head} bytes); \
                 the file is truncated",
                bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> = bytes[4..head]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    if dims.contains(&0) {
        return Err(bad(
            path,
            format!("header declares dimensions {dims:?}; every dimension must be positive"),
        ));
    }
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(path, format!("header dimensions {dims:?} overflow")))?;
    let body = &bytes[head..];
    if body.len() < count {
        return Err(bad(
            path,
            format!(
                "holds {} data bytes but its header {dims:?} needs {count}; the file is \
                 truncated: fetch it again",
                body.len()
            ),
        ));
    }
    if body.len() > count {
        return Err(bad(
            path,
            format!(
                "holds {} data bytes but its header {dims:?} needs only {count} ({} extra); \
                 the file is corrupt or not an IDX {what} file",
                body.len(),
                body.len() - count
            ),
        ));
    }
    Ok((dims, body))
}

/// Parses decompressed IDX image bytes; `path` only names the source in errors.
pub fn parse_idx_images(path: &Path, bytes: &[u8]) -> Result<IdxImages> {
    let (dims, body) = parse(path, bytes, 3, "image")?;
    Ok(IdxImages {
        n: dims[0],
        rows: dims[1],
        cols: dims[2],
        pixels: body.to_vec(),
    })
}

/// Parses decompressed IDX label bytes; `path` only names the source in errors.
pub fn parse_idx_labels(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    let (_, body) = parse(path, bytes, 1, "label")?;
    Ok(body.to_vec())
}

/// Reads an IDX image file (`0x00000803`, gzip or plain).
pub fn read_idx_images(path: &Path) -> Result<IdxImages> {
    parse_idx_images(path, &read_maybe_gz(path)?)
}

/// Reads an IDX label file (`0x00000801`, gzip or plain).
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    parse_idx_labels(path, &read_maybe_gz(path)?)
}

/// Reads an image file and its label file and checks that they hold the same number of
/// examples.
pub fn read_idx_pair(images: &Path, labels: &Path) -> Result<(IdxImages, Vec<u8>)> {
    let imgs = read_idx_images(images)?;
    let labs = read_idx_labels(labels)?;
    if imgs.n != labs.len() {
        return Err(bad(
            labels,
            format!(
                "holds {} labels but {} holds {} images; the two files must come from the \
                 same split",
                labs.len(),
                images.display(),
                imgs.n
            ),
        ));
    }
    Ok((imgs, labs))
}

/// Gzips `header ‖ data` and writes it atomically.
fn write_gz(path: &Path, magic: u32, dims: &[usize], data: &[u8]) -> Result<()> {
    let mut raw = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    raw.extend_from_slice(&magic.to_be_bytes());
    for &d in dims {
        let d = u32::try_from(d).map_err(|_| Error::InvalidValue {
            field: "idx dimension".into(),
            why: format!("{d} does not fit the format's u32 dimensions"),
        })?;
        raw.extend_from_slice(&d.to_be_bytes());
    }
    raw.extend_from_slice(data);
    // A fixed header (no name, mtime 0) makes the output byte-identical across runs.
    let mut enc = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::best());
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    enc.write_all(&raw).map_err(io)?;
    let gz = enc.finish().map_err(io)?;
    crate::fsutil::write_atomic(path, &gz)
}

/// Writes images as a gzip IDX file (`0x00000803`).
pub fn write_idx_images(path: &Path, images: &IdxImages) -> Result<()> {
    if images.pixels.len() != images.n * images.rows * images.cols {
        return Err(Error::InvalidValue {
            field: "idx images".into(),
            why: format!(
                "{} pixels do not fill {} images of {}x{}",
                images.pixels.len(),
                images.n,
                images.rows,
                images.cols
            ),
        });
    }
    write_gz(
        path,
        MAGIC_IMAGES,
        &[images.n, images.rows, images.cols],
        &images.pixels,
    )
}

/// Writes labels as a gzip IDX file (`0x00000801`).
pub fn write_idx_labels(path: &Path, labels: &[u8]) -> Result<()> {
    write_gz(path, MAGIC_LABELS, &[labels.len()], labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("curadiff-idx-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Hand-made IDX image bytes: magic, then big-endian dims, then `data`.
    fn image_bytes(dims: [u32; 3], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, 3];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(data);
        b
    }

    fn err_of<T: std::fmt::Debug>(r: Result<T>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn parses_hand_made_header() {
        let p = Path::new("x.idx");
        let data: Vec<u8> = (0..12).collect();
        let b = image_bytes([2, 2, 3], &data);
        // The header is 16 bytes: 00 00 08 03, 00 00 00 02, 00 00 00 02, 00 00 00 03.
        assert_eq!(&b[..16], &[0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3]);
        let im = parse_idx_images(p, &b).unwrap();
        assert_eq!((im.n, im.rows, im.cols), (2, 2, 3));
        assert_eq!(im.image(1), &[6, 7, 8, 9, 10, 11]);
        let labels = parse_idx_labels(p, &[0, 0, 8, 1, 0, 0, 0, 3, 7, 0, 9]).unwrap();
        assert_eq!(labels, vec![7, 0, 9]);
    }

    #[test]
    fn header_and_size_errors_name_the_file() {
        let p = Path::new("bad-images.idx");
        let data = [0u8; 12];
        // (bytes, expected words, whether the message must restate the expected magic)
        let mut wrong_type = image_bytes([2, 2, 3], &data);
        wrong_type[2] = 0x0D;
        let cases: Vec<(Vec<u8>, &str, bool)> = vec![
            (vec![0, 0, 8], "too short", true),
            (vec![1, 2, 8, 3, 0, 0, 0, 1], "not an IDX magic", true),
            (wrong_type, "f32", true),
            (
                vec![0, 0, 8, 1, 0, 0, 0, 1, 5],
                "looks like a label file",
                true,
            ),
            (vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0], "truncated", false),
            (image_bytes([0, 2, 3], &[]), "positive", false),
            (image_bytes([2, 2, 3], &data[..11]), "truncated", false),
            (image_bytes([2, 2, 3], &[0u8; 13]), "1 extra", false),
        ];
        for (bytes, want, names_magic) in cases {
            let e = err_of(parse_idx_images(p, &bytes));
            assert!(e.contains("bad-images.idx"), "{e}");
            assert!(e.contains(want), "wanted '{want}' in: {e}");
            assert_eq!(e.contains("0x00000803"), names_magic, "{e}");
        }
        let e = err_of(parse_idx_labels(p, &image_bytes([2, 2, 3], &data)));
        assert!(
            e.contains("looks like an image file") && e.contains("0x00000801"),
            "{e}"
        );
        // Truncated: 11 of 12 bytes, and the message gives both numbers.
        let e = err_of(parse_idx_images(p, &image_bytes([2, 2, 3], &data[..11])));
        assert!(e.contains("11") && e.contains("12"), "{e}");
    }

    #[test]
    fn round_trip_gzip_and_plain() {
        let dir = temp_dir("rt");
        let im = IdxImages {
            n: 3,
            rows: 2,
            cols: 4,
            pixels: (0..24).map(|i| (i * 11 % 256) as u8).collect(),
        };
        let labels = vec![4u8, 0, 9];
        let pi = dir.join("images.gz");
        let pl = dir.join("labels.gz");
        write_idx_images(&pi, &im).unwrap();
        write_idx_labels(&pl, &labels).unwrap();
        // The written file is gzip, and its decompressed header is the hand-computed one.
        let gz = std::fs::read(&pi).unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(
            &raw[..16],
            &[0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 4]
        );
        assert_eq!(raw.len(), 16 + 24);
        let (im2, labels2) = read_idx_pair(&pi, &pl).unwrap();
        assert_eq!(im2, im);
        assert_eq!(labels2, labels);
        // Detection is by content: plain bytes under a `.gz` name, gzip under another name.
        let plain = dir.join("plain.gz");
        std::fs::write(&plain, &raw).unwrap();
        assert_eq!(read_idx_images(&plain).unwrap(), im);
        let renamed = dir.join("images-idx3-ubyte");
        std::fs::write(&renamed, &gz).unwrap();
        assert_eq!(read_idx_images(&renamed).unwrap(), im);
        // Writing is deterministic (fixed gzip header).
        write_idx_images(&dir.join("again.gz"), &im).unwrap();
        assert_eq!(std::fs::read(dir.join("again.gz")).unwrap(), gz);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn truncated_gzip_and_count_mismatch_are_errors() {
        let dir = temp_dir("trunc");
        let im = IdxImages {
            n: 50,
            rows: 8,
            cols: 8,
            pixels: (0..3200).map(|i| (i * 7919 % 251) as u8).collect(),
        };
        let pi = dir.join("images.gz");
        write_idx_images(&pi, &im).unwrap();
        let gz = std::fs::read(&pi).unwrap();
        let cut = dir.join("cut.gz");
        std::fs::write(&cut, &gz[..gz.len() / 2]).unwrap();
        let e = err_of(read_idx_images(&cut));
        assert!(e.contains("cut.gz") && e.contains("gzip"), "{e}");
        // Over-long after decompression: one extra byte appended inside the stream.
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut raw)
            .unwrap();
        raw.push(0);
        let long = dir.join("long.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&raw).unwrap();
        std::fs::write(&long, enc.finish().unwrap()).unwrap();
        let e = err_of(read_idx_images(&long));
        assert!(e.contains("long.gz") && e.contains("1 extra"), "{e}");
        // Label count differs from image count.
        let pl = dir.join("labels.gz");
        write_idx_labels(&pl, &[1; 49]).unwrap();
        let e = err_of(read_idx_pair(&pi, &pl));
        assert!(
            e.contains("labels.gz") && e.contains("49") && e.contains("50"),
            "{e}"
        );
        // A missing file is an I/O error naming it.
        let e = err_of(read_idx_labels(&dir.join("nope.gz")));
        assert!(e.contains("nope.gz"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
