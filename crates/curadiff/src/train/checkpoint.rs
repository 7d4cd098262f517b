//! Checkpoints: named groups of tensors (model, EMA, optimiser moments) in one safetensors
//! file plus a small JSON sidecar with the counters and a checksum of the tensor file.
//!
//! Both files are written atomically (temporary file + rename), the tensors first: a
//! checkpoint exists once its JSON exists, so a kill at any moment leaves either the previous
//! checkpoint or the new one, never half of one. The newest `keep` checkpoints are kept.

use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::params::HostParam;
use crate::data::fingerprint::fnv1a;
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::models::stored_tensor::f32_values;

/// The counters of a checkpoint (its JSON sidecar).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Optimiser steps taken.
    pub step: u64,
    /// Images trained on.
    pub nimg: u64,
    /// Images scored (forward passes for selection included).
    pub nimg_scored: u64,
    /// Cumulative seconds by phase at the time of the checkpoint.
    pub seconds: BTreeMap<String, f64>,
    /// The tensor file beside this JSON.
    pub tensors: String,
    /// Its size in bytes and FNV-1a 64 checksum, to detect truncation or corruption.
    pub bytes: u64,
    pub checksum: String,
    /// Free-form state of other components (selection schedule, noise sampler, …).
    #[serde(default)]
    pub extra: serde_json::Value,
}

/// A loaded checkpoint: its counters and tensor groups in stored order.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub meta: CheckpointMeta,
    pub groups: BTreeMap<String, Vec<HostParam>>,
    pub path: PathBuf,
    /// Damaged newer checkpoints that [`latest`] moved aside to reach this one.
    pub warnings: Vec<String>,
}

fn stem(step: u64) -> String {
    format!("ckpt-{step:09}")
}

/// Writes checkpoint `meta.step` with `groups` into `dir`, then prunes to the newest `keep`.
pub fn save(
    dir: &Path,
    mut meta: CheckpointMeta,
    groups: &BTreeMap<String, Vec<HostParam>>,
    keep: usize,
) -> Result<PathBuf> {
    crate::fsutil::create_dir(dir)?;
    let mut raw: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (group, params) in groups {
        for (i, p) in params.iter().enumerate() {
            let bytes: Vec<u8> = p.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            raw.push((format!("{group}/{i:04}/{}", p.name), p.shape.clone(), bytes));
        }
    }
    let mut views = Vec::with_capacity(raw.len());
    for (name, shape, bytes) in &raw {
        let view = TensorView::new(Dtype::F32, shape.clone(), bytes)
            .map_err(|e| Error::Model(format!("cannot store tensor {name}: {e}")))?;
        views.push((name.clone(), view));
    }
    let file = safetensors::serialize(views, &None)
        .map_err(|e| Error::Model(format!("cannot serialise checkpoint: {e}")))?;
    let name = stem(meta.step);
    meta.tensors = format!("{name}.safetensors");
    meta.bytes = file.len() as u64;
    meta.checksum = fnv1a(&file);
    write_atomic(&dir.join(&meta.tensors), &file)?;
    let json = serde_json::to_vec_pretty(&meta)
        .map_err(|e| Error::Model(format!("cannot serialise checkpoint metadata: {e}")))?;
    let json_path = dir.join(format!("{name}.json"));
    write_atomic(&json_path, &json)?;
    prune(dir, keep)?;
    Ok(json_path)
}

/// Steps of the complete checkpoints (JSON present) in `dir`, newest first.
pub fn list(dir: &Path) -> Result<Vec<u64>> {
    let mut steps = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(steps),
        Err(e) => {
            return Err(Error::Io {
                path: dir.to_path_buf(),
                source: e,
            })
        }
    };
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(s) = name
            .strip_prefix("ckpt-")
            .and_then(|s| s.strip_suffix(".json"))
        {
            if let Ok(step) = s.parse::<u64>() {
                steps.push(step);
            }
        }
    }
    steps.sort_unstable_by(|a, b| b.cmp(a));
    Ok(steps)
}

fn prune(dir: &Path, keep: usize) -> Result<()> {
    for step in list(dir)?.into_iter().skip(keep) {
        let name = stem(step);
        // The JSON first, so that a kill in between leaves only an orphan tensor file.
        let _ = std::fs::remove_file(dir.join(format!("{name}.json")));
        let _ = std::fs::remove_file(dir.join(format!("{name}.safetensors")));
    }
    Ok(())
}

