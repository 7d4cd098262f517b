//! The toy jobs behind the CLI: sampling from trained runs (optionally autoguided),
//! evaluating samples and models, and the main job — train the main model and its guide,
//! sample unguided and autoguided, score both exactly, and plot.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::data::toy2d::Mixture;
use crate::diffusion::denoiser::Denoiser;
use crate::diffusion::guidance::Guided;
use crate::error::{Error, Result};
use crate::eval::toy::{self, ModelMetrics, SampleMetrics};
use crate::models::toy_denoiser::ToyModel;
use crate::train::config::RunConfig;
use crate::train::presets::preset;
use crate::train::run::Observer;
use crate::train::toy_task;

/// Which weights of a run to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weights {
    Ema,
    Raw,
}

/// A trained main model, optionally with a guide and guidance weight.
pub struct Models {
    pub config: RunConfig,
    pub main: Box<dyn ToyModel>,
    pub guide: Option<(Box<dyn ToyModel>, f64)>,
}

impl Models {
    /// Loads `run` (and `guide` at weight `w`) from their newest checkpoints.
    pub fn load(run: &Path, guide: Option<(&Path, f64)>, weights: Weights) -> Result<Self> {
        let pick = |dir: &Path| -> Result<(RunConfig, Box<dyn ToyModel>)> {
            let (cfg, learner, _) = toy_task::load_learner(dir)?;
            let den = match weights {
                Weights::Ema => learner.ema_inference(),
                Weights::Raw => learner.inference(),
            };
            Ok((cfg, den))
        };
        let (config, main) = pick(run)?;
        let guide = match guide {
            None => None,
            Some((dir, w)) => {
                if !w.is_finite() {
                    return Err(Error::InvalidValue {
                        field: "guidance".into(),
                        why: format!("must be finite, got {w}"),
                    });
                }
                let (gcfg, g) = pick(dir)?;
                if gcfg.data != config.data
                    || gcfg.diffusion.sigma_data != config.diffusion.sigma_data
                {
                    return Err(Error::Config(format!(
                        "guide {} was trained on a different task ({:?}, σ_data {}) than {} \
                         ({:?}, σ_data {}); autoguidance needs the same task",
                        dir.display(),
                        gcfg.data,
                        gcfg.diffusion.sigma_data,
                        run.display(),
                        config.data,
                        config.diffusion.sigma_data
                    )));
                }
                Some((g, w))
            }
        };
        Ok(Self {
            config,
            main,
            guide,
        })
    }

    /// The denoiser to sample with: guided when a guide is set.
    pub fn with_denoiser<T>(&self, f: impl FnOnce(&dyn Denoiser<2>) -> T) -> T {
        match &self.guide {
            Some((g, w)) => f(&Guided {
                main: self.main.as_ref(),
                guide: g.as_ref(),
                weight: *w,
            }),
            None => f(self.main.as_ref()),
        }
    }

    pub fn mixture(&self) -> Mixture {
        Mixture::tree(self.config.data.classes)
    }

    /// `n` samples from sample seed `seed`.
    pub fn sample(&self, n: usize, seed: u64) -> Result<Vec<[f64; 2]>> {
        let m = self.mixture();
        self.with_denoiser(|d| toy::sample_toy(d, &m, &self.config.sampler, n, seed))
    }

    /// Exact loss (of the main model) and ODE-L2 (of the guided denoiser if guided).
    pub fn model_metrics(&self, seed: u64) -> Result<ModelMetrics> {
        let m = self.mixture();
        let noise = self.config.diffusion.lognormal();
        let n = 16_384;
        Ok(ModelMetrics {
            loss: toy::exact_loss(self.main.as_ref(), &m, &noise, n, seed)?,
            loss_outer: toy::exact_loss(self.main.as_ref(), &m.outer(5), &noise, n, seed)?,
            ode_l2: self.with_denoiser(|d| toy::ode_l2(d, &m, &self.config.sampler, 4096, seed))?,
        })
    }
}

