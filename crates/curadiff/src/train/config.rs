//! The resolved configuration of a training run, its validation, and `--set key=value`
//! overrides by dotted key path.
//!
//! A run directory stores the resolved config as `config.toml` before step 0; re-running with
//! the same config resumes, a different one is refused.

use crate::curation::reweight::config::ReweightConfig;
use crate::data::corrupt::config::CorruptConfig;
use crate::data::extra::ExtraConfig;
use crate::diffusion::DiffusionConfig;
use crate::error::{Error, Result};
use crate::models::mlp::MlpConfig;
use crate::train::lr::LrConfig;
use serde::{Deserialize, Serialize};

pub use crate::diffusion::loss::LossTarget;
pub use crate::diffusion::sampler::SamplerConfig;

/// Where training examples come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// The data source: "toy" (the analytic 2-D tree), "fmnist" (Fashion-MNIST's IDX files),
    /// "npy" (an image array [N, C, H, W] or [N, H, W]) or "folder" (PNGs, one subfolder per
    /// class).
    pub kind: String,
    /// Toy classes: "A", "B" or "AB".
    #[serde(default = "default_classes")]
    pub classes: crate::data::toy2d::Classes,
    /// Images: the dataset's folder or file; empty for Fashion-MNIST's Debian location
    /// (/usr/share/datasets/fashion-mnist).
    #[serde(default)]
    pub path: String,
    /// `npy` only: an integer label array [N] (empty: unlabelled).
    #[serde(default)]
    pub labels: String,
    /// Images: keep a long-tailed subset with this imbalance ratio (largest / smallest class,
    /// exponential profile); 0 keeps the whole set.
    #[serde(default)]
    pub imbalance_ratio: f64,
    /// Images: a pool of at most this many examples per class, the first ones of each class
    /// in the source's order (so every run and the pruning commands see the same pool,
    /// whatever the seed), taken before the long-tailed cut; 0 keeps every example.
    #[serde(default, skip_serializing_if = "is_zero_usize")]
    pub max_per_class: usize,
    /// Images: the seed of the long-tailed cut (which examples each class keeps), so that a
    /// generator and every classifier trained with other run seeds see the same images.
    /// Unset (left out of config.toml): the run's `seed`, as before this key existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset_seed: Option<u64>,
    /// Images: the classes of the long-tailed cut head first, a permutation of the class
    /// indices (the class at position r keeps the r-th largest count; see
    /// [`crate::data::long_tail`]). Empty: the label order 0, 1, …, C−1. For Fashion-MNIST,
    /// [`crate::data::long_tail::FMNIST_HARD_TAIL`] puts the hard classes in the tail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_order: Vec<usize>,
    /// Images: train on the examples a subset file names (ids `.npy` or a mask, with a
    /// `FILE.json` sidecar holding the fingerprint of the data it was made for; see
    /// [`crate::data::subset`]); empty trains on the whole set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subset: String,
    /// Images: per-example noise windows, a `.npy` of rows (id, σ_min, σ_max) with a
    /// `FILE.json` sidecar like a subset's ([`crate::data::windows`]): an example is trained
    /// only at σ > σ_min·`window_buffer` or σ < σ_max. Empty: every example at every σ.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub windows: String,
    /// The buffer b ≥ 1 of the windows' floors. Reference values (Ambient-Omni §C.3): 1 (its
    /// latent EDM2 code) and √(4/3) ≈ 1.155 (its pixel code, s_max = 4, which caps the
    /// ambient factor at 16).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub window_buffer: f64,
    /// The target of an example trained above its floor: "ambient" (the noisy-target loss,
    /// reference §C.3, canonical) or "clean" (the plain x0 loss against the stored example,
    /// which the reference's pixel code ends up using).
    #[serde(default, skip_serializing_if = "WindowTarget::is_ambient")]
    pub window_target: WindowTarget,
    /// Images: the content fingerprint of the training set (after the long-tail cut and the
    /// subset), recorded in the run's config.toml at its start and checked on resume. Leave
    /// empty: it is filled in.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fingerprint: String,
    /// Images: corrupt a share of the examples at load time, by id (`[data.corrupt]`:
    /// kind, fraction, sigma, quality, length, angle, angle_spread, seed; see
    /// [`crate::data::corrupt::config::CorruptConfig`]). Default off, and then left out of
    /// config.toml. The run records each example's source in `RUN/data/sources.jsonl`.
    #[serde(default, skip_serializing_if = "CorruptConfig::is_default")]
    pub corrupt: CorruptConfig,
    /// Images: a second source appended to the pool after its corruption (`[data.extra]`:
    /// kind "mnist" | "npy" | "folder", path, count; see [`crate::data::extra`]), e.g. MNIST
    /// digits as out-of-distribution data for Ambient-Omni's locality. Its examples train
    /// without labels, at every σ unless a windows file limits them. Default off, and then
    /// left out of config.toml.
    #[serde(default, skip_serializing_if = "ExtraConfig::is_default")]
    pub extra: ExtraConfig,
}

