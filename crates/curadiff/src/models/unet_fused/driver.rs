//! Running the fused U-Net on a batch: chunks of [`CHUNK`] images on the rayon pool, the
//! per-example loss (EDM2 eq. 21 with the optional uncertainty u(σ)), and the sum of the
//! chunks' gradients in chunk order.

use rayon::prelude::*;

use super::pass::{chunk_backward, chunk_forward, chunk_inputs, part, Inputs};
use super::plan::{Plan, Prepared};
use super::workspace::Workspace;
use super::CHUNK;
use crate::models::params::HostParam;

/// What the per-example loss needs besides the network's output.
#[derive(Debug, Clone, Copy)]
pub struct LossInputs<'a> {
    /// The F-space target, `[n, C, H, W]`.
    pub target: &'a [f32],
    /// λ(σ)·c_out(σ)² per example: weighted loss = this × mean squared F-error.
    pub weight: &'a [f32],
    /// c_out(σ)² per example: x0-error = this × mean squared F-error.
    pub to_x0: &'a [f32],
    /// Per-example loss weights (the reweighting seam, mean 1 over the batch): the gradient
    /// is that of mean(w_i · loss_i); `None` weighs every example 1. The returned losses are
    /// the unweighted per-example losses.
    pub example_weight: Option<&'a [f32]>,
}

/// Per-example losses and the gradient of their mean.
#[derive(Debug, Clone)]
pub struct LossOutput {
    pub weighted: Vec<f32>,
    pub x0_error: Vec<f32>,
    /// Gradient per stored parameter, burn's layout.
    pub grads: Vec<Vec<f32>>,
}

/// F (NCHW) = gain·o of a chunk after [`chunk_forward`].
fn write_f(plan: &Plan, w: &Prepared, n: usize, o: &[f32], f: &mut [f32]) {
    let (c, hw) = (plan.img_channels, plan.res * plan.res);
    let gain = w.w[plan.out_gain][0];
    for i in 0..n {
        for p in 0..hw {
            for j in 0..c {
                f[(i * c + j) * hw + p] = gain * o[(i * hw + p) * c + j];
            }
        }
    }
}

fn ready(ws: &mut Vec<Workspace>, chunks: usize) {
    if ws.len() < chunks {
        ws.resize_with(chunks, Workspace::default);
    }
}

/// F for a batch and u(σ) when the network has the head.
pub fn forward(
    plan: &Plan,
    w: &Prepared,
    inp: &Inputs,
    ws: &mut Vec<Workspace>,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let len = plan.img_channels * plan.res * plan.res;
    let chunk = CHUNK;
    let chunks = inp.n.div_ceil(chunk);
    ready(ws, chunks);
    let mut f = vec![0.0f32; inp.n * len];
    let us: Vec<Vec<f32>> = ws[..chunks]
        .par_iter_mut()
        .zip(f.par_chunks_mut(chunk * len))
        .enumerate()
        .map(|(k, (wk, fk))| {
            let ci = chunk_inputs(inp, plan, k, chunk);
            let u = chunk_forward(plan, w, &ci, wk);
            write_f(plan, w, ci.n, &wk.o, fk);
            u
        })
        .collect();
    let u = plan.logvar.map(|_| us.concat());
    (f, u)
}

/// One example's loss terms.
struct ExampleLoss {
    weighted: f32,
    x0_error: f32,
    /// e^{−u} (1 without the head).
    scale: f32,
    /// d weighted / d u.
    du: f32,
}

/// The loss of one example from its F and target: err = mean (F − target)², weighted =
/// weight·err, divided by e^u and plus u with the uncertainty head (EDM2 eq. 21).
fn example_loss(f: &[f32], t: &[f32], weight: f32, to_x0: f32, u: Option<f32>) -> ExampleLoss {
    let err = f
        .iter()
        .zip(t)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum::<f64>() as f32
        / f.len().max(1) as f32;
    let raw = err * weight;
    let (weighted, scale, du) = match u {
        Some(uv) => {
            let e = (-uv).exp();
            (raw * e + uv, e, 1.0 - raw * e)
        }
        None => (raw, 1.0, 0.0),
    };
    ExampleLoss {
        weighted,
        x0_error: err * to_x0,
        scale,
        du,
    }
}