/// Loads checkpoint `step` from `dir`, verifying size and checksum.
pub fn load(dir: &Path, step: u64) -> Result<Checkpoint> {
    let json_path = dir.join(format!("{}.json", stem(step)));
    let bad = |why: String| Error::BadCheckpoint {
        path: json_path.clone(),
        why,
        hint: String::new(),
    };
    let text = std::fs::read(&json_path).map_err(|e| bad(e.to_string()))?;
    let meta: CheckpointMeta =
        serde_json::from_slice(&text).map_err(|e| bad(format!("malformed metadata: {e}")))?;
    let tensor_path = dir.join(&meta.tensors);
    let bad = |why: String| Error::BadCheckpoint {
        path: tensor_path.clone(),
        why,
        hint: String::new(),
    };
    let bytes = std::fs::read(&tensor_path).map_err(|e| bad(e.to_string()))?;
    if bytes.len() as u64 != meta.bytes {
        return Err(bad(format!(
            "{} bytes on disk, {} written (truncated)",
            bytes.len(),
            meta.bytes
        )));
    }
    if fnv1a(&bytes) != meta.checksum {
        return Err(bad("checksum mismatch (corrupt)".into()));
    }
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let mut named: Vec<(String, HostParam)> = Vec::new();
    for (name, view) in st.tensors() {
        let data = f32_values(&view)
            .map_err(|_| bad(format!("tensor {name} is {:?}, expected F32", view.dtype())))?;
        named.push((
            name.clone(),
            HostParam {
                name: String::new(),
                shape: view.shape().to_vec(),
                data,
            },
        ));
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut groups: BTreeMap<String, Vec<HostParam>> = BTreeMap::new();
    for (full, mut p) in named {
        let mut parts = full.splitn(3, '/');
        let (Some(group), Some(_), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad(format!("unexpected tensor name {full}")));
        };
        p.name = name.to_string();
        groups.entry(group.to_string()).or_default().push(p);
    }
    Ok(Checkpoint {
        meta,
        groups,
        path: json_path,
        warnings: Vec::new(),
    })
}

/// The newest checkpoint in `dir`, if any, for readers (sampling, evaluation): a damaged
/// newest checkpoint is an error naming it, never silently replaced by an older state. The
/// hint says whether an earlier one is intact and that training resumes from it.
pub fn latest(dir: &Path) -> Result<Option<Checkpoint>> {
    let steps = list(dir)?;
    let Some(&newest) = steps.first() else {
        return Ok(None);
    };
    match load(dir, newest) {
        Ok(c) => Ok(Some(c)),
        Err(Error::BadCheckpoint { path, why, .. }) => {
            let hint = match steps.iter().skip(1).find(|&&s| load(dir, s).is_ok()) {
                Some(s) => format!(
                    "The checkpoint of step {s} is intact: `curadiff train` with the same \
                     config resumes from it (moving this one aside as *.corrupt), or delete {} \
                     and its .json to read it",
                    path.with_extension("").display()
                ),
                None => "No intact earlier checkpoint exists; start a new run directory".into(),
            };
            Err(Error::BadCheckpoint { path, why, hint })
        }
        Err(e) => Err(e),
    }
}

/// The newest intact checkpoint in `dir`, if any, for resuming training. Damaged checkpoints
/// newer than it (a truncated or corrupted tensor file, a malformed JSON) are moved aside as
/// `*.corrupt` (kept for inspection, never deleted) and named in [`Checkpoint::warnings`], so
/// that training continues from the last good state. When no checkpoint is intact, the error
/// names the newest one and nothing is moved.
pub fn resume_point(dir: &Path) -> Result<Option<Checkpoint>> {
    let steps = list(dir)?;
    let Some(&newest) = steps.first() else {
        return Ok(None);
    };
    let mut damaged: Vec<(u64, String)> = Vec::new();
    let mut first_error = None;
    for &step in &steps {
        match load(dir, step) {
            Ok(mut c) => {
                for (s, why) in damaged {
                    c.warnings.push(set_aside(dir, s, &why)?);
                }
                return Ok(Some(c));
            }
            Err(Error::BadCheckpoint { path, why, .. }) => {
                damaged.push((step, why.clone()));
                first_error.get_or_insert((path, why));
            }
            Err(e) => return Err(e),
        }
    }
    let (path, why) = first_error.unwrap_or_else(|| (dir.join(stem(newest)), String::new()));
    Err(Error::BadCheckpoint {
        path,
        why,
        hint: "No intact checkpoint exists in this folder; start a new run directory".into(),
    })
}

