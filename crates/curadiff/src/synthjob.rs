//! `curadiff synth`: DisCL's synthetic-to-real spectra from a trained class-conditional image
//! run ([`crate::curation::curriculum`]). Each hard real example y (an ids file from
//! `curadiff hard`) is noised to σ_start of each strength s and integrated down to σ = 0 by the
//! run's guided Heun sampler, once per seed; a filter classifier trained on the same
//! long-tailed set keeps or rejects each image; the spectrum is written as a data set with a
//! sidecar and a PNG of one tail example across λ = 1 − s.
//!
//! Order of the written images: strength (as given), then hard example (in the set's order),
//! then seed. Image (id, s, seed) draws its noise from the stream (seed, Sample, id), the same
//! noise at every strength, so along a row of the PNG only λ changes.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::curation::curriculum::filter;
use crate::curation::curriculum::spectrum::{self, SpectrumMeta, SpectrumRow};
use crate::curation::curriculum::strength::{self, StartPoint};
use crate::data::images::ImageSet;
use crate::error::{Error, Result};
use crate::eval::classifier::Classifier;
use crate::plot::grid::image_grid_png;
use crate::train::image::{sample_images_from, Guide, ImageSampling, Start, UnetDenoiser};
use crate::train::{image_data, image_run};

/// What to synthesise.
#[derive(Debug, Clone)]
pub struct SynthRequest {
    /// The generator: a class-conditional image run.
    pub run: PathBuf,
    /// The hard examples: an ids file made for the run's pool (`curadiff hard`).
    pub hard: PathBuf,
    /// img2img strengths s ∈ (0, 1].
    pub strengths: Vec<f64>,
    /// Seeds per hard example.
    pub seeds: Vec<u64>,
    /// Class-free guidance weight w (1: none).
    pub cfg: f64,
    /// The filter classifier (trained on the run's pool, `curadiff classifier --run`).
    pub filter: PathBuf,
    /// Keep an image when the filter gives its class a probability ≥ τ.
    pub tau: f64,
    /// Heun steps N of the full schedule (default: the run's `sampler.steps`).
    pub steps: Option<usize>,
    /// Output folder.
    pub out: PathBuf,
    /// The hard example shown in the PNG (default: the first of the class with the fewest
    /// training images).
    pub grid_source: Option<u64>,
}

/// Per-λ summary of a spectrum.
#[derive(Debug, Clone, PartialEq)]
pub struct LambdaSummary {
    pub lambda: f64,
    pub sigma_start: f64,
    pub images: usize,
    pub kept: usize,
    pub mean_filter_prob: f64,
    pub mean_similarity: f64,
}

/// What a synthesis did.
#[derive(Debug, Clone)]
pub struct SynthOutcome {
    pub images: usize,
    pub kept: usize,
    /// Seconds of sampling, and of sampling and filtering together.
    pub sample_seconds: f64,
    pub seconds: f64,
    pub images_per_second: f64,
    pub grid: PathBuf,
    pub per_lambda: Vec<LambdaSummary>,
}

/// Checks that every source's class is one the generator was trained on: below its class
/// count and with training images (`train_counts`, per class, of its training set).
pub fn check_seen(
    sources: &ImageSet,
    num_classes: usize,
    train_counts: &[usize],
    run: &Path,
) -> Result<()> {
    for (&id, &l) in sources.ids.iter().zip(&sources.labels) {
        let c = l as usize;
        let seen = c < num_classes && train_counts.get(c).is_some_and(|&n| n > 0);
        if !seen {
            let name = sources.class_names.get(c).map_or("?", String::as_str);
            return Err(Error::Config(format!(
                "hard example id {id} has class {c} ({name}), which generator {} never saw \
                 ({}); choose hard examples of the classes it was trained on, or train the \
                 generator on that class",
                run.display(),
                if c >= num_classes {
                    format!("it has {num_classes} classes")
                } else {
                    "its training set has no image of that class".to_string()
                }
            )));
        }
    }
    Ok(())
}

/// One planned image of a spectrum, before filtering.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// Index of its source in the sources set.
    pub source: usize,
    pub point: StartPoint,
    pub seed: u64,
}

