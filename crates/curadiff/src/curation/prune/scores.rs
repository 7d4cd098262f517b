//! Score files: one pruning score per example of a pool, as a float64 `.npy` `[n]` in pool
//! order, higher = kept first, with a JSON sidecar `FILE.json`:
//!
//! ```json
//! {"fingerprint": "fnv1a64:…", "seconds": 43.0, "criterion": "gaussian", "delta": 0.0012,
//!  "feature_net": "curadiff-fmnist-classifier-seed1", "feature_weights": "fnv1a64:…",
//!  "order": "higher is kept first", "ids": [0, 1, …]}
//! ```
//!
//! `fingerprint` and `seconds` are a subset sidecar's ([`crate::data::subset`]): the pool the
//! scores belong to, and the seconds of curation so far (feature extraction of every shard,
//! plus the criterion). The array is deterministic (same inputs, same bytes); `seconds` is
//! not.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

use super::criterion::{random_scores, Criterion};
use super::features::Features;
use crate::data::fingerprint::fingerprint;
use crate::data::images::ImageSet;
use crate::data::npy;
use crate::data::subset::{check_made_for, sidecar, SubsetMeta};
use crate::error::{Error, Result};

/// What writes score files, for the messages.
const WRITER: &str = "`curadiff prune score`";
/// The `order` field of every score file.
const ORDER: &str = "higher is kept first";
/// The `feature_net` of scores computed without features (`random`).
pub const NO_FEATURES: &str = "none";

/// The sidecar of a score file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoresMeta {
    /// The pool's fingerprint and the seconds of curation so far.
    #[serde(flatten)]
    pub made_for: SubsetMeta,
    /// The criterion as run, with its parameters.
    #[serde(flatten)]
    pub criterion: Criterion,
    /// The feature network ([`NO_FEATURES`] for `random`).
    pub feature_net: String,
    /// Its weights' fingerprint (empty for `random`).
    pub feature_weights: String,
    /// "higher is kept first".
    pub order: String,
    /// Example ids, in pool order.
    pub ids: Vec<u64>,
}

/// One score per example of a pool, and the sidecar.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub meta: ScoresMeta,
    /// [n], pool order.
    pub values: Vec<f64>,
}

fn bad(path: &Path, why: String) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        why,
    }
}

impl Scores {
    /// Scores the whole pool's features `f` by `criterion`; the seconds are the features'
    /// plus the criterion's.
    pub fn compute(f: &Features, criterion: &Criterion) -> Result<Self> {
        if f.meta.num_shards != 1 || f.len() != f.meta.pool_len {
            return Err(Error::Config(format!(
                "features of shard {} of {} hold {} of the pool's {} examples; the criteria \
                 need the whole pool: merge the shards first (`curadiff prune merge`)",
                f.meta.shard,
                f.meta.num_shards,
                f.len(),
                f.meta.pool_len
            )));
        }
        let t = Instant::now();
        let (values, run) = criterion.score(f)?;
        Ok(Self {
            meta: ScoresMeta {
                made_for: SubsetMeta {
                    fingerprint: f.meta.made_for.fingerprint.clone(),
                    seconds: f.meta.made_for.seconds + t.elapsed().as_secs_f64(),
                },
                criterion: run,
                feature_net: f.meta.feature_net.clone(),
                feature_weights: f.meta.feature_weights.clone(),
                order: ORDER.into(),
                ids: f.meta.ids.clone(),
            },
            values,
        })
    }

    /// Random scores of `pool`'s examples (no features needed).
    pub fn random(pool: &ImageSet, seed: u64) -> Self {
        let t = Instant::now();
        let values = random_scores(&pool.ids, seed);
        Self {
            meta: ScoresMeta {
                made_for: SubsetMeta {
                    fingerprint: fingerprint(pool),
                    seconds: t.elapsed().as_secs_f64(),
                },
                criterion: Criterion::Random { seed },
                feature_net: NO_FEATURES.into(),
                feature_weights: String::new(),
                order: ORDER.into(),
                ids: pool.ids.clone(),
            },
            values,
        }
    }

