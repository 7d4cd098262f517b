//! The Ambient-Omni locality job the CLI runs (`curadiff ambient crops`, reference §C.4): on
//! a pool with an extra, out-of-distribution source (`data.extra`), derive the locality map
//! from the pool's clean in-distribution examples ([`crate::curation::ambient::locality`]),
//! train the crop classifiers (in-distribution = the clean examples, out = the extra ones;
//! [`crate::curation::ambient::crops`]), and give each extra example a ceiling σ_max from the
//! largest crop side at which it passes. It writes, in OUT:
//!
//! - `crops.npy` (float32 `[N, S]`, the pass rate of each extra example at each side) with
//!   `crops.npy.json` ([`CropsMeta`]: ids, sides, chosen side and σ_max per example, the
//!   locality map, the configs, seconds), so ceilings can be re-read without the classifiers;
//! - `windows.npy` + `.json` for `data.windows`: each extra example's row
//!   (id, [`NEVER`], σ_max), so it trains only below its ceiling; with `floors`, the rows of
//!   an `ambient annotate` windows file (the corrupted examples' floors) as well. The
//!   windows' seconds: the classifiers' training, the annotation, and the floors' own.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::curation::ambient::crops::{self, CropConfig};
use crate::curation::ambient::locality::{self, LocalityConfig, LocalityMap};
use crate::data::fingerprint::fingerprint;
use crate::data::images::Source;
use crate::data::npy;
use crate::data::windows::{self, NoiseWindow};
use crate::error::{Error, Result};
use crate::train::config::DataConfig;
use crate::train::image_data::pool;

/// The floor of an out-of-distribution example: far above any σ a schedule draws (EDM's
/// σ_max is 80; the reference writes 300), so it trains only below its ceiling.
pub const NEVER: f64 = 1.0e6;

/// A crops job.
#[derive(Debug, Clone)]
pub struct CropsRequest {
    /// The run's data.* values, with its `data.extra` (and `data.corrupt`, if any).
    pub data: DataConfig,
    pub data_seed: u64,
    pub crops: CropConfig,
    pub locality: LocalityConfig,
    /// A windows file of `ambient annotate` for the same pool without its extra source,
    /// merged into the output.
    pub floors: Option<PathBuf>,
    pub out: PathBuf,
}

/// The sidecar of `crops.npy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CropsMeta {
    pub ids: Vec<u64>,
    pub sizes: Vec<usize>,
    /// The chosen side of each example (1: none passed).
    pub side: Vec<usize>,
    pub sigma_max: Vec<f64>,
    pub map: LocalityMap,
    pub config: CropConfig,
    /// Fingerprint of the pool (with the extra source).
    pub fingerprint: String,
    /// In-distribution images the classifiers and the map saw.
    pub inside: usize,
    pub classifier_seconds: f64,
    pub annotate_seconds: f64,
    pub map_seconds: f64,
}

/// What the job reports.
#[derive(Debug, Clone, Serialize)]
pub struct CropsSummary {
    pub annotated: usize,
    pub inside: usize,
    pub windows: PathBuf,
    pub crops: PathBuf,
    /// How many extra examples chose each side (side, count), ascending.
    pub sides: Vec<(usize, usize)>,
    /// σ_max of the configured sides (side, σ_max).
    pub map: Vec<(usize, f64)>,
    pub classifier_seconds: f64,
    pub annotate_seconds: f64,
    pub map_seconds: f64,
    pub curate_seconds: f64,
    pub floors: usize,
}

