//! `curadiff bench --speed PRESET`: training throughput split into data (exact samples and
//! exact score) and model step (forward, backward, Adam, EMA).

use anyhow::Result;
use curadiff::data::toy2d::Mixture;
use curadiff::diffusion::toy_batch::toy_batch;
use curadiff::train::learner::ToyLearner;
use curadiff::train::presets::preset;
use std::time::Instant;

/// Times `steps` training steps of `name` (with `sets` overrides) after 3 warm-up steps;
/// prints one JSON line.
pub fn speed(name: &str, steps: u64, sets: &[String]) -> Result<()> {
    if name == "classifier" {
        return classifier_speed(steps);
    }
    let cfg = preset(name)?.with_overrides(sets)?;
    if cfg.data.is_images() {
        let v = curadiff::bench::image_speed::image_speed(name, &cfg, steps)?;
        println!("{v}");
        return Ok(());
    }
    let mixture = Mixture::tree(cfg.data.classes);
    let mut noise = cfg.diffusion.noise();
    let mut learner = ToyLearner::new(&cfg, &curadiff::device::training());
    let (mut data, mut model) = (0.0, 0.0);
    let warmup = 3;
    for step in 0..warmup + steps {
        let t = Instant::now();
        let b = toy_batch(
            &mixture,
            &mut noise,
            cfg.train.target,
            cfg.seed,
            step,
            cfg.train.batch,
        );
        let t_data = t.elapsed().as_secs_f64();
        let t = Instant::now();
        learner.step(&b, cfg.train.lr.at(0.0))?;
        learner.update_ema((step + 1) * cfg.train.batch as u64, cfg.train.batch);
        let t_model = t.elapsed().as_secs_f64();
        if step >= warmup {
            data += t_data;
            model += t_model;
        }
    }
    let n = steps as f64;
    let iters = cfg.train.duration_nimg as f64 / cfg.train.batch as f64;
    let per_step = (data + model) / n;
    println!(
        "{}",
        serde_json::json!({
            "preset": name,
            "batch": cfg.train.batch,
            "threads": rayon_threads(),
            "steps_timed": steps,
            "steps_per_s": 1.0 / per_step,
            "ms_per_step": { "data": 1e3 * data / n, "model": 1e3 * model / n, "total": 1e3 * per_step },
            "projected_preset_seconds": per_step * iters,
        })
    );
    Ok(())
}

/// The feature classifier: training images/s (batch 128, `steps` steps) and feature
/// extraction images/s on the 10,000 test images; one JSON line.
fn classifier_speed(steps: u64) -> Result<()> {
    use curadiff::data::images::{load_fashion_mnist, Split, FASHION_MNIST_DIR};
    use curadiff::eval::classifier::{train, ClassifierConfig};
    let dir = std::path::Path::new(FASHION_MNIST_DIR);
    let all = load_fashion_mnist(dir, Split::Train)?;
    let n = (steps.max(1) as usize * 128).min(all.len());
    let sub = all.subset(&(0..n).collect::<Vec<_>>());
    let cfg = ClassifierConfig {
        epochs: 1,
        ..Default::default()
    };
    let t = Instant::now();
    let clf = train(&sub, &cfg, &mut |_, _, _| {})?;
    let t_train = t.elapsed().as_secs_f64();
    let test = load_fashion_mnist(dir, Split::Test)?;
    let t = Instant::now();
    clf.features(&test.pixels, test.len())?;
    let t_feat = t.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "preset": "classifier", "batch": cfg.batch, "threads": rayon_threads(),
            "train_images": n, "train_images_per_s": n as f64 / t_train,
            "feature_images": test.len(), "feature_images_per_s": test.len() as f64 / t_feat,
        })
    );
    Ok(())
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs a grid file into `out` and writes its report.
pub fn grid(file: &std::path::Path, out: &std::path::Path) -> Result<()> {
    let g = curadiff::bench::grid::Grid::load(file)?;
    let cells = g.arms.len() * g.seeds.len();
    eprintln!(
        "grid {}: {} arms × {} seeds = {cells} cells",
        file.display(),
        g.arms.len(),
        g.seeds.len()
    );
    let t = Instant::now();
    let (ran, skipped, failed) =
        curadiff::bench::grid::run_grid(&g, out, &mut |m| eprintln!("{m}"))?;
    let arms: Vec<String> = g.arms.iter().map(|a| a.name.clone()).collect();
    curadiff::bench::report::write_report(out, &arms, &g.targets)?;
    println!(
        "{}",
        serde_json::json!({
            "cells": cells, "ran": ran, "skipped": skipped, "failed": failed,
            "seconds": t.elapsed().as_secs_f64(),
            "report": out.join("report.md"),
        })
    );
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {cells} cells failed; see {}",
            out.join("report.md").display()
        );
    }
    Ok(())
}
