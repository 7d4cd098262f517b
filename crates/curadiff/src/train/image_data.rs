//! The data of an image run: the pool (a source and its long-tailed cut), the subset of it
//! a run trains on, the examples' noise windows, the reference set metrics compare against,
//! and the check that images fit the network.

use std::path::{Path, PathBuf};

use super::config::DataConfig;
use crate::data::images::{self, ImageSet, Split};
use crate::data::long_tail;
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

/// The pool of a run: the source, then the long-tailed cut if asked for (seeded by
/// `data.subset_seed`, else the run's `seed`, in the order `data.class_order`), then the
/// corruption of `data.corrupt` (by example id, so the order of the two does not matter),
/// then the examples of `data.extra` appended.
/// Subset, windows and annotation files refer to its ids and fingerprint.
pub fn pool(cfg: &DataConfig, seed: u64) -> Result<ImageSet> {
    let clean = clean_pool(cfg, seed)?;
    let set = if cfg.corrupt.is_on() {
        crate::data::corrupt::apply::apply(&clean, &cfg.corrupt)?
    } else {
        clean
    };
    crate::data::extra::append(set, &cfg.extra)
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
    let set = if cfg.max_per_class > 0 {
        first_per_class(&set, cfg.max_per_class)
    } else {
        set
    };
    if cfg.imbalance_ratio >= 1.0 {
        let cut_seed = cfg.subset_seed.unwrap_or(seed);
        return long_tail::long_tailed(&set, cfg.imbalance_ratio, cut_seed, &cfg.class_order);
    }
    Ok(set)
}

/// The first `n` examples of each class in `set`'s order (all of a class with fewer).
pub fn first_per_class(set: &ImageSet, n: usize) -> ImageSet {
    let mut keep: Vec<usize> = set
        .indices_by_class()
        .iter()
        .flat_map(|members| members.iter().take(n).copied())
        .collect();
    keep.sort_unstable();
    set.subset(&keep)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::images::tests::toy_set;
    use crate::train::presets::preset;

    /// A balanced set of 6,000 1×1 images per class (60,000), as `npy` files.
    fn balanced_npy(dir: &Path) -> DataConfig {
        std::fs::create_dir_all(dir).unwrap();
        let n = 60_000;
        let pixels: Vec<f32> = (0..n).map(|i| (i % 255) as f32 / 127.5 - 1.0).collect();
        let labels: Vec<i64> = (0..n).map(|i| (i % 10) as i64).collect();
        crate::data::npy::write_f32(&dir.join("x.npy"), &[n, 1, 1, 1], &pixels).unwrap();
        crate::data::npy::write_i64(&dir.join("y.npy"), &[n], &labels).unwrap();
        let mut d = preset("fmnist-lt").unwrap().data;
        d.kind = "npy".into();
        d.path = dir.join("x.npy").display().to_string();
        d.labels = dir.join("y.npy").display().to_string();
        d
    }

    #[test]
    fn the_long_tailed_cut_follows_subset_seed_not_the_run_seed() {
        let dir = std::env::temp_dir().join(format!("curadiff-lt-{}", std::process::id()));
        let data = balanced_npy(&dir);
        assert_eq!(data.imbalance_ratio, 100.0);
        assert_eq!(data.subset_seed, Some(0));
        // ⌊6000 · 100^(−r/9)⌋ (hand-computed with 50-digit decimals in data::long_tail).
        let want = [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60];
        let a = pool(&data, 1).unwrap();
        assert_eq!(a.class_counts(), want);
        assert_eq!(a.len(), 14_886);
        assert_eq!(a, pool(&data, 2).unwrap());
        // Another subset seed cuts other images; without one, the run seed does (as before
        // the key existed).
        let other = DataConfig {
            subset_seed: Some(1),
            ..data.clone()
        };
        assert_ne!(pool(&other, 1).unwrap().ids, a.ids);
        let old = DataConfig {
            subset_seed: None,
            ..data.clone()
        };
        assert_eq!(pool(&old, 0).unwrap(), a);
        assert_ne!(pool(&old, 1).unwrap().ids, a.ids);
        // The hard-tail order: Shirt (6) keeps 60, Trouser (1) 6000.
        let hard = DataConfig {
            class_order: crate::data::long_tail::FMNIST_HARD_TAIL.to_vec(),
            ..data
        };
        let h = pool(&hard, 3).unwrap().class_counts();
        assert_eq!((h[6], h[2], h[4], h[0], h[1]), (60, 100, 166, 278, 6000));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn subset_seed_and_class_order_are_left_out_at_their_defaults_and_settable() {
        let c = preset("fmnist").unwrap();
        let text = c.to_toml().unwrap();
        assert!(!text.contains("subset_seed") && !text.contains("class_order"));
        let lt = c
            .with_overrides(&[
                "data.imbalance_ratio=100".into(),
                "data.subset_seed=4".into(),
                "data.class_order=[1, 8, 5, 9, 7, 3, 0, 4, 2, 6]".into(),
            ])
            .unwrap();
        assert_eq!(lt.data.subset_seed, Some(4));
        assert_eq!(lt.data.class_order[9], 6);
        let back = crate::train::config::RunConfig::from_toml(&lt.to_toml().unwrap()).unwrap();
        assert_eq!(back, lt);
        assert_eq!(c.diff(&lt).len(), 3, "{:?}", c.diff(&lt));
        let e = c
            .with_overrides(&["data.subset_seed=4".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("data.subset_seed") && e.contains("imbalance_ratio"),
            "{e}"
        );
        let e = c
            .with_overrides(&[
                "data.imbalance_ratio=100".into(),
                "data.class_order=[0, 0, 1]".into(),
            ])
            .unwrap_err()
            .to_string();
        assert!(e.contains("data.class_order"), "{e}");
        let lt_preset = preset("fmnist-lt-hard").unwrap();
        assert_eq!(
            lt_preset.data.class_order,
            crate::data::long_tail::FMNIST_HARD_TAIL
        );
    }

    /// The cap keeps the first examples of each class in the source's order, all of a class
    /// with fewer, and the ids (positions in the source) say which.
    #[test]
    fn the_per_class_cap_keeps_the_first_examples_of_each_class() {
        // Labels in source order: 0 1 2 0 1 2 0 2 0 2 0 (ids 3i + 7), so the first three of
        // each class are positions 0–7 and the last three positions (0, 2, 0) are cut.
        let set = toy_set(&[5, 2, 4]);
        let capped = first_per_class(&set, 3);
        assert_eq!(capped.ids, vec![7, 10, 13, 16, 19, 22, 25, 28]);
        assert_eq!(capped.len(), 3 + 2 + 3);
        let counts: Vec<usize> = capped.indices_by_class().iter().map(Vec::len).collect();
        assert_eq!(counts, vec![3, 2, 3]);
    }
}
