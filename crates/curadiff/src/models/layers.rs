//! Magnitude-preserving layers (Karras et al. 2024, EDM2, Sec. 2.3 and `networks_edm2.py`).

use burn::module::{Module, Param};
use burn::tensor::activation::{sigmoid, silu};
use burn::tensor::{Device, Tensor, TensorData};

use crate::rng::Rng;

/// ε of EDM2's `normalize`, scaled by sqrt(fan_in) there.
pub const NORM_EPS: f64 = 1e-4;

/// `mp_silu(x) = silu(x) / 0.596`: unit-variance output for unit-variance input.
pub fn mp_silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    silu(x).div_scalar(0.596)
}

/// d mp_silu / dx = σ(x)·(1 + x·(1 − σ(x))) / 0.596, with σ the logistic function.
pub fn mp_silu_grad<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let s = sigmoid(x.clone());
    let one_minus = s.clone().neg().add_scalar(1.0);
    (s * (x * one_minus).add_scalar(1.0)).div_scalar(0.596)
}

/// A linear layer with forced weight normalisation: each output row of the stored weight is
/// kept at norm sqrt(fan_in) (see [`MpLinear::renormalize`]) and used as w / ‖w‖, so the layer
/// preserves magnitudes; there is no bias.
#[derive(Module, Debug)]
pub struct MpLinear {
    /// [out, in], standard-normal initialisation.
    pub weight: Param<Tensor<2>>,
}

impl MpLinear {
    /// A layer `fan_in → fan_out` with N(0, 1) weights drawn from `rng`.
    pub fn init(fan_in: usize, fan_out: usize, rng: &mut Rng, device: &Device) -> Self {
        let w: Vec<f32> = (0..fan_in * fan_out).map(|_| rng.normal() as f32).collect();
        let t = Tensor::<2>::from_data(TensorData::new(w, [fan_out, fan_in]), device);
        Self {
            weight: Param::from_tensor(t),
        }
    }

    /// The weight as used: each row divided by its norm. [out, in]
    pub fn normalized(&self) -> Tensor<2> {
        let w = self.weight.val(); // [out, in]
        let norm = w.clone().square().sum_dim(1).sqrt().add_scalar(NORM_EPS); // [out, 1]
        w / norm
    }

    /// x: [batch, in] → [batch, out].
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        x.matmul(self.normalized().transpose()) // [batch, out]
    }
}

/// Forced weight normalisation of a stored [out, in] weight: w ← w / (ε + ‖w_row‖/sqrt(in)),
/// EDM2's `normalize`, applied after every optimiser step.
pub fn renormalize_rows(w: Tensor<2>) -> Tensor<2> {
    let fan_in = w.dims()[1] as f64;
    let norm = w
        .clone()
        .square()
        .sum_dim(1)
        .sqrt()
        .div_scalar(fan_in.sqrt())
        .add_scalar(NORM_EPS); // [out, 1]
    w / norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    #[test]
    fn mp_linear_preserves_magnitude() {
        // For unit-variance inputs, each output of x·(w/‖w‖)ᵀ has unit variance.
        let dev = Device::flex();
        let mut rng = Rng::new(0, Stream::Init, 0);
        let layer = MpLinear::init(64, 32, &mut rng, &dev);
        let n = 8192;
        let x: Vec<f32> = (0..n * 64).map(|_| rng.normal() as f32).collect();
        let x = Tensor::<2>::from_data(TensorData::new(x, [n, 64]), &dev);
        let y = layer.forward(x);
        let var: f32 = y.square().mean().into_scalar();
        assert!((var - 1.0).abs() < 0.03, "output variance {var}");
    }

    #[test]
    fn renormalized_rows_have_norm_sqrt_fan_in() {
        let dev = Device::flex();
        let w = Tensor::<2>::from_data(TensorData::new(vec![3.0f32, 4.0, 0.0, 2.0], [2, 2]), &dev);
        let r: Vec<f32> = renormalize_rows(w).try_into_vec_as::<f32>().unwrap();
        // Row norms 5 and 2 → sqrt(2) each (up to ε).
        let n0 = (r[0] * r[0] + r[1] * r[1]).sqrt();
        let n1 = (r[2] * r[2] + r[3] * r[3]).sqrt();
        assert!((n0 - 2f32.sqrt()).abs() < 1e-3 && (n1 - 2f32.sqrt()).abs() < 1e-3);
        assert!((r[0] / r[1] - 0.75).abs() < 1e-6);
    }
}
