//! The annotation's curves file, from which floors can be re-derived without the classifier:
//! `FILE` is a float32 `.npy` `[N, K]` of p(corrupted), row i for example `ids[i]` at the
//! grid's K σ, with the sidecar `FILE.json` ([`CurvesMeta`]):
//!
//! ```json
//! {"ids": [12, 40, …], "sigmas": [0.002, …, 80.0], "draws": 1, "seed": 0,
//!  "fingerprint": "fnv1a64:…", "classifier": "blur.safetensors",
//!  "classifier_seconds": 95.1, "seconds": 40.2}
//! ```
//!
//! `fingerprint` is that of the data annotated (the pool as the training run loads it, with
//! its `data.corrupt`); `seconds` the annotation's, `classifier_seconds` the classifier's
//! training (both are curation cost, booked to the windows written from the curves).

use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::data::fingerprint::fingerprint;
use crate::data::images::ImageSet;
use crate::data::npy;
use crate::data::subset::{other_data, sidecar};
use crate::error::{Error, Result};

/// The sidecar of a curves file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvesMeta {
    /// The example of each row.
    pub ids: Vec<u64>,
    /// The σ grid, ascending.
    pub sigmas: Vec<f64>,
    /// Noise draws per point.
    pub draws: usize,
    /// Seed of the noise.
    pub seed: u64,
    /// Fingerprint of the data annotated.
    pub fingerprint: String,
    /// The classifier file used.
    pub classifier: String,
    /// Seconds of the classifier's training.
    #[serde(default)]
    pub classifier_seconds: f64,
    /// Seconds of the annotation.
    #[serde(default)]
    pub seconds: f64,
}

fn bad(path: &Path, why: String) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        why,
    }
}

/// Writes `curves` (`[meta.ids.len(), meta.sigmas.len()]`) and the sidecar.
pub fn write(path: &Path, curves: &[f32], meta: &CurvesMeta) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::fsutil::create_dir(dir)?;
    }
    npy::write_f32(path, &[meta.ids.len(), meta.sigmas.len()], curves)?;
    let json = serde_json::to_string_pretty(meta).map_err(|e| bad(path, e.to_string()))?;
    crate::fsutil::write_atomic(&sidecar(path), json.as_bytes())
}

/// Reads a curves file and its sidecar, checked: shapes agree, the grid ascends and is
/// positive, every p is in [0, 1], no id repeats.
pub fn read(path: &Path) -> Result<(Vec<f32>, CurvesMeta)> {
    let side = sidecar(path);
    let text = std::fs::read_to_string(&side).map_err(|e| {
        bad(
            &side,
            format!(
                "cannot read the sidecar of {} ({e}); a curves file needs it (write both with \
                 `curadiff ambient annotate`)",
                path.display()
            ),
        )
    })?;
    let meta: CurvesMeta =
        serde_json::from_str(&text).map_err(|e| bad(&side, format!("malformed sidecar: {e}")))?;
    let a = npy::read_f32(path)?;
    let (n, k) = (meta.ids.len(), meta.sigmas.len());
    if a.shape != [n, k] {
        return Err(bad(
            path,
            format!(
                "has shape {:?}, but its sidecar names {n} ids and {k} σ: expected [{n}, {k}]",
                a.shape
            ),
        ));
    }
    if k == 0
        || meta.sigmas.iter().any(|s| !(s.is_finite() && *s > 0.0))
        || meta.sigmas.windows(2).any(|w| w[0] >= w[1])
    {
        return Err(bad(
            &side,
            "sigmas must be finite, > 0 and strictly ascending".into(),
        ));
    }
    if let Some(i) = a.data.iter().position(|p| !(0.0..=1.0).contains(p)) {
        return Err(bad(
            path,
            format!(
                "value {} at row {} (id {}) is not a probability in [0, 1]",
                a.data[i],
                i / k,
                meta.ids[i / k]
            ),
        ));
    }
    let mut sorted = meta.ids.clone();
    sorted.sort_unstable();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Err(bad(&side, format!("names id {} twice", w[0])));
    }
    Ok((a.data, meta))
}

/// Checks that the curves were made for `set`: the same fingerprint (else refused naming
/// both), and every id one of its examples.
pub fn check_made_for(path: &Path, meta: &CurvesMeta, set: &ImageSet) -> Result<()> {
    let have = fingerprint(set);
    if meta.fingerprint != have {
        return Err(other_data(path, &meta.fingerprint, &have, "annotation"));
    }
    let known: std::collections::HashSet<u64> = set.ids.iter().copied().collect();
    if let Some(id) = meta.ids.iter().find(|id| !known.contains(id)) {
        return Err(bad(
            path,
            format!("names id {id}, which the data (fingerprint {have}) does not have"),
        ));
    }
    Ok(())
}
