//! Per-example noise windows: `data.windows = FILE` says at which noise levels each example
//! may be trained (Ambient-Omni, reference §C.3). FILE is a `.npy` (float64 or float32,
//! `[k, 3]`) of rows `(id, σ_min, σ_max)`, with the same JSON sidecar `FILE.json` as a subset
//! file ([`crate::data::subset`]): the fingerprint of the data it was made for (the pool or
//! the training set) and the seconds its annotation took (booked to `curate`).
//!
//! An example with window (σ_min, σ_max) is admitted at σ when σ > σ_min·b (above its noise
//! floor, with the buffer b = `data.window_buffer` ≥ 1) or σ < σ_max (below its locality
//! ceiling, "crops"). Examples the file does not name are clean: (0, 0), admitted at every
//! σ > 0. The sampler draws σ first and then walks the shuffled examples to the first one
//! that admits it (the image batches of the training loop), so the marginal of σ stays the
//! noise schedule's.

use std::collections::HashMap;
use std::path::Path;

use super::fingerprint::fingerprint;
use super::images::ImageSet;
use super::npy::{self, AnyArray};
use super::subset::{other_data, read_meta, sidecar, SubsetMeta};
use crate::error::{Error, Result};

/// Where one example may be trained: above its noise floor or below its locality ceiling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseWindow {
    /// The example's noise floor σ_tn: it matches clean data only from here up.
    pub sigma_min: f64,
    /// Below this σ the example is also used (locality); 0: never.
    pub sigma_max: f64,
}

impl NoiseWindow {
    /// A clean example: admitted at every σ > 0.
    pub const CLEAN: Self = Self {
        sigma_min: 0.0,
        sigma_max: 0.0,
    };

    /// Whether the example may be trained at `sigma`: σ > σ_min·`buffer` or σ < σ_max.
    pub fn admits(&self, sigma: f64, buffer: f64) -> bool {
        sigma > self.sigma_min * buffer || sigma < self.sigma_max
    }

    /// The noise floor the example carries when trained at `sigma`: σ_min when σ is above it,
    /// else 0 (admitted through the locality branch, the example counts as clean there;
    /// reference §C.3, "crops").
    pub fn floor_at(&self, sigma: f64) -> f64 {
        if sigma > self.sigma_min {
            self.sigma_min
        } else {
            0.0
        }
    }
}

/// The windows of a training set, one per example in the set's order.
#[derive(Debug, Clone)]
pub struct Windows {
    pub windows: Vec<NoiseWindow>,
    /// The positions (in the set) of the examples the file names.
    pub named: Vec<usize>,
    /// Curation seconds from the sidecar.
    pub seconds: f64,
}

fn bad(path: &Path, why: String) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        why,
    }
}

/// Writes a windows file naming `rows` (id, window) of `made_for`'s examples, with its sidecar.
pub fn write(
    path: &Path,
    made_for: &ImageSet,
    rows: &[(u64, NoiseWindow)],
    seconds: f64,
) -> Result<()> {
    write_for(path, &fingerprint(made_for), rows, seconds)
}

/// Writes a windows file for the data of fingerprint `made_for` (when the data itself is not
/// at hand, e.g. floors re-derived from stored annotation curves).
pub fn write_for(
    path: &Path,
    made_for: &str,
    rows: &[(u64, NoiseWindow)],
    seconds: f64,
) -> Result<()> {
    let data: Vec<f64> = rows
        .iter()
        .flat_map(|(id, w)| [*id as f64, w.sigma_min, w.sigma_max])
        .collect();
    npy::write_f64(path, &[rows.len(), 3], &data)?;
    let meta = SubsetMeta {
        fingerprint: made_for.to_string(),
        seconds,
    };
    let json = serde_json::to_string_pretty(&meta).map_err(|e| bad(path, e.to_string()))?;
    crate::fsutil::write_atomic(&sidecar(path), json.as_bytes())
}

