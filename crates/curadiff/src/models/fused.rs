//! A fused CPU kernel for the toy MLP, both forms (see [`Head`]): forward, the energy form's
//! input gradient, backward and the per-example loss in one pass over row blocks, with
//! hand-derived gradients (checked against burn's autodiff in `train::fused_learner`'s
//! tests). Same parameters, names and maths as [`super::mlp::Mlp`]; it
//! exists because the toy's tiny matrices leave burn's per-op overhead and scalar `exp`
//! dominating a step.
//!
//! Rows are processed in fixed blocks of [`BLOCK`] on the rayon pool and the blocks' partial
//! gradients are summed in block order, so results do not depend on the thread count.

use rayon::prelude::*;

use crate::data::fastmath::exp_nonpos_f32;
use crate::models::layers::NORM_EPS;
use crate::models::params::HostParam;

/// Rows per block.
pub const BLOCK: usize = 256;

/// What the trunk's last hidden layer y feeds (see [`super::mlp::Output`]); in both forms the
/// network output is F = g·o per example.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Head {
    /// o = Ŵ_out·mp_silu(y), an MP-linear layer to 2 outputs.
    Denoiser,
    /// The published log-density form. With z = g·mean_j(y_j²)/σ and the −½‖x̂‖² term,
    /// F = (D − c_skip·x)/c_out = (σ/σ_data)·∂z/∂x̂, which is g·o with
    /// o = ρ·(∂Σ_j y_j²/∂x̂)/2 and ρ = 2/(width·σ_data): σ cancels. The kernel computes the
    /// input gradient by an explicit backward chain and differentiates through it (double
    /// backpropagation by hand).
    Energy { rho: f32 },
}

impl Head {
    /// The energy head of a trunk of `width` units for data of std `sigma_data`.
    pub fn energy(width: usize, sigma_data: f64) -> Self {
        Head::Energy {
            rho: (2.0 / (width as f64 * sigma_data)) as f32,
        }
    }
}

/// C ← A·B + beta·C for row-major slices with explicit strides (see `matrixmultiply::sgemm`).
#[allow(clippy::too_many_arguments)]
fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    beta: f32,
    c: &mut [f32],
) {
    assert!(
        m == 0 || k == 0 || (m - 1) * rsa + (k - 1) * csa < a.len(),
        "gemm: A too small"
    );
    assert!(
        k == 0 || n == 0 || (k - 1) * rsb + (n - 1) * csb < b.len(),
        "gemm: B too small"
    );
    assert!(c.len() >= m * n, "gemm: C too small");
    // SAFETY: the asserts above keep every index the kernel touches inside the slices; C is
    // row-major [m, n] and does not alias A or B (distinct borrows).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// σ(h) for a slice, via exp of a non-positive argument.
#[inline(always)]
fn sigmoid(h: f32) -> f32 {
    let e = exp_nonpos_f32(-h.abs());
    if h >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    }
}

/// The network's weights, normalised for use.
struct Normalized {
    /// Ŵ per layer (input, hidden…, out), row-major [out, in].
    w: Vec<Vec<f32>>,
    /// Row norms ‖w_row‖ of the stored weights.
    norms: Vec<Vec<f32>>,
    shapes: Vec<(usize, usize)>,
    gain: f32,
}

impl Normalized {
    fn new(params: &[HostParam]) -> Self {
        let (layers, gain) = params.split_at(params.len() - 1);
        let mut w = Vec::new();
        let mut norms = Vec::new();
        let mut shapes = Vec::new();
        for p in layers {
            let (rows, cols) = (p.shape[0], p.shape[1]);
            let mut nw = p.data.clone();
            let mut ns = Vec::with_capacity(rows);
            for r in 0..rows {
                let row = &mut nw[r * cols..(r + 1) * cols];
                let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
                let d = n + NORM_EPS as f32;
                row.iter_mut().for_each(|v| *v /= d);
                ns.push(n);
            }
            w.push(nw);
            norms.push(ns);
            shapes.push((rows, cols));
        }
        Self {
            w,
            norms,
            shapes,
            gain: gain[0].data[0],
        }
    }
}

