//! The toy denoiser: a magnitude-preserving MLP on [c_in·x (2), c_noise, 1], in two forms.
//!
//! - `energy` (the published toy, EDM2 `toy_example.py` `ToyModel`): the network outputs an
//!   unnormalised log-density log p̂(x; σ) = g·mean_j(y_j²)/σ − ½‖c_in·x‖², with y the last
//!   hidden layer and the gain g starting at 0 (so the untrained model is N(0, σ_data²+σ²)).
//!   The score is its x-gradient, which [`Mlp::energy_score`] computes by an explicit
//!   backward pass built from ordinary tensor ops, so that training (which differentiates the
//!   score with respect to the weights) needs no double backprop from the framework. A
//!   guided score s₀ + w(s₁ − s₀) of two such models is again a gradient field. The toy
//!   presets keep g ≤ 0 ([`MlpConfig::negative_gain`]), so that log p̂ is bounded above.
//! - `denoiser`: an extra MP-linear layer to 2 outputs predicts the preconditioned output F
//!   directly, D = c_skip·x + c_out·g·F (cheaper, but the score is not constrained to be a
//!   gradient field).

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::layers::{mp_silu, mp_silu_grad, MpLinear};
use crate::rng::{Rng, Stream};

/// What the toy MLP predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    /// An unnormalised log-density; the score is its gradient (the published toy).
    Energy,
    /// The preconditioned denoiser output F directly.
    Denoiser,
}

/// Which implementation trains the toy MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// burn on the compiled backend: both forms, any device.
    Burn,
    /// The fused CPU kernel ([`super::fused`]): both forms, several times faster (CPU only).
    Fused,
}

/// Shape of the toy MLP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    /// "energy" (the published toy) or "denoiser".
    pub output: Output,
    /// Training engine: "fused" (CPU) or "burn".
    pub engine: Engine,
    /// Hidden width (64 for the main toy model, 32 for the guide).
    pub width: usize,
    /// Number of hidden MP-SiLU + MP-linear layers after the input layer (4 in the toy).
    pub layers: usize,
    /// Initial output gain g (0 in the published toy).
    #[serde(default)]
    pub gain_init: f64,
    /// Keep the output gain g ≤ 0 (g ← −|g| after every optimiser step). In the `energy`
    /// form this keeps log p̂ ≤ −½‖x̂‖², a density bounded by a Gaussian.
    #[serde(default)]
    pub negative_gain: bool,
}

/// The network F; preconditioning lives in [`crate::diffusion::precond`].
#[derive(Module, Debug)]
pub struct Mlp {
    pub input: MpLinear,
    pub hidden: Vec<MpLinear>,
    /// The 2-output layer of the `denoiser` form; absent in the `energy` form.
    pub out: Option<MpLinear>,
    /// Output gain g, initialised to 0.
    pub gain: Param<Tensor<1>>,
}

/// Input features per example: c_in·x (2), c_noise, and a constant 1.
pub const IN_FEATURES: usize = 4;

impl MlpConfig {
    /// A freshly initialised network; weights come from the run's `Init` stream.
    pub fn init(&self, seed: u64, device: &Device) -> Mlp {
        let mut rng = Rng::new(seed, Stream::Init, 0);
        let input = MpLinear::init(IN_FEATURES, self.width, &mut rng, device);
        let hidden = (0..self.layers)
            .map(|_| MpLinear::init(self.width, self.width, &mut rng, device))
            .collect();
        let out = (self.output == Output::Denoiser)
            .then(|| MpLinear::init(self.width, 2, &mut rng, device));
        let gain =
            Tensor::<1>::from_data(TensorData::new(vec![self.gain_init as f32], [1]), device);
        Mlp {
            input,
            hidden,
            out,
            gain: Param::from_tensor(gain),
        }
    }
}

impl Mlp {
    /// The last hidden layer y and the pre-activations of the layers after the input layer.
    fn trunk(&self, features: Tensor<2>, weights: &[Tensor<2>]) -> (Tensor<2>, Vec<Tensor<2>>) {
        let mut h = features.matmul(weights[0].clone().transpose()); // [batch, width]
        let mut pre = Vec::with_capacity(weights.len() - 1);
        for w in &weights[1..] {
            pre.push(h.clone());
            h = mp_silu(h).matmul(w.clone().transpose()); // [batch, width]
        }
        (h, pre)
    }

    fn trunk_weights(&self) -> Vec<Tensor<2>> {
        std::iter::once(&self.input)
            .chain(&self.hidden)
            .map(MpLinear::normalized)
            .collect()
    }

