//! The coreset: keep the best-scored fraction of a pool (reference §B.1 step 2), over the
//! whole pool or within each class, with an optional minimum per class, and write it as a
//! subset file (`data.subset`, [`crate::data::subset`]) whose seconds include the scoring.
//!
//! Examples are ranked by score, highest first; equal scores go in pool order. Over the
//! whole pool the top round(keep·n) are kept (at least one); per class, the top
//! round(keep·n_k) of each class. Then every class keeps at least min(min_per_class, n_k).
//! A class that keeps none of its examples is reported by name ([`Selection::warnings`]).

use std::path::Path;

use crate::data::images::ImageSet;
use crate::error::{Error, Result};

/// How much of the pool to keep.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectConfig {
    /// Fraction of examples kept, in (0, 1].
    pub keep: f64,
    /// Keep the fraction within each class instead of over the whole pool.
    pub per_class: bool,
    /// Every class keeps at least this many examples (all of a smaller class); 0: no minimum.
    pub min_per_class: usize,
}

impl SelectConfig {
    /// Checks the keep ratio.
    pub fn validate(&self) -> Result<()> {
        if !(self.keep > 0.0 && self.keep <= 1.0) {
            return Err(Error::InvalidValue {
                field: "--keep".into(),
                why: format!(
                    "the fraction of examples kept must be in (0, 1], e.g. --keep 0.3 (got {})",
                    self.keep
                ),
            });
        }
        Ok(())
    }
}

/// A coreset of a pool.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// Pool indices of the kept examples, ascending.
    pub keep: Vec<usize>,
    /// Examples per class in the pool.
    pub total: Vec<usize>,
    /// Kept examples per class.
    pub kept: Vec<usize>,
}

impl Selection {
    /// The classes with examples in the pool that keep none.
    pub fn empty_classes(&self) -> Vec<usize> {
        (0..self.total.len())
            .filter(|&c| self.total[c] > 0 && self.kept[c] == 0)
            .collect()
    }

    /// One warning per class left empty, naming it (with its name from `class_names`) and
    /// the option that keeps a minimum.
    pub fn warnings(&self, class_names: &[String], cfg: &SelectConfig) -> Vec<String> {
        self.empty_classes()
            .into_iter()
            .map(|c| {
                let name = class_names
                    .get(c)
                    .map_or(String::new(), |n| format!(" ({n})"));
                format!(
                    "class {c}{name} keeps none of its {} examples at --keep {}; pass \
                     --min-per-class K to keep at least K examples of every class",
                    self.total[c], cfg.keep
                )
            })
            .collect()
    }
}

/// Selects from the examples of a pool with `scores` and `labels` (classes
/// `0..num_classes`).
pub fn select(
    scores: &[f64],
    labels: &[u32],
    num_classes: usize,
    cfg: &SelectConfig,
) -> Result<Selection> {
    cfg.validate()?;
    let n = scores.len();
    if labels.len() != n || n == 0 {
        return Err(Error::Config(format!(
            "cannot select from {n} scores and {} labels",
            labels.len()
        )));
    }
    if let Some(&l) = labels.iter().find(|&&l| l as usize >= num_classes) {
        return Err(Error::Config(format!(
            "label {l} is outside the pool's {num_classes} classes"
        )));
    }
    let mut rank: Vec<usize> = (0..n).collect();
    rank.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut total = vec![0; num_classes];
    for &l in labels {
        total[l as usize] += 1;
    }
    let count = |m: usize| ((cfg.keep * m as f64).round() as usize).min(m);
    // Quota per class: the fraction of the class, or unlimited over the whole pool.
    let quota: Vec<usize> = if cfg.per_class {
        total.iter().map(|&t| count(t)).collect()
    } else {
        vec![n; num_classes]
    };
    let mut budget = if cfg.per_class { n } else { count(n).max(1) };
    let mut kept = vec![0; num_classes];
    let mut is_kept = vec![false; n];
    for &i in &rank {
        let c = labels[i] as usize;
        if budget > 0 && kept[c] < quota[c] {
            is_kept[i] = true;
            kept[c] += 1;
            budget -= 1;
        }
    }
    // The minimum per class: each class's next best examples.
    for &i in &rank {
        let c = labels[i] as usize;
        if !is_kept[i] && kept[c] < cfg.min_per_class.min(total[c]) {
            is_kept[i] = true;
            kept[c] += 1;
        }
    }
    Ok(Selection {
        keep: (0..n).filter(|&i| is_kept[i]).collect(),
        total,
        kept,
    })
}

/// Writes `sel` of `pool` as a subset file (ids, with the pool's fingerprint and `seconds`
/// of curation in its sidecar). An empty coreset is refused: no run could train on it.
pub fn write_subset(path: &Path, pool: &ImageSet, sel: &Selection, seconds: f64) -> Result<()> {
    if sel.keep.is_empty() {
        return Err(Error::Config(
            "the coreset keeps no example; raise --keep or pass --min-per-class K".into(),
        ));
    }
    let ids: Vec<u64> = sel.keep.iter().map(|&i| pool.ids[i]).collect();
    crate::data::subset::write(path, pool, &ids, seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(keep: f64, per_class: bool, min_per_class: usize) -> SelectConfig {
        SelectConfig {
            keep,
            per_class,
            min_per_class,
        }
    }

    #[test]
    fn keeps_the_top_fraction_over_the_pool_or_per_class() {
        // Class 0 scores high, class 1 low.
        let scores = [9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 0.0, 5.0, 4.0];
        let labels = [0, 1, 0, 1, 0, 1, 0, 1, 0, 1];
        let s = select(&scores, &labels, 2, &cfg(0.4, false, 0)).unwrap();
        assert_eq!(s.keep, [0, 2, 4, 6]);
        assert_eq!((s.total.clone(), s.kept.clone()), (vec![5, 5], vec![4, 0]));
        assert_eq!(s.empty_classes(), [1]);
        let w = s.warnings(&["top".into(), "shirt".into()], &cfg(0.4, false, 0));
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("class 1 (shirt)") && w[0].contains("--min-per-class"),
            "{w:?}"
        );
        // Per class: round(0.4·5) = 2 of each.
        let s = select(&scores, &labels, 2, &cfg(0.4, true, 0)).unwrap();
        assert_eq!(s.keep, [0, 2, 5, 9]);
        // A minimum of 1 per class adds class 1's best.
        let s = select(&scores, &labels, 2, &cfg(0.4, false, 1)).unwrap();
        assert_eq!(s.keep, [0, 2, 4, 6, 9]);
        assert!(s.empty_classes().is_empty());
        // Ties go in pool order; keep 1 keeps all.
        let s = select(&[1.0; 4], &[0; 4], 1, &cfg(0.5, false, 0)).unwrap();
        assert_eq!(s.keep, [0, 1]);
        let s = select(&scores, &labels, 2, &cfg(1.0, true, 0)).unwrap();
        assert_eq!(s.keep.len(), 10);
        // A tiny fraction still keeps one example over the pool.
        let s = select(&scores, &labels, 2, &cfg(1e-6, false, 0)).unwrap();
        assert_eq!(s.keep, [0]);
    }

    #[test]
    fn a_bad_keep_ratio_names_the_flag() {
        for keep in [0.0, -0.1, 1.5, f64::NAN] {
            let e = select(&[1.0], &[0], 1, &cfg(keep, false, 0))
                .unwrap_err()
                .to_string();
            assert!(e.contains("--keep") && e.contains("(0, 1]"), "{e}");
        }
    }
}
