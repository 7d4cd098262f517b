//! The noise-conditional clean-vs-corrupted classifier of Ambient-Omni (reference §C.2): it
//! sees an image at noise level σ and says how likely it is corrupted. Where the noise has
//! washed the corruption out, it cannot tell (p ≈ 0.5); the lowest such σ is the example's
//! noise floor σ_tn ([`super::annotate`], [`super::threshold`]).
//!
//! Input, for an image x (`[C, H, W]` in [-1, 1]) at σ with ε ~ N(0, I): C channels
//! c_in(σ)·(x + σε), with EDM's c_in(σ) = 1/√(σ² + σ_data²) (EDM eq. 7), and one constant
//! channel ln(σ)/4, so the network knows the noise level. The network is the small CNN of
//! [`crate::models::cnn`] with one logit, trained with binary cross-entropy on a balanced set:
//! every clean example (label 0) and its corrupted copy (label 1), each item drawn at σ
//! log-normal with ln σ ~ N(p_mean, p_std²) (default −1.2, 2.0: EDM's mean, and a spread
//! wider than EDM's 1.2 so that the top of the annotation grid, σ up to 80, is trained too).
//!
//! Stored as safetensors with the metadata `format = curadiff-ambient-classifier`, a format
//! version, the training config, the corruption, the image shape `[C, H, W]`, the fingerprint
//! of the clean training set and the training seconds.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use burn::tensor::activation::sigmoid;
use serde::{Deserialize, Serialize};

use crate::data::corrupt::apply::apply;
use crate::data::corrupt::config::CorruptConfig;
use crate::data::fingerprint::fingerprint;
use crate::data::images::ImageSet;
use crate::error::{Error, Result};
use crate::models::cnn::{self, Cnn, CnnShape, Objective, Schedule};
use crate::rng::{Rng, Stream};

/// The `format` metadata of the weight file.
pub const FORMAT: &str = "curadiff-ambient-classifier";
const VERSION: &str = "1";
/// Random-stream index of the network's weights and item order.
const KEY: u64 = 0x414D_4243 << 32;
/// Random-stream index base of the training noise (σ and ε of step t: `NOISE_KEY + t`).
const NOISE_KEY: u64 = KEY + (1 << 30);
/// Random-stream index base of the accuracy check's noise.
const CHECK_KEY: u64 = 0x4143_4348 << 32;
/// Inputs per forward pass at inference.
const INFER_BATCH: usize = 512;

/// How the noise-conditional classifier is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseClassifierConfig {
    /// Passes over the 2N items (every clean example and its corrupted copy).
    pub epochs: usize,
    /// Items per optimiser step.
    pub batch: usize,
    /// Initial Adam learning rate, decayed to 0 along a half cosine.
    pub lr: f64,
    /// Seed of the weights, the item order and the noise.
    pub seed: u64,
    /// Mean of ln σ of the training noise (EDM: −1.2).
    pub p_mean: f64,
    /// Standard deviation of ln σ (EDM: 1.2; default 2.0, wider, see the module doc).
    pub p_std: f64,
    /// σ_data of c_in(σ) = 1/√(σ² + σ_data²) (EDM: 0.5).
    pub sigma_data: f64,
}

impl Default for NoiseClassifierConfig {
    fn default() -> Self {
        Self {
            epochs: 4,
            batch: 128,
            lr: 1e-3,
            seed: 0,
            p_mean: -1.2,
            p_std: 2.0,
            sigma_data: 0.5,
        }
    }
}

