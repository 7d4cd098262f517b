//! The toy learner on the fused CPU kernel: parameters, Adam moments and EMA as host vectors.

use burn::tensor::{Device, Tensor, TensorData};
use std::collections::BTreeMap;

use super::config::RunConfig;
use super::host_state::HostState;
use super::params::{self, HostParam};
use crate::diffusion::denoiser::Denoiser;
use crate::diffusion::loss::Losses;
use crate::diffusion::loss::{f_target, Space, Weighting};
use crate::diffusion::precond::Precond;
use crate::diffusion::toy_batch::Batch;
use crate::error::Result;
use crate::models::fused::{self, FusedBatch, Head};
use crate::models::mlp::Mlp;
use crate::models::mlp::Output;
use crate::models::toy_denoiser::ToyDenoiser;
use crate::models::toy_denoiser::ToyModel;

/// Network, Adam state and EMA of a toy run trained by the fused kernel.
pub struct FusedLearner {
    pub state: HostState,
    weighting: Weighting,
    sigma_data: f64,
    head: Head,
    negative_gain: bool,
    /// A burn network of the same shape, used to build inference denoisers.
    template: Mlp,
}

/// Inputs of the fused kernel for a batch.
struct Inputs {
    features: Vec<f32>,
    target: Vec<f32>,
    weight: Vec<f32>,
    to_x0: Vec<f32>,
}

impl FusedLearner {
    pub fn new(cfg: &RunConfig, device: &Device) -> Self {
        // The same initial weights as the burn engine (same Init stream).
        let template = cfg.model.init(cfg.seed, &device.clone().without_autodiff());
        let params = params::to_host(&template)
            .unwrap_or_else(|e| panic!("internal: cannot read fresh CPU parameters: {e}"));
        Self {
            state: HostState::new(
                params,
                (cfg.train.beta1, cfg.train.beta2, cfg.train.eps),
                cfg.train.ema_sigma_rel,
            ),
            weighting: cfg.diffusion.weighting,
            sigma_data: cfg.diffusion.sigma_data,
            head: head_of(cfg),
            negative_gain: cfg.model.negative_gain,
            template,
        }
    }

    /// The loss weighting λ(σ) the learner trains with.
    pub fn weighting(&self) -> Weighting {
        self.weighting
    }

    /// The current parameters.
    pub fn params(&self) -> &[HostParam] {
        &self.state.params
    }

    fn inputs(&self, batch: &Batch) -> Inputs {
        inputs(batch, self.weighting, self.sigma_data)
    }

    pub fn losses(&self, batch: &Batch) -> Result<Losses> {
        let i = self.inputs(batch);
        let (weighted, x0_error) = fused::losses(self.params(), &fb(&i), self.head);
        Ok(Losses { weighted, x0_error })
    }

    /// One Adam step (with forced weight normalisation) on `batch`.
    pub fn step(&mut self, batch: &Batch, lr: f64) -> Result<Losses> {
        let i = self.inputs(batch);
        let out = fused::loss_and_grads(self.params(), &fb(&i), self.head);
        self.state.adam_step(&out.grads, lr);
        if self.negative_gain {
            if let Some(g) = self.state.params.last_mut() {
                g.data.iter_mut().for_each(|v| *v = -v.abs());
            }
        }
        Ok(Losses {
            weighted: out.weighted,
            x0_error: out.x0_error,
        })
    }

    pub fn update_ema(&mut self, nimg: u64, batch: usize) {
        self.state.update_ema(nimg, batch);
    }

    /// The weights as a burn network (for other devices and cross-checks).
    pub fn burn_denoiser(&self, ps: &[HostParam]) -> Result<ToyDenoiser> {
        Ok(ToyDenoiser {
            net: params::from_host(self.template.clone(), ps)?,
            sigma_data: self.sigma_data,
        })
    }

    pub fn inference(&self) -> FusedDenoiser {
        FusedDenoiser {
            params: self.state.params.clone(),
            sigma_data: self.sigma_data,
            head: self.head,
        }
    }

    pub fn ema_inference(&self) -> FusedDenoiser {
        FusedDenoiser {
            params: self.state.ema_params().to_vec(),
            sigma_data: self.sigma_data,
            head: self.head,
        }
    }

    pub fn to_groups(&self) -> BTreeMap<String, Vec<HostParam>> {
        self.state.to_groups()
    }

    pub fn load_groups(&mut self, g: &BTreeMap<String, Vec<HostParam>>, adam_t: u64) -> Result<()> {
        self.state.load_groups(g, adam_t)
    }
}