/// The target of an example trained above its noise floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowTarget {
    #[default]
    Ambient,
    Clean,
}

fn is_zero_usize(n: &usize) -> bool {
    *n == 0
}

impl WindowTarget {
    fn is_ambient(&self) -> bool {
        *self == WindowTarget::Ambient
    }
}

fn one() -> f64 {
    1.0
}

fn is_one(v: &f64) -> bool {
    *v == 1.0
}

fn default_classes() -> crate::data::toy2d::Classes {
    crate::data::toy2d::Classes::A
}

impl DataConfig {
    /// True for the image sources.
    pub fn is_images(&self) -> bool {
        self.kind != "toy"
    }
}

/// The optimiser and its schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Examples per optimiser step; with online selection, the super-batch B that is scored.
    pub batch: usize,
    /// Training length in images of (super-)batches: iterations × `batch`. With online
    /// selection each iteration trains on a sub-batch, so fewer images are trained on
    /// (`nimg` in stats.jsonl) while the learning-rate and EMA schedules advance per
    /// iteration as in the seed.
    pub duration_nimg: u64,
    /// Learning-rate schedule (in images trained).
    pub lr: LrConfig,
    /// Adam β₁.
    pub beta1: f64,
    /// Adam β₂.
    pub beta2: f64,
    /// Adam ε.
    pub eps: f64,
    /// Relative standard deviation of the power-function EMA (EDM2); 0 disables the EMA.
    pub ema_sigma_rel: f64,
    /// Loss target: "exact" (toy only) or "dsm".
    pub target: LossTarget,
    /// Write a line of stats.jsonl every this many images.
    pub log_every_nimg: u64,
    /// Write a checkpoint every this many images (and always at the end).
    pub checkpoint_every_nimg: u64,
    /// How many checkpoints to keep (the newest ones); at least 2, so a damaged newest one
    /// leaves a usable older one.
    pub keep_checkpoints: usize,
    /// End the run once this many images have been trained on (0: no such budget).
    #[serde(default)]
    pub budget_nimg: u64,
    /// End the run once this many seconds of training (all phases) have passed (0: none).
    #[serde(default)]
    pub budget_seconds: f64,
    /// Keep a snapshot of the weights when the images trained on first reach each of these.
    #[serde(default)]
    pub snapshot_nimg: Vec<u64>,
    /// Keep a snapshot when the training seconds first reach each of these.
    #[serde(default)]
    pub snapshot_seconds: Vec<f64>,
    /// Images: a fixed loss weight per class (empty: all 1), scaled to mean 1 over each batch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_weights: Vec<f64>,
    /// Images: write a grid of class-conditional EMA samples every this many images (and at
    /// the end); 0: only at the end.
    #[serde(default)]
    pub sample_every_nimg: u64,
    /// Images: σ_rel of extra power-function EMA profiles kept for post-hoc EMA
    /// ([`super::phema`], EDM2 Sec. 3.2), each in (0, 0.28); empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phema_sigma_rels: Vec<f64>,
    /// Write a snapshot of those profiles to `RUN/phema` every this many images (0: never;
    /// needed when `phema_sigma_rels` is set).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub phema_every_nimg: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Everything that determines a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Name of the preset this config started from (informational).
    pub preset: String,
    /// Seed of every random stream of the run.
    pub seed: u64,
    pub data: DataConfig,
    /// The toy MLP (used when `data.kind = "toy"`).
    pub model: MlpConfig,
    /// The image U-Net (required for image data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unet: Option<crate::models::unet::UnetConfig>,
    pub diffusion: DiffusionConfig,
    pub train: TrainConfig,
    /// Online batch selection (`method = "none"` trains on every example).
    #[serde(default)]
    pub select: crate::curation::select_config::SelectConfig,
    /// Adaptive class weights (DRO); left out of config.toml at its defaults.
    #[serde(default, skip_serializing_if = "ReweightConfig::is_default")]
    pub reweight: ReweightConfig,
    pub sampler: SamplerConfig,
}

