//! A synthetic-to-real spectrum as a data set (what `curadiff synth` writes), in a folder:
//! - `images.npy`: float32 `[M, C, H, W]` in [-1, 1];
//! - `labels.npy`: int64 `[M]`, each image's intended class (its source's class);
//! - `spectrum.json`: the sidecar [`SpectrumMeta`]: the fingerprint of the real set the source
//!   ids refer to, the generator, the sampler, the filter, the seconds the synthesis took, and
//!   one row per image ([`SpectrumRow`]: source id, strength s, λ = 1 − s, seed, σ_start,
//!   kept, filter probability, feature similarity to the source);
//! - `spectrum.png`: one tail example across λ (seeds as rows).
//!
//! Images are written kept or not (the row says which); [`load`] returns them as an
//! [`ImageSet`] of [`Source::Synthetic`] examples with ids `SYNTHETIC_ID_BASE + row`, after
//! checking that every source id is an example of the given real set with the same class.
//! `data.kind = "npy"` with `data.path = DIR/images.npy` and `data.labels = DIR/labels.npy`
//! also reads the images.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::data::fingerprint::fingerprint;
use crate::data::images::{ImageSet, Source};
use crate::data::npy;
use crate::error::{Error, Result};

/// The sidecar's format name.
pub const FORMAT: &str = "curadiff-spectrum";
/// The sidecar's format version; others are refused.
pub const VERSION: u32 = 1;
/// Synthetic examples get ids from here on (row j: base + j), far above any real data set's
/// ids (their positions in the source files), so real and synthetic examples never share one.
pub const SYNTHETIC_ID_BASE: u64 = 1 << 40;

/// One synthetic image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpectrumRow {
    /// Id of the real example it was made from.
    pub source_id: u64,
    /// Intended class (the source's).
    pub label: u32,
    /// img2img strength s.
    pub strength: f64,
    /// Image guidance λ = 1 − s.
    pub lambda: f64,
    /// Seed of its noise (the stream (seed, Sample, source id)).
    pub seed: u64,
    /// σ it started from.
    pub sigma_start: f64,
    /// Whether the filter kept it.
    pub kept: bool,
    /// The filter classifier's probability of the intended class.
    pub filter_prob: f64,
    /// Cosine similarity of its filter-classifier features to its source's.
    pub similarity: f64,
}

/// The sidecar `spectrum.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpectrumMeta {
    pub format: String,
    pub version: u32,
    /// Fingerprint of the real set the source ids refer to (the generator's training set).
    pub fingerprint: String,
    /// Classes of the generator.
    pub num_classes: usize,
    /// Image shape [C, H, W].
    pub shape: [usize; 3],
    /// The generator run.
    pub generator: String,
    /// Class-free guidance weight (1: none).
    pub cfg: f64,
    /// Heun steps N of the full schedule, and its σ range and ρ.
    pub steps: usize,
    pub sigma_min: f64,
    pub sigma_max: f64,
    pub rho: f64,
    /// The filter classifier's file and threshold τ.
    pub filter: String,
    pub tau: f64,
    /// Seconds of synthesis (sampling and filtering), for the `curate` phase.
    pub seconds: f64,
    /// Seconds that choosing the hard examples took (`curadiff hard`'s sidecar; 0 when
    /// unknown), also curation.
    #[serde(default)]
    pub hard_seconds: f64,
    /// Images sampled per second (sampling alone).
    pub images_per_second: f64,
    pub rows: Vec<SpectrumRow>,
}

/// A spectrum read back: its images as a set and its sidecar (rows aligned with the set).
#[derive(Debug, Clone)]
pub struct Spectrum {
    pub set: ImageSet,
    pub meta: SpectrumMeta,
}

fn bad(path: &Path, why: String) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        why,
    }
}

/// The sidecar's path in `dir`.
pub fn meta_path(dir: &Path) -> PathBuf {
    dir.join("spectrum.json")
}