/// The rows (id, window) of the windows file at `path`, checked (whole ids ≥ 0; finite
/// σ_min, σ_max ≥ 0), with its sidecar.
pub fn read_rows(path: &Path) -> Result<(SubsetMeta, Vec<(u64, NoiseWindow)>)> {
    let meta = read_meta(path, "the library's data::windows::write")?;
    let mut float32 = false;
    let (shape, data): (Vec<usize>, Vec<f64>) = match npy::read_any(path)? {
        AnyArray::F64(a) => (a.shape, a.data),
        AnyArray::F32(a) => {
            float32 = true;
            (a.shape, a.data.into_iter().map(f64::from).collect())
        }
        other => {
            return Err(bad(
                path,
                format!(
                    "holds {} of shape {:?}; a windows file is float64/float32 rows \
                     (id, sigma_min, sigma_max), shape [k, 3]",
                    other.dtype(),
                    other.shape()
                ),
            ))
        }
    };
    if shape.len() != 2 || shape[1] != 3 {
        return Err(bad(
            path,
            format!("has shape {shape:?}; a windows file has rows (id, sigma_min, sigma_max), shape [k, 3]"),
        ));
    }
    let mut rows = Vec::with_capacity(shape[0]);
    let mut seen = std::collections::HashSet::new();
    for (r, row) in data.chunks_exact(3).enumerate() {
        let (id, lo, hi) = (row[0], row[1], row[2]);
        if !(id >= 0.0 && id.fract() == 0.0) {
            return Err(bad(
                path,
                format!("row {r}: id {id} is not a whole number ≥ 0"),
            ));
        }
        if id >= 9.0e15 || (float32 && id > 16_777_216.0) {
            return Err(bad(
                path,
                format!(
                    "row {r}: id {id} is too large to be held exactly ({}); write the file as \
                     float64",
                    if float32 {
                        "float32 holds whole numbers exactly only up to 2^24"
                    } else {
                        "ids go up to 9e15"
                    }
                ),
            ));
        }
        if !seen.insert(id as u64) {
            return Err(bad(path, format!("names id {id} twice")));
        }
        if !(lo.is_finite() && lo >= 0.0 && hi.is_finite() && hi >= 0.0) {
            return Err(bad(
                path,
                format!(
                    "row {r} (id {id}): sigma_min {lo} and sigma_max {hi} must be finite and ≥ 0"
                ),
            ));
        }
        rows.push((
            id as u64,
            NoiseWindow {
                sigma_min: lo,
                sigma_max: hi,
            },
        ));
    }
    Ok((meta, rows))
}

/// The windows of `set` from the file at `path`. The file may be made for `set` itself or
/// for the pool `set` was cut from (fingerprint `pool`); rows naming examples the set does
/// not have are then skipped, while a file made for `set` must name only its ids.
pub fn apply(set: &ImageSet, pool: &str, path: &Path) -> Result<Windows> {
    let (meta, rows) = read_rows(path)?;
    let have = fingerprint(set);
    let own = meta.fingerprint == have;
    if !own && meta.fingerprint != pool {
        return Err(other_data(path, &meta.fingerprint, &have, "windows file"));
    }
    let pos: HashMap<u64, usize> = set.ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let mut windows = vec![NoiseWindow::CLEAN; set.len()];
    let mut seen = vec![false; set.len()];
    for (r, (id, w)) in rows.into_iter().enumerate() {
        let Some(&i) = pos.get(&id) else {
            if own {
                return Err(bad(
                    path,
                    format!("row {r} names id {id}, which the set does not have"),
                ));
            }
            continue;
        };
        if std::mem::replace(&mut seen[i], true) {
            return Err(bad(path, format!("names id {id} twice")));
        }
        windows[i] = w;
    }
    let named = (0..set.len()).filter(|&i| seen[i]).collect();
    Ok(Windows {
        windows,
        named,
        seconds: meta.seconds,
    })
}

