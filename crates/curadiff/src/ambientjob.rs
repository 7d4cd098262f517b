//! The Ambient-Omni jobs the CLI runs: train the noise-conditional classifier on a clean
//! source and its corrupted copy, and annotate a pool's corrupted examples with noise floors
//! (by the classifier, by a fixed σ_tn, or re-derived from stored curves), writing
//!
//! - `OUT/curves.npy` + `OUT/curves.npy.json`: p(corrupted) `[N, K]` keyed by id
//!   ([`crate::curation::ambient::curves`]; classifier mode only);
//! - `OUT/windows.npy` + `OUT/windows.npy.json`: rows (id, σ_tn, 0) for `data.windows`
//!   ([`crate::data::windows`]), their seconds the classifier's training plus the annotation.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::curation::ambient::annotate::{self, AnnotateConfig};
use crate::curation::ambient::classifier::{self, NoiseClassifier, NoiseClassifierConfig};
use crate::curation::ambient::curves::{self, CurvesMeta};
use crate::curation::ambient::threshold::{self, Floors, ThresholdConfig};
use crate::data::corrupt::config::CorruptConfig;
use crate::data::fingerprint::fingerprint;
use crate::data::images::{ImageSet, Source};
use crate::data::windows;
use crate::error::{Error, Result};
use crate::train::config::DataConfig;
use crate::train::image_data::{clean_pool, pool};

/// What `ambient classifier` reports.
#[derive(Debug, Clone, Serialize)]
pub struct ClassifierReport {
    pub classifier: PathBuf,
    pub train_images: usize,
    pub seconds: f64,
    /// (σ, accuracy) on the check images, clean and corrupted counted alike.
    pub accuracy: Vec<(f64, f64)>,
    /// Check images: held out from training when the source has them, else training images.
    pub check_images: usize,
    pub held_out: bool,
    pub config: NoiseClassifierConfig,
}

/// The σ at which the classifier's accuracy is reported.
pub const CHECK_SIGMAS: [f64; 5] = [0.01, 0.1, 0.5, 2.0, 20.0];

/// Trains the classifier on the first `first` examples (0: all) of `data`'s clean pool and
/// its copy corrupted by `corrupt`, saves it to `out` and reports its accuracy by σ on up to
/// 1,000 further examples of the source (or the training ones when there are none).
pub fn train_classifier(
    data: &DataConfig,
    data_seed: u64,
    first: usize,
    corrupt: &CorruptConfig,
    cfg: &NoiseClassifierConfig,
    out: &Path,
    progress: &mut dyn FnMut(usize, usize, f64),
) -> Result<ClassifierReport> {
    let all = clean_pool(data, data_seed)?;
    let n = if first == 0 {
        all.len()
    } else {
        first.min(all.len())
    };
    let train = all.subset(&(0..n).collect::<Vec<_>>());
    let clf = classifier::train(&train, corrupt, cfg, progress)?;
    clf.save(out)?;
    let held_out = n < all.len();
    let check = if held_out {
        all.subset(&(n..all.len().min(n + 1000)).collect::<Vec<_>>())
    } else {
        train.subset(&(0..n.min(1000)).collect::<Vec<_>>())
    };
    let mut acc = Vec::new();
    for s in CHECK_SIGMAS {
        acc.push((s, clf.accuracy(&check, corrupt, s)?));
    }
    Ok(ClassifierReport {
        classifier: out.to_path_buf(),
        train_images: n,
        seconds: clf.seconds,
        accuracy: acc,
        check_images: check.len(),
        held_out,
        config: cfg.clone(),
    })
}

/// How the floors are found.
#[derive(Debug, Clone)]
pub enum FloorSource {
    /// Curves of this classifier file, then the threshold rule.
    Classifier(PathBuf),
    /// The same σ_tn for every annotated example (no classifier).
    Fixed(f64),
    /// The threshold rule on a stored curves file (no classifier, no data needed).
    FromCurves(PathBuf),
}