/// Writes `images` (`[M, C, H, W]` flattened, M = `meta.rows.len()`) and their labels and
/// sidecar into `dir`, creating it.
pub fn write(dir: &Path, images: &[f32], meta: &SpectrumMeta) -> Result<()> {
    crate::fsutil::create_dir(dir)?;
    let m = meta.rows.len();
    let [c, h, w] = meta.shape;
    if images.len() != m * c * h * w {
        return Err(Error::Model(format!(
            "internal: {} values for {m} images of shape {:?}",
            images.len(),
            meta.shape
        )));
    }
    npy::write_f32(&dir.join("images.npy"), &[m, c, h, w], images)?;
    let labels: Vec<i64> = meta.rows.iter().map(|r| r.label as i64).collect();
    npy::write_i64(&dir.join("labels.npy"), &[m], &labels)?;
    let json = serde_json::to_string_pretty(meta).map_err(|e| bad(dir, e.to_string()))?;
    crate::fsutil::write_atomic(&meta_path(dir), json.as_bytes())
}

/// Reads the sidecar of the spectrum in `dir`.
pub fn read_meta(dir: &Path) -> Result<SpectrumMeta> {
    let path = meta_path(dir);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        bad(
            &path,
            format!("cannot read it ({e}); a spectrum folder is written by `curadiff synth`"),
        )
    })?;
    let meta: SpectrumMeta = serde_json::from_str(&text)
        .map_err(|e| bad(&path, format!("malformed spectrum sidecar: {e}")))?;
    if meta.format != FORMAT || meta.version != VERSION {
        return Err(bad(
            &path,
            format!(
                "is {} version {}, this curadiff reads {FORMAT} version {VERSION}; write the \
                 spectrum again with `curadiff synth`",
                meta.format, meta.version
            ),
        ));
    }
    Ok(meta)
}

