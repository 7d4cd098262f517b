//! Named presets: one table, each line noting the result it reaches (EMA weights, 32 Heun
//! steps, 163,840 samples, mean ± std over seeds 0–2; see the README for the command).

use super::config::{DataConfig, LossTarget, RunConfig, SamplerConfig, TrainConfig, WindowTarget};
use super::lr::LrConfig;
use crate::data::toy2d::Classes;
use crate::diffusion::loss::Weighting;
use crate::diffusion::noise::ScheduleConfig;
use crate::diffusion::DiffusionConfig;
use crate::error::{Error, Result};
use crate::models::mlp::{Engine, MlpConfig, Output};
use crate::models::unet::UnetConfig;

/// A named starting configuration.
pub struct Preset {
    pub name: &'static str,
    /// What it is for and the result it reaches.
    pub about: &'static str,
    pub build: fn() -> RunConfig,
}

/// Every preset. `curadiff train --preset NAME`.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "toy",
        about: "tree toy, class A, the published log-density MLP (width 64, gain kept ≤ 0), \
                4096 iterations of 4096 (the seed's main model); unguided classification \
                0.903 ± 0.007, mandala 0.560 ± 0.014, exact loss 0.0084 ± 0.0008; about a \
                minute on 2 cores (RESULTS.md)",
        build: toy,
    },
    Preset {
        name: "toy-wide",
        about: "the denoiser form of the toy MLP at width 128 (measured with the earlier \
                denoiser-form guide): unguided classification 0.893 ± 0.002, mandala \
                0.502 ± 0.013; guided at w = 3: 0.921 ± 0.013, 0.752 ± 0.041; exact loss \
                0.0088 ± 0.0002 (RESULTS.md)",
        build: toy_wide,
    },
    Preset {
        name: "toy-guide",
        about: "tree toy guide: the `toy` model at width 32, 512 iterations of 4096 (the \
                seed's autoguidance guide; exact loss 0.036 ± 0.002); `toy` guided by it at \
                w = 3: classification 0.927 ± 0.003, mandala 0.759 ± 0.023 (RESULTS.md)",
        build: toy_guide,
    },
    Preset {
        name: "fmnist",
        about: "Fashion-MNIST, class-conditional EDM2-style U-Net (16/32/64 channels), batch \
                128, 4096 iterations; 30 minutes on 2 cores (109k images): FD 41.9 on the \
                project's classifier, 60% of class-conditional samples classified as their \
                class unguided (RESULTS.md)",
        build: fmnist,
    },
    Preset {
        name: "fmnist-guide",
        about: "autoguidance guide for `fmnist`: 8/16/32 channels, 1024 iterations",
        build: fmnist_guide,
    },
    Preset {
        name: "fmnist-lt",
        about: "the `fmnist` network on long-tailed Fashion-MNIST (ρ = 100, label order: \
                6000 T-shirt/top … 60 Ankle boot, 14,886 images, cut by data.subset_seed = \
                0): the DisCL generator, 409,600 images; trained only with the hard tail \
                (`fmnist-lt-hard`), where it reaches the ≥ 80% CFG criterion",
        build: fmnist_lt,
    },
    Preset {
        name: "fmnist-lt-hard",
        about: "`fmnist-lt` with the hard classes in the tail (data.class_order = Trouser, Bag, \
                Sandal, Ankle boot, Sneaker, Dress, T-shirt/top, Coat, Pullover, Shirt); \
                409,600 images (43 minutes in bf16 on 2 shared cores): CFG w = 2 samples 83.6% \
                classified as their class (Coat 50%, Shirt 52%), FD 24.9 (RESULTS.md, DisCL)",
        build: fmnist_lt_hard,
    },
];

