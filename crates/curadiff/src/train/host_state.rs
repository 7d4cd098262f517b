//! The training state of a fused (host-memory) learner: parameters, Adam's moments, the
//! power-function EMA, and their checkpoint groups. The same Adam as [`super::optim::Adam`]
//! (bias-corrected, then EDM2's forced weight normalisation of every weight with two or more
//! dimensions), on host vectors.

use std::collections::BTreeMap;

use super::ema;
use super::params::HostParam;
use crate::error::{Error, Result};
use crate::models::layers::NORM_EPS;

/// Parameters, Adam state and EMA on the host.
#[derive(Debug, Clone)]
pub struct HostState {
    pub params: Vec<HostParam>,
    pub ema: Option<Vec<HostParam>>,
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
    /// Adam steps taken.
    pub t: u64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    gamma: f64,
}

impl HostState {
    /// Fresh state for `params`, with an EMA when `ema_sigma_rel` > 0.
    pub fn new(
        params: Vec<HostParam>,
        (beta1, beta2, eps): (f64, f64, f64),
        ema_sigma_rel: f64,
    ) -> Self {
        let zeros: Vec<Vec<f32>> = params.iter().map(|p| vec![0.0; p.data.len()]).collect();
        Self {
            ema: (ema_sigma_rel > 0.0).then(|| params.clone()),
            m: zeros.clone(),
            v: zeros,
            t: 0,
            params,
            beta1,
            beta2,
            eps,
            gamma: if ema_sigma_rel > 0.0 {
                ema::gamma_from_sigma_rel(ema_sigma_rel)
            } else {
                0.0
            },
        }
    }

    /// One Adam step with gradients `grads` (one per parameter) at learning rate `lr`,
    /// followed by forced weight normalisation.
    pub fn adam_step(&mut self, grads: &[Vec<f32>], lr: f64) {
        self.t += 1;
        let t = self.t as i32;
        let (b1, b2) = (self.beta1 as f32, self.beta2 as f32);
        let m_hat = (1.0 / (1.0 - self.beta1.powi(t))) as f32;
        let v_hat = (1.0 / (1.0 - self.beta2.powi(t))) as f32;
        let (lr, eps) = (lr as f32, self.eps as f32);
        for (k, p) in self.params.iter_mut().enumerate() {
            let (m, v, g) = (&mut self.m[k], &mut self.v[k], &grads[k]);
            for j in 0..p.data.len() {
                m[j] = m[j] * b1 + g[j] * (1.0 - b1);
                v[j] = v[j] * b2 + g[j] * g[j] * (1.0 - b2);
                p.data[j] -= lr * m[j] * m_hat / ((v[j] * v_hat).sqrt() + eps);
            }
            if p.shape.len() >= 2 {
                renormalize(p);
            }
        }
    }

    /// EMA update after a step of `batch` images that brought the count to `nimg`.
    pub fn update_ema(&mut self, nimg: u64, batch: usize) {
        let Some(ema) = self.ema.as_mut() else {
            return;
        };
        let beta = ema::beta(self.gamma, nimg as f64, batch as f64) as f32;
        for (e, p) in ema.iter_mut().zip(&self.params) {
            for (ev, pv) in e.data.iter_mut().zip(&p.data) {
                *ev = *ev * beta + pv * (1.0 - beta);
            }
        }
    }

    /// The EMA weights (the raw weights when the EMA is off).
    pub fn ema_params(&self) -> &[HostParam] {
        self.ema.as_deref().unwrap_or(&self.params)
    }

    /// Checkpoint groups "net", "ema", "adam_m", "adam_v" (the burn learners' layout).
    pub fn to_groups(&self) -> BTreeMap<String, Vec<HostParam>> {
        let like = |v: &[Vec<f32>]| -> Vec<HostParam> {
            self.params
                .iter()
                .zip(v)
                .map(|(p, d)| HostParam {
                    name: p.name.clone(),
                    shape: p.shape.clone(),
                    data: d.clone(),
                })
                .collect()
        };
        let mut g = BTreeMap::new();
        g.insert("net".into(), self.params.clone());
        if let Some(e) = &self.ema {
            g.insert("ema".into(), e.clone());
        }
        g.insert("adam_m".into(), like(&self.m));
        g.insert("adam_v".into(), like(&self.v));
        g
    }

    /// Restores from [`HostState::to_groups`]; `adam_t` optimiser steps taken.
    pub fn load_groups(&mut self, g: &BTreeMap<String, Vec<HostParam>>, adam_t: u64) -> Result<()> {
        let get = |k: &str| {
            g.get(k)
                .ok_or_else(|| Error::Model(format!("checkpoint has no '{k}' tensors")))
        };
        let model = &self.params;
        let check = |k: &str| -> Result<&Vec<HostParam>> {
            let ps = get(k)?;
            let fits = ps.len() == model.len()
                && ps
                    .iter()
                    .zip(model)
                    .all(|(a, b)| a.shape == b.shape && a.name == b.name);
            if fits {
                Ok(ps)
            } else {
                Err(Error::Model(format!(
                    "stored '{k}' parameters do not match the model's names and shapes"
                )))
            }
        };
        let net = check("net")?.clone();
        let m = check("adam_m")?.iter().map(|p| p.data.clone()).collect();
        let v = check("adam_v")?.iter().map(|p| p.data.clone()).collect();
        let ema = match self.ema {
            Some(_) => Some(check("ema")?.clone()),
            None => None,
        };
        self.params = net;
        self.ema = ema;
        self.m = m;
        self.v = v;
        self.t = adam_t;
        Ok(())
    }
}

/// Forced weight normalisation of one stored weight: each row (first dimension) rescaled to
/// norm √fan_in (see [`crate::models::layers::renormalize_rows`]).
pub fn renormalize(p: &mut HostParam) {
    let rows = p.shape[0];
    let cols = p.data.len() / rows.max(1);
    let s = (cols as f32).sqrt();
    for row in p.data.chunks_mut(cols.max(1)) {
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        let d = n / s + NORM_EPS as f32;
        row.iter_mut().for_each(|v| *v /= d);
    }
}