/// The img2img spectrum of `sources` (ids and classes as in the set) at every start point
/// and seed, guided by CFG weight `cfg` (1: unguided): `[M, C, H, W]` images clipped to
/// [-1, 1] and their plan, ordered by point, then source, then seed. `progress(done, total)`
/// after each point.
pub fn spectrum_images(
    den: &UnetDenoiser,
    sampling: &ImageSampling,
    sources: &ImageSet,
    points: &[StartPoint],
    seeds: &[u64],
    cfg: f64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<f32>, Vec<Planned>)> {
    let guide = if cfg == 1.0 {
        Guide::None
    } else {
        Guide::Cfg(cfg)
    };
    let per = sources.len() * seeds.len();
    let total = per * points.len();
    let mut images = Vec::with_capacity(total * sources.image_len());
    let mut plan = Vec::with_capacity(total);
    let device = crate::device::inference();
    for point in points {
        let items: Vec<(usize, u64)> = (0..sources.len())
            .flat_map(|i| seeds.iter().map(move |&s| (i, s)))
            .collect();
        let labels: Vec<Option<usize>> = items
            .iter()
            .map(|&(i, _)| Some(sources.labels[i] as usize))
            .collect();
        let noise: Vec<(u64, u64)> = items.iter().map(|&(i, s)| (s, sources.ids[i])).collect();
        // s = 1 is plain generation: pure noise at σ_max, the source plays no part.
        let starts: Vec<f32> = if point.step == 0 {
            Vec::new()
        } else {
            items
                .iter()
                .flat_map(|&(i, _)| sources.image(i))
                .copied()
                .collect()
        };
        let start = Start {
            step: point.step,
            images: (point.step > 0).then_some(starts.as_slice()),
        };
        let x = sample_images_from(den, &guide, &labels, sampling, &start, &noise, &device)?;
        images.extend(x.into_iter().map(|v| v.clamp(-1.0, 1.0)));
        plan.extend(items.iter().map(|&(source, seed)| Planned {
            source,
            point: *point,
            seed,
        }));
        progress(plan.len(), total);
    }
    Ok((images, plan))
}

/// Checks the seeds: some, none twice.
fn check_seeds(seeds: &[u64]) -> Result<()> {
    let mut s = seeds.to_vec();
    s.sort_unstable();
    s.dedup();
    if seeds.is_empty() || s.len() != seeds.len() {
        return Err(Error::InvalidValue {
            field: "seeds".into(),
            why: format!("{seeds:?}: give one or more seeds, each once (e.g. 10,20,30,40)"),
        });
    }
    Ok(())
}

/// Runs `req`; `progress(done, total)` counts images sampled.
pub fn synth(req: &SynthRequest, progress: &mut dyn FnMut(usize, usize)) -> Result<SynthOutcome> {
    filter::check_tau(req.tau)?;
    check_seeds(&req.seeds)?;
    for &s in &req.strengths {
        strength::check(s)?;
    }
    if !(req.cfg.is_finite() && req.cfg >= 0.0) {
        return Err(Error::InvalidValue {
            field: "cfg".into(),
            why: format!(
                "{} is not a finite weight ≥ 0; 1 is unguided, e.g. 2",
                req.cfg
            ),
        });
    }
    let (cfg, learner, _) = image_run::load(&req.run, None)?;
    let den = learner.ema_inference();
    let mut sampling = image_run::sampling(&cfg.sampler);
    if let Some(n) = req.steps {
        if n == 0 {
            return Err(Error::InvalidValue {
                field: "steps".into(),
                why: "must be at least 1 (e.g. the run's sampler.steps)".into(),
            });
        }
        sampling.steps = n;
    }
    let points = strength::start_points(
        &req.strengths,
        sampling.steps,
        sampling.sigma_min,
        sampling.sigma_max,
        sampling.rho,
    )?;
    let k = den.num_classes;
    if k == 0 {
        return Err(Error::Config(format!(
            "{} is an unconditional run; a spectrum needs a class-conditional generator \
             (unet.num_classes > 0)",
            req.run.display()
        )));
    }
    let real = image_data::pool(&cfg.data, cfg.seed)?;
    let trained = image_data::training_set(&cfg.data, cfg.seed)?;
    let hard = crate::data::subset::apply(&real, &req.hard)?;
    let (sources, hard_seconds) = (hard.set, hard.seconds);
    check_seen(&sources, k, &trained.class_counts(), &req.run)?;
    let clf = filter::load(&req.filter, &real, k)?;

    let t = Instant::now();
    let (images, plan) = spectrum_images(
        &den, &sampling, &sources, &points, &req.seeds, req.cfg, progress,
    )?;
    let sample_seconds = t.elapsed().as_secs_f64();
    let rows = judge(&clf, &sources, &images, &plan, req.tau)?;
    let seconds = t.elapsed().as_secs_f64();
    let images_per_second = plan.len() as f64 / sample_seconds.max(1e-9);

    let meta = SpectrumMeta {
        format: spectrum::FORMAT.into(),
        version: spectrum::VERSION,
        fingerprint: crate::data::fingerprint::fingerprint(&real),
        num_classes: k,
        shape: den.shape,
        generator: req.run.display().to_string(),
        cfg: req.cfg,
        steps: sampling.steps,
        sigma_min: sampling.sigma_min,
        sigma_max: sampling.sigma_max,
        rho: sampling.rho,
        filter: req.filter.display().to_string(),
        tau: req.tau,
        seconds,
        hard_seconds,
        images_per_second,
        rows,
    };
    spectrum::write(&req.out, &images, &meta)?;
    let grid = req.out.join("spectrum.png");
    write_grid(&grid, &sources, &trained, &images, &meta, req)?;
    Ok(SynthOutcome {
        images: meta.rows.len(),
        kept: meta.rows.iter().filter(|r| r.kept).count(),
        sample_seconds,
        seconds,
        images_per_second,
        grid,
        per_lambda: summarise(&meta.rows),
    })
}

