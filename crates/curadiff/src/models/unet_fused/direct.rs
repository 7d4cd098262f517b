//! A direct 3×3 convolution ("same" zero padding) on NHWC activations for AVX-512, without an
//! im2col matrix: the input is copied once into a zero-bordered buffer with each padded row
//! stored channel-major, `[n, h + 2, c, w + 2]`, and each output tile of R consecutive pixels
//! of a row × 16·V output channels is summed in registers over the 9·c products, reading the
//! weight `[9·c, cout]` (rows in (ky, kx, ci) order, output channels contiguous) by vector
//! loads and the input by broadcast. In the channel-major rows the R inputs of one (ky, kx, ci)
//! are R consecutive floats, so the broadcasts address one pointer plus constant offsets.
//!
//! Used for the forward convolution (weight Ŵᵀ) and for the input gradient (the flipped weight
//! of [`super::conv::flip`], which is already `[9·cout, cin]`). It replaces an im2col copy of
//! 9× the activations and the GEMM's packing of it; the summation order is fixed (ky, kx, ci),
//! so results do not depend on the thread count.
//!
//! The weight gradient ([`conv3_weight_grad`]) tiles the other way: R input channels × 16·V
//! output channels of one (ky, kx), summed over every pixel, from a pixel-major padded copy
//! (`[n, h + 2, w + 2, c]`, where a pixel's R channels are consecutive).

use super::conv::Shape;

/// Accumulator registers per tile (of the 32 zmm registers; the rest hold the weight vectors).
const ACC_REGS: usize = 24;

/// Whether [`conv3`] runs for `cout` output channels on this CPU.
pub fn available(cout: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        cout.is_multiple_of(16) && std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = cout;
        false
    }
}

/// `x` of shape `s` copied into `pad` `[n, h + 2, c, w + 2]` (rows channel-major) with zero
/// borders.
fn pad_input(x: &[f32], s: Shape, pad: &mut [f32]) {
    let (wp, c) = (s.w + 2, s.c);
    let row = wp * c;
    for i in 0..s.n {
        let img = &mut pad[i * (s.h + 2) * row..(i + 1) * (s.h + 2) * row];
        img[..row].fill(0.0);
        img[(s.h + 1) * row..].fill(0.0);
        for y in 0..s.h {
            let dst = &mut img[(y + 1) * row..(y + 2) * row];
            let src = &x[(i * s.h + y) * s.w * c..][..s.w * c];
            for ci in 0..c {
                dst[ci * wp] = 0.0;
                dst[ci * wp + wp - 1] = 0.0;
            }
            // Blocks of 8 channels: 8 strided writes per pixel, reads in order.
            let mut c0 = 0;
            while c0 + 8 <= c {
                let d = &mut dst[c0 * wp..(c0 + 8) * wp];
                for (xx, px) in src.chunks_exact(c).enumerate() {
                    let v: &[f32; 8] = px[c0..c0 + 8].try_into().expect("8 channels");
                    for (k, &vk) in v.iter().enumerate() {
                        d[k * wp + xx + 1] = vk;
                    }
                }
                c0 += 8;
            }
            for ci in c0..c {
                for xx in 0..s.w {
                    dst[ci * wp + xx + 1] = src[xx * c + ci];
                }
            }
        }
    }
}

/// The floats [`conv3`] needs in its padding buffer for input shape `s`.
pub fn pad_len(s: Shape) -> usize {
    s.n * (s.h + 2) * (s.w + 2) * s.c
}

/// out `[P, cout]` = the 3×3 convolution of x (shape `s`) with `wt` `[9·s.c, cout]`, using
/// `pad` (at least [`pad_len`] floats) as scratch. Panics unless [`available`]`(cout)`.
pub fn conv3(x: &[f32], s: Shape, wt: &[f32], cout: usize, pad: &mut [f32], out: &mut [f32]) {
    assert!(
        available(cout),
        "direct conv3: needs AVX-512 and cout % 16 == 0"
    );
    assert_eq!(x.len(), s.numel(), "direct conv3: input size");
    assert_eq!(wt.len(), 9 * s.c * cout, "direct conv3: weight size");
    assert!(out.len() >= s.pixels() * cout, "direct conv3: output size");
    let pad = &mut pad[..pad_len(s)];
    pad_input(x, s, pad);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `available` checked AVX-512F; the asserts above bound every index (see `rows`).
    unsafe {
        avx512::rows(pad, s, wt, cout, out)
    };
}

