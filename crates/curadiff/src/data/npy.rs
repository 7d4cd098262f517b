//! Reading and writing NumPy `.npy` files (format version 1.0/2.0, little-endian, C order).
//!
//! Samples are exchanged as float32 `[N, 2]` (toy) or `[N, C, H, W]` (images); reference
//! tables are float64. A file that is not what it claims is a clear error naming the file.

use crate::error::{Error, Result};
use std::path::Path;

/// A dense array read from a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Array<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

fn bad(path: &Path, why: impl Into<String>) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

/// Parses the header; returns (descr, shape, data offset).
fn header(path: &Path, bytes: &[u8]) -> Result<(String, Vec<usize>, usize)> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad(path, "not a .npy file (missing the \\x93NUMPY magic)"));
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad(path, "truncated .npy header"));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(bad(path, format!("unsupported .npy version {v}"))),
    };
    let end = start + hlen;
    let text = bytes
        .get(start..end)
        .ok_or_else(|| bad(path, "truncated .npy header"))?;
    let text = String::from_utf8_lossy(text).to_string();
    let field = |key: &str| -> Option<String> {
        let i = text.find(&format!("'{key}'"))?;
        let rest = &text[i + key.len() + 2..];
        let rest = rest.trim_start().strip_prefix(':')?.trim_start();
        Some(rest.to_string())
    };
    let descr = field("descr")
        .and_then(|r| {
            r.strip_prefix('\'')
                .map(|s| s.split('\'').next().unwrap_or("").to_string())
        })
        .ok_or_else(|| bad(path, "header has no 'descr'"))?;
    if field("fortran_order").is_some_and(|r| r.starts_with("True")) {
        return Err(bad(
            path,
            "Fortran-order arrays are not supported; save with C order",
        ));
    }
    let shape_text = field("shape")
        .and_then(|r| {
            r.strip_prefix('(')
                .map(|s| s.split(')').next().unwrap_or("").to_string())
        })
        .ok_or_else(|| bad(path, "header has no 'shape'"))?;
    let mut shape = Vec::new();
    for part in shape_text
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        shape.push(
            part.parse::<usize>()
                .map_err(|_| bad(path, format!("bad shape entry '{part}'")))?,
        );
    }
    Ok((descr, shape, end))
}

fn read_as<T, const W: usize>(
    path: &Path,
    want: &[&str],
    conv: fn([u8; W]) -> T,
) -> Result<Array<T>> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let (descr, shape, off) = header(path, &bytes)?;
    if !want.contains(&descr.as_str()) {
        return Err(bad(
            path,
            format!("dtype '{descr}', expected one of {want:?} (little-endian)"),
        ));
    }
    let count: usize = shape.iter().product();
    let body = &bytes[off..];
    if body.len() != count * W {
        return Err(bad(
            path,
            format!(
                "holds {} bytes of data, shape {shape:?} needs {} (truncated or corrupt)",
                body.len(),
                count * W
            ),
        ));
    }
    let data = body
        .chunks_exact(W)
        .map(|c| {
            let mut a = [0u8; W];
            a.copy_from_slice(c);
            conv(a)
        })
        .collect();
    Ok(Array { shape, data })
}

/// Reads a float64 array.
pub fn read_f64(path: &Path) -> Result<Array<f64>> {
    read_as::<f64, 8>(path, &["<f8"], f64::from_le_bytes)
}

/// Reads a float32 array.
pub fn read_f32(path: &Path) -> Result<Array<f32>> {
    read_as::<f32, 4>(path, &["<f4"], f32::from_le_bytes)
}

/// Writes a float32 array atomically (temporary file, then rename).
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    assert_eq!(
        shape.iter().product::<usize>(),
        data.len(),
        "shape/data mismatch"
    );
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut head = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Pad so that magic + version + length + header is a multiple of 64, ending in '\n'.
    let total = 10 + head.len() + 1;
    head.push_str(&" ".repeat((64 - total % 64) % 64));
    head.push('\n');
    let mut out = Vec::with_capacity(10 + head.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(head.len() as u16).to_le_bytes());
    out.extend_from_slice(head.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    crate::fsutil::write_atomic(path, &out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_header_alignment() {
        let dir = std::env::temp_dir().join(format!("curadiff-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.npy");
        let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 1.0).collect();
        write_f32(&p, &[6, 2], &data).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        // Header length is aligned so data starts at a multiple of 64 bytes.
        assert_eq!((bytes.len() - 48) % 64, 0);
        let a = read_f32(&p).unwrap();
        assert_eq!(a.shape, vec![6, 2]);
        assert_eq!(a.data, data);
        // Wrong dtype and truncation are named errors.
        let e = read_f64(&p).unwrap_err().to_string();
        assert!(e.contains("a.npy") && e.contains("<f4"), "{e}");
        std::fs::write(&p, &bytes[..bytes.len() - 4]).unwrap();
        let e = read_f32(&p).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
