//! Post-hoc EMA snapshot files: `RUN/phema/phema-<nimg:012>.safetensors`, every profile a
//! run keeps at one time, with the time (`nimg`), the σ_rels and the γs in the file's
//! metadata. Tensors are named `<profile>/<index:04>/<parameter>`. Written atomically
//! (temporary file + rename), so a kill leaves either no snapshot or a complete one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};

use crate::error::{Error, Result};
use crate::models::params::HostParam;
use crate::train::ema::Profile;

/// The folder of a run's snapshots.
pub fn dir(run: &Path) -> PathBuf {
    run.join("phema")
}

/// The file of the snapshot at `nimg`.
pub fn path(run: &Path, nimg: u64) -> PathBuf {
    dir(run).join(format!("phema-{nimg:012}.safetensors"))
}

/// The header of a snapshot: its time and profiles.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotInfo {
    pub path: PathBuf,
    pub nimg: u64,
    pub sigma_rels: Vec<f64>,
    pub gammas: Vec<f64>,
}

/// Writes the snapshot of `profiles` at `nimg` into `run`'s phema folder.
pub fn write(run: &Path, nimg: u64, profiles: &[Profile]) -> Result<PathBuf> {
    crate::fsutil::create_dir(&dir(run))?;
    let mut named: Vec<(String, &HostParam)> = Vec::new();
    for (j, prof) in profiles.iter().enumerate() {
        for (i, p) in prof.params.iter().enumerate() {
            named.push((format!("{j}/{i:04}/{}", p.name), p));
        }
    }
    let meta = serde_json::json!({
        "nimg": nimg,
        "sigma_rels": profiles.iter().map(|p| p.sigma_rel).collect::<Vec<_>>(),
        "gammas": profiles.iter().map(|p| p.gamma).collect::<Vec<_>>(),
    });
    let file = serialize(&named, &meta)?;
    let p = path(run, nimg);
    crate::fsutil::write_atomic(&p, &file)?;
    Ok(p)
}

/// The metadata key holding a file's JSON description. One key, because safetensors writes
/// its metadata map in hash order: a single entry keeps the bytes reproducible.
const META_KEY: &str = "curadiff.phema";

/// A safetensors file of f32 tensors `named` with the JSON description `meta`.
pub(crate) fn serialize(
    named: &[(String, &HostParam)],
    meta: &serde_json::Value,
) -> Result<Vec<u8>> {
    let raw: Vec<(&str, Vec<u8>)> = named
        .iter()
        .map(|(n, p)| {
            (
                n.as_str(),
                p.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    let mut views = Vec::with_capacity(raw.len());
    for ((name, bytes), (_, p)) in raw.iter().zip(named) {
        let view = TensorView::new(Dtype::F32, p.shape.clone(), bytes)
            .map_err(|e| Error::Model(format!("cannot store tensor {name}: {e}")))?;
        views.push((name.to_string(), view));
    }
    let meta = HashMap::from([(META_KEY.to_string(), meta.to_string())]);
    safetensors::serialize(views, &Some(meta))
        .map_err(|e| Error::Model(format!("cannot serialise tensors: {e}")))
}

fn bad(path: &Path, why: impl Into<String>) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

fn info_of(path: &Path, bytes: &[u8]) -> Result<SnapshotInfo> {
    // The header alone: 8 bytes of length, then JSON with the metadata under "__metadata__".
    let header: serde_json::Value = serde_json::from_slice(bytes.get(8..).unwrap_or_default())
        .map_err(|e| bad(path, format!("not a safetensors file: {e}")))?;
    let text = header
        .get("__metadata__")
        .and_then(|m| m.get(META_KEY))
        .and_then(|v| v.as_str())
        .ok_or_else(|| bad(path, format!("no '{META_KEY}' in its metadata")))?;
    #[derive(serde::Deserialize)]
    struct Meta {
        nimg: u64,
        sigma_rels: Vec<f64>,
        gammas: Vec<f64>,
    }
    let Meta {
        nimg,
        sigma_rels,
        gammas,
    } = serde_json::from_str(text).map_err(|e| bad(path, format!("malformed metadata: {e}")))?;
    if sigma_rels.len() != gammas.len() {
        return Err(bad(path, "as many σ_rels as γs expected"));
    }
    Ok(SnapshotInfo {
        path: path.to_path_buf(),
        nimg,
        sigma_rels,
        gammas,
    })
}

/// The snapshots of `run`, oldest first (an empty list when there are none).
pub fn list(run: &Path) -> Result<Vec<SnapshotInfo>> {
    let d = dir(run);
    let rd = match std::fs::read_dir(&d) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::Io { path: d, source: e }),
    };
    let mut paths: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("phema-") && n.ends_with(".safetensors"))
        })
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            // Only the header is needed: read its length, then the header.
            let bytes = read_header(p)?;
            info_of(p, &bytes)
        })
        .collect()
}

/// The first bytes of a safetensors file up to the end of its JSON header.
fn read_header(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(io)?;
    let n = u64::from_le_bytes(len) as usize;
    if n > 100_000_000 {
        return Err(bad(path, "implausible header length"));
    }
    let mut out = len.to_vec();
    out.resize(8 + n, 0);
    f.read_exact(&mut out[8..]).map_err(io)?;
    Ok(out)
}

/// The profiles of one snapshot, one parameter list each, in the file's profile order.
pub fn read(info: &SnapshotInfo) -> Result<Vec<Vec<HostParam>>> {
    let path = &info.path;
    let bytes = read_bytes(path)?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(path, format!("not a safetensors file: {e}")))?;
    let mut named: Vec<(usize, String, HostParam)> = Vec::new();
    for (full, view) in st.tensors() {
        let mut parts = full.splitn(3, '/');
        let (Some(j), Some(i), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad(path, format!("unexpected tensor name {full}")));
        };
        let j: usize = j
            .parse()
            .map_err(|_| bad(path, format!("unexpected tensor name {full}")))?;
        if view.dtype() != Dtype::F32 || j >= info.sigma_rels.len() {
            return Err(bad(path, format!("unexpected tensor {full}")));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        named.push((
            j,
            i.to_string(),
            HostParam {
                name: name.to_string(),
                shape: view.shape().to_vec(),
                data,
            },
        ));
    }
    named.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let mut out: Vec<Vec<HostParam>> = vec![Vec::new(); info.sigma_rels.len()];
    for (j, _, p) in named {
        out[j].push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_round_trips_with_its_metadata() {
        let d = std::env::temp_dir().join(format!("curadiff-phema-snap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let ps = vec![
            HostParam {
                name: "a.weight".into(),
                shape: vec![2, 3],
                data: vec![1.0, -2.0, 3.0, 0.5, 0.25, 7.0],
            },
            HostParam {
                name: "b".into(),
                shape: vec![1],
                data: vec![9.0],
            },
        ];
        let profiles = [Profile::new(0.05, &ps), Profile::new(0.10, &ps)];
        write(&d, 4096, &profiles).unwrap();
        write(&d, 512, &profiles[..1]).unwrap();
        let l = list(&d).unwrap();
        assert_eq!(l.iter().map(|s| s.nimg).collect::<Vec<_>>(), [512, 4096]);
        assert_eq!(l[1].sigma_rels, [0.05, 0.10]);
        assert_eq!(l[1].gammas, [profiles[0].gamma, profiles[1].gamma]);
        let back = read(&l[1]).unwrap();
        assert_eq!(back, vec![ps.clone(), ps]);
        assert!(!dir(&d)
            .join("phema-000000004096.safetensors.partial")
            .exists());
    }
}
