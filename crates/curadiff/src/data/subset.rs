//! A subset of a training set by example id: `data.subset = FILE`, where FILE is a `.npy`
//! of example ids (int32/int64, `[k]`) or a mask over the set (uint8, `[N]`, nonzero =
//! keep), with a JSON sidecar `FILE.json`:
//!
//! ```json
//! {"fingerprint": "fnv1a64:…", "seconds": 12.5}
//! ```
//!
//! `fingerprint` is [`crate::data::fingerprint::fingerprint`] of the set the ids refer to
//! (after the long-tail cut); a file made for other data is refused. `seconds` (optional) is
//! the time the curation that wrote the file took; training books it to the `curate` phase,
//! so equal-seconds comparisons pay for it.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::fingerprint::fingerprint;
use super::images::ImageSet;
use super::npy::{self, AnyArray};
use crate::error::{Error, Result};

/// The sidecar of a subset file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubsetMeta {
    /// Fingerprint of the set the ids refer to.
    pub fingerprint: String,
    /// Seconds of curation that produced the subset (0 when unknown).
    #[serde(default)]
    pub seconds: f64,
}

/// A subset applied to a set.
#[derive(Debug, Clone)]
pub struct Subset {
    /// The kept examples, in the set's order.
    pub set: ImageSet,
    /// Curation seconds from the sidecar.
    pub seconds: f64,
}

/// The sidecar path of a subset file: `FILE.json`.
pub fn sidecar(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

fn bad(path: &Path, why: String) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        why,
    }
}

/// Writes ids of `set`'s examples as a subset file (int64) with its sidecar.
pub fn write(path: &Path, set: &ImageSet, ids: &[u64], seconds: f64) -> Result<()> {
    let data: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    npy::write_i64(path, &[data.len()], &data)?;
    let meta = SubsetMeta {
        fingerprint: fingerprint(set),
        seconds,
    };
    let json = serde_json::to_string_pretty(&meta).map_err(|e| bad(path, e.to_string()))?;
    crate::fsutil::write_atomic(&sidecar(path), json.as_bytes())
}

/// The sidecar of the curation file at `path` (a subset or a windows file): read, parsed and
/// its seconds checked. `writer` names what writes such files, for the hint.
pub(crate) fn read_meta(path: &Path, writer: &str) -> Result<SubsetMeta> {
    let side = sidecar(path);
    let text = std::fs::read_to_string(&side).map_err(|e| {
        bad(
            &side,
            format!(
                "cannot read the sidecar of {} ({e}); such a file needs {} with the \
                 fingerprint of the data it was made for (write them with {writer})",
                path.display(),
                side.display()
            ),
        )
    })?;
    let meta: SubsetMeta =
        serde_json::from_str(&text).map_err(|e| bad(&side, format!("malformed sidecar: {e}")))?;
    if !(meta.seconds.is_finite() && meta.seconds >= 0.0) {
        return Err(bad(&side, format!("seconds = {} is not ≥ 0", meta.seconds)));
    }
    Ok(meta)
}

/// The error for a curation file made for other data.
pub(crate) fn other_data(path: &Path, made_for: &str, have: &str, what: &str) -> Error {
    bad(
        path,
        format!(
            "was made for other data (fingerprint {made_for} in its sidecar, the data given \
             has {have}); re-create the {what} for this data, or point data.* (prune's --data \
             flags) at the data it was made for"
        ),
    )
}

/// The sidecar of the curation file at `path` (a subset, a feature or a score file), checked
/// to be made for `set`: a file made for other data is refused, naming both fingerprints.
/// `what` names the kind of file and `writer` what writes it, for the messages.
pub(crate) fn check_made_for(
    path: &Path,
    set: &ImageSet,
    what: &str,
    writer: &str,
) -> Result<SubsetMeta> {
    let meta = read_meta(path, writer)?;
    let have = fingerprint(set);
    if meta.fingerprint != have {
        return Err(other_data(path, &meta.fingerprint, &have, what));
    }
    Ok(meta)
}

