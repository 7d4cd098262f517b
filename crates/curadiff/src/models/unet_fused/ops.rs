//! Element-wise and per-pixel operations of the fused U-Net on NHWC activations, each with its
//! backward pass: MP-SiLU, pixel norm, `mp_sum`, `mp_cat`, the embedding modulation, 2×2
//! average pooling and nearest 2× upsampling (EDM2, `networks_edm2.py`; see
//! [`crate::models::unet`] for the same operations on burn tensors).

use crate::data::fastmath::exp_nonpos_f32;
use crate::models::layers::NORM_EPS;

/// 1 / 0.596, the MP-SiLU scale.
const SILU_SCALE: f32 = 1.0 / 0.596;

#[inline(always)]
fn sigmoid(h: f32) -> f32 {
    let e = exp_nonpos_f32(-h.abs());
    if h >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    }
}

/// out = mp_silu(x) = x·σ(x)/0.596.
#[inline(always)]
pub fn silu_fwd(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = v * sigmoid(v) * SILU_SCALE;
    }
}

/// dx = g·mp_silu'(x) (overwrite, or add when `acc`).
#[inline(always)]
pub fn silu_bwd(x: &[f32], g: &[f32], dx: &mut [f32], acc: bool) {
    for ((d, &v), &gv) in dx.iter_mut().zip(x).zip(g) {
        let s = sigmoid(v);
        let t = gv * s * (1.0 + v * (1.0 - s)) * SILU_SCALE;
        *d = if acc { *d + t } else { t };
    }
}

/// Pixel norm over the `c` channels of each pixel: out = x / (ε + ‖x‖/√c).
#[inline(always)]
pub fn pixel_norm_fwd(x: &[f32], c: usize, out: &mut [f32]) {
    let rc = 1.0 / (c as f32).sqrt();
    for (xp, op) in x.chunks_exact(c).zip(out.chunks_exact_mut(c)) {
        let n = xp.iter().map(|v| v * v).sum::<f32>().sqrt();
        let inv = 1.0 / (NORM_EPS as f32 + n * rc);
        for (o, v) in op.iter_mut().zip(xp) {
            *o = v * inv;
        }
    }
}

/// Backward of [`pixel_norm_fwd`]: with d = ε + ‖x‖/√c,
/// dx = g/d − x·(g·x)/(d²·√c·‖x‖).
#[inline(always)]
pub fn pixel_norm_bwd(x: &[f32], g: &[f32], c: usize, dx: &mut [f32]) {
    let rc = 1.0 / (c as f32).sqrt();
    for ((xp, gp), dp) in x
        .chunks_exact(c)
        .zip(g.chunks_exact(c))
        .zip(dx.chunks_exact_mut(c))
    {
        let n = xp.iter().map(|v| v * v).sum::<f32>().sqrt();
        let d = NORM_EPS as f32 + n * rc;
        let gx: f32 = xp.iter().zip(gp).map(|(a, b)| a * b).sum();
        let k = if n > 0.0 { gx * rc / (d * d * n) } else { 0.0 };
        for ((o, &xv), &gv) in dp.iter_mut().zip(xp).zip(gp) {
            *o = gv / d - xv * k;
        }
    }
}

/// The two coefficients of `mp_sum(a, b, t) = ca·a + cb·b`.
#[inline(always)]
pub fn mp_sum_coefs(t: f64) -> (f32, f32) {
    let s = ((1.0 - t).powi(2) + t * t).sqrt();
    (((1.0 - t) / s) as f32, (t / s) as f32)
}

/// The two coefficients of `mp_cat(a, b, t)` for `na` and `nb` channels.
#[inline(always)]
pub fn mp_cat_coefs(na: usize, nb: usize, t: f64) -> (f32, f32) {
    let (na, nb) = (na as f64, nb as f64);
    let c = ((na + nb) / ((1.0 - t).powi(2) + t * t)).sqrt();
    (
        (c / na.sqrt() * (1.0 - t)) as f32,
        (c / nb.sqrt() * t) as f32,
    )
}

/// out[p] = [ca·a[p] (na channels), cb·b[p] (nb channels)] for every pixel p.
#[inline(always)]
pub fn cat_fwd(a: &[f32], na: usize, b: &[f32], nb: usize, (ca, cb): (f32, f32), out: &mut [f32]) {
    for ((ap, bp), op) in a
        .chunks_exact(na)
        .zip(b.chunks_exact(nb))
        .zip(out.chunks_exact_mut(na + nb))
    {
        for (o, v) in op[..na].iter_mut().zip(ap) {
            *o = ca * v;
        }
        for (o, v) in op[na..].iter_mut().zip(bp) {
            *o = cb * v;
        }
    }
}

