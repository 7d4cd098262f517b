//! Feature files: the surrogate features of a pool's examples (or of one shard of them), as a
//! float32 `.npy` `[k, dim]` in pool order with a JSON sidecar `FILE.json`:
//!
//! ```json
//! {"fingerprint": "fnv1a64:…", "seconds": 41.2, "feature_net": "curadiff-fmnist-classifier-seed1",
//!  "feature_weights": "fnv1a64:…", "dim": 128, "shard": 0, "num_shards": 1, "block": 500,
//!  "start": 0, "pool_len": 60000, "ids": [0, 1, …], "labels": [9, 0, …]}
//! ```
//!
//! `fingerprint` and `seconds` are a subset sidecar's ([`crate::data::subset`]): the pool the
//! rows belong to and the seconds of extraction (plus, in shard 0, the surrogate's training,
//! [`FeatureNet::making_seconds`], which the pool's curation pays once). The network sees the examples in blocks of
//! `block` rows counted from the start of the pool, whichever shard embeds them, so a sharded
//! extraction gives the same numbers as an unsharded one.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

use super::feature_net::FeatureNet;
use super::shard::Shard;
use crate::data::fingerprint::fingerprint;
use crate::data::images::ImageSet;
use crate::data::npy;
use crate::data::subset::{check_made_for, sidecar, SubsetMeta};
use crate::error::{Error, Result};

/// Examples per forward pass of the feature network (and the unit shards are cut in).
pub const BLOCK: usize = 500;

/// What writes feature files, for the messages.
const WRITER: &str = "`curadiff prune features`";

/// The sidecar of a feature file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeaturesMeta {
    /// The pool's fingerprint and the seconds of extraction.
    #[serde(flatten)]
    pub made_for: SubsetMeta,
    /// [`FeatureNet::name`].
    pub feature_net: String,
    /// [`FeatureNet::weights`].
    pub feature_weights: String,
    /// Features per example.
    pub dim: usize,
    /// This file's shard, from 0, of `num_shards` (0 of 1: the whole pool).
    pub shard: usize,
    pub num_shards: usize,
    /// Examples per forward pass, counted from the start of the pool.
    pub block: usize,
    /// The pool index of the first row.
    pub start: usize,
    /// Examples in the pool.
    pub pool_len: usize,
    /// Example ids of the rows.
    pub ids: Vec<u64>,
    /// Class labels of the rows.
    pub labels: Vec<u32>,
}

/// The features of a pool's examples (or of a shard of them) and their sidecar.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    pub meta: FeaturesMeta,
    /// [len, dim] row-major.
    pub data: Vec<f32>,
}

fn bad(path: &Path, why: String) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        why,
    }
}

impl Features {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.meta.ids.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.meta.ids.is_empty()
    }

    /// Features per row.
    pub fn dim(&self) -> usize {
        self.meta.dim
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.meta.dim..(i + 1) * self.meta.dim]
    }

    /// Writes the array and its sidecar (atomically each).
    pub fn write(&self, path: &Path) -> Result<()> {
        npy::write_f32(path, &[self.len(), self.meta.dim], &self.data)?;
        let json = serde_json::to_string(&self.meta).map_err(|e| bad(path, e.to_string()))?;
        crate::fsutil::write_atomic(&sidecar(path), json.as_bytes())
    }

    /// Reads a feature file and checks that array and sidecar agree.
    pub fn read(path: &Path) -> Result<Self> {
        // The subset mechanism's reader: a missing sidecar or bad seconds are named alike.
        crate::data::subset::read_meta(path, WRITER)?;
        let side = sidecar(path);
        let text = std::fs::read_to_string(&side).map_err(|e| Error::Io {
            path: side.clone(),
            source: e,
        })?;
        let meta: FeaturesMeta = serde_json::from_str(&text)
            .map_err(|e| bad(&side, format!("not a feature file's sidecar ({e})")))?;
        let a = npy::read_f32(path)?;
        let k = meta.ids.len();
        if a.shape != [k, meta.dim] || meta.labels.len() != k {
            return Err(bad(
                path,
                format!(
                    "holds an array of shape {:?}, but its sidecar names {k} examples \
                     ({} labels) of {} features; write the pair again with {WRITER}",
                    a.shape,
                    meta.labels.len(),
                    meta.dim
                ),
            ));
        }
        if let Some(i) = a.data.iter().position(|v| !v.is_finite()) {
            return Err(bad(
                path,
                format!(
                    "feature {} of row {} is not finite ({})",
                    i % meta.dim.max(1),
                    i / meta.dim.max(1),
                    a.data[i]
                ),
            ));
        }
        Ok(Self { meta, data: a.data })
    }

    /// Reads the features of the whole `pool` from `path`: a file made for other data is
    /// refused (both fingerprints named), as is one shard's file (merge the shards first).
    pub fn read_for(path: &Path, pool: &ImageSet) -> Result<Self> {
        check_made_for(path, pool, "features", WRITER)?;
        let f = Self::read(path)?;
        if f.meta.num_shards != 1 || f.len() != pool.len() {
            return Err(bad(
                path,
                format!(
                    "holds shard {} of {} ({} of the pool's {} examples); merge the shards \
                     with `curadiff prune merge`",
                    f.meta.shard,
                    f.meta.num_shards,
                    f.len(),
                    pool.len()
                ),
            ));
        }
        if f.meta.ids != pool.ids || f.meta.labels != pool.labels {
            return Err(bad(
                path,
                "names other ids or labels than the pool it was made for; write it again".into(),
            ));
        }
        Ok(f)
    }
}

