//! A Fashion-MNIST classifier trained by curadiff itself: the feature network of the image
//! metrics ([`super::images`]) and the judge of class-conditional samples.
//!
//! The network is the small CNN of [`crate::models::cnn`] on `[n, 1, 28, 28]` images in
//! [-1, 1]: conv 3×3 1→32 (padding 1), max-pool 2, ReLU, conv 3×3 32→64, max-pool 2, ReLU,
//! linear 64·7·7→128, ReLU (the 128-d penultimate features), linear 128→10 (the logits).
//! It is trained with plain Adam (no weight decay, no weight normalisation, learning rate
//! decayed to 0 along a half cosine) on the mean cross-entropy, with He-normal initial weights
//! and zero biases. Training is deterministic: the initial weights come from the seed's
//! `Stream::Init` and the example order of each epoch from its `Stream::Data`, so one seed
//! gives one set of weights on a given machine. Across machines the weights can differ (the
//! matrix kernels are picked by CPU features, and their rounding differs): seed 0 gave 91.27%
//! on one machine and 91.08% on another. The default config (5 epochs over the 60,000 training images) takes about 4
//! minutes on two CPU cores and reaches about 91% accuracy on the 10,000 test images. FDs
//! compare only under the same classifier file.
//!
//! Weights are stored as safetensors (f32, one tensor per parameter, named by its field path,
//! e.g. `conv1.weight`), with the metadata `format = curadiff-fmnist-classifier`, a format
//! version and the training config as JSON.
//!
//! # Cache location
//!
//! [`default_path`] is where a trained classifier is kept for reuse:
//! - `$CURADIFF_CACHE/fmnist-classifier.safetensors` when `CURADIFF_CACHE` is set;
//! - else `$XDG_CACHE_HOME/curadiff/fmnist-classifier.safetensors` when `XDG_CACHE_HOME` is
//!   set to an absolute path;
//! - else `$HOME/.cache/curadiff/fmnist-classifier.safetensors`;
//! - else (no home) `curadiff/fmnist-classifier.safetensors` in the system temporary folder.
//!
//! Empty variables count as unset.
//!
//! [`default_path`] holds **the metric's classifier**: the image metrics read it, and
//! `curadiff classifier` trains it with seed [`METRIC_SEED`]. A classifier trained with
//! another seed is cached beside it as `fmnist-classifier-seed<S>.safetensors`
//! ([`path_for_seed`]): a **surrogate** with the same architecture and data but other
//! weights, for offline curation (pruning scores on the metric's own network would optimise
//! the metric; see [`crate::curation::prune::feature_net`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::data::images::ImageSet;
use crate::device;
use crate::error::{Error, Result};
use crate::models::cnn::{self, Cnn, CnnShape, Objective, Schedule};

/// The name of the feature network in metric reports and in the weight file's metadata.
pub const FEATURE_NETWORK: &str = "curadiff-fmnist-classifier";
/// File name of the cached classifier (see [`default_path`]).
pub const FILE_NAME: &str = "fmnist-classifier.safetensors";
/// Version of the stored format; files of another version are refused.
const FORMAT_VERSION: &str = "1";

/// Image side in pixels.
pub const SIDE: usize = 28;
/// Values per image, `1 · 28 · 28`.
pub const IMAGE_LEN: usize = SIDE * SIDE;
/// Number of classes.
pub const NUM_CLASSES: usize = 10;
/// Width of the penultimate features.
pub const FEATURE_DIM: usize = cnn::FEATURE_DIM;

/// Images per forward pass at inference, which bounds the memory of [`Classifier::features`].
const INFER_BATCH: usize = 500;

/// Random-stream index of the classifier: far above any training-step index, so that the
/// classifier never reuses the draws of a diffusion run with the same seed.
pub(crate) const CLASSIFIER_KEY: u64 = 0x434C_5346 << 32;

