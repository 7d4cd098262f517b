//! The forward and backward passes of the fused U-Net over one chunk of images.

use super::conv::{
    conv1_bwd_data, conv1_bwd_weight, conv1_fwd, conv3_bwd_data, conv3_bwd_weight, conv3_fwd, Shape,
};
use super::ops::{
    cat_bwd, cat_fwd, clamp_bwd, down_bwd, down_fwd, modulate_bwd, modulate_fwd, mp_cat_coefs,
    mp_sum_coefs, pixel_norm_bwd, pixel_norm_fwd, silu_bwd, silu_fwd, sum_clamp_fwd, up_bwd,
    up_fwd,
};
use super::plan::{BlockPlan, Kind, Plan, Prepared};
use super::workspace::{buf, BlockTape, Workspace};
use crate::models::gemm::sgemm;

/// EDM2 constants (see [`crate::models::unet`]).
const RES_BALANCE: f64 = 0.3;
const CLIP_ACT: f32 = 256.0;
const LABEL_BALANCE: f64 = 0.5;
const CONCAT_BALANCE: f64 = 0.5;

/// A batch as the network sees it.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub n: usize,
    /// c_in·x, `[n, C, H, W]`.
    pub x: &'a [f32],
    /// Fourier features of c_noise, `[n, noise_channels]`.
    pub noise: &'a [f32],
    /// Class vectors `[n, classes]` (one-hot, or zero for unconditional), unscaled.
    pub class: Option<&'a [f32]>,
}

fn shape(n: usize, res: usize, c: usize) -> Shape {
    Shape {
        n,
        h: res,
        w: res,
        c,
    }
}

/// The chunk `k`'s slice of a per-example array of `per` values.
pub(super) fn part(v: &[f32], k: usize, n: usize, per: usize, chunk: usize) -> &[f32] {
    let lo = (k * chunk).min(n) * per;
    let hi = ((k + 1) * chunk).min(n) * per;
    &v[lo..hi]
}

pub(super) fn chunk_inputs<'a>(
    inp: &Inputs<'a>,
    plan: &Plan,
    k: usize,
    chunk: usize,
) -> Inputs<'a> {
    let len = plan.img_channels * plan.res * plan.res;
    let n = ((k + 1) * chunk).min(inp.n) - k * chunk;
    Inputs {
        n,
        x: part(inp.x, k, inp.n, len, chunk),
        noise: part(inp.noise, k, inp.n, plan.noise_channels, chunk),
        class: inp
            .class
            .map(|c| part(c, k, inp.n, plan.num_classes, chunk)),
    }
}

/// The output `id` (0 = the input convolution, k = block k − 1).
fn output<'a>(x0: &'a [f32], done: &'a [BlockTape], id: usize) -> &'a [f32] {
    if id == 0 {
        x0
    } else {
        &done[id - 1].out
    }
}

/// Forward pass of one chunk; leaves every activation the backward pass needs in `ws` and
/// F (NHWC before the gain, in `ws.o`). Returns u(σ) per image when the network has the head.
///
/// Runs on the widest vector unit the CPU reports at run time, so that the element-wise chains
/// (MP-SiLU's `exp`, pixel norm, modulation) vectorise. The variants compile the same
/// element-wise code (Rust does not contract to fused multiply-adds), so it rounds the same in
/// each; the convolutions' kernels are picked by CPU features too (see the module docs).
pub(super) fn chunk_forward(
    plan: &Plan,
    w: &Prepared,
    inp: &Inputs,
    ws: &mut Workspace,
) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
        {
            // SAFETY: the CPU supports the features the variant is compiled for.
            return unsafe { chunk_forward_avx512(plan, w, inp, ws) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { chunk_forward_avx2(plan, w, inp, ws) };
        }
    }
    chunk_forward_generic(plan, w, inp, ws)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx2")]
