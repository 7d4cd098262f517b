//! Hard examples of a long-tailed training set, the sources of DisCL's spectra (reference
//! §D.1 step 1), by one of two rules:
//! - **out-of-fold confidence**: the set is split into K class-stratified folds; a classifier
//!   ([`crate::eval::classifier::train`]) trained on the other K − 1 folds gives each example
//!   of a fold its probability of the true class, p_oof. Hard: p_oof below a threshold, or the
//!   lowest fraction of each class by p_oof;
//! - **tail**: every example of a few-shot class (< 200 training images,
//!   [`crate::data::long_tail::ShotGroup`]).
//!
//! The result is an ids file like a subset file ([`crate::data::subset`]): int64 example ids
//! `[k]` in the set's order, with a sidecar `FILE.json` holding the set's fingerprint, the
//! seconds it took, the rule and each chosen example's p_oof, so `data.subset` can also read
//! it.

use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::data::fingerprint::fingerprint;
use crate::data::images::{permutation, ImageSet};
use crate::data::long_tail::ShotGroup;
use crate::data::npy;
use crate::data::subset::sidecar;
use crate::error::{Error, Result};
use crate::eval::classifier::{self, ClassifierConfig};
use crate::rng::{Rng, Stream};

/// Random-stream index of the fold split: far above any training-step index.
const FOLD_KEY: u64 = 0x464F_4C44 << 32;

/// Which examples are hard.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule", content = "value")]
pub enum HardRule {
    /// Out-of-fold true-class probability below this threshold, in (0, 1].
    BelowProb(f64),
    /// The lowest ⌈f·n_c⌉ examples of each class c by out-of-fold true-class probability,
    /// f in (0, 1] (ties: the earlier example first).
    LowestFraction(f64),
    /// Every example of a few-shot class.
    Tail,
}

impl HardRule {
    /// True when the rule needs out-of-fold probabilities.
    pub fn needs_probs(&self) -> bool {
        !matches!(self, HardRule::Tail)
    }

    fn check(&self) -> Result<()> {
        let (name, v) = match *self {
            HardRule::BelowProb(t) => ("threshold", t),
            HardRule::LowestFraction(f) => ("fraction", f),
            HardRule::Tail => return Ok(()),
        };
        if !(v.is_finite() && v > 0.0 && v <= 1.0) {
            return Err(Error::InvalidValue {
                field: format!("hard {name}"),
                why: format!("{v} is outside (0, 1]; use e.g. 0.5 (threshold) or 0.1 (fraction)"),
            });
        }
        Ok(())
    }
}

/// The fold of each example of `set`: per class, a permutation keyed by `(seed, class)` deals
/// the class's examples to folds 0, 1, …, K−1, 0, 1, … in turn, so each fold holds ⌊n_c/K⌋
/// or one more of every class.
pub fn folds_of(set: &ImageSet, folds: usize, seed: u64) -> Vec<usize> {
    let mut fold = vec![0; set.len()];
    for (class, members) in set.indices_by_class().iter().enumerate() {
        let mut rng = Rng::new(seed, Stream::Data, FOLD_KEY + class as u64);
        for (j, &k) in permutation(members.len(), &mut rng).iter().enumerate() {
            fold[members[k]] = j % folds.max(1);
        }
    }
    fold
}

