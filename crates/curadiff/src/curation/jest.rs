//! JEST joint batch selection (Evans et al. 2024) as the AJEST code implements it
//! (`jointly_sample_batch`): the mini-batch is drawn in N chunks of c = ⌊B(1 − f)/N⌋; the
//! first chunk uniformly, each later chunk without replacement from the softmax of the
//! conditional learnability over the already-selected set A,
//!
//!   logit_i = (S_ii + Σ_{k∈A} S_ki + Σ_{k∈A} S_ik) / (2|A| + 1),  S_ij = ℓ_i − r_j,
//!
//! with selected items masked out and the maximum subtracted before the softmax.
//!
//! Because the diffusion loss is per example, S has no real pairwise terms and
//! logit_i = (1 + |A|)(ℓ_i − r_i)/(2|A| + 1) + const(A): the `Linear` form computes that in
//! O(B) per chunk, the `Pairwise` form the general O(B²) sums. Each chunk's c draws without
//! replacement are successive softmax draws over the candidates left, made by rejection
//! (a uniform candidate, accepted with probability exp(logit − max)); a draw that finds no
//! acceptance in [`REJECTION_TRIALS`] trials hands the chunk's remaining draws to Gumbel-top-k,
//! which has the same distribution. Both are exact; rejection needs one `exp` per trial where
//! Gumbel-top-k needs two logarithms per candidate, which made selection cost a quarter of
//! scoring on the toy (B = 4096, N = 16).

use super::selector::{
    floor_tolerant, learnability, sample_without_replacement, Scores, Selection, Selector,
};
use crate::rng::Rng;

/// How the conditional learnability is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JestForm {
    /// O(B) per chunk, exact when losses are per example.
    Linear,
    /// O(B²) per chunk, the general pairwise form.
    Pairwise,
}

/// JEST selection; with the autoguidance guide as reference model this is AJEST.
#[derive(Debug, Clone)]
pub struct Jest {
    /// f: the fraction of the super-batch filtered out.
    pub filter_ratio: f64,
    /// N: number of chunks.
    pub chunks: usize,
    pub form: JestForm,
}

impl Jest {
    /// Chunk size c = ⌊B(1 − f)/N⌋ (at least 1).
    pub fn chunk_size(&self, b_super: usize) -> usize {
        floor_tolerant(b_super as f64 * (1.0 - self.filter_ratio) / self.chunks.max(1) as f64)
            .max(1)
    }

    /// The logits of every example given the selected set (`chosen[i]`), before masking.
    /// `learn` is [`learnability`] of `scores`, computed once per selection.
    fn logits(&self, scores: &Scores, learn: &[f64], chosen: &[bool], n_chosen: usize) -> Vec<f64> {
        let scale = 1.0 / (2.0 * n_chosen as f64 + 1.0);
        match self.form {
            JestForm::Linear => {
                let (mut sum_l, mut sum_r) = (0.0, 0.0);
                for (i, &c) in chosen.iter().enumerate() {
                    if c {
                        sum_l += scores.learner[i] as f64;
                        sum_r += scores.reference.map_or(0.0, |r| r[i] as f64);
                    }
                }
                let k = 1.0 + n_chosen as f64;
                learn
                    .iter()
                    .map(|&v| (k * v + sum_l - sum_r) * scale)
                    .collect()
            }
            JestForm::Pairwise => {
                let n = scores.learner.len();
                let l = |i: usize| scores.learner[i] as f64;
                let r = |j: usize| scores.reference.map_or(0.0, |r| r[j] as f64);
                let s = |i: usize, j: usize| l(i) - r(j);
                let picked: Vec<usize> = (0..n).filter(|&k| chosen[k]).collect();
                (0..n)
                    .map(|i| {
                        let mut v = s(i, i);
                        for &k in &picked {
                            v += s(k, i) + s(i, k);
                        }
                        v * scale
                    })
                    .collect()
            }
        }
    }
}

/// Rejection trials per draw before the chunk's remaining draws go to Gumbel-top-k.
pub const REJECTION_TRIALS: usize = 64;

/// `k` indices drawn without replacement with probabilities ∝ exp(logit) among the unmasked,
/// one after the other (each from the softmax over the candidates still left).
///
/// A draw picks a candidate uniformly and accepts it with probability exp(logit − max), the
/// maximum taken over the candidates at the start (a bound for every later draw), so an
/// accepted index has exactly the softmax law over those left. After [`REJECTION_TRIALS`]
/// rejected trials the draws still to make come from [`gumbel_top_k`] over the candidates
/// left: an accepted draw's law does not depend on the trial that accepted it, so mixing the
/// two by the number of trials keeps the law exact. Masked entries, and logits that are
/// −∞ or NaN, are never accepted by rejection.
pub fn softmax_without_replacement(
    logits: &[f64],
    masked: &[bool],
    k: usize,
    rng: &mut Rng,
) -> Vec<usize> {
    let mut left: Vec<usize> = (0..logits.len()).filter(|&i| !masked[i]).collect();
    let k = k.min(left.len());
    let max = left
        .iter()
        .map(|&i| logits[i])
        .fold(f64::NEG_INFINITY, f64::max);
    let mut out = Vec::with_capacity(k);
    'draws: while out.len() < k {
        for _ in 0..REJECTION_TRIALS {
            let p = rng.below(left.len() as u64) as usize;
            let i = left[p];
            if rng.uniform() < (logits[i] - max).exp() {
                left.swap_remove(p);
                out.push(i);
                continue 'draws;
            }
        }
        let mut gone = vec![true; logits.len()];
        for &i in &left {
            gone[i] = false;
        }
        let rest = k - out.len();
        out.extend(gumbel_top_k(logits, &gone, rest, rng));
        break;
    }
    out
}

