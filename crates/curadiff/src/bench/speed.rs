//! `curadiff bench --speed PRESET`: training throughput, one JSON line. Toy presets split a
//! step into data (exact samples and exact score) and model (forward, backward, Adam, EMA);
//! image presets are timed by [`super::image_speed`]; `classifier` times the feature
//! classifier, `prune` the pruning features and criteria ([`super::prune_speed`]),
//! `annotate` Ambient-Omni's noise-floor annotation ([`super::annotate_speed`]).

use std::time::Instant;

use crate::data::toy2d::Mixture;
use crate::diffusion::toy_batch::toy_batch;
use crate::error::Result;
use crate::train::learner::ToyLearner;
use crate::train::presets::preset;

/// Times `steps` training steps of `name` (with `sets` overrides) after 3 warm-up steps;
/// its JSON line. `name` may also be `classifier` (the feature classifier's speed).
pub fn speed(name: &str, steps: u64, sets: &[String]) -> Result<serde_json::Value> {
    if name == "classifier" {
        return classifier_speed(steps);
    }
    if name == "prune" {
        return super::prune_speed::prune_speed(sets);
    }
    if name == "annotate" {
        return super::annotate_speed::annotate_speed(sets);
    }
    let cfg = preset(name)?.with_overrides(sets)?;
    if cfg.data.is_images() {
        return super::image_speed::image_speed(name, &cfg, steps);
    }
    let mixture = Mixture::tree(cfg.data.classes);
    let mut noise = cfg.diffusion.noise();
    let mut learner = ToyLearner::new(&cfg, &crate::device::training());
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
    Ok(serde_json::json!({
            "preset": name,
            "batch": cfg.train.batch,
            "threads": rayon_threads(),
            "steps_timed": steps,
            "steps_per_s": 1.0 / per_step,
            "ms_per_step": { "data": 1e3 * data / n, "model": 1e3 * model / n, "total": 1e3 * per_step },
            "projected_preset_seconds": per_step * iters,
    }))
}

/// The feature classifier: training images/s (batch 128, `steps` steps) and feature
/// extraction images/s on the 10,000 test images; one JSON line.
fn classifier_speed(steps: u64) -> Result<serde_json::Value> {
    use crate::data::images::{load_fashion_mnist, Split, FASHION_MNIST_DIR};
    use crate::eval::classifier::{train, ClassifierConfig};
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
    Ok(serde_json::json!({
            "preset": "classifier", "batch": cfg.batch, "threads": rayon_threads(),
            "train_images": n, "train_images_per_s": n as f64 / t_train,
            "feature_images": test.len(), "feature_images_per_s": test.len() as f64 / t_feat,
    }))
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