/// Renames damaged checkpoint `step` to `*.corrupt` and says so.
fn set_aside(dir: &Path, step: u64, why: &str) -> Result<String> {
    for ext in ["json", "safetensors"] {
        let from = dir.join(format!("{}.{ext}", stem(step)));
        if from.exists() {
            let to = dir.join(format!("{}.{ext}.corrupt", stem(step)));
            std::fs::rename(&from, &to).map_err(|e| Error::Io {
                path: from.clone(),
                source: e,
            })?;
        }
    }
    Ok(format!(
        "checkpoint {} is damaged ({why}); moved aside as {}.*.corrupt, resuming from the \
         previous intact one",
        dir.join(stem(step)).display(),
        stem(step)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(step: u64) -> CheckpointMeta {
        CheckpointMeta {
            step,
            nimg: step * 10,
            nimg_scored: step * 10,
            seconds: BTreeMap::new(),
            tensors: String::new(),
            bytes: 0,
            checksum: String::new(),
            extra: serde_json::Value::Null,
        }
    }

    fn groups(v: f32) -> BTreeMap<String, Vec<HostParam>> {
        let p = |name: &str, shape: Vec<usize>| HostParam {
            name: name.into(),
            shape: shape.clone(),
            data: (0..shape.iter().product::<usize>())
                .map(|i| v + i as f32)
                .collect(),
        };
        // 12 parameters so that the stored order must survive name sorting ("10" < "2").
        let net: Vec<HostParam> = (0..12).map(|i| p(&format!("l{i}.w"), vec![2, 3])).collect();
        BTreeMap::from([("net".to_string(), net)])
    }

    #[test]
    fn round_trip_keeps_order_and_detects_truncation() {
        let dir = std::env::temp_dir().join(format!("curadiff-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for step in 1..=3 {
            save(&dir, meta(step), &groups(step as f32), 2).unwrap();
        }
        assert_eq!(list(&dir).unwrap(), vec![3, 2]); // pruned to the newest 2
        let c = latest(&dir).unwrap().unwrap();
        assert_eq!(c.meta.step, 3);
        assert_eq!(c.groups["net"], groups(3.0)["net"]);
        // Truncate the newest tensor file: a reader gets an error naming it and the intact
        // step 2; resuming falls back to step 2, names the damaged file, and keeps it as
        // *.corrupt.
        let t = dir.join("ckpt-000000003.safetensors");
        let bytes = std::fs::read(&t).unwrap();
        std::fs::write(&t, &bytes[..bytes.len() / 2]).unwrap();
        let e = load(&dir, 3).unwrap_err().to_string();
        assert!(
            e.contains("ckpt-000000003.safetensors") && e.contains("truncated"),
            "{e}"
        );
        let e = latest(&dir).unwrap_err().to_string();
        assert!(
            e.contains("ckpt-000000003") && e.contains("step 2 is intact"),
            "{e}"
        );
        assert_eq!(list(&dir).unwrap(), vec![3, 2]);
        let c = resume_point(&dir).unwrap().unwrap();
        assert_eq!(c.meta.step, 2);
        assert_eq!(c.groups["net"], groups(2.0)["net"]);
        assert_eq!(c.warnings.len(), 1);
        assert!(
            c.warnings[0].contains("ckpt-000000003"),
            "{}",
            c.warnings[0]
        );
        assert_eq!(list(&dir).unwrap(), vec![2]);
        let aside = dir.join("ckpt-000000003.safetensors.corrupt");
        assert_eq!(std::fs::read(aside).unwrap().len(), bytes.len() / 2);
        assert!(dir.join("ckpt-000000003.json.corrupt").is_file());
        // With every checkpoint damaged: an error, and nothing is moved.
        let t = dir.join("ckpt-000000002.safetensors");
        let bytes = std::fs::read(&t).unwrap();
        std::fs::write(&t, &bytes[..10]).unwrap();
        let e = resume_point(&dir).unwrap_err().to_string();
        assert!(
            e.contains("ckpt-000000002") && e.contains("No intact"),
            "{e}"
        );
        assert_eq!(list(&dir).unwrap(), vec![2]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
