//! The image task: a U-Net learner (burn or fused engine) on an image set (Fashion-MNIST,
//! `.npy`, a PNG folder; long-tailed cut and subset files), with class-conditional sample
//! grids at intervals, trained by the one loop ([`super::run::run_task`]); and the readers
//! of image runs.

use std::path::Path;

use super::checkpoint;
use super::config::{RunConfig, SamplerConfig, WindowTarget};
use super::image::{sample_images, Guide, ImageBatch, ImageLearner, ImageSampling};
use super::image_batch::{draw_batch, redraw_noise, Draw, Epochs};
pub use super::image_data::{
    check_fits, pool, reference_set, training_data, training_set, TrainingData,
};
use super::optim::Adam;
use super::reweight_log;
use super::run::{claim, crossed, run_task, Counters, Observer, Outcome, RunDir};
use super::scorer::{reference_path, FrozenImage, Scorer, Weights};
use super::select::{choose_rows, restore_switch, OnlineSelection};
use super::task::{Chosen, Groups, Task};
use crate::curation::ambient::target::Ambient;
use crate::curation::reweight::dro::Dro;
use crate::curation::reweighter::{ClassWeights, Examples, Reweighter};
use crate::curation::targets::{Clean, Targets};
use crate::data::images::ImageSet;
use crate::data::windows::NoiseWindow;
use crate::diffusion::loss::Losses;
use crate::diffusion::noise::Schedule;
use crate::error::{Error, Result};
use crate::models::unet::UnetConfig;

/// Seed of the sample grids written during training (the same start noise every time, so
/// grids of one run are comparable).
pub const GRID_SEED: u64 = 7;
/// Columns of a sample grid; one row per class.
pub const GRID_COLS: usize = 10;

/// The image sampler settings of a run config.
pub fn sampling(s: &SamplerConfig) -> ImageSampling {
    ImageSampling {
        steps: s.steps,
        sigma_min: s.sigma_min,
        sigma_max: s.sigma_max,
        rho: s.rho,
        chunk: 128,
    }
}

/// The U-Net section of an image config.
pub fn unet_of(cfg: &RunConfig) -> Result<&UnetConfig> {
    cfg.unet.as_ref().ok_or_else(|| Error::InvalidValue {
        field: "unet".into(),
        why: "image data needs a [unet] section; start from `--preset fmnist`".into(),
    })
}

/// A fresh learner for an image config (on the training device).
pub fn learner(cfg: &RunConfig) -> Result<ImageLearner> {
    let mut l = ImageLearner::new(
        unet_of(cfg)?,
        cfg.seed,
        cfg.diffusion.sigma_data,
        cfg.diffusion.weighting,
        Adam::new(cfg.train.beta1, cfg.train.beta2, cfg.train.eps),
        cfg.train.ema_sigma_rel,
        &crate::device::training(),
    )?;
    l.add_phema(&cfg.train.phema_sigma_rels)?;
    Ok(l)
}

/// Writes a class-conditional grid (one row per class, [`GRID_COLS`] columns; unconditional
/// rows for an unconditional network) of the EMA weights to `path`.
pub fn write_grid(cfg: &RunConfig, l: &ImageLearner, path: &Path) -> Result<()> {
    let unet = unet_of(cfg)?;
    let rows = unet.num_classes.clamp(1, 10);
    let labels: Vec<Option<usize>> = (0..rows * GRID_COLS)
        .map(|i| (unet.num_classes > 0).then_some(i / GRID_COLS))
        .collect();
    let den = l.ema_inference();
    let x = sample_images(
        &den,
        &Guide::None,
        &labels,
        &sampling(&cfg.sampler),
        GRID_SEED,
        &crate::device::inference(),
    )?;
    let title = path
        .file_stem()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    crate::plot::grid::image_grid_png(
        &x,
        den.shape,
        GRID_COLS,
        2,
        &format!("EMA samples, {title}"),
        path,
    )?;
    Ok(())
}

/// `cfg` with the training data's fingerprint in `data.fingerprint`, refusing a run whose
/// recorded fingerprint differs (the data changed under it): the set's, followed by
/// `+windows:<hash>` of the examples' noise windows when it has them. Run directories from
/// before fingerprints were recorded keep none.
fn with_fingerprint(run: &RunDir, cfg: &RunConfig, data: &TrainingData) -> Result<RunConfig> {
    let mut fp = crate::data::fingerprint::fingerprint(&data.set);
    if let Some(w) = &data.windows {
        let bytes: Vec<u8> = w
            .iter()
            .flat_map(|w| [w.sigma_min.to_le_bytes(), w.sigma_max.to_le_bytes()])
            .flatten()
            .collect();
        fp = format!("{fp}+windows:{}", crate::data::fingerprint::fnv1a(&bytes));
    }
    let recorded = if run.config().exists() {
        run.read_config()?.data.fingerprint
    } else {
        cfg.data.fingerprint.clone()
    };
    let mut out = cfg.clone();
    match recorded.as_str() {
        "" if run.config().exists() => {}
        "" => out.data.fingerprint = fp,
        r if r == fp => out.data.fingerprint = fp,
        r => {
            return Err(Error::Config(format!(
                "the training data of {} is not what the run started with (data.fingerprint \
                 {r}, the data now gives {fp}): restore the data (and data.subset, data.windows) it was \
                 trained on, or start a new run directory",
                run.root.display()
            )))
        }
    }
    Ok(out)
}