/// Per-example losses of a batch, forward only: (weighted, x0-error).
pub fn losses(
    plan: &Plan,
    w: &Prepared,
    inp: &Inputs,
    li: &LossInputs,
    ws: &mut Vec<Workspace>,
) -> (Vec<f32>, Vec<f32>) {
    let len = plan.img_channels * plan.res * plan.res;
    let (f, u) = forward(plan, w, inp, ws);
    let mut weighted = Vec::with_capacity(inp.n);
    let mut x0 = Vec::with_capacity(inp.n);
    for i in 0..inp.n {
        let e = example_loss(
            &f[i * len..(i + 1) * len],
            &li.target[i * len..(i + 1) * len],
            li.weight[i],
            li.to_x0[i],
            u.as_ref().map(|u| u[i]),
        );
        weighted.push(e.weighted);
        x0.push(e.x0_error);
    }
    (weighted, x0)
}

/// Per-example losses of a batch and the gradient of their mean (see [`LossInputs`]): the
/// weighted loss is λc_out²·mean‖F − target‖², divided by e^u and plus u with the head.
pub fn loss_and_grads(
    plan: &Plan,
    params: &[HostParam],
    w: &Prepared,
    inp: &Inputs,
    li: &LossInputs,
    ws: &mut Vec<Workspace>,
) -> LossOutput {
    let len = plan.img_channels * plan.res * plan.res;
    let b = inp.n;
    let chunks = b.div_ceil(CHUNK);
    ready(ws, chunks);
    let per: Vec<(Vec<f32>, Vec<f32>)> = ws[..chunks]
        .par_iter_mut()
        .enumerate()
        .map(|(k, wk)| {
            let ci = chunk_inputs(inp, plan, k, CHUNK);
            let n = ci.n;
            if wk.grads.len() != w.w.len() {
                wk.grads = w.w.iter().map(|v| vec![0.0; v.len()]).collect();
            } else {
                wk.grads.iter_mut().for_each(|g| g.fill(0.0));
            }
            let u = chunk_forward(plan, w, &ci, wk);
            let mut f = vec![0.0f32; n * len];
            write_f(plan, w, n, &wk.o, &mut f);
            let target = part(li.target, k, b, len, CHUNK);
            let weight = part(li.weight, k, b, 1, CHUNK);
            let to_x0 = part(li.to_x0, k, b, 1, CHUNK);
            let example_weight = li.example_weight.map(|v| part(v, k, b, 1, CHUNK));
            let mut weighted = vec![0.0f32; n];
            let mut x0 = vec![0.0f32; n];
            let mut du = vec![0.0f32; n];
            for i in 0..n {
                let fi = &mut f[i * len..(i + 1) * len];
                let ti = &target[i * len..(i + 1) * len];
                let e = example_loss(fi, ti, weight[i], to_x0[i], u.get(i).copied());
                weighted[i] = e.weighted;
                x0[i] = e.x0_error;
                du[i] = e.du / b as f32;
                // d mean/d F = (2/len)·weight·e^{−u}·(F − target)/b.
                let mut k = 2.0 / len as f32 * weight[i] * e.scale / b as f32;
                if let Some(ew) = example_weight {
                    du[i] *= ew[i];
                    k *= ew[i];
                }
                for (a, t) in fi.iter_mut().zip(ti) {
                    *a = k * (*a - t);
                }
            }
            chunk_backward(plan, w, &ci, &f, &du, wk);
            (weighted, x0)
        })
        .collect();
    let weighted = per.iter().flat_map(|p| p.0.iter().copied()).collect();
    let x0_error = per.iter().flat_map(|p| p.1.iter().copied()).collect();
    let ws = &ws[..chunks];
    let grads = (0..w.w.len())
        .into_par_iter()
        .map(|k| {
            let mut g = ws[0].grads[k].clone();
            for wk in &ws[1..] {
                for (a, v) in g.iter_mut().zip(&wk.grads[k]) {
                    *a += v;
                }
            }
            w.stored_grad(plan, k, &params[k].data, &g)
        })
        .collect();
    LossOutput {
        weighted,
        x0_error,
        grads,
    }
}
