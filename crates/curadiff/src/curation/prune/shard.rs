//! Pool-scale feature extraction over several machines: `--shard i --num-shards N` (0 ≤ i <
//! N, e.g. Slurm's `$SLURM_ARRAY_TASK_ID` of `--array=0-(N-1)`) embeds a contiguous run of
//! the pool's blocks into its own file beside the merged one (`feats.npy` →
//! `feats.shard-i-of-N.npy`), and [`merge`] joins the N files into `feats.npy` once all are
//! there. The criteria need global statistics (a covariance, class medians), so scores are
//! computed on merged features only.
//!
//! Shard i of N embeds blocks ⌊i·B/N⌋ .. ⌊(i+1)·B/N⌋ of the B = ⌈n/block⌉ blocks of the pool
//! (a shard may be empty when N > B). Blocks are counted from the start of the pool, so every
//! image meets the network in the same batch as in an unsharded run.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::features::Features;
use crate::error::{Error, Result};

/// One shard of the pool: `index` (from 0) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shard {} of {}", self.index, self.count)
    }
}

impl Shard {
    /// The whole pool in one shard.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count`, checked: 0 ≤ index < count.
    pub fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 || index >= count {
            return Err(Error::InvalidValue {
                field: "--shard/--num-shards".into(),
                why: format!(
                    "shard {index} of {count}: shards count from 0, so --shard i \
                     --num-shards N needs 0 ≤ i < N (e.g. --shard 0 --num-shards 4 … --shard 3 \
                     --num-shards 4)"
                ),
            });
        }
        Ok(Self { index, count })
    }

    /// The pool rows this shard embeds, for a pool of `n` examples cut in blocks of `block`.
    pub fn rows(&self, n: usize, block: usize) -> Range<usize> {
        let blocks = n.div_ceil(block.max(1));
        let at = |i: usize| (i * blocks / self.count * block).min(n);
        at(self.index)..at(self.index + 1)
    }

    /// This shard's file beside the merged file `merged`: `feats.npy` →
    /// `feats.shard-i-of-N.npy`.
    pub fn path(&self, merged: &Path) -> PathBuf {
        let (stem, ext) = split_name(merged);
        merged.with_file_name(format!(
            "{stem}.shard-{}-of-{}{ext}",
            self.index, self.count
        ))
    }
}

/// A merged file's name as (stem, extension with its dot): `feats.npy` → (`feats`, `.npy`).
fn split_name(merged: &Path) -> (String, String) {
    let name = merged
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem.to_string(), format!(".{ext}")),
        _ => (name, String::new()),
    }
}

/// The shard files beside `merged`, by shard.
pub fn find(merged: &Path) -> Result<BTreeMap<Shard, PathBuf>> {
    let (stem, ext) = split_name(merged);
    let dir = match merged.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let prefix = format!("{stem}.shard-");
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(Error::Io {
                path: dir,
                source: e,
            })
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(mid) = name
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(ext.as_str()))
        else {
            continue;
        };
        let parsed = mid
            .split_once("-of-")
            .and_then(|(i, n)| Some((i.parse().ok()?, n.parse().ok()?)));
        if let Some((index, count)) = parsed {
            if let Ok(s) = Shard::new(index, count) {
                out.insert(s, entry.path());
            }
        }
    }
    Ok(out)
}