/// Reads the spectrum in `dir` against `real`, the set its source ids refer to: every source
/// id must be an example of `real` with the image's class, and the images must have `real`'s
/// shape. `kept_only` leaves out the images the filter rejected.
pub fn load(dir: &Path, real: &ImageSet, kept_only: bool) -> Result<Spectrum> {
    let mut meta = read_meta(dir)?;
    let side = meta_path(dir);
    let img_path = dir.join("images.npy");
    let images = npy::read_f32(&img_path)?;
    let m = meta.rows.len();
    let [c, h, w] = meta.shape;
    if images.shape != [m, c, h, w] {
        return Err(bad(
            &img_path,
            format!(
                "has shape {:?}, its sidecar describes {m} images of shape {:?}; write the \
                 spectrum again",
                images.shape, meta.shape
            ),
        ));
    }
    if (c, h, w) != (real.channels, real.height, real.width) {
        return Err(bad(
            &img_path,
            format!(
                "holds images of shape {:?}, the real set [{}, {}, {}]",
                meta.shape, real.channels, real.height, real.width
            ),
        ));
    }
    let pos: HashMap<u64, usize> = real
        .ids
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i))
        .collect();
    for (j, r) in meta.rows.iter().enumerate() {
        let Some(&i) = pos.get(&r.source_id) else {
            return Err(bad(
                &side,
                format!(
                    "image {j} was made from source id {}, which the real set ({} examples, \
                     fingerprint {}) does not have; the spectrum was made from the set with \
                     fingerprint {}: load it with the generator's data.* settings \
                     (data.imbalance_ratio, data.subset_seed, data.class_order)",
                    r.source_id,
                    real.len(),
                    fingerprint(real),
                    meta.fingerprint
                ),
            ));
        };
        if real.labels[i] != r.label {
            return Err(bad(
                &side,
                format!(
                    "image {j} has class {}, but its source id {} has class {} in the real set; \
                     the spectrum was made for other data (fingerprint {})",
                    r.label, r.source_id, real.labels[i], meta.fingerprint
                ),
            ));
        }
    }
    let len = c * h * w;
    let keep: Vec<usize> = (0..m)
        .filter(|&j| !kept_only || meta.rows[j].kept)
        .collect();
    let set = ImageSet {
        channels: c,
        height: h,
        width: w,
        pixels: keep
            .iter()
            .flat_map(|&j| &images.data[j * len..(j + 1) * len])
            .copied()
            .collect(),
        labels: keep.iter().map(|&j| meta.rows[j].label).collect(),
        num_classes: real.num_classes,
        class_names: real.class_names.clone(),
        ids: keep.iter().map(|&j| SYNTHETIC_ID_BASE + j as u64).collect(),
        source: vec![Source::Synthetic; keep.len()],
    };
    meta.rows = keep.iter().map(|&j| meta.rows[j].clone()).collect();
    Ok(Spectrum { set, meta })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::images::tests::toy_set;

    pub(crate) fn row(source_id: u64, label: u32, strength: f64, kept: bool) -> SpectrumRow {
        SpectrumRow {
            source_id,
            label,
            strength,
            lambda: 1.0 - strength,
            seed: 3,
            sigma_start: 0.5,
            kept,
            filter_prob: 0.75,
            similarity: 0.5,
        }
    }

    pub(crate) fn meta(real: &ImageSet, rows: Vec<SpectrumRow>) -> SpectrumMeta {
        SpectrumMeta {
            format: FORMAT.into(),
            version: VERSION,
            fingerprint: fingerprint(real),
            num_classes: real.num_classes,
            shape: [1, 1, 1],
            generator: "runs/gen".into(),
            cfg: 2.0,
            steps: 16,
            sigma_min: 0.002,
            sigma_max: 80.0,
            rho: 7.0,
            filter: "lt.safetensors".into(),
            tau: 0.5,
            seconds: 1.25,
            hard_seconds: 0.5,
            images_per_second: 10.0,
            rows,
        }
    }

    #[test]
    fn sidecar_round_trip_and_kept_only() {
        let real = toy_set(&[2, 2]); // ids 7 (c0), 10 (c1), 13 (c0), 16 (c1)
        let dir = std::env::temp_dir().join(format!("curadiff-spectrum-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rows = vec![
            row(10, 1, 0.5, true),
            row(7, 0, 1.0, false),
            row(16, 1, 0.2, true),
        ];
        let m = meta(&real, rows);
        write(&dir, &[0.25, -0.5, 1.0], &m).unwrap();
        assert_eq!(read_meta(&dir).unwrap(), m);
        let all = load(&dir, &real, false).unwrap();
        assert_eq!(all.set.pixels, [0.25, -0.5, 1.0]);
        assert_eq!(all.set.labels, [1, 0, 1]);
        assert_eq!(
            all.set.ids,
            [
                SYNTHETIC_ID_BASE,
                SYNTHETIC_ID_BASE + 1,
                SYNTHETIC_ID_BASE + 2
            ]
        );
        assert!(all.set.source.iter().all(|s| *s == Source::Synthetic));
        let kept = load(&dir, &real, true).unwrap();
        assert_eq!(kept.set.pixels, [0.25, 1.0]);
        assert_eq!(kept.set.ids, [SYNTHETIC_ID_BASE, SYNTHETIC_ID_BASE + 2]);
        assert_eq!(kept.meta.rows.len(), 2);
        // The labels file is what data.kind = "npy" reads.
        let l = npy::read_i64(&dir.join("labels.npy")).unwrap();
        assert_eq!(l.data, [1, 0, 1]);

        // A real set without source id 16: refused, naming the id and the fix.
        let other = real.subset(&[0, 1, 2]);
        let e = load(&dir, &other, false).unwrap_err().to_string();
        assert!(
            e.contains("source id 16")
                && e.contains("data.subset_seed")
                && e.contains("spectrum.json"),
            "{e}"
        );
        // A source whose class differs.
        let mut relabelled = real.clone();
        relabelled.labels[1] = 0;
        let e = load(&dir, &relabelled, false).unwrap_err().to_string();
        assert!(e.contains("source id 10 has class 0"), "{e}");
        std::fs::remove_dir_all(dir).ok();
    }
}