impl Windows {
    /// The warning for named examples whose window admits every σ > 0 with `buffer`
    /// (σ_max ≥ σ_min·buffer, e.g. a floor of 0): they train as clean examples, which a
    /// windows file rarely means to say. None when there are none.
    pub fn effectively_clean(&self, ids: &[u64], buffer: f64) -> Option<String> {
        let all: Vec<u64> = self
            .named
            .iter()
            .filter(|&&i| self.windows[i].sigma_max >= self.windows[i].sigma_min * buffer)
            .map(|&i| ids[i])
            .collect();
        if all.is_empty() {
            return None;
        }
        let first: Vec<String> = all.iter().take(5).map(|i| i.to_string()).collect();
        Some(format!(
            "{} example(s) of the windows file admit every σ (σ_max ≥ σ_min·{buffer}; ids \
             {}{}): they are effectively clean",
            all.len(),
            first.join(", "),
            if all.len() > 5 { ", …" } else { "" }
        ))
    }
}

/// The σ no example admits with `buffer`, as (from, to), if any: above every locality
/// ceiling and below every buffered floor. A noise distribution with mass there could never
/// be served, so training refuses such windows.
pub fn gap(windows: &[NoiseWindow], buffer: f64) -> Option<(f64, f64)> {
    let ceiling = windows.iter().map(|w| w.sigma_max).fold(0.0, f64::max);
    let floor = windows
        .iter()
        .map(|w| w.sigma_min * buffer)
        .fold(f64::INFINITY, f64::min);
    (floor > ceiling).then_some((ceiling, floor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::images::tests::toy_set;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("curadiff-windows-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join(name)
    }

    #[test]
    fn float32_files_with_ids_past_2_24_and_repeated_ids_are_refused() {
        let set = toy_set(&[3]);
        let path = tmp("f32.npy");
        write(&path, &set, &[], 0.0).unwrap();
        let big = (1u64 << 41) as f32;
        npy::write_f32(&path, &[1, 3], &[big, 1.0, 0.0]).unwrap();
        let e = read_rows(&path).unwrap_err().to_string();
        assert!(e.contains("float64") && e.contains("2^24"), "{e}");
        npy::write_f64(&path, &[2, 3], &[7.0, 1.0, 0.0, 7.0, 2.0, 0.0]).unwrap();
        let e = read_rows(&path).unwrap_err().to_string();
        assert!(e.contains("names id 7 twice"), "{e}");
    }

    #[test]
    fn admission_follows_the_floor_with_its_buffer_and_the_ceiling() {
        let w = NoiseWindow {
            sigma_min: 1.0,
            sigma_max: 0.1,
        };
        let b = (4.0f64 / 3.0).sqrt(); // s_max = 4, reference §C.3
        assert!(w.admits(1.2, b) && !w.admits(1.15, b)); // 1.155 is the buffered floor
        assert!(w.admits(0.05, b) && !w.admits(0.1, b) && !w.admits(0.5, b));
        assert!(NoiseWindow::CLEAN.admits(1e-6, b));
        assert_eq!((w.floor_at(1.2), w.floor_at(0.05)), (1.0, 0.0));
        assert_eq!(NoiseWindow::CLEAN.floor_at(3.0), 0.0);
    }

    #[test]
    fn files_name_examples_by_id_and_other_data_is_refused() {
        let set = toy_set(&[4, 3]); // ids 7, 10, 13, …
        let p = tmp("w.npy");
        let w = NoiseWindow {
            sigma_min: 2.0,
            sigma_max: 0.0,
        };
        write(&p, &set, &[(10, w)], 3.5).unwrap();
        let got = apply(&set, "none", &p).unwrap();
        assert_eq!(got.seconds, 3.5);
        assert_eq!(got.named, vec![1]);
        assert_eq!(got.effectively_clean(&set.ids, 1.0), None);
        assert_eq!(got.windows[1], w);
        assert!(got
            .windows
            .iter()
            .enumerate()
            .all(|(i, v)| i == 1 || *v == NoiseWindow::CLEAN));
        // A cut of the set accepts the file made for its pool and skips ids it lacks.
        let pool_fp = fingerprint(&set);
        let cut = set.subset(&[0, 2]);
        let got = apply(&cut, &pool_fp, &p).unwrap();
        assert_eq!(got.windows, vec![NoiseWindow::CLEAN; 2]);
        // Made for neither: refused with both fingerprints named.
        let e = apply(&cut, "fnv1a64:0", &p).unwrap_err().to_string();
        assert!(
            e.contains("other data") && e.contains(&fingerprint(&cut)),
            "{e}"
        );
        // Unknown id for its own set, a repeated id, a negative σ, a wrong shape.
        write(&p, &set, &[(8, w)], 0.0).unwrap();
        assert!(apply(&set, "", &p)
            .unwrap_err()
            .to_string()
            .contains("id 8"));
        write(&p, &set, &[(7, w), (7, w)], 0.0).unwrap();
        assert!(apply(&set, "", &p)
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let neg = NoiseWindow {
            sigma_min: -1.0,
            sigma_max: 0.0,
        };
        write(&p, &set, &[(7, neg)], 0.0).unwrap();
        assert!(apply(&set, "", &p).unwrap_err().to_string().contains("≥ 0"));
        let side = sidecar(&p);
        npy::write_f64(&p, &[2, 2], &[7.0, 1.0, 10.0, 1.0]).unwrap();
        assert!(apply(&set, "", &p)
            .unwrap_err()
            .to_string()
            .contains("[k, 3]"));
        std::fs::remove_file(side).unwrap();
        assert!(apply(&set, "", &p)
            .unwrap_err()
            .to_string()
            .contains("sidecar"));
    }

    /// A window that admits every σ (a zero floor, or a ceiling above the buffered floor)
    /// is reported by id; an unnamed (clean) example is not.
    #[test]
    fn windows_that_admit_every_sigma_are_reported() {
        let set = toy_set(&[4, 3]); // ids 7, 10, 13, …
        let p = tmp("clean.npy");
        let w = |lo, hi| NoiseWindow {
            sigma_min: lo,
            sigma_max: hi,
        };
        write(
            &p,
            &set,
            &[(7, w(0.0, 0.0)), (10, w(1.0, 1.1)), (13, w(1.0, 0.5))],
            0.0,
        )
        .unwrap();
        let got = apply(&set, "", &p).unwrap();
        let msg = got.effectively_clean(&set.ids, 1.0).unwrap();
        assert!(
            msg.starts_with("2 example(s)") && msg.contains("ids 7, 10)"),
            "{msg}"
        );
        // With the buffer 1.155, (1.0, 1.1) leaves a gap: only id 7 admits every σ.
        let msg = got.effectively_clean(&set.ids, 1.155).unwrap();
        assert!(
            msg.starts_with("1 example(s)") && msg.contains("ids 7)"),
            "{msg}"
        );
        // Non-finite floors are refused with the row and id.
        write(&p, &set, &[(10, w(f64::NAN, 0.0))], 0.0).unwrap();
        let e = apply(&set, "", &p).unwrap_err().to_string();
        assert!(e.contains("row 0 (id 10)") && e.contains("finite"), "{e}");
        write(&p, &set, &[(10, w(f64::INFINITY, 0.0))], 0.0).unwrap();
        assert!(apply(&set, "", &p).is_err());
    }

    #[test]
    fn a_gap_no_example_admits_is_found() {
        let floor = |s| NoiseWindow {
            sigma_min: s,
            sigma_max: 0.0,
        };
        let crop = NoiseWindow {
            sigma_min: 300.0,
            sigma_max: 0.5,
        };
        assert_eq!(gap(&[floor(1.0), floor(2.0)], 1.0), Some((0.0, 1.0)));
        assert_eq!(gap(&[floor(1.0), crop], 1.5), Some((0.5, 1.5)));
        assert_eq!(gap(&[floor(0.4), crop], 1.0), None);
        assert_eq!(gap(&[floor(1.0), NoiseWindow::CLEAN], 1.2), None);
    }
}
