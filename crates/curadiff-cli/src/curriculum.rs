//! DisCL commands (`curadiff::curation::curriculum`): a classifier of a run's pool, hard
//! examples, spectra (`curadiff synth`) and a classifier trained by one curriculum arm
//! (`curadiff curriculum`), each printing one JSON line.

use anyhow::{Context, Result};
use curadiff::curation::curriculum::arm::{self, ArmConfig, ArmKind};
use curadiff::curation::curriculum::hard::{self, HardMeta, HardRule};
use curadiff::data::long_tail::group_means;
use curadiff::eval::classifier::{self, Classifier, ClassifierConfig};
use curadiff::synthjob::{self, SynthRequest};
use curadiff::train::config::RunConfig;
use curadiff::train::image_data;
use curadiff::train::presets::preset;
use curadiff::train::run::RunDir;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::args::{HardRuleArg, PoolSource};

/// The config whose pool a command works on: a run's, or a preset's with overrides.
fn resolve(src: &PoolSource) -> Result<RunConfig> {
    match (&src.run, &src.preset) {
        (Some(run), None) => RunDir::new(run)
            .read_run_config()
            .with_context(|| format!("reading the config of run {}", run.display())),
        (None, Some(p)) => Ok(preset(p)?.with_overrides(&src.sets)?),
        _ => anyhow::bail!(curadiff::Error::Config(
            "name the pool with --run RUN (a run directory) or --preset NAME [--set KEY=VALUE]"
                .into()
        )),
    }
}

/// Refuses the metrics' classifier and the surrogates cached beside it as an output.
fn check_out(out: &Path) -> Result<()> {
    let metric = classifier::default_path();
    let cached = out.parent() == metric.parent()
        && out
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("fmnist-classifier"));
    if out == metric || cached {
        anyhow::bail!(curadiff::Error::Config(format!(
            "{} is where the image metrics' classifier (or a pruning surrogate) is cached; a \
             classifier of a run's pool must not replace it: give --out another file, e.g. \
             runs/lt-filter.safetensors",
            out.display()
        )));
    }
    Ok(())
}

/// `curadiff classifier --run RUN --out FILE`: a classifier of the run's pool (its long-tailed
/// cut), with its accuracy on the test set per class and per shot group.
pub fn pool_classifier(
    run: &Path,
    out: Option<PathBuf>,
    cfg: ClassifierConfig,
    force: bool,
) -> Result<()> {
    let Some(out) = out else {
        anyhow::bail!(curadiff::Error::Config(
            "--run trains a classifier of the run's pool; give --out FILE (not the metrics' \
             classifier)"
                .into()
        ));
    };
    check_out(&out)?;
    let rcfg = RunDir::new(run)
        .read_run_config()
        .with_context(|| format!("reading the config of run {}", run.display()))?;
    let pool = image_data::pool(&rcfg.data, rcfg.seed).context("loading the run's pool")?;
    let test = image_data::reference_set(&rcfg.data, rcfg.seed)?;
    let t = Instant::now();
    let trained = !out.exists() || force;
    let clf = if trained {
        let mut last = 0;
        let clf = classifier::train(&pool, &cfg, &mut |done, total, loss| {
            let pct = 100 * done / total.max(1);
            if pct >= last + 10 {
                last = pct;
                eprintln!("classifier: {pct}% (loss {loss:.4})");
            }
        })?;
        clf.save(&out)?;
        clf
    } else {
        Classifier::load(&out)?
    };
    let seconds = t.elapsed().as_secs_f64();
    let pc = clf.per_class_correct(&test)?;
    let per_class: Vec<f64> = pc
        .iter()
        .map(|&(r, n)| if n == 0 { 0.0 } else { r as f64 / n as f64 })
        .collect();
    let counts = pool.class_counts();
    let groups: serde_json::Map<String, serde_json::Value> = group_means(&per_class, &counts)
        .into_iter()
        .map(|(g, m)| (g.name().to_string(), serde_json::json!(m)))
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "classifier": out, "trained": trained, "train_seconds": seconds,
            "trained_on": clf.trained_on(), "train_counts": counts,
            "test_accuracy": clf.accuracy(&test)?, "per_class": per_class, "groups": groups,
        })
    );
    Ok(())
}