/// Joins the shard files beside `merged` into the features of the whole pool (seconds: the
/// shards' sum, what the extraction cost in all). Every shard of one split must be there and
/// agree on the pool, the network and the block.
pub fn merge(merged: &Path) -> Result<Features> {
    let found = find(merged)?;
    let Some(first) = found.keys().next().copied() else {
        return Err(Error::Config(format!(
            "no shard files beside {} (expected {})",
            merged.display(),
            Shard { index: 0, count: 1 }.path(merged).display()
        )));
    };
    let count = first.count;
    if let Some(other) = found.keys().find(|s| s.count != count) {
        return Err(Error::Config(format!(
            "shard files of two splits beside {}: {} and {}; delete the stale ones",
            merged.display(),
            first.path(merged).display(),
            other.path(merged).display()
        )));
    }
    let missing: Vec<String> = (0..count)
        .filter(|&i| !found.contains_key(&Shard { index: i, count }))
        .map(|i| i.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(Error::Config(format!(
            "shards {} of {count} are missing beside {} (run `curadiff prune features … \
             --shard i --num-shards {count}` for each)",
            missing.join(", "),
            merged.display()
        )));
    }
    let mut all: Option<Features> = None;
    for (shard, path) in &found {
        let f = Features::read(path)?;
        let m = &f.meta;
        let rows = shard.rows(m.pool_len, m.block);
        let bad = |why: String| Error::BadFile {
            path: path.clone(),
            why,
        };
        if (m.shard, m.num_shards) != (shard.index, shard.count)
            || m.start != rows.start
            || f.len() != rows.len()
        {
            return Err(bad(format!(
                "its sidecar says shard {} of {} with rows {}..{}, but its name says {shard} \
                 (rows {}..{}); extract it again",
                m.shard,
                m.num_shards,
                m.start,
                m.start + f.len(),
                rows.start,
                rows.end
            )));
        }
        match &mut all {
            None => all = Some(f),
            Some(acc) => {
                let a = &acc.meta;
                let key = |m: &super::features::FeaturesMeta| {
                    (
                        m.made_for.fingerprint.clone(),
                        m.feature_net.clone(),
                        m.feature_weights.clone(),
                        m.dim,
                        m.block,
                        m.pool_len,
                    )
                };
                if key(a) != key(m) {
                    return Err(bad(format!(
                        "was made for other data or by another network than shard 0 \
                         ({:?} against {:?}); extract every shard with the same data and \
                         network",
                        key(m),
                        key(a)
                    )));
                }
                acc.meta.made_for.seconds += m.made_for.seconds;
                acc.meta.ids.extend_from_slice(&m.ids);
                acc.meta.labels.extend_from_slice(&m.labels);
                acc.data.extend_from_slice(&f.data);
            }
        }
    }
    let mut f = all.ok_or_else(|| Error::Config("no shards to merge".into()))?;
    f.meta.shard = 0;
    f.meta.num_shards = 1;
    f.meta.start = 0;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::super::features::{extract, tests::SumNet};
    use super::*;

    #[test]
    fn shards_cover_the_pool_in_whole_blocks() {
        // 10 blocks of 5 in 3 shards: blocks 0..3, 3..6, 6..10.
        let rows: Vec<_> = (0..3)
            .map(|i| Shard::new(i, 3).unwrap().rows(48, 5))
            .collect();
        assert_eq!(rows, [0..15, 15..30, 30..48]);
        // More shards than blocks: some are empty, together they still cover the pool.
        let rows: Vec<_> = (0..4)
            .map(|i| Shard::new(i, 4).unwrap().rows(5, 2))
            .collect();
        assert_eq!(rows, [0..0, 0..2, 2..4, 4..5]);
        assert_eq!(Shard::WHOLE.rows(7, 500), 0..7);
        let e = Shard::new(4, 4).unwrap_err().to_string();
        assert!(e.contains("--shard") && e.contains("0 ≤ i < N"), "{e}");
        assert!(Shard::new(0, 0).is_err());
        let p = Shard::new(2, 4).unwrap().path(Path::new("/x/feats.npy"));
        assert_eq!(p, Path::new("/x/feats.shard-2-of-4.npy"));
    }

    #[test]
    fn merged_shards_equal_the_unsharded_features() {
        let pool = crate::data::images::tests::toy_set(&[5, 4, 4]);
        let whole = extract(&SumNet, &pool, Shard::WHOLE, 2, &mut |_, _| {}).unwrap();
        let dir = std::env::temp_dir().join(format!("curadiff-shard-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let merged = dir.join("feats.npy");
        for i in [2, 0] {
            let s = Shard::new(i, 3).unwrap();
            let f = extract(&SumNet, &pool, s, 2, &mut |_, _| {}).unwrap();
            f.write(&s.path(&merged)).unwrap();
        }
        let e = merge(&merged).unwrap_err().to_string();
        assert!(e.contains("shards 1 of 3 are missing"), "{e}");
        let s = Shard::new(1, 3).unwrap();
        extract(&SumNet, &pool, s, 2, &mut |_, _| {})
            .unwrap()
            .write(&s.path(&merged))
            .unwrap();
        let mut m = merge(&merged).unwrap();
        assert_eq!(m.data, whole.data);
        assert_eq!(m.meta.ids, pool.ids);
        assert_eq!((m.meta.shard, m.meta.num_shards), (0, 1));
        m.meta.made_for.seconds = whole.meta.made_for.seconds;
        assert_eq!(m, whole);
        // A stale split beside it is named.
        let stale = Shard::new(0, 2).unwrap();
        whole.write(&stale.path(&merged)).unwrap();
        let e = merge(&merged).unwrap_err().to_string();
        assert!(e.contains("two splits"), "{e}");
    }
}