/// Backward of [`cat_fwd`]: da = ca·g[..na], db = cb·g[na..].
#[inline(always)]
pub fn cat_bwd(
    g: &[f32],
    na: usize,
    nb: usize,
    (ca, cb): (f32, f32),
    da: &mut [f32],
    db: &mut [f32],
) {
    for ((gp, ap), bp) in g
        .chunks_exact(na + nb)
        .zip(da.chunks_exact_mut(na))
        .zip(db.chunks_exact_mut(nb))
    {
        for (o, v) in ap.iter_mut().zip(&gp[..na]) {
            *o = ca * v;
        }
        for (o, v) in bp.iter_mut().zip(&gp[na..]) {
            *o = cb * v;
        }
    }
}

/// out = ca·a + cb·b, clamped to ±`clip`.
#[inline(always)]
pub fn sum_clamp_fwd(a: &[f32], b: &[f32], (ca, cb): (f32, f32), clip: f32, out: &mut [f32]) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = (ca * x + cb * y).clamp(-clip, clip);
    }
}

/// Zeroes `g` where the clamp of [`sum_clamp_fwd`] was active (|out| reached `clip`).
#[inline(always)]
pub fn clamp_bwd(out: &[f32], clip: f32, g: &mut [f32]) {
    for (gv, &o) in g.iter_mut().zip(out) {
        if o.abs() >= clip {
            *gv = 0.0;
        }
    }
}

/// m = y·c per image and channel: `y` is `[n, hw, ch]`, `c` is `[n, ch]`.
#[inline(always)]
pub fn modulate_fwd(y: &[f32], c: &[f32], hw: usize, ch: usize, m: &mut [f32]) {
    for ((yi, mi), ci) in y
        .chunks_exact(hw * ch)
        .zip(m.chunks_exact_mut(hw * ch))
        .zip(c.chunks_exact(ch))
    {
        for (yp, mp) in yi.chunks_exact(ch).zip(mi.chunks_exact_mut(ch)) {
            for ((o, v), s) in mp.iter_mut().zip(yp).zip(ci) {
                *o = v * s;
            }
        }
    }
}

/// Backward of [`modulate_fwd`]: dy = dm·c, dc[n, ch] = Σ_pixels dm·y (overwrites both).
#[inline(always)]
pub fn modulate_bwd(
    y: &[f32],
    c: &[f32],
    dm: &[f32],
    hw: usize,
    ch: usize,
    dy: &mut [f32],
    dc: &mut [f32],
) {
    for ((((yi, ci), dmi), dyi), dci) in y
        .chunks_exact(hw * ch)
        .zip(c.chunks_exact(ch))
        .zip(dm.chunks_exact(hw * ch))
        .zip(dy.chunks_exact_mut(hw * ch))
        .zip(dc.chunks_exact_mut(ch))
    {
        dci.iter_mut().for_each(|v| *v = 0.0);
        for ((yp, gp), dp) in yi
            .chunks_exact(ch)
            .zip(dmi.chunks_exact(ch))
            .zip(dyi.chunks_exact_mut(ch))
        {
            for j in 0..ch {
                dp[j] = gp[j] * ci[j];
                dci[j] += gp[j] * yp[j];
            }
        }
    }
}

/// 2×2 average pooling of `[n, h, w, c]` into `[n, h/2, w/2, c]`.
#[inline(always)]
pub fn down_fwd(x: &[f32], n: usize, h: usize, w: usize, c: usize, out: &mut [f32]) {
    let (h2, w2) = (h / 2, w / 2);
    for i in 0..n {
        for y in 0..h2 {
            for xx in 0..w2 {
                let o = ((i * h2 + y) * w2 + xx) * c;
                let p00 = ((i * h + 2 * y) * w + 2 * xx) * c;
                let p10 = p00 + w * c;
                for j in 0..c {
                    out[o + j] =
                        0.25 * ((x[p00 + j] + x[p00 + c + j]) + (x[p10 + j] + x[p10 + c + j]));
                }
            }
        }
    }
}

/// Backward of [`down_fwd`]: each input pixel gets a quarter of its output's gradient.
#[inline(always)]
pub fn down_bwd(g: &[f32], n: usize, h: usize, w: usize, c: usize, dx: &mut [f32]) {
    let (h2, w2) = (h / 2, w / 2);
    for i in 0..n {
        for y in 0..h {
            for xx in 0..w {
                let o = ((i * h2 + y / 2) * w2 + xx / 2) * c;
                let p = ((i * h + y) * w + xx) * c;
                for j in 0..c {
                    dx[p + j] = 0.25 * g[o + j];
                }
            }
        }
    }
}

/// Nearest 2× upsampling of `[n, h, w, c]` into `[n, 2h, 2w, c]`.
#[inline(always)]
pub fn up_fwd(x: &[f32], n: usize, h: usize, w: usize, c: usize, out: &mut [f32]) {
    let (h2, w2) = (2 * h, 2 * w);
    for i in 0..n {
        for y in 0..h2 {
            for xx in 0..w2 {
                let o = ((i * h2 + y) * w2 + xx) * c;
                let p = ((i * h + y / 2) * w + xx / 2) * c;
                out[o..o + c].copy_from_slice(&x[p..p + c]);
            }
        }
    }
}