/// The features of `shard`'s examples of `pool` by `net`, `block` examples per forward pass
/// (blocks counted from the start of the pool; [`BLOCK`] unless testing). `progress(done,
/// total)` is called after each block with the examples done and the shard's total.
pub fn extract(
    net: &dyn FeatureNet,
    pool: &ImageSet,
    shard: Shard,
    block: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Features> {
    if block == 0 {
        return Err(Error::InvalidValue {
            field: "feature block".into(),
            why: "must be at least 1 example".into(),
        });
    }
    let t = Instant::now();
    let rows = shard.rows(pool.len(), block);
    let dim = net.dim();
    let mut data = Vec::with_capacity(rows.len() * dim);
    let mut at = rows.start;
    while at < rows.end {
        let end = (at + block).min(rows.end);
        let f = net.features(pool, at..end)?;
        if f.len() != (end - at) * dim {
            return Err(Error::Model(format!(
                "{} returned {} values for {} images of {dim} features",
                net.name(),
                f.len(),
                end - at
            )));
        }
        data.extend(f);
        at = end;
        progress(at - rows.start, rows.len());
    }
    Ok(Features {
        meta: FeaturesMeta {
            made_for: SubsetMeta {
                fingerprint: fingerprint(pool),
                // The surrogate's training is paid once per pool: in the first shard.
                seconds: t.elapsed().as_secs_f64()
                    + if shard.index == 0 {
                        net.making_seconds().unwrap_or(0.0)
                    } else {
                        0.0
                    },
            },
            feature_net: net.name(),
            feature_weights: net.weights().to_string(),
            dim,
            shard: shard.index,
            num_shards: shard.count,
            block,
            start: rows.start,
            pool_len: pool.len(),
            ids: pool.ids[rows.clone()].to_vec(),
            labels: pool.labels[rows].to_vec(),
        },
        data,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::ops::Range;

    /// A feature network for tests: example i's features are (pixel sum, i-th pixel, dim 3 =
    /// the number of rows in the call), so a test sees how the rows were batched.
    pub(crate) struct SumNet;

    impl FeatureNet for SumNet {
        fn name(&self) -> String {
            "sum-net".into()
        }
        fn weights(&self) -> &str {
            "fnv1a64:0"
        }
        fn dim(&self) -> usize {
            3
        }
        fn features(&self, set: &ImageSet, rows: Range<usize>) -> Result<Vec<f32>> {
            let b = rows.len() as f32;
            Ok(rows
                .flat_map(|i| {
                    let img = set.image(i);
                    [img.iter().sum::<f32>(), img[0], b]
                })
                .collect())
        }
        fn making_seconds(&self) -> Option<f64> {
            Some(1000.0)
        }
    }

    /// The network's making seconds are counted once per pool: in shard 0 (and so once in
    /// a merge), never in the others.
    #[test]
    fn the_surrogates_training_is_counted_once_per_pool() {
        let pool = crate::data::images::tests::toy_set(&[4, 3]);
        let whole = extract(&SumNet, &pool, Shard::WHOLE, 2, &mut |_, _| {}).unwrap();
        let first = extract(&SumNet, &pool, Shard::new(0, 2).unwrap(), 2, &mut |_, _| {}).unwrap();
        let second = extract(&SumNet, &pool, Shard::new(1, 2).unwrap(), 2, &mut |_, _| {}).unwrap();
        for (f, want) in [(&whole, 1000.0), (&first, 1000.0), (&second, 0.0)] {
            let s = f.meta.made_for.seconds;
            assert!(s >= want && s < want + 5.0, "{s} against {want}");
        }
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("curadiff-features-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join(name)
    }

    #[test]
    fn write_read_round_trip_and_other_data_is_refused() {
        let pool = crate::data::images::tests::toy_set(&[4, 3]);
        let f = extract(&SumNet, &pool, Shard::WHOLE, 2, &mut |_, _| {}).unwrap();
        assert_eq!(f.len(), 7);
        // Blocks of 2 from the start of the pool: the last block holds one row.
        let batch: Vec<f32> = (0..7).map(|i| f.row(i)[2]).collect();
        assert_eq!(batch, [2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 1.0]);
        let p = tmp("f.npy");
        f.write(&p).unwrap();
        let back = Features::read_for(&p, &pool).unwrap();
        assert_eq!(back, f);
        let other = crate::data::images::tests::toy_set(&[4, 2]);
        let e = Features::read_for(&p, &other).unwrap_err().to_string();
        assert!(
            e.contains("other data")
                && e.contains(&fingerprint(&pool))
                && e.contains(&fingerprint(&other)),
            "{e}"
        );
        // A shard alone is not the pool's features.
        let s = extract(&SumNet, &pool, Shard::new(1, 2).unwrap(), 2, &mut |_, _| {}).unwrap();
        s.write(&p).unwrap();
        let e = Features::read_for(&p, &pool).unwrap_err().to_string();
        assert!(e.contains("prune merge"), "{e}");
    }
}