/// `x` of shape `s` copied into `pad` `[n, h + 2, w + 2, c]` (pixel-major, as NHWC) with zero
/// borders.
fn pad_input_nhwc(x: &[f32], s: Shape, pad: &mut [f32]) {
    let (wp, c) = (s.w + 2, s.c);
    let row = wp * c;
    for i in 0..s.n {
        let img = &mut pad[i * (s.h + 2) * row..(i + 1) * (s.h + 2) * row];
        img[..row].fill(0.0);
        img[(s.h + 1) * row..].fill(0.0);
        for y in 0..s.h {
            let dst = &mut img[(y + 1) * row..(y + 2) * row];
            dst[..c].fill(0.0);
            dst[(s.w + 1) * c..].fill(0.0);
            dst[c..(s.w + 1) * c].copy_from_slice(&x[(i * s.h + y) * s.w * c..][..s.w * c]);
        }
    }
}

/// dw `[cout, 9·s.c]` (kernel order) += the weight gradient of a 3×3 convolution of x (shape
/// `s`) whose output gradient is dy `[P, cout]`: dw[co, (ky, kx, ci)] = Σ_p x[p + (ky − 1,
/// kx − 1), ci]·dy[p, co]. Register tiles of R input channels × 16·V output channels for one
/// (ky, kx), summed over every pixel in order; `pad` (at least [`pad_len`] floats) holds the
/// zero-bordered input. Panics unless [`available`]`(cout)`.
pub fn conv3_weight_grad(
    x: &[f32],
    s: Shape,
    dy: &[f32],
    cout: usize,
    pad: &mut [f32],
    dw: &mut [f32],
) {
    assert!(
        available(cout),
        "direct conv3: needs AVX-512 and cout % 16 == 0"
    );
    assert_eq!(
        x.len(),
        s.numel(),
        "direct conv3 weight gradient: input size"
    );
    assert!(
        dy.len() >= s.pixels() * cout,
        "direct conv3 weight gradient: dy size"
    );
    assert_eq!(
        dw.len(),
        9 * s.c * cout,
        "direct conv3 weight gradient: dw size"
    );
    let pad = &mut pad[..pad_len(s)];
    pad_input_nhwc(x, s, pad);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `available` checked AVX-512F; the asserts above bound every index.
    unsafe {
        avx512::weight_grad(pad, s, dy, cout, dw)
    };
}

/// One register tile of an output row: pixels `x0..x0 + r` of row `y` of image `i`, output
/// channels `cb..cb + 16·v`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tile {
    pub i: usize,
    pub y: usize,
    pub x0: usize,
    pub r: usize,
    pub cb: usize,
    pub v: usize,
}