/// The image learner (U-Net on either engine) on an image set, with sample grids at
/// intervals.
pub struct ImageTask<'a> {
    pub learner: ImageLearner,
    cfg: &'a RunConfig,
    set: ImageSet,
    reweighter: Option<Box<dyn Reweighter>>,
    /// The examples' noise windows (None: every example at every σ).
    windows: Option<Vec<NoiseWindow>>,
    targets: Box<dyn Targets>,
    /// The windowed walk's position in the shuffled epochs (saved in checkpoints).
    cursor: u64,
    /// The shuffled epochs the batches walk through (one permutation per epoch).
    epochs: Epochs,
    selection: Option<OnlineSelection<ImageBatch>>,
    /// The reweighter's reference model, when it needs one.
    reweight_reference: Option<Box<dyn Scorer<ImageBatch>>>,
    /// Reweighter updates so far, and the run directory their history goes to.
    reweight_updates: u64,
    run_dir: std::path::PathBuf,
}

impl<'a> ImageTask<'a> {
    /// The task of `cfg` on `data` (checked to fit the network); `run_dir` resolves a
    /// relative selection reference.
    pub fn new(cfg: &'a RunConfig, data: TrainingData, run_dir: &Path) -> Result<Self> {
        let TrainingData { set, windows, .. } = data;
        let reweighter: Option<Box<dyn Reweighter>> = if cfg.reweight.is_dro() {
            let r = &cfg.reweight;
            Some(Box::new(Dro::new(set.num_classes, r.eta, r.smoothing)?))
        } else if cfg.train.class_weights.is_empty() {
            None
        } else {
            Some(Box::new(ClassWeights::new(
                &cfg.train.class_weights,
                set.num_classes,
            )?))
        };
        let reweight_reference = match &reweighter {
            Some(r) if r.needs_reference() => Some(frozen_reference(
                &cfg.reweight.reference,
                run_dir,
                "reweight.reference",
                cfg,
                &set,
            )?),
            _ => None,
        };
        let selection = OnlineSelection::new(&cfg.select, run_dir, &|path: &Path| {
            frozen_at(path, "select.reference", cfg, &set)
        })?;
        let epochs = Epochs::new(cfg.seed, set.len());
        Ok(Self {
            learner: learner(cfg)?,
            cfg,
            set,
            reweighter,
            windows,
            targets: match cfg.data.window_target {
                WindowTarget::Ambient => Box::new(Ambient),
                WindowTarget::Clean => Box::new(Clean),
            },
            cursor: 0,
            epochs,
            selection,
            reweight_reference,
            reweight_updates: 0,
            run_dir: run_dir.to_path_buf(),
        })
    }

    /// What a reweighter sees of `b`: ids, true labels and σ of its rows.
    fn examples(&self, b: &ImageBatch) -> (Vec<u64>, Vec<u32>) {
        let ids = b.index.iter().map(|&i| self.set.ids[i]).collect();
        let labels = b.index.iter().map(|&i| self.set.labels[i]).collect();
        (ids, labels)
    }
}