impl NoiseClassifierConfig {
    fn validate(&self) -> Result<()> {
        let invalid = |f: &str, why: String| Error::InvalidValue {
            field: format!("ambient classifier {f}"),
            why,
        };
        if self.epochs == 0 || self.batch == 0 {
            return Err(invalid(
                "epochs/batch",
                format!(
                    "both must be at least 1 (got {}, {})",
                    self.epochs, self.batch
                ),
            ));
        }
        for (f, v) in [
            ("lr", self.lr),
            ("p_std", self.p_std),
            ("sigma_data", self.sigma_data),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(f, format!("must be a finite number > 0 (got {v})")));
            }
        }
        if !self.p_mean.is_finite() {
            return Err(invalid(
                "p_mean",
                format!("must be finite (got {})", self.p_mean),
            ));
        }
        Ok(())
    }
}

/// Appends the classifier input of `image` (`[C, H, W]`, `plane` = H·W) at `sigma`: the
/// C channels c_in(σ)·(x + σε), with one normal from `rng` per pixel in order, then the
/// channel ln(σ)/4.
pub fn push_input(
    image: &[f32],
    plane: usize,
    sigma: f64,
    sigma_data: f64,
    rng: &mut Rng,
    out: &mut Vec<f32>,
) {
    let c_in = 1.0 / (sigma * sigma + sigma_data * sigma_data).sqrt();
    out.extend(
        image
            .iter()
            .map(|&v| (c_in * (v as f64 + sigma * rng.normal())) as f32),
    );
    out.extend(std::iter::repeat_n((sigma.ln() / 4.0) as f32, plane));
}

/// A trained noise-conditional classifier on the inference device.
#[derive(Debug, Clone)]
pub struct NoiseClassifier {
    net: Cnn,
    /// Its training config.
    pub config: NoiseClassifierConfig,
    /// The corruption it tells apart from clean data.
    pub corrupt: CorruptConfig,
    /// The image shape it takes, `[C, H, W]`.
    pub image_shape: [usize; 3],
    /// Fingerprint of its clean training set.
    pub fingerprint: String,
    /// Seconds its training took.
    pub seconds: f64,
}

fn shape_of(image: [usize; 3]) -> CnnShape {
    CnnShape {
        channels: image[0] + 1,
        height: image[1],
        width: image[2],
        classes: 1,
    }
}

/// Trains the classifier on `clean` and its copy corrupted by `corrupt` (every example; the
/// `fraction` is ignored). `progress(done, total, loss)` after every step.
pub fn train(
    clean: &ImageSet,
    corrupt: &CorruptConfig,
    cfg: &NoiseClassifierConfig,
    progress: &mut dyn FnMut(usize, usize, f64),
) -> Result<NoiseClassifier> {
    cfg.validate()?;
    let every = CorruptConfig {
        fraction: 1.0,
        ..corrupt.clone()
    };
    every.validate("corrupt.")?;
    if !every.is_on() {
        return Err(Error::InvalidValue {
            field: "corrupt.kind".into(),
            why: "the classifier tells clean from corrupted data; name a corruption (blur, \
                  jpeg, motion)"
                .into(),
        });
    }
    if clean.is_empty() || clean.height < 4 || clean.width < 4 {
        return Err(Error::Model(format!(
            "the classifier needs at least one image of at least 4×4 pixels; got {} of {}×{}",
            clean.len(),
            clean.height,
            clean.width
        )));
    }
    let start = Instant::now();
    let bad = apply(clean, &every)?;
    let image_shape = [clean.channels, clean.height, clean.width];
    let shape = shape_of(image_shape);
    let n = clean.len();
    let schedule = Schedule {
        epochs: cfg.epochs,
        batch: cfg.batch,
        lr: cfg.lr,
        seed: cfg.seed,
        key: KEY,
    };
    let plane = clean.height * clean.width;
    let mut fill =
        |step: usize, rows: &[usize], x: &mut Vec<f32>, y: &mut Vec<f32>| -> Result<()> {
            let mut rng = Rng::new(cfg.seed, Stream::Data, NOISE_KEY + step as u64);
            for &i in rows {
                let (image, label) = if i < n {
                    (clean.image(i), 0.0)
                } else {
                    (bad.image(i - n), 1.0)
                };
                let sigma = (cfg.p_mean + cfg.p_std * rng.normal()).exp();
                push_input(image, plane, sigma, cfg.sigma_data, &mut rng, x);
                y.push(label);
            }
            Ok(())
        };
    let net = cnn::fit(
        shape,
        2 * n,
        &schedule,
        Objective::Binary,
        &mut fill,
        progress,
    )?;
    Ok(NoiseClassifier {
        net,
        config: cfg.clone(),
        corrupt: every,
        image_shape,
        fingerprint: fingerprint(clean),
        seconds: start.elapsed().as_secs_f64(),
    })
}

