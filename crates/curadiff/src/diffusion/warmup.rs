//! The adaptive schedules' warm-up draws, made while π is still the base prior (EDM's
//! log-normal): just enough rows of each batch are stratified in log σ over the prior's
//! central range that every bin there holds `min_bin_count` errors by the first refresh, so
//! that the gate's onset rule reads a profile measured where the prior trains rather than
//! one filled in (see [`super::gate`]). The rest of the batch comes from the prior.
//!
//! Over a warm-up of W steps the R bins of the range need R·min_bin_count stratified draws:
//! m = ⌈R·min_bin_count/W⌉ rows a step (at most the batch). They walk the bins in turn, one
//! draw per bin, uniform in log σ inside it, continuing at step t from position t·m: after
//! T steps each bin holds ⌊T·m/R⌋ or one more. The draws are a function of the step and the
//! step's random stream, so a resumed run draws the same σ. The warm-up's σ marginal moves
//! by the share m/n of stratified rows (e.g. 24 of 128 for 256 bins, 8 errors, 60 steps).

use super::log_grid::LogGrid;
use super::noise::{LogNormal, NoiseSampler};
use crate::rng::Rng;

/// The strata cover ln σ ∈ P_mean ± this many P_std (≥ 99.7% of the prior's mass).
pub const SPAN: f64 = 3.0;

/// The bins `lo..hi` the stratified rows walk: those meeting ln σ ∈ P_mean ± [`SPAN`]·P_std
/// (the whole grid when that range misses it).
pub fn bins(grid: &LogGrid, base: &LogNormal) -> (usize, usize) {
    let half = SPAN * base.p_std;
    let (lo, hi) = grid.bins_between(base.p_mean - half, base.p_mean + half);
    if hi > lo {
        (lo, hi)
    } else {
        (0, grid.bins())
    }
}

/// Stratified rows per step of `n` for a warm-up whose first refresh comes after
/// `warmup_steps` steps (the caller passes refresh_every when the configured warm-up is 0)
/// that gives each of the [`bins`] `min_count` draws.
pub fn rows(
    grid: &LogGrid,
    base: &LogNormal,
    min_count: u64,
    warmup_steps: u64,
    n: usize,
) -> usize {
    let (lo, hi) = bins(grid, base);
    let need = (hi - lo) as u64 * min_count;
    (need.div_ceil(warmup_steps.max(1)) as usize).min(n)
}

/// The `n` σ of warm-up step `step`: `m` rows spread evenly over the batch (row i is
/// stratified when ⌊(i+1)m/n⌋ > ⌊im/n⌋) walk [`bins`]; the others are drawn from `base`.
/// With m = 0 this is the prior alone, draw for draw.
pub fn draw(
    grid: &LogGrid,
    base: &mut LogNormal,
    m: usize,
    step: u64,
    rng: &mut Rng,
    n: usize,
) -> Vec<f64> {
    let m = m.min(n);
    if m == 0 {
        return base.draw(rng, n);
    }
    let (lo, hi) = bins(grid, base);
    let r = (hi - lo) as u64;
    let mut walk = step.wrapping_mul(m as u64);
    (0..n)
        .map(|i| {
            if (i + 1) * m / n > i * m / n {
                let bin = lo + (walk % r) as usize;
                walk = walk.wrapping_add(1);
                grid.at(bin, rng.uniform())
            } else {
                (base.p_mean + base.p_std * rng.normal()).exp()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    #[test]
    fn strata_walk_the_prior_range_in_turn() {
        // EDM prior ln σ ~ N(−1.2, 1.2²) on [0.002, 80] in 64 bins (Δ = ln(40000)/64 =
        // 0.16557): the strata cover ln σ ∈ −1.2 ± 3.6, i.e. bins ⌊(−4.8 − ln 0.002)/Δ⌋ = 8
        // to ⌈(2.4 − ln 0.002)/Δ⌉ = 53 (exclusive), R = 45. Eight errors per bin in a warm-up
        // of 36 steps need ⌈45·8/36⌉ = 10 rows a step; of 40 rows those are 3, 7, …, 39.
        // 9 steps walk 90 = 2·45 positions, so every bin of the range holds exactly 2
        // stratified draws, in walk order.
        let grid = LogGrid::new(0.002, 80.0, 64);
        let mut base = LogNormal {
            p_mean: -1.2,
            p_std: 1.2,
        };
        assert_eq!(bins(&grid, &base), (8, 53));
        assert_eq!(rows(&grid, &base, 8, 36, 40), 10);
        assert_eq!(rows(&grid, &base, 8, 1, 40), 40);
        let mut strata = vec![0u32; 64];
        for step in 0..9u64 {
            let mut rng = Rng::new(1, Stream::Data, step);
            let sigma = draw(&grid, &mut base, 10, step, &mut rng, 40);
            for j in 0..10u64 {
                let bin = grid.bin_of(sigma[4 * j as usize + 3]).unwrap();
                assert_eq!(bin as u64, 8 + (step * 10 + j) % 45, "step {step}, row {j}");
                strata[bin] += 1;
            }
        }
        assert!((0..64).all(|i| strata[i] == if (8..53).contains(&i) { 2 } else { 0 }));
        // No stratified rows is the prior alone, bit for bit; a prior off the grid walks it
        // all.
        let plain = draw(
            &grid,
            &mut base,
            0,
            0,
            &mut Rng::new(1, Stream::Data, 0),
            40,
        );
        let prior = base.draw(&mut Rng::new(1, Stream::Data, 0), 40);
        assert_eq!(plain, prior);
        let far = LogNormal {
            p_mean: 20.0,
            p_std: 1.0,
        };
        assert_eq!(bins(&grid, &far), (0, 64));
    }
}
