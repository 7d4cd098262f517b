//! The long-tailed cut of a labelled image set (`data.imbalance_ratio`, `data.class_order`,
//! `data.subset_seed`) and the many / medium / few-shot groups its classes fall into.
//!
//! The profile is exponential (Cao et al. 2019, "LDAM", the CIFAR-LT construction): with
//! imbalance ratio ρ and C classes, the class of rank r keeps ⌊n_max · ρ^(−r/(C−1))⌋
//! examples. On Fashion-MNIST (n_max = 6,000) with ρ = 100 the ranks keep
//! 6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60 images.
//!
//! Two orders of the Fashion-MNIST classes (head first):
//! - the label order (empty `data.class_order`): T-shirt/top, Trouser, Pullover, Dress, Coat |
//!   Sandal, Shirt, Sneaker, Bag, Ankle boot, so the tail is Sneaker, Bag and Ankle boot,
//!   classes that are easy to tell apart;
//! - [`FMNIST_HARD_TAIL`]: Trouser, Bag, Sandal, Ankle boot, Sneaker, Dress, T-shirt/top,
//!   Coat, Pullover, Shirt, which puts the classes a classifier confuses most (Shirt,
//!   Pullover, Coat, T-shirt/top) last.
//!
//! Shot groups by training images per class ([`ShotGroup`]): many-shot > 1000, medium-shot
//! 200–1000, few-shot < 200. With ρ = 100 on Fashion-MNIST: ranks 0–3 many, 4–6 medium,
//! 7–9 few.

use super::images::ImageSet;
use crate::error::{Error, Result};
use crate::rng::{Rng, Stream};
use serde::{Deserialize, Serialize};

/// Random-stream index of the long-tail chooser: far above any training-step index, so that
/// choosing a subset never reuses the draws of a training step with the same seed.
const LONG_TAIL_KEY: u64 = 0x4C4F_4E47 << 32;

/// The Fashion-MNIST classes head first with the hard classes in the tail: Trouser, Bag,
/// Sandal, Ankle boot, Sneaker, Dress, T-shirt/top, Coat, Pullover, Shirt.
pub const FMNIST_HARD_TAIL: [usize; 10] = [1, 8, 5, 9, 7, 3, 0, 4, 2, 6];

/// A class with more training images than this is many-shot.
pub const MANY_ABOVE: usize = 1000;
/// A class with fewer training images than this is few-shot; between the two, medium-shot.
pub const FEW_BELOW: usize = 200;

/// The group of a class by its number of training images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShotGroup {
    /// More than [`MANY_ABOVE`] training images.
    Many,
    /// [`FEW_BELOW`] to [`MANY_ABOVE`] training images.
    Medium,
    /// Fewer than [`FEW_BELOW`] training images.
    Few,
}

impl ShotGroup {
    /// All groups, many first.
    pub const ALL: [ShotGroup; 3] = [ShotGroup::Many, ShotGroup::Medium, ShotGroup::Few];

    /// The group of a class with `train_images` training images.
    pub fn of(train_images: usize) -> Self {
        if train_images > MANY_ABOVE {
            ShotGroup::Many
        } else if train_images >= FEW_BELOW {
            ShotGroup::Medium
        } else {
            ShotGroup::Few
        }
    }

    /// "many", "medium" or "few".
    pub fn name(self) -> &'static str {
        match self {
            ShotGroup::Many => "many",
            ShotGroup::Medium => "medium",
            ShotGroup::Few => "few",
        }
    }
}