/// The fused kernel's inputs for `batch`.
fn inputs(batch: &Batch, weighting: Weighting, sd: f64) -> Inputs {
    let mut features = Vec::with_capacity(4 * batch.len());
    for (x, &s) in batch.x.chunks(2).zip(&batch.sigma) {
        features.extend(features_of(x, s, sd));
    }
    let to_x0: Vec<f32> = batch
        .sigma
        .iter()
        .map(|&s| Space::F.to_x0(s, sd) as f32)
        .collect();
    let weight = batch
        .sigma
        .iter()
        .map(|&s| (weighting.lambda(s, sd) * Space::F.to_x0(s, sd)) as f32)
        .collect();
    Inputs {
        features,
        target: f_target(&batch.x, &batch.target, &batch.sigma, sd),
        weight,
        to_x0,
    }
}

/// [c_in·x, c_noise, 1] of one example.
fn features_of(x: &[f64], sigma: f64, sd: f64) -> [f32; 4] {
    let p = Precond::new(sigma, sd);
    [
        (p.c_in * x[0]) as f32,
        (p.c_in * x[1]) as f32,
        p.c_noise as f32,
        1.0,
    ]
}

/// Inference with the fused kernel: D(x; σ) = c_skip·x + c_out·F.
#[derive(Debug, Clone)]
pub struct FusedDenoiser {
    pub params: Vec<HostParam>,
    pub sigma_data: f64,
    pub head: Head,
}

impl Denoiser<2> for FusedDenoiser {
    fn denoise(&self, x: Tensor<2>, sigma: &[f64]) -> Tensor<2> {
        let device = x.device();
        // Reading back a tensor this program created is an internal invariant.
        let xs: Vec<f32> = x
            .try_into_vec_as::<f32>()
            .unwrap_or_else(|e| panic!("internal: cannot read a sampler tensor: {e:?}"));
        let mut features = Vec::with_capacity(2 * xs.len());
        for (r, &s) in xs.chunks(2).zip(sigma) {
            features.extend(features_of(&[r[0] as f64, r[1] as f64], s, self.sigma_data));
        }
        let f = fused::predict(&self.params, &features, self.head);
        let d: Vec<f32> = xs
            .chunks(2)
            .zip(f.chunks(2))
            .zip(sigma)
            .flat_map(|((xr, fr), &s)| {
                let p = Precond::new(s, self.sigma_data);
                let (c_skip, c_out) = (p.c_skip as f32, p.c_out as f32);
                [
                    c_skip * xr[0] + c_out * fr[0],
                    c_skip * xr[1] + c_out * fr[1],
                ]
            })
            .collect();
        Tensor::<2>::from_data(TensorData::new(d, [sigma.len(), 2]), &device)
    }
}

impl ToyModel for FusedDenoiser {
    fn losses(&self, batch: &Batch, weighting: Weighting) -> Result<Losses> {
        let i = inputs(batch, weighting, self.sigma_data);
        let (weighted, x0_error) = fused::losses(&self.params, &fb(&i), self.head);
        Ok(Losses { weighted, x0_error })
    }
}

/// The fused kernel's head for the configured model form.
pub fn head_of(cfg: &RunConfig) -> Head {
    match cfg.model.output {
        Output::Denoiser => Head::Denoiser,
        Output::Energy => Head::energy(cfg.model.width, cfg.diffusion.sigma_data),
    }
}