fn invalid(field: &str, why: impl Into<String>) -> Error {
    Error::InvalidValue {
        field: field.to_string(),
        why: why.into(),
    }
}

fn positive(field: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("must be a finite number > 0, got {v}"),
        ))
    }
}

fn finite(field: &str, v: f64) -> Result<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(invalid(field, format!("must be finite, got {v}")))
    }
}

impl RunConfig {
    /// Checks `train.phema_sigma_rels` and `train.phema_every_nimg`.
    fn validate_phema(&self) -> Result<()> {
        let t = &self.train;
        if t.phema_sigma_rels.is_empty() {
            return Ok(());
        }
        if !self.data.is_images() {
            return Err(invalid(
                "train.phema_sigma_rels",
                "post-hoc EMA profiles are kept for image runs; the toy has none: remove the key",
            ));
        }
        for (i, &s) in t.phema_sigma_rels.iter().enumerate() {
            if !(s.is_finite() && s > 0.0 && s < 0.28) {
                return Err(invalid(
                    "train.phema_sigma_rels",
                    format!("entry {i} is {s}; each σ_rel must be in (0, 0.28), e.g. [0.05, 0.10]"),
                ));
            }
            if t.phema_sigma_rels[..i]
                .iter()
                .any(|&o| super::host_state::phema_group(o) == super::host_state::phema_group(s))
            {
                return Err(invalid(
                    "train.phema_sigma_rels",
                    format!("σ_rel {s} is listed twice"),
                ));
            }
        }
        if t.phema_every_nimg == 0 {
            return Err(invalid(
                "train.phema_every_nimg",
                "post-hoc EMA needs snapshots: set it to the snapshot period in images, e.g. \
                 64 × train.batch",
            ));
        }
        Ok(())
    }