unsafe fn chunk_forward_avx512(
    plan: &Plan,
    w: &Prepared,
    inp: &Inputs,
    ws: &mut Workspace,
) -> Vec<f32> {
    chunk_forward_generic(plan, w, inp, ws)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn chunk_forward_avx2(
    plan: &Plan,
    w: &Prepared,
    inp: &Inputs,
    ws: &mut Workspace,
) -> Vec<f32> {
    chunk_forward_generic(plan, w, inp, ws)
}

#[inline(always)]
fn chunk_forward_generic(plan: &Plan, w: &Prepared, inp: &Inputs, ws: &mut Workspace) -> Vec<f32> {
    let n = inp.n;
    let ce = plan.emb_channels;
    let cn = plan.noise_channels;
    // Embedding: mp_silu(mp_sum(Ŵ_n·noise, Ŵ_l·(√k·class), 0.5)).
    sgemm(
        n,
        cn,
        ce,
        inp.noise,
        (cn, 1),
        &w.w[plan.emb_noise],
        (1, cn),
        0.0,
        buf(&mut ws.e1, n * ce),
    );
    if let Some(li) = plan.emb_label {
        let k = plan.num_classes;
        let scale = (k as f32).sqrt();
        let cl = buf(&mut ws.cl, n * k);
        match inp.class {
            Some(c) => cl.iter_mut().zip(c).for_each(|(o, v)| *o = v * scale),
            None => cl.fill(0.0),
        }
        sgemm(
            n,
            k,
            ce,
            &ws.cl,
            (k, 1),
            &w.w[li],
            (1, k),
            0.0,
            buf(&mut ws.e2, n * ce),
        );
        let (ca, cb) = mp_sum_coefs(LABEL_BALANCE);
        let pre = buf(&mut ws.emb_pre, n * ce);
        for ((o, a), b) in pre.iter_mut().zip(&ws.e1).zip(&ws.e2) {
            *o = ca * a + cb * b;
        }
    } else {
        buf(&mut ws.emb_pre, n * ce).copy_from_slice(&ws.e1);
    }
    silu_fwd(&ws.emb_pre, buf(&mut ws.emb, n * ce));
    // Input: NCHW → NHWC with the constant channel.
    let (c, res) = (plan.img_channels, plan.res);
    let hw = res * res;
    let xin = buf(&mut ws.xin, n * hw * (c + 1));
    for i in 0..n {
        for p in 0..hw {
            let o = (i * hw + p) * (c + 1);
            for j in 0..c {
                xin[o + j] = inp.x[(i * c + j) * hw + p];
            }
            xin[o + c] = 1.0;
        }
    }
    let s_in = shape(n, res, c + 1);
    conv3_fwd(
        &ws.xin,
        s_in,
        &w.wt[plan.conv_in],
        &w.wt_bf16[plan.conv_in],
        plan.c0,
        &mut ws.col,
        buf(&mut ws.x0, n * hw * plan.c0),
    );
    // Blocks.
    let nb = plan.blocks.len();
    if ws.blocks.len() < nb {
        ws.blocks.resize_with(nb, BlockTape::default);
        ws.cats.resize_with(nb, Vec::new);
    }
    for (i, b) in plan.blocks.iter().enumerate() {
        let (done, rest) = ws.blocks.split_at_mut(i);
        let t = &mut rest[0];
        let prev = output(&ws.x0, done, i);
        if let Some(sf) = b.skip_from {
            let skip = output(&ws.x0, done, sf);
            let sc = b.cin - b.x_ch;
            let cat = buf(&mut ws.cats[i], n * b.res_in * b.res_in * b.cin);
            cat_fwd(
                prev,
                b.x_ch,
                skip,
                sc,
                mp_cat_coefs(b.x_ch, sc, CONCAT_BALANCE),
                cat,
            );
            block_forward(b, w, n, &ws.cats[i], &ws.emb, t, &mut ws.col, &mut ws.s[0]);
        } else {
            block_forward(b, w, n, prev, &ws.emb, t, &mut ws.col, &mut ws.s[0]);
        }
    }
    // Output convolution (its gain is applied by the caller).
    let last = output(&ws.x0, &ws.blocks, nb);
    let cl = plan.blocks.last().map_or(plan.c0, |b| b.cout);
    conv3_fwd(
        last,
        shape(n, res, cl),
        &w.wt[plan.out_conv],
        &w.wt_bf16[plan.out_conv],
        c,
        &mut ws.col,
        buf(&mut ws.o, n * hw * c),
    );
    match plan.logvar {
        Some(li) => {
            let mut u = vec![0.0f32; n];
            sgemm(n, cn, 1, inp.noise, (cn, 1), &w.w[li], (1, cn), 0.0, &mut u);
            u
        }
        None => Vec::new(),
    }
}

/// The residual branch's input size and the block's pixel count.
fn dims(b: &BlockPlan, n: usize) -> (usize, usize, usize) {
    let hw = b.res * b.res;
    let c0in = if b.kind.encoder() { b.cout } else { b.cin };
    (hw, n * hw, c0in)
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn block_forward(
    b: &BlockPlan,
    w: &Prepared,
    n: usize,
    input: &[f32],
    emb: &[f32],
    t: &mut BlockTape,
    col: &mut Vec<f32>,
    scratch: &mut Vec<f32>,
) {
    let (hw, p, c0in) = dims(b, n);
    let (cin, cout) = (b.cin, b.cout);
    let ri = b.res_in;
    let src: &[f32] = match b.kind {
        Kind::Down => {
            down_fwd(input, n, ri, ri, cin, buf(&mut t.a, p * cin));
            &t.a
        }
        Kind::Up => {
            up_fwd(input, n, ri, ri, cin, buf(&mut t.a, p * cin));
            &t.a
        }
        _ => input,
    };
    let skip = |t_xs: &mut Vec<f32>| -> bool {
        if let Some(si) = b.conv_skip {
            conv1_fwd(src, p, cin, &w.w[si], cout, buf(t_xs, p * cout));
            true
        } else {
            false
        }
    };
    let skipped = skip(&mut t.xs);
    let res_in: &[f32] = if skipped { &t.xs } else { src };
    let branch_in: &[f32] = if b.kind.encoder() {
        pixel_norm_fwd(res_in, cout, buf(&mut t.xn, p * cout));
        &t.xn
    } else {
        src
    };
    silu_fwd(branch_in, buf(&mut t.s0, p * c0in));
    conv3_fwd(
        &t.s0,
        shape(n, b.res, c0in),
        &w.wt[b.w0],
        &w.wt_bf16[b.w0],
        cout,
        col,
        buf(&mut t.y0, p * cout),
    );
    let ce = emb.len() / n;
    sgemm(
        n,
        ce,
        cout,
        emb,
        (ce, 1),
        &w.w[b.emb],
        (1, ce),
        0.0,
        buf(&mut t.lin, n * cout),
    );
    let gain = w.w[b.gain][0];
    let c = buf(&mut t.c, n * cout);
    for (o, l) in c.iter_mut().zip(&t.lin) {
        *o = l * gain + 1.0;
    }
    modulate_fwd(&t.y0, &t.c, hw, cout, buf(&mut t.m, p * cout));
    silu_fwd(&t.m, buf(&mut t.s1, p * cout));
    let y1 = buf(scratch, p * cout);
    conv3_fwd(
        &t.s1,
        shape(n, b.res, cout),
        &w.wt[b.w1],
        &w.wt_bf16[b.w1],
        cout,
        col,
        y1,
    );
    let res_part: &[f32] = if b.kind.encoder() { &t.xn } else { res_in };
    sum_clamp_fwd(
        res_part,
        y1,
        mp_sum_coefs(RES_BALANCE),
        CLIP_ACT,
        buf(&mut t.out, p * cout),
    );
}

/// Backward pass of one block: `g` holds the gradient of the block's output (and is used as
/// scratch); writes the gradient of the block's input to `d_in` and accumulates the
/// embedding's gradient into `d_emb` and the weights' into `grads`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn block_backward(
    b: &BlockPlan,
    w: &Prepared,
    n: usize,
    input: &[f32],
    emb: &[f32],
    t: &BlockTape,
    g: &mut [f32],
    d_in: &mut Vec<f32>,
    s1: &mut Vec<f32>,
    s2: &mut Vec<f32>,
    dc: &mut Vec<f32>,
    dlin: &mut Vec<f32>,
    d_emb: &mut [f32],
    col: &mut Vec<f32>,
    grads: &mut [Vec<f32>],
) {
    let (hw, p, c0in) = dims(b, n);
    let (cin, cout) = (b.cin, b.cout);
    let ri = b.res_in;
    let src: &[f32] = match b.kind {
        Kind::Down | Kind::Up => &t.a,
        _ => input,
    };
    let res_in: &[f32] = if b.conv_skip.is_some() { &t.xs } else { src };
    clamp_bwd(&t.out, CLIP_ACT, g);
    let (ca, cb) = mp_sum_coefs(RES_BALANCE);
    let dy1 = buf(s1, p * cout);
    for (d, gv) in dy1.iter_mut().zip(g.iter_mut()) {
        *d = cb * *gv;
        *gv *= ca;
    }
    let sc = shape(n, b.res, cout);
    conv3_bwd_weight(&t.s1, sc, s1, cout, col, &mut grads[b.w1]);
    conv3_bwd_data(
        s1,
        sc,
        &w.flipped[b.w1],
        &w.flipped_bf16[b.w1],
        cout,
        col,
        buf(s2, p * cout),
    );
    silu_bwd(&t.m, s2, buf(s1, p * cout), false);
    modulate_bwd(
        &t.y0,
        &t.c,
        s1,
        hw,
        cout,
        buf(s2, p * cout),
        buf(dc, n * cout),
    );
    // c = 1 + gain·lin: d gain = Σ dc·lin, d lin = gain·dc.
    let gain = w.w[b.gain][0];
    let dgain: f32 = dc.iter().zip(&t.lin).map(|(a, l)| a * l).sum();
    grads[b.gain][0] += dgain;
    let dl = buf(dlin, n * cout);
    for (o, d) in dl.iter_mut().zip(dc.iter()) {
        *o = gain * d;
    }
    let ce = emb.len() / n;
    sgemm(
        cout,
        n,
        ce,
        dlin,
        (1, cout),
        emb,
        (ce, 1),
        1.0,
        &mut grads[b.emb],
    );
    sgemm(
        n,
        cout,
        ce,
        dlin,
        (cout, 1),
        &w.w[b.emb],
        (ce, 1),
        1.0,
        d_emb,
    );
    let s0 = shape(n, b.res, c0in);
    conv3_bwd_weight(&t.s0, s0, s2, cout, col, &mut grads[b.w0]);
    conv3_bwd_data(
        s2,
        sc,
        &w.flipped[b.w0],
        &w.flipped_bf16[b.w0],
        c0in,
        col,
        buf(s1, p * c0in),
    );
    // s1 = gradient of mp_silu's output on the branch input.
    let d_src: &mut Vec<f32> = if b.kind.encoder() {
        silu_bwd(&t.xn, s1, g, true);
        pixel_norm_bwd(res_in, g, cout, buf(s2, p * cout));
        if let Some(si) = b.conv_skip {
            conv1_bwd_weight(src, p, cin, s2, cout, &mut grads[si]);
            conv1_bwd_data(s2, p, cout, &w.w[si], cin, buf(s1, p * cin));
            s1
        } else {
            s2
        }
    } else {
        silu_bwd(src, s1, buf(s2, p * cin), false);
        if let Some(si) = b.conv_skip {
            conv1_bwd_weight(src, p, cin, g, cout, &mut grads[si]);
            conv1_bwd_data(g, p, cout, &w.w[si], cin, buf(s1, p * cin));
            for (a, v) in s2.iter_mut().zip(s1.iter()) {
                *a += v;
            }
        } else {
            for (a, v) in s2.iter_mut().zip(g.iter()) {
                *a += v;
            }
        }
        s2
    };
    let di = buf(d_in, n * ri * ri * cin);
    match b.kind {
        Kind::Down => down_bwd(d_src, n, ri, ri, cin, di),
        Kind::Up => up_bwd(d_src, n, ri, ri, cin, di),
        _ => di.copy_from_slice(d_src),
    }
}

/// Backward pass of one chunk after [`chunk_forward`]: `df` is the gradient of the loss with
/// respect to F (NCHW), `du` with respect to u(σ). Accumulates into `ws.grads`. Dispatched
/// on the CPU's features like [`chunk_forward`].
pub(super) fn chunk_backward(
    plan: &Plan,
    w: &Prepared,
    inp: &Inputs,
    df: &[f32],
    du: &[f32],
    ws: &mut Workspace,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
        {
            // SAFETY: the CPU supports the features the variant is compiled for.
            return unsafe { chunk_backward_avx512(plan, w, inp, df, du, ws) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { chunk_backward_avx2(plan, w, inp, df, du, ws) };
        }
    }
    chunk_backward_generic(plan, w, inp, df, du, ws)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx2")]
unsafe fn chunk_backward_avx512(
    plan: &Plan,
    w: &Prepared,
    inp: &Inputs,
    df: &[f32],
    du: &[f32],
    ws: &mut Workspace,
) {
    chunk_backward_generic(plan, w, inp, df, du, ws)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn chunk_backward_avx2(
    plan: &Plan,
    w: &Prepared,
    inp: &Inputs,
    df: &[f32],
    du: &[f32],
    ws: &mut Workspace,
) {
    chunk_backward_generic(plan, w, inp, df, du, ws)
}

#[inline(always)]
fn chunk_backward_generic(
    plan: &Plan,
    w: &Prepared,
    inp: &Inputs,
    df: &[f32],
    du: &[f32],
    ws: &mut Workspace,
) {
    let n = inp.n;
    let (c, res) = (plan.img_channels, plan.res);
    let hw = res * res;
    let ce = plan.emb_channels;
    let cn = plan.noise_channels;
    let nb = plan.blocks.len();
    // F = gain·o: d gain = Σ dF·o, d o = gain·dF (NHWC).
    let gain = w.w[plan.out_gain][0];
    let d_o = buf(&mut ws.s[2], n * hw * c);
    let mut dgain = 0.0f32;
    for i in 0..n {
        for p in 0..hw {
            for j in 0..c {
                let g = df[(i * c + j) * hw + p];
                let k = (i * hw + p) * c + j;
                dgain += g * ws.o[k];
                d_o[k] = gain * g;
            }
        }
    }
    ws.grads[plan.out_gain][0] += dgain;
    let cl = plan.blocks.last().map_or(plan.c0, |b| b.cout);
    let last = output(&ws.x0, &ws.blocks, nb);
    let so = shape(n, res, c);
    conv3_bwd_weight(
        last,
        shape(n, res, cl),
        &ws.s[2],
        c,
        &mut ws.col,
        &mut ws.grads[plan.out_conv],
    );
    let [s0, s1, s2, s3] = &mut ws.s;
    conv3_bwd_data(
        s2,
        so,
        &w.flipped[plan.out_conv],
        &w.flipped_bf16[plan.out_conv],
        cl,
        &mut ws.col,
        buf(s0, n * hw * cl),
    );
    buf(&mut ws.d_emb, n * ce).fill(0.0);
    if ws.skip_grads.len() < nb + 1 {
        ws.skip_grads.resize_with(nb + 1, Vec::new);
    }
    let mut has_skip = vec![false; nb + 1];
    // s0 holds the gradient of the current output; s3 receives the block input's.
    let (mut g, mut d_in) = (s0, s3);
    for i in (0..nb).rev() {
        let b = &plan.blocks[i];
        if has_skip[i + 1] {
            for (a, v) in g.iter_mut().zip(&ws.skip_grads[i + 1]) {
                *a += v;
            }
        }
        let input: &[f32] = if b.skip_from.is_some() {
            &ws.cats[i]
        } else {
            output(&ws.x0, &ws.blocks, i)
        };
        block_backward(
            b,
            w,
            n,
            input,
            &ws.emb,
            &ws.blocks[i],
            g,
            d_in,
            s1,
            s2,
            &mut ws.dc,
            &mut ws.dlin,
            &mut ws.d_emb,
            &mut ws.col,
            &mut ws.grads,
        );
        if let Some(sf) = b.skip_from {
            let sc = b.cin - b.x_ch;
            let pix = n * b.res_in * b.res_in;
            let coefs = mp_cat_coefs(b.x_ch, sc, CONCAT_BALANCE);
            cat_bwd(
                d_in,
                b.x_ch,
                sc,
                coefs,
                buf(g, pix * b.x_ch),
                buf(&mut ws.skip_grads[sf], pix * sc),
            );
            has_skip[sf] = true;
        } else {
            std::mem::swap(&mut g, &mut d_in);
        }
    }
    if has_skip[0] {
        for (a, v) in g.iter_mut().zip(&ws.skip_grads[0]) {
            *a += v;
        }
    }
    conv3_bwd_weight(
        &ws.xin,
        shape(n, res, c + 1),
        g,
        plan.c0,
        &mut ws.col,
        &mut ws.grads[plan.conv_in],
    );
    // Embedding.
    let dpre = buf(s1, n * ce);
    silu_bwd(&ws.emb_pre, &ws.d_emb, dpre, false);
    let de1: &[f32] = if let Some(li) = plan.emb_label {
        let k = plan.num_classes;
        let (ca, cb) = mp_sum_coefs(LABEL_BALANCE);
        let de = buf(s2, n * ce);
        for (o, v) in de.iter_mut().zip(dpre.iter()) {
            *o = cb * v;
        }
        sgemm(
            ce,
            n,
            k,
            s2,
            (1, ce),
            &ws.cl,
            (k, 1),
            1.0,
            &mut ws.grads[li],
        );
        for v in s1.iter_mut() {
            *v *= ca;
        }
        s1
    } else {
        s1
    };
    sgemm(
        ce,
        n,
        cn,
        de1,
        (1, ce),
        inp.noise,
        (cn, 1),
        1.0,
        &mut ws.grads[plan.emb_noise],
    );
    if let Some(li) = plan.logvar {
        sgemm(
            1,
            n,
            cn,
            du,
            (1, 1),
            inp.noise,
            (cn, 1),
            1.0,
            &mut ws.grads[li],
        );
    }
}
