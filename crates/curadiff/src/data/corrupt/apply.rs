//! Corrupting the examples of a set by id, and the record of each example's source.
//!
//! Example id k is corrupted when u₀(k) < `fraction`, and a motion blur's angle uses u₁(k),
//! where u₀, u₁ are the first two uniforms of the stream (`seed`, [`Stream::Curate`],
//! `CORRUPT_KEY + k`). Nothing else enters, so example k is corrupted identically whether it
//! is loaded alone, in a subset, in another order, or under another run seed.
//!
//! The record ([`SourceRecord`]) is one JSON object per example, written as JSON Lines (a
//! run's `data/sources.jsonl`, one line per training example in the set's order):
//!
//! ```json
//! {"id": 12, "source": "corrupted", "kind": "blur", "strength": {"sigma": 1.0}}
//! {"id": 13, "source": "clean"}
//! {"id": 2199023255552, "source": "extra", "kind": "mnist"}
//! ```

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

use super::config::{CorruptConfig, Corruption};
use super::{blur, jpeg, motion};
use crate::data::images::{ImageSet, Source};
use crate::error::{Error, Result};
use crate::rng::{Rng, Stream};

/// Random-stream index base of the corruption draws: far from other curation streams.
const CORRUPT_KEY: u64 = 0x434F_5252 << 32;

/// The corruption of example `id` under `cfg`, or None when it stays clean.
pub fn corruption_of(cfg: &CorruptConfig, id: u64) -> Option<Corruption> {
    if !cfg.is_on() {
        return None;
    }
    let mut rng = Rng::new(cfg.seed, Stream::Curate, CORRUPT_KEY.wrapping_add(id));
    let chosen = rng.uniform() < cfg.fraction;
    let u = rng.uniform();
    if chosen {
        cfg.corruption(u)
    } else {
        None
    }
}

/// Applies `c` to one image (`[channels, h, w]`) in place.
pub fn corrupt_image(
    c: Corruption,
    image: &mut [f32],
    channels: usize,
    h: usize,
    w: usize,
) -> Result<()> {
    match c {
        Corruption::Blur { sigma } => blur::blur(image, channels, h, w, sigma),
        Corruption::Jpeg { quality } => jpeg::jpeg(image, channels, h, w, quality)?,
        Corruption::Motion { length, angle } => {
            motion::motion_blur(image, channels, h, w, length, angle)
        }
    }
    Ok(())
}

/// `set` with the examples `cfg` chooses corrupted (their source becomes
/// [`Source::Corrupted`]); the others are untouched. Validates `cfg` first.
pub fn apply(set: &ImageSet, cfg: &CorruptConfig) -> Result<ImageSet> {
    cfg.validate("data.corrupt.")?;
    let mut out = set.clone();
    if !cfg.is_on() {
        return Ok(out);
    }
    let (c, h, w) = (set.channels, set.height, set.width);
    let len = set.image_len();
    let plan: Vec<Option<Corruption>> = set.ids.iter().map(|&id| corruption_of(cfg, id)).collect();
    out.pixels
        .par_chunks_mut(len.max(1))
        .zip(plan.par_iter())
        .try_for_each(|(img, p)| match p {
            Some(k) => corrupt_image(*k, img, c, h, w),
            None => Ok(()),
        })?;
    for (s, p) in out.source.iter_mut().zip(&plan) {
        if let Some(k) = p {
            *s = Source::Corrupted {
                kind: k.kind().to_string(),
            };
        }
    }
    Ok(out)
}

/// Where one example comes from: clean, or corrupted with a kind and strength.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// The example's id.
    pub id: u64,
    /// "clean", "corrupted" or "extra" (an example of `data.extra`).
    pub source: String,
    /// The corruption (`data.corrupt.kind`) of a corrupted example; an extra one's source kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Its strength parameters, e.g. `{"sigma": 1.0}`, for corrupted examples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength: Option<serde_json::Value>,
}

/// The source record of each of `ids` under `cfg`.
pub fn sources(ids: &[u64], cfg: &CorruptConfig) -> Vec<SourceRecord> {
    ids.iter()
        .map(|&id| match corruption_of(cfg, id) {
            Some(c) => SourceRecord {
                id,
                source: "corrupted".into(),
                kind: Some(c.kind().into()),
                strength: Some(c.strength()),
            },
            None => SourceRecord {
                id,
                source: "clean".into(),
                kind: None,
                strength: None,
            },
        })
        .collect()
}

/// The source record of each example of `set` under `cfg`: as [`sources`], except that the
/// examples of an extra source ([`Source::OutOfDistribution`], `data.extra`) are
/// `{"source": "extra", "kind": NAME}` and never corrupted.
pub fn set_sources(set: &ImageSet, cfg: &CorruptConfig) -> Vec<SourceRecord> {
    let mut records = sources(&set.ids, cfg);
    for (r, s) in records.iter_mut().zip(&set.source) {
        if let Source::OutOfDistribution { name } = s {
            r.source = "extra".into();
            r.kind = Some(name.clone());
            r.strength = None;
        }
    }
    records
}

