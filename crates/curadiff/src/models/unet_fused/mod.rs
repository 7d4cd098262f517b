//! A fused CPU engine for the magnitude-preserving U-Net of [`crate::models::unet`]: forward,
//! backward and the per-example loss by hand, on NHWC activations, with the same parameters,
//! names and maths as the burn network (checked against burn's autodiff in
//! `train::image`'s tests).
//!
//! - Layout: activations are `[images, height, width, channels]`. 3×3 convolutions with a
//!   multiple of 16 output channels run a direct AVX-512 kernel where the CPU has it (register
//!   tiles over a zero-bordered copy of the input, for the forward pass, the input gradient and
//!   the weight gradient: `direct`); otherwise an im2col matrix times the normalised weight
//!   ([`conv`]). Element-wise chains run as single passes ([`ops`]). The kernels are chosen by
//!   the features the CPU reports at run time, so results are deterministic on one machine but
//!   round differently between an AVX-512 and an AVX2 machine.
//! - Weights are normalised once per call ([`Prepared`]): Ŵ = W/(‖W_row‖ + ε) as the burn
//!   layers use them, and the gradient is taken back through the normalisation.
//! - Parallelism: a batch is split into chunks of [`CHUNK`] images processed independently
//!   on the rayon pool (forward, backward and each chunk's weight gradients), and the chunks'
//!   gradients are summed in chunk order, so results do not depend on the thread count.
//!   Each chunk keeps its buffers between calls ([`workspace::Workspace`]), so a step
//!   allocates nothing once the first one has sized them.
//! - Attention is not fused: [`Plan::new`] refuses a configuration with attention levels, and
//!   the learner falls back to the burn engine for it.

pub mod conv;
mod direct;
mod direct_bf16;
mod driver;
pub mod ops;
mod pass;
mod plan;
mod workspace;

pub use driver::{LossInputs, LossOutput};
pub use pass::Inputs;
pub use plan::{Plan, Prepared};

/// Whether this CPU runs the bf16 convolutions of `unet.precision = "bf16"` (AVX-512-BF16).
pub fn bf16_supported() -> bool {
    direct_bf16::supported()
}

/// Images per chunk of a batch. Measured (2026-12-02): chunks of 2, 4 and 8 images give the
/// same forward rate within noise on the Intel machine with im2col kernels, and 4 or 8 the
/// same training and forward rates on the AMD machine with the direct kernels.
pub const CHUNK: usize = 8;

use std::sync::Mutex;

use crate::error::Result;
use crate::models::params::HostParam;
use crate::models::unet::UnetConfig;

/// The fused U-Net: its plan and the per-chunk buffers it reuses between calls.
#[derive(Debug)]
pub struct FusedUnet {
    pub plan: Plan,
    workspaces: Mutex<Vec<workspace::Workspace>>,
}

impl FusedUnet {
    /// The engine for `cfg`, checking that `params` (burn's parameters of the same
    /// configuration, in declaration order) name every weight the plan needs.
    pub fn new(cfg: &UnetConfig, params: &[HostParam]) -> Result<Self> {
        Ok(Self {
            plan: Plan::new(cfg, params)?,
            workspaces: Mutex::new(Vec::new()),
        })
    }

    /// F for a batch, `[b, C, H, W]` flattened, and u(σ) per example when the network has an
    /// uncertainty head.
    pub fn forward(&self, w: &Prepared, inp: &Inputs) -> (Vec<f32>, Option<Vec<f32>>) {
        let mut ws = self
            .workspaces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        driver::forward(&self.plan, w, inp, &mut ws)
    }

    /// Per-example losses and the gradient of their mean with respect to the stored
    /// (unnormalised) parameters, in the parameters' order and burn's layout.
    pub fn loss_and_grads(
        &self,
        params: &[HostParam],
        w: &Prepared,
        inp: &Inputs,
        loss: &LossInputs,
    ) -> LossOutput {
        let mut ws = self
            .workspaces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        driver::loss_and_grads(&self.plan, params, w, inp, loss, &mut ws)
    }

    /// Per-example losses, forward only: (weighted, x0-error).
    pub fn losses(&self, w: &Prepared, inp: &Inputs, loss: &LossInputs) -> (Vec<f32>, Vec<f32>) {
        let mut ws = self
            .workspaces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        driver::losses(&self.plan, w, inp, loss, &mut ws)
    }

    /// The weights of `params` normalised for use.
    pub fn prepare(&self, params: &[HostParam]) -> Prepared {
        Prepared::new(&self.plan, params)
    }
}