/// The filter's verdict, probability and feature similarity for each planned image.
fn judge(
    clf: &Classifier,
    sources: &ImageSet,
    images: &[f32],
    plan: &[Planned],
    tau: f64,
) -> Result<Vec<SpectrumRow>> {
    let m = plan.len();
    let k = clf.num_classes();
    let d = clf.feature_dim();
    let probs = clf.probabilities(images, m)?; // [m, k]
    let feats = clf.features(images, m)?; // [m, d]
    let src_feats = clf.features(&sources.pixels, sources.len())?; // [sources, d]
    Ok(plan
        .iter()
        .enumerate()
        .map(|(j, p)| {
            let label = sources.labels[p.source];
            let prob = probs[j * k + label as usize] as f64;
            SpectrumRow {
                source_id: sources.ids[p.source],
                label,
                strength: p.point.strength,
                lambda: strength::lambda(p.point.strength),
                seed: p.seed,
                sigma_start: p.point.sigma,
                kept: prob >= tau,
                filter_prob: prob,
                similarity: filter::cosine(
                    &feats[j * d..(j + 1) * d],
                    &src_feats[p.source * d..(p.source + 1) * d],
                ),
            }
        })
        .collect())
}

/// Count, kept and means per λ, in ascending λ.
pub fn summarise(rows: &[SpectrumRow]) -> Vec<LambdaSummary> {
    let mut lambdas: Vec<f64> = rows.iter().map(|r| r.lambda).collect();
    lambdas.sort_by(f64::total_cmp);
    lambdas.dedup();
    lambdas
        .into_iter()
        .map(|l| {
            let r: Vec<&SpectrumRow> = rows.iter().filter(|r| r.lambda == l).collect();
            let n = r.len() as f64;
            LambdaSummary {
                lambda: l,
                sigma_start: r[0].sigma_start,
                images: r.len(),
                kept: r.iter().filter(|r| r.kept).count(),
                mean_filter_prob: r.iter().map(|r| r.filter_prob).sum::<f64>() / n,
                mean_similarity: r.iter().map(|r| r.similarity).sum::<f64>() / n,
            }
        })
        .collect()
}

