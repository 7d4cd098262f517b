//! The data of an image run: the pool (a source and its long-tailed cut), the subset of it
//! a run trains on, the examples' noise windows, the reference set metrics compare against,
//! and the check that images fit the network.

use std::path::{Path, PathBuf};

use super::config::DataConfig;
use crate::data::images::{self, ImageSet, Split};
use crate::data::windows::NoiseWindow;
use crate::error::{Error, Result};
use crate::models::unet::UnetConfig;

/// The Fashion-MNIST folder of `cfg` (its `path`, or the Debian package's location).
fn fmnist_dir(cfg: &DataConfig) -> PathBuf {
    if cfg.path.is_empty() {
        PathBuf::from(images::FASHION_MNIST_DIR)
    } else {
        PathBuf::from(&cfg.path)
    }
}

/// The training images of a run: the pool, then the subset file's examples if one is set.
pub fn training_set(cfg: &DataConfig, seed: u64) -> Result<ImageSet> {
    Ok(training_data(cfg, seed)?.set)
}

/// The training data of a run: its examples, their noise windows, and the seconds of
/// curation that produced them (the sidecars of the subset and windows files).
#[derive(Debug, Clone)]
pub struct TrainingData {
    pub set: ImageSet,
    /// One window per example of `set` (None: every example at every σ).
    pub windows: Option<Vec<NoiseWindow>>,
    pub curate_seconds: f64,
    /// Warnings for the run's log (e.g. windows that admit every σ).
    pub warnings: Vec<String>,
}

/// The training images, their noise windows and the seconds of curation behind them.
pub fn training_data(cfg: &DataConfig, seed: u64) -> Result<TrainingData> {
    let pool = pool(cfg, seed)?;
    let pool_fingerprint = crate::data::fingerprint::fingerprint(&pool);
    let (set, mut curate_seconds) = if cfg.subset.is_empty() {
        (pool, 0.0)
    } else {
        let s = crate::data::subset::apply(&pool, Path::new(&cfg.subset))?;
        (s.set, s.seconds)
    };
    let mut warnings = Vec::new();
    let windows = if cfg.windows.is_empty() {
        None
    } else {
        let path = Path::new(&cfg.windows);
        let w = crate::data::windows::apply(&set, &pool_fingerprint, path)?;
        if let Some((from, to)) = crate::data::windows::gap(&w.windows, cfg.window_buffer) {
            return Err(Error::BadFile {
                path: path.to_path_buf(),
                why: format!(
                    "no example is admitted at σ from {from} to {to} (data.window_buffer = {}), \
                     so those noise levels could never be trained; give some examples a lower \
                     floor or a locality ceiling above it",
                    cfg.window_buffer
                ),
            });
        }
        curate_seconds += w.seconds;
        if let Some(msg) = w.effectively_clean(&set.ids, cfg.window_buffer) {
            warnings.push(format!("{}: {msg}", path.display()));
        }
        Some(w.windows)
    };
    Ok(TrainingData {
        set,
        windows,
        curate_seconds,
        warnings,
    })
}

/// The pool of a run: the source, then the long-tailed cut if asked for, then the corruption
/// of `data.corrupt` (by example id, so the order of the two does not matter). Subset,
/// windows and annotation files refer to its ids and fingerprint.
pub fn pool(cfg: &DataConfig, seed: u64) -> Result<ImageSet> {
    let clean = clean_pool(cfg, seed)?;
    if !cfg.corrupt.is_on() {
        return Ok(clean);
    }
    crate::data::corrupt::apply::apply(&clean, &cfg.corrupt)
}

/// The pool of a run before its corruption: the source and its long-tailed cut.
pub fn clean_pool(cfg: &DataConfig, seed: u64) -> Result<ImageSet> {
    let set = match cfg.kind.as_str() {
        "fmnist" => images::load_fashion_mnist(&fmnist_dir(cfg), Split::Train)?,
        "npy" => {
            let labels = (!cfg.labels.is_empty()).then(|| PathBuf::from(&cfg.labels));
            images::load_npy_images(Path::new(&cfg.path), labels.as_deref())?
        }
        "folder" => images::load_png_folder(Path::new(&cfg.path))?,
        other => {
            return Err(Error::InvalidValue {
                field: "data.kind".into(),
                why: format!("'{other}' is not an image source (fmnist, npy, folder)"),
            })
        }
    };
    if cfg.imbalance_ratio >= 1.0 {
        return images::long_tailed(&set, cfg.imbalance_ratio, seed);
    }
    Ok(set)
}

/// The reference set image metrics compare against: Fashion-MNIST's test split, else the
/// whole pool of training images before any corruption (a subset arm is measured against
/// all the data, a corrupted one against the clean data).
pub fn reference_set(cfg: &DataConfig, seed: u64) -> Result<ImageSet> {
    match cfg.kind.as_str() {
        "fmnist" => images::load_fashion_mnist(&fmnist_dir(cfg), Split::Test),
        _ => clean_pool(cfg, seed),
    }
}

/// Checks that `set` fits the network: shape and label range.
pub fn check_fits(set: &ImageSet, unet: &UnetConfig, what: &str) -> Result<()> {
    if set.is_empty() {
        return Err(Error::Config(format!("{what} holds no images")));
    }
    if (set.channels, set.height, set.width)
        != (unet.img_channels, unet.resolution, unet.resolution)
    {
        return Err(Error::Config(format!(
            "{what} holds images of shape [{}, {}, {}], but the network expects [{c}, {r}, {r}]; \
             set unet.img_channels={} and unet.resolution={} (square images only), or resize \
             the images",
            set.channels,
            set.height,
            set.width,
            set.channels,
            set.height,
            c = unet.img_channels,
            r = unet.resolution,
        )));
    }
    if unet.num_classes > 0 {
        if let Some(&bad) = set.labels.iter().find(|&&l| l as usize >= unet.num_classes) {
            return Err(Error::Config(format!(
                "{what} has label {bad}, but unet.num_classes = {}; labels must be in 0..{}",
                unet.num_classes, unet.num_classes
            )));
        }
    }
    Ok(())
}