    /// Checks every field's range; the error names the field.
    pub fn validate(&self) -> Result<()> {
        if !["toy", "fmnist", "npy", "folder"].contains(&self.data.kind.as_str()) {
            return Err(invalid(
                "data.kind",
                format!(
                    "unknown data source '{}'; valid: toy, fmnist, npy, folder",
                    self.data.kind
                ),
            ));
        }
        if !self.data.is_images() && !self.train.class_weights.is_empty() {
            return Err(invalid(
                "train.class_weights",
                "per-class loss weights are for image data; the toy trains on fresh exact \
                 samples: remove the key",
            ));
        }
        if self.data.is_images() {
            let Some(unet) = &self.unet else {
                return Err(invalid(
                    "unet",
                    "image data needs a [unet] section; start from `--preset fmnist`",
                ));
            };
            unet.validate()?;
            if self.train.target != LossTarget::Dsm {
                return Err(invalid(
                    "train.target",
                    "image data has no exact target; use train.target=dsm",
                ));
            }
            if self.data.kind != "fmnist" && self.data.path.is_empty() {
                return Err(invalid(
                    "data.path",
                    format!("data.kind={} needs data.path", self.data.kind),
                ));
            }
            if !(self.data.imbalance_ratio == 0.0 || self.data.imbalance_ratio >= 1.0) {
                return Err(invalid(
                    "data.imbalance_ratio",
                    "must be 0 (whole set) or ≥ 1",
                ));
            }
            if self.data.imbalance_ratio == 0.0 {
                if self.data.subset_seed.is_some() {
                    return Err(invalid(
                        "data.subset_seed",
                        "seeds the long-tailed cut, which is off (data.imbalance_ratio = 0); \
                         set data.imbalance_ratio (e.g. 100) or leave data.subset_seed out",
                    ));
                }
                if !self.data.class_order.is_empty() {
                    return Err(invalid(
                        "data.class_order",
                        "orders the long-tailed cut, which is off (data.imbalance_ratio = 0); \
                         set data.imbalance_ratio (e.g. 100) or leave data.class_order empty",
                    ));
                }
            }
            if !self.data.class_order.is_empty() {
                crate::data::long_tail::check_order(
                    &self.data.class_order,
                    self.data.class_order.len(),
                )?;
            }
        } else if self.data.subset_seed.is_some() || !self.data.class_order.is_empty() {
            return Err(invalid(
                "data.subset_seed",
                "the toy has no long-tailed cut; data.subset_seed and data.class_order are for \
                 image data",
            ));
        } else if !self.data.subset.is_empty() {
            return Err(invalid(
                "data.subset",
                "the toy draws fresh exact samples every step and has no examples to subset; \
                 subsets are for image data",
            ));
        } else if !self.data.windows.is_empty() {
            return Err(invalid(
                "data.windows",
                "the toy draws fresh exact samples every step and has no examples to window; \
                 noise windows are for image data",
            ));
        } else if self.data.corrupt.is_on() {
            return Err(invalid(
                "data.corrupt.kind",
                "the toy draws fresh exact samples and has no images to corrupt; corruptions \
                 are for image data (set it to none)",
            ));
        } else if self.data.extra.is_on() {
            return Err(invalid(
                "data.extra.kind",
                "the toy has no pool to extend; extra sources are for image data (set it to \
                 none)",
            ));
        }
        self.data.corrupt.validate("data.corrupt.")?;
        self.data.extra.validate()?;
        if self.data.extra.is_on()
            && (self.reweight.method != "none" || !self.train.class_weights.is_empty())
        {
            return Err(invalid(
                "data.extra.kind",
                "class weights (reweight.method, train.class_weights) weigh examples by their \
                 class, and the examples of an extra source have none of the pool's classes; \
                 drop the extra source or the class weights",
            ));
        }
        if !(self.data.window_buffer.is_finite() && self.data.window_buffer >= 1.0) {
            return Err(invalid("data.window_buffer", "must be finite and ≥ 1"));
        }
        use crate::diffusion::noise::ScheduleKind;
        if !self.data.windows.is_empty()
            && matches!(
                self.diffusion.schedule.kind,
                ScheduleKind::Adaptive | ScheduleKind::Infonoise
            )
        {
            // Ambient-Omni item: adaptive schedules observe clean examples only, or refuse.
            // The loop's observation carries no per-row cleanliness, so this refuses.
            return Err(invalid(
                "diffusion.schedule.kind",
                "an adaptive schedule (adaptive, infonoise) fits π to the x0-errors it \
                 observes, and with data.windows the examples above their noise floor train \
                 on noisy (ambient) targets, whose errors hold the target's own noise: the \
                 per-σ profile would measure the corruption, not the data; use lognormal or \
                 laplace with data.windows, or drop the windows",
            ));
        }
        let r = &self.reweight;
        match r.method.as_str() {
            "none" => {}
            "dro" => {
                if !self.data.is_images() {
                    return Err(invalid(
                        "reweight.method",
                        "DRO reweights the classes of image data; the toy has none",
                    ));
                }
                if r.reference.trim().is_empty() {
                    return Err(invalid(
                        "reweight.reference",
                        "DRO needs a reference run directory (a model trained on the full data)",
                    ));
                }
                if !self.train.class_weights.is_empty() {
                    return Err(invalid(
                        "reweight.method",
                        "DRO and train.class_weights both weigh classes; use one (frozen DRO \
                         weights go in train.class_weights with reweight.method=none)",
                    ));
                }
            }
            other => {
                return Err(invalid(
                    "reweight.method",
                    format!("'{other}' is not a reweighting method (none, dro)"),
                ))
            }
        }
        if !(r.eta.is_finite() && r.eta > 0.0) {
            return Err(invalid("reweight.eta", "must be finite and > 0"));
        }
        if !(0.0..=1.0).contains(&r.smoothing) {
            return Err(invalid("reweight.smoothing", "must be in [0, 1]"));
        }
        // Checked for every data kind: the toy ignores it, but NaN or infinity is a typo.
        finite("data.imbalance_ratio", self.data.imbalance_ratio)?;
        if self.model.width == 0 {
            return Err(invalid("model.width", "must be at least 1"));
        }
        if self.model.layers == 0 {
            return Err(invalid("model.layers", "must be at least 1"));
        }
        finite("model.gain_init", self.model.gain_init)?;
        positive("diffusion.sigma_data", self.diffusion.sigma_data)?;
        finite("diffusion.p_mean", self.diffusion.p_mean)?;
        positive("diffusion.p_std", self.diffusion.p_std)?;
        self.diffusion.schedule.validate()?;
        let t = &self.train;
        if t.batch == 0 {
            return Err(invalid("train.batch", "must be at least 1"));
        }
        if t.duration_nimg == 0 {
            return Err(invalid("train.duration_nimg", "must be at least 1"));
        }
        positive("train.lr.lr", t.lr.lr)?;
        if !(t.lr.t_ref_nimg.is_finite() && t.lr.t_ref_nimg >= 0.0) {
            return Err(invalid("train.lr.t_ref_nimg", "must be finite and ≥ 0"));
        }
        if !(t.lr.rampup_nimg.is_finite() && t.lr.rampup_nimg >= 0.0) {
            return Err(invalid("train.lr.rampup_nimg", "must be finite and ≥ 0"));
        }
        for (f, v) in [("train.beta1", t.beta1), ("train.beta2", t.beta2)] {
            if !(v.is_finite() && (0.0..1.0).contains(&v)) {
                return Err(invalid(f, format!("must be in [0, 1), got {v}")));
            }
        }
        positive("train.eps", t.eps)?;
        if !(t.ema_sigma_rel.is_finite() && (0.0..0.28).contains(&t.ema_sigma_rel)) {
            return Err(invalid(
                "train.ema_sigma_rel",
                format!("must be in [0, 0.28) (0 disables), got {}", t.ema_sigma_rel),
            ));
        }
        self.validate_phema()?;
        if t.log_every_nimg == 0 {
            return Err(invalid("train.log_every_nimg", "must be at least 1"));
        }
        if t.checkpoint_every_nimg == 0 {
            return Err(invalid("train.checkpoint_every_nimg", "must be at least 1"));
        }
        if !(t.budget_seconds.is_finite() && t.budget_seconds >= 0.0) {
            return Err(invalid(
                "train.budget_seconds",
                "must be finite and ≥ 0 (0: none)",
            ));
        }
        if t.snapshot_seconds
            .iter()
            .any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(invalid(
                "train.snapshot_seconds",
                "every point must be finite and > 0",
            ));
        }
        if t.keep_checkpoints < 2 {
            return Err(invalid("train.keep_checkpoints", "must be at least 2"));
        }
        self.select.validate()?;
        let s = &self.sampler;
        if s.steps == 0 {
            return Err(invalid("sampler.steps", "must be at least 1"));
        }
        positive("sampler.sigma_min", s.sigma_min)?;
        positive("sampler.sigma_max", s.sigma_max)?;
        positive("sampler.rho", s.rho)?;
        if s.sigma_min >= s.sigma_max {
            return Err(invalid(
                "sampler.sigma_min",
                "must be below sampler.sigma_max",
            ));
        }
        Ok(())
    }

    /// The config as TOML text (the run directory's `config.toml`).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::Config(format!("cannot write config: {e}")))
    }

    /// Parses a `config.toml`.
    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::Config(format!("malformed config: {e}")))
    }

    /// Applies `key=value` overrides (dotted paths such as `train.batch=1024`).
    pub fn with_overrides(&self, sets: &[String]) -> Result<Self> {
        let mut value = toml::Value::try_from(self)
            .map_err(|e| Error::Config(format!("cannot represent config: {e}")))?;
        // Keys left out of config.toml at their defaults (so older runs keep matching) can be
        // set.
        let omitted = [
            ("data", "subset", toml::Value::String(String::new())),
            ("data", "class_order", toml::Value::Array(Vec::new())),
            ("data", "windows", toml::Value::String(String::new())),
            ("data", "max_per_class", toml::Value::Integer(0)),
            ("data", "window_buffer", toml::Value::Float(1.0)),
            (
                "data",
                "window_target",
                toml::Value::String("ambient".into()),
            ),
            ("train", "class_weights", toml::Value::Array(Vec::new())),
        ];
        if let Some(data) = value.get_mut("data").and_then(toml::Value::as_table_mut) {
            if !data.contains_key("corrupt") {
                let d = toml::Value::try_from(CorruptConfig::default())
                    .map_err(|e| Error::Config(format!("cannot represent config: {e}")))?;
                data.insert("corrupt".into(), d);
            }
            if !data.contains_key("extra") {
                let d = toml::Value::try_from(ExtraConfig::default())
                    .map_err(|e| Error::Config(format!("cannot represent config: {e}")))?;
                data.insert("extra".into(), d);
            }
        }
        if let Some(top) = value.as_table_mut() {
            if !top.contains_key("reweight") {
                let d = toml::Value::try_from(ReweightConfig::default())
                    .map_err(|e| Error::Config(format!("cannot represent config: {e}")))?;
                top.insert("reweight".into(), d);
            }
        }
        for (section, key, default) in omitted {
            if let Some(t) = value.get_mut(section).and_then(toml::Value::as_table_mut) {
                t.entry(key).or_insert(default);
            }
        }
        // Keys whose default is "unset" have no TOML value; they exist only once set.
        if sets
            .iter()
            .any(|s| s.split_once('=').map(|(k, _)| k.trim()) == Some("data.subset_seed"))
        {
            if let Some(t) = value.get_mut("data").and_then(toml::Value::as_table_mut) {
                t.entry("subset_seed").or_insert(toml::Value::Integer(0));
            }
        }
        let keys = leaf_keys(&value, "");
        for set in sets {
            let (key, raw) = set.split_once('=').ok_or_else(|| {
                Error::Config(format!("--set '{set}' is not of the form key=value"))
            })?;
            let key = key.trim();
            if !keys.iter().any(|k| k == key) {
                return Err(Error::UnknownKey {
                    key: key.to_string(),
                    valid: keys.join(", "),
                });
            }
            let slot = lookup_mut(&mut value, key).ok_or_else(|| Error::UnknownKey {
                key: key.to_string(),
                valid: keys.join(", "),
            })?;
            *slot = parse_like(slot, raw.trim()).map_err(|why| invalid(key, why))?;
        }
        let cfg: RunConfig = value.try_into().map_err(|e: toml::de::Error| {
            Error::Config(format!("invalid value in --set: {}", e.message()))
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Dotted paths of the fields that differ between two configs.
    pub fn diff(&self, other: &Self) -> Vec<String> {
        let (Ok(a), Ok(b)) = (toml::Value::try_from(self), toml::Value::try_from(other)) else {
            return vec!["<unrepresentable>".into()];
        };
        let mut out = Vec::new();
        // The union of both key sets: a key one side leaves out (empty) is a difference when
        // the other side sets it.
        let mut keys = leaf_keys(&a, "");
        keys.extend(leaf_keys(&b, ""));
        keys.sort();
        keys.dedup();
        for k in keys {
            let va = lookup(&a, &k);
            let vb = lookup(&b, &k);
            if va != vb {
                let show =
                    |v: Option<&toml::Value>| v.map_or("<missing>".into(), |v| v.to_string());
                out.push(format!("{k}: {} here, {} in the run", show(vb), show(va)));
            }
        }
        out
    }
}

fn leaf_keys(v: &toml::Value, prefix: &str) -> Vec<String> {
    match v {
        toml::Value::Table(t) => t
            .iter()
            .flat_map(|(k, v)| {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_keys(v, &p)
            })
            .collect(),
        _ => vec![prefix.to_string()],
    }
}

fn lookup<'a>(v: &'a toml::Value, key: &str) -> Option<&'a toml::Value> {
    key.split('.').try_fold(v, |v, k| v.get(k))
}

