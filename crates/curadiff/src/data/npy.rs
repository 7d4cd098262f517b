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
    // The shared decoder checks the claimed shape against the real data length with checked
    // arithmetic, so a huge or overflowing shape is an error, never a wrapped size.
    decode(path, shape, &bytes[off..], conv)
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
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_raw(path, "<f4", shape, data.len(), &bytes)
}

/// Writes a float64 array atomically.
pub fn write_f64(path: &Path, shape: &[usize], data: &[f64]) -> Result<()> {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_raw(path, "<f8", shape, data.len(), &bytes)
}

/// Writes an int64 array atomically (e.g. class labels).
pub fn write_i64(path: &Path, shape: &[usize], data: &[i64]) -> Result<()> {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_raw(path, "<i8", shape, data.len(), &bytes)
}

fn write_raw(path: &Path, descr: &str, shape: &[usize], n: usize, bytes: &[u8]) -> Result<()> {
    assert_eq!(shape.iter().product::<usize>(), n, "shape/data mismatch");
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut head =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Pad so that magic + version + length + header is a multiple of 64, ending in '\n'.
    let total = 10 + head.len() + 1;
    head.push_str(&" ".repeat((64 - total % 64) % 64));
    head.push('\n');
    let mut out = Vec::with_capacity(10 + head.len() + bytes.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(head.len() as u16).to_le_bytes());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(bytes);
    crate::fsutil::write_atomic(path, &out)
}

/// Reads a uint8 array.
pub fn read_u8(path: &Path) -> Result<Array<u8>> {
    read_as::<u8, 1>(path, &["|u1", "<u1"], |b| b[0])
}

/// Reads an int32 array.
pub fn read_i32(path: &Path) -> Result<Array<i32>> {
    read_as::<i32, 4>(path, &["<i4"], i32::from_le_bytes)
}

/// Reads an int64 array.
pub fn read_i64(path: &Path) -> Result<Array<i64>> {
    read_as::<i64, 8>(path, &["<i8"], i64::from_le_bytes)
}

/// An array whose element type is whatever the file holds, for inputs that accept several.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyArray {
    F64(Array<f64>),
    F32(Array<f32>),
    U8(Array<u8>),
    I32(Array<i32>),
    I64(Array<i64>),
}

impl AnyArray {
    /// The array's shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            AnyArray::F64(a) => &a.shape,
            AnyArray::F32(a) => &a.shape,
            AnyArray::U8(a) => &a.shape,
            AnyArray::I32(a) => &a.shape,
            AnyArray::I64(a) => &a.shape,
        }
    }

    /// The NumPy name of the element type (`float32`, `uint8`, ...), for messages.
    pub fn dtype(&self) -> &'static str {
        match self {
            AnyArray::F64(_) => "float64",
            AnyArray::F32(_) => "float32",
            AnyArray::U8(_) => "uint8",
            AnyArray::I32(_) => "int32",
            AnyArray::I64(_) => "int64",
        }
    }
}

/// Converts the data part of a file whose header has already been parsed.
fn decode<T, const W: usize>(
    path: &Path,
    shape: Vec<usize>,
    body: &[u8],
    conv: fn([u8; W]) -> T,
) -> Result<Array<T>> {
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(path, format!("shape {shape:?} overflows")))?;
    if Some(body.len()) != count.checked_mul(W) {
        return Err(bad(
            path,
            format!(
                "holds {} bytes of data, shape {shape:?} needs {} (truncated or corrupt)",
                body.len(),
                count.saturating_mul(W)
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

/// Reads an array of any of the supported little-endian types (float64, float32, uint8,
/// int32, int64), reading the file once.
pub fn read_any(path: &Path) -> Result<AnyArray> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let (descr, shape, off) = header(path, &bytes)?;
    let body = &bytes[off..];
    Ok(match descr.as_str() {
        "<f8" => AnyArray::F64(decode(path, shape, body, f64::from_le_bytes)?),
        "<f4" => AnyArray::F32(decode(path, shape, body, f32::from_le_bytes)?),
        "|u1" | "<u1" => AnyArray::U8(decode::<u8, 1>(path, shape, body, |b| b[0])?),
        "<i4" => AnyArray::I32(decode(path, shape, body, i32::from_le_bytes)?),
        "<i8" => AnyArray::I64(decode(path, shape, body, i64::from_le_bytes)?),
        other => {
            return Err(bad(
                path,
                format!(
                    "dtype '{other}' is not supported; expected float64 ('<f8'), float32 \
                     ('<f4'), uint8 ('|u1'), int32 ('<i4') or int64 ('<i8'), little-endian"
                ),
            ))
        }
    })
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
    /// A `.npy` file written by hand with any dtype string.
    fn hand_npy(path: &Path, descr: &str, shape: &str, body: &[u8]) {
        let mut head =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + head.len() + 1) % 64 != 0 {
            head.push(' ');
        }
        head.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(head.len() as u16).to_le_bytes());
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(body);
        std::fs::write(path, out).unwrap();
    }

    #[test]
    fn integer_and_any_dtype_readers() {
        let dir = std::env::temp_dir().join(format!("curadiff-npy-any-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.npy");
        hand_npy(&p, "|u1", "(2, 2)", &[0, 7, 255, 1]);
        assert_eq!(read_u8(&p).unwrap().data, [0, 7, 255, 1]);
        let any = read_any(&p).unwrap();
        assert_eq!((any.dtype(), any.shape()), ("uint8", &[2usize, 2][..]));
        let b: Vec<u8> = [-3i32, 9].iter().flat_map(|v| v.to_le_bytes()).collect();
        hand_npy(&p, "<i4", "(2,)", &b);
        assert_eq!(read_i32(&p).unwrap().data, [-3, 9]);
        assert_eq!(read_any(&p).unwrap(), AnyArray::I32(read_i32(&p).unwrap()));
        let b: Vec<u8> = [-1i64, 1 << 40]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        hand_npy(&p, "<i8", "(2,)", &b);
        assert_eq!(read_i64(&p).unwrap().data, [-1, 1 << 40]);
        assert_eq!(read_any(&p).unwrap().dtype(), "int64");
        let e = read_i32(&p).unwrap_err().to_string();
        assert!(e.contains("a.npy") && e.contains("<i8"), "{e}");
        hand_npy(&p, "<i8", "(3,)", &b);
        let e = read_any(&p).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        hand_npy(&p, "<c8", "(1,)", &[0; 8]);
        let e = read_any(&p).unwrap_err().to_string();
        assert!(e.contains("'<c8'") && e.contains("not supported"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