/// The PNG of one hard example across λ: a row per seed, columns in ascending λ, the real
/// image last.
fn write_grid(
    path: &Path,
    sources: &ImageSet,
    trained: &ImageSet,
    images: &[f32],
    meta: &SpectrumMeta,
    req: &SynthRequest,
) -> Result<()> {
    let pick = match req.grid_source {
        Some(id) => {
            sources
                .ids
                .iter()
                .position(|&i| i == id)
                .ok_or_else(|| Error::InvalidValue {
                    field: "grid-source".into(),
                    why: format!(
                        "id {id} is not one of the hard examples of {}",
                        req.hard.display()
                    ),
                })?
        }
        None => {
            let counts = trained.class_counts();
            (0..sources.len())
                .min_by_key(|&i| (counts[sources.labels[i] as usize], i))
                .unwrap_or(0)
        }
    };
    let id = sources.ids[pick];
    let len = sources.image_len();
    let mut lambdas: Vec<f64> = meta.rows.iter().map(|r| r.lambda).collect();
    lambdas.sort_by(f64::total_cmp);
    lambdas.dedup();
    let mut tiles = Vec::new();
    for &seed in &req.seeds {
        for &l in &lambdas {
            if let Some(j) = meta
                .rows
                .iter()
                .position(|r| r.source_id == id && r.seed == seed && r.lambda == l)
            {
                tiles.extend_from_slice(&images[j * len..(j + 1) * len]);
            }
        }
        tiles.extend_from_slice(sources.image(pick));
    }
    let class = sources.labels[pick] as usize;
    let name = sources.class_names.get(class).map_or("?", String::as_str);
    let shown: Vec<String> = lambdas.iter().map(|l| format!("{l:.1}")).collect();
    let title = format!("id {id} ({name}): λ = {} | real", shown.join(" "));
    image_grid_png(&tiles, meta.shape, lambdas.len() + 1, 2, &title, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::curation::curriculum::hard::{self, HardMeta, HardRule};
    use crate::eval::classifier::{self, ClassifierConfig};
    use crate::train::image::{sample_images, tests::fixture};
    use crate::train::phema::reconstruct::tests::{tiny_phema_cfg, tmp};

    fn points(strengths: &[f64], s: &ImageSampling) -> Vec<StartPoint> {
        strength::start_points(strengths, s.steps, s.sigma_min, s.sigma_max, s.rho).unwrap()
    }

    #[test]
    fn full_strength_is_the_plain_sampler_and_a_small_one_keeps_the_source() {
        let cfg = tiny_phema_cfg(&[]);
        let den = image_run::learner(&cfg).unwrap().inference();
        let sampling = ImageSampling {
            steps: 8,
            ..image_run::sampling(&cfg.sampler)
        };
        let sources = fixture(3); // ids 0, 1, 2: the plain sampler's streams (seed, i)
        let run = |strengths: &[f64]| {
            spectrum_images(
                &den,
                &sampling,
                &sources,
                &points(strengths, &sampling),
                &[7],
                2.0,
                &mut |_, _| {},
            )
            .unwrap()
        };
        let (full, plan) = run(&[1.0]);
        let labels: Vec<Option<usize>> = sources.labels.iter().map(|&l| Some(l as usize)).collect();
        let plain: Vec<f32> = sample_images(
            &den,
            &Guide::Cfg(2.0),
            &labels,
            &sampling,
            7,
            &crate::device::inference(),
        )
        .unwrap()
        .into_iter()
        .map(|v| v.clamp(-1.0, 1.0))
        .collect();
        assert_eq!(full, plain);
        assert_eq!(plan.len(), 3);
        // s = 1/8 starts at σ_min = 0.002 and takes one step: (nearly) the source.
        let (near, _) = run(&[0.125]);
        let dist = |x: &[f32]| {
            x.iter()
                .zip(&sources.pixels)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max)
        };
        assert!(dist(&near) < 0.02, "{}", dist(&near));
        // s = 0.5 starts at σ_4 of 8 and moves the image far more.
        let (mid, _) = run(&[0.5]);
        assert!(
            dist(&mid) > 10.0 * dist(&near),
            "{} vs {}",
            dist(&mid),
            dist(&near)
        );
        // Deterministic, and the order is point, then source, then seed.
        let (both, plan) = spectrum_images(
            &den,
            &sampling,
            &sources,
            &points(&[0.5, 1.0], &sampling),
            &[7, 9],
            2.0,
            &mut |_, _| {},
        )
        .unwrap();
        let (again, _) = spectrum_images(
            &den,
            &sampling,
            &sources,
            &points(&[0.5, 1.0], &sampling),
            &[7, 9],
            2.0,
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(both, again);
        let order: Vec<(f64, usize, u64)> = plan
            .iter()
            .map(|p| (p.point.strength, p.source, p.seed))
            .collect();
        assert_eq!(order[..3], [(0.5, 0, 7), (0.5, 0, 9), (0.5, 1, 7)]);
        assert_eq!(order[6], (1.0, 0, 7));
        // The seed-7 images at s = 1 are the one-seed run's.
        let len = sources.image_len();
        for i in 0..3 {
            let j = 6 + 2 * i;
            assert_eq!(both[j * len..(j + 1) * len], full[i * len..(i + 1) * len]);
        }
    }

    #[test]
    fn classes_the_generator_never_saw_are_named() {
        let sources = fixture(20);
        let run = Path::new("runs/gen");
        let mut counts = sources.class_counts();
        assert!(check_seen(&sources, 10, &counts, run).is_ok());
        let c = sources.labels[4] as usize;
        counts[c] = 0;
        let e = check_seen(&sources, 10, &counts, run)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("class {c}")) && e.contains("runs/gen") && e.contains("no image"),
            "{e}"
        );
        let top = *sources.labels.iter().max().unwrap() as usize;
        let e = check_seen(&sources, top, &sources.class_counts(), run)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("it has {top} classes")), "{e}");
    }

    #[test]
    fn synth_writes_a_loadable_spectrum_and_refuses_bad_input() {
        let dir = tmp("synth");
        let gen = dir.join("gen");
        let mut cfg = tiny_phema_cfg(&[]);
        cfg.train.duration_nimg = 32;
        crate::train::run::train(&gen, &cfg, &mut crate::train::run::Quiet).unwrap();
        let pool = image_data::pool(&cfg.data, cfg.seed).unwrap();
        // Hard examples: the lowest tenth of each class by a made-up probability.
        let p: Vec<f64> = (0..pool.len()).map(|i| (i % 7) as f64 / 7.0).collect();
        let keep = hard::select(HardRule::LowestFraction(0.1), &pool, Some(&p)).unwrap();
        let hard_path = dir.join("hard.npy");
        let meta = HardMeta {
            fingerprint: String::new(),
            seconds: 3.5,
            rule: HardRule::LowestFraction(0.1),
            folds: 0,
            classifier: None,
            p_true: Vec::new(),
            per_class: Vec::new(),
        };
        hard::write(&hard_path, &pool, &keep, meta.clone()).unwrap();
        let quick = ClassifierConfig {
            epochs: 1,
            batch: 32,
            lr: 2e-3,
            seed: 2,
        };
        let filter_path = dir.join("lt.safetensors");
        classifier::train(&pool, &quick, &mut |_, _, _| {})
            .unwrap()
            .save(&filter_path)
            .unwrap();
        let req = SynthRequest {
            run: gen.clone(),
            hard: hard_path.clone(),
            strengths: vec![0.5, 1.0],
            seeds: vec![1, 2],
            cfg: 2.0,
            filter: filter_path.clone(),
            tau: 0.3,
            steps: None,
            out: dir.join("spectrum"),
            grid_source: None,
        };
        let o = synth(&req, &mut |_, _| {}).unwrap();
        assert_eq!(o.images, keep.len() * 4);
        assert!(o.images_per_second > 0.0 && o.grid.is_file());
        let s = spectrum::load(&req.out, &pool, false).unwrap();
        assert_eq!(s.set.len(), o.images);
        // The hard examples' own curation seconds travel with the spectrum.
        assert_eq!(s.meta.hard_seconds, 3.5);
        for r in &s.meta.rows {
            assert_eq!(r.kept, r.filter_prob >= 0.3);
            assert!((0.0..=1.0).contains(&r.filter_prob) && r.similarity.abs() <= 1.0 + 1e-9);
        }
        assert_eq!(o.per_lambda.len(), 2);
        assert_eq!(o.per_lambda[0].lambda, 0.0);
        // λ = 0 starts at σ_max; λ = 0.5 runs ⌊0.5·2⌋ = 1 of the 2 steps, from σ_1 = σ_min.
        assert_eq!(o.per_lambda[0].sigma_start, cfg.sampler.sigma_max);
        assert!((o.per_lambda[1].sigma_start - cfg.sampler.sigma_min).abs() < 1e-12);
        assert_eq!(
            spectrum::load(&req.out, &pool, true).unwrap().set.len(),
            o.kept
        );
        // The same request again: the same images.
        let first = crate::data::npy::read_f32(&req.out.join("images.npy")).unwrap();
        synth(&req, &mut |_, _| {}).unwrap();
        assert_eq!(
            crate::data::npy::read_f32(&req.out.join("images.npy"))
                .unwrap()
                .data,
            first.data
        );

        // Bad input: a strength outside (0, 1], a filter for other data, hard ids for
        // other data.
        let e = synth(
            &SynthRequest {
                strengths: vec![1.5],
                ..req.clone()
            },
            &mut |_, _| {},
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("1.5 is outside (0, 1]"), "{e}");
        let other = pool.subset(&(0..100).collect::<Vec<_>>());
        let other_filter = dir.join("other.safetensors");
        classifier::train(&other, &quick, &mut |_, _, _| {})
            .unwrap()
            .save(&other_filter)
            .unwrap();
        let e = synth(
            &SynthRequest {
                filter: other_filter,
                ..req.clone()
            },
            &mut |_, _| {},
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("other data") && e.contains("other.safetensors"),
            "{e}"
        );
        let other_hard = dir.join("other-hard.npy");
        hard::write(&other_hard, &other, &[0, 1], meta).unwrap();
        let e = synth(
            &SynthRequest {
                hard: other_hard,
                ..req.clone()
            },
            &mut |_, _| {},
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("other-hard.npy") && e.contains("other data"),
            "{e}"
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
