//! The `Selector` seam and the simple arms: full batch, uniform sub-batch, RHO-loss.

use crate::rng::Rng;

/// Per-example losses of a super-batch of B examples.
#[derive(Debug, Clone, Copy)]
pub struct Scores<'a> {
    /// Learner loss ℓ_i.
    pub learner: &'a [f32],
    /// Reference loss r_i (when the selector asked for it).
    pub reference: Option<&'a [f32]>,
}

/// The chosen mini-batch: indices into the super-batch and a weight per chosen example (the
/// training loss is the weighted mean over the chosen examples).
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub indices: Vec<usize>,
    pub weights: Vec<f32>,
}

impl Selection {
    /// Every example, weight 1.
    pub fn all(b: usize) -> Self {
        Self {
            indices: (0..b).collect(),
            weights: vec![1.0; b],
        }
    }
}

/// Chooses a mini-batch from a scored super-batch.
pub trait Selector {
    /// Whether `select` needs reference losses (an extra forward pass of the reference).
    fn needs_reference(&self) -> bool;
    /// Whether `select` needs learner losses of the whole super-batch (a forward pass).
    fn needs_learner(&self) -> bool {
        true
    }
    /// The mini-batch for this super-batch.
    fn select(&mut self, scores: &Scores, rng: &mut Rng) -> Selection;
}

/// b = ⌊B·(1 − f)⌋, at least 1. The floor allows 1e-9 of rounding, so that 10·(1 − 0.8),
/// which is 1.9999999999999996 in floating point, gives 2.
pub fn mini_batch(b_super: usize, filter_ratio: f64) -> usize {
    floor_tolerant(b_super as f64 * (1.0 - filter_ratio)).clamp(1, b_super.max(1))
}

/// ⌊x⌋ for a product that should be whole but may be a rounding error below it.
pub fn floor_tolerant(x: f64) -> usize {
    (x + 1e-9).floor().max(0.0) as usize
}

/// No selection: train on the whole super-batch.
#[derive(Debug, Clone, Default)]
pub struct Full;

impl Selector for Full {
    fn needs_reference(&self) -> bool {
        false
    }
    fn needs_learner(&self) -> bool {
        false
    }
    fn select(&mut self, scores: &Scores, _: &mut Rng) -> Selection {
        Selection::all(scores.learner.len())
    }
}

/// A uniformly random sub-batch of b = ⌊B(1 − f)⌋ without replacement.
#[derive(Debug, Clone)]
pub struct Uniform {
    pub filter_ratio: f64,
}

/// `k` distinct indices of `0..n`, uniformly (partial Fisher–Yates).
pub fn sample_without_replacement(n: usize, k: usize, rng: &mut Rng) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    let k = k.min(n);
    for i in 0..k {
        let j = i + rng.below((n - i) as u64) as usize;
        idx.swap(i, j);
    }
    idx.truncate(k);
    idx
}

impl Selector for Uniform {
    fn needs_reference(&self) -> bool {
        false
    }
    fn needs_learner(&self) -> bool {
        false
    }
    fn select(&mut self, scores: &Scores, rng: &mut Rng) -> Selection {
        let n = scores.learner.len();
        let b = mini_batch(n, self.filter_ratio);
        let indices = sample_without_replacement(n, b, rng);
        Selection {
            weights: vec![1.0; indices.len()],
            indices,
        }
    }
}

/// RHO-loss (Mindermann et al. 2022): the top-b examples by reducible loss ℓ_i − r_i.
#[derive(Debug, Clone)]
pub struct Rho {
    pub filter_ratio: f64,
}

impl Selector for Rho {
    fn needs_reference(&self) -> bool {
        true
    }
    fn select(&mut self, scores: &Scores, _: &mut Rng) -> Selection {
        let n = scores.learner.len();
        let b = mini_batch(n, self.filter_ratio);
        let reducible = learnability(scores);
        let mut idx: Vec<usize> = (0..n).collect();
        // Largest first; ties broken by index so the choice is deterministic.
        idx.sort_by(|&i, &j| reducible[j].total_cmp(&reducible[i]).then(i.cmp(&j)));
        idx.truncate(b);
        Selection {
            weights: vec![1.0; b],
            indices: idx,
        }
    }
}

/// Per-example learnability ℓ_i − r_i (ℓ_i alone without reference losses).
pub fn learnability(scores: &Scores) -> Vec<f64> {
    match scores.reference {
        Some(r) => scores
            .learner
            .iter()
            .zip(r)
            .map(|(&l, &r)| l as f64 - r as f64)
            .collect(),
        None => scores.learner.iter().map(|&l| l as f64).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    #[test]
    fn rho_picks_exactly_the_top_b() {
        let l = [0.5f32, 0.9, 0.1, 0.7, 0.3, 0.8, 0.2, 0.6, 0.4, 1.0];
        let r = [0.0f32, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.95];
        // ℓ − r = 0.5, 0.4, 0.1, 0.7, 0.3, 0.8, 0.2, 0.6, 0.4, 0.05; f = 0.7 → b = 3.
        let s = Rho { filter_ratio: 0.7 }.select(
            &Scores {
                learner: &l,
                reference: Some(&r),
            },
            &mut Rng::new(0, Stream::Select, 0),
        );
        assert_eq!(s.indices, vec![5, 3, 7]);
    }

    #[test]
    fn uniform_draws_distinct_indices_evenly() {
        let l = vec![0.0f32; 10];
        let mut counts = [0usize; 10];
        let mut sel = Uniform { filter_ratio: 0.8 };
        for i in 0..20_000 {
            let s = sel.select(
                &Scores {
                    learner: &l,
                    reference: None,
                },
                &mut Rng::new(1, Stream::Select, i),
            );
            assert_eq!(s.indices.len(), 2);
            assert_ne!(s.indices[0], s.indices[1]);
            for &k in &s.indices {
                counts[k] += 1;
            }
        }
        // Each index is chosen with probability 0.2: 4000 ± 57 per index.
        assert!(
            counts.iter().all(|&c| (c as i64 - 4000).abs() < 300),
            "{counts:?}"
        );
    }

    #[test]
    fn mini_batch_sizes() {
        assert_eq!(mini_batch(4096, 0.8), 819);
        assert_eq!(mini_batch(10, 0.8), 2);
        assert_eq!(mini_batch(10, 0.99), 1);
        assert_eq!(mini_batch(128, 0.0), 128);
    }
}