/// Runs `req`; `progress(side, done, total, loss)` during the classifiers' training.
pub fn crops(
    req: &CropsRequest,
    progress: &mut dyn FnMut(usize, usize, usize, f64),
) -> Result<CropsSummary> {
    if !req.data.extra.is_on() {
        return Err(Error::Config(
            "ambient crops annotates the examples of an extra source: give one (data.extra, \
             e.g. --extra mnist)"
                .into(),
        ));
    }
    let set = pool(&req.data, req.data_seed)?;
    req.crops.validate(set.height.min(set.width))?;
    let inside_rows = clean_rows(&set);
    let outside_rows: Vec<usize> = (0..set.len())
        .filter(|&i| matches!(set.source[i], Source::OutOfDistribution { .. }))
        .collect();
    let inside = set.subset(&inside_rows);
    let outside = set.subset(&outside_rows);
    let t = Instant::now();
    let map = locality::derive(&inside, &req.locality)?;
    let map_seconds = t.elapsed().as_secs_f64();
    let clf = crops::train(&inside, &outside, &req.crops, progress)?;
    let t = Instant::now();
    let all: Vec<usize> = (0..outside.len()).collect();
    let rates = clf.pass_rates(&outside, &all)?;
    let annotate_seconds = t.elapsed().as_secs_f64();
    let side = crops::chosen_sides(&rates, &req.crops.sizes, req.crops.threshold);
    let sigma_max = side
        .iter()
        .map(|&s| map.sigma_max_of(s))
        .collect::<Result<Vec<f64>>>()?;
    let mut rows: Vec<(u64, NoiseWindow)> = outside
        .ids
        .iter()
        .zip(&sigma_max)
        .map(|(&id, &hi)| {
            (
                id,
                NoiseWindow {
                    sigma_min: NEVER,
                    sigma_max: hi,
                },
            )
        })
        .collect();
    let mut floor_seconds = 0.0;
    let mut floors = 0;
    if let Some(path) = &req.floors {
        let without = DataConfig {
            extra: Default::default(),
            ..req.data.clone()
        };
        let base = pool(&without, req.data_seed)?;
        let w = windows::apply(&base, &fingerprint(&base), path)?;
        floors = w.named.len();
        floor_seconds = w.seconds;
        rows.extend(w.named.iter().map(|&i| (base.ids[i], w.windows[i])));
    }
    let curate_seconds = map_seconds + clf.seconds + annotate_seconds + floor_seconds;
    crate::fsutil::create_dir(&req.out)?;
    let meta = CropsMeta {
        ids: outside.ids.clone(),
        sizes: req.crops.sizes.clone(),
        side: side.clone(),
        sigma_max,
        map: map.clone(),
        config: req.crops.clone(),
        fingerprint: fingerprint(&set),
        inside: inside.len(),
        classifier_seconds: clf.seconds,
        annotate_seconds,
        map_seconds,
    };
    let crops_path = req.out.join("crops.npy");
    npy::write_f32(&crops_path, &[outside.len(), req.crops.sizes.len()], &rates)?;
    let json = serde_json::to_string_pretty(&meta).map_err(|e| Error::BadFile {
        path: crops_path.clone(),
        why: e.to_string(),
    })?;
    crate::fsutil::write_atomic(&crate::data::subset::sidecar(&crops_path), json.as_bytes())?;
    let windows_path = req.out.join("windows.npy");
    windows::write(&windows_path, &set, &rows, curate_seconds)?;
    let mut sides: Vec<(usize, usize)> = Vec::new();
    for s in std::iter::once(1).chain(req.crops.sizes.iter().copied()) {
        let c = side.iter().filter(|&&v| v == s).count();
        sides.push((s, c));
    }
    let map_pairs = req
        .crops
        .sizes
        .iter()
        .map(|&s| Ok((s, map.sigma_max_of(s)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(CropsSummary {
        annotated: outside.len(),
        inside: inside.len(),
        windows: windows_path,
        crops: crops_path,
        sides,
        map: std::iter::once((1, map.sigma_max_of(1)?))
            .chain(map_pairs)
            .collect(),
        classifier_seconds: clf.seconds,
        annotate_seconds,
        map_seconds,
        curate_seconds,
        floors,
    })
}

/// The locality map of the clean in-distribution examples of `data`'s pool.
pub fn locality_map(
    data: &DataConfig,
    data_seed: u64,
    cfg: &LocalityConfig,
) -> Result<LocalityMap> {
    let set = pool(data, data_seed)?;
    locality::derive(&set.subset(&clean_rows(&set)), cfg)
}

/// The positions of `set`'s clean in-distribution examples (neither corrupted nor extra).
fn clean_rows(set: &crate::data::images::ImageSet) -> Vec<usize> {
    (0..set.len())
        .filter(|&i| set.source[i] == Source::Real)
        .collect()
}

/// Reads the sidecar of a `crops.npy`.
pub fn read_meta(path: &Path) -> Result<CropsMeta> {
    let side = crate::data::subset::sidecar(path);
    let text = std::fs::read_to_string(&side).map_err(|e| Error::BadFile {
        path: side.clone(),
        why: format!("cannot read it ({e}); `curadiff ambient crops` writes it"),
    })?;
    serde_json::from_str(&text).map_err(|e| Error::BadFile {
        path: side,
        why: format!("not a crops sidecar: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::extra::ExtraConfig;
    use crate::data::images::tests::fixture_dir;
    use crate::train::image_data::training_data;

    /// The committed Fashion-MNIST fixture with the shipped MNIST sample as extra: crop
    /// annotation writes windows that training reads back, every extra example below its
    /// ceiling and never above.
    #[test]
    fn crops_write_windows_that_training_reads() {
        let dir = std::env::temp_dir().join(format!("curadiff-crops-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut data = crate::train::presets::preset("fmnist").unwrap().data;
        data.path = fixture_dir().display().to_string();
        data.extra = ExtraConfig {
            kind: "mnist".into(),
            path: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/mnist-sample")
                .display()
                .to_string(),
            count: 0,
        };
        let req = CropsRequest {
            data: data.clone(),
            data_seed: 0,
            crops: CropConfig {
                sizes: vec![4, 28],
                epochs: 1,
                ..Default::default()
            },
            locality: LocalityConfig {
                points: 8,
                ..Default::default()
            },
            floors: None,
            out: dir.clone(),
        };
        let s = crops(&req, &mut |_, _, _, _| {}).unwrap();
        assert_eq!(s.annotated, 20);
        assert_eq!(s.sides.iter().map(|p| p.1).sum::<usize>(), 20);
        let meta = read_meta(&s.crops).unwrap();
        assert_eq!(meta.ids[0], crate::data::extra::EXTRA_ID_BASE);
        let d = DataConfig {
            windows: s.windows.display().to_string(),
            ..data.clone()
        };
        let t = training_data(&d, 0).unwrap();
        let w = t.windows.unwrap();
        let n_in = t.set.len() - 20;
        for (k, i) in (n_in..t.set.len()).enumerate() {
            assert_eq!(w[i].sigma_min, NEVER);
            assert_eq!(w[i].sigma_max, meta.sigma_max[k]);
            assert!(!w[i].admits(80.0, 1.0));
        }
        assert!(w[..n_in].iter().all(|v| *v == NoiseWindow::CLEAN));
        // No extra source: refused by name.
        let e = crops(
            &CropsRequest {
                data: DataConfig {
                    extra: Default::default(),
                    ..data
                },
                ..req
            },
            &mut |_, _, _, _| {},
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("data.extra"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