fn lookup_mut<'a>(v: &'a mut toml::Value, key: &str) -> Option<&'a mut toml::Value> {
    key.split('.').try_fold(v, |v, k| v.get_mut(k))
}

/// Parses `raw` into the same TOML type as `like`.
fn parse_like(like: &toml::Value, raw: &str) -> std::result::Result<toml::Value, String> {
    use toml::Value as V;
    match like {
        V::Integer(_) => {
            let cleaned = raw.replace('_', "");
            cleaned
                .parse::<i64>()
                .map(V::Integer)
                .or_else(|_| {
                    // Allow 2e6-style integers when they are whole.
                    cleaned
                        .parse::<f64>()
                        .ok()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                        .map(|f| V::Integer(f as i64))
                        .ok_or(())
                })
                .map_err(|_| format!("expected an integer, got '{raw}'"))
        }
        V::Float(_) => raw
            .replace('_', "")
            .parse::<f64>()
            .map(V::Float)
            .map_err(|_| format!("expected a number, got '{raw}'")),
        V::Boolean(_) => raw
            .parse::<bool>()
            .map(V::Boolean)
            .map_err(|_| format!("expected true or false, got '{raw}'")),
        V::Array(_) => {
            let doc: toml::Table = toml::from_str(&format!("v = {raw}"))
                .map_err(|_| format!("expected a list such as [1, 2], got '{raw}'"))?;
            doc.get("v")
                .cloned()
                .ok_or_else(|| format!("expected a list, got '{raw}'"))
        }
        _ => Ok(V::String(raw.trim_matches('"').to_string())),
    }
}