impl Task for ImageTask<'_> {
    type Batch = ImageBatch;

    fn batch(&mut self, noise: &mut Schedule, step: u64) -> Result<ImageBatch> {
        let b = self.cfg.train.batch;
        let draw = Draw {
            windows: self.windows.as_deref(),
            buffer: self.cfg.data.window_buffer,
            // Without windows every example is clean (and the walk is at step·b).
            targets: match self.windows {
                Some(_) => self.targets.as_ref(),
                None => &Clean,
            },
            label_dropout: unet_of(self.cfg)?.label_dropout,
        };
        let mut plain = step * b as u64;
        let cursor = match self.windows {
            Some(_) => &mut self.cursor,
            None => &mut plain,
        };
        draw_batch(
            &self.set,
            &draw,
            noise,
            &mut self.epochs,
            self.cfg.seed,
            step,
            b,
            cursor,
        )
    }

    fn choose(
        &mut self,
        b: ImageBatch,
        noise: &Schedule,
        step: u64,
        c: &mut Counters,
    ) -> Result<Chosen<ImageBatch>> {
        let seed = self.cfg.seed;
        let mut redraw = |b: &ImageBatch| redraw_noise(b, &mut noise.clone(), seed, step);
        let len = b.sigma.len();
        choose_rows(
            self.selection.as_mut(),
            &Weights {
                learner: &self.learner,
                ema: false,
            },
            &Weights {
                learner: &self.learner,
                ema: true,
            },
            b,
            len,
            &mut redraw,
            ImageBatch::subset,
            seed,
            step,
            c,
        )
    }

    fn len(b: &ImageBatch) -> usize {
        b.sigma.len()
    }

    fn sigma(b: &ImageBatch) -> &[f64] {
        &b.sigma
    }

    fn weights(&mut self, b: &ImageBatch) -> Result<Option<Vec<f32>>> {
        if self.reweighter.is_none() {
            return Ok(None);
        }
        let (ids, labels) = self.examples(b);
        let view = Examples {
            ids: &ids,
            labels: &labels,
            sigma: &b.sigma,
        };
        Ok(self.reweighter.as_mut().map(|r| r.weights(&view)))
    }

    fn observe_losses(&mut self, b: &ImageBatch, losses: &Losses) -> Result<Option<String>> {
        if self.reweighter.is_none() {
            return Ok(None);
        }
        let (ids, labels) = self.examples(b);
        let view = Examples {
            ids: &ids,
            labels: &labels,
            sigma: &b.sigma,
        };
        // The reference scores the very (x, σ, noise) the learner just trained on.
        let reference = match &self.reweight_reference {
            Some(s) => Some(s.losses(b)?.weighted),
            None => None,
        };
        let Some(r) = self.reweighter.as_mut() else {
            return Ok(None);
        };
        let warning = r.observe(&view, &losses.weighted, reference.as_deref());
        if let Some(h) = r.history() {
            self.reweight_updates += 1;
            reweight_log::append(&self.run_dir, self.reweight_updates, &h)?;
        }
        Ok(warning)
    }

    fn step(&mut self, b: &ImageBatch, weights: Option<&[f32]>, lr: f64) -> Result<Losses> {
        self.learner.step_weighted(b, weights, lr)
    }

    fn update_ema(&mut self, position: u64, batch: usize) {
        self.learner.update_ema(position, batch);
    }

    fn x0_errors(_b: &ImageBatch, losses: &Losses) -> Vec<f64> {
        losses.x0_error.iter().map(|&v| v as f64).collect()
    }

    fn log_variance(&self, sigma: &[f64]) -> Result<Option<Vec<f64>>> {
        self.learner.log_variance(sigma)
    }

    fn eval_due(&self, position: u64, batch: u64, done: bool) -> bool {
        let every = self.cfg.train.sample_every_nimg;
        every > 0 && crossed(position, batch, every) && !done
    }

    fn eval(&mut self, run: &RunDir, c: &Counters) -> Result<()> {
        crate::fsutil::create_dir(&run.samples())?;
        write_grid(
            self.cfg,
            &self.learner,
            &run.samples().join(format!("grid-nimg-{:09}.png", c.nimg)),
        )
    }

    fn write_phema(&self, run: &RunDir, position: u64, batch: u64) -> Result<bool> {
        let every = self.cfg.train.phema_every_nimg;
        let profiles = self.learner.phema_profiles();
        if every == 0 || profiles.is_empty() || !crossed(position, batch, every) {
            return Ok(false);
        }
        super::phema::snapshot::write(&run.root, position, profiles)?;
        Ok(true)
    }

    fn groups(&self) -> Result<Groups> {
        self.learner.to_groups()
    }

    fn state(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        if let Some(r) = &self.reweighter {
            m.insert("reweighter".into(), r.state());
            if r.history().is_some() {
                m.insert("reweight_updates".into(), self.reweight_updates.into());
            }
        }
        if self.windows.is_some() {
            m.insert("window_cursor".into(), self.cursor.into());
        }
        if let Some(sel) = &self.selection {
            m.insert(
                "switch".into(),
                serde_json::to_value(&sel.switch).unwrap_or(serde_json::Value::Null),
            );
        }
        m
    }

    fn restore_state(&mut self, extra: &serde_json::Value, dir: &Path) -> Result<()> {
        if let (Some(r), Some(state)) = (self.reweighter.as_mut(), extra.get("reweighter")) {
            r.restore(state).map_err(|e| Error::BadCheckpoint {
                path: dir.to_path_buf(),
                why: format!("malformed reweighter state: {e}"),
                hint: "it does not fit this config's reweighting".into(),
            })?;
        }
        restore_switch(self.selection.as_mut(), extra, dir)?;
        if self
            .reweighter
            .as_ref()
            .is_some_and(|r| r.history().is_some())
        {
            // The history keeps the updates of the checkpoint (none for a fresh run).
            self.reweight_updates = extra
                .get("reweight_updates")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            reweight_log::truncate(&self.run_dir, self.reweight_updates)?;
        }
        // A fresh run's extra is empty: the walk starts at 0.
        if let (Some(_), Some(v)) = (&self.windows, extra.get("window_cursor")) {
            self.cursor = v.as_u64().ok_or_else(|| Error::BadCheckpoint {
                path: dir.to_path_buf(),
                why: format!("window_cursor {v} is not a count"),
                hint: "the checkpoint's extra state is damaged".into(),
            })?;
        }
        Ok(())
    }

    fn load_groups(&mut self, g: &Groups, step: u64) -> Result<()> {
        self.learner.load_groups(g, step)
    }
}

/// A frozen reference image run for `field` (a run directory, relative paths also against
/// `run_dir`), scored with its EMA weights.
fn frozen_reference(
    dir: &str,
    run_dir: &Path,
    field: &str,
    cfg: &RunConfig,
    set: &ImageSet,
) -> Result<Box<dyn Scorer<ImageBatch>>> {
    frozen_at(&reference_path(dir, run_dir), field, cfg, set)
}

/// The image run at `path` as a frozen scorer for `field`: it must be an image run whose
/// network takes `set`'s images and has the class count of `cfg`'s network.
fn frozen_at(
    path: &Path,
    field: &str,
    cfg: &RunConfig,
    set: &ImageSet,
) -> Result<Box<dyn Scorer<ImageBatch>>> {
    let named = |e: Error| Error::InvalidValue {
        field: field.into(),
        why: format!("cannot use reference run {}: {e}", path.display()),
    };
    if !RunDir::new(path).config().exists() {
        return Err(named(Error::Config(
            "it is not a run directory (no config.toml); train the reference first, e.g. \
             `curadiff train --preset fmnist-guide --out DIR`"
                .into(),
        )));
    }
    let (rcfg, reference, _) = load(path, None).map_err(named)?;
    let (ours, theirs) = (unet_of(cfg)?, unet_of(&rcfg).map_err(named)?);
    check_fits(set, theirs, "the training data").map_err(named)?;
    if ours.num_classes != theirs.num_classes {
        return Err(named(Error::Config(format!(
            "it is conditioned on {} classes and this run on {}; the reference must be \
             trained on the same task",
            theirs.num_classes, ours.num_classes
        ))));
    }
    Ok(Box::new(FrozenImage(reference)))
}

