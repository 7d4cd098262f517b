//! The img2img strength s ∈ (0, 1] and where it starts the sampler (reference §D.1).
//!
//! DisCL stores the image guidance λ = 1 − s: λ = 0 (s = 1) is plain class-conditional
//! generation, λ → 1 keeps the real image. As in the img2img pipeline the reference used
//! (diffusers' `StableDiffusionXLImg2ImgPipeline`), a strength runs the last ⌊s·N⌋ of the
//! sampler's N steps: the Heun integration starts at index k = N − ⌊s·N⌋ of the schedule
//! σ_0 = σ_max > … > σ_{N−1} = σ_min > σ_N = 0 ([`crate::diffusion::sampler::edm_sigmas`]),
//! from the real image noised to σ_start = σ_k. So s = 1 starts at σ_max from pure noise
//! (the plain sampler), and with the `fmnist` sampler (N = 16, σ ∈ [0.002, 80], ρ = 7)
//! s = 0.5 starts at σ_8 ≈ 1.85 and s = 0.1 at σ_15 = σ_min. A strength with ⌊s·N⌋ = 0 would
//! return the real image unchanged and is refused. (s·N gets a 1e-9 nudge, so that 0.3·10
//! counts as 3 steps although it is 3.0000000000000004 or 2.9999999999999996 in floating
//! point.)

use crate::diffusion::sampler::edm_sigmas;
use crate::error::{Error, Result};

/// The strengths DisCL generates: 0.1, 0.2, …, 1.0.
pub const DISCL_STRENGTHS: [f64; 10] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// The image guidance λ = 1 − s of strength `s`.
pub fn lambda(s: f64) -> f64 {
    1.0 - s
}

/// The Heun steps strength `s` runs of an `steps`-step schedule: ⌊s·N⌋.
fn steps_run(s: f64, steps: usize) -> usize {
    ((s * steps as f64 + 1e-9).floor() as usize).min(steps)
}

/// Checks `s` ∈ (0, 1] and that it runs at least one of `steps` Heun steps; returns the
/// start index k = N − ⌊s·N⌋ into the schedule.
pub fn start_step(s: f64, steps: usize) -> Result<usize> {
    check(s)?;
    let run = steps_run(s, steps);
    if run == 0 {
        return Err(Error::InvalidValue {
            field: "strength".into(),
            why: format!(
                "s = {s} runs ⌊s·N⌋ = 0 of the sampler's N = {steps} Heun steps and would \
                 return the real image unchanged; use s ≥ 1/N = {:.4}, or more sampler steps",
                1.0 / steps as f64
            ),
        });
    }
    Ok(steps - run)
}

/// Checks `s` ∈ (0, 1].
pub fn check(s: f64) -> Result<()> {
    if !(s.is_finite() && s > 0.0 && s <= 1.0) {
        return Err(Error::InvalidValue {
            field: "strength".into(),
            why: format!(
                "{s} is outside (0, 1]; a strength is the fraction of the noise schedule \
                 img2img re-generates (λ = 1 − s): use e.g. 0.1,0.2,…,1.0, where 1 is plain \
                 class-conditional generation"
            ),
        });
    }
    Ok(())
}

/// Where strength `s` starts on a schedule: its index and σ_start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StartPoint {
    pub strength: f64,
    /// Index k into the schedule.
    pub step: usize,
    /// σ_k.
    pub sigma: f64,
}

/// The start points of `strengths` on the `steps`-step EDM schedule over
/// [`sigma_min`, `sigma_max`] with exponent `rho`; duplicates are refused.
pub fn start_points(
    strengths: &[f64],
    steps: usize,
    sigma_min: f64,
    sigma_max: f64,
    rho: f64,
) -> Result<Vec<StartPoint>> {
    if strengths.is_empty() {
        return Err(Error::InvalidValue {
            field: "strength".into(),
            why: "no strength given; use e.g. 0.1,0.2,…,1.0".into(),
        });
    }
    let sigmas = edm_sigmas(steps, sigma_min, sigma_max, rho);
    let mut out: Vec<StartPoint> = Vec::with_capacity(strengths.len());
    for &s in strengths {
        let step = start_step(s, steps)?;
        if let Some(p) = out.iter().find(|p| p.strength == s) {
            return Err(Error::InvalidValue {
                field: "strength".into(),
                why: format!("{} is listed twice; list each strength once", p.strength),
            });
        }
        // σ_max itself at k = 0, as the plain sampler starts there.
        let sigma = if step == 0 { sigma_max } else { sigmas[step] };
        out.push(StartPoint {
            strength: s,
            step,
            sigma,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_steps_match_the_img2img_rule_by_hand() {
        // k = N − ⌊s·N⌋, N = 16: s = 1 → 0, 0.9 → 16 − 14 = 2, 0.5 → 8, 0.3 → 16 − 4 = 12,
        // 0.1 → 16 − 1 = 15, 1/16 → 15.
        for (s, k) in [
            (1.0, 0),
            (0.9, 2),
            (0.5, 8),
            (0.3, 12),
            (0.1, 15),
            (0.0625, 15),
        ] {
            assert_eq!(start_step(s, 16).unwrap(), k, "s = {s}");
        }
        // N = 10: 0.3·10 and 0.7·10 are 3 and 7 steps despite their rounding error.
        assert_eq!(start_step(0.3, 10).unwrap(), 7);
        assert_eq!(start_step(0.7, 10).unwrap(), 3);
        assert_eq!(lambda(0.3), 0.7);
    }

    #[test]
    fn sigma_start_on_the_fmnist_schedule_by_hand() {
        // σ_k = (80^(1/7) + k/15·(0.002^(1/7) − 80^(1/7)))^7, computed with Python's floats:
        // a, b = 80**(1/7), 0.002**(1/7); [(a + k/15*(b-a))**7 for k in (2, 8, 12, 15)]
        // → 37.09182342514596, 1.854287569235578, 0.08508720268939021, 0.002000000000000003
        let p = start_points(&[1.0, 0.9, 0.5, 0.3, 0.1], 16, 0.002, 80.0, 7.0).unwrap();
        let want = [
            80.0,
            37.09182342514596,
            1.854287569235578,
            0.08508720268939021,
            0.002,
        ];
        for (p, w) in p.iter().zip(want) {
            assert!((p.sigma - w).abs() <= 1e-9 * w, "{p:?} vs {w}");
        }
        assert_eq!(p[0].step, 0);
    }

    #[test]
    fn bad_strengths_name_the_value_and_the_fix() {
        for s in [0.0, -0.5, 1.5, f64::NAN] {
            let e = start_step(s, 16).unwrap_err().to_string();
            assert!(
                e.contains("outside (0, 1]") && e.contains("strength"),
                "{e}"
            );
        }
        let e = start_step(0.05, 16).unwrap_err().to_string();
        assert!(
            e.contains("0 of the sampler's N = 16") && e.contains("0.0625"),
            "{e}"
        );
        let e = start_points(&[0.5, 0.5], 16, 0.002, 80.0, 7.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("twice"), "{e}");
        assert!(start_points(&[], 16, 0.002, 80.0, 7.0).is_err());
    }
}
