//! The corrupted copy of a set as files (`curadiff corrupt --out DIR`), for inspection and
//! for use as a `data.kind = "npy"` source:
//!
//! - `DIR/images.npy`: float32 `[N, C, H, W]` in [-1, 1], the set's examples in order;
//! - `DIR/labels.npy`: int64 `[N]`;
//! - `DIR/images.npy.json`: the sidecar ([`ExportMeta`]): the corruption, the fingerprint of
//!   the copy as `data.kind = "npy"` loads it (ids = row numbers), the fingerprint of the set
//!   as a run with this `data.corrupt` sees it (source ids), and one [`SourceRecord`] per row
//!   (row i holds source id `sources[i].id`).

use serde::{Deserialize, Serialize};
use std::path::Path;

use super::apply::{apply, sources, SourceRecord};
use super::config::CorruptConfig;
use crate::data::fingerprint::fingerprint;
use crate::data::images::ImageSet;
use crate::data::npy;
use crate::data::subset::sidecar;
use crate::error::{Error, Result};

/// The sidecar of an exported corrupted copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportMeta {
    /// The corruption applied.
    pub corrupt: CorruptConfig,
    /// Fingerprint of the copy loaded as `data.kind = "npy"` (ids 0..N).
    pub fingerprint: String,
    /// Fingerprint of the corrupted set with its source ids (what a run with this
    /// `data.corrupt` on the same source trains on).
    pub pool_fingerprint: String,
    /// Examples corrupted.
    pub corrupted: usize,
    /// One record per row, in row order.
    pub sources: Vec<SourceRecord>,
}

/// What [`export`] wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    pub meta: ExportMeta,
    /// The corrupted set (source ids).
    pub set: ImageSet,
}

/// Corrupts `set` with `cfg` and writes the copy into `dir` (see the module doc).
pub fn export(set: &ImageSet, cfg: &CorruptConfig, dir: &Path) -> Result<Exported> {
    let out = apply(set, cfg)?;
    crate::fsutil::create_dir(dir)?;
    let shape = [out.len(), out.channels, out.height, out.width];
    let images = dir.join("images.npy");
    npy::write_f32(&images, &shape, &out.pixels)?;
    let labels: Vec<i64> = out.labels.iter().map(|&l| l as i64).collect();
    npy::write_i64(&dir.join("labels.npy"), &[labels.len()], &labels)?;
    let mut as_loaded = out.clone();
    as_loaded.ids = (0..out.len() as u64).collect();
    let records = sources(&out.ids, cfg);
    let meta = ExportMeta {
        corrupt: cfg.clone(),
        fingerprint: fingerprint(&as_loaded),
        pool_fingerprint: fingerprint(&out),
        corrupted: records.iter().filter(|r| r.source == "corrupted").count(),
        sources: records,
    };
    let json = serde_json::to_string_pretty(&meta).map_err(|e| Error::BadFile {
        path: images.clone(),
        why: format!("cannot write the sidecar: {e}"),
    })?;
    crate::fsutil::write_atomic(&sidecar(&images), json.as_bytes())?;
    Ok(Exported { meta, set: out })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::images::load_npy_images;

    #[test]
    fn the_copy_loads_back_as_npy_with_the_recorded_fingerprint() {
        let mut set = crate::data::images::tests::toy_set(&[5, 4]);
        set.height = 4;
        set.width = 4;
        set.pixels = (0..set.len() * 16)
            .map(|k| ((k * 37 % 23) as f32 / 11.5 - 1.0) * 0.9)
            .collect();
        let cfg = CorruptConfig {
            kind: "blur".into(),
            fraction: 0.6,
            sigma: 0.8,
            seed: 2,
            ..Default::default()
        };
        let dir = std::env::temp_dir().join(format!("curadiff-export-{}", std::process::id()));
        let got = export(&set, &cfg, &dir).unwrap();
        let back = load_npy_images(&dir.join("images.npy"), Some(&dir.join("labels.npy"))).unwrap();
        assert_eq!(back.pixels, got.set.pixels);
        assert_eq!(back.labels, set.labels);
        assert_eq!(fingerprint(&back), got.meta.fingerprint);
        let text = std::fs::read_to_string(dir.join("images.npy.json")).unwrap();
        let meta: ExportMeta = serde_json::from_str(&text).unwrap();
        assert_eq!(meta, got.meta);
        assert_eq!(
            meta.sources.iter().map(|r| r.id).collect::<Vec<_>>(),
            set.ids
        );
        // Rows marked clean hold the source image; corrupted rows differ from it.
        for (i, r) in meta.sources.iter().enumerate() {
            assert_eq!(
                back.image(i) == set.image(i),
                r.source == "clean",
                "row {i}"
            );
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
