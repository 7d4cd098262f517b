//! The history of adaptive class weights: `RUN/reweight/weights.jsonl`, one line per update,
//! `{"update": N, "weights": [α'_0, …]}`. On resume the lines after the checkpoint's update
//! count are dropped (a killed run may have written more), so the history matches an
//! uninterrupted run.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The history file of run `root`.
pub fn path(root: &Path) -> PathBuf {
    root.join("reweight").join("weights.jsonl")
}

/// Appends update `update`'s weights.
pub fn append(root: &Path, update: u64, weights: &[f64]) -> Result<()> {
    let p = path(root);
    if let Some(dir) = p.parent() {
        crate::fsutil::create_dir(dir)?;
    }
    let line = serde_json::json!({"update": update, "weights": weights});
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .map_err(|e| Error::Io {
            path: p.clone(),
            source: e,
        })?;
    writeln!(f, "{line}").map_err(|e| Error::Io { path: p, source: e })
}

/// Keeps the first `updates` lines of the history (all of it when shorter).
pub fn truncate(root: &Path, updates: u64) -> Result<()> {
    let p = path(root);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::Io { path: p, source: e }),
    };
    let kept: String = text
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .take(updates as usize)
        .collect();
    if kept.len() == text.len() {
        return Ok(());
    }
    crate::fsutil::write_atomic(&p, kept.as_bytes())
}

/// The weights of every update in the history, in order.
pub fn read(root: &Path) -> Result<Vec<Vec<f64>>> {
    let p = path(root);
    let text = std::fs::read_to_string(&p).map_err(|e| Error::Io {
        path: p.clone(),
        source: e,
    })?;
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| serde_json::from_value(v.get("weights")?.clone()).ok())
                .ok_or_else(|| Error::BadFile {
                    path: p.clone(),
                    why: format!("line {} is not a weights record", i + 1),
                })
        })
        .collect()
}