/// Backward of [`up_fwd`]: each input pixel sums the gradients of its four copies.
#[inline(always)]
pub fn up_bwd(g: &[f32], n: usize, h: usize, w: usize, c: usize, dx: &mut [f32]) {
    let (h2, w2) = (2 * h, 2 * w);
    for i in 0..n {
        for y in 0..h {
            for xx in 0..w {
                let p = ((i * h + y) * w + xx) * c;
                let o00 = ((i * h2 + 2 * y) * w2 + 2 * xx) * c;
                let o10 = o00 + w2 * c;
                for j in 0..c {
                    dx[p + j] = (g[o00 + j] + g[o00 + c + j]) + (g[o10 + j] + g[o10 + c + j]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central-difference check of a scalar function's gradient at `x` along every input.
    fn check(f: &dyn Fn(&[f32]) -> f64, x: &[f32], grad: &[f32]) {
        let h = 1e-2f32;
        for i in 0..x.len() {
            let mut p = x.to_vec();
            p[i] += h;
            let mut m = x.to_vec();
            m[i] -= h;
            let fd = (f(&p) - f(&m)) / (2.0 * h as f64);
            assert!(
                (fd - grad[i] as f64).abs() < 2e-3 * (1.0 + fd.abs()),
                "input {i}: analytic {} vs differences {fd}",
                grad[i]
            );
        }
    }

    #[test]
    fn backward_passes_match_finite_differences() {
        let x: Vec<f32> = (0..24)
            .map(|i| ((i * 37 % 17) as f32 - 8.0) / 4.0)
            .collect();
        let g: Vec<f32> = (0..24).map(|i| ((i * 11 % 7) as f32 - 3.0) / 3.0).collect();
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(u, v)| (u * v) as f64).sum();
        // MP-SiLU.
        let f = |x: &[f32]| {
            let mut o = vec![0.0; x.len()];
            silu_fwd(x, &mut o);
            dot(&o, &g)
        };
        let mut dx = vec![0.0; 24];
        silu_bwd(&x, &g, &mut dx, false);
        check(&f, &x, &dx);
        // Pixel norm over 6 channels.
        let f = |x: &[f32]| {
            let mut o = vec![0.0; x.len()];
            pixel_norm_fwd(x, 6, &mut o);
            dot(&o, &g)
        };
        pixel_norm_bwd(&x, &g, 6, &mut dx);
        check(&f, &x, &dx);
        // Average pooling and upsampling of [1, 2, 4, 3] / [1, 2, 2, 3]·2.
        let f = |x: &[f32]| {
            let mut o = vec![0.0; 6];
            down_fwd(x, 1, 2, 4, 3, &mut o);
            dot(&o, &g[..6])
        };
        down_bwd(&g[..6], 1, 2, 4, 3, &mut dx);
        check(&f, &x, &dx);
        let f = |x: &[f32]| {
            let mut o = vec![0.0; 24];
            up_fwd(x, 1, 1, 2, 3, &mut o);
            dot(&o, &g)
        };
        let mut du = vec![0.0; 6];
        up_bwd(&g, 1, 1, 2, 3, &mut du);
        check(&f, &x[..6], &du);
        // Modulation of [2 images, 4 pixels, 3 channels] by c [2, 3]: gradient in c.
        let y = x.clone();
        let f = |c: &[f32]| {
            let mut o = vec![0.0; 24];
            modulate_fwd(&y, c, 4, 3, &mut o);
            dot(&o, &g)
        };
        let c = [0.5, -1.0, 2.0, 1.5, 0.25, -0.75];
        let (mut dy, mut dc) = (vec![0.0; 24], vec![0.0; 6]);
        modulate_bwd(&y, &c, &g, 4, 3, &mut dy, &mut dc);
        check(&f, &c, &dc);
        assert!((dy[4] - g[4] * c[1]).abs() < 1e-7);
    }

    #[test]
    fn pooling_and_concatenation_by_hand() {
        // One 2×2 image with channels (1, 10): the mean is (2.5, 25).
        let x = [1.0, 10.0, 2.0, 20.0, 3.0, 30.0, 4.0, 40.0];
        let mut o = [0.0; 2];
        down_fwd(&x, 1, 2, 2, 2, &mut o);
        assert_eq!(o, [2.5, 25.0]);
        // mp_cat of 1 and 3 channels at t = 0.5: c = √(4/0.5) = √8; parts √8/1·0.5, √8/√3·0.5.
        let (ca, cb) = mp_cat_coefs(1, 3, 0.5);
        assert!((ca - 8f32.sqrt() * 0.5).abs() < 1e-6);
        assert!((cb - 8f32.sqrt() / 3f32.sqrt() * 0.5).abs() < 1e-6);
        let (sa, sb) = mp_sum_coefs(0.3);
        assert!((sa * sa + sb * sb - 1.0).abs() < 1e-6 && (sb / sa - 0.3 / 0.7).abs() < 1e-6);
    }
}
