//! Convolutions of the fused U-Net on NHWC activations: 3×3 ("same" zero padding) by the
//! direct AVX-512 kernel of [`super::direct`] or else as an im2col matrix times the weight
//! and 1×1 as a plain product, each with its backward passes
//! for the input (a 3×3 convolution with the flipped, transposed weight) and for the weight
//! (the output gradient transposed times the im2col matrix). All products go through
//! [`crate::models::gemm::sgemm`].
//!
//! Weights are `[cout, 9·cin]` with the columns in (ky, kx, ci) order, the order of an im2col
//! row; [`to_kernel_order`] and [`from_kernel_order`] convert from and to burn's
//! `[cout, cin, ky, kx]`.

use super::{direct, direct_bf16};
use crate::models::gemm::sgemm;

/// col[p, (ky·3 + kx)·c + ci] = x[image, y + ky − 1, x + kx − 1, ci] (0 outside the image) for
/// every pixel p of `[n, h, w, c]`.
#[inline(always)]
pub fn im2col3(x: &[f32], n: usize, h: usize, w: usize, c: usize, col: &mut [f32]) {
    let k9 = 9 * c;
    let c3 = 3 * c;
    for i in 0..n {
        for y in 0..h {
            for xx in 0..w {
                let row = &mut col[((i * h + y) * w + xx) * k9..][..k9];
                for ky in 0..3 {
                    let dst = &mut row[ky * c3..(ky + 1) * c3];
                    let yy = y + ky;
                    if yy == 0 || yy > h {
                        dst.fill(0.0);
                        continue;
                    }
                    let base = (i * h + yy - 1) * w;
                    if xx >= 1 && xx + 1 < w {
                        let s = (base + xx - 1) * c;
                        dst.copy_from_slice(&x[s..s + c3]);
                    } else {
                        for kx in 0..3 {
                            let d = &mut dst[kx * c..(kx + 1) * c];
                            let xs = xx + kx;
                            if xs == 0 || xs > w {
                                d.fill(0.0);
                            } else {
                                let s = (base + xs - 1) * c;
                                d.copy_from_slice(&x[s..s + c]);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Shape of one convolution's input: `n` images of `h × w` pixels with `c` channels.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Shape {
    pub fn pixels(&self) -> usize {
        self.n * self.h * self.w
    }
    pub fn numel(&self) -> usize {
        self.pixels() * self.c
    }
}

/// out `[P, cout]` = the 3×3 convolution of x (shape `s`) with the weight `wt`
/// `[9·s.c, cout]` (Ŵᵀ of [`transpose`]): with bf16 operands by [`super::direct_bf16`] when
/// `wt_bf16` (its packed weight) is not empty, else the direct AVX-512 kernel of
/// [`super::direct`] where the CPU has it and `cout % 16 == 0`, else im2col(x)·wt. `scratch`
/// holds the padded input or the im2col matrix.
#[inline(always)]
pub fn conv3_fwd(
    x: &[f32],
    s: Shape,
    wt: &[f32],
    wt_bf16: &[u16],
    cout: usize,
    scratch: &mut Vec<f32>,
    out: &mut [f32],
) {
    if !wt_bf16.is_empty() {
        // One bf16 pair per f32 of scratch.
        let pad = grow(scratch, direct_bf16::pad_len(s));
        // SAFETY: u32 has no invalid bit patterns and the size and alignment of f32.
        let (_, pairs, _) = unsafe { pad.align_to_mut::<u32>() };
        direct_bf16::conv3(x, s, wt_bf16, cout, pairs, out);
        return;
    }
    if direct::available(cout) {
        direct::conv3(x, s, wt, cout, grow(scratch, direct::pad_len(s)), out);
        return;
    }
    let (p, k) = (s.pixels(), 9 * s.c);
    let col = grow(scratch, p * k);
    im2col3(x, s.n, s.h, s.w, s.c, col);
    sgemm(p, k, cout, col, (k, 1), wt, (cout, 1), 0.0, out);
}

/// dx `[P, cin]` of a 3×3 convolution from its output gradient dy `[P, cout]` (shape `s` with
/// `s.c = cout`) and the flipped weight `[9·cout, cin]` of [`flip`] (and its bf16 packing,
/// empty for f32): the same correlation as [`conv3_fwd`].
#[inline(always)]
pub fn conv3_bwd_data(
    dy: &[f32],
    s: Shape,
    flipped: &[f32],
    flipped_bf16: &[u16],
    cin: usize,
    scratch: &mut Vec<f32>,
    dx: &mut [f32],
) {
    conv3_fwd(dy, s, flipped, flipped_bf16, cin, scratch, dx);
}

/// dw `[cout, 9·s.c]` += dyᵀ·im2col(x) for the input x of shape `s` and the output gradient
/// dy `[P, cout]`: the direct kernel of [`super::direct`] where it runs, else im2col and GEMM.
#[inline(always)]
pub fn conv3_bwd_weight(
    x: &[f32],
    s: Shape,
    dy: &[f32],
    cout: usize,
    scratch: &mut Vec<f32>,
    dw: &mut [f32],
) {
    if direct::available(cout) {
        let pad = grow(scratch, direct::pad_len(s));
        direct::conv3_weight_grad(x, s, dy, cout, pad, dw);
        return;
    }
    let (p, k) = (s.pixels(), 9 * s.c);
    let col = grow(scratch, p * k);
    im2col3(x, s.n, s.h, s.w, s.c, col);
    sgemm(cout, p, k, dy, (1, cout), col, (k, 1), 1.0, dw);
}

/// The first `n` floats of a scratch buffer that only grows (its contents are not kept), so
/// that buffers shared by layers of different sizes are neither shrunk nor re-zeroed.
#[inline(always)]
pub fn grow(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

/// wt `[k, cout]` = w `[cout, k]` transposed (the forward weight of [`conv3_fwd`]).
pub fn transpose(w: &[f32], cout: usize, wt: &mut [f32]) {
    let k = w.len() / cout;
    for co in 0..cout {
        for j in 0..k {
            wt[j * cout + co] = w[co * k + j];
        }
    }
}

/// The weight of the input gradient: flipped[(ky, kx, co), ci] = w[co, (2 − ky, 2 − kx, ci)].
#[inline(always)]
pub fn flip(w: &[f32], cout: usize, cin: usize, flipped: &mut [f32]) {
    for co in 0..cout {
        for ky in 0..3 {
            for kx in 0..3 {
                let src = &w[co * 9 * cin + ((2 - ky) * 3 + (2 - kx)) * cin..][..cin];
                for (ci, v) in src.iter().enumerate() {
                    flipped[((ky * 3 + kx) * cout + co) * cin + ci] = *v;
                }
            }
        }
    }
}

/// out `[P, cout]` = x·wᵀ for x `[P, cin]` and w `[cout, cin]`.
pub fn conv1_fwd(x: &[f32], p: usize, cin: usize, w: &[f32], cout: usize, out: &mut [f32]) {
    sgemm(p, cin, cout, x, (cin, 1), w, (1, cin), 0.0, out);
}

/// dx `[P, cin]` = dy·w (overwrites).
pub fn conv1_bwd_data(dy: &[f32], p: usize, cout: usize, w: &[f32], cin: usize, dx: &mut [f32]) {
    sgemm(p, cout, cin, dy, (cout, 1), w, (cin, 1), 0.0, dx);
}

/// dw `[cout, cin]` += dyᵀ·x.
pub fn conv1_bwd_weight(x: &[f32], p: usize, cin: usize, dy: &[f32], cout: usize, dw: &mut [f32]) {
    sgemm(cout, p, cin, dy, (1, cout), x, (cin, 1), 1.0, dw);
}

/// burn's `[cout, cin, k, k]` → `[cout, (ky, kx, ci)]`.
pub fn to_kernel_order(w: &[f32], cout: usize, cin: usize, k: usize, out: &mut [f32]) {
    let kk = k * k;
    for co in 0..cout {
        for ci in 0..cin {
            for t in 0..kk {
                out[co * kk * cin + t * cin + ci] = w[(co * cin + ci) * kk + t];
            }
        }
    }
}

/// `[cout, (ky, kx, ci)]` → burn's `[cout, cin, k, k]`.
pub fn from_kernel_order(w: &[f32], cout: usize, cin: usize, k: usize, out: &mut [f32]) {
    let kk = k * k;
    for co in 0..cout {
        for ci in 0..cin {
            for t in 0..kk {
                out[(co * cin + ci) * kk + t] = w[co * kk * cin + t * cin + ci];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A direct 3×3 convolution with zero padding, NHWC, weight in burn's layout.
    fn direct(x: &[f32], s: Shape, w: &[f32], cout: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; s.pixels() * cout];
        for i in 0..s.n {
            for y in 0..s.h as isize {
                for xx in 0..s.w as isize {
                    for co in 0..cout {
                        let mut acc = 0.0f64;
                        for ci in 0..s.c {
                            for ky in 0..3isize {
                                for kx in 0..3isize {
                                    let (yy, xs) = (y + ky - 1, xx + kx - 1);
                                    if yy < 0 || xs < 0 || yy >= s.h as isize || xs >= s.w as isize
                                    {
                                        continue;
                                    }
                                    let xv =
                                        x[((i * s.h + yy as usize) * s.w + xs as usize) * s.c + ci];
                                    let wv =
                                        w[((co * s.c + ci) * 3 + ky as usize) * 3 + kx as usize];
                                    acc += xv as f64 * wv as f64;
                                }
                            }
                        }
                        out[((i * s.h + y as usize) * s.w + xx as usize) * cout + co] = acc as f32;
                    }
                }
            }
        }
        out
    }

    fn ramp(n: usize, a: usize, b: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * a % b) as f32 - b as f32 / 2.0) / b as f32)
            .collect()
    }

    #[test]
    fn convolution_and_its_gradients_match_a_direct_loop() {
        let s = Shape {
            n: 2,
            h: 5,
            w: 4,
            c: 3,
        };
        let cout = 4;
        let x = ramp(s.numel(), 7, 13);
        let w_burn = ramp(cout * s.c * 9, 5, 11);
        let mut w = vec![0.0; w_burn.len()];
        to_kernel_order(&w_burn, cout, s.c, 3, &mut w);
        let mut back = vec![0.0; w.len()];
        from_kernel_order(&w, cout, s.c, 3, &mut back);
        assert_eq!(back, w_burn);
        let mut col = Vec::new();
        let mut out = vec![0.0; s.pixels() * cout];
        let mut wt = vec![0.0; w.len()];
        transpose(&w, cout, &mut wt);
        conv3_fwd(&x, s, &wt, &[], cout, &mut col, &mut out);
        let want = direct(&x, s, &w_burn, cout);
        for (a, b) in out.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // Gradients of L = Σ g·conv(x) against the direct convolution's finite differences
        // (the convolution is linear, so differences are exact up to rounding).
        let g = ramp(s.pixels() * cout, 3, 7);
        let loss = |x: &[f32], wb: &[f32]| -> f64 {
            direct(x, s, wb, cout)
                .iter()
                .zip(&g)
                .map(|(a, b)| (a * b) as f64)
                .sum()
        };
        let mut flipped = vec![0.0; w.len()];
        flip(&w, cout, s.c, &mut flipped);
        let mut dx = vec![0.0; s.numel()];
        let so = Shape { c: cout, ..s };
        let mut col_o = Vec::new();
        conv3_bwd_data(&g, so, &flipped, &[], s.c, &mut col_o, &mut dx);
        let mut dw = vec![0.0; w.len()];
        conv3_bwd_weight(&x, s, &g, cout, &mut col, &mut dw);
        let mut dw_burn = vec![0.0; w.len()];
        from_kernel_order(&dw, cout, s.c, 3, &mut dw_burn);
        for i in 0..x.len() {
            let mut p = x.clone();
            p[i] += 1.0;
            let d = loss(&p, &w_burn) - loss(&x, &w_burn);
            assert!((d - dx[i] as f64).abs() < 1e-4, "dx[{i}]: {} vs {d}", dx[i]);
        }
        for i in 0..w_burn.len() {
            let mut p = w_burn.clone();
            p[i] += 1.0;
            let d = loss(&x, &p) - loss(&x, &w_burn);
            assert!(
                (d - dw_burn[i] as f64).abs() < 1e-4,
                "dw[{i}]: {} vs {d}",
                dw_burn[i]
            );
        }
        // 1×1: out = x·wᵀ; dx = g·w; dw = gᵀ·x.
        let w1 = ramp(cout * s.c, 5, 9);
        let mut o1 = vec![0.0; s.pixels() * cout];
        conv1_fwd(&x, s.pixels(), s.c, &w1, cout, &mut o1);
        let want: f32 = (0..s.c).map(|ci| x[ci] * w1[ci]).sum();
        assert!((o1[0] - want).abs() < 1e-6);
        let mut d1 = vec![0.0; s.numel()];
        conv1_bwd_data(&g, s.pixels(), cout, &w1, s.c, &mut d1);
        let want: f32 = (0..cout).map(|co| g[co] * w1[co * s.c]).sum();
        assert!((d1[0] - want).abs() < 1e-6);
        let mut dw1 = vec![0.0; w1.len()];
        conv1_bwd_weight(&x, s.pixels(), s.c, &g, cout, &mut dw1);
        let want: f32 = (0..s.pixels()).map(|p| g[p * cout] * x[p * s.c]).sum();
        assert!((dw1[0] - want).abs() < 1e-5);
    }
}
