//! Class-balanced resampling, a baseline of DisCL's curricula: a list of draws from a
//! long-tailed set in which every class is equally likely (a class uniformly among those with
//! examples, then one of its examples uniformly), so a rare class's few images repeat often.

use crate::data::images::ImageSet;
use crate::rng::{Rng, Stream};

/// Random-stream index of the resampler: far above any training-step index.
const BALANCED_KEY: u64 = 0x4241_4C41 << 32;

/// `n` indices into `set`, drawn with replacement from `(seed, Stream::Curate, key)`: a class
/// uniformly among the classes with examples, then one of its examples uniformly. Empty for
/// an empty set.
pub fn class_balanced(set: &ImageSet, n: usize, seed: u64) -> Vec<usize> {
    let classes: Vec<Vec<usize>> = set
        .indices_by_class()
        .into_iter()
        .filter(|m| !m.is_empty())
        .collect();
    if classes.is_empty() {
        return Vec::new();
    }
    let mut rng = Rng::new(seed, Stream::Curate, BALANCED_KEY);
    (0..n)
        .map(|_| {
            let c = &classes[rng.below(classes.len() as u64) as usize];
            c[rng.below(c.len() as u64) as usize]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::images::tests::toy_set;

    #[test]
    fn classes_are_drawn_uniformly() {
        // 90, 9 and 1 examples: a long tail with ratio 90.
        let set = toy_set(&[90, 9, 1]);
        let n = 30_000;
        let draws = class_balanced(&set, n, 4);
        assert_eq!(draws.len(), n);
        let mut per_class = [0usize; 3];
        let mut per_example = vec![0usize; set.len()];
        for &i in &draws {
            per_class[set.labels[i] as usize] += 1;
            per_example[i] += 1;
        }
        // Each class has probability 1/3: a count is Binomial(30000, 1/3), standard deviation
        // √(30000·(1/3)·(2/3)) ≈ 81.6; 5σ ≈ 408 bounds it.
        for c in per_class {
            assert!((c as f64 - n as f64 / 3.0).abs() < 408.0, "{per_class:?}");
        }
        // Within class 1 (9 examples) each example is drawn about 10000/9 ≈ 1111 times
        // (σ ≈ 31.4; 5σ ≈ 157); the single class-2 example takes all of its class's draws.
        let by_class = set.indices_by_class();
        for &i in &by_class[1] {
            let expect = per_class[1] as f64 / 9.0;
            assert!((per_example[i] as f64 - expect).abs() < 157.0);
        }
        assert_eq!(per_example[by_class[2][0]], per_class[2]);
        // Deterministic per seed, and another seed draws otherwise.
        assert_eq!(draws, class_balanced(&set, n, 4));
        assert_ne!(draws, class_balanced(&set, n, 5));
        assert!(class_balanced(&toy_set(&[]), 5, 4).is_empty());
    }
}