    /// Writes the array and its sidecar (atomically each).
    pub fn write(&self, path: &Path) -> Result<()> {
        npy::write_f64(path, &[self.values.len()], &self.values)?;
        let json = serde_json::to_string(&self.meta).map_err(|e| bad(path, e.to_string()))?;
        crate::fsutil::write_atomic(&sidecar(path), json.as_bytes())
    }

    /// Reads the scores of `pool` from `path`: a file made for other data is refused, naming
    /// both fingerprints; so are non-finite scores and ids that are not the pool's.
    pub fn read_for(path: &Path, pool: &ImageSet) -> Result<Self> {
        check_made_for(path, pool, "scores", WRITER)?;
        let side = sidecar(path);
        let text = std::fs::read_to_string(&side).map_err(|e| Error::Io {
            path: side.clone(),
            source: e,
        })?;
        let meta: ScoresMeta = serde_json::from_str(&text)
            .map_err(|e| bad(&side, format!("not a score file's sidecar ({e})")))?;
        let a = npy::read_f64(path)?;
        if a.shape != [pool.len()] || meta.ids != pool.ids {
            return Err(bad(
                path,
                format!(
                    "holds {:?} scores for {} ids, the pool has {} examples (other ids); \
                     score the pool again with {WRITER}",
                    a.shape,
                    meta.ids.len(),
                    pool.len()
                ),
            ));
        }
        if let Some(i) = a.data.iter().position(|v| !v.is_finite()) {
            return Err(bad(
                path,
                format!("the score of example {i} is not finite ({})", a.data[i]),
            ));
        }
        Ok(Self {
            meta,
            values: a.data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::features::{extract, tests::SumNet};
    use super::super::shard::Shard;
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("curadiff-scores-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join(name)
    }

    #[test]
    fn same_inputs_give_the_same_bytes_and_other_data_is_refused() {
        let pool = crate::data::images::tests::toy_set(&[6, 5, 4]);
        let f = extract(&SumNet, &pool, Shard::WHOLE, 4, &mut |_, _| {}).unwrap();
        for c in [
            Criterion::Gaussian { delta: None },
            Criterion::ModerateDs,
            Criterion::ClosestToMedian,
            Criterion::Kcenter,
            Criterion::Random { seed: 4 },
        ] {
            let (a, b) = (tmp("a.npy"), tmp("b.npy"));
            Scores::compute(&f, &c).unwrap().write(&a).unwrap();
            Scores::compute(&f, &c).unwrap().write(&b).unwrap();
            assert_eq!(
                std::fs::read(&a).unwrap(),
                std::fs::read(&b).unwrap(),
                "{c:?}"
            );
            let back = Scores::read_for(&a, &pool).unwrap();
            assert_eq!(back.meta.criterion.name(), c.name());
            assert_eq!(back.meta.ids, pool.ids);
            assert_eq!(back.meta.feature_net, "sum-net");
        }
        // The Gaussian records the δ it used.
        let g = Scores::compute(&f, &Criterion::Gaussian { delta: None }).unwrap();
        assert!(matches!(g.meta.criterion, Criterion::Gaussian { delta: Some(d) } if d > 0.0));
        // Random without features gives the same scores as with them.
        let r = Scores::random(&pool, 4);
        assert_eq!(
            r.values,
            Scores::compute(&f, &Criterion::Random { seed: 4 })
                .unwrap()
                .values
        );
        // Another pool: refused, naming both fingerprints.
        let p = tmp("g.npy");
        g.write(&p).unwrap();
        let other = crate::data::images::tests::toy_set(&[6, 5, 3]);
        let e = Scores::read_for(&p, &other).unwrap_err().to_string();
        assert!(
            e.contains("other data")
                && e.contains(&fingerprint(&pool))
                && e.contains(&fingerprint(&other)),
            "{e}"
        );
        // Shard features are not scored.
        let s = extract(&SumNet, &pool, Shard::new(0, 2).unwrap(), 4, &mut |_, _| {}).unwrap();
        let e = Scores::compute(&s, &Criterion::Kcenter)
            .unwrap_err()
            .to_string();
        assert!(e.contains("merge the shards"), "{e}");
    }
}