    /// Denoiser form: features [batch, 4] → F [batch, 2].
    pub fn forward(&self, features: Tensor<2>) -> Tensor<2> {
        let (y, _) = self.trunk(features, &self.trunk_weights());
        let f = match &self.out {
            Some(out) => out.forward(mp_silu(y)), // [batch, 2]
            None => y,
        };
        f * self.gain.val().unsqueeze::<2>()
    }

    /// Energy form: g·mean_j(y_j²)/σ per example, `[batch]` (log p̂ without −½‖x̂‖²).
    pub fn energy(&self, features: Tensor<2>, inv_sigma: Tensor<2>) -> Tensor<1> {
        let n = features.dims()[0];
        let (y, _) = self.trunk(features, &self.trunk_weights());
        let z = y.square().mean_dim(1) * inv_sigma * self.gain.val().unsqueeze::<2>(); // [batch, 1]
        z.reshape([n])
    }

    /// Energy form: ∂/∂x̂ of g·mean_j(y_j²)/σ for features [batch, 4] (x̂ in the first two
    /// columns) and 1/σ as a column [batch, 1]; returns [batch, 2]. The −½‖x̂‖² term and the
    /// chain rule through x̂ = c_in·x are the caller's.
    pub fn energy_grad(&self, features: Tensor<2>, inv_sigma: Tensor<2>) -> Tensor<2> {
        let weights = self.trunk_weights();
        let n = features.dims()[0];
        let (y, pre) = self.trunk(features, &weights);
        let width = y.dims()[1] as f64;
        // ∂z/∂y = 2·g·y / (width·σ)
        let mut delta = (y * inv_sigma * self.gain.val().unsqueeze::<2>()).mul_scalar(2.0 / width); // [batch, width]
        for (w, h) in weights[1..].iter().zip(&pre).rev() {
            delta = delta.matmul(w.clone()) * mp_silu_grad(h.clone()); // [batch, width]
        }
        let df = delta.matmul(weights[0].clone()); // [batch, 4]
        df.slice([0..n, 0..2]) // [batch, 2]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::precond::Precond;
    use crate::models::toy_denoiser::ToyDenoiser;

    #[test]
    fn explicit_energy_gradient_matches_autodiff() {
        // The hand-built backward pass must equal burn's autodiff gradient of the energy.
        let dev = Device::flex().autodiff();
        let mut net = MlpConfig {
            output: Output::Energy,
            engine: Engine::Burn,
            width: 16,
            layers: 4,
            gain_init: 0.0,
            negative_gain: false,
        }
        .init(3, &dev);
        net.gain = Param::from_tensor(Tensor::<1>::from_data(
            TensorData::new(vec![0.7f32], [1]),
            &dev,
        ));
        let den = ToyDenoiser {
            net: net.clone(),
            sigma_data: 0.5,
        };
        let mut rng = Rng::new(1, Stream::Eval, 0);
        let n = 64;
        let sigma: Vec<f64> = (0..n).map(|i| 0.003 * 1.25f64.powi(i % 40)).collect();
        let xs: Vec<f32> = (0..2 * n).map(|_| rng.normal() as f32).collect();
        let x = Tensor::<2>::from_data(TensorData::new(xs, [n, 2]), &dev).require_grad();
        let col = |f: &dyn Fn(f64) -> f64| {
            let v: Vec<f32> = sigma.iter().map(|&s| f(s) as f32).collect();
            Tensor::<2>::from_data(TensorData::new(v, [n, 1]), &dev)
        };
        let c_in = col(&|s| Precond::new(s, 0.5).c_in);
        let x_hat = x.clone() * c_in;
        let extra: Vec<f32> = sigma
            .iter()
            .flat_map(|&s| [(s.ln() / 4.0) as f32, 1.0])
            .collect();
        let features = Tensor::cat(
            vec![
                x_hat.clone(),
                Tensor::<2>::from_data(TensorData::new(extra, [n, 2]), &dev),
            ],
            1,
        );
        let logp = net.energy(features, col(&|s| 1.0 / s))
            - x_hat.square().sum_dim(1).reshape([n]).mul_scalar(0.5);
        let grads = logp.sum().backward();
        let auto: Vec<f32> = x.grad(&grads).unwrap().try_into_vec_as::<f32>().unwrap();
        let (score, _) = den.predict(x.detach(), &sigma);
        let ours: Vec<f32> = score.try_into_vec_as::<f32>().unwrap();
        for (a, b) in auto.iter().zip(&ours) {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + a.abs()),
                "autodiff {a} vs explicit {b}"
            );
        }
    }
}