/// Forward activations of one block of rows.
struct Forward {
    /// Pre-activations h_0..h_L of the trunk, each [rows, width].
    h: Vec<Vec<f32>>,
    /// σ(h_l) for each.
    sig: Vec<Vec<f32>>,
    /// a_1..a_{L+1} = mp_silu(h_0..h_L).
    a: Vec<Vec<f32>>,
    /// Output layer before the gain, [rows, 2].
    o: Vec<f32>,
}

/// Forward pass of one block, on the widest vector unit the CPU has. The variants compile
/// the same code (no fused multiply-add contraction), so they give bit-identical results;
/// the element-wise activations (a vectorised single-precision `exp`) get faster.
fn forward(net: &Normalized, features: &[f32], rows: usize) -> Forward {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
        {
            // SAFETY: the CPU supports the features `forward_avx512` is compiled for.
            return unsafe { forward_avx512(net, features, rows) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports the features `forward_avx2` is compiled for.
            return unsafe { forward_avx2(net, features, rows) };
        }
    }
    forward_generic(net, features, rows)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx2")]
unsafe fn forward_avx512(net: &Normalized, features: &[f32], rows: usize) -> Forward {
    forward_generic(net, features, rows)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn forward_avx2(net: &Normalized, features: &[f32], rows: usize) -> Forward {
    forward_generic(net, features, rows)
}

/// a = mp_silu(h) and σ(h), element-wise, as plain indexed loops so that they vectorise
/// inside the target-feature variants.
#[inline(always)]
fn activate(h: &[f32], s: &mut [f32], act: &mut [f32]) {
    let n = h.len().min(s.len()).min(act.len());
    let (h, s, act) = (&h[..n], &mut s[..n], &mut act[..n]);
    for j in 0..n {
        let sv = sigmoid(h[j]);
        s[j] = sv;
        act[j] = h[j] * sv / 0.596;
    }
}

#[inline(always)]
fn forward_generic(net: &Normalized, features: &[f32], rows: usize) -> Forward {
    let nl = net.w.len(); // input + hidden + out
    let width = net.shapes[0].0;
    let mut h = Vec::with_capacity(nl - 1);
    let mut sig = Vec::with_capacity(nl - 1);
    let mut a = Vec::with_capacity(nl - 1);
    let mut cur = vec![0.0f32; rows * width];
    let fin = net.shapes[0].1;
    gemm(
        rows,
        fin,
        width,
        features,
        (fin, 1),
        &net.w[0],
        (1, fin),
        0.0,
        &mut cur,
    ); // [rows, width]
    for l in 1..nl {
        let mut s = vec![0.0f32; cur.len()];
        let mut act = vec![0.0f32; cur.len()];
        activate(&cur, &mut s, &mut act);
        let (out_dim, in_dim) = net.shapes[l];
        let mut next = vec![0.0f32; rows * out_dim];
        gemm(
            rows,
            in_dim,
            out_dim,
            &act,
            (in_dim, 1),
            &net.w[l],
            (1, in_dim),
            0.0,
            &mut next,
        );
        h.push(cur);
        sig.push(s);
        a.push(act);
        cur = next;
    }
    Forward { h, sig, a, o: cur }
}

/// Per-example losses and the gradient of their mean, from one pass over the batch.
pub struct FusedStep {
    pub weighted: Vec<f32>,
    pub x0_error: Vec<f32>,
    /// Gradients in parameter order (layers…, gain).
    pub grads: Vec<Vec<f32>>,
}

/// Per-example inputs of the fused kernel: features [n, 4], F-space targets [n, 2], and the
/// per-example factors λ·c_out² (`weight`) and c_out² (`to_x0`).
pub struct FusedBatch<'a> {
    pub features: &'a [f32],
    pub target: &'a [f32],
    pub weight: &'a [f32],
    pub to_x0: &'a [f32],
}

/// The input-gradient chain of the energy head for one block: δ_L = y, e_l = δ_l·Ŵ_l,
/// δ_{l−1} = e_l ⊙ mp_silu'(h_{l−1}), and o = ρ·(δ_0·Ŵ_0)[:, 0..2].
struct Chain {
    /// δ_0..δ_L, each [rows, width].
    deltas: Vec<Vec<f32>>,
    /// e_1..e_L (index l − 1), each [rows, width].
    es: Vec<Vec<f32>>,
    /// [rows, 2].
    o: Vec<f32>,
}

/// mp_silu'(h) from h and σ(h).
#[inline(always)]
fn silu_grad(h: f32, s: f32) -> f32 {
    s * (1.0 + h * (1.0 - s)) / 0.596
}

/// mp_silu''(h) from h and σ(h): σ(1 − σ)(2 + h(1 − 2σ))/0.596.
#[inline(always)]
fn silu_grad2(h: f32, s: f32) -> f32 {
    s * (1.0 - s) * (2.0 + h * (1.0 - 2.0 * s)) / 0.596
}

#[inline(always)]
fn energy_chain(net: &Normalized, f: &Forward, rows: usize, rho: f32) -> Chain {
    let nl = net.w.len();
    let (width, fin) = net.shapes[0];
    let mut deltas = vec![Vec::new(); nl];
    let mut es = vec![Vec::new(); nl - 1];
    deltas[nl - 1] = f.o.clone(); // δ_L = y
    for l in (1..nl).rev() {
        let (out_dim, in_dim) = net.shapes[l];
        let mut e = vec![0.0f32; rows * in_dim];
        gemm(
            rows,
            out_dim,
            in_dim,
            &deltas[l],
            (out_dim, 1),
            &net.w[l],
            (in_dim, 1),
            0.0,
            &mut e,
        ); // [rows, in]
        let (h, s) = (&f.h[l - 1], &f.sig[l - 1]);
        let d: Vec<f32> = (0..e.len()).map(|j| e[j] * silu_grad(h[j], s[j])).collect();
        es[l - 1] = e;
        deltas[l - 1] = d;
    }
    let mut o = vec![0.0f32; rows * 2];
    gemm(
        rows,
        width,
        2,
        &deltas[0],
        (width, 1),
        &net.w[0],
        (fin, 1),
        0.0,
        &mut o,
    ); // [rows, 2]: the x̂ columns of δ_0·Ŵ_0
    o.iter_mut().for_each(|v| *v *= rho);
    Chain { deltas, es, o }
}

/// o per example for one block under `head`, `[rows, 2]`, with the forward activations.
#[inline(always)]
fn block_output(
    net: &Normalized,
    features: &[f32],
    rows: usize,
    head: Head,
) -> (Forward, Option<Chain>) {
    let f = forward(net, features, rows);
    let chain = match head {
        Head::Denoiser => None,
        Head::Energy { rho } => Some(energy_chain(net, &f, rows, rho)),
    };
    (f, chain)
}

/// Forward only: the network output F = g·o, `[n, 2]`, for features `[n, 4]`.
pub fn predict(params: &[HostParam], features: &[f32], head: Head) -> Vec<f32> {
    let net = Normalized::new(params);
    let n = features.len() / 4;
    let parts: Vec<Vec<f32>> = (0..n.div_ceil(BLOCK))
        .into_par_iter()
        .map(|blk| {
            let (lo, hi) = (blk * BLOCK, ((blk + 1) * BLOCK).min(n));
            let (f, chain) = block_output(&net, &features[lo * 4..hi * 4], hi - lo, head);
            let o = chain.as_ref().map_or(&f.o, |c| &c.o);
            o.iter().map(|v| v * net.gain).collect()
        })
        .collect();
    parts.concat()
}

/// Forward only: per-example (weighted, x0-error) losses.
pub fn losses(params: &[HostParam], b: &FusedBatch, head: Head) -> (Vec<f32>, Vec<f32>) {
    let net = Normalized::new(params);
    let n = b.weight.len();
    let parts: Vec<(Vec<f32>, Vec<f32>)> = (0..n.div_ceil(BLOCK))
        .into_par_iter()
        .map(|blk| {
            let (lo, hi) = (blk * BLOCK, ((blk + 1) * BLOCK).min(n));
            let (f, chain) = block_output(&net, &b.features[lo * 4..hi * 4], hi - lo, head);
            let o = chain.as_ref().map_or(&f.o, |c| &c.o);
            per_row(&net, o, b, lo, hi)
        })
        .collect();
    let mut w = Vec::with_capacity(n);
    let mut x = Vec::with_capacity(n);
    for (a, c) in parts {
        w.extend(a);
        x.extend(c);
    }
    (w, x)
}

fn per_row(
    net: &Normalized,
    o: &[f32],
    b: &FusedBatch,
    lo: usize,
    hi: usize,
) -> (Vec<f32>, Vec<f32>) {
    (lo..hi)
        .map(|i| {
            let r = i - lo;
            let e0 = net.gain * o[2 * r] - b.target[2 * i];
            let e1 = net.gain * o[2 * r + 1] - b.target[2 * i + 1];
            let sq = 0.5 * (e0 * e0 + e1 * e1);
            (b.weight[i] * sq, b.to_x0[i] * sq)
        })
        .unzip()
}

/// One block's (weighted losses, x0-errors, weight gradients, gain gradient).
type BlockGrads = (Vec<f32>, Vec<f32>, Vec<Vec<f32>>, f32);

/// Forward and backward over the batch: per-example losses and ∇ of mean(weighted).
pub fn loss_and_grads(params: &[HostParam], b: &FusedBatch, head: Head) -> FusedStep {
    let net = Normalized::new(params);
    let n = b.weight.len();
    let inv_n = 1.0 / n as f32;
    let blocks: Vec<BlockGrads> = (0..n.div_ceil(BLOCK))
        .into_par_iter()
        .map(|blk| {
            let (lo, hi) = (blk * BLOCK, ((blk + 1) * BLOCK).min(n));
            block_grads(&net, b, lo, hi, head, inv_n)
        })
        .collect();
    let mut weighted = Vec::with_capacity(n);
    let mut x0_error = Vec::with_capacity(n);
    let mut wgrads: Vec<Vec<f32>> = net.shapes.iter().map(|&(r, c)| vec![0.0; r * c]).collect();
    let mut g_total = 0.0f32;
    for (w, x, g, gb) in blocks {
        weighted.extend(w);
        x0_error.extend(x);
        for (acc, part) in wgrads.iter_mut().zip(g) {
            acc.iter_mut().zip(part).for_each(|(a, p)| *a += p);
        }
        g_total += gb;
    }
    // Through the row normalisation Ŵ = w/(‖w‖ + ε):
    // w̄ = Ŵ̄/d − w·(Ŵ̄·w)/(‖w‖·d²), d = ‖w‖ + ε.
    let (layers, _) = params.split_at(params.len() - 1);
    let mut grads = Vec::with_capacity(params.len());
    for (l, p) in layers.iter().enumerate() {
        let (rows, cols) = net.shapes[l];
        let mut g = wgrads[l].clone();
        for r in 0..rows {
            let nrm = net.norms[l][r];
            let d = nrm + NORM_EPS as f32;
            let w = &p.data[r * cols..(r + 1) * cols];
            let gr = &mut g[r * cols..(r + 1) * cols];
            let dot: f32 = gr.iter().zip(w).map(|(a, b)| a * b).sum();
            let c = if nrm > 0.0 { dot / (nrm * d * d) } else { 0.0 };
            for (gv, wv) in gr.iter_mut().zip(w) {
                *gv = *gv / d - wv * c;
            }
        }
        grads.push(g);
    }
    grads.push(vec![g_total]);
    FusedStep {
        weighted,
        x0_error,
        grads,
    }
}

/// One block's forward and backward pass, on the widest vector unit the CPU has (the
/// variants compile the same code, so results are bit-identical; the element-wise loops of
/// the backward passes get wider).
fn block_grads(
    net: &Normalized,
    b: &FusedBatch,
    lo: usize,
    hi: usize,
    head: Head,
    inv_n: f32,
) -> BlockGrads {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
        {
            // SAFETY: the CPU supports the features `block_grads_avx512` is compiled for.
            return unsafe { block_grads_avx512(net, b, lo, hi, head, inv_n) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports the features `block_grads_avx2` is compiled for.
            return unsafe { block_grads_avx2(net, b, lo, hi, head, inv_n) };
        }
    }
    block_grads_generic(net, b, lo, hi, head, inv_n)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx2")]
unsafe fn block_grads_avx512(
    net: &Normalized,
    b: &FusedBatch,
    lo: usize,
    hi: usize,
    head: Head,
    inv_n: f32,
) -> BlockGrads {
    block_grads_generic(net, b, lo, hi, head, inv_n)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn block_grads_avx2(
    net: &Normalized,
    b: &FusedBatch,
    lo: usize,
    hi: usize,
    head: Head,
    inv_n: f32,
) -> BlockGrads {
    block_grads_generic(net, b, lo, hi, head, inv_n)
}

#[inline(always)]
fn block_grads_generic(
    net: &Normalized,
    b: &FusedBatch,
    lo: usize,
    hi: usize,
    head: Head,
    inv_n: f32,
) -> BlockGrads {
    let rows = hi - lo;
    let feats = &b.features[lo * 4..hi * 4];
    let (f, chain) = block_output(net, feats, rows, head);
    let o = chain.as_ref().map_or(&f.o, |c| &c.o);
    let (weighted, x0) = per_row(net, o, b, lo, hi);
    // dL/dF = w_i·(F − F_t)/n (mean over the 2 dimensions and the batch).
    let mut o_bar = vec![0.0f32; rows * 2];
    let mut g_bar = 0.0f32;
    for r in 0..rows {
        let i = lo + r;
        for d in 0..2 {
            let e = net.gain * o[2 * r + d] - b.target[2 * i + d];
            let fb = b.weight[i] * e * inv_n;
            g_bar += fb * o[2 * r + d];
            o_bar[2 * r + d] = net.gain * fb;
        }
    }
    let mut grads: Vec<Vec<f32>> = net.shapes.iter().map(|&(r, c)| vec![0.0; r * c]).collect();
    match (&chain, head) {
        (Some(c), Head::Energy { rho }) => {
            energy_backward(net, &f, c, feats, rows, &o_bar, rho, &mut grads)
        }
        _ => forward_backward(net, &f, feats, rows, o_bar, &[], &mut grads),
    }
    (weighted, x0, grads, g_bar)
}

/// Back through the forward pass, top down: adds the weight gradients (before the
/// normalisation) to `grads` (which start at zero), given `top`, the gradient w.r.t. the
/// last layer's output, and `extra[l]`, any gradient w.r.t. h_l that arrives by another
/// path (the energy head's second backward pass; empty for the denoiser head). For the
/// denoiser head the last layer is the output layer and `top` is ō = ∂L/∂o.
#[inline(always)]
fn forward_backward(
    net: &Normalized,
    f: &Forward,
    feats: &[f32],
    rows: usize,
    top: Vec<f32>,
    extra: &[Vec<f32>],
    grads: &mut [Vec<f32>],
) {
    let nl = net.w.len();
    let mut up = top; // gradient w.r.t. the current layer's output, [rows, out]
    for l in (1..nl).rev() {
        let (out_dim, in_dim) = net.shapes[l];
        // Ŵ̄_l += upᵀ·a_l : [out, in]
        gemm(
            out_dim,
            rows,
            in_dim,
            &up,
            (1, out_dim),
            &f.a[l - 1],
            (in_dim, 1),
            1.0,
            &mut grads[l],
        );
        // ā = up·Ŵ_l : [rows, in]
        let mut a_bar = vec![0.0f32; rows * in_dim];
        gemm(
            rows,
            out_dim,
            in_dim,
            &up,
            (out_dim, 1),
            &net.w[l],
            (in_dim, 1),
            0.0,
            &mut a_bar,
        );
        // h̄_{l−1} = ā ⊙ mp_silu'(h_{l−1}) (+ the other path's part)
        let (h, s) = (&f.h[l - 1], &f.sig[l - 1]);
        for j in 0..a_bar.len() {
            a_bar[j] *= silu_grad(h[j], s[j]);
        }
        if let Some(e) = extra.get(l - 1) {
            a_bar.iter_mut().zip(e).for_each(|(a, b)| *a += b);
        }
        up = a_bar;
    }
    let (width, fin) = net.shapes[0];
    gemm(
        width,
        rows,
        fin,
        &up,
        (1, width),
        feats,
        (fin, 1),
        1.0,
        &mut grads[0],
    );
}

/// Weight gradients (before the normalisation) of the energy head, from ō = ∂L/∂o: first
/// back through the input-gradient chain (δ̄, ē, and the mp_silu'' terms into h̄), then back
/// through the forward pass.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn energy_backward(
    net: &Normalized,
    f: &Forward,
    c: &Chain,
    feats: &[f32],
    rows: usize,
    o_bar: &[f32],
    rho: f32,
    grads: &mut [Vec<f32>],
) {
    let nl = net.w.len();
    let (width, fin) = net.shapes[0];
    let q_bar: Vec<f32> = o_bar.iter().map(|v| v * rho).collect(); // [rows, 2]
                                                                   // δ̄_0 = q̄·Ŵ_0[:, 0..2]ᵀ : [rows, width]
    let mut d_bar = vec![0.0f32; rows * width];
    gemm(
        rows,
        2,
        width,
        &q_bar,
        (2, 1),
        &net.w[0],
        (1, fin),
        0.0,
        &mut d_bar,
    );
    // Ŵ̄_0[:, 0..2] += δ_0ᵀ·q̄
    let mut g0 = vec![0.0f32; width * 2];
    gemm(
        width,
        rows,
        2,
        &c.deltas[0],
        (1, width),
        &q_bar,
        (2, 1),
        0.0,
        &mut g0,
    );
    for i in 0..width {
        grads[0][i * fin] += g0[2 * i];
        grads[0][i * fin + 1] += g0[2 * i + 1];
    }
    // h̄_0..h̄_L
    let mut h_bar: Vec<Vec<f32>> = vec![vec![0.0f32; rows * width]; nl];
    for l in 1..nl {
        let (out_dim, in_dim) = net.shapes[l];
        let (h, s, e) = (&f.h[l - 1], &f.sig[l - 1], &c.es[l - 1]);
        let hb = &mut h_bar[l - 1];
        let mut e_bar = vec![0.0f32; rows * in_dim];
        for j in 0..e_bar.len() {
            e_bar[j] = d_bar[j] * silu_grad(h[j], s[j]);
            hb[j] += d_bar[j] * e[j] * silu_grad2(h[j], s[j]);
        }
        // δ̄_l = ē·Ŵ_lᵀ : [rows, out]
        let mut next = vec![0.0f32; rows * out_dim];
        gemm(
            rows,
            in_dim,
            out_dim,
            &e_bar,
            (in_dim, 1),
            &net.w[l],
            (1, in_dim),
            0.0,
            &mut next,
        );
        // Ŵ̄_l += δ_lᵀ·ē : [out, in]
        gemm(
            out_dim,
            rows,
            in_dim,
            &c.deltas[l],
            (1, out_dim),
            &e_bar,
            (in_dim, 1),
            1.0,
            &mut grads[l],
        );
        d_bar = next;
    }
    // δ_L = y = h_L, then back through the forward pass.
    let mut top = h_bar.pop().unwrap_or_default();
    top.iter_mut().zip(&d_bar).for_each(|(a, b)| *a += b);
    forward_backward(net, f, feats, rows, top, &h_bar, grads);
}