/// The output channel block (16·V channels, V = 2 where `cout` allows) and the tiles covering
/// every output row in near-equal runs of at most `ACC_REGS / V` pixels, in a fixed order
/// (the order of the sums does not depend on the thread count).
pub(super) fn for_each_tile(s: Shape, cout: usize, acc_regs: usize, mut f: impl FnMut(Tile)) {
    let v = if cout.is_multiple_of(32) { 2 } else { 1 };
    let tiles = s.w.div_ceil(acc_regs / v);
    let r0 = s.w.div_ceil(tiles);
    for i in 0..s.n {
        for y in 0..s.h {
            let mut x0 = 0;
            while x0 < s.w {
                let r = r0.min(s.w - x0);
                for cb in (0..cout).step_by(16 * v) {
                    f(Tile { i, y, x0, r, cb, v });
                }
                x0 += r;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Shape, ACC_REGS};
    use std::arch::x86_64::{
        _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
    };

    /// One tile: R pixels × 16·V channels. `x` points at the top-left input of the first
    /// pixel's window in the channel-major padded rows (`row` floats per padded row, `wp` per
    /// channel of it), `c` is the input channels; `wt` points at the tile's first output
    /// channel of weight row 0 (rows `cout` apart); `out` at the first pixel's first channel
    /// (pixels `cout` apart).
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const V: usize, const R: usize>(
        x: *const f32,
        row: usize,
        wp: usize,
        c: usize,
        wt: *const f32,
        cout: usize,
        out: *mut f32,
    ) {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        let mut wr = wt;
        for ky in 0..3 {
            for kx in 0..3 {
                // SAFETY (whole function): the caller keeps the window of R pixels inside the
                // padded image, the 9·c weight rows inside `wt` and the R·cout outputs inside
                // `out`.
                let mut xp = unsafe { x.add(ky * row + kx) };
                for _ci in 0..c {
                    let mut wv = [_mm512_setzero_ps(); V];
                    for (v, w) in wv.iter_mut().enumerate() {
                        *w = unsafe { _mm512_loadu_ps(wr.add(16 * v)) };
                    }
                    for (r, a) in acc.iter_mut().enumerate() {
                        let b = _mm512_set1_ps(unsafe { *xp.add(r) });
                        for v in 0..V {
                            a[v] = _mm512_fmadd_ps(wv[v], b, a[v]);
                        }
                    }
                    xp = unsafe { xp.add(wp) };
                    wr = unsafe { wr.add(cout) };
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            for (v, &av) in a.iter().enumerate() {
                unsafe { _mm512_storeu_ps(out.add(r * cout + 16 * v), av) };
            }
        }
    }

    /// `tile::<V, r>` for a run-time r in 1..=24/V.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_r<const V: usize>(
        r: usize,
        x: *const f32,
        row: usize,
        wp: usize,
        c: usize,
        wt: *const f32,
        cout: usize,
        out: *mut f32,
    ) {
        macro_rules! go {
            ($($n:literal)*) => {
                match r {
                    $($n => unsafe { tile::<V, $n>(x, row, wp, c, wt, cout, out) },)*
                    _ => unreachable!("direct conv3: tile of {r} pixels"),
                }
            };
        }
        go!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24)
    }

    /// Every output row of every image, in tiles of at most `ACC_REGS / V` pixels.
    ///
    /// # Safety
    /// AVX-512F; `pad` is the padded input of shape `s`, `wt` is `[9·s.c, cout]`, `out`
    /// holds `s.pixels()·cout` floats and `cout % 16 == 0`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn rows(pad: &[f32], s: Shape, wt: &[f32], cout: usize, out: &mut [f32]) {
        let wp = s.w + 2;
        let row = wp * s.c;
        let (pad, wt, out) = (pad.as_ptr(), wt.as_ptr(), out.as_mut_ptr());
        super::for_each_tile(s, cout, ACC_REGS, |t| {
            // SAFETY: pixels x0..x0 + r of row y: their windows lie in rows y..y + 2 and
            // columns x0..x0 + r + 2 of the padded image; channels cb..cb + 16·v of cout.
            unsafe {
                let xp = pad.add((t.i * (s.h + 2) + t.y) * row + t.x0);
                let wq = wt.add(t.cb);
                let op = out.add(((t.i * s.h + t.y) * s.w + t.x0) * cout + t.cb);
                if t.v == 2 {
                    tile_r::<2>(t.r, xp, row, wp, s.c, wq, cout, op);
                } else {
                    tile_r::<1>(t.r, xp, row, wp, s.c, wq, cout, op);
                }
            }
        });
    }

    /// One weight-gradient tile: R input channels × 16·V output channels of one (ky, kx),
    /// summed over all pixels. `x` points at input channel ci0 of the padded pixel
    /// (ky, kx) of image 0, `dy` at output channel cb of pixel 0. Returns the sums,
    /// `acc[r][v]` lane l = channel (ci0 + r, cb + 16·v + l).
    #[target_feature(enable = "avx512f")]
    unsafe fn wtile<const V: usize, const R: usize>(
        x: *const f32,
        s: Shape,
        dy: *const f32,
        cout: usize,
    ) -> [[[f32; 16]; V]; R] {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        let wp = s.w + 2;
        for i in 0..s.n {
            for y in 0..s.h {
                // SAFETY (whole function): pixel (i, y, xx)'s window position (ky, kx) is the
                // padded pixel (i, y + ky, xx + kx), inside the padded image; channels
                // ci0..ci0 + R and cb..cb + 16·V are inside c and cout (the caller's tiling).
                let mut xp = unsafe { x.add((i * (s.h + 2) + y) * wp * s.c) };
                let mut dp = unsafe { dy.add((i * s.h + y) * s.w * cout) };
                for _ in 0..s.w {
                    let mut gv = [_mm512_setzero_ps(); V];
                    for (v, g) in gv.iter_mut().enumerate() {
                        *g = unsafe { _mm512_loadu_ps(dp.add(16 * v)) };
                    }
                    for (r, a) in acc.iter_mut().enumerate() {
                        let b = _mm512_set1_ps(unsafe { *xp.add(r) });
                        for v in 0..V {
                            a[v] = _mm512_fmadd_ps(gv[v], b, a[v]);
                        }
                    }
                    xp = unsafe { xp.add(s.c) };
                    dp = unsafe { dp.add(cout) };
                }
            }
        }
        let mut out = [[[0.0f32; 16]; V]; R];
        for (o, a) in out.iter_mut().zip(&acc) {
            for (ov, &av) in o.iter_mut().zip(a) {
                unsafe { _mm512_storeu_ps(ov.as_mut_ptr(), av) };
            }
        }
        out
    }

    /// `wtile::<V, r>` for a run-time r in 1..=24/V, added into dw `[cout, 9·c]` at column
    /// `k0` (= (ky·3 + kx)·c + ci0) and row cb.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn wtile_r<const V: usize>(
        r: usize,
        x: *const f32,
        s: Shape,
        dy: *const f32,
        cout: usize,
        dw: &mut [f32],
        k0: usize,
        cb: usize,
    ) {
        let k9 = 9 * s.c;
        let mut add = |sums: &[[[f32; 16]; V]]| {
            for (rr, sv) in sums.iter().enumerate() {
                for (v, lanes) in sv.iter().enumerate() {
                    for (l, &val) in lanes.iter().enumerate() {
                        dw[(cb + 16 * v + l) * k9 + k0 + rr] += val;
                    }
                }
            }
        };
        macro_rules! go {
            ($($n:literal)*) => {
                match r {
                    $($n => add(&unsafe { wtile::<V, $n>(x, s, dy, cout) }),)*
                    _ => unreachable!("direct conv3 weight gradient: tile of {r} channels"),
                }
            };
        }
        go!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24)
    }

    /// Every (ky, kx) × input-channel block × output-channel block of the weight gradient.
    ///
    /// # Safety
    /// AVX-512F; `pad` is the pixel-major padded input of shape `s`, dy holds
    /// `s.pixels()·cout` floats, dw is `[cout, 9·s.c]` and `cout % 16 == 0`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn weight_grad(
        pad: &[f32],
        s: Shape,
        dy: &[f32],
        cout: usize,
        dw: &mut [f32],
    ) {
        let (v, step) = if cout.is_multiple_of(32) {
            (2, 32)
        } else {
            (1, 16)
        };
        let rmax = ACC_REGS / v;
        let tiles = s.c.div_ceil(rmax);
        let r0 = s.c.div_ceil(tiles);
        let wp = s.w + 2;
        for ky in 0..3 {
            for kx in 0..3 {
                let mut ci0 = 0;
                while ci0 < s.c {
                    let r = r0.min(s.c - ci0);
                    let k0 = (ky * 3 + kx) * s.c + ci0;
                    let xp = pad[(ky * wp + kx) * s.c + ci0..].as_ptr();
                    for cb in (0..cout).step_by(step) {
                        let dp = dy[cb..].as_ptr();
                        // SAFETY: the tile's channels lie inside c and cout; see `wtile`.
                        unsafe {
                            if v == 2 {
                                wtile_r::<2>(r, xp, s, dp, cout, dw, k0, cb);
                            } else {
                                wtile_r::<1>(r, xp, s, dp, cout, dw, k0, cb);
                            }
                        }
                    }
                    ci0 += r;
                }
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// (n, h, w, c, cout): every tile shape the network uses and odd ones (tails, one pixel,
    /// one or two input channels).
    pub(in super::super) const CASES: [(usize, usize, usize, usize, usize); 6] = [
        (2, 28, 28, 16, 16),
        (2, 28, 28, 2, 16),
        (1, 14, 14, 48, 32),
        (2, 7, 7, 128, 64),
        (1, 5, 31, 3, 16),
        (1, 1, 1, 1, 48),
    ];

    /// `len` values in [−1, 1) in a scrambled order.
    pub(in super::super) fn ramp(len: usize, mul: usize, modulo: usize) -> Vec<f32> {
        (0..len)
            .map(|i| {
                ((i * mul % modulo) as f32 - modulo as f32 / 2.0) / (modulo as f32 / 2.0 + 0.3)
            })
            .collect()
    }

    /// The direct convolution against a plain loop in f64.
    #[test]
    fn direct_convolution_matches_a_plain_loop() {
        if !available(16) {
            eprintln!("skipped: no AVX-512 on this CPU");
            return;
        }
        for (n, h, w, c, cout) in CASES {
            let s = Shape { n, h, w, c };
            let (x, wt) = (ramp(s.numel(), 37, 101), ramp(9 * c * cout, 53, 97));
            let mut pad = vec![f32::NAN; pad_len(s)];
            let mut out = vec![f32::NAN; s.pixels() * cout];
            conv3(&x, s, &wt, cout, &mut pad, &mut out);
            for i in 0..n {
                for y in 0..h {
                    for xx in 0..w {
                        for co in 0..cout {
                            let mut acc = 0.0f64;
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let (yy, xs) = (y + ky, xx + kx);
                                    if yy == 0 || xs == 0 || yy > h || xs > w {
                                        continue;
                                    }
                                    for ci in 0..c {
                                        let xv = x[((i * h + yy - 1) * w + xs - 1) * c + ci];
                                        let wv = wt[((ky * 3 + kx) * c + ci) * cout + co];
                                        acc += xv as f64 * wv as f64;
                                    }
                                }
                            }
                            let got = out[((i * h + y) * w + xx) * cout + co];
                            let tol = 1e-5 * (1.0 + acc.abs()) * (c as f64).sqrt();
                            assert!(
                                (got as f64 - acc).abs() < tol,
                                "{n}x{h}x{w}x{c}->{cout} at ({i},{y},{xx},{co}): {got} vs {acc}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The weight gradient against a plain loop in f64 (accumulating into a non-zero dw).
    #[test]
    fn direct_weight_gradient_matches_a_plain_loop() {
        if !available(16) {
            eprintln!("skipped: no AVX-512 on this CPU");
            return;
        }
        for (n, h, w, c, cout) in CASES {
            let s = Shape { n, h, w, c };
            let (x, dy) = (ramp(s.numel(), 37, 101), ramp(s.pixels() * cout, 53, 97));
            let mut pad = vec![f32::NAN; pad_len(s)];
            let mut dw = vec![0.25f32; 9 * c * cout];
            conv3_weight_grad(&x, s, &dy, cout, &mut pad, &mut dw);
            for co in 0..cout {
                for ky in 0..3 {
                    for kx in 0..3 {
                        for ci in 0..c {
                            let mut acc = 0.25f64;
                            for i in 0..n {
                                for y in 0..h {
                                    for xx in 0..w {
                                        let (yy, xs) = (y + ky, xx + kx);
                                        if yy == 0 || xs == 0 || yy > h || xs > w {
                                            continue;
                                        }
                                        let xv = x[((i * h + yy - 1) * w + xs - 1) * c + ci];
                                        let g = dy[((i * h + y) * w + xx) * cout + co];
                                        acc += xv as f64 * g as f64;
                                    }
                                }
                            }
                            let got = dw[co * 9 * c + (ky * 3 + kx) * c + ci];
                            let tol = 1e-5 * (1.0 + acc.abs()) * (s.pixels() as f64).sqrt();
                            assert!(
                                (got as f64 - acc).abs() < tol,
                                "{n}x{h}x{w}x{c}->{cout} at ({co},{ky},{kx},{ci}): {got} vs {acc}"
                            );
                        }
                    }
                }
            }
        }
    }
}