/// Trains (or resumes) the image run in `dir`.
pub fn train(dir: &Path, cfg: &RunConfig, obs: &mut dyn Observer) -> Result<Outcome> {
    cfg.validate()?;
    let unet = unet_of(cfg)?;
    let data = training_data(&cfg.data, cfg.seed)?;
    let curate_seconds = data.curate_seconds;
    check_fits(
        &data.set,
        unet,
        &format!("the training data ({})", cfg.data.kind),
    )?;
    let run = RunDir::new(dir);
    let cfg = &with_fingerprint(&run, cfg, &data)?;
    // The task first: its references are loaded and checked before the run is claimed, so
    // a bad reference leaves no run directory behind.
    let sources = (cfg.data.corrupt.is_on() || cfg.data.extra.is_on())
        .then(|| crate::data::corrupt::apply::set_sources(&data.set, &cfg.data.corrupt));
    let warnings = data.warnings.clone();
    let mut task = ImageTask::new(cfg, data, dir)?;
    claim(&run, cfg)?;
    for w in &warnings {
        obs.note(w);
    }
    if let Some(records) = sources {
        crate::data::corrupt::apply::write_sources(&run.sources(), &records)?;
    }
    run_task(&run, cfg, &mut task, curate_seconds, obs)
}

/// The learner of an image run at its newest checkpoint (or a snapshot folder under
/// `RUN/snapshots` when `label` is given), with its config and counters.
pub fn load(dir: &Path, label: Option<&str>) -> Result<(RunConfig, ImageLearner, Counters)> {
    let run = RunDir::new(dir);
    let cfg = run.read_run_config()?;
    let folder = match label {
        Some(s) => run.snapshots().join(s),
        None => run.checkpoints(),
    };
    let Some(ck) = checkpoint::latest(&folder)? else {
        return Err(Error::Config(format!(
            "{} has no checkpoint yet; run its training first",
            folder.display()
        )));
    };
    let mut l = learner(&cfg)?;
    l.load_groups(&ck.groups, ck.meta.step)
        .map_err(|e| Error::BadCheckpoint {
            path: ck.path.clone(),
            why: e.to_string(),
            hint: "it does not fit this config's network".into(),
        })?;
    Ok((cfg, l, Counters::of(&ck.meta)))
}

