//! Image runs from the outside: load a trained U-Net (and a guide), sample with class-free
//! guidance or autoguidance, and write `.npy` arrays and PNG grids.

use std::path::{Path, PathBuf};

use crate::data::images::ImageSet;
use crate::data::npy;
use crate::error::{Error, Result};
use crate::eval::classifier::Classifier;
use crate::eval::images::ImageMetrics;
use crate::train::config::RunConfig;
use crate::train::image::{sample_images, Guide, UnetDenoiser};
use crate::train::image_run;
use crate::train::phema::reconstruct::{reconstruct, Target};
use crate::train::run::Counters;

/// What to sample.
#[derive(Debug, Clone)]
pub struct SampleRequest {
    pub run: PathBuf,
    /// A snapshot label under `RUN/snapshots` instead of the newest checkpoint.
    pub snapshot: Option<String>,
    /// Autoguidance: the guide run and the weight w.
    pub guide: Option<(PathBuf, f64)>,
    /// Class-free guidance weight (the guide is the main network without the class).
    pub cfg: Option<f64>,
    /// One class for every sample; `None` cycles through the classes (sample i gets class
    /// i mod classes), or unconditional for an unconditional network.
    pub class: Option<usize>,
    /// Unconditional samples from a class-conditional network.
    pub unconditional: bool,
    pub n: usize,
    pub seed: u64,
    /// Raw weights instead of the EMA.
    pub raw: bool,
    /// Post-hoc EMA of the main network: its EMA reconstructed at this σ_rel (and time) from
    /// the run's phema snapshots instead of the checkpoint's EMA.
    pub phema: Option<Target>,
    /// Post-hoc EMA of the autoguidance guide.
    pub guide_phema: Option<Target>,
}

/// Samples with their labels and image shape.
pub struct Samples {
    /// `[n, C, H, W]`, clipped to [-1, 1].
    pub images: Vec<f32>,
    pub shape: [usize; 3],
    /// The class each sample was conditioned on.
    pub labels: Vec<Option<usize>>,
    pub config: RunConfig,
    /// The main run's counters at the weights sampled (images trained, seconds).
    pub counters: Counters,
}

/// Class-conditional EMA samples of one snapshot of an image run (classes in turn) scored
/// against `reference` with the classifier's features; also the run's counters at that
/// snapshot and the seconds the sampling took.
pub fn score_snapshot(
    run: &Path,
    snapshot: Option<&str>,
    n: usize,
    cfg: Option<f64>,
    seed: u64,
    clf: &Classifier,
    reference: &ImageSet,
) -> Result<(ImageMetrics, Counters, f64)> {
    score(
        &SampleRequest {
            run: run.to_path_buf(),
            snapshot: snapshot.map(str::to_string),
            guide: None,
            cfg,
            class: None,
            unconditional: false,
            n,
            seed,
            raw: false,
            phema: None,
            guide_phema: None,
        },
        clf,
        reference,
    )
}

/// The samples of `req` scored against `reference` with the classifier's features (class
/// accuracy when they are class-conditional); also the main run's counters and the seconds
/// the sampling took.
pub fn score(
    req: &SampleRequest,
    clf: &Classifier,
    reference: &ImageSet,
) -> Result<(ImageMetrics, Counters, f64)> {
    let t = std::time::Instant::now();
    let s = sample(req)?;
    let seconds = t.elapsed().as_secs_f64();
    let labels: Option<Vec<usize>> = s.labels.iter().copied().collect();
    let m = crate::eval::images::evaluate(
        clf,
        &s.images,
        req.n,
        labels.as_deref(),
        reference,
        req.seed,
    )?;
    Ok((m, s.counters, seconds))
}

type Loaded = (RunConfig, UnetDenoiser, Counters);

fn load_den(
    dir: &Path,
    snapshot: Option<&str>,
    raw: bool,
    phema: Option<&Target>,
) -> Result<Loaded> {
    let rcfg = crate::train::run::RunDir::new(dir).read_run_config()?;
    if !rcfg.data.is_images() {
        return Err(Error::Config(format!(
            "{} is a toy run; this command needs an image run",
            dir.display()
        )));
    }
    let (cfg, mut l, counters) = image_run::load(dir, snapshot)?;
    if let Some(t) = phema {
        if raw || snapshot.is_some() {
            return Err(Error::Config(
                "post-hoc EMA weights are their own choice of weights: leave out the raw \
                 weights and the snapshot when asking for them"
                    .into(),
            ));
        }
        let r = reconstruct(dir, t)?;
        l.set_ema_params(t.sigma_rel, &r.params)?;
    }
    Ok((
        cfg,
        if raw {
            l.inference()
        } else {
            l.ema_inference()
        },
        counters,
    ))
}

