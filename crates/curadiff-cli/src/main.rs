//! `curadiff`: arguments → validated config → library. Exit codes: 0 success, 1 failure,
//! 2 bad input (usage, config, missing or malformed files), 3 training diverged (non-finite
//! loss).

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use curadiff::toyjob::{self, DemoConfig, Models, Weights};
use curadiff::train::presets::{preset, PRESETS};
use curadiff::train::run::{self, Observer};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

mod bench;
mod images;
mod report;

#[derive(Parser)]
#[command(
    name = "curadiff",
    version,
    about = "Diffusion training with data curation, measured at equal cost"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train (or resume) a run: re-running the same command resumes from the newest checkpoint.
    Train {
        /// Preset name (see `curadiff presets`).
        #[arg(long)]
        preset: String,
        /// Run directory.
        #[arg(long)]
        out: PathBuf,
        /// Override a config field: --set train.batch=1024 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Seed of all random streams.
        #[arg(long)]
        seed: Option<u64>,
        /// Print the resolved config and exit.
        #[arg(long)]
        dry_run: bool,
        /// End the run after this many seconds of training (same as --set train.budget_seconds=S).
        #[arg(long)]
        budget_seconds: Option<f64>,
        /// End the run after this many images trained on (same as --set train.budget_nimg=N).
        #[arg(long)]
        budget_nimg: Option<u64>,
    },
    /// Sample from a trained run, optionally autoguided by a second run.
    Sample {
        #[arg(long)]
        run: PathBuf,
        /// Guide run (a smaller or less-trained model of the same task).
        #[arg(long, requires = "guidance")]
        guide: Option<PathBuf>,
        /// Guidance weight w (1 = no guidance).
        #[arg(long, requires = "guide")]
        guidance: Option<f64>,
        /// Number of samples.
        #[arg(long, default_value_t = 16_384)]
        n: usize,
        /// Sampling seed (sample i uses its own stream of this seed).
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Use the raw weights instead of the EMA.
        #[arg(long)]
        raw: bool,
        /// Output .npy: float32 [N, 2] for the toy; float32 [N, C, H, W] in [-1, 1] for
        /// images (class labels beside it as OUT.labels.npy).
        #[arg(long)]
        out: PathBuf,
        /// Also write a plot PNG here: the scatter plot (toy) or, for images, a near-square
        /// grid of the first 256 samples at most (16×16), ordered by class.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Images: condition every sample on this class (default: sample i gets class
        /// i mod classes).
        #[arg(long)]
        class: Option<usize>,
        /// Images: unconditional samples from a class-conditional network.
        #[arg(long, conflicts_with = "class")]
        unconditional: bool,
        /// Images: class-free guidance weight w (guide = the same network without the class).
        #[arg(long, conflicts_with = "guide")]
        cfg: Option<f64>,
        /// Images: use this snapshot of the run (a folder name under RUN/snapshots).
        #[arg(long)]
        snapshot: Option<String>,
    },
    /// Evaluate samples (and optionally the model) and print JSON metrics.
    Eval {
        #[command(subcommand)]
        what: EvalWhat,
    },
    /// The main job: train `toy` (or --main-preset) and `toy-guide`, sample unguided and
    /// autoguided (w = 3), print exact metrics side by side and write plots.
    Demo {
        #[arg(long, default_value = "runs/demo")]
        out: PathBuf,
        /// Training seeds, comma-separated; with more than one, each goes to OUT/seed-N and
        /// a mean ± std table is printed.
        #[arg(long, value_delimiter = ',', default_value = "0")]
        seeds: Vec<u64>,
        /// Samples per column.
        #[arg(long, default_value_t = 163_840)]
        n: usize,
        #[arg(long, default_value_t = 3.0)]
        guidance: f64,
        /// Overrides for both runs (e.g. --set train.duration_nimg=...).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Overrides for the guide run only.
        #[arg(long = "guide-set", value_name = "KEY=VALUE")]
        guide_sets: Vec<String>,
        /// Preset of the main model.
        #[arg(long, default_value = "toy")]
        main_preset: String,
        /// Preset of the guide.
        #[arg(long, default_value = "toy-guide")]
        guide_preset: String,
    },
    /// Benchmarks: `--speed PRESET` times training steps split into data and model;
    /// `--grid FILE.toml --out DIR` runs an equal-budget grid of arms × seeds (resumable;
    /// `--shard i/N` runs a share of it, `--report` merges the shards' results).
    Bench {
        /// Preset to time (`classifier`: the Fashion-MNIST feature classifier).
        #[arg(long, conflicts_with = "grid")]
        speed: Option<String>,
        /// Grid file (arms × seeds × budgets).
        #[arg(long, requires = "out")]
        grid: Option<PathBuf>,
        /// Output folder of the grid: results.jsonl, report.md, plots.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Run only shard i of N of the grid's cells (1-based, e.g. 2/4) into its own
        /// results file of --out; merge them with --report (docs/slurm-grid.sh).
        #[arg(long, requires = "grid", value_name = "i/N")]
        shard: Option<String>,
        /// Run nothing: merge the results files of --out and write the report.
        #[arg(long, requires = "grid", conflicts_with = "shard")]
        report: bool,
        /// Training steps to time (after 3 warm-up steps).
        #[arg(long, default_value_t = 64)]
        steps: u64,
        /// Override a config field of the timed preset: --set unet.engine=burn (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
    /// List the presets and the results they reach.
    Presets,
    /// Train the Fashion-MNIST feature classifier of the image metrics (deterministic, about
    /// 4 minutes on 2 cores) and cache it; an existing one is kept and its accuracy shown.
    Classifier {
        /// Where to save it (default: the cache path, see README).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Fashion-MNIST folder (default: /usr/share/datasets/fashion-mnist).
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long, default_value_t = 5)]
        epochs: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Retrain even if the file exists.
        #[arg(long)]
        force: bool,
    },
    /// Write RUN/report.html: a training run's curves, tables, pictures and provenance.
    Report {
        #[arg(long)]
        run: PathBuf,
    },
}