/// The snapshot labels of a run (folder names under `RUN/snapshots`), sorted.
pub fn snapshot_labels(dir: &Path) -> Result<Vec<String>> {
    let root = RunDir::new(dir).snapshots();
    let Ok(rd) = std::fs::read_dir(&root) else {
        return Ok(Vec::new());
    };
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::image::image_batch;
    use crate::train::presets::preset;
    use crate::train::run::Quiet;
    use std::path::PathBuf;

    /// `fmnist` on the committed 200-image fixture with the tiny test U-Net: 4 steps of 16.
    fn tiny_cfg() -> RunConfig {
        let mut c = preset("fmnist").unwrap();
        c.data.path = crate::train::image::tests::fixture_dir()
            .display()
            .to_string();
        c.unet = Some(crate::train::image::tests::tiny());
        c.train.batch = 16;
        c.train.duration_nimg = 64;
        c.train.checkpoint_every_nimg = 32;
        c.train.log_every_nimg = 16;
        c.train.sample_every_nimg = 0;
        c.sampler.steps = 2;
        c.train.snapshot_nimg = vec![32];
        c.diffusion.schedule.kind = crate::diffusion::noise::ScheduleKind::Infonoise;
        c.diffusion.schedule.warmup_steps = 1;
        c.diffusion.schedule.refresh_every = 1;
        c.diffusion.schedule.min_bin_count = 1;
        c
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("curadiff-imgrun-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// (images, loss) of every line of a run's stats.jsonl.
    fn stats(d: &Path) -> Vec<(u64, f64)> {
        crate::train::stats::read(&d.join("stats.jsonl"))
            .unwrap()
            .iter()
            .map(|l| (l.nimg, l.loss))
            .collect()
    }

    #[test]
    fn an_interrupted_image_run_resumes_to_the_same_weights() {
        // Run A trains 4 steps (checkpoints at steps 2 and 4). B is A's directory with the
        // step-4 checkpoint and the final grid removed, as after a kill between them; training
        // it again resumes at step 2 and must end with A's weights, EMA, noise state and stats.
        let cfg = tiny_cfg();
        let a = tmp("a");
        let oa = train(&a, &cfg, &mut Quiet).unwrap();
        assert_eq!((oa.counters.step, oa.counters.nimg), (4, 64));
        assert!(a.join("snapshots/nimg-000000000032").is_dir());
        let b = tmp("b");
        std::fs::create_dir_all(b.join("checkpoints")).unwrap();
        std::fs::create_dir_all(b.join("samples")).unwrap();
        for f in [
            "config.toml",
            "stats.jsonl",
            "checkpoints/ckpt-000000002.json",
            "checkpoints/ckpt-000000002.safetensors",
        ] {
            std::fs::copy(a.join(f), b.join(f)).unwrap();
        }
        let ob = train(&b, &cfg, &mut Quiet).unwrap();
        assert_eq!(ob.resumed_from, Some(2));
        let (_, la, _) = load(&a, None).unwrap();
        let (_, lb, _) = load(&b, None).unwrap();
        assert_eq!(la.to_groups().unwrap(), lb.to_groups().unwrap());
        let ca = checkpoint::latest(&a.join("checkpoints")).unwrap().unwrap();
        let cb = checkpoint::latest(&b.join("checkpoints")).unwrap().unwrap();
        assert_eq!(ca.meta.extra, cb.meta.extra);
        assert_eq!(stats(&a), stats(&b));
        // The same samples from both.
        let (pa, pb) = (a.join("grid.png"), b.join("grid.png"));
        write_grid(&cfg, &la, &pa).unwrap();
        write_grid(&cfg, &lb, &pb).unwrap();
        assert_eq!(std::fs::read(pa).unwrap(), std::fs::read(pb).unwrap());
        for d in [a, b] {
            std::fs::remove_dir_all(d).ok();
        }
    }

    #[test]
    fn a_longer_duration_extends_a_finished_run_to_the_longer_runs_weights() {
        // A trains 2 steps, then is re-run with 4: it resumes at step 2 and ends with the
        // weights, EMA and stats of B, trained for 4 steps from the start. A shorter
        // duration, or another change beside the duration, is still refused.
        let long = tiny_cfg();
        let mut short = long.clone();
        short.train.duration_nimg = 32;
        let (a, b) = (tmp("ext-a"), tmp("ext-b"));
        train(&a, &short, &mut Quiet).unwrap();
        let oa = train(&a, &long, &mut Quiet).unwrap();
        assert_eq!(oa.resumed_from, Some(2));
        assert_eq!(oa.counters.nimg, 64);
        train(&b, &long, &mut Quiet).unwrap();
        let (ca, la, _) = load(&a, None).unwrap();
        let (_, lb, _) = load(&b, None).unwrap();
        assert_eq!(ca.train.duration_nimg, 64);
        assert_eq!(la.to_groups().unwrap(), lb.to_groups().unwrap());
        assert_eq!(stats(&a), stats(&b));
        let e = train(&a, &short, &mut Quiet).unwrap_err().to_string();
        assert!(e.contains("train.duration_nimg"), "{e}");
        let mut other = long.clone();
        other.train.duration_nimg = 128;
        other.train.lr.lr *= 2.0;
        let e = train(&a, &other, &mut Quiet).unwrap_err().to_string();
        assert!(e.contains("train.lr.lr"), "{e}");
        for d in [a, b] {
            std::fs::remove_dir_all(d).ok();
        }
    }

    #[test]
    fn post_hoc_ema_profiles_resume_bit_identically() {
        // Two post-hoc profiles snapshotted every step, on both engines: run A trains 4 steps;
        // B starts from A's step-2 checkpoint. The profiles (checkpoint groups) and the
        // snapshots B writes at steps 3 and 4 are bitwise A's.
        for attn in [vec![1], Vec::new()] {
            let mut cfg = tiny_cfg();
            cfg.unet.as_mut().unwrap().attn_levels = attn;
            cfg.train.phema_sigma_rels = vec![0.05, 0.10];
            cfg.train.phema_every_nimg = 16;
            let (a, b) = (tmp("ph-a"), tmp("ph-b"));
            train(&a, &cfg, &mut Quiet).unwrap();
            std::fs::create_dir_all(b.join("checkpoints")).unwrap();
            for f in [
                "config.toml",
                "stats.jsonl",
                "checkpoints/ckpt-000000002.json",
                "checkpoints/ckpt-000000002.safetensors",
            ] {
                std::fs::copy(a.join(f), b.join(f)).unwrap();
            }
            assert_eq!(train(&b, &cfg, &mut Quiet).unwrap().resumed_from, Some(2));
            let (_, la, _) = load(&a, None).unwrap();
            let (_, lb, _) = load(&b, None).unwrap();
            let (ga, gb) = (la.to_groups().unwrap(), lb.to_groups().unwrap());
            assert!(ga.contains_key("phema-0.050000") && ga.contains_key("phema-0.100000"));
            assert_ne!(ga["phema-0.050000"], ga["phema-0.100000"]);
            assert_eq!(ga, gb, "engine {}", la.engine_name());
            let snaps = crate::train::phema::snapshot::list(&b).unwrap();
            assert_eq!(snaps.iter().map(|s| s.nimg).collect::<Vec<_>>(), [48, 64]);
            for s in snaps {
                let name = s.path.file_name().unwrap();
                let bytes = |d: &Path| std::fs::read(d.join("phema").join(name)).unwrap();
                assert!(bytes(&a) == bytes(&b), "{name:?}");
            }
            for d in [a, b] {
                std::fs::remove_dir_all(d).ok();
            }
        }
    }

    #[test]
    fn class_weights_act_on_the_training_step_through_the_loop() {
        // Equal class weights are scaled to mean 1, i.e. all 1: bit-identical to no weights.
        // Up-weighting one class changes what is learned, and the time is booked to
        // `reweight`.
        let plain = tiny_cfg();
        let mut equal = plain.clone();
        equal.train.class_weights = vec![2.0; 10];
        let mut skewed = plain.clone();
        skewed.train.class_weights = vec![1.0; 10];
        skewed.train.class_weights[9] = 10.0;
        let mut runs = Vec::new();
        for (name, cfg) in [
            ("w-plain", &plain),
            ("w-equal", &equal),
            ("w-skewed", &skewed),
        ] {
            let d = tmp(name);
            let o = train(&d, cfg, &mut Quiet).unwrap();
            let (_, l, _) = load(&d, None).unwrap();
            runs.push((o.counters, l.to_groups().unwrap()));
            std::fs::remove_dir_all(d).ok();
        }
        assert_eq!(
            runs[0].1, runs[1].1,
            "equal weights must not change training"
        );
        assert_ne!(runs[0].1, runs[2].1, "skewed weights must change training");
        assert!(!runs[0].0.seconds.contains_key("reweight"));
        assert!(runs[2].0.seconds.contains_key("reweight"));
        // One weight per class, or a named error.
        let mut wrong = plain.clone();
        wrong.train.class_weights = vec![1.0; 3];
        let e = train(&tmp("w-wrong"), &wrong, &mut Quiet)
            .expect_err("3 weights for 10 classes")
            .to_string();
        assert!(e.contains("train.class_weights"), "{e}");
        std::fs::remove_dir_all(tmp("w-wrong")).ok();
    }

    /// Records the notes a run gives.
    struct Notes(Vec<String>);
    impl Observer for Notes {
        fn note(&mut self, m: &str) {
            self.0.push(m.to_string());
        }
    }

    #[test]
    fn a_truncated_newest_checkpoint_resumes_from_the_previous_one() {
        // A finished 4-step run whose step-4 tensor file was cut short (a full disk, a kill
        // during a copy): training again moves it aside with a warning, resumes from step 2
        // and ends with the weights and stats of the intact run.
        let cfg = tiny_cfg();
        let a = tmp("trunc-a");
        train(&a, &cfg, &mut Quiet).unwrap();
        let b = tmp("trunc-b");
        std::fs::create_dir_all(b.join("checkpoints")).unwrap();
        for f in [
            "config.toml",
            "stats.jsonl",
            "checkpoints/ckpt-000000002.json",
            "checkpoints/ckpt-000000002.safetensors",
            "checkpoints/ckpt-000000004.json",
        ] {
            std::fs::copy(a.join(f), b.join(f)).unwrap();
        }
        let full = std::fs::read(a.join("checkpoints/ckpt-000000004.safetensors")).unwrap();
        let cut = b.join("checkpoints/ckpt-000000004.safetensors");
        std::fs::write(&cut, &full[..full.len() - 100]).unwrap();
        let mut notes = Notes(Vec::new());
        let ob = train(&b, &cfg, &mut notes).unwrap();
        assert_eq!(ob.resumed_from, Some(2));
        assert!(
            notes
                .0
                .iter()
                .any(|n| n.contains("ckpt-000000004") && n.contains("damaged")),
            "{:?}",
            notes.0
        );
        assert!(b
            .join("checkpoints/ckpt-000000004.safetensors.corrupt")
            .is_file());
        let (_, la, _) = load(&a, None).unwrap();
        let (_, lb, _) = load(&b, None).unwrap();
        assert_eq!(la.to_groups().unwrap(), lb.to_groups().unwrap());
        assert_eq!(stats(&a), stats(&b));
        for d in [a, b] {
            std::fs::remove_dir_all(d).ok();
        }
    }

    /// Copies run `a` into `b` up to its step-2 checkpoint, as after a kill before step 4.
    fn cut_after_step_2(a: &Path, b: &Path) {
        std::fs::create_dir_all(b.join("checkpoints")).unwrap();
        for f in [
            "config.toml",
            "stats.jsonl",
            "checkpoints/ckpt-000000002.json",
            "checkpoints/ckpt-000000002.safetensors",
        ] {
            std::fs::copy(a.join(f), b.join(f)).unwrap();
        }
    }

    #[test]
    fn noise_windows_act_on_the_training_step_and_resume_bit_identically() {
        use crate::data::windows::{self, NoiseWindow};
        let dir = tmp("windows");
        std::fs::create_dir_all(&dir).unwrap();
        // Windows refuse adaptive schedules (their errors on ambient targets): log-normal.
        let mut cfg = tiny_cfg();
        cfg.diffusion.schedule.kind = crate::diffusion::noise::ScheduleKind::Lognormal;
        let set = training_set(&cfg.data, cfg.seed).unwrap();
        let groups = |d: &Path| load(d, None).unwrap().1.to_groups().unwrap();
        let plain = train(&dir.join("plain"), &cfg, &mut Quiet).unwrap();
        // Windows that admit everything (clean rows): the walk is the plain epoch order, so
        // training is bit-identical to no windows; the file's seconds count as curation.
        let all = dir.join("clean.npy");
        let rows: Vec<_> = set.ids[..3]
            .iter()
            .map(|&i| (i, NoiseWindow::CLEAN))
            .collect();
        windows::write(&all, &set, &rows, 2.0).unwrap();
        let mut c = cfg.clone();
        c.data.windows = all.display().to_string();
        let o = train(&dir.join("clean"), &c, &mut Quiet).unwrap();
        assert_eq!(groups(&dir.join("plain")), groups(&dir.join("clean")));
        assert_eq!(o.counters.seconds["curate"], 2.0);
        assert!(!plain.counters.seconds.contains_key("curate"));
        // Half the examples with the floor σ_min = 1: training changes, and a run killed
        // after step 2 resumes (walk cursor included) to the same weights and state.
        let floor = NoiseWindow {
            sigma_min: 1.0,
            sigma_max: 0.0,
        };
        let half = dir.join("half.npy");
        let rows: Vec<_> = set.ids[..100].iter().map(|&i| (i, floor)).collect();
        windows::write(&half, &set, &rows, 0.0).unwrap();
        c.data.windows = half.display().to_string();
        c.data.window_buffer = 1.1;
        let (a, b) = (dir.join("a"), dir.join("b"));
        train(&a, &c, &mut Quiet).unwrap();
        assert_ne!(groups(&a), groups(&dir.join("plain")));
        cut_after_step_2(&a, &b);
        assert_eq!(train(&b, &c, &mut Quiet).unwrap().resumed_from, Some(2));
        assert_eq!(groups(&a), groups(&b));
        let extra = |d: &Path| {
            checkpoint::latest(&d.join("checkpoints"))
                .unwrap()
                .unwrap()
                .meta
                .extra
        };
        assert_eq!(extra(&a), extra(&b));
        // 4 steps of 16 took at least 64 positions of the walk, more when it skipped.
        let cursor = extra(&a)["window_cursor"].as_u64().unwrap();
        assert!(cursor >= 64, "{cursor}");
        // Edited windows under a run: resuming it is refused (the fingerprint covers them).
        let rows: Vec<_> = set.ids[..50].iter().map(|&i| (i, floor)).collect();
        windows::write(&half, &set, &rows, 0.0).unwrap();
        let e = train(&a, &c, &mut Quiet).unwrap_err().to_string();
        assert!(
            e.contains("data.fingerprint") && e.contains("+windows:"),
            "{e}"
        );
        // Every example with a floor: σ ≤ 1.1 is uncovered, refused before training.
        let rows: Vec<_> = set.ids.iter().map(|&i| (i, floor)).collect();
        windows::write(&half, &set, &rows, 0.0).unwrap();
        let e = train(&dir.join("gap"), &c, &mut Quiet)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no example is admitted") && e.contains("half.npy"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Online selection on images through the loop: RHO against a reference run keeps half
    /// of each super-batch of 16, books score and select seconds, counts scored images, and
    /// resumes bit-identically; JEST against the learner's own EMA runs too.
    #[test]
    fn online_selection_trains_images_on_the_chosen_rows() {
        use crate::curation::select_config::Method;
        let dir = tmp("select");
        let mut cfg = tiny_cfg();
        cfg.diffusion.schedule.kind = crate::diffusion::noise::ScheduleKind::Lognormal;
        let reference = dir.join("reference");
        train(&reference, &cfg, &mut Quiet).unwrap();
        let mut c = cfg.clone();
        c.select.method = Method::Rho;
        c.select.filter_ratio = 0.5;
        c.select.reference = reference.display().to_string();
        let (a, b) = (dir.join("a"), dir.join("b"));
        let o = train(&a, &c, &mut Quiet).unwrap();
        assert_eq!(
            (o.counters.step, o.counters.nimg, o.counters.nimg_scored),
            (4, 32, 64)
        );
        assert!(o.counters.seconds["score"] > 0.0 && o.counters.seconds.contains_key("select"));
        let groups = |d: &Path| load(d, None).unwrap().1.to_groups().unwrap();
        assert_ne!(groups(&a), groups(&reference));
        cut_after_step_2(&a, &b);
        assert_eq!(train(&b, &c, &mut Quiet).unwrap().resumed_from, Some(2));
        assert_eq!(groups(&a), groups(&b));
        let stats = |d: &Path| -> Vec<(u64, u64, f64)> {
            crate::train::stats::read(&d.join("stats.jsonl"))
                .unwrap()
                .iter()
                .map(|l| (l.nimg, l.nimg_scored, l.loss))
                .collect()
        };
        assert_eq!(stats(&a), stats(&b));
        // JEST against the learner's own EMA, with re-drawn noise for the reference.
        c.select.method = Method::Jest;
        c.select.chunks = 2;
        c.select.reference = "ema".into();
        c.select.same_noise = false;
        let o = train(&dir.join("jest"), &c, &mut Quiet).unwrap();
        assert_eq!((o.counters.nimg, o.counters.nimg_scored), (32, 64));
        // A reference that is not a run is refused, naming the key.
        c.select.reference = dir.join("nowhere").display().to_string();
        let e = train(&dir.join("bad"), &c, &mut Quiet)
            .unwrap_err()
            .to_string();
        assert!(e.contains("select.reference"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Under online selection the noise schedule observes the learner's x0-errors on every
    /// scored row of the super-batch (4 steps × 16), not the 8 chosen rows a step; with
    /// EDM2's uncertainty head its refresh reads u(σ) at the bin centres from the weights the
    /// run ends with (the refresh is after the last step).
    #[test]
    fn the_noise_schedule_sees_the_scored_super_batch_and_the_learned_uncertainty() {
        use crate::curation::select_config::Method;
        let mut cfg = tiny_cfg();
        cfg.unet.as_mut().unwrap().uncertainty = true;
        cfg.diffusion.schedule.warmup_steps = 4;
        cfg.select.method = Method::Rho;
        cfg.select.filter_ratio = 0.5;
        cfg.select.reference = "ema".into();
        let dir = tmp("sees-super");
        let o = train(&dir, &cfg, &mut Quiet).unwrap();
        assert_eq!((o.counters.nimg, o.counters.nimg_scored), (32, 64));
        let all = crate::train::noise_log::read(&dir).unwrap();
        assert_eq!(all.len(), 1);
        let r = &all[0];
        assert_eq!(r.step, 4);
        assert_eq!(r.counts.iter().sum::<u64>() + r.skipped, 4 * 16);
        let (_, l, _) = load(&dir, None).unwrap();
        let u = l.log_variance(&r.sigma).unwrap().unwrap();
        let recorded = r.log_variance.as_ref().unwrap();
        assert_eq!(recorded.len(), r.sigma.len());
        // JSON numbers read back to within an ulp (serde_json's float parsing).
        for (a, b) in recorded.iter().zip(&u) {
            assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    /// DRO class weights through the loop: the reference scores each trained batch, the
    /// weights move away from uniform and are logged once per step (summing to 1), the time
    /// goes to `reweight`, and a run killed after step 2 resumes to the same weights, the
    /// same history and the same network.
    #[test]
    fn dro_reweighting_updates_class_weights_and_resumes_bit_identically() {
        let dir = tmp("dro");
        let mut cfg = tiny_cfg();
        cfg.diffusion.schedule.kind = crate::diffusion::noise::ScheduleKind::Lognormal;
        let reference = dir.join("reference");
        train(&reference, &cfg, &mut Quiet).unwrap();
        let mut c = cfg.clone();
        c.reweight.method = "dro".into();
        c.reweight.reference = reference.display().to_string();
        c.reweight.eta = 5.0;
        let (a, b) = (dir.join("a"), dir.join("b"));
        let o = train(&a, &c, &mut Quiet).unwrap();
        assert!(o.counters.seconds["reweight"] > 0.0);
        let history = reweight_log::read(&a).unwrap();
        assert_eq!(history.len(), 4);
        for w in &history {
            assert_eq!(w.len(), 10);
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }
        let spread = |w: &[f64]| {
            w.iter().cloned().fold(0.0, f64::max) - w.iter().cloned().fold(1.0, f64::min)
        };
        assert!(spread(&history[3]) > 1e-6, "{:?}", history[3]);
        let groups = |d: &Path| load(d, None).unwrap().1.to_groups().unwrap();
        assert_ne!(groups(&a), groups(&dir.join("reference")));
        cut_after_step_2(&a, &b);
        // A killed run may have logged past its checkpoint: the extra line is dropped.
        std::fs::create_dir_all(b.join("reweight")).unwrap();
        let full = std::fs::read_to_string(reweight_log::path(&a)).unwrap();
        std::fs::write(reweight_log::path(&b), &full).unwrap();
        assert_eq!(train(&b, &c, &mut Quiet).unwrap().resumed_from, Some(2));
        assert_eq!(groups(&a), groups(&b));
        assert_eq!(
            std::fs::read_to_string(reweight_log::path(&b)).unwrap(),
            full
        );
        // Bad input names its key.
        let mut bad = c.clone();
        bad.reweight.reference = String::new();
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("reweight.reference"));
        bad.reweight.reference = dir.join("nowhere").display().to_string();
        let e = train(&dir.join("bad"), &bad, &mut Quiet)
            .unwrap_err()
            .to_string();
        assert!(e.contains("reweight.reference"), "{e}");
        bad = c.clone();
        bad.train.class_weights = vec![1.0; 10];
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("reweight.method"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_subset_trains_on_its_examples_books_its_seconds_and_pins_the_data() {
        // Subset of the fixture's first 64 ids, made with 3.5 s of curation.
        let mut cfg = tiny_cfg();
        let pool_set = pool(&cfg.data, cfg.seed).unwrap();
        let dir = tmp("subset");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("keep.npy");
        let ids: Vec<u64> = pool_set.ids[..64].to_vec();
        crate::data::subset::write(&file, &pool_set, &ids, 3.5).unwrap();
        cfg.data.subset = file.display().to_string();
        cfg.train.duration_nimg = 128;
        let run = dir.join("run");
        let o = train(&run, &cfg, &mut Quiet).unwrap();
        assert_eq!(o.counters.seconds["curate"], 3.5);
        // Every trained example is in the subset: batches index the 64-image set, whose
        // fingerprint is recorded in the run's config.
        let set = training_data(&cfg.data, cfg.seed).unwrap().set;
        assert_eq!(set.ids, ids);
        let stored = RunDir::new(&run).read_config().unwrap();
        assert_eq!(
            stored.data.fingerprint,
            crate::data::fingerprint::fingerprint(&set)
        );
        let mut noise = cfg.diffusion.noise();
        let b = image_batch(&set, &mut noise, 0.0, cfg.seed, 0, 64).unwrap();
        let mut seen = b.index.clone();
        seen.sort();
        assert_eq!(seen, (0..64).collect::<Vec<_>>());
        // Other data under the same run directory (a different subset) is refused.
        crate::data::subset::write(&file, &pool_set, &pool_set.ids[..32], 3.5).unwrap();
        let e = train(&run, &cfg, &mut Quiet).unwrap_err().to_string();
        assert!(
            e.contains("data.fingerprint") && e.contains("not what the run"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn bad_image_data_is_refused_with_the_fix() {
        let mut cfg = tiny_cfg();
        // A network for 32×32 images on 28×28 data.
        cfg.unet.as_mut().unwrap().resolution = 32;
        let e = train(&tmp("shape"), &cfg, &mut Quiet)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[1, 28, 28]") && e.contains("unet.resolution"),
            "{e}"
        );
        // Labels beyond the network's classes.
        let mut cfg = tiny_cfg();
        cfg.unet.as_mut().unwrap().num_classes = 5;
        let e = train(&tmp("labels"), &cfg, &mut Quiet)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unet.num_classes = 5") && e.contains("label"),
            "{e}"
        );
        // A missing dataset folder names the file and the package.
        let mut cfg = tiny_cfg();
        cfg.data.path = "/nonexistent/fmnist".into();
        let e = train(&tmp("missing"), &cfg, &mut Quiet)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/nonexistent/fmnist") && e.contains("dataset-fashion-mnist"),
            "{e}"
        );
        // npy without a path; exact targets on images.
        let mut cfg = tiny_cfg();
        cfg.data.kind = "npy".into();
        cfg.data.path.clear();
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("data.path"));
        let mut cfg = tiny_cfg();
        cfg.train.target = crate::train::config::LossTarget::Exact;
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("train.target"));
        for d in ["shape", "labels", "missing"] {
            std::fs::remove_dir_all(tmp(d)).ok();
        }
    }
}
