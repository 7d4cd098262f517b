//! Adam (Kingma & Ba 2015) with bias correction, on flat per-parameter state, followed (for
//! the denoisers) by EDM2's forced weight normalisation of every weight with two or more
//! dimensions. The one optimiser of burn modules: the learners use [`Adam::new`], the
//! feature classifier [`Adam::plain`]. The fused engines' host Adam
//! (`train::host_state`) runs the same update on host vectors.

use burn::module::{Module, ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

use crate::models::layers::renormalize_rows;

/// Adam's state: step count and the first and second moments, one flat tensor per parameter.
#[derive(Debug, Clone)]
pub struct Adam {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Whether weights of two or more dimensions are renormalised after each step (EDM2).
    pub weight_norm: bool,
    /// Optimiser steps taken.
    pub t: u64,
    pub m: Vec<Tensor<1>>,
    pub v: Vec<Tensor<1>>,
}

struct Step<'a> {
    adam: &'a mut Adam,
    grads: &'a GradientsParams,
    lr: f64,
    next: usize,
}

impl ModuleMapper for Step<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let i = self.next;
        self.next += 1;
        let Some(g) = self.grads.get::<D>(param.id) else {
            return param;
        };
        let dims = g.dims();
        let n = g.shape().num_elements();
        let g = g.reshape([n]); // [n]
        let a = &mut *self.adam;
        if a.m.len() <= i {
            a.m.push(g.zeros_like());
            a.v.push(g.zeros_like());
        }
        let m = a.m[i].clone().mul_scalar(a.beta1) + g.clone().mul_scalar(1.0 - a.beta1);
        let v = a.v[i].clone().mul_scalar(a.beta2) + g.square().mul_scalar(1.0 - a.beta2);
        let t = a.t as i32;
        let m_hat = 1.0 / (1.0 - a.beta1.powi(t));
        let v_hat = 1.0 / (1.0 - a.beta2.powi(t));
        let update = m.clone().mul_scalar(self.lr * m_hat)
            / v.clone().mul_scalar(v_hat).sqrt().add_scalar(a.eps); // [n]
        a.m[i] = m;
        a.v[i] = v;
        param.map(|w| {
            let grad = w.is_require_grad();
            let mut fresh = w.inner() - update.reshape(dims);
            if D >= 2 && a.weight_norm {
                let d0 = dims[0];
                fresh = renormalize_rows(fresh.reshape([d0, n / d0])).reshape(dims);
            }
            let fresh = Tensor::from_inner(fresh);
            if grad {
                fresh.require_grad()
            } else {
                fresh
            }
        })
    }
}

impl Adam {
    /// Adam with EDM2's forced weight normalisation.
    pub fn new(beta1: f64, beta2: f64, eps: f64) -> Self {
        Self {
            beta1,
            beta2,
            eps,
            weight_norm: true,
            t: 0,
            m: Vec::new(),
            v: Vec::new(),
        }
    }

    /// Plain Adam, without weight normalisation.
    pub fn plain(beta1: f64, beta2: f64, eps: f64) -> Self {
        Self {
            weight_norm: false,
            ..Self::new(beta1, beta2, eps)
        }
    }

    /// One step at learning rate `lr`; returns the updated module.
    pub fn step<M: Module>(&mut self, module: M, grads: &GradientsParams, lr: f64) -> M {
        self.t += 1;
        module.map(&mut Step {
            adam: self,
            grads,
            lr,
            next: 0,
        })
    }
}
