//! The train job: a run trained (or resumed) by the one loop, then its final picture in
//! `RUN/samples/final.png`: for the toy, EMA samples over the ground-truth density; for
//! images, a class-conditional sample grid of the EMA weights. The picture is evaluation, not
//! training: it is drawn once, outside the loop's phases and seconds.

use std::path::Path;

use crate::error::Result;
use crate::train::config::RunConfig;
use crate::train::run::{self, Observer, Outcome, RunDir};
use crate::train::{image_run, toy_task};

/// Sampling seed of the toy's final scatter plot.
const FINAL_PLOT_SEED: u64 = 7;
/// Samples in the toy's final scatter plot.
const FINAL_PLOT_N: usize = 16_384;

/// Trains (or resumes) the run in `dir`, then draws its final picture if it has none.
pub fn train(dir: &Path, cfg: &RunConfig, obs: &mut dyn Observer) -> Result<Outcome> {
    let o = run::train(dir, cfg, obs)?;
    final_picture(dir)?;
    Ok(o)
}

/// Draws `RUN/samples/final.png` from the run's newest checkpoint unless it exists.
pub fn final_picture(dir: &Path) -> Result<()> {
    let run = RunDir::new(dir);
    let path = run.samples().join("final.png");
    if path.exists() {
        return Ok(());
    }
    crate::fsutil::create_dir(&run.samples())?;
    let cfg = run.read_config()?;
    if cfg.data.is_images() {
        let (cfg, l, _) = image_run::load(dir, None)?;
        return image_run::write_grid(&cfg, &l, &path);
    }
    let (cfg, learner, c) = toy_task::load_snapshot_latest(dir)?;
    let mixture = crate::data::toy2d::Mixture::tree(cfg.data.classes);
    let samples = crate::eval::toy::sample_toy(
        learner.ema_inference().as_ref(),
        &mixture,
        &cfg.sampler,
        FINAL_PLOT_N,
        FINAL_PLOT_SEED,
    )?;
    crate::plot::scatter::scatter_png(
        &mixture,
        &samples,
        &format!("EMA samples after {} images (step {})", c.nimg, c.step),
        &path,
    )
}