impl NoiseClassifier {
    /// Writes the weights and metadata to `path` (safetensors, atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = |v: serde_json::Result<String>| {
            v.map_err(|e| Error::Model(format!("cannot serialise the classifier: {e}")))
        };
        let meta = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("version".to_string(), VERSION.to_string()),
            (
                "config".to_string(),
                json(serde_json::to_string(&self.config))?,
            ),
            (
                "corrupt".to_string(),
                json(serde_json::to_string(&self.corrupt))?,
            ),
            (
                "image_shape".to_string(),
                json(serde_json::to_string(&self.image_shape))?,
            ),
            ("fingerprint".to_string(), self.fingerprint.clone()),
            ("seconds".to_string(), self.seconds.to_string()),
        ]);
        cnn::save(&self.net, path, meta)
    }

    /// Reads a classifier written by [`NoiseClassifier::save`]; a missing, damaged or foreign
    /// file is an error naming it.
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |why: String| Error::BadFile {
            path: path.to_path_buf(),
            why,
        };
        let stored = cnn::open(path, "the noise-conditional classifier")?;
        let meta = &stored.meta;
        let format = meta.get("format").map(String::as_str);
        if format != Some(FORMAT) {
            return Err(bad(format!(
                "not a {FORMAT} file (its metadata format is {format:?}); train one with \
                 `curadiff ambient classifier`"
            )));
        }
        let version = meta.get("version").map(String::as_str);
        if version != Some(VERSION) {
            return Err(bad(format!(
                "classifier format version {version:?}; this curadiff reads version {VERSION}: \
                 train the classifier again"
            )));
        }
        fn field<T: serde::de::DeserializeOwned>(
            meta: &HashMap<String, String>,
            key: &str,
        ) -> std::result::Result<T, String> {
            let text = meta
                .get(key)
                .ok_or_else(|| format!("the metadata has no {key}"))?;
            serde_json::from_str(text).map_err(|e| format!("malformed {key} in the metadata: {e}"))
        }
        let config: NoiseClassifierConfig = field(meta, "config").map_err(bad)?;
        let corrupt: CorruptConfig = field(meta, "corrupt").map_err(bad)?;
        let image_shape: [usize; 3] = field(meta, "image_shape").map_err(bad)?;
        let seconds: f64 = field(meta, "seconds").map_err(bad)?;
        let fingerprint = meta.get("fingerprint").cloned().unwrap_or_default();
        let net = stored.net(shape_of(image_shape), path)?;
        Ok(Self {
            net,
            config,
            corrupt,
            image_shape,
            fingerprint,
            seconds,
        })
    }

    /// Checks that `set`'s images have the shape the classifier was trained on; the error
    /// names both shapes.
    pub fn check_fits(&self, set: &ImageSet, path: &Path) -> Result<()> {
        let have = [set.channels, set.height, set.width];
        if have != self.image_shape {
            return Err(Error::BadFile {
                path: path.to_path_buf(),
                why: format!(
                    "the classifier takes images of shape {:?} ([C, H, W]); the data has \
                     {have:?}. Train a classifier on this data with `curadiff ambient \
                     classifier`",
                    self.image_shape
                ),
            });
        }
        Ok(())
    }

    /// Appends the full input (image channels and the ln σ channel) of `image` at `sigma`.
    pub fn push(&self, image: &[f32], sigma: f64, rng: &mut Rng, out: &mut Vec<f32>) {
        let plane = self.image_shape[1] * self.image_shape[2];
        push_input(image, plane, sigma, self.config.sigma_data, rng, out);
    }

    /// Accuracy at `sigma` on `clean` and its copy corrupted by `corrupt` (every example): a
    /// clean image is right when p(corrupted) < 0.5, a corrupted one when > 0.5. The noise of
    /// image i comes from (0, [`Stream::Eval`], CHECK_KEY + 2i (+1 for its corrupted copy)).
    pub fn accuracy(&self, clean: &ImageSet, corrupt: &CorruptConfig, sigma: f64) -> Result<f64> {
        let every = CorruptConfig {
            fraction: 1.0,
            ..corrupt.clone()
        };
        let bad = apply(clean, &every)?;
        let mut inputs = Vec::new();
        for (k, set) in [clean, &bad].iter().enumerate() {
            for i in 0..set.len() {
                let mut rng = Rng::new(0, Stream::Eval, CHECK_KEY + (2 * i + k) as u64);
                self.push(set.image(i), sigma, &mut rng, &mut inputs);
            }
        }
        let n = clean.len();
        let p = self.p_corrupted(&inputs, 2 * n)?;
        let right = p[..n].iter().filter(|&&v| v < 0.5).count()
            + p[n..].iter().filter(|&&v| v > 0.5).count();
        Ok(right as f64 / (2 * n).max(1) as f64)
    }

    /// p(corrupted) of `n` inputs made by [`NoiseClassifier::push`].
    pub fn p_corrupted(&self, inputs: &[f32], n: usize) -> Result<Vec<f32>> {
        let shape = shape_of(self.image_shape);
        let len = shape.input_len();
        if n.checked_mul(len) != Some(inputs.len()) {
            return Err(Error::Model(format!(
                "expected {n} classifier inputs of {len} values, got {} values",
                inputs.len()
            )));
        }
        let device = crate::device::inference();
        let mut out = Vec::with_capacity(n);
        for chunk in inputs.chunks(INFER_BATCH * len) {
            let b = chunk.len() / len;
            let z = self
                .net
                .logits(self.net.features(cnn::inputs(chunk, b, shape, &device)));
            let p = sigmoid(z)
                .try_into_vec_as::<f32>()
                .map_err(|e| Error::Model(format!("cannot read the classifier output: {e:?}")))?;
            out.extend(p);
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::images::Source;

    /// `n` images of `side`² pixels of independent uniform values in [-0.8, 0.8]: all detail
    /// is at the highest frequency, which a blur removes.
    pub(crate) fn noise_images(n: usize, side: usize, seed: u64) -> ImageSet {
        let mut rng = Rng::new(seed, Stream::Eval, 99);
        ImageSet {
            channels: 1,
            height: side,
            width: side,
            pixels: (0..n * side * side)
                .map(|_| (1.6 * rng.uniform() - 0.8) as f32)
                .collect(),
            labels: vec![0; n],
            num_classes: 1,
            class_names: vec!["noise".into()],
            ids: (0..n as u64).map(|i| 2 * i + 1).collect(),
            source: vec![Source::Real; n],
        }
    }

    pub(crate) fn blur() -> CorruptConfig {
        CorruptConfig {
            kind: "blur".into(),
            ..Default::default()
        }
    }

    pub(crate) fn quick() -> NoiseClassifierConfig {
        NoiseClassifierConfig {
            epochs: 6,
            batch: 32,
            lr: 2e-3,
            seed: 3,
            ..Default::default()
        }
    }

    /// Mean p(corrupted) of `set`'s images at `sigma`.
    fn mean_p(clf: &NoiseClassifier, set: &ImageSet, sigma: f64) -> f64 {
        let mut x = Vec::new();
        for i in 0..set.len() {
            clf.push(
                set.image(i),
                sigma,
                &mut Rng::new(8, Stream::Eval, i as u64),
                &mut x,
            );
        }
        let p = clf.p_corrupted(&x, set.len()).unwrap();
        p.iter().map(|&v| v as f64).sum::<f64>() / p.len() as f64
    }

    /// Blur against clean on 160 noise images of 16×16: near-perfect at low σ, chance at
    /// σ = 50 (there the image is 1/50 of the input's scale, far below the noise); the
    /// training is deterministic and the file round-trips.
    #[test]
    fn it_tells_blur_at_low_noise_and_not_at_high_noise() {
        let train_set = noise_images(160, 16, 1);
        let check = noise_images(100, 16, 2);
        let mut losses = Vec::new();
        let clf = train(&train_set, &blur(), &quick(), &mut |_, _, l| losses.push(l)).unwrap();
        assert_eq!(losses.len(), 6 * 10); // 320 items in batches of 32, 6 epochs
        let acc = |s| clf.accuracy(&check, &blur(), s).unwrap();
        let (low, high) = (acc(0.01), acc(50.0));
        assert!(low > 0.9, "accuracy at σ = 0.01: {low}");
        assert!((high - 0.5).abs() < 0.12, "accuracy at σ = 50: {high}");
        let bad = apply(&check, &blur()).unwrap();
        let (pc, pb) = (mean_p(&clf, &check, 0.01), mean_p(&clf, &bad, 0.01));
        assert!(
            pc < 0.2 && pb > 0.8,
            "p(corrupted) clean {pc}, blurred {pb}"
        );
        let (hc, hb) = (mean_p(&clf, &check, 50.0), mean_p(&clf, &bad, 50.0));
        assert!((hc - hb).abs() < 0.1, "at σ = 50: clean {hc}, blurred {hb}");
        // Deterministic: the same seed gives the same outputs.
        let again = train(&train_set, &blur(), &quick(), &mut |_, _, _| {}).unwrap();
        assert_eq!(mean_p(&again, &bad, 0.3), mean_p(&clf, &bad, 0.3));
        // Saved and loaded: the same outputs and metadata.
        let dir = std::env::temp_dir().join(format!("curadiff-ambient-clf-{}", std::process::id()));
        let path = dir.join("c.safetensors");
        clf.save(&path).unwrap();
        let back = NoiseClassifier::load(&path).unwrap();
        assert_eq!(mean_p(&back, &bad, 0.3), mean_p(&clf, &bad, 0.3));
        assert_eq!(back.image_shape, [1, 16, 16]);
        assert_eq!(back.corrupt, clf.corrupt);
        assert_eq!(back.fingerprint, fingerprint(&train_set));
        // Another image size is refused, naming both shapes.
        let e = back
            .check_fits(&noise_images(2, 28, 0), &path)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[1, 16, 16]") && e.contains("[1, 28, 28]"),
            "{e}"
        );
        // The Fashion-MNIST classifier's loader refuses this file, and this loader that one.
        let e = crate::eval::classifier::Classifier::load(&path)
            .unwrap_err()
            .to_string();
        assert!(e.contains("curadiff-fmnist-classifier"), "{e}");
        let junk = dir.join("junk.safetensors");
        std::fs::write(&junk, b"not safetensors").unwrap();
        let e = NoiseClassifier::load(&junk).unwrap_err().to_string();
        assert!(e.contains("junk.safetensors"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn bad_training_input_is_refused_by_name() {
        let set = noise_images(4, 8, 0);
        let e = train(&set, &CorruptConfig::default(), &quick(), &mut |_, _, _| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("corrupt.kind"), "{e}");
        let cfg = NoiseClassifierConfig {
            p_std: f64::NAN,
            ..quick()
        };
        let e = train(&set, &blur(), &cfg, &mut |_, _, _| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("p_std"), "{e}");
    }
}