/// An annotation job.
#[derive(Debug, Clone)]
pub struct AnnotateRequest {
    /// The run's data.* values (with its `data.corrupt`): needed to annotate; with
    /// [`FloorSource::FromCurves`] optional, and when given the curves must be made for it.
    pub data: Option<DataConfig>,
    /// The run's seed (the long-tailed cut depends on it).
    pub data_seed: u64,
    pub floors: FloorSource,
    /// Annotate every example, not only the corrupted ones.
    pub all: bool,
    pub grid: AnnotateConfig,
    pub threshold: ThresholdConfig,
    /// Output folder.
    pub out: PathBuf,
}

/// What an annotation wrote.
#[derive(Debug, Clone, Serialize)]
pub struct AnnotateSummary {
    pub annotated: usize,
    pub windows: PathBuf,
    pub curves: Option<PathBuf>,
    /// Seconds of the annotation itself (curves), and per image.
    pub seconds: f64,
    pub images_per_s: f64,
    /// Curation seconds booked to the windows (classifier training + annotation).
    pub curate_seconds: f64,
    /// σ_tn quantiles 0, 0.1, 0.5, 0.9, 1.
    pub sigma_tn_quantiles: Vec<f64>,
    pub never_crossed: usize,
    pub warnings: Vec<String>,
}

fn quantiles(mut v: Vec<f64>) -> Vec<f64> {
    if v.is_empty() {
        return Vec::new();
    }
    v.sort_by(f64::total_cmp);
    [0.0, 0.1, 0.5, 0.9, 1.0]
        .iter()
        .map(|q| v[((v.len() - 1) as f64 * q).round() as usize])
        .collect()
}

/// The positions of the examples to annotate: the corrupted ones, or all with `all`.
fn targets(set: &ImageSet, all: bool) -> Result<Vec<usize>> {
    let rows: Vec<usize> = (0..set.len())
        .filter(|&i| all || matches!(set.source[i], Source::Corrupted { .. }))
        .collect();
    if rows.is_empty() {
        return Err(Error::Config(
            "the data has no corrupted example to annotate; give the run's corruption \
             (--kind … as its data.corrupt), or annotate every example with --all"
                .into(),
        ));
    }
    Ok(rows)
}

fn needs_data(req: &AnnotateRequest) -> Result<&DataConfig> {
    req.data
        .as_ref()
        .ok_or_else(|| Error::Config("annotation needs the data (the run's data.* values)".into()))
}