/// How the classifier is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Images per optimiser step (the last step of an epoch takes the remainder).
    pub batch: usize,
    /// Initial Adam learning rate (β = 0.9, 0.999, ε = 1e-8), decayed to 0 along a half
    /// cosine over the run.
    pub lr: f64,
    /// Seed of the initial weights and of the example order.
    pub seed: u64,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        Self {
            epochs: 5,
            batch: 128,
            lr: 1e-3,
            seed: 0,
        }
    }
}

/// The network's shape: `[1, 28, 28]` images, ten logits.
pub(crate) const SHAPE: CnnShape = CnnShape {
    channels: 1,
    height: SIDE,
    width: SIDE,
    classes: NUM_CLASSES,
};

/// A trained Fashion-MNIST classifier on the inference device.
#[derive(Debug, Clone)]
pub struct Classifier {
    net: Cnn,
    config: ClassifierConfig,
    /// Wall seconds its training took (None: a file written before they were recorded).
    train_seconds: Option<f64>,
    /// The fingerprint of the training set ([`crate::data::fingerprint`]); `None` for files
    /// written before it was recorded.
    data: Option<String>,
}

fn model_err<E: std::fmt::Debug>(what: &str) -> impl Fn(E) -> Error + '_ {
    move |e| Error::Model(format!("cannot read {what}: {e:?}"))
}

/// Checks that `images` holds `n` Fashion-MNIST-shaped images with finite values.
fn check_images(images: &[f32], n: usize) -> Result<()> {
    if n.checked_mul(IMAGE_LEN) != Some(images.len()) {
        return Err(Error::Model(format!(
            "the Fashion-MNIST classifier takes images of shape [n, 1, 28, 28] (n·784 values \
             in [-1, 1], row-major); got {} values for n = {n}",
            images.len()
        )));
    }
    if let Some(i) = images.iter().position(|v| !v.is_finite()) {
        return Err(Error::Model(format!(
            "image {} holds a non-finite value ({}) at pixel {}; the classifier takes finite \
             values in [-1, 1]",
            i / IMAGE_LEN,
            images[i],
            i % IMAGE_LEN
        )));
    }
    Ok(())
}

/// Checks that `set` holds labelled `[1, 28, 28]` images of the ten Fashion-MNIST classes.
pub(crate) fn check_set(set: &ImageSet, what: &str) -> Result<()> {
    if (set.channels, set.height, set.width) != (1, SIDE, SIDE) {
        return Err(Error::Model(format!(
            "the {what} holds images of shape [{}, {}, {}]; the Fashion-MNIST classifier takes \
             [1, 28, 28] (grayscale 28×28, values in [-1, 1])",
            set.channels, set.height, set.width
        )));
    }
    if let Some((i, &l)) = set
        .labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| l as usize >= NUM_CLASSES)
    {
        return Err(Error::Model(format!(
            "the {what} has label {l} at index {i}; the classifier knows the classes \
             0..{NUM_CLASSES}"
        )));
    }
    check_images(&set.pixels, set.len())
}

fn images_tensor(images: &[f32], n: usize, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(images.to_vec(), [n, 1, SIDE, SIDE]), device)
}

/// The index of the largest value of each row of `[_, 10]` logits (the lowest on ties).
fn argmax_rows(logits: &[f32]) -> Vec<usize> {
    logits
        .chunks_exact(NUM_CLASSES)
        .map(|row| {
            let mut best = 0;
            for (c, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = c;
                }
            }
            best
        })
        .collect()
}