/// The out-of-fold probability of each example's true class: K classifiers (config `cfg`, the
/// folds seeded by `cfg.seed`), each trained on all folds but one and evaluated on that one.
/// `progress(fold, folds)` is called after each fold.
pub fn out_of_fold_probs(
    set: &ImageSet,
    folds: usize,
    cfg: &ClassifierConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f64>> {
    if folds < 2 {
        return Err(Error::InvalidValue {
            field: "folds".into(),
            why: format!(
                "{folds} folds leave nothing to train on or to hold out; use K ≥ 2, e.g. 5"
            ),
        });
    }
    let fold = folds_of(set, folds, cfg.seed);
    let mut p = vec![0.0; set.len()];
    for f in 0..folds {
        let held: Vec<usize> = (0..set.len()).filter(|&i| fold[i] == f).collect();
        let rest: Vec<usize> = (0..set.len()).filter(|&i| fold[i] != f).collect();
        if held.is_empty() || rest.is_empty() {
            return Err(Error::InvalidValue {
                field: "folds".into(),
                why: format!(
                    "{folds} folds of {} examples leave fold {f} or its complement empty; use \
                     fewer folds",
                    set.len()
                ),
            });
        }
        let clf = classifier::train(&set.subset(&rest), cfg, &mut |_, _, _| {})?;
        let held_set = set.subset(&held);
        let probs = clf.probabilities(&held_set.pixels, held.len())?; // [h, classes]
        let k = clf.num_classes();
        for (j, &i) in held.iter().enumerate() {
            p[i] = probs[j * k + set.labels[i] as usize] as f64;
        }
        progress(f + 1, folds);
    }
    Ok(p)
}

/// The hard examples of `set` by `rule` (indices into `set`, in its order); `p_true` is the
/// out-of-fold true-class probability of each example, needed by the confidence rules.
pub fn select(rule: HardRule, set: &ImageSet, p_true: Option<&[f64]>) -> Result<Vec<usize>> {
    rule.check()?;
    let probs = || -> Result<&[f64]> {
        match p_true {
            Some(p) if p.len() == set.len() => Ok(p),
            _ => Err(Error::Config(format!(
                "the rule {rule:?} needs one out-of-fold probability per example ({} examples)",
                set.len()
            ))),
        }
    };
    let mut keep = match rule {
        HardRule::BelowProb(t) => {
            let p = probs()?;
            (0..set.len()).filter(|&i| p[i] < t).collect()
        }
        HardRule::LowestFraction(f) => {
            let p = probs()?;
            let mut keep = Vec::new();
            for members in set.indices_by_class() {
                let n = (f * members.len() as f64 - 1e-9).ceil() as usize;
                let mut m = members.clone();
                m.sort_by(|&a, &b| p[a].total_cmp(&p[b]).then(a.cmp(&b)));
                keep.extend(&m[..n.min(m.len())]);
            }
            keep
        }
        HardRule::Tail => {
            let counts = set.class_counts();
            let few: Vec<bool> = counts
                .iter()
                .map(|&n| n > 0 && ShotGroup::of(n) == ShotGroup::Few)
                .collect();
            if !few.iter().any(|&f| f) {
                return Err(Error::Config(format!(
                    "no class has fewer than {} images (class counts {counts:?}), so the tail \
                     rule finds nothing; use a long-tailed set (data.imbalance_ratio, e.g. \
                     100) or a confidence rule",
                    crate::data::long_tail::FEW_BELOW
                )));
            }
            (0..set.len())
                .filter(|&i| few[set.labels[i] as usize])
                .collect()
        }
    };
    keep.sort_unstable();
    Ok(keep)
}

/// The sidecar of a hard-examples ids file (readable as a subset file's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HardMeta {
    /// Fingerprint of the set the ids refer to.
    pub fingerprint: String,
    /// Seconds the choice took (classifier training included).
    pub seconds: f64,
    pub rule: HardRule,
    /// Folds of the out-of-fold classifiers (0 for the tail rule).
    pub folds: usize,
    /// Their config (none for the tail rule).
    pub classifier: Option<ClassifierConfig>,
    /// The out-of-fold true-class probability of each chosen example, in the ids' order
    /// (empty for the tail rule).
    pub p_true: Vec<f64>,
    /// Chosen examples per class.
    pub per_class: Vec<usize>,
}

