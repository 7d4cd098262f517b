//! DisCL's adaptive rule (reference §D.2, the iWildCam `progress_eval`): after each stage,
//! every held-out hard example's synthetic image at each λ is scored by the classifier; its
//! **progress** is its true-class probability now minus at the previous evaluation. Per λ,
//! the progresses outside Tukey's fences [Q1 − 1.5·IQR, Q3 + 1.5·IQR] are dropped and the rest
//! averaged; the next stage trains on the λ of the largest mean.
//!
//! The held-out set is a fixed part of the spectrum's source examples ([`held_out_sources`]):
//! the synthetic images made from them are scored, never trained on. Their real source
//! images stay in the real training set, which every arm shares.
//!
//! Quartiles interpolate linearly between order statistics at position (n − 1)·q (R's type 7,
//! numpy's default).

use std::collections::BTreeSet;

use crate::rng::{Rng, Stream};

/// Random-stream index of the held-out split: far above any training-step index.
const HELD_OUT_KEY: u64 = 0x484F_4C44 << 32;

/// The q-quantile of ascending `sorted` values (non-empty), by linear interpolation at
/// position (n − 1)·q.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = (sorted.len() - 1) as f64 * q;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// The mean of the finite `values` inside Tukey's fences [Q1 − 1.5·IQR, Q3 + 1.5·IQR], and
/// how many were dropped; None without finite values.
pub fn iqr_mean(values: &[f64]) -> Option<(f64, usize)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let (q1, q3) = (quantile(&v, 0.25), quantile(&v, 0.75));
    let (lo, hi) = (q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1));
    let kept: Vec<f64> = v.iter().copied().filter(|&x| x >= lo && x <= hi).collect();
    let mean = kept.iter().sum::<f64>() / kept.len() as f64;
    Some((mean, values.len() - kept.len()))
}

/// The index of the λ whose progresses (`gains[i]` for λ i) have the largest IQR-trimmed
/// mean (the first on ties); None when no λ has a progress.
pub fn next_lambda(gains: &[Vec<f64>]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, g) in gains.iter().enumerate() {
        if let Some((m, _)) = iqr_mean(g) {
            if best.is_none_or(|(_, b)| m > b) {
                best = Some((i, m));
            }
        }
    }
    best.map(|(i, _)| i)
}

/// The held-out part of `sources` (distinct source ids): each id is held out with
/// probability `fraction`, by a permutation from `(seed, Stream::Curate, key)` of the sorted
/// ids whose first ⌈fraction·n⌉ are held out.
pub fn held_out_sources(sources: &BTreeSet<u64>, fraction: f64, seed: u64) -> BTreeSet<u64> {
    let mut ids: Vec<u64> = sources.iter().copied().collect();
    let mut rng = Rng::new(seed, Stream::Curate, HELD_OUT_KEY);
    for i in (1..ids.len()).rev() {
        ids.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let k = ((fraction.clamp(0.0, 1.0) * ids.len() as f64).ceil() as usize).min(ids.len());
    ids[..k].iter().copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_drops_the_outlier_and_picks_the_right_lambda() {
        // λ 0: sorted 0.10 0.11 0.12 0.13 0.90. Q1 = value at position 4·0.25 = 1 → 0.11,
        // Q3 = position 3 → 0.13, IQR = 0.02, fences [0.08, 0.16]: 0.90 is dropped and the
        // mean is (0.10 + 0.11 + 0.12 + 0.13)/4 = 0.115 (0.272 with the outlier).
        let a = vec![0.12, 0.90, 0.10, 0.13, 0.11];
        let (m, dropped) = iqr_mean(&a).unwrap();
        assert!((m - 0.115).abs() < 1e-12 && dropped == 1, "{m} {dropped}");
        // λ 1: four gains of 0.2, no outlier (IQR 0: the fences are [0.2, 0.2]).
        let b = vec![0.2; 4];
        assert_eq!(iqr_mean(&b), Some((0.2, 0)));
        // λ 2: a loss.
        let c = vec![-0.05, -0.01];
        assert_eq!(next_lambda(&[a.clone(), b.clone(), c.clone()]), Some(1));
        // Without the outlier drop λ 0 would win (0.272 > 0.2): its mean of all five.
        let raw = a.iter().sum::<f64>() / 5.0;
        assert!((raw - 0.272).abs() < 1e-12);
        // A λ without held-out images has no say; none at all gives None.
        assert_eq!(next_lambda(&[vec![], c.clone()]), Some(1));
        assert_eq!(next_lambda(&[vec![], vec![f64::NAN]]), None);
        // Quartiles between order statistics: [1, 2, 3, 4] → Q1 at 0.75 → 1.75.
        assert!((quantile(&[1.0, 2.0, 3.0, 4.0], 0.25) - 1.75).abs() < 1e-12);
    }

    #[test]
    fn the_held_out_split_is_fixed_by_its_seed() {
        let ids: BTreeSet<u64> = (0..50).map(|i| 3 * i + 1).collect();
        let h = held_out_sources(&ids, 0.2, 7);
        assert_eq!(h.len(), 10);
        assert!(h.is_subset(&ids));
        assert_eq!(h, held_out_sources(&ids, 0.2, 7));
        assert_ne!(h, held_out_sources(&ids, 0.2, 8));
        assert!(held_out_sources(&ids, 0.0, 7).is_empty());
    }
}
