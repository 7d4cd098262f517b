//! The toy denoiser: a magnitude-preserving MLP on [c_in·x (2), c_noise, 1].
//!
//! The published toy (EDM2 `toy_example.py`, `ToyModel`) predicts an unnormalised
//! log-density and differentiates it for the score, which needs double backprop to train.
//! Here the network predicts the preconditioned denoiser output F directly,
//! D(x; σ) = c_skip·x + c_out·g·F(c_in·x, c_noise), with the learned output gain g starting at
//! 0, so that — like the published toy — the untrained model is the Gaussian prior
//! N(0, σ_data²I). The score follows as (D − x)/σ². Same layers, widths and init otherwise.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::layers::{mp_silu, MpLinear};
use crate::rng::{Rng, Stream};

/// Shape of the toy MLP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    /// Hidden width (64 for the main toy model, 32 for the guide).
    pub width: usize,
    /// Number of hidden MP-SiLU + MP-linear layers after the input layer (4 in the toy).
    pub layers: usize,
}

/// The network F; preconditioning lives in [`crate::diffusion::precond`].
#[derive(Module, Debug)]
pub struct Mlp {
    pub input: MpLinear,
    pub hidden: Vec<MpLinear>,
    pub out: MpLinear,
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
        let out = MpLinear::init(self.width, 2, &mut rng, device);
        let gain = Tensor::<1>::from_data(TensorData::new(vec![0.0f32], [1]), device);
        Mlp {
            input,
            hidden,
            out,
            gain: Param::from_tensor(gain),
        }
    }
}

impl Mlp {
    /// features: [batch, 4] → F: [batch, 2].
    pub fn forward(&self, features: Tensor<2>) -> Tensor<2> {
        let mut h = self.input.forward(features); // [batch, width]
        for layer in &self.hidden {
            h = layer.forward(mp_silu(h)); // [batch, width]
        }
        let f = self.out.forward(mp_silu(h)); // [batch, 2]
        f * self.gain.val().unsqueeze::<2>() // [batch, 2]
    }
}