/// Writes the chosen examples `keep` (indices into `set`) as an int64 ids file at `path`
/// with its sidecar; `meta.fingerprint` and `meta.per_class` are filled in here.
pub fn write(path: &Path, set: &ImageSet, keep: &[usize], mut meta: HardMeta) -> Result<()> {
    let ids: Vec<i64> = keep.iter().map(|&i| set.ids[i] as i64).collect();
    meta.fingerprint = fingerprint(set);
    meta.per_class = vec![0; set.num_classes];
    for &i in keep {
        meta.per_class[set.labels[i] as usize] += 1;
    }
    npy::write_i64(path, &[ids.len()], &ids)?;
    let json = serde_json::to_string_pretty(&meta).map_err(|e| Error::BadFile {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    crate::fsutil::write_atomic(&sidecar(path), json.as_bytes())
}

/// Reads the sidecar of a hard-examples ids file.
pub fn read_meta(path: &Path) -> Result<HardMeta> {
    let side = sidecar(path);
    let text = std::fs::read_to_string(&side).map_err(|e| Error::BadFile {
        path: side.clone(),
        why: format!("cannot read it ({e}); write hard examples with `curadiff hard`"),
    })?;
    serde_json::from_str(&text).map_err(|e| Error::BadFile {
        path: side,
        why: format!("malformed hard-examples sidecar: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::data::images::tests::fixture;
    use crate::data::images::tests::toy_set;

    #[test]
    fn rules_on_a_hand_made_case() {
        // toy_set interleaves classes: labels 0 1 2 0 1 2 0 1 0 1 0 0 (counts 6, 4, 2).
        let set = toy_set(&[6, 4, 2]);
        assert_eq!(set.labels, [0, 1, 2, 0, 1, 2, 0, 1, 0, 1, 0, 0]);
        let p = [0.9, 0.2, 0.6, 0.1, 0.8, 0.3, 0.5, 0.4, 0.7, 0.2, 0.95, 0.05];
        let below = select(HardRule::BelowProb(0.35), &set, Some(&p)).unwrap();
        assert_eq!(below, [1, 3, 5, 9, 11]);
        // ⌈0.3·6⌉ = 2 of class 0 (0.05 at 11, 0.1 at 3), ⌈0.3·4⌉ = 2 of class 1 (0.2 at 1
        // and 0.2 at 9, a tie taken in set order), ⌈0.3·2⌉ = 1 of class 2 (0.3 at 5).
        let low = select(HardRule::LowestFraction(0.3), &set, Some(&p)).unwrap();
        assert_eq!(low, [1, 3, 5, 9, 11]);
        let low = select(HardRule::LowestFraction(0.5), &set, Some(&p)).unwrap();
        assert_eq!(low, [1, 3, 5, 6, 9, 11]);
        // Every class here is few-shot (< 200).
        assert_eq!(select(HardRule::Tail, &set, None).unwrap().len(), 12);
        let lt = toy_set(&[250, 1001, 199, 0]);
        let tail = select(HardRule::Tail, &lt, None).unwrap();
        assert_eq!(tail.len(), 199);
        assert!(tail.iter().all(|&i| lt.labels[i] == 2));
        let e = select(HardRule::Tail, &toy_set(&[300, 200]), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("fewer than 200") && e.contains("imbalance_ratio"),
            "{e}"
        );
        for bad in [HardRule::BelowProb(0.0), HardRule::LowestFraction(1.5)] {
            let e = select(bad, &set, Some(&p)).unwrap_err().to_string();
            assert!(e.contains("outside (0, 1]"), "{e}");
        }
        let e = select(HardRule::BelowProb(0.5), &set, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("out-of-fold"), "{e}");
    }

    #[test]
    fn folds_are_stratified_and_deterministic() {
        let set = toy_set(&[10, 7, 3]);
        let f = folds_of(&set, 3, 4);
        assert_eq!(f, folds_of(&set, 3, 4));
        assert_ne!(f, folds_of(&set, 3, 5));
        for (class, n) in [(0u32, 10usize), (1, 7), (2, 3)] {
            for fold in 0..3 {
                let k = (0..set.len())
                    .filter(|&i| set.labels[i] == class && f[i] == fold)
                    .count();
                assert!(
                    k == n / 3 || k == n / 3 + 1,
                    "class {class} fold {fold}: {k}"
                );
            }
        }
    }

    #[test]
    fn out_of_fold_probs_come_from_classifiers_that_did_not_see_the_example() {
        let set = fixture(60);
        let cfg = ClassifierConfig {
            epochs: 1,
            batch: 16,
            lr: 2e-3,
            seed: 3,
        };
        let p = out_of_fold_probs(&set, 2, &cfg, &mut |_, _| {}).unwrap();
        assert_eq!(p, out_of_fold_probs(&set, 2, &cfg, &mut |_, _| {}).unwrap());
        assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
        // Recomputed by hand for fold 1: train on fold 0, read the true-class probability.
        let fold = folds_of(&set, 2, 3);
        let rest: Vec<usize> = (0..set.len()).filter(|&i| fold[i] == 0).collect();
        let held: Vec<usize> = (0..set.len()).filter(|&i| fold[i] == 1).collect();
        let clf = classifier::train(&set.subset(&rest), &cfg, &mut |_, _, _| {}).unwrap();
        let h = set.subset(&held);
        let probs = clf.probabilities(&h.pixels, h.len()).unwrap();
        for (j, &i) in held.iter().enumerate() {
            let want = probs[j * 10 + set.labels[i] as usize] as f64;
            assert_eq!(p[i], want, "example {i}");
        }
        let e = out_of_fold_probs(&set, 1, &cfg, &mut |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("K ≥ 2"), "{e}");
    }

    #[test]
    fn ids_file_round_trips_and_reads_as_a_subset() {
        let set = toy_set(&[4, 3]);
        let dir = std::env::temp_dir().join(format!("curadiff-hard-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hard.npy");
        let meta = HardMeta {
            fingerprint: String::new(),
            seconds: 1.5,
            rule: HardRule::LowestFraction(0.25),
            folds: 5,
            classifier: Some(ClassifierConfig::default()),
            p_true: vec![0.1, 0.2],
            per_class: Vec::new(),
        };
        write(&path, &set, &[1, 4], meta.clone()).unwrap();
        let back = read_meta(&path).unwrap();
        // toy_set([4, 3]) alternates classes: index 1 is class 1, index 4 class 0.
        assert_eq!(back.per_class, [1, 1]);
        assert_eq!(back.fingerprint, fingerprint(&set));
        assert_eq!(back.rule, meta.rule);
        assert_eq!(back.p_true, meta.p_true);
        let s = crate::data::subset::apply(&set, &path).unwrap();
        assert_eq!(s.set.ids, [set.ids[1], set.ids[4]]);
        assert_eq!(s.seconds, 1.5);
        std::fs::remove_dir_all(dir).ok();
    }
}