/// Keeps the examples of `set` that the subset file at `path` names.
pub fn apply(set: &ImageSet, path: &Path) -> Result<Subset> {
    let meta = check_made_for(
        path,
        set,
        "subset",
        "`curadiff prune select` or the library's data::subset::write",
    )?;
    let keep: Vec<usize> = match npy::read_any(path)? {
        AnyArray::U8(a) => {
            if a.shape != [set.len()] {
                return Err(bad(
                    path,
                    format!(
                        "is a mask of shape {:?}, the set has {} examples",
                        a.shape,
                        set.len()
                    ),
                ));
            }
            (0..set.len()).filter(|&i| a.data[i] != 0).collect()
        }
        any => {
            let ids: Vec<i64> = match any {
                AnyArray::I64(a) if a.shape.len() == 1 => a.data,
                AnyArray::I32(a) if a.shape.len() == 1 => {
                    a.data.into_iter().map(|v| v as i64).collect()
                }
                other => {
                    return Err(bad(
                        path,
                        format!(
                            "holds {} of shape {:?}; a subset is int32/int64 ids [k] or a \
                             uint8 mask [N]",
                            other.dtype(),
                            other.shape()
                        ),
                    ))
                }
            };
            let pos: std::collections::HashMap<u64, usize> =
                set.ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
            let mut keep = Vec::with_capacity(ids.len());
            for id in ids {
                match u64::try_from(id).ok().and_then(|u| pos.get(&u)) {
                    Some(&i) => keep.push(i),
                    None => {
                        return Err(bad(
                            path,
                            format!("names id {id}, which the set does not have"),
                        ))
                    }
                }
            }
            keep.sort_unstable();
            if keep.windows(2).any(|w| w[0] == w[1]) {
                return Err(bad(path, "names an id twice".into()));
            }
            keep
        }
    };
    if keep.is_empty() {
        return Err(bad(path, "keeps no example".into()));
    }
    Ok(Subset {
        set: set.subset(&keep),
        seconds: meta.seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::images::tests::toy_set;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("curadiff-subset-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join(name)
    }

    #[test]
    fn ids_and_masks_keep_the_named_examples_and_other_data_is_refused() {
        let set = toy_set(&[4, 3]); // ids 7, 10, 13, …
        let p = tmp("ids.npy");
        write(&p, &set, &[13, 7], 2.5).unwrap();
        let s = apply(&set, &p).unwrap();
        assert_eq!(s.set.ids, vec![7, 13]); // the set's order
        assert_eq!(s.set.pixels, vec![0.0, 2.0]);
        assert_eq!(s.seconds, 2.5);
        // A mask over the same set.
        let m = tmp("mask.npy");
        let mask: Vec<u8> = (0..set.len()).map(|i| (i % 3 == 0) as u8).collect();
        std::fs::write(&m, npy_u8(&mask)).unwrap();
        std::fs::copy(sidecar(&p), sidecar(&m)).unwrap();
        assert_eq!(apply(&set, &m).unwrap().set.ids, vec![7, 16, 25]);
        // Made for other data: refused, naming both fingerprints.
        let other = toy_set(&[4, 2]);
        let e = apply(&other, &p).unwrap_err().to_string();
        assert!(
            e.contains("other data") && e.contains(&fingerprint(&other)),
            "{e}"
        );
        // An unknown id, a missing sidecar, a float array.
        write(&p, &set, &[8], 0.0).unwrap();
        assert!(apply(&set, &p).unwrap_err().to_string().contains("id 8"));
        std::fs::remove_file(sidecar(&p)).unwrap();
        assert!(apply(&set, &p).unwrap_err().to_string().contains("sidecar"));
        let f = tmp("f.npy");
        npy::write_f32(&f, &[2], &[0.0, 1.0]).unwrap();
        std::fs::copy(sidecar(&m), sidecar(&f)).unwrap();
        assert!(apply(&set, &f).unwrap_err().to_string().contains("float32"));
    }

    /// A uint8 `.npy` of shape [n], written by hand (version 1.0 header).
    fn npy_u8(v: &[u8]) -> Vec<u8> {
        let mut h = format!(
            "{{'descr': '|u1', 'fortran_order': False, 'shape': ({},), }}",
            v.len()
        );
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((h.len() as u16).to_le_bytes());
        out.extend(h.as_bytes());
        out.extend(v);
        out
    }
}