/// `k` indices drawn without replacement with probabilities ∝ exp(logit) among the unmasked
/// (Gumbel-top-k, ordered by key). The maximum logit is subtracted first; masked entries
/// never win.
pub fn gumbel_top_k(logits: &[f64], masked: &[bool], k: usize, rng: &mut Rng) -> Vec<usize> {
    let max = logits
        .iter()
        .zip(masked)
        .filter(|(_, &m)| !m)
        .map(|(&l, _)| l)
        .fold(f64::NEG_INFINITY, f64::max);
    let mut keys: Vec<(f64, usize)> = logits
        .iter()
        .zip(masked)
        .enumerate()
        .filter(|(_, (_, &m))| !m)
        .map(|(i, (&l, _))| {
            let u = rng.uniform().max(f64::MIN_POSITIVE);
            ((l - max) - (-u.ln()).ln(), i)
        })
        .collect();
    let k = k.min(keys.len());
    if k == 0 {
        return Vec::new();
    }
    keys.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
    let mut top: Vec<(f64, usize)> = keys[..k].to_vec();
    top.sort_by(|a, b| b.0.total_cmp(&a.0));
    top.into_iter().map(|(_, i)| i).collect()
}

impl Selector for Jest {
    fn needs_reference(&self) -> bool {
        true
    }