#[derive(Subcommand)]
enum EvalWhat {
    /// Exact toy metrics of a samples file.
    Toy {
        #[arg(long)]
        samples: PathBuf,
        /// Also compute model metrics (exact loss, ODE-L2) of this run.
        #[arg(long)]
        run: Option<PathBuf>,
        #[arg(long, requires = "guidance")]
        guide: Option<PathBuf>,
        #[arg(long, requires = "guide")]
        guidance: Option<f64>,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Image metrics on the project's Fashion-MNIST classifier features (FD, KID, precision,
    /// recall against the test split; class accuracy of class-conditional samples). Give
    /// --samples FILE.npy ([N, 1, 28, 28], labels from FILE.labels.npy when present), or
    /// --run RUN to sample and evaluate the run itself.
    Images {
        #[arg(long, required_unless_present = "run", conflicts_with = "run")]
        samples: Option<PathBuf>,
        /// Labels of the samples (int [N]); default FILE.labels.npy if it exists.
        #[arg(long)]
        labels: Option<PathBuf>,
        #[arg(long)]
        run: Option<PathBuf>,
        /// With --run: evaluate every snapshot too, not only the newest checkpoint.
        #[arg(long)]
        snapshots: bool,
        /// With --run: samples per evaluation.
        #[arg(long, default_value_t = 1000)]
        n: usize,
        /// With --run: class-free guidance weight.
        #[arg(long)]
        cfg: Option<f64>,
        /// Feature classifier file (default: the cached one).
        #[arg(long)]
        classifier: Option<PathBuf>,
        /// With --samples: also FD on ImageNet MobileNetV2 features from this safetensors file
        /// (see README; features take seconds per 1,000 images, the distance about a second).
        #[arg(long)]
        mobilenet: Option<PathBuf>,
        /// Input side the 28×28 images are resized to for MobileNetV2.
        #[arg(long, default_value_t = 64)]
        mobilenet_side: usize,
        /// Fashion-MNIST folder (default: /usr/share/datasets/fashion-mnist).
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// A toy run's noise-schedule error profile m̂(σ) (its newest refresh) against the exact
    /// mmse(σ) of the analytic posterior; one JSON line per shown bin.
    ToyMmse {
        #[arg(long)]
        run: PathBuf,
        /// Show every k-th bin.
        #[arg(long, default_value_t = 8)]
        every: usize,
        /// Monte Carlo points per exact mmse value.
        #[arg(long, default_value_t = 20_000)]
        n: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
}

/// A progress bar over images trained.
struct Bar {
    bar: Option<ProgressBar>,
}

impl Observer for Bar {
    fn progress(&mut self, nimg: u64, total: u64, loss: f64) {
        let bar = self.bar.get_or_insert_with(|| {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {percent}% nimg {human_pos}/{human_len} eta {eta} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b
        });
        bar.set_length(total);
        bar.set_position(nimg);
        bar.set_message(format!("loss {loss:.4}"));
        if nimg >= total {
            bar.finish();
            self.bar = None;
        }
    }
    fn note(&mut self, message: &str) {
        match &self.bar {
            Some(b) => b.println(message),
            None => eprintln!("{message}"),
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let code = match execute(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit_code(&e)
        }
    };
    std::process::exit(code);
}

fn exit_code(e: &anyhow::Error) -> i32 {
    use curadiff::Error as E;
    match e.chain().find_map(|c| c.downcast_ref::<E>()) {
        Some(E::NonFiniteLoss { .. }) => 3,
        Some(E::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => 2,
        Some(
            E::UnknownPreset { .. }
            | E::UnknownKey { .. }
            | E::InvalidValue { .. }
            | E::Config(_)
            | E::ConfigMismatch { .. }
            | E::BadFile { .. }
            | E::BadCheckpoint { .. },
        ) => 2,
        _ => 1,
    }
}

fn execute(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train {
            preset: name,
            out,
            mut sets,
            seed,
            dry_run,
            budget_seconds,
            budget_nimg,
        } => {
            if let Some(s) = budget_seconds {
                sets.push(format!("train.budget_seconds={s}"));
            }
            if let Some(n) = budget_nimg {
                sets.push(format!("train.budget_nimg={n}"));
            }
            let mut cfg = preset(&name)?.with_overrides(&sets)?;
            if let Some(s) = seed {
                cfg.seed = s;
            }
            if dry_run {
                print!("{}", cfg.to_toml()?);
                return Ok(());
            }
            let o = curadiff::trainjob::train(&out, &cfg, &mut Bar { bar: None })
                .with_context(|| format!("training {}", out.display()))?;
            println!(
                "{}",
                serde_json::json!({
                    "run": out, "step": o.counters.step, "nimg": o.counters.nimg,
                    "loss": o.last_loss, "seconds": o.counters.seconds,
                    "resumed_from": o.resumed_from,
                })
            );
        }
        Command::Sample {
            run,
            guide,
            guidance,
            n,
            seed,
            raw,
            out,
            plot,
            class,
            unconditional,
            cfg,
            snapshot,
        } => {
            let rd = run::RunDir::new(&run);
            if rd.config().exists() && rd.read_config()?.data.is_images() {
                let req = curadiff::imagejob::SampleRequest {
                    run,
                    snapshot,
                    guide: guide.zip(guidance),
                    cfg,
                    class,
                    unconditional,
                    n,
                    seed,
                    raw,
                };
                let s = curadiff::imagejob::sample(&req)?;
                curadiff::imagejob::write(&out, &s)?;
                if let Some(p) = plot {
                    curadiff::plot::grid::sample_grid_png(
                        &s.images,
                        s.shape,
                        &s.labels,
                        2,
                        &format!("{n} samples"),
                        &p,
                    )?;
                }
                eprintln!("wrote {n} images to {}", out.display());
                return Ok(());
            }
            if class.is_some() || unconditional || cfg.is_some() || snapshot.is_some() {
                anyhow::bail!(curadiff::Error::Config(
                    "--class, --unconditional, --cfg and --snapshot are for image runs".into()
                ));
            }
            let g = guide.as_deref().zip(guidance);
            let weights = if raw { Weights::Raw } else { Weights::Ema };
            let models = Models::load(&run, g, weights)?;
            let samples = models.sample(n, seed)?;
            toyjob::write_samples(&out, &samples)?;
            if let Some(p) = plot {
                curadiff::plot::scatter::scatter_png(
                    &models.mixture(),
                    &samples,
                    &format!("{n} samples"),
                    &p,
                )?;
            }
            eprintln!("wrote {n} samples to {}", out.display());
        }
        Command::Eval {
            what:
                EvalWhat::Toy {
                    samples,
                    run,
                    guide,
                    guidance,
                    seed,
                },
        } => {
            let pts = toyjob::read_samples(&samples)?;
            let mut json = serde_json::Map::new();
            let classes = match &run {
                Some(r) => run::RunDir::new(r).read_config()?.data.classes,
                None => curadiff::data::toy2d::Classes::A,
            };
            let m = curadiff::data::toy2d::Mixture::tree(classes);
            let sm = curadiff::eval::toy::sample_metrics(&m, &pts, seed)?;
            json.insert("samples".into(), serde_json::to_value(sm)?);
            if let Some(r) = run {
                let models = Models::load(&r, guide.as_deref().zip(guidance), Weights::Ema)?;
                json.insert(
                    "model".into(),
                    serde_json::to_value(models.model_metrics(seed)?)?,
                );
            }
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
        Command::Eval {
            what:
                EvalWhat::ToyMmse {
                    run: dir,
                    every,
                    n,
                    seed,
                },
        } => {
            let cfg = run::RunDir::new(&dir).read_config()?;
            let records = curadiff::train::noise_log::read(&dir)?;
            let Some(last) = records.last() else {
                return Err(curadiff::Error::Config(format!(
                    "{} has no noise-schedule refresh yet (noise/refreshes.jsonl); train it \
                     with --set diffusion.schedule.kind=infonoise (or adaptive) past the warm-up",
                    dir.display()
                ))
                .into());
            };
            let m = curadiff::data::toy2d::Mixture::tree(cfg.data.classes);
            for (k, (&sigma, &est)) in last.sigma.iter().zip(&last.m_hat).enumerate() {
                if k % every.max(1) != 0 {
                    continue;
                }
                let exact = curadiff::eval::toy::exact_mmse(&m, sigma, n, seed);
                println!(
                    "{}",
                    serde_json::json!({
                        "step": last.step, "sigma": sigma, "m_hat": est,
                        "exact_mmse": exact, "ratio": est / exact,
                    })
                );
            }
        }
        Command::Demo {
            out,
            seeds,
            n,
            guidance,
            sets,
            guide_sets,
            main_preset,
            guide_preset,
        } => {
            let mut all = Vec::new();
            for &seed in &seeds {
                let dir = if seeds.len() > 1 {
                    out.join(format!("seed-{seed}"))
                } else {
                    out.clone()
                };
                let cfg = DemoConfig {
                    out: dir,
                    seed,
                    n,
                    sample_seed: 7,
                    guidance,
                    sets: sets.clone(),
                    guide_sets: guide_sets.clone(),
                    main_preset: main_preset.clone(),
                    guide_preset: guide_preset.clone(),
                };
                let cols = toyjob::demo(&cfg, &mut Bar { bar: None })?;
                println!("seed {seed}\n{}", demo_table(&cols));
                println!("metrics: {}", cfg.out.join("metrics.json").display());
                all.push(cols);
            }
            if all.len() > 1 {
                println!("{}", seeds_table(&seeds, &all));
            }
        }
        Command::Bench {
            speed,
            grid,
            out,
            shard,
            report,
            steps,
            sets,
        } => match (speed, grid, out) {
            (Some(p), _, _) => bench::speed(&p, steps, &sets)?,
            (None, Some(g), Some(o)) => bench::grid(&g, &o, shard.as_deref(), report)?,
            _ => anyhow::bail!(curadiff::Error::Config(
                "bench needs --speed PRESET or --grid FILE.toml --out DIR".into()
            )),
        },
        Command::Classifier {
            out,
            data,
            epochs,
            seed,
            force,
        } => {
            let cfg = curadiff::eval::classifier::ClassifierConfig {
                epochs,
                seed,
                ..Default::default()
            };
            images::train_classifier(out, data, cfg, force)?;
        }
        Command::Eval {
            what:
                EvalWhat::Images {
                    samples,
                    labels,
                    run,
                    snapshots,
                    n,
                    cfg,
                    classifier,
                    mobilenet,
                    mobilenet_side,
                    data,
                    seed,
                },
        } => match (samples, run) {
            (Some(s), _) => {
                let m =
                    images::eval_samples(&s, labels, classifier.as_deref(), data.as_deref(), seed)?;
                let mut v = serde_json::to_value(&m)?;
                if let Some(mp) = mobilenet {
                    let (fd, name) =
                        images::fd_mobilenet(&s, &mp, mobilenet_side, data.as_deref())?;
                    v["fd_mobilenet"] = serde_json::json!({ "fd": fd, "feature_network": name });
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
            (None, Some(r)) => images::eval_run(
                &r,
                snapshots,
                n,
                cfg,
                classifier.as_deref(),
                data.as_deref(),
                seed,
            )?,
            (None, None) => anyhow::bail!(curadiff::Error::Config(
                "eval images needs --samples FILE.npy or --run RUN".into()
            )),
        },
        Command::Report { run } => report::run(&run)?,
        Command::Presets => {
            for p in PRESETS {
                println!("{:<12} {}", p.name, p.about);
            }
        }
    }
    Ok(())
}

type Metric = (&'static str, fn(&toyjob::Column) -> f64);

const METRICS: [Metric; 7] = [
    ("classification", |c| c.samples.classification),
    ("mandala", |c| c.samples.mandala),
    ("mmd", |c| c.samples.mmd),
    ("mean loglik", |c| c.samples.mean_loglik),
    ("ode_l2", |c| c.model.ode_l2),
    ("exact loss (main)", |c| c.model.loss),
    ("exact loss outer", |c| c.model.loss_outer),
];

/// Mean ± std over seeds of every metric, one column per guidance setting.
fn seeds_table(seeds: &[u64], all: &[Vec<toyjob::Column>]) -> String {
    let mut s = format!("mean ± std over seeds {seeds:?}\n{:<22}", "metric");
    for c in &all[0] {
        s += &format!("{:>24}", format!("{} w={}", c.name, c.guidance));
    }
    s.push('\n');
    for (name, f) in METRICS {
        s += &format!("{name:<22}");
        for i in 0..all[0].len() {
            let v: Vec<f64> = all.iter().map(|cols| f(&cols[i])).collect();
            let (m, sd) = toyjob::mean_std(&v);
            s += &format!("{:>24}", format!("{m:.4} ± {sd:.4}"));
        }
        s.push('\n');
    }
    s
}

fn demo_table(cols: &[toyjob::Column]) -> String {
    let mut s = format!("{:<22}", "metric");
    for c in cols {
        s += &format!("{:>16}", format!("{} w={}", c.name, c.guidance));
    }
    s.push('\n');
    for (name, f) in METRICS {
        s += &format!("{name:<22}");
        for c in cols {
            s += &format!("{:>16.5}", f(c));
        }
        s.push('\n');
    }
    for c in cols {
        s += &format!("plot {}: {}\n", c.name, c.plot.display());
    }
    s
}