#[cfg(test)]
mod tests {
    use crate::train::presets::preset;

    #[test]
    fn class_weights_on_the_toy_are_refused_with_the_key() {
        let mut c = preset("toy").expect("the toy preset");
        assert!(c.validate().is_ok());
        c.train.class_weights = vec![1.0, 2.0];
        let e = c
            .validate()
            .expect_err("toy has no class weights")
            .to_string();
        assert!(e.contains("train.class_weights"), "{e}");
    }

    #[test]
    fn class_weights_can_be_set_and_a_change_is_a_config_difference() {
        let c = preset("fmnist").expect("the fmnist preset");
        let w = c
            .with_overrides(&["train.class_weights=[1, 2.5, 1, 1, 1, 1, 1, 1, 1, 1]".into()])
            .expect("a list of weights");
        assert_eq!(w.train.class_weights[1], 2.5);
        assert_eq!(w.train.class_weights[0], 1.0);
        let d = c.diff(&w);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].starts_with("train.class_weights"), "{d:?}");
        assert_eq!(w.diff(&c).len(), 1);
    }

    #[test]
    fn empty_class_weights_leave_the_stored_config_unchanged() {
        // Runs written before the key existed keep matching their config.toml.
        let c = preset("fmnist").expect("the fmnist preset");
        assert!(!c.to_toml().expect("toml").contains("class_weights"));
    }

    /// The keys left out of config.toml at their defaults (subset, windows, their buffer and
    /// target, the [reweight] section) can be set with --set, are written once set, and a
    /// default config's toml stays as before.
    #[test]
    fn the_extra_source_can_be_set_and_round_trips() {
        let c = preset("fmnist").expect("the fmnist preset");
        let w = c
            .with_overrides(&["data.extra.kind=mnist".into(), "data.extra.count=5".into()])
            .expect("settable keys");
        assert_eq!(
            (w.data.extra.kind.as_str(), w.data.extra.count),
            ("mnist", 5)
        );
        let back = super::RunConfig::from_toml(&w.to_toml().expect("toml")).expect("round trip");
        assert_eq!(back, w);
        let e = c
            .with_overrides(&["data.extra.kind=cifar".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("data.extra.kind") && e.contains("cifar"), "{e}");
    }

    #[test]
    fn keys_left_out_at_their_defaults_can_be_set() {
        let c = preset("fmnist").expect("the fmnist preset");
        let text = c.to_toml().expect("toml");
        for k in [
            "subset",
            "windows",
            "max_per_class",
            "window_buffer",
            "window_target",
            "[reweight]",
            "corrupt",
            "extra",
        ] {
            assert!(!text.contains(k), "{k} in a default config");
        }
        let w = c
            .with_overrides(&[
                "data.subset=s.npy".into(),
                "data.windows=w.npy".into(),
                "data.window_buffer=1.155".into(),
                "data.window_target=clean".into(),
                "data.max_per_class=1000".into(),
                "reweight.method=dro".into(),
                "reweight.reference=runs/full".into(),
                "reweight.eta=0.5".into(),
                "data.corrupt.kind=blur".into(),
                "data.corrupt.fraction=0.9".into(),
            ])
            .expect("settable keys");
        assert_eq!(w.data.corrupt.kind, "blur");
        assert_eq!(w.data.corrupt.sigma, 1.0);
        assert_eq!(w.data.windows, "w.npy");
        assert_eq!(w.data.window_buffer, 1.155);
        assert_eq!(w.data.window_target, super::WindowTarget::Clean);
        assert_eq!(w.data.max_per_class, 1000);
        assert!(w.reweight.is_dro() && w.reweight.eta == 0.5);
        assert_eq!(w.reweight.smoothing, 1e-3);
        let back = super::RunConfig::from_toml(&w.to_toml().expect("toml")).expect("round trip");
        assert_eq!(back, w);
        // Noise windows with an adaptive schedule are refused, naming the key and the fix.
        for kind in ["adaptive", "infonoise"] {
            let e = w
                .with_overrides(&[format!("diffusion.schedule.kind={kind}")])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("diffusion.schedule.kind") && e.contains("lognormal"),
                "{e}"
            );
        }
        assert!(w
            .with_overrides(&["diffusion.schedule.kind=laplace".into()])
            .is_ok());
        // Ten keys set, and the other keys of the [reweight] and [data.corrupt] sections
        // (smoothing; sigma, quality, length, angle, angle_spread, seed), which the default
        // config leaves out with their sections.
        assert_eq!(c.diff(&w).len(), 17, "{:?}", c.diff(&w));
        let e = c
            .with_overrides(&["data.corrupt.kind=gauss".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("data.corrupt.kind") && e.contains("blur, jpeg"),
            "{e}"
        );
        let e = c
            .with_overrides(&[
                "data.corrupt.kind=jpeg".into(),
                "data.corrupt.quality=0".into(),
            ])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("data.corrupt.quality") && e.contains("1..=100"),
            "{e}"
        );
        let e = c
            .with_overrides(&["data.window_buffer=0.5".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("data.window_buffer"), "{e}");
        let e = c
            .with_overrides(&["reweight.method=doremi".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("reweight.method"), "{e}");
    }
}