/// Reads a toy samples file: float32 `[N, 2]`.
pub fn read_samples(path: &Path) -> Result<Vec<[f64; 2]>> {
    let a = crate::data::npy::read_f32(path)?;
    if a.shape.len() != 2 || a.shape[1] != 2 {
        return Err(Error::BadFile {
            path: path.to_path_buf(),
            why: format!(
                "shape {:?}; toy samples are float32 [N, 2] (as `curadiff sample` writes)",
                a.shape
            ),
        });
    }
    Ok(a.data
        .chunks(2)
        .map(|c| [c[0] as f64, c[1] as f64])
        .collect())
}

/// Writes toy samples as float32 `[N, 2]`.
pub fn write_samples(path: &Path, samples: &[[f64; 2]]) -> Result<()> {
    let flat: Vec<f32> = samples
        .iter()
        .flat_map(|s| [s[0] as f32, s[1] as f32])
        .collect();
    crate::data::npy::write_f32(path, &[samples.len(), 2], &flat)
}

/// One column of the main job's report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub guidance: f64,
    pub samples: SampleMetrics,
    pub model: ModelMetrics,
    pub plot: PathBuf,
}

/// Settings of the main job.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub out: PathBuf,
    pub seed: u64,
    /// Samples per column (the seed's tests use 163,840).
    pub n: usize,
    /// Sampling seed (the seed's tests use 7).
    pub sample_seed: u64,
    pub guidance: f64,
    /// Extra `--set` overrides for both runs (e.g. shorter training in tests).
    pub sets: Vec<String>,
    /// Extra overrides for the guide run only (applied after `sets`).
    pub guide_sets: Vec<String>,
    /// Presets of the main model and the guide.
    pub main_preset: String,
    pub guide_preset: String,
}

/// Trains the main preset and the guide preset (resuming if already there), samples unguided and
/// autoguided, scores both and writes `metrics.json` and the plots into `out`.
pub fn demo(cfg: &DemoConfig, obs: &mut dyn Observer) -> Result<Vec<Column>> {
    let runs = [
        ("main", cfg.main_preset.as_str()),
        ("guide", cfg.guide_preset.as_str()),
    ];
    for (dir, name) in runs {
        let mut c = preset(name)?.with_overrides(&cfg.sets)?;
        if dir == "guide" {
            c = c.with_overrides(&cfg.guide_sets)?;
        }
        c.seed = cfg.seed;
        obs.note(&format!(
            "training {name} into {}",
            cfg.out.join(dir).display()
        ));
        crate::trainjob::train(&cfg.out.join(dir), &c, obs)?;
    }
    let main = cfg.out.join("main");
    let guide = cfg.out.join("guide");
    let mut cols = Vec::new();
    for (name, g) in [
        ("unguided", None),
        ("autoguided", Some((guide.as_path(), cfg.guidance))),
    ] {
        obs.note(&format!("sampling {} points, {name}", cfg.n));
        let models = Models::load(&main, g, Weights::Ema)?;
        let samples = models.sample(cfg.n, cfg.sample_seed)?;
        let m = models.mixture();
        let plot = cfg.out.join(format!("{name}.png"));
        crate::plot::scatter::scatter_png(&m, &samples, &format!("{name} samples"), &plot)?;
        write_samples(&cfg.out.join(format!("{name}.npy")), &samples)?;
        cols.push(Column {
            name: name.into(),
            guidance: g.map_or(1.0, |x| x.1),
            samples: toy::sample_metrics(&m, &samples, cfg.sample_seed)?,
            model: models.model_metrics(cfg.sample_seed)?,
            plot,
        });
    }
    let json = serde_json::to_vec_pretty(&cols)
        .map_err(|e| Error::Model(format!("cannot serialise metrics: {e}")))?;
    crate::fsutil::write_atomic(&cfg.out.join("metrics.json"), &json)?;
    Ok(cols)
}

/// Mean and sample standard deviation.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}