    fn select(&mut self, scores: &Scores, rng: &mut Rng) -> Selection {
        let n = scores.learner.len();
        let c = self.chunk_size(n).min(n);
        let mut chosen = vec![false; n];
        let learn = learnability(scores);
        let mut indices = sample_without_replacement(n, c, rng);
        for &i in &indices {
            chosen[i] = true;
        }
        for _ in 1..self.chunks {
            if indices.len() + c > n {
                break;
            }
            let logits = self.logits(scores, &learn, &chosen, indices.len());
            let next = softmax_without_replacement(&logits, &chosen, c, rng);
            for &i in &next {
                chosen[i] = true;
            }
            indices.extend(next);
        }
        Selection {
            weights: vec![1.0; indices.len()],
            indices,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    fn scores_from(l: &[f32], r: &[f32]) -> (Vec<f32>, Vec<f32>) {
        (l.to_vec(), r.to_vec())
    }

    #[test]
    fn never_picks_an_index_twice_and_has_size_n_times_c() {
        let (l, r) = scores_from(
            &(0..64).map(|i| (i as f32 * 0.37).sin()).collect::<Vec<_>>(),
            &(0..64)
                .map(|i| (i as f32 * 0.11).cos() * 0.5)
                .collect::<Vec<_>>(),
        );
        for form in [JestForm::Linear, JestForm::Pairwise] {
            let mut j = Jest {
                filter_ratio: 0.8,
                chunks: 4,
                form,
            };
            for t in 0..50 {
                let s = j.select(
                    &Scores {
                        learner: &l,
                        reference: Some(&r),
                    },
                    &mut Rng::new(3, Stream::Select, t),
                );
                // c = ⌊64·0.2/4⌋ = 3, b = 12.
                assert_eq!(s.indices.len(), 12);
                let mut sorted = s.indices.clone();
                sorted.sort_unstable();
                sorted.dedup();
                assert_eq!(sorted.len(), 12, "{:?}", s.indices);
            }
        }
    }

    #[test]
    fn linear_and_pairwise_forms_agree() {
        // Logits differ only by a constant per chunk, so with the same random stream both
        // forms make the same choices; and with independent streams their inclusion
        // frequencies agree within sampling error.
        let l: Vec<f32> = (0..24).map(|i| ((i * 7 % 24) as f32) * 0.1).collect();
        let r: Vec<f32> = (0..24).map(|i| ((i * 5 % 24) as f32) * 0.07).collect();
        let sc = Scores {
            learner: &l,
            reference: Some(&r),
        };
        let mut lin = Jest {
            filter_ratio: 0.5,
            chunks: 4,
            form: JestForm::Linear,
        };
        let mut pair = Jest {
            filter_ratio: 0.5,
            chunks: 4,
            form: JestForm::Pairwise,
        };
        for t in 0..200 {
            let a = lin.select(&sc, &mut Rng::new(5, Stream::Select, t));
            let b = pair.select(&sc, &mut Rng::new(5, Stream::Select, t));
            assert_eq!(a.indices, b.indices);
        }
        let trials = 20_000u64;
        let mut fa = [0.0; 24];
        let mut fb = [0.0; 24];
        for t in 0..trials {
            for &i in &lin.select(&sc, &mut Rng::new(6, Stream::Select, t)).indices {
                fa[i] += 1.0 / trials as f64;
            }
            for &i in &pair
                .select(&sc, &mut Rng::new(7, Stream::Select, t))
                .indices
            {
                fb[i] += 1.0 / trials as f64;
            }
        }
        assert_same_frequencies(&fa, &fb, trials);
    }

    /// Two independent binomial inclusion frequencies from `trials` draws each agree: the sd
    /// of their difference is at most sqrt(2·0.25/trials), and 5 sd is the tolerance.
    fn assert_same_frequencies(fa: &[f64], fb: &[f64], trials: u64) {
        for (i, (a, b)) in fa.iter().zip(fb).enumerate() {
            assert!(
                (a - b).abs() < 5.0 * (0.5f64 / trials as f64).sqrt(),
                "{i}: {a} vs {b}"
            );
        }
    }

    #[test]
    fn inclusion_probabilities_match_a_hand_computed_case() {
        // B = 3, N = 2, c = 1 (f = 1/3): the first pick is uniform; given pick k, the second
        // is drawn from softmax((1+1)(ℓ_i − r_i)/3) over the other two. With learnability
        // (0, ln 2·3/2, ln 4·3/2) the second-chunk weights are 1, 2, 4.
        let l = [0.0f32, (2f64.ln() * 1.5) as f32, (4f64.ln() * 1.5) as f32];
        let r = [0.0f32; 3];
        let w = [1.0, 2.0, 4.0];
        let mut want = [0.0; 3];
        for k in 0..3 {
            want[k] += 1.0 / 3.0;
            let z: f64 = (0..3).filter(|&j| j != k).map(|j| w[j]).sum();
            for j in (0..3).filter(|&j| j != k) {
                want[j] += (1.0 / 3.0) * w[j] / z;
            }
        }
        let mut sel = Jest {
            filter_ratio: 1.0 / 3.0,
            chunks: 2,
            form: JestForm::Pairwise,
        };
        let trials = 30_000u64;
        let mut got = [0.0; 3];
        for t in 0..trials {
            let s = sel.select(
                &Scores {
                    learner: &l,
                    reference: Some(&r),
                },
                &mut Rng::new(8, Stream::Select, t),
            );
            assert_eq!(s.indices.len(), 2);
            for &i in &s.indices {
                got[i] += 1.0 / trials as f64;
            }
        }
        for i in 0..3 {
            assert!((got[i] - want[i]).abs() < 0.012, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn rejection_draws_have_the_law_of_gumbel_top_k() {
        // 40 candidates with logits spread over 3 units, 5 masked, 10 draws: inclusion
        // frequencies of the rejection sampler and of Gumbel-top-k (independent streams) agree
        // within sampling error.
        let logits: Vec<f64> = (0..40).map(|i| ((i * 13 % 40) as f64) * 0.075).collect();
        let masked: Vec<bool> = (0..40).map(|i| i % 8 == 3).collect();
        let trials = 20_000u64;
        let (mut fa, mut fb) = ([0.0f64; 40], [0.0f64; 40]);
        for t in 0..trials {
            let a = softmax_without_replacement(
                &logits,
                &masked,
                10,
                &mut Rng::new(1, Stream::Select, t),
            );
            let b = gumbel_top_k(&logits, &masked, 10, &mut Rng::new(2, Stream::Select, t));
            assert_eq!(a.len(), 10);
            for &i in &a {
                assert!(!masked[i]);
                fa[i] += 1.0 / trials as f64;
            }
            for &i in &b {
                fb[i] += 1.0 / trials as f64;
            }
        }
        assert_same_frequencies(&fa, &fb, trials);
    }

    #[test]
    fn a_peaked_softmax_falls_back_to_gumbel_with_the_same_law() {
        // Logits (0, −12, −12 + ln 2): the first draw is index 0 (probability 1 − 3e⁻¹²);
        // the second accepts index 1 or 2 by rejection with probability ~e⁻¹² per trial, so it
        // falls back, and must still give 1 : 2 for indices 1 and 2.
        let logits = [0.0, -12.0, -12.0 + 2f64.ln()];
        let masked = [false; 3];
        let trials = 30_000u64;
        let mut got = [0.0f64; 3];
        for t in 0..trials {
            let s = softmax_without_replacement(
                &logits,
                &masked,
                2,
                &mut Rng::new(9, Stream::Select, t),
            );
            assert_eq!(s.len(), 2);
            assert_ne!(s[0], s[1]);
            for &i in &s {
                got[i] += 1.0 / trials as f64;
            }
        }
        assert!((got[0] - 1.0).abs() < 1e-9, "{got:?}");
        assert!((got[1] - 1.0 / 3.0).abs() < 0.012, "{got:?}");
        assert!((got[2] - 2.0 / 3.0).abs() < 0.012, "{got:?}");
    }
}
