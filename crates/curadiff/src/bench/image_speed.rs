//! `curadiff bench --speed PRESET` for image presets: training, forward and sampling
//! images/s of the U-Net, the work per image, and the achieved rate as a fraction of this
//! machine's own single-precision GEMM peak (measured by the same binary), so that figures
//! compare across machines.

use std::time::Instant;

use rayon::prelude::*;
use serde_json::{json, Value};

use crate::error::Result;
use crate::models::gemm::sgemm;
use crate::train::config::RunConfig;
use crate::train::image::{image_batch, sample_images, Guide};
use crate::train::image_run;

/// GFLOP/s of a large single-precision GEMM (2048 × 1024 · 1024 × 1024) split in row blocks
/// over the rayon pool, the best of five; the roof the U-Net's figures are compared with.
pub fn gemm_peak_gflops() -> f64 {
    let (m, k, n) = (2048usize, 1024usize, 1024usize);
    let a: Vec<f32> = (0..m * k).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect();
    let b: Vec<f32> = (0..k * n).map(|i| ((i % 13) as f32 - 6.0) / 6.0).collect();
    let mut c = vec![0.0f32; m * n];
    let rows = 128;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        c.par_chunks_mut(rows * n)
            .zip(a.par_chunks(rows * k))
            .for_each(|(cb, ab)| sgemm(ab.len() / k, k, n, ab, (k, 1), &b, (n, 1), 0.0, cb));
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (m * k * n) as f64 / best / 1e9
}

/// Times `steps` training steps (after 2 warm-up steps), the forward pass alone on the same
/// batches, and one sampling batch unguided and with classifier-free guidance (two network
/// evaluations per step); one JSON object.
pub fn image_speed(name: &str, cfg: &RunConfig, steps: u64) -> Result<Value> {
    let set = image_run::training_set(&cfg.data, cfg.seed)?;
    let unet = image_run::unet_of(cfg)?;
    image_run::check_fits(&set, unet, "the training data")?;
    let mut l = image_run::learner(cfg)?;
    let mut noise = cfg.diffusion.noise();
    let b = cfg.train.batch;
    let warmup = 2;
    let (mut data, mut train, mut fwd) = (0.0, 0.0, 0.0);
    for step in 0..warmup + steps {
        let t = Instant::now();
        let batch = image_batch(&set, &mut noise, unet.label_dropout, cfg.seed, step, b)?;
        let t_data = t.elapsed().as_secs_f64();
        let t = Instant::now();
        l.step(&batch, cfg.train.lr.at(0.0))?;
        l.update_ema((step + 1) * b as u64, b);
        let t_train = t.elapsed().as_secs_f64();
        let t = Instant::now();
        l.losses(&batch)?;
        let t_fwd = t.elapsed().as_secs_f64();
        if step >= warmup {
            data += t_data;
            train += t_train;
            fwd += t_fwd;
        }
    }
    let n = steps.max(1) as f64;
    let den = l.ema_inference();
    let labels: Vec<Option<usize>> = (0..b).map(|i| Some(i % unet.num_classes.max(1))).collect();
    let sampling = image_run::sampling(&cfg.sampler);
    let nfe = 2 * cfg.sampler.steps - 1;
    let sample = |guide: &Guide| -> Result<f64> {
        let t = Instant::now();
        sample_images(
            &den,
            guide,
            &labels,
            &sampling,
            7,
            &crate::device::inference(),
        )?;
        Ok(t.elapsed().as_secs_f64())
    };
    let t_sample = sample(&Guide::None)?;
    let t_cfg = sample(&Guide::Cfg(2.0))?;
    let train_ips = b as f64 * n / (data + train);
    let fwd_ips = b as f64 * n / fwd;
    let flops = l.forward_flops();
    let peak = gemm_peak_gflops();
    // Training costs a forward and a backward pass (about twice the forward's work).
    let frac = |ips: f64, per: f64| ips * per / 1e9 / peak;
    Ok(json!({
        "preset": name,
        "engine": l.engine_name(),
        "precision": l.precision_name(),
        "batch": b,
        "threads": rayon::current_num_threads(),
        "params": l.num_params(),
        "steps_timed": steps,
        "train_images_per_s": train_ips,
        "ms_per_step": { "data": 1e3 * data / n, "train": 1e3 * train / n },
        "forward_images_per_s": fwd_ips,
        "sampling": { "images": b, "heun_steps": cfg.sampler.steps, "nfe": nfe,
                      "seconds": t_sample, "images_per_s": b as f64 / t_sample,
                      "cfg_seconds": t_cfg, "cfg_images_per_s": b as f64 / t_cfg },
        "forward_mflop_per_image": flops.map(|f| f / 1e6),
        "train_mflop_per_image": flops.map(|f| 3.0 * f / 1e6),
        "gemm_peak_gflops": peak,
        "fraction_of_peak": flops.map(|f| json!({
            "train": frac(train_ips, 3.0 * f),
            "forward": frac(fwd_ips, f),
        })),
        "cpu": cpu_name(),
        "projected_preset_seconds": (data + train) / n
            * (cfg.train.duration_nimg as f64 / b as f64),
    }))
}

/// The CPU's model name (Linux), or "unknown".
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}