/// `curadiff hard`.
#[allow(clippy::too_many_arguments)]
pub fn hard(
    src: &PoolSource,
    rule: HardRuleArg,
    threshold: f64,
    fraction: f64,
    folds: usize,
    epochs: usize,
    seed: u64,
    out: &Path,
) -> Result<()> {
    let rcfg = resolve(src)?;
    let pool = image_data::pool(&rcfg.data, rcfg.seed).context("loading the pool")?;
    let rule = match rule {
        HardRuleArg::OofBelow => HardRule::BelowProb(threshold),
        HardRuleArg::OofLowest => HardRule::LowestFraction(fraction),
        HardRuleArg::Tail => HardRule::Tail,
    };
    let ccfg = ClassifierConfig {
        epochs,
        seed,
        ..Default::default()
    };
    let t = Instant::now();
    let p = if rule.needs_probs() {
        Some(hard::out_of_fold_probs(
            &pool,
            folds,
            &ccfg,
            &mut |f, k| {
                eprintln!(
                    "hard: fold {f}/{k} done ({:.0} s)",
                    t.elapsed().as_secs_f64()
                )
            },
        )?)
    } else {
        None
    };
    let keep = hard::select(rule, &pool, p.as_deref())?;
    let seconds = t.elapsed().as_secs_f64();
    let meta = HardMeta {
        fingerprint: String::new(),
        seconds,
        rule,
        folds: if p.is_some() { folds } else { 0 },
        classifier: p.is_some().then_some(ccfg),
        p_true: p
            .as_ref()
            .map_or_else(Vec::new, |p| keep.iter().map(|&i| p[i]).collect()),
        per_class: Vec::new(),
    };
    hard::write(out, &pool, &keep, meta).with_context(|| format!("writing {}", out.display()))?;
    let m = hard::read_meta(out)?;
    println!(
        "{}",
        serde_json::json!({
            "out": out, "hard": keep.len(), "of": pool.len(), "rule": rule,
            "per_class": m.per_class, "seconds": seconds,
        })
    );
    Ok(())
}

/// `curadiff synth`.
pub fn synth(req: SynthRequest) -> Result<()> {
    let mut last = 0;
    let o = synthjob::synth(&req, &mut |done, total| {
        let pct = 100 * done / total.max(1);
        if pct >= last + 10 || done == total {
            last = pct;
            eprintln!("synth: {done}/{total} images");
        }
    })
    .with_context(|| format!("synthesising spectra from run {}", req.run.display()))?;
    let per_lambda: Vec<serde_json::Value> = o
        .per_lambda
        .iter()
        .map(|l| {
            serde_json::json!({
                "lambda": l.lambda, "sigma_start": l.sigma_start, "images": l.images,
                "kept": l.kept, "mean_filter_prob": l.mean_filter_prob,
                "mean_similarity": l.mean_similarity,
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "out": req.out, "images": o.images, "kept": o.kept,
            "sample_seconds": o.sample_seconds, "seconds": o.seconds,
            "images_per_second": o.images_per_second, "grid": o.grid,
            "per_lambda": per_lambda,
        })
    );
    Ok(())
}

/// `curadiff synth`: the spectrum request's flags.
#[derive(clap::Args, Clone, Debug)]
pub struct SynthArgs {
    /// The generator: a class-conditional image run.
    #[arg(long)]
    pub run: PathBuf,
    /// Hard examples of the run's pool (`curadiff hard`).
    #[arg(long)]
    pub hard: PathBuf,
    /// img2img strengths s in (0, 1] (λ = 1 − s; 1 is plain generation).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0"
    )]
    pub strengths: Vec<f64>,
    /// Seeds per hard example.
    #[arg(long, value_delimiter = ',', default_value = "10,20,30,40")]
    pub seeds: Vec<u64>,
    /// Class-free guidance weight w (1: unguided).
    #[arg(long, default_value_t = 2.0)]
    pub cfg: f64,
    /// The filter classifier, trained on the run's pool (`curadiff classifier --run`).
    #[arg(long)]
    pub filter: PathBuf,
    /// Keep an image when the filter gives its class a probability ≥ τ.
    #[arg(long, default_value_t = 0.5)]
    pub tau: f64,
    /// Heun steps of the full schedule (default: the run's sampler.steps).
    #[arg(long)]
    pub steps: Option<usize>,
    /// The hard example (id) shown in the PNG (default: one of the rarest class).
    #[arg(long)]
    pub grid_source: Option<u64>,
    #[arg(long)]
    pub out: PathBuf,
}