/// Runs `req`; `progress(done, total)` during the curves.
pub fn annotate(
    req: &AnnotateRequest,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<AnnotateSummary> {
    req.threshold.validate()?;
    let windows_path = req.out.join("windows.npy");
    let mut curves_path = None;
    let (floors, fp, seconds, curate_seconds, n): (Floors, String, f64, f64, usize) =
        match &req.floors {
            FloorSource::FromCurves(path) => {
                let (p, meta) = curves::read(path)?;
                if let Some(d) = &req.data {
                    curves::check_made_for(path, &meta, &pool(d, req.data_seed)?)?;
                }
                let f = threshold::floors(&meta.ids, &meta.sigmas, &p, &req.threshold);
                let cs = meta.classifier_seconds + meta.seconds;
                (f, meta.fingerprint, 0.0, cs, meta.ids.len())
            }
            FloorSource::Fixed(s) => {
                let set = pool(needs_data(req)?, req.data_seed)?;
                let rows = targets(&set, req.all)?;
                let ids: Vec<u64> = rows.iter().map(|&i| set.ids[i]).collect();
                (
                    threshold::fixed(&ids, *s)?,
                    fingerprint(&set),
                    0.0,
                    0.0,
                    ids.len(),
                )
            }
            FloorSource::Classifier(path) => {
                req.grid.validate()?;
                let clf = NoiseClassifier::load(path)?;
                let set = pool(needs_data(req)?, req.data_seed)?;
                clf.check_fits(&set, path)?;
                let rows = targets(&set, req.all)?;
                let ids: Vec<u64> = rows.iter().map(|&i| set.ids[i]).collect();
                let t = Instant::now();
                let p = annotate::curves(&clf, &set, &rows, &req.grid, progress)?;
                let seconds = t.elapsed().as_secs_f64();
                let meta = CurvesMeta {
                    ids: ids.clone(),
                    sigmas: req.grid.grid(),
                    draws: req.grid.draws,
                    seed: req.grid.seed,
                    fingerprint: fingerprint(&set),
                    classifier: path.display().to_string(),
                    classifier_seconds: clf.seconds,
                    seconds,
                };
                let cp = req.out.join("curves.npy");
                curves::write(&cp, &p, &meta)?;
                // The floors come from the stored curves, as with --from-curves: JSON does
                // not promise to give back the last bit of the σ grid, so one path keeps
                // both modes' windows identical.
                let (p, meta) = curves::read(&cp)?;
                curves_path = Some(cp);
                let f = threshold::floors(&meta.ids, &meta.sigmas, &p, &req.threshold);
                (
                    f,
                    meta.fingerprint,
                    seconds,
                    clf.seconds + seconds,
                    ids.len(),
                )
            }
        };
    crate::fsutil::create_dir(&req.out)?;
    windows::write_for(&windows_path, &fp, &floors.rows, curate_seconds)?;
    Ok(AnnotateSummary {
        annotated: n,
        windows: windows_path,
        curves: curves_path,
        seconds,
        images_per_s: if seconds > 0.0 {
            n as f64 / seconds
        } else {
            0.0
        },
        curate_seconds,
        sigma_tn_quantiles: quantiles(floors.rows.iter().map(|r| r.1.sigma_min).collect()),
        never_crossed: floors.never.len(),
        warnings: floors.warning().into_iter().collect(),
    })
}

/// One windows file's floors in [`floor_histogram`].
#[derive(Debug, Clone, Serialize)]
pub struct FloorHistogram {
    pub label: String,
    pub file: PathBuf,
    /// Examples the file names.
    pub examples: usize,
    /// σ_tn quantiles 0, 0.1, 0.5, 0.9, 1.
    pub sigma_tn_quantiles: Vec<f64>,
    /// (σ_tn, share of the examples) for every distinct floor, ascending.
    pub shares: Vec<(f64, f64)>,
}

/// The distribution of the noise floors σ_tn of annotation windows files, one per
/// (label, file) (e.g. one per corruption strength), drawn as `stem.svg` and `stem.png`: the
/// share of each file's examples at each floor, on a log σ axis. Floors from the classifier
/// lie on the annotation's σ grid, so shares are per grid point.
pub fn floor_histogram(files: &[(String, PathBuf)], stem: &Path) -> Result<Vec<FloorHistogram>> {
    use crate::plot::lines::{line_plot, LinePlot, Series};
    if files.is_empty() {
        return Err(Error::Config(
            "the histogram needs at least one windows file (LABEL=FILE)".into(),
        ));
    }
    let mut out = Vec::new();
    let mut series = Vec::new();
    for (k, (label, file)) in files.iter().enumerate() {
        let (_, rows) = windows::read_rows(file)?;
        if rows.is_empty() {
            return Err(Error::BadFile {
                path: file.clone(),
                why: "names no example, so it has no floors to show".into(),
            });
        }
        let mut floors: Vec<f64> = rows.iter().map(|r| r.1.sigma_min).collect();
        floors.sort_by(f64::total_cmp);
        let n = floors.len() as f64;
        let mut shares: Vec<(f64, f64)> = Vec::new();
        for &f in &floors {
            match shares.last_mut() {
                Some(last) if last.0 == f => last.1 += 1.0 / n,
                _ => shares.push((f, 1.0 / n)),
            }
        }
        series.push(Series {
            name: label.clone(),
            color: k,
            points: shares.iter().map(|&(x, y)| (x, y, 0.0)).collect(),
        });
        out.push(FloorHistogram {
            label: label.clone(),
            file: file.clone(),
            examples: floors.len(),
            sigma_tn_quantiles: quantiles(floors),
            shares,
        });
    }
    if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::fsutil::create_dir(dir)?;
    }
    line_plot(
        &series,
        &LinePlot {
            title: "Annotated noise floors σ_tn",
            xlabel: "σ_tn",
            ylabel: "share of the annotated examples",
        },
        stem,
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::curation::ambient::classifier::tests::{blur, noise_images, quick};
    use crate::data::corrupt::apply::apply;
    use crate::data::npy;
    use crate::data::windows::NoiseWindow;
    use crate::train::image_data::training_data;

    fn tmp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("curadiff-ambientjob-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// The data.* values of a 120-image `.npy` source of 16×16 noise images.
    fn source(dir: &Path) -> DataConfig {
        let set = noise_images(120, 16, 5);
        let path = dir.join("images.npy");
        npy::write_f32(&path, &[120, 1, 16, 16], &set.pixels).unwrap();
        let mut d = crate::train::presets::preset("fmnist").unwrap().data;
        d.kind = "npy".into();
        d.path = path.display().to_string();
        d
    }

    #[test]
    fn the_floor_histogram_counts_shares_per_floor() {
        let dir = tmp("hist");
        let set = noise_images(4, 4, 1);
        let w = |lo: f64| NoiseWindow {
            sigma_min: lo,
            sigma_max: 0.0,
        };
        let a = dir.join("a.npy");
        windows::write(
            &a,
            &set,
            &[(0, w(0.5)), (1, w(0.5)), (2, w(2.0)), (3, w(0.5))],
            1.0,
        )
        .unwrap();
        let b = dir.join("b.npy");
        windows::write(&b, &set, &[(0, w(2.0)), (1, w(4.0))], 1.0).unwrap();
        let stem = dir.join("plot/floors");
        let h = floor_histogram(&[("weak".into(), a), ("strong".into(), b)], &stem).unwrap();
        assert_eq!(h[0].shares, vec![(0.5, 0.75), (2.0, 0.25)]);
        assert_eq!(h[1].shares, vec![(2.0, 0.5), (4.0, 0.5)]);
        assert_eq!(h[1].sigma_tn_quantiles[4], 4.0);
        assert!(stem.with_extension("png").is_file() && stem.with_extension("svg").is_file());
        let svg = std::fs::read_to_string(stem.with_extension("svg")).unwrap();
        assert!(svg.contains("strong") && svg.contains("σ_tn"));
        let e = floor_histogram(&[], &stem).unwrap_err().to_string();
        assert!(e.contains("LABEL=FILE"), "{e}");
    }

    /// Classifier → curves → floors → a windows file the training data reads back; the same
    /// floors again from the stored curves without the classifier; fixed floors; annotation
    /// ids made for other data refused.
    #[test]
    fn annotation_writes_curves_and_windows_training_reads() {
        let dir = tmp("flow");
        let clean = source(&dir);
        let clf_path = dir.join("blur.safetensors");
        let cfg = NoiseClassifierConfig {
            epochs: 12,
            ..quick()
        };
        let report =
            train_classifier(&clean, 0, 80, &blur(), &cfg, &clf_path, &mut |_, _, _| {}).unwrap();
        assert!(report.held_out && report.check_images == 40);
        // Held-out accuracy by σ: the blur is seen at σ = 0.1, not at σ = 20.
        let acc = &report.accuracy;
        assert!(acc[1].1 > 0.9 && (acc[4].1 - 0.5).abs() < 0.15, "{acc:?}");
        let data = DataConfig {
            corrupt: CorruptConfig {
                fraction: 0.5,
                seed: 1,
                ..blur()
            },
            ..clean.clone()
        };
        let grid = AnnotateConfig {
            points: 12,
            sigma_lo: 0.01,
            ..Default::default()
        };
        let req = AnnotateRequest {
            data: Some(data.clone()),
            data_seed: 0,
            floors: FloorSource::Classifier(clf_path.clone()),
            all: false,
            grid,
            threshold: ThresholdConfig::default(),
            out: dir.join("ann"),
        };
        let s = annotate(&req, &mut |_, _| {}).unwrap();
        let set = pool(&data, 0).unwrap();
        let corrupted: Vec<usize> = (0..set.len())
            .filter(|&i| matches!(set.source[i], Source::Corrupted { .. }))
            .collect();
        assert_eq!(s.annotated, corrupted.len());
        let (p, meta) = curves::read(s.curves.as_ref().unwrap()).unwrap();
        assert_eq!(
            meta.ids,
            corrupted.iter().map(|&i| set.ids[i]).collect::<Vec<_>>()
        );
        assert_eq!(meta.sigmas.len(), 12);
        assert_eq!(meta.fingerprint, fingerprint(&set));
        // Low σ: the blurred images are recognised; σ = 80: chance.
        let col = |k: usize| {
            p.iter().skip(k).step_by(12).map(|&v| v as f64).sum::<f64>() / s.annotated as f64
        };
        assert!(
            col(0) > 0.8 && (col(11) - 0.5).abs() < 0.2,
            "{} {}",
            col(0),
            col(11)
        );
        // The training data reads the windows: corrupted examples carry their floor.
        let with = DataConfig {
            windows: s.windows.display().to_string(),
            ..data.clone()
        };
        let td = training_data(&with, 0).unwrap();
        let w = td.windows.unwrap();
        let f = threshold::floors(&meta.ids, &meta.sigmas, &p, &ThresholdConfig::default());
        for (k, &i) in corrupted.iter().enumerate() {
            assert_eq!(w[i], f.rows[k].1);
            assert!(w[i].sigma_min > meta.sigmas[0] && w[i].sigma_min < 80.0);
        }
        assert!((0..set.len())
            .filter(|i| !corrupted.contains(i))
            .all(|i| w[i] == NoiseWindow::CLEAN));
        assert!(td.warnings.is_empty(), "{:?}", td.warnings);
        assert!((td.curate_seconds - s.curate_seconds).abs() < 1e-9);
        // Re-derived from the curves with the classifier gone: the same windows file.
        std::fs::remove_file(&clf_path).unwrap();
        let again = AnnotateRequest {
            data: None,
            floors: FloorSource::FromCurves(s.curves.clone().unwrap()),
            out: dir.join("again"),
            ..req.clone()
        };
        let s2 = annotate(&again, &mut |_, _| {}).unwrap();
        assert_eq!(
            std::fs::read(&s2.windows).unwrap(),
            std::fs::read(&s.windows).unwrap()
        );
        // Curves offered for other data (another corruption seed): refused with both
        // fingerprints.
        let other = DataConfig {
            corrupt: CorruptConfig {
                seed: 2,
                ..data.corrupt.clone()
            },
            ..data.clone()
        };
        let e = annotate(
            &AnnotateRequest {
                data: Some(other.clone()),
                ..again.clone()
            },
            &mut |_, _| {},
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("other data") && e.contains(&fingerprint(&pool(&other, 0).unwrap())),
            "{e}"
        );
        // Fixed floors need no classifier.
        let fixed = annotate(
            &AnnotateRequest {
                floors: FloorSource::Fixed(1.89),
                out: dir.join("fixed"),
                ..req.clone()
            },
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(fixed.sigma_tn_quantiles, vec![1.89; 5]);
        assert!(fixed.curves.is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    /// An example's curve is the same whether annotated with all the others or alone in
    /// another order (its noise is keyed by id and grid point), and a second run repeats it.
    #[test]
    fn curves_depend_on_the_example_not_on_its_company() {
        let train_set = noise_images(64, 12, 3);
        let clf = classifier::train(
            &train_set,
            &blur(),
            &NoiseClassifierConfig {
                epochs: 1,
                ..quick()
            },
            &mut |_, _, _| {},
        )
        .unwrap();
        let set = apply(&noise_images(70, 12, 4), &blur()).unwrap();
        let grid = AnnotateConfig {
            points: 6,
            draws: 2,
            ..Default::default()
        };
        let all: Vec<usize> = (0..70).collect();
        let a = annotate::curves(&clf, &set, &all, &grid, &mut |_, _| {}).unwrap();
        assert_eq!(
            a,
            annotate::curves(&clf, &set, &all, &grid, &mut |_, _| {}).unwrap()
        );
        let some = [69usize, 3, 40];
        let b = annotate::curves(&clf, &set, &some, &grid, &mut |_, _| {}).unwrap();
        for (r, &i) in some.iter().enumerate() {
            for k in 0..6 {
                let (x, y) = (a[i * 6 + k], b[r * 6 + k]);
                assert!((x - y).abs() < 1e-5, "example {i}, point {k}: {x} vs {y}");
            }
        }
        // Another noise seed gives other curves.
        let c = annotate::curves(
            &clf,
            &set,
            &some,
            &AnnotateConfig { seed: 1, ..grid },
            &mut |_, _| {},
        )
        .unwrap();
        assert_ne!(b, c);
    }
}