/// The mean of a per-class metric over the classes of each group (on a balanced test set,
/// the mean of per-class accuracies is the group's accuracy), given each class's training
/// count. A group without classes gets `None`. Returns many, medium, few in that order.
pub fn group_means(per_class: &[f64], train_counts: &[usize]) -> Vec<(ShotGroup, Option<f64>)> {
    ShotGroup::ALL
        .iter()
        .map(|&g| {
            let v: Vec<f64> = per_class
                .iter()
                .zip(train_counts)
                .filter(|&(_, &n)| ShotGroup::of(n) == g)
                .map(|(&a, _)| a)
                .collect();
            let mean = (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
            (g, mean)
        })
        .collect()
}

/// Checks that `order` is empty (the label order) or a permutation of `0..num_classes`.
pub fn check_order(order: &[usize], num_classes: usize) -> Result<()> {
    if order.is_empty() {
        return Ok(());
    }
    let bad = |why: String| Error::InvalidValue {
        field: "data.class_order".into(),
        why,
    };
    if order.len() != num_classes {
        return Err(bad(format!(
            "lists {} classes, the data has {num_classes}; list every class index once, head \
             first (e.g. {FMNIST_HARD_TAIL:?} for Fashion-MNIST), or leave it empty for the \
             label order",
            order.len()
        )));
    }
    let mut seen = vec![false; num_classes];
    for &c in order {
        if c >= num_classes || seen[c] {
            return Err(bad(format!(
                "{order:?} is not a permutation of 0..{num_classes}: class {c} is {}; list \
                 every class index once, head first",
                if c >= num_classes {
                    "out of range"
                } else {
                    "listed twice"
                }
            )));
        }
        seen[c] = true;
    }
    Ok(())
}

/// Per-class counts of the exponential long-tail profile
/// `n_c = ⌊n_max · ρ^(−c/(C−1))⌋`, c = 0..C: class 0 is the head with `n_max` examples and
/// class C−1 the tail with `n_max/ρ` (Cao et al. 2019, "LDAM", the CIFAR-LT construction).
pub fn long_tail_counts(n_max: usize, num_classes: usize, imbalance_ratio: f64) -> Vec<usize> {
    if num_classes <= 1 {
        return vec![n_max; num_classes];
    }
    let last = (num_classes - 1) as f64;
    (0..num_classes)
        .map(|c| {
            let x = n_max as f64 * imbalance_ratio.powf(-(c as f64) / last);
            // The nudge keeps exact integers (n_max/ρ = 600.0) from flooring to one less
            // through rounding error.
            (x + 1e-9).floor() as usize
        })
        .collect()
}

/// An exponentially long-tailed subset of `set` with imbalance ratio ρ = `imbalance_ratio`
/// (head/tail count): the class of rank `r` in `order` keeps `⌊n_max · ρ^(−r/(C−1))⌋`
/// examples (see [`long_tail_counts`]), `order[0]` being the head and `order[C−1]` the tail.
/// An empty `order` is the label order 0, 1, …, C−1; otherwise it must be a permutation of
/// the class indices (see [`check_order`]). `n_max` is the smallest class count of `set`, so
/// every class can supply its share (for balanced sets it is the per-class count). Which
/// examples a class keeps is a prefix of a permutation keyed by `(seed, class)` (the class
/// label, not its rank), so for one seed a more imbalanced subset is contained in a less
/// imbalanced one, and a class keeps the same first examples whatever its rank. Order and
/// ids are kept.
pub fn long_tailed(
    set: &ImageSet,
    imbalance_ratio: f64,
    seed: u64,
    order: &[usize],
) -> Result<ImageSet> {
    if !(imbalance_ratio.is_finite() && imbalance_ratio >= 1.0) {
        return Err(Error::InvalidValue {
            field: "imbalance_ratio".into(),
            why: format!(
                "{imbalance_ratio} is not a finite number ≥ 1; ρ is the head/tail count \
                 ratio, e.g. 100"
            ),
        });
    }
    let by_class = set.indices_by_class();
    let n_max = by_class.iter().map(Vec::len).min().unwrap_or(0);
    if let Some(c) = by_class.iter().position(Vec::is_empty) {
        return Err(Error::InvalidValue {
            field: "imbalance_ratio".into(),
            why: format!(
                "class {c} ({}) has no examples, so no long-tailed subset over all {} \
                 classes exists; use a set with every class present",
                set.class_names.get(c).map_or("?", String::as_str),
                set.num_classes
            ),
        });
    }
    check_order(order, set.num_classes)?;
    let by_rank = long_tail_counts(n_max, set.num_classes, imbalance_ratio);
    let mut counts = by_rank.clone();
    for (rank, &class) in order.iter().enumerate() {
        counts[class] = by_rank[rank];
    }
    if by_rank.last() == Some(&0) {
        return Err(Error::InvalidValue {
            field: "imbalance_ratio".into(),
            why: format!(
                "ρ = {imbalance_ratio} leaves the tail class empty with n_max = {n_max} \
                 examples per class; use ρ ≤ {n_max}"
            ),
        });
    }
    let mut keep = Vec::with_capacity(counts.iter().sum());
    for (class, (members, &n_c)) in by_class.iter().zip(&counts).enumerate() {
        let mut rng = Rng::new(seed, Stream::Data, LONG_TAIL_KEY + class as u64);
        let perm = super::images::permutation(members.len(), &mut rng);
        keep.extend(perm[..n_c].iter().map(|&k| members[k]));
    }
    keep.sort_unstable();
    Ok(set.subset(&keep))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::images::tests::toy_set;
    use std::collections::HashSet;

    #[test]
    fn long_tail_counts_match_hand_computation() {
        // floor(n_max · 100^(-c/9)), computed with 50-digit decimals:
        // from decimal import *; getcontext().prec = 50
        // [int((Decimal(n)*Decimal(r)**(Decimal(-c)/9)).to_integral_value(ROUND_FLOOR))
        //  for c in range(10)]
        assert_eq!(
            long_tail_counts(1000, 10, 100.0),
            [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]
        );
        assert_eq!(
            long_tail_counts(6000, 10, 100.0),
            [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]
        );
        assert_eq!(
            long_tail_counts(6000, 10, 10.0),
            [6000, 4645, 3596, 2784, 2156, 1669, 1292, 1000, 774, 600]
        );
        // ρ = 32 over 6 classes halves each step, 1000 · 2^(−c). In floating point
        // 1000 · 32^(−2/5) is 249.99999999999997; the nudge keeps it at 250.
        assert_eq!(
            long_tail_counts(1000, 6, 32.0),
            [1000, 500, 250, 125, 62, 31]
        );
        assert_eq!(long_tail_counts(7, 1, 100.0), [7]);
        assert_eq!(long_tail_counts(50, 3, 1.0), [50, 50, 50]);
    }

    #[test]
    fn long_tailed_subset_counts_determinism_and_nesting() {
        let set = toy_set(&[1000, 1003, 1000, 1200, 1000, 1000, 1000, 1000, 1000, 1001]);
        let lt = long_tailed(&set, 100.0, 5, &[]).unwrap();
        assert_eq!(
            lt.class_counts(),
            [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]
        );
        assert_eq!(lt, long_tailed(&set, 100.0, 5, &[]).unwrap());
        assert_ne!(lt.ids, long_tailed(&set, 100.0, 6, &[]).unwrap().ids);
        // Ids are kept and in set order.
        assert!(lt.ids.windows(2).all(|w| w[0] < w[1]));
        assert!(lt.ids.iter().all(|id| (id - 7) % 3 == 0));
        // The same seed nests: ρ = 100 ⊂ ρ = 10.
        let wider: HashSet<u64> = long_tailed(&set, 10.0, 5, &[])
            .unwrap()
            .ids
            .into_iter()
            .collect();
        assert!(lt.ids.iter().all(|id| wider.contains(id)));
        // Invalid ratios and an empty tail are errors.
        for rho in [0.5, f64::NAN, f64::INFINITY] {
            let e = long_tailed(&set, rho, 5, &[]).unwrap_err().to_string();
            assert!(e.contains("imbalance_ratio"), "{e}");
        }
        let e = long_tailed(&set, 2000.0, 5, &[]).unwrap_err().to_string();
        assert!(
            e.contains("tail class empty") && e.contains("ρ ≤ 1000"),
            "{e}"
        );
        let e = long_tailed(&toy_set(&[5, 0, 5]), 2.0, 5, &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("class 1 (c1) has no examples"), "{e}");
    }

    #[test]
    fn a_class_order_moves_the_counts_and_keeps_each_class_s_examples() {
        let set = toy_set(&[1000; 10]);
        let hard = long_tailed(&set, 100.0, 5, &FMNIST_HARD_TAIL).unwrap();
        // Rank r of [1, 8, 5, 9, 7, 3, 0, 4, 2, 6] keeps the r-th count of
        // [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10].
        assert_eq!(
            hard.class_counts(),
            [46, 1000, 16, 77, 27, 359, 10, 129, 599, 215]
        );
        // A class keeps the same first examples at any rank: Trouser's 599 (rank 1 in the
        // label order) are among its 1000 here, and the identity order is the empty one.
        let label = long_tailed(&set, 100.0, 5, &[]).unwrap();
        let ident: Vec<usize> = (0..10).collect();
        assert_eq!(label, long_tailed(&set, 100.0, 5, &ident).unwrap());
        let kept: HashSet<u64> = hard.ids.iter().copied().collect();
        let trouser = (0..label.len()).filter(|&i| label.labels[i] == 1);
        assert!(trouser.into_iter().all(|i| kept.contains(&label.ids[i])));
        for bad in [
            vec![0, 1, 2],
            vec![0; 10],
            vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        ] {
            let e = long_tailed(&set, 100.0, 5, &bad).unwrap_err().to_string();
            assert!(e.contains("data.class_order"), "{e}");
        }
    }

    #[test]
    fn shot_groups_by_hand() {
        assert_eq!(ShotGroup::of(1001), ShotGroup::Many);
        assert_eq!(ShotGroup::of(1000), ShotGroup::Medium);
        assert_eq!(ShotGroup::of(200), ShotGroup::Medium);
        assert_eq!(ShotGroup::of(199), ShotGroup::Few);
        // The ρ = 100 Fashion-MNIST profile: 4 many, 3 medium, 3 few.
        let counts = long_tail_counts(6000, 10, 100.0);
        let groups: Vec<ShotGroup> = counts.iter().map(|&n| ShotGroup::of(n)).collect();
        use ShotGroup::*;
        assert_eq!(
            groups,
            [Many, Many, Many, Many, Medium, Medium, Medium, Few, Few, Few]
        );
        let acc = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0];
        let m = group_means(&acc, &counts);
        assert_eq!(m[0].0, Many);
        assert!((m[0].1.unwrap() - 0.75).abs() < 1e-12);
        assert!((m[1].1.unwrap() - 0.4).abs() < 1e-12);
        assert!((m[2].1.unwrap() - 0.1).abs() < 1e-12);
        assert_eq!(group_means(&[0.5], &[5000])[2], (Few, None));
    }
}