impl From<SynthArgs> for SynthRequest {
    fn from(a: SynthArgs) -> Self {
        Self {
            run: a.run,
            hard: a.hard,
            strengths: a.strengths,
            seeds: a.seeds,
            cfg: a.cfg,
            filter: a.filter,
            tau: a.tau,
            steps: a.steps,
            out: a.out,
            grid_source: a.grid_source,
        }
    }
}

/// The arm of `curadiff curriculum`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArmArg {
    /// One stage per λ ascending (real set + that λ's images), then real only.
    Fixed,
    /// Each next λ by the largest held-out progress (DisCL's rule), then real only.
    Adaptive,
    /// The real set alone.
    Real,
    /// Class-balanced resampling of the real set.
    Balanced,
    /// The real set and every synthetic image, one stage.
    AllSynthetic,
}

/// `curadiff curriculum`: one arm, one classifier seed. Unset numbers take the defaults of
/// `ArmConfig`.
#[derive(clap::Args, Clone, Debug)]
pub struct CurriculumArgs {
    #[command(flatten)]
    pub source: PoolSource,
    /// The spectrum folder written by `curadiff synth` (needed by fixed, adaptive and
    /// all-synthetic).
    #[arg(long)]
    pub spectrum: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub arm: ArmArg,
    /// Classifier seed (initial weights, example order, resampling, held-out split).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Optimiser steps in all (default 1200).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Steps of the final real-only stage of fixed and adaptive (default 200).
    #[arg(long)]
    pub final_steps: Option<usize>,
    /// Images per step (default 128).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Initial learning rate (default 1e-3).
    #[arg(long)]
    pub lr: Option<f64>,
    /// λ levels, comma-separated (default: every level of the spectrum).
    #[arg(long, value_delimiter = ',')]
    pub lambdas: Vec<f64>,
    /// Stages of adaptive before the final one (default: one per λ level).
    #[arg(long)]
    pub stages: Option<usize>,
    /// Fraction of source examples adaptive holds out to measure progress (default 0.2).
    #[arg(long)]
    pub held_out: Option<f64>,
    /// Also train on the synthetic images the filter rejected.
    #[arg(long)]
    pub all_images: bool,
    /// Also write the JSON to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The arm config of the flags.
fn arm_config(a: &CurriculumArgs) -> ArmConfig {
    let d = ArmConfig::default();
    ArmConfig {
        arm: match a.arm {
            ArmArg::Fixed => ArmKind::Fixed,
            ArmArg::Adaptive => ArmKind::Adaptive,
            ArmArg::Real => ArmKind::Real,
            ArmArg::Balanced => ArmKind::Balanced,
            ArmArg::AllSynthetic => ArmKind::AllSynthetic,
        },
        steps: a.steps.unwrap_or(d.steps),
        final_steps: a.final_steps.unwrap_or(d.final_steps),
        batch: a.batch.unwrap_or(d.batch),
        lr: a.lr.unwrap_or(d.lr),
        lambdas: a.lambdas.clone(),
        stages: a.stages.unwrap_or(d.stages),
        held_out: a.held_out.unwrap_or(d.held_out),
        kept_only: !a.all_images,
    }
}

/// `curadiff curriculum`.
pub fn train_arm(a: &CurriculumArgs) -> Result<()> {
    let cfg = arm_config(a);
    cfg.validate()?;
    let rcfg = resolve(&a.source)?;
    let pool = image_data::pool(&rcfg.data, rcfg.seed).context("loading the pool")?;
    let test = image_data::reference_set(&rcfg.data, rcfg.seed).context("loading the test set")?;
    let result = arm::run_arm(
        a.seed,
        &cfg,
        &pool,
        &test,
        a.spectrum.as_deref(),
        &mut |line| eprintln!("curriculum: {line}"),
    )
    .with_context(|| format!("training the {:?} arm (seed {})", cfg.arm, a.seed))?;
    let json = serde_json::json!({
        "source": a.source.run.as_ref().map(|p| p.display().to_string())
            .or_else(|| a.source.preset.clone()),
        "spectrum": a.spectrum, "result": result,
    });
    if let Some(out) = &a.out {
        let text = serde_json::to_string_pretty(&json)?;
        curadiff::fsutil::write_atomic(out, text.as_bytes())
            .with_context(|| format!("writing {}", out.display()))?;
    }
    println!("{json}");
    Ok(())
}
