//! The training state of a fused (host-memory) learner: parameters, Adam's moments, the
//! power-function EMA, and their checkpoint groups. The same Adam as [`super::optim::Adam`]
//! (bias-corrected, then EDM2's forced weight normalisation of every weight with two or more
//! dimensions), on host vectors.

use std::collections::BTreeMap;

use super::ema::Profile;
use super::params::HostParam;
use crate::error::{Error, Result};
use crate::models::layers::NORM_EPS;

/// Parameters, Adam state and EMA on the host.
#[derive(Debug, Clone)]
pub struct HostState {
    pub params: Vec<HostParam>,
    /// The EMA used for inference (`train.ema_sigma_rel`).
    pub ema: Option<Profile>,
    /// Further profiles kept for post-hoc EMA (`train.phema_sigma_rels`).
    pub phema: Vec<Profile>,
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
    /// Adam steps taken.
    pub t: u64,
    beta1: f64,
    beta2: f64,
    eps: f64,
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
            ema: (ema_sigma_rel > 0.0).then(|| Profile::new(ema_sigma_rel, &params)),
            phema: Vec::new(),
            m: zeros.clone(),
            v: zeros,
            t: 0,
            params,
            beta1,
            beta2,
            eps,
        }
    }

    /// Adds post-hoc EMA profiles at `sigma_rels`, starting from the current parameters.
    pub fn add_phema(&mut self, sigma_rels: &[f64]) {
        let ps = &self.params;
        self.phema
            .extend(sigma_rels.iter().map(|&s| Profile::new(s, ps)));
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

    /// Update of every EMA profile after a step of `batch` images that brought the count to
    /// `nimg`.
    pub fn update_ema(&mut self, nimg: u64, batch: usize) {
        for e in self.ema.iter_mut().chain(self.phema.iter_mut()) {
            e.update(&self.params, nimg, batch);
        }
    }

    /// The EMA weights (the raw weights when the EMA is off).
    pub fn ema_params(&self) -> &[HostParam] {
        self.ema.as_ref().map_or(&self.params, |e| &e.params)
    }

    /// Checkpoint groups "net", "ema", "adam_m", "adam_v" (the burn learners' layout), and
    /// one [`phema_group`] per post-hoc profile.
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
            g.insert("ema".into(), e.params.clone());
        }
        phema_groups(&self.phema, &mut g);
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
        let ema = match &self.ema {
            Some(_) => Some(check("ema")?.clone()),
            None => None,
        };
        self.params = net;
        if let (Some(e), Some(stored)) = (self.ema.as_mut(), ema) {
            e.params = stored;
        }
        self.m = m;
        self.v = v;
        self.t = adam_t;
        restore_phema(&mut self.phema, g)
    }
}

/// Post-hoc EMA profiles `phema` into checkpoint groups `g` ([`phema_group`] each, of the
/// profiles' own names and shapes).
pub fn phema_groups(phema: &[Profile], g: &mut BTreeMap<String, Vec<HostParam>>) {
    for p in phema {
        g.insert(phema_group(p.sigma_rel), p.params.clone());
    }
}

/// Restores post-hoc EMA profiles from checkpoint groups `g`: each must be there with the
/// profile's names and shapes.
pub fn restore_phema(phema: &mut [Profile], g: &BTreeMap<String, Vec<HostParam>>) -> Result<()> {
    for p in phema.iter_mut() {
        let k = phema_group(p.sigma_rel);
        let Some(stored) = g.get(&k) else {
            return Err(Error::Model(format!(
                "the run keeps a post-hoc EMA profile at σ_rel {} (train.phema_sigma_rels) but \
                 the checkpoint has no '{k}' tensors; keep the train.phema_sigma_rels the run \
                 started with, or start a new run directory",
                p.sigma_rel
            )));
        };
        let fits = stored.len() == p.params.len()
            && stored
                .iter()
                .zip(&p.params)
                .all(|(a, b)| a.shape == b.shape && a.name == b.name);
        if !fits {
            return Err(Error::Model(format!(
                "stored '{k}' parameters do not match the model's names and shapes"
            )));
        }
        p.params = stored.clone();
    }
    Ok(())
}

/// The checkpoint group of the post-hoc EMA profile at `sigma_rel`, e.g. "phema-0.050000".
pub fn phema_group(sigma_rel: f64) -> String {
    format!("phema-{sigma_rel:.6}")
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