fn fb(i: &Inputs) -> FusedBatch<'_> {
    FusedBatch {
        features: &i.features,
        target: &i.target,
        weight: &i.weight,
        to_x0: &i.to_x0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::toy2d::{Classes, Mixture};
    use crate::diffusion::noise::LogNormal;
    use crate::diffusion::toy_batch::toy_batch;
    use crate::models::mlp::Engine;
    use crate::train::config::LossTarget;
    use crate::train::learner::BurnLearner;
    use crate::train::presets::preset;

    struct GradVisitor<'a>(&'a burn::optim::GradientsParams, Vec<Vec<f32>>);
    impl burn::module::ModuleVisitor for GradVisitor<'_> {
        fn visit_float<const D: usize>(
            &mut self,
            p: &burn::module::Param<burn::tensor::Tensor<D>>,
        ) {
            let g = self
                .0
                .get::<D>(p.id)
                .map(|t| t.try_into_vec_as::<f32>().unwrap());
            self.1.push(g.unwrap_or_default());
        }
    }

    #[test]
    fn fused_kernel_matches_burn_autodiff() {
        // Same init, same batches: the fused engine's losses and three Adam steps must match
        // burn's to float rounding, for both loss weightings and both model forms (burn
        // differentiates the energy form's explicit input gradient by autodiff; the fused
        // kernel by its hand-derived second backward pass).
        // With `negative_gain` both engines reflect the (positive) starting gain after each
        // step, so it must end ≤ 0 in both.
        let cases = [
            (Weighting::Score, Output::Denoiser, false),
            (Weighting::Edm, Output::Denoiser, false),
            (Weighting::Score, Output::Energy, false),
            (Weighting::Edm, Output::Energy, false),
            (Weighting::Score, Output::Energy, true),
        ];
        for (weighting, output, negative_gain) in cases {
            let mut cfg = preset("toy").unwrap();
            cfg.model.width = 16;
            cfg.model.output = output;
            cfg.model.negative_gain = negative_gain;
            cfg.diffusion.weighting = weighting;
            let dev = crate::device::training();
            cfg.model.engine = Engine::Burn;
            let mut burn = BurnLearner::new(&cfg, &dev);
            cfg.model.engine = Engine::Fused;
            let mut fused = FusedLearner::new(&cfg, &dev);
            // Non-zero gain so that every layer gets a gradient from the first step.
            fused.state.params.last_mut().unwrap().data[0] = 0.5;
            burn.den.net = params::from_host(burn.den.net.clone(), &fused.state.params).unwrap();
            let m = Mixture::tree(Classes::A);
            let mut noise = LogNormal {
                p_mean: -1.2,
                p_std: 1.2,
            };
            // Raw gradients (Adam's first steps hide their scale, so compare them directly).
            let b = toy_batch(&m, &mut noise, LossTarget::Exact, 1, 99, 1000);
            let (_, gb) = burn.loss_and_grads(&b);
            let gf = fused::loss_and_grads(&fused.state.params, &fb(&fused.inputs(&b)), fused.head)
                .grads;
            let mut visitor = GradVisitor(&gb, Vec::new());
            burn::module::Module::visit(&burn.den.net, &mut visitor);
            for (a, c) in visitor.1.iter().zip(&gf) {
                let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                assert!(scale > 0.0);
                for (x, y) in a.iter().zip(c) {
                    assert!(
                        (x - y).abs() <= 1e-3 * scale,
                        "{weighting:?} {output:?} grad {x} vs {y}"
                    );
                }
            }
            for step in 0..3 {
                let b = toy_batch(&m, &mut noise, LossTarget::Exact, 1, step, 1000);
                let lb = burn.step(&b, 0.01).unwrap();
                let lf = fused.step(&b, 0.01).unwrap();
                for (a, c) in lb.weighted.iter().zip(&lf.weighted) {
                    assert!((a - c).abs() <= 1e-4 * (1.0 + a.abs()), "loss {a} vs {c}");
                }
            }
            let pb = params::to_host(&burn.den.net).unwrap();
            if negative_gain {
                let (gb, gf) = (
                    pb.last().unwrap().data[0],
                    fused.state.params.last().unwrap().data[0],
                );
                assert!(gb < 0.0 && gf < 0.0, "gains {gb}, {gf} should be negative");
            }
            for (a, c) in pb.iter().zip(&fused.state.params) {
                assert_eq!(a.name, c.name);
                for (x, y) in a.data.iter().zip(&c.data) {
                    assert!(
                        (x - y).abs() < 2e-4,
                        "{weighting:?} {output:?} {}: {x} vs {y}",
                        a.name
                    );
                }
            }
        }
    }

    #[test]
    fn fused_inference_matches_burn_inference() {
        for output in [Output::Denoiser, Output::Energy] {
            inference_matches(output);
        }
    }

    fn inference_matches(output: Output) {
        let mut cfg = preset("toy").unwrap();
        cfg.model.width = 16;
        cfg.model.output = output;
        let mut fused = FusedLearner::new(&cfg, &crate::device::training());
        fused.state.params.last_mut().unwrap().data[0] = 0.9;
        let burn = fused.burn_denoiser(&fused.state.params).unwrap();
        let fast = fused.inference();
        let m = Mixture::tree(Classes::A);
        let mut noise = LogNormal {
            p_mean: -1.2,
            p_std: 1.2,
        };
        let b = toy_batch(&m, &mut noise, LossTarget::Exact, 2, 0, 700);
        let x: Vec<f32> = b.x.iter().map(|&v| v as f32).collect();
        let dev = crate::device::inference();
        let t = || Tensor::<2>::from_data(TensorData::new(x.clone(), [700, 2]), &dev);
        let a: Vec<f32> = burn
            .denoise(t(), &b.sigma)
            .try_into_vec_as::<f32>()
            .unwrap();
        let c: Vec<f32> = fast
            .denoise(t(), &b.sigma)
            .try_into_vec_as::<f32>()
            .unwrap();
        for (p, q) in a.iter().zip(&c) {
            assert!((p - q).abs() < 1e-4 * (1.0 + p.abs()), "{p} vs {q}");
        }
        let la = burn.losses(&b, Weighting::Score).unwrap();
        let lc = fast.losses(&b, Weighting::Score).unwrap();
        for (p, q) in la.weighted.iter().zip(&lc.weighted) {
            assert!((p - q).abs() < 1e-4 * (1.0 + p.abs()), "{p} vs {q}");
        }
    }
}