/// Draws the samples of `req`.
pub fn sample(req: &SampleRequest) -> Result<Samples> {
    let (config, main, counters) = load_den(
        &req.run,
        req.snapshot.as_deref(),
        req.raw,
        req.phema.as_ref(),
    )?;
    let k = main.num_classes;
    if let Some(c) = req.class.filter(|&c| c >= k.max(1) || k == 0) {
        return Err(Error::InvalidValue {
            field: "class".into(),
            why: format!(
                "class {c} is out of range: the network has {k} classes (valid: 0..{})",
                k.max(1) - 1
            ),
        });
    }
    let labels: Vec<Option<usize>> = (0..req.n)
        .map(|i| {
            if k == 0 || req.unconditional {
                None
            } else {
                Some(req.class.unwrap_or(i % k))
            }
        })
        .collect();
    for w in req.cfg.iter().chain(req.guide.iter().map(|g| &g.1)) {
        if !w.is_finite() {
            return Err(Error::InvalidValue {
                field: "guidance".into(),
                why: format!("must be finite, got {w}"),
            });
        }
    }
    if req.guide_phema.is_some() && req.guide.is_none() {
        return Err(Error::Config(
            "a post-hoc EMA for the guide needs an autoguidance guide run".into(),
        ));
    }
    let guide_den = match &req.guide {
        Some((dir, _)) => {
            let (gcfg, g, _) = load_den(dir, None, req.raw, req.guide_phema.as_ref())?;
            let mut differs = Vec::new();
            if g.shape != main.shape {
                differs.push(format!(
                    "image shape {:?} (guide) vs {:?} (main)",
                    g.shape, main.shape
                ));
            }
            if g.num_classes != k {
                differs.push(format!("{} classes (guide) vs {k} (main)", g.num_classes));
            }
            if gcfg.data != config.data {
                differs.push(format!(
                    "data {} (guide) vs {} (main)",
                    data_summary(&gcfg),
                    data_summary(&config)
                ));
            }
            if !differs.is_empty() {
                return Err(Error::Config(format!(
                    "guide {} does not fit main run {}: {}; autoguidance needs a guide \
                     trained on the same task",
                    dir.display(),
                    req.run.display(),
                    differs.join("; ")
                )));
            }
            Some(g)
        }
        None => None,
    };
    let guide = match (&guide_den, &req.guide, req.cfg) {
        (Some(g), Some((_, w)), None) => Guide::Auto(g, *w),
        (None, None, Some(w)) => {
            if k == 0 {
                return Err(Error::Config(
                    "class-free guidance needs a class-conditional network".into(),
                ));
            }
            Guide::Cfg(w)
        }
        (None, None, None) => Guide::None,
        _ => {
            return Err(Error::Config(
                "use either autoguidance (--guide RUN --guidance W) or class-free guidance \
                 (--cfg W), not both"
                    .into(),
            ))
        }
    };
    let mut images = sample_images(
        &main,
        &guide,
        &labels,
        &image_run::sampling(&config.sampler),
        req.seed,
        &crate::device::inference(),
    )?;
    for v in &mut images {
        *v = v.clamp(-1.0, 1.0);
    }
    Ok(Samples {
        images,
        shape: main.shape,
        labels,
        config,
        counters,
    })
}

/// A run's data section in one line, for messages.
fn data_summary(cfg: &RunConfig) -> String {
    let d = &cfg.data;
    let mut s = format!("kind={}", d.kind);
    for (k, v) in [
        ("path", &d.path),
        ("subset", &d.subset),
        ("windows", &d.windows),
        ("fingerprint", &d.fingerprint),
    ] {
        if !v.is_empty() {
            s.push_str(&format!(" {k}={v}"));
        }
    }
    if d.imbalance_ratio != 0.0 {
        s.push_str(&format!(" imbalance_ratio={}", d.imbalance_ratio));
    }
    if let Some(seed) = d.subset_seed {
        s.push_str(&format!(" subset_seed={seed}"));
    }
    if !d.class_order.is_empty() {
        s.push_str(&format!(" class_order={:?}", d.class_order));
    }
    s
}

/// The labels file written beside a samples file: `x.npy` → `x.labels.npy`.
pub fn labels_path(samples: &Path) -> PathBuf {
    samples.with_extension("labels.npy")
}

/// Writes `[n, C, H, W]` float32 samples and, for class-conditional samples, their labels
/// (int64 `[n]`, beside them as `*.labels.npy`).
pub fn write(path: &Path, s: &Samples) -> Result<()> {
    let n = s.labels.len();
    let [c, h, w] = s.shape;
    npy::write_f32(path, &[n, c, h, w], &s.images)?;
    if s.labels.iter().all(Option::is_some) && n > 0 {
        let l: Vec<i64> = s.labels.iter().map(|l| l.unwrap_or(0) as i64).collect();
        npy::write_i64(&labels_path(path), &[n], &l)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::phema::reconstruct::tests::{tiny_phema_cfg, tmp};
    use crate::train::run::Quiet;

    fn request(run: &Path) -> SampleRequest {
        SampleRequest {
            run: run.to_path_buf(),
            snapshot: None,
            guide: None,
            cfg: None,
            class: None,
            unconditional: false,
            n: 3,
            seed: 7,
            raw: false,
            phema: None,
            guide_phema: None,
        }
    }

    #[test]
    fn post_hoc_weights_sample_and_a_mismatched_guide_is_named() {
        // The main run samples with its checkpoint EMA (σ_rel 0.05) and with a post-hoc EMA at
        // 0.08, which differ; a guide with another class count is refused, naming both runs
        // and the difference.
        let (main, guide) = (tmp("job-main"), tmp("job-guide"));
        let mut cfg = tiny_phema_cfg(&[0.05, 0.10]);
        cfg.train.duration_nimg = 64;
        crate::train::run::train(&main, &cfg, &mut Quiet).unwrap();
        if let Some(u) = cfg.unet.as_mut() {
            u.num_classes = 0;
        }
        crate::train::run::train(&guide, &cfg, &mut Quiet).unwrap();
        let plain = sample(&request(&main)).unwrap();
        let post = sample(&SampleRequest {
            phema: Some(Target::at(0.08)),
            ..request(&main)
        })
        .unwrap();
        assert_ne!(plain.images, post.images);
        let e = sample(&SampleRequest {
            guide: Some((guide.clone(), 2.0)),
            guide_phema: Some(Target::at(0.05)),
            ..request(&main)
        })
        .err()
        .expect("another class count")
        .to_string();
        assert!(
            e.contains(&guide.display().to_string())
                && e.contains(&main.display().to_string())
                && e.contains("0 classes (guide) vs 10 (main)"),
            "{e}"
        );
        for d in [main, guide] {
            std::fs::remove_dir_all(d).ok();
        }
    }
}