/// Writes `records` as JSON Lines at `path` (atomically), creating its folder.
pub fn write_sources(path: &Path, records: &[SourceRecord]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::fsutil::create_dir(dir)?;
    }
    let mut text = String::with_capacity(records.len() * 64);
    for r in records {
        let line = serde_json::to_string(r).map_err(|e| Error::BadFile {
            path: path.to_path_buf(),
            why: format!("cannot write a source record: {e}"),
        })?;
        text.push_str(&line);
        text.push('\n');
    }
    crate::fsutil::write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::images::tests::toy_set;

    fn cfg(kind: &str, fraction: f64) -> CorruptConfig {
        CorruptConfig {
            kind: kind.into(),
            fraction,
            angle_spread: 30.0,
            seed: 4,
            ..Default::default()
        }
    }

    /// A set of 8×8 images with a bright square, so every corruption changes something.
    fn squares(n: usize) -> ImageSet {
        let mut set = toy_set(&[n]);
        set.height = 8;
        set.width = 8;
        set.pixels = (0..n * 64)
            .map(|k| {
                let (y, x) = ((k % 64) / 8, k % 8);
                if (2..5 + k / 64 % 3).contains(&y) && (3..6).contains(&x) {
                    0.9
                } else {
                    -0.7
                }
            })
            .collect();
        set
    }

    #[test]
    fn an_example_is_corrupted_the_same_alone_in_a_subset_or_reordered() {
        for kind in ["blur", "jpeg", "motion"] {
            let c = cfg(kind, 0.5);
            let set = squares(40);
            let all = apply(&set, &c).unwrap();
            let order: Vec<usize> = (0..40).rev().filter(|i| i % 3 != 1).collect();
            let sub = apply(&set.subset(&order), &c).unwrap();
            for (j, &i) in order.iter().enumerate() {
                assert_eq!(sub.image(j), all.image(i), "{kind} id {}", set.ids[i]);
                assert_eq!(sub.source[j], all.source[i]);
            }
            let alone = apply(&set.subset(&[17]), &c).unwrap();
            assert_eq!(alone.image(0), all.image(17));
            // Some corrupted, some clean; the clean ones untouched, the others changed.
            let corrupted: Vec<bool> = all
                .source
                .iter()
                .map(|s| matches!(s, Source::Corrupted { .. }))
                .collect();
            assert!(corrupted.iter().any(|&b| b) && corrupted.iter().any(|&b| !b));
            for (i, &c) in corrupted.iter().enumerate() {
                assert_eq!(all.image(i) == set.image(i), !c, "{kind} {i}");
            }
            // Another corruption seed picks other examples.
            let other = apply(&set, &CorruptConfig { seed: 5, ..c }).unwrap();
            assert_ne!(other.source, all.source);
        }
    }

    /// The share corrupted is a binomial draw: within 4 standard deviations of the fraction.
    #[test]
    fn the_fraction_corrupted_is_the_requested_one() {
        let ids: Vec<u64> = (0..20_000).map(|i| 3 * i + 7).collect();
        for f in [0.0, 0.1, 0.9, 1.0] {
            let recs = sources(&ids, &cfg("blur", f));
            let k = recs.iter().filter(|r| r.source == "corrupted").count() as f64;
            let n = ids.len() as f64;
            let sd = (n * f * (1.0 - f)).sqrt();
            assert!(
                (k - n * f).abs() <= 4.0 * sd + 1e-9,
                "fraction {f}: {k} of {n}"
            );
        }
    }

    #[test]
    fn records_name_the_kind_and_strength_and_round_trip() {
        let c = cfg("motion", 0.5);
        let recs = sources(&[1, 2, 3, 4, 5, 6], &c);
        let bad: Vec<&SourceRecord> = recs.iter().filter(|r| r.source == "corrupted").collect();
        assert!(!bad.is_empty());
        for r in &bad {
            let s = r.strength.as_ref().unwrap();
            let a = s["angle"].as_f64().unwrap();
            assert_eq!(r.kind.as_deref(), Some("motion"));
            assert!((-30.0..=30.0).contains(&a) && s["length"] == 5.0, "{s}");
        }
        let dir = std::env::temp_dir().join(format!("curadiff-sources-{}", std::process::id()));
        let p = dir.join("data/sources.jsonl");
        write_sources(&p, &recs).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let back: Vec<SourceRecord> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(back, recs);
        // A clean example's line carries its id and source only.
        let clean = recs.iter().find(|r| r.source == "clean").unwrap();
        let line = format!(r#"{{"id":{},"source":"clean"}}"#, clean.id);
        assert!(text.lines().any(|l| l == line), "{text}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