/// The preset named `name`, or an error listing the valid ones.
pub fn preset(name: &str) -> Result<RunConfig> {
    PRESETS
        .iter()
        .find(|p| p.name == name)
        .map(|p| (p.build)())
        .ok_or_else(|| Error::UnknownPreset {
            name: name.to_string(),
            valid: PRESETS
                .iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

const TOY_BATCH: usize = 4096;

fn toy() -> RunConfig {
    let batch = TOY_BATCH as u64;
    RunConfig {
        preset: "toy".into(),
        seed: 0,
        data: DataConfig {
            kind: "toy".into(),
            classes: Classes::A,
            path: String::new(),
            labels: String::new(),
            imbalance_ratio: 0.0,
            max_per_class: 0,
            subset_seed: None,
            class_order: Vec::new(),
            subset: String::new(),
            windows: String::new(),
            window_buffer: 1.0,
            window_target: WindowTarget::Ambient,
            fingerprint: String::new(),
            corrupt: Default::default(),
            extra: Default::default(),
        },
        // The published log-density form, with its output gain kept ≤ 0. From g = 0 the
        // first Adam step gives g the sign of the first gradient, which depends on the
        // initial weights; runs whose gain turns positive (a log-density unbounded above in
        // y) end in a worse solution (exact loss ≈ 0.014 against ≈ 0.009, in PyTorch as
        // here) whose guided samples stray far off the data. See RESULTS.md, "Which model
        // form".
        model: MlpConfig {
            output: Output::Energy,
            engine: Engine::Fused,
            width: 64,
            layers: 4,
            gain_init: 0.0,
            negative_gain: true,
        },
        unet: None,
        diffusion: DiffusionConfig {
            sigma_data: 0.5,
            p_mean: -2.3,
            p_std: 1.5,
            weighting: Weighting::Score,
            // Only used when `schedule.kind` is not the log-normal: the grid spans the
            // toy sampler's σ range, the warm-up is ~10% of the `toy` run and π is refreshed
            // every ~5%.
            schedule: ScheduleConfig {
                sigma_max: 5.0,
                bins: 128,
                warmup_steps: 400,
                refresh_every: 200,
                ..Default::default()
            },
        },
        train: TrainConfig {
            batch: TOY_BATCH,
            duration_nimg: 4096 * batch,
            lr: LrConfig {
                lr: 0.01,
                t_ref_nimg: (512 * batch) as f64,
                rampup_nimg: 0.0,
                selection_scaling: false,
            },
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            ema_sigma_rel: 0.010,
            target: LossTarget::Exact,
            log_every_nimg: 64 * batch,
            checkpoint_every_nimg: 512 * batch,
            keep_checkpoints: 2,
            budget_nimg: 0,
            budget_seconds: 0.0,
            snapshot_nimg: Vec::new(),
            snapshot_seconds: Vec::new(),
            class_weights: Vec::new(),
            sample_every_nimg: 0,
            phema_sigma_rels: Vec::new(),
            phema_every_nimg: 0,
        },
        select: Default::default(),
        reweight: Default::default(),
        sampler: SamplerConfig {
            steps: 32,
            sigma_min: 0.002,
            sigma_max: 5.0,
            rho: 7.0,
        },
    }
}

fn toy_wide() -> RunConfig {
    let mut c = toy();
    c.preset = "toy-wide".into();
    c.model.output = Output::Denoiser;
    c.model.negative_gain = false;
    c.model.width = 128;
    c
}

fn toy_guide() -> RunConfig {
    let mut c = toy();
    c.preset = "toy-guide".into();
    c.model.width = 32;
    c.train.duration_nimg = 512 * TOY_BATCH as u64;
    c.train.checkpoint_every_nimg = 256 * TOY_BATCH as u64;
    c
}

const FMNIST_BATCH: u64 = 128;

/// Fashion-MNIST, class-conditional U-Net (16/32/64 channels at 28/14/7, one block per level,
/// no attention): sized so that 30 minutes on 2 cores train ~2–3 epochs.
fn fmnist() -> RunConfig {
    let b = FMNIST_BATCH;
    let mut c = toy();
    c.preset = "fmnist".into();
    c.data = DataConfig {
        kind: "fmnist".into(),
        classes: Classes::A,
        path: String::new(),
        labels: String::new(),
        imbalance_ratio: 0.0,
        max_per_class: 0,
        subset_seed: None,
        class_order: Vec::new(),
        subset: String::new(),
        windows: String::new(),
        window_buffer: 1.0,
        window_target: WindowTarget::Ambient,
        fingerprint: String::new(),
        corrupt: Default::default(),
        extra: Default::default(),
    };
    c.unet = Some(UnetConfig {
        channels: 16,
        mults: vec![1, 2, 4],
        blocks: 1,
        attn_levels: Vec::new(),
        head_channels: 64,
        noise_channels: 64,
        emb_channels: 64,
        ..UnetConfig::default()
    });
    c.diffusion = DiffusionConfig {
        sigma_data: 0.5,
        p_mean: -1.2,
        p_std: 1.2,
        weighting: Weighting::Edm,
        schedule: ScheduleConfig {
            warmup_steps: 300,
            refresh_every: 100,
            ..Default::default()
        },
    };
    c.train = TrainConfig {
        batch: b as usize,
        duration_nimg: 4096 * b,
        lr: LrConfig {
            lr: 0.005,
            t_ref_nimg: (500 * b) as f64,
            rampup_nimg: (80 * b) as f64,
            selection_scaling: false,
        },
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        ema_sigma_rel: 0.05,
        target: LossTarget::Dsm,
        log_every_nimg: 50 * b,
        checkpoint_every_nimg: 200 * b,
        keep_checkpoints: 2,
        budget_nimg: 0,
        budget_seconds: 0.0,
        snapshot_nimg: Vec::new(),
        snapshot_seconds: Vec::new(),
        class_weights: Vec::new(),
        sample_every_nimg: 400 * b,
        // Post-hoc EMA: two profiles, a snapshot every 128 iterations (32 snapshots over the
        // run, 2 × 3 MB each at 0.75 M parameters: 190 MB).
        phema_sigma_rels: vec![0.05, 0.10],
        phema_every_nimg: 128 * b,
    };
    c.sampler = SamplerConfig {
        steps: 16,
        sigma_min: 0.002,
        sigma_max: 80.0,
        rho: 7.0,
    };
    c
}

/// The autoguidance guide of `fmnist`: half the channels, a quarter of the training.
fn fmnist_guide() -> RunConfig {
    let mut c = fmnist();
    c.preset = "fmnist-guide".into();
    if let Some(u) = c.unet.as_mut() {
        u.channels = 8;
        u.emb_channels = 32;
    }
    c.train.duration_nimg /= 4;
    c
}

/// The DisCL generator: `fmnist` trained only on the long-tailed cut (ρ = 100), whose images
/// are fixed by `data.subset_seed` whatever the run seed.
fn fmnist_lt() -> RunConfig {
    let mut c = fmnist();
    c.preset = "fmnist-lt".into();
    c.data.imbalance_ratio = 100.0;
    c.data.subset_seed = Some(0);
    // 3,200 steps (27.5 epochs of the 14,886 images): where CFG samples of `fmnist-lt-hard`
    // first measured ≥ 80% correct (0.69 at 1,600 steps).
    c.train.duration_nimg = 3200 * c.train.batch as u64;
    c
}

/// `fmnist-lt` with Shirt, Pullover, Coat and T-shirt/top in the tail.
fn fmnist_lt_hard() -> RunConfig {
    let mut c = fmnist_lt();
    c.preset = "fmnist-lt-hard".into();
    c.data.class_order = crate::data::long_tail::FMNIST_HARD_TAIL.to_vec();
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_unknown_names_list_valid_ones() {
        for p in PRESETS {
            (p.build)().validate().unwrap();
        }
        let e = preset("toyy").unwrap_err().to_string();
        assert!(
            e.contains("toyy")
                && e.contains(
                    "toy, toy-wide, toy-guide, fmnist, fmnist-guide, fmnist-lt, fmnist-lt-hard"
                ),
            "{e}"
        );
    }

    #[test]
    fn overrides_are_checked() {
        let c = preset("toy").unwrap();
        let d = c
            .with_overrides(&["train.batch=1024".into(), "model.width=8".into()])
            .unwrap();
        assert_eq!((d.train.batch, d.model.width), (1024, 8));
        let e = c
            .with_overrides(&["train.bach=3".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("train.bach") && e.contains("train.batch"), "{e}");
        let e = c
            .with_overrides(&["train.batch=0".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("train.batch"), "{e}");
        let e = c
            .with_overrides(&["diffusion.p_std=nan".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("diffusion.p_std"), "{e}");
        let e = c
            .with_overrides(&["model.gain_init=nan".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("model.gain_init"), "{e}");
        let e = c
            .with_overrides(&["sampler.sigma_max=-1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("sampler.sigma_max"), "{e}");
        let e = c
            .with_overrides(&["data.classes=C".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("C"), "{e}");
        // The TOML round trip is lossless.
        assert_eq!(RunConfig::from_toml(&d.to_toml().unwrap()).unwrap(), d);
        assert_eq!(c.diff(&d).len(), 2);
    }
}
