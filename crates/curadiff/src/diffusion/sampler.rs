//! The EDM Heun sampler (Karras et al. 2022, Algorithm 1, S_churn = 0).

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::denoiser::Denoiser;
use crate::error::{Error, Result};

/// Sampler settings used by default when sampling from the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplerConfig {
    /// Heun steps (NFE = 2·steps − 1).
    pub steps: usize,
    pub sigma_min: f64,
    pub sigma_max: f64,
    /// ρ of the EDM time steps.
    pub rho: f64,
}

/// EDM time steps σ_i = (σ_max^{1/ρ} + i/(N−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, i = 0…N−1,
/// followed by σ_N = 0 (Karras et al. 2022, eq. 5).
pub fn edm_sigmas(steps: usize, sigma_min: f64, sigma_max: f64, rho: f64) -> Vec<f64> {
    let (a, b) = (sigma_max.powf(1.0 / rho), sigma_min.powf(1.0 / rho));
    let mut s: Vec<f64> = (0..steps)
        .map(|i| {
            let t = if steps == 1 {
                0.0
            } else {
                i as f64 / (steps - 1) as f64
            };
            (a + t * (b - a)).powf(rho)
        })
        .collect();
    s.push(0.0);
    s
}

/// Integrates the probability-flow ODE from `x` at `sigmas[0]` down to `sigmas.last()` with
/// Heun's method (Euler for the final step to σ = 0).
pub fn heun<const D: usize>(denoiser: &dyn Denoiser<D>, x: Tensor<D>, sigmas: &[f64]) -> Tensor<D> {
    let n = x.dims()[0];
    let mut x = x;
    for w in sigmas.windows(2) {
        let (s_cur, s_next) = (w[0], w[1]);
        let d_cur = (x.clone() - denoiser.denoise(x.clone(), &vec![s_cur; n])).div_scalar(s_cur);
        let x_next = x.clone() + d_cur.clone().mul_scalar(s_next - s_cur);
        if s_next > 0.0 {
            let d_next =
                (x_next.clone() - denoiser.denoise(x_next, &vec![s_next; n])).div_scalar(s_next);
            x = x + (d_cur + d_next).mul_scalar(0.5 * (s_next - s_cur));
        } else {
            x = x_next;
        }
    }
    x
}

/// Draws `n` samples of dimension `dim` in chunks of `chunk`: sample `i` starts from
/// `start(i)` (its own seeded stream, so results do not depend on the chunk size) at
/// `sigmas[0]` and is integrated with [`heun`]. Returns `[n, dim]` row-major.
pub fn sample_batched(
    denoiser: &dyn Denoiser<2>,
    start: &(dyn Fn(u64) -> Vec<f64> + Sync),
    dim: usize,
    n: usize,
    sigmas: &[f64],
    chunk: usize,
    device: &Device,
) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(n * dim);
    let chunk = chunk.max(1);
    for lo in (0..n).step_by(chunk) {
        let hi = (lo + chunk).min(n);
        let x0: Vec<f32> = (lo..hi)
            .flat_map(|i| start(i as u64))
            .map(|v| v as f32)
            .collect();
        let x = Tensor::<2>::from_data(TensorData::new(x0, [hi - lo, dim]), device);
        let x = heun(denoiser, x, sigmas);
        let v = x
            .try_into_vec_as::<f32>()
            .map_err(|e| Error::Model(format!("cannot read samples: {e:?}")))?;
        out.extend(v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmas_hit_endpoints() {
        let s = edm_sigmas(32, 0.002, 80.0, 7.0);
        assert_eq!(s.len(), 33);
        assert!((s[0] - 80.0).abs() < 1e-9 && (s[31] - 0.002).abs() < 1e-12 && s[32] == 0.0);
        assert!(s.windows(2).all(|w| w[0] > w[1]));
    }

    /// The exact denoiser of N(0, s²I): D(x; σ) = x·s²/(s² + σ²).
    struct Gaussian(f64);
    impl Denoiser<2> for Gaussian {
        fn denoise(&self, x: Tensor<2>, sigma: &[f64]) -> Tensor<2> {
            let n = sigma.len();
            let f: Vec<f32> = sigma
                .iter()
                .map(|s| (self.0 * self.0 / (self.0 * self.0 + s * s)) as f32)
                .collect();
            x * Tensor::<2>::from_data(TensorData::new(f, [n, 1]), &Device::flex())
        }
    }

    #[test]
    fn heun_follows_the_gaussian_flow_with_second_order_error() {
        // For N(0, s²) the ODE solution is x(σ) = x(σ_max)·sqrt(s²+σ²)/sqrt(s²+σ_max²).
        let s = 0.7;
        let exact = s / (s * s + 25.0f64).sqrt();
        let err = |steps: usize| {
            let sig = edm_sigmas(steps, 0.002, 5.0, 7.0);
            let x0 = Tensor::<2>::from_data(TensorData::new(vec![1.0f32], [1, 1]), &Device::flex());
            let v: Vec<f32> = heun(&Gaussian(s), x0, &sig)
                .try_into_vec_as::<f32>()
                .unwrap();
            (v[0] as f64 - exact).abs()
        };
        let (e16, e32, e64) = (err(16), err(32), err(64));
        assert!(e32 < 0.01 * exact, "{e32}");
        // Heun is second order: doubling the steps divides the error by about 4.
        assert!(e16 / e32 > 3.0 && e32 / e64 > 3.0, "{e16} {e32} {e64}");
    }
}
