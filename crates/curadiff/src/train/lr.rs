//! Learning-rate schedule (EDM2 `learning_rate_schedule`): inverse-square-root decay after
//! `t_ref`, with an optional linear ramp-up, both counted in images.
//!
//! lr(nimg) = α_ref / sqrt(max(nimg / t_ref, 1)) · min(nimg / ramp, 1).
//!
//! By default the schedule stands at the images of the super-batches iterated (step · B),
//! whether or not online selection trains on a sub-batch. With `selection_scaling` it follows
//! the AJEST image code instead (its `learning_rate_schedule`): while a step trains on b of B
//! images, the decay advances B/b times faster and the ramp-up is B/b times shorter. The decay
//! position is the running sum of B·(B/b_t) over past steps, which is the seed's continuity
//! correction at an Early/Late switch written as one sum; the ramp-up stands at
//! step·B·(B/b_now), as the seed's does (it jumps at a switch when the ramp-up is not over).

use serde::{Deserialize, Serialize};

/// The learning-rate schedule, in images trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LrConfig {
    /// α_ref, the base learning rate.
    pub lr: f64,
    /// Images after which the rate decays as 1/sqrt(nimg / t_ref). 0 disables the decay.
    pub t_ref_nimg: f64,
    /// Length of the linear warm-up in images. 0 disables it.
    pub rampup_nimg: f64,
    /// While selecting b of B, advance the decay B/b times faster and shorten the ramp-up by
    /// b/B (the AJEST image recipe). Off: the schedule counts super-batch images.
    #[serde(default)]
    pub selection_scaling: bool,
}

impl LrConfig {
    /// The learning rate after `nimg` images have been trained.
    pub fn at(&self, nimg: f64) -> f64 {
        self.at_position(nimg, nimg)
    }

    /// The rate with the decay at `decay_nimg` and the ramp-up at `ramp_nimg`.
    pub fn at_position(&self, decay_nimg: f64, ramp_nimg: f64) -> f64 {
        let mut lr = self.lr;
        if self.t_ref_nimg > 0.0 {
            lr /= (decay_nimg / self.t_ref_nimg).max(1.0).sqrt();
        }
        if self.rampup_nimg > 0.0 {
            lr *= (ramp_nimg / self.rampup_nimg).min(1.0);
        }
        lr
    }
}

/// Where the schedule stands; its state (`decay_nimg`) is saved with the run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LrClock {
    /// Σ over past steps of B·(B/b_t) (only used with `selection_scaling`).
    pub decay_nimg: f64,
}

impl LrClock {
    /// The rate of step `step` (0-based) of super-batch `batch`, which trains on `trained`
    /// rows.
    pub fn rate(&self, cfg: &LrConfig, step: u64, batch: u64, trained: u64) -> f64 {
        let iterated = (step * batch) as f64;
        if !cfg.selection_scaling {
            return cfg.at(iterated);
        }
        let factor = batch as f64 / trained.max(1) as f64;
        cfg.at_position(self.decay_nimg, iterated * factor)
    }

    /// Books a step of super-batch `batch` that trained on `trained` rows.
    pub fn advance(&mut self, batch: u64, trained: u64) {
        self.decay_nimg += batch as f64 * (batch as f64 / trained.max(1) as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toy_schedule_matches_seed() {
        // The toy: lr = 0.01 / sqrt(max(t / 512, 1)) at iteration t, batch 4096.
        let c = LrConfig {
            lr: 0.01,
            t_ref_nimg: 512.0 * 4096.0,
            rampup_nimg: 0.0,
            selection_scaling: false,
        };
        assert_eq!(c.at(0.0), 0.01);
        assert_eq!(c.at(512.0 * 4096.0), 0.01);
        assert!((c.at(2048.0 * 4096.0) - 0.005).abs() < 1e-15);
    }

    /// The AJEST image code's `learning_rate_schedule`, re-expressed from its description:
    /// `cur_nimg` = images trained, `cur_epoch` = iterations, the decay in iterations
    /// (`ref_batches`), and `change_nimg` / `change_epoch` set at an Early/Late switch.
    #[allow(clippy::too_many_arguments)]
    fn seed_rate(
        cur_nimg: f64,
        cur_epoch: f64,
        selecting: bool,
        early: bool,
        late: bool,
        b: f64,
        big_b: f64,
        ref_lr: f64,
        ref_batches: f64,
        rampup: f64,
        change_nimg: f64,
        change_epoch: f64,
    ) -> f64 {
        let factor = big_b / b;
        let (mut n, mut e) = (cur_nimg, cur_epoch);
        if change_epoch != 0.0 {
            if !selecting && early {
                n += (factor - 1.0) * change_nimg;
                e += (factor - 1.0) * change_epoch;
            } else if selecting && late {
                n -= (factor - 1.0) / factor * change_nimg;
                e -= (factor - 1.0) / factor * change_epoch;
            }
        }
        let batch = if selecting { b } else { big_b };
        e *= big_b / batch;
        n *= big_b / batch;
        let ramp = rampup * batch / big_b;
        let mut lr = ref_lr;
        if rampup > 0.0 {
            lr *= (n / ramp).min(1.0);
        }
        lr / (e / ref_batches).max(1.0).sqrt()
    }

    #[test]
    fn selection_scaling_matches_the_seed_schedule_through_a_switch() {
        // B = 128, b = 24 (N = 8 chunks of 3), decay after 40 iterations, ramp-up of
        // 30 super-batches; Early (select, then not) and Late (not, then select), switching
        // at step 25, so the ramp-up is over on both sides of the switch.
        let (big_b, b) = (128u64, 24u64);
        let cfg = LrConfig {
            lr: 0.01,
            t_ref_nimg: 40.0 * big_b as f64,
            rampup_nimg: 30.0 * big_b as f64,
            selection_scaling: true,
        };
        for early in [true, false] {
            let mut clock = LrClock::default();
            let (mut nimg, mut change_nimg, mut change_epoch) = (0.0, 0.0, 0.0);
            for step in 0..200u64 {
                let selecting = (step < 25) == early;
                if step == 25 {
                    change_nimg = nimg;
                    change_epoch = step as f64;
                }
                let trained = if selecting { b } else { big_b };
                let ours = clock.rate(&cfg, step, big_b, trained);
                let seed = seed_rate(
                    nimg,
                    step as f64,
                    selecting,
                    early,
                    !early,
                    b as f64,
                    big_b as f64,
                    0.01,
                    40.0,
                    30.0 * big_b as f64,
                    change_nimg,
                    change_epoch,
                );
                assert!(
                    (ours - seed).abs() <= 1e-12 * seed.abs(),
                    "early={early} step {step}: {ours} vs {seed}"
                );
                clock.advance(big_b, trained);
                nimg += trained as f64;
            }
        }
    }

    #[test]
    fn without_selection_scaling_the_clock_is_the_plain_schedule() {
        let mut cfg = LrConfig {
            lr: 0.01,
            t_ref_nimg: 40.0 * 128.0,
            rampup_nimg: 30.0 * 128.0,
            selection_scaling: false,
        };
        let clock = LrClock::default();
        assert_eq!(clock.rate(&cfg, 77, 128, 24), cfg.at(77.0 * 128.0));
        // With scaling but no selection (b = B) it is the plain schedule too.
        cfg.selection_scaling = true;
        let mut c = LrClock::default();
        for s in 0..100 {
            assert!((c.rate(&cfg, s, 128, 128) - cfg.at((s * 128) as f64)).abs() < 1e-15);
            c.advance(128, 128);
        }
    }
}
