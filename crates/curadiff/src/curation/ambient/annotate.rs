//! Annotation: the classifier's p(corrupted) curve of each corrupted example over a sorted σ
//! grid (reference §C.2, step 3). The grid is `points` log-spaced σ from `sigma_lo` to
//! `sigma_hi` (default 24 points from 0.002 to 80, EDM's sampler range); at each point the
//! example gets `draws` noise draws (default 1) and the curve holds their mean p. The noise of
//! (id, point k, draw d) comes from the stream (`seed`, [`Stream::Curate`],
//! `ANNOTATE_KEY + id·4096 + k·draws + d`), so an example's curve does not depend on the set,
//! order or batch it is annotated in. The reference uses 2048 σ × 4 draws with an EMA of span
//! 32; a 24-point grid keeps 54,000 images within minutes on two cores, and the threshold
//! rule's smoothing ([`super::threshold`]) has a span to match.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::classifier::NoiseClassifier;
use crate::data::images::ImageSet;
use crate::error::{Error, Result};
use crate::rng::{Rng, Stream};

/// Random-stream index base of the annotation noise.
const ANNOTATE_KEY: u64 = 0x414E_4E4F << 32;
/// Points × draws per example at most (the stream index leaves this many per id).
pub const MAX_EVALS: usize = 4096;
/// Examples per block of inputs built at once (bounds the memory: block · points · draws
/// inputs).
const BLOCK: usize = 64;

/// The σ grid and the draws of an annotation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AnnotateConfig {
    /// Grid points, ≥ 2.
    pub points: usize,
    /// The lowest σ of the grid, > 0.
    pub sigma_lo: f64,
    /// The highest σ of the grid, > `sigma_lo`.
    pub sigma_hi: f64,
    /// Noise draws per point, ≥ 1 (their p is averaged).
    pub draws: usize,
    /// Seed of the noise.
    pub seed: u64,
}

impl Default for AnnotateConfig {
    fn default() -> Self {
        Self {
            points: 24,
            sigma_lo: 0.002,
            sigma_hi: 80.0,
            draws: 1,
            seed: 0,
        }
    }
}

impl AnnotateConfig {
    /// Checks the grid; errors name the command-line flag.
    pub fn validate(&self) -> Result<()> {
        let invalid = |f: &str, why: String| Error::InvalidValue {
            field: f.into(),
            why,
        };
        if self.points < 2 || self.draws == 0 || self.points * self.draws > MAX_EVALS {
            return Err(invalid(
                "--points/--draws",
                format!(
                    "need points ≥ 2, draws ≥ 1 and points·draws ≤ {MAX_EVALS}; got {} and {}",
                    self.points, self.draws
                ),
            ));
        }
        if !(self.sigma_lo.is_finite() && self.sigma_lo > 0.0) {
            return Err(invalid(
                "--sigma-lo",
                format!("must be a finite σ > 0, got {}", self.sigma_lo),
            ));
        }
        if !(self.sigma_hi.is_finite() && self.sigma_hi > self.sigma_lo) {
            return Err(invalid(
                "--sigma-hi",
                format!(
                    "must be finite and above --sigma-lo ({}), got {}",
                    self.sigma_lo, self.sigma_hi
                ),
            ));
        }
        Ok(())
    }

    /// The ascending grid: σ_k = lo·(hi/lo)^(k/(points − 1)).
    pub fn grid(&self) -> Vec<f64> {
        let r = (self.sigma_hi / self.sigma_lo).ln();
        (0..self.points)
            .map(|k| self.sigma_lo * (r * k as f64 / (self.points - 1) as f64).exp())
            .collect()
    }
}

/// The curves of the examples at `rows` of `set`: `[rows.len(), points]` row-major, the mean
/// p(corrupted) over the draws. `progress(done, total)` after every block of examples.
pub fn curves(
    clf: &NoiseClassifier,
    set: &ImageSet,
    rows: &[usize],
    cfg: &AnnotateConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f32>> {
    cfg.validate()?;
    let sigmas = cfg.grid();
    let (k, d) = (cfg.points, cfg.draws);
    let input_len = (set.channels + 1) * set.height * set.width;
    let mut out = Vec::with_capacity(rows.len() * k);
    for (b, block) in rows.chunks(BLOCK).enumerate() {
        // One input per (example, point, draw), built in parallel; [block·k·d, C+1, H, W].
        let inputs: Vec<f32> = block
            .par_iter()
            .flat_map_iter(|&i| {
                let id = set.ids[i];
                let mut v = Vec::with_capacity(k * d * input_len);
                for (p, &s) in sigmas.iter().enumerate() {
                    for draw in 0..d {
                        let index = ANNOTATE_KEY
                            .wrapping_add(id.wrapping_mul(MAX_EVALS as u64))
                            .wrapping_add((p * d + draw) as u64);
                        let mut rng = Rng::new(cfg.seed, Stream::Curate, index);
                        clf.push(set.image(i), s, &mut rng, &mut v);
                    }
                }
                v
            })
            .collect();
        let p = clf.p_corrupted(&inputs, block.len() * k * d)?;
        for e in 0..block.len() {
            for point in 0..k {
                let at = (e * k + point) * d;
                let mean = p[at..at + d].iter().map(|&v| v as f64).sum::<f64>() / d as f64;
                out.push(mean as f32);
            }
        }
        progress((b * BLOCK + block.len()).min(rows.len()), rows.len());
    }
    Ok(out)
}