/// Trains a classifier on `train` (normally the 60,000 Fashion-MNIST training images).
/// `progress(done, total, loss)` is called after every optimiser step with the steps done,
/// the steps in all and the batch's mean cross-entropy.
pub fn train(
    train: &ImageSet,
    cfg: &ClassifierConfig,
    progress: &mut dyn FnMut(usize, usize, f64),
) -> Result<Classifier> {
    let started = std::time::Instant::now();
    check_set(train, "training set")?;
    if train.is_empty() {
        return Err(Error::Model(
            "the classifier's training set is empty".into(),
        ));
    }
    if cfg.epochs == 0 || cfg.batch == 0 {
        return Err(Error::InvalidValue {
            field: "classifier epochs/batch".into(),
            why: format!(
                "both must be at least 1 (got epochs = {}, batch = {})",
                cfg.epochs, cfg.batch
            ),
        });
    }
    if !(cfg.lr.is_finite() && cfg.lr > 0.0) {
        return Err(Error::InvalidValue {
            field: "classifier lr".into(),
            why: format!("must be a positive number (got {})", cfg.lr),
        });
    }
    let schedule = Schedule {
        epochs: cfg.epochs,
        batch: cfg.batch,
        lr: cfg.lr,
        seed: cfg.seed,
        key: CLASSIFIER_KEY,
    };
    let mut fill = |_: usize, rows: &[usize], x: &mut Vec<f32>, y: &mut Vec<f32>| -> Result<()> {
        y.resize(rows.len() * NUM_CLASSES, 0.0f32);
        for (row, &i) in rows.iter().enumerate() {
            x.extend_from_slice(train.image(i));
            y[row * NUM_CLASSES + train.labels[i] as usize] = 1.0;
        }
        Ok(())
    };
    let net = cnn::fit(
        SHAPE,
        train.len(),
        &schedule,
        Objective::CrossEntropy,
        &mut fill,
        progress,
    )?;
    Ok(Classifier {
        net,
        config: cfg.clone(),
        train_seconds: Some(started.elapsed().as_secs_f64()),
        data: Some(crate::data::fingerprint::fingerprint(train)),
    })
}

/// Where a trained classifier is kept for reuse: [`FILE_NAME`] in the cache folder
/// ([`crate::fsutil::cache_dir`]; the module doc has the rules).
pub fn default_path() -> PathBuf {
    crate::fsutil::cache_dir().join(FILE_NAME)
}

/// The seed `curadiff classifier` trains the metric's classifier with by default.
pub const METRIC_SEED: u64 = 0;

/// Where the classifier trained with `seed` is cached: [`default_path`] (the metric's) for
/// [`METRIC_SEED`], else `fmnist-classifier-seed<seed>.safetensors` beside it (a surrogate).
pub fn path_for_seed(seed: u64) -> PathBuf {
    let metric = default_path();
    if seed == METRIC_SEED {
        return metric;
    }
    metric.with_file_name(format!("fmnist-classifier-seed{seed}.safetensors"))
}

impl Classifier {
    /// A classifier around a network trained elsewhere (in stages: [`super::staged`]).
    pub(crate) fn from_net(
        net: Cnn,
        config: ClassifierConfig,
        train_seconds: Option<f64>,
        data: Option<String>,
    ) -> Self {
        Self {
            net,
            config,
            train_seconds,
            data,
        }
    }

    /// The network (tests compare weights).
    #[cfg(test)]
    pub(crate) fn net_for_tests(&self) -> &Cnn {
        &self.net
    }

    /// Wall seconds its training took (None for a file written before they were recorded).
    pub fn train_seconds(&self) -> Option<f64> {
        self.train_seconds
    }

    /// The config the classifier was trained with.
    pub fn config(&self) -> &ClassifierConfig {
        &self.config
    }

    /// Width of [`Classifier::features`] per image (128).
    pub fn feature_dim(&self) -> usize {
        FEATURE_DIM
    }

    /// The number of classes it tells apart (10).
    pub fn num_classes(&self) -> usize {
        NUM_CLASSES
    }

    /// The fingerprint of the set it was trained on, when its file records it.
    pub fn trained_on(&self) -> Option<&str> {
        self.data.as_deref()
    }

    /// Writes the weights to `path` (safetensors, atomically), creating its folder.
    pub fn save(&self, path: &Path) -> Result<()> {
        let config = serde_json::to_string(&self.config)
            .map_err(|e| Error::Model(format!("cannot serialise the classifier config: {e}")))?;
        let mut meta = HashMap::from([
            ("format".to_string(), FEATURE_NETWORK.to_string()),
            ("version".to_string(), FORMAT_VERSION.to_string()),
            ("config".to_string(), config),
        ]);
        if let Some(t) = self.train_seconds {
            meta.insert("train_seconds".to_string(), t.to_string());
        }
        if let Some(d) = &self.data {
            meta.insert("data".to_string(), d.clone());
        }
        cnn::save(&self.net, path, meta)
    }

    /// Reads a classifier written by [`Classifier::save`]. A missing, truncated or foreign
    /// file is an error that names it.
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |why: String| Error::BadFile {
            path: path.to_path_buf(),
            why,
        };
        let stored = cnn::open(path, "the Fashion-MNIST classifier")?;
        let meta = &stored.meta;
        let format = meta.get("format").map(String::as_str);
        if format != Some(FEATURE_NETWORK) {
            return Err(bad(format!(
                "not a {FEATURE_NETWORK} file (its metadata format is {format:?})"
            )));
        }
        let version = meta.get("version").map(String::as_str);
        if version != Some(FORMAT_VERSION) {
            return Err(bad(format!(
                "classifier format version {version:?}; this curadiff reads version \
                 {FORMAT_VERSION}: train the classifier again"
            )));
        }
        let config: ClassifierConfig = meta
            .get("config")
            .ok_or_else(|| bad("the metadata has no training config".into()))
            .and_then(|c| {
                serde_json::from_str(c).map_err(|e| bad(format!("malformed training config: {e}")))
            })?;
        let train_seconds = match meta.get("train_seconds") {
            None => None,
            Some(t) => Some(
                t.parse::<f64>()
                    .ok()
                    .filter(|t| t.is_finite() && *t >= 0.0)
                    .ok_or_else(|| bad(format!("malformed train_seconds {t:?} in the metadata")))?,
            ),
        };
        let data = meta.get("data").cloned();
        let net = stored.net(SHAPE, path)?;
        Ok(Self {
            net,
            config,
            train_seconds,
            data,
        })
    }

    /// Runs the network over `n` images in batches; `f` maps a batch's features to its
    /// per-image output and gets the batch size.
    fn batched<T>(
        &self,
        images: &[f32],
        n: usize,
        mut f: impl FnMut(&Cnn, Tensor<2>, usize) -> Result<Vec<T>>,
    ) -> Result<Vec<T>> {
        check_images(images, n)?;
        let device = device::inference();
        let mut out = Vec::new();
        for chunk in images.chunks(INFER_BATCH * IMAGE_LEN) {
            let b = chunk.len() / IMAGE_LEN;
            let feats = self.net.features(images_tensor(chunk, b, &device));
            out.extend(f(&self.net, feats, b)?);
        }
        Ok(out)
    }

    /// Penultimate features of `n` images `[n, 1, 28, 28]` in [-1, 1]: `[n, 128]` row-major.
    pub fn features(&self, images: &[f32], n: usize) -> Result<Vec<f32>> {
        self.batched(images, n, |_, feats, _| {
            feats
                .try_into_vec_as::<f32>()
                .map_err(model_err("the classifier features"))
        })
    }

    /// Logits of `n` images: `[n, 10]` row-major.
    pub fn logits(&self, images: &[f32], n: usize) -> Result<Vec<f32>> {
        self.batched(images, n, |net, feats, _| {
            net.logits(feats)
                .try_into_vec_as::<f32>()
                .map_err(model_err("the classifier logits"))
        })
    }

    /// Class probabilities (the softmax of the logits) of `n` images: `[n, 10]` row-major.
    pub fn probabilities(&self, images: &[f32], n: usize) -> Result<Vec<f32>> {
        let mut p = self.logits(images, n)?;
        for row in p.chunks_exact_mut(NUM_CLASSES) {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let e: Vec<f64> = row.iter().map(|&v| ((v - max) as f64).exp()).collect();
            let sum: f64 = e.iter().sum();
            for (r, e) in row.iter_mut().zip(e) {
                *r = (e / sum) as f32;
            }
        }
        Ok(p)
    }

    /// Per class of `set`: (images classified as their label, images), 10 entries.
    pub fn per_class_correct(&self, set: &ImageSet) -> Result<Vec<(usize, usize)>> {
        check_set(set, "image set")?;
        let pred = self.predict(&set.pixels, set.len())?;
        let mut out = vec![(0, 0); NUM_CLASSES];
        for (&p, &l) in pred.iter().zip(&set.labels) {
            let e = &mut out[l as usize];
            e.0 += (p == l as usize) as usize;
            e.1 += 1;
        }
        Ok(out)
    }

    /// The most likely class of each of `n` images (the lowest class on ties).
    pub fn predict(&self, images: &[f32], n: usize) -> Result<Vec<usize>> {
        Ok(argmax_rows(&self.logits(images, n)?))
    }

    /// The most likely class of each of `n` images given their [`Classifier::features`]
    /// (`[n, 128]`), without running the convolutions again.
    pub fn predict_from_features(&self, features: &[f32], n: usize) -> Result<Vec<usize>> {
        if n.checked_mul(FEATURE_DIM) != Some(features.len()) {
            return Err(Error::Model(format!(
                "expected [n, {FEATURE_DIM}] classifier features for n = {n}, got {} values",
                features.len()
            )));
        }
        let device = device::inference();
        let mut out = Vec::with_capacity(n);
        for chunk in features.chunks(INFER_BATCH * FEATURE_DIM) {
            let b = chunk.len() / FEATURE_DIM;
            let f =
                Tensor::<2>::from_data(TensorData::new(chunk.to_vec(), [b, FEATURE_DIM]), &device);
            let logits = self
                .net
                .logits(f)
                .try_into_vec_as::<f32>()
                .map_err(model_err("the classifier logits"))?;
            out.extend(argmax_rows(&logits));
        }
        Ok(out)
    }

    /// Fraction of `set` classified as its label (0 for an empty set).
    pub fn accuracy(&self, set: &ImageSet) -> Result<f64> {
        check_set(set, "image set")?;
        if set.is_empty() {
            return Ok(0.0);
        }
        let pred = self.predict(&set.pixels, set.len())?;
        let right = pred
            .iter()
            .zip(&set.labels)
            .filter(|&(&p, &l)| p == l as usize)
            .count();
        Ok(right as f64 / set.len() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::images::{load_fashion_mnist, Split, FASHION_MNIST_DIR};
    use crate::models::params;
    use safetensors::tensor::{Dtype, TensorView};

    fn fixture_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fmnist-fixture")
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("curadiff-classifier-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn quick() -> ClassifierConfig {
        ClassifierConfig {
            epochs: 4,
            batch: 32,
            lr: 2e-3,
            seed: 5,
        }
    }

    #[test]
    fn training_is_deterministic_and_learns_on_the_fixture() {
        let train_set = load_fashion_mnist(&fixture_dir(), Split::Train).unwrap();
        let test_set = load_fashion_mnist(&fixture_dir(), Split::Test).unwrap();
        let mut calls = Vec::new();
        let a = train(&train_set, &quick(), &mut |d, t, l| calls.push((d, t, l))).unwrap();
        let b = train(&train_set, &quick(), &mut |_, _, _| {}).unwrap();
        // 200 images in batches of 32: 7 steps per epoch.
        assert_eq!(calls.len(), 28);
        assert_eq!((calls[27].0, calls[27].1), (28, 28));
        assert!(calls.iter().all(|c| c.2.is_finite()));
        let pa = a.predict(&test_set.pixels, test_set.len()).unwrap();
        let pb = b.predict(&test_set.pixels, test_set.len()).unwrap();
        assert_eq!(pa, pb);
        assert_eq!(
            params::to_host(&a.net).unwrap(),
            params::to_host(&b.net).unwrap()
        );
        // Another seed gives other weights.
        let c = train(
            &train_set,
            &ClassifierConfig { seed: 6, ..quick() },
            &mut |_, _, _| {},
        )
        .unwrap();
        assert_ne!(
            params::to_host(&a.net).unwrap(),
            params::to_host(&c.net).unwrap()
        );
        // 200 training images are enough to beat chance (10%) by far.
        let acc = a.accuracy(&test_set).unwrap();
        assert!(acc > 0.5, "fixture test accuracy {acc}");
        // The loss goes down: mean of the last epoch below the first.
        let first: f64 = calls[..7].iter().map(|c| c.2).sum::<f64>() / 7.0;
        let last: f64 = calls[21..].iter().map(|c| c.2).sum::<f64>() / 7.0;
        assert!(last < first, "loss {first} → {last}");
    }

    #[test]
    fn save_load_round_trip_and_damaged_files() {
        let set = load_fashion_mnist(&fixture_dir(), Split::Train).unwrap();
        let cfg = ClassifierConfig {
            epochs: 1,
            ..quick()
        };
        let clf = train(&set, &cfg, &mut |_, _, _| {}).unwrap();
        let dir = temp_dir("save");
        let path = dir.join("nested").join(FILE_NAME);
        clf.save(&path).unwrap();
        let back = Classifier::load(&path).unwrap();
        assert_eq!(back.config(), &cfg);
        let fp = crate::data::fingerprint::fingerprint(&set);
        assert_eq!(back.trained_on(), Some(fp.as_str()));
        // Probabilities: the softmax of the logits, e^{l_c}/Σ e^{l_k}, in f64 here.
        let logits = back.logits(&set.pixels[..3 * IMAGE_LEN], 3).unwrap();
        let probs = back.probabilities(&set.pixels[..3 * IMAGE_LEN], 3).unwrap();
        for (l, p) in logits.chunks(10).zip(probs.chunks(10)) {
            let z: f64 = l.iter().map(|&v| (v as f64).exp()).sum();
            for (&lc, &pc) in l.iter().zip(p) {
                assert!(((lc as f64).exp() / z - pc as f64).abs() < 1e-6);
            }
        }
        let pc = back.per_class_correct(&set).unwrap();
        assert_eq!(pc.iter().map(|c| c.1).sum::<usize>(), set.len());
        let right = pc.iter().map(|c| c.0).sum::<usize>() as f64;
        assert!((right / set.len() as f64 - back.accuracy(&set).unwrap()).abs() < 1e-12);
        let fa = clf.features(&set.pixels, set.len()).unwrap();
        let fb = back.features(&set.pixels, set.len()).unwrap();
        assert_eq!(fa.len(), set.len() * FEATURE_DIM);
        assert_eq!(fa, fb);
        assert!(fa.iter().all(|&v| v >= 0.0), "ReLU features");

        // Truncated.
        let bytes = std::fs::read(&path).unwrap();
        let cut = dir.join("cut.safetensors");
        std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
        let e = Classifier::load(&cut).unwrap_err().to_string();
        assert!(
            e.contains("cut.safetensors") && e.contains("truncated"),
            "{e}"
        );
        // Missing.
        let e = Classifier::load(&dir.join("none.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.safetensors"), "{e}");
        // Not safetensors at all.
        let junk = dir.join("junk.safetensors");
        std::fs::write(&junk, b"{\"hello\": 1}").unwrap();
        let e = Classifier::load(&junk).unwrap_err().to_string();
        assert!(e.contains("junk.safetensors"), "{e}");
        // A valid safetensors file of something else.
        let bytes: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = TensorView::new(Dtype::F32, vec![2], &bytes).unwrap();
        let other = safetensors::serialize([("w", view)], &None).unwrap();
        let foreign = dir.join("foreign.safetensors");
        std::fs::write(&foreign, other).unwrap();
        let e = Classifier::load(&foreign).unwrap_err().to_string();
        assert!(
            e.contains("foreign.safetensors") && e.contains(FEATURE_NETWORK),
            "{e}"
        );
    }

    #[test]
    fn wrong_image_shapes_are_errors_that_say_the_expected_form() {
        let set = load_fashion_mnist(&fixture_dir(), Split::Test).unwrap();
        let small = set.subset(&(0..20).collect::<Vec<_>>());
        let clf = train(
            &small,
            &ClassifierConfig {
                epochs: 1,
                ..quick()
            },
            &mut |_, _, _| {},
        )
        .unwrap();
        let e = clf
            .features(&set.pixels[..3 * IMAGE_LEN - 1], 3)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[n, 1, 28, 28]") && e.contains("n = 3"), "{e}");
        let mut rgb = small.clone();
        rgb.channels = 3;
        rgb.height = 14;
        rgb.width = 28 * 28 / 14 / 3;
        let e = clf.accuracy(&rgb).unwrap_err().to_string();
        assert!(e.contains("[1, 28, 28]"), "{e}");
        let mut nan = small.pixels[..IMAGE_LEN * 2].to_vec();
        nan[IMAGE_LEN + 5] = f32::NAN;
        let e = clf.predict(&nan, 2).unwrap_err().to_string();
        assert!(e.contains("image 1") && e.contains("pixel 5"), "{e}");
        assert_eq!(clf.features(&[], 0).unwrap(), Vec::<f32>::new());
        let e = train(&rgb, &quick(), &mut |_, _, _| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("[1, 28, 28]"), "{e}");
    }

    #[test]
    fn surrogates_are_cached_beside_the_metric_classifier() {
        assert_eq!(path_for_seed(METRIC_SEED), default_path());
        let s = path_for_seed(1);
        assert_eq!(s.parent(), default_path().parent());
        assert_eq!(
            s.file_name().unwrap(),
            "fmnist-classifier-seed1.safetensors"
        );
    }

    /// Trains the default classifier on the 60,000 training images and checks its accuracy on
    /// the 10,000 test images. Minutes of CPU: run with `--ignored`.
    #[test]
    #[ignore]
    fn full_fashion_mnist_classifier_reaches_90_percent() {
        let dir = Path::new(FASHION_MNIST_DIR);
        if !dir.join("train-images-idx3-ubyte.gz").is_file() {
            eprintln!(
                "skipped: Fashion-MNIST is not installed in {FASHION_MNIST_DIR} \
                 (apt-get install dataset-fashion-mnist)"
            );
            return;
        }
        let train_set = load_fashion_mnist(dir, Split::Train).unwrap();
        let test_set = load_fashion_mnist(dir, Split::Test).unwrap();
        let start = std::time::Instant::now();
        let cfg = ClassifierConfig::default();
        let clf = train(&train_set, &cfg, &mut |done, total, loss| {
            if done % 100 == 0 || done == total {
                eprintln!(
                    "step {done}/{total} loss {loss:.4} ({:.0} s)",
                    start.elapsed().as_secs_f64()
                );
            }
        })
        .unwrap();
        let trained = start.elapsed().as_secs_f64();
        let acc = clf.accuracy(&test_set).unwrap();
        eprintln!(
            "{cfg:?}: test accuracy {acc:.4}, training {trained:.0} s, evaluation {:.0} s",
            start.elapsed().as_secs_f64() - trained
        );
        assert!(acc >= 0.90, "test accuracy {acc}");
    }
}
