//! The direct 3×3 convolution of [`super::direct`] with bf16 operands and f32 accumulation
//! (`unet.precision = "bf16"`), on CPUs with AVX-512-BF16: `vdpbf16ps` multiplies pairs of
//! bf16 values and adds both products to one f32 lane, twice the multiply-adds of an f32 FMA
//! per instruction. Inputs and weights are rounded to bf16 (round to nearest even) when they
//! are laid out for the kernel; sums, outputs and everything outside the convolutions stay f32,
//! as PyTorch's autocast does.
//!
//! Layouts (u16 bf16 values): the zero-bordered input `[n, h + 2, ⌈c/2⌉, w + 2, 2]` (per
//! padded row, channel pairs major and the pair's two channels adjacent, so the R inputs of
//! one (ky, kx, pair) are R consecutive 32-bit words), and the weight
//! `[9, ⌈c/2⌉, cout, 2]` from Ŵᵀ `[9·c, cout]` (an odd channel count is padded with zeros).
//! The instruction is emitted with `asm!` (its intrinsic is not stable Rust).

use super::conv::Shape;

/// Accumulator registers per tile, as in [`super::direct`].
const ACC_REGS: usize = 24;

/// Whether [`conv3`] runs for `cout` output channels on this CPU.
pub fn available(cout: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        cout.is_multiple_of(16)
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = cout;
        false
    }
}

/// Whether this CPU has the instructions of the bf16 kernels at all.
pub fn supported() -> bool {
    available(16)
}

/// f32 → bf16, rounding to nearest even (finite inputs).
#[inline(always)]
pub fn to_bf16(v: f32) -> u16 {
    let b = v.to_bits();
    (b.wrapping_add(0x7FFF + ((b >> 16) & 1)) >> 16) as u16
}

/// bf16 → f32 (exact).
#[cfg(test)]
fn from_bf16(v: u16) -> f32 {
    f32::from_bits((v as u32) << 16)
}

/// The kernel's weight `[9, ⌈c/2⌉, cout, 2]` from `wt` `[9·c, cout]`.
pub fn pack_weight(wt: &[f32], c: usize, cout: usize) -> Vec<u16> {
    let cp = c.div_ceil(2);
    let mut out = vec![0u16; 9 * cp * cout * 2];
    for t in 0..9 {
        for ci in 0..c {
            let (q, e) = (ci / 2, ci % 2);
            for co in 0..cout {
                out[((t * cp + q) * cout + co) * 2 + e] = to_bf16(wt[(t * c + ci) * cout + co]);
            }
        }
    }
    out
}

/// The bf16 pairs (u32 words) [`conv3`] needs in its padding buffer for input shape `s`.
pub fn pad_len(s: Shape) -> usize {
    s.n * (s.h + 2) * s.c.div_ceil(2) * (s.w + 2)
}

/// Two values as one bf16 pair word (the first in the low half).
#[inline(always)]
fn pair(a: f32, b: f32) -> u32 {
    to_bf16(a) as u32 | (to_bf16(b) as u32) << 16
}

/// `x` of shape `s` rounded to bf16 into `pad` (layout in the module docs, one u32 per pair).
fn pad_input(x: &[f32], s: Shape, pad: &mut [u32]) {
    let (wp, c, cp) = (s.w + 2, s.c, s.c.div_ceil(2));
    let row = cp * wp;
    let mut pairs = vec![0u32; cp];
    for i in 0..s.n {
        let img = &mut pad[i * (s.h + 2) * row..(i + 1) * (s.h + 2) * row];
        img[..row].fill(0);
        img[(s.h + 1) * row..].fill(0);
        for y in 0..s.h {
            let dst = &mut img[(y + 1) * row..(y + 2) * row];
            for q in 0..cp {
                dst[q * wp] = 0;
                dst[q * wp + wp - 1] = 0;
            }
            let src = &x[(i * s.h + y) * s.w * c..][..s.w * c];
            for (xx, px) in src.chunks_exact(c).enumerate() {
                // The pixel's pairs in order (vectorises), then one word per pair plane.
                for (o, v) in pairs.iter_mut().zip(px.chunks_exact(2)) {
                    *o = pair(v[0], v[1]);
                }
                if c % 2 == 1 {
                    pairs[cp - 1] = pair(px[c - 1], 0.0);
                }
                for (q, &w) in pairs.iter().enumerate() {
                    dst[q * wp + xx + 1] = w;
                }
            }
        }
    }
}

/// out `[P, cout]` = the 3×3 convolution of x (shape `s`) with the packed bf16 weight `wp` of
/// [`pack_weight`], in f32 sums; `pad` (at least [`pad_len`] words) is scratch. Panics unless
/// [`available`]`(cout)`.
pub fn conv3(x: &[f32], s: Shape, wp: &[u16], cout: usize, pad: &mut [u32], out: &mut [f32]) {
    assert!(
        available(cout),
        "bf16 conv3: needs AVX-512-BF16 and cout % 16 == 0"
    );
    assert_eq!(x.len(), s.numel(), "bf16 conv3: input size");
    assert_eq!(
        wp.len(),
        9 * s.c.div_ceil(2) * cout * 2,
        "bf16 conv3: weight size"
    );
    assert!(out.len() >= s.pixels() * cout, "bf16 conv3: output size");
    let pad = &mut pad[..pad_len(s)];
    pad_input(x, s, pad);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `available` checked AVX-512F and AVX-512-BF16; the asserts bound every index.
    unsafe {
        avx512::rows(pad, s, wp, cout, out)
    };
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::super::direct::for_each_tile;
    use super::{Shape, ACC_REGS};
    use std::arch::x86_64::{
        __m512, __m512i, _mm512_loadu_si512, _mm512_set1_epi32, _mm512_setzero_ps,
        _mm512_setzero_si512, _mm512_storeu_ps,
    };

    /// acc + the pairwise bf16 dot products of `a` and `b` (`vdpbf16ps`).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn dot(acc: __m512, a: __m512i, b: __m512i) -> __m512 {
        let mut acc = acc;
        // SAFETY: register-only instruction; the callers run with AVX-512-BF16 enabled.
        unsafe {
            std::arch::asm!(
                "vdpbf16ps {acc}, {a}, {b}",
                acc = inout(zmm_reg) acc,
                a = in(zmm_reg) a,
                b = in(zmm_reg) b,
                options(pure, nomem, nostack)
            );
        }
        acc
    }

    /// One tile of R pixels × 16·V channels (see `super::super::direct`): `x` points at the
    /// window's top-left pair of the first pixel (pair words; `row` per padded row, `wp`
    /// pixels per pair plane), `cp` pairs; `w` at the tile's first channel of pair row 0 (pair rows
    /// `2·cout` apart); `out` at the first pixel's first channel (pixels `cout` apart).
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const V: usize, const R: usize>(
        x: *const u32,
        row: usize,
        wp: usize,
        cp: usize,
        w: *const u16,
        cout: usize,
        out: *mut f32,
    ) {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        let mut wr = w;
        for ky in 0..3 {
            for kx in 0..3 {
                // SAFETY (whole function): the caller keeps the R pixels' windows inside the
                // padded image, the 9·cp pair rows inside the weight and the outputs inside
                // `out`.
                let mut xp = unsafe { x.add(ky * row + kx) };
                for _q in 0..cp {
                    let mut wv = [_mm512_setzero_si512(); V];
                    for (v, wvv) in wv.iter_mut().enumerate() {
                        *wvv = unsafe { _mm512_loadu_si512(wr.add(32 * v) as *const _) };
                    }
                    for (r, a) in acc.iter_mut().enumerate() {
                        let b = _mm512_set1_epi32(unsafe { *xp.add(r) } as i32);
                        for v in 0..V {
                            a[v] = unsafe { dot(a[v], wv[v], b) };
                        }
                    }
                    xp = unsafe { xp.add(wp) };
                    wr = unsafe { wr.add(2 * cout) };
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
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_r<const V: usize>(
        r: usize,
        x: *const u32,
        row: usize,
        wp: usize,
        cp: usize,
        w: *const u16,
        cout: usize,
        out: *mut f32,
    ) {
        macro_rules! go {
            ($($n:literal)*) => {
                match r {
                    $($n => unsafe { tile::<V, $n>(x, row, wp, cp, w, cout, out) },)*
                    _ => unreachable!("bf16 conv3: tile of {r} pixels"),
                }
            };
        }
        go!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24)
    }

    /// Every output row of every image, in tiles of at most `ACC_REGS / V` pixels.
    ///
    /// # Safety
    /// AVX-512F and AVX-512-BF16; `pad` is the padded input of shape `s`, `w` the packed
    /// weight, `out` holds `s.pixels()·cout` floats and `cout % 16 == 0`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn rows(pad: &[u32], s: Shape, w: &[u16], cout: usize, out: &mut [f32]) {
        let (wp, cp) = (s.w + 2, s.c.div_ceil(2));
        let row = cp * wp;
        let (pad, w, out) = (pad.as_ptr(), w.as_ptr(), out.as_mut_ptr());
        for_each_tile(s, cout, ACC_REGS, |t| {
            // SAFETY: pixels x0..x0 + r of row y: their windows lie in rows y..y + 2 and
            // columns x0..x0 + r + 2 of the padded image; channels cb..cb + 16·v of cout.
            unsafe {
                let xp = pad.add((t.i * (s.h + 2) + t.y) * row + t.x0);
                let wq = w.add(2 * t.cb);
                let op = out.add(((t.i * s.h + t.y) * s.w + t.x0) * cout + t.cb);
                if t.v == 2 {
                    tile_r::<2>(t.r, xp, row, wp, cp, wq, cout, op);
                } else {
                    tile_r::<1>(t.r, xp, row, wp, cp, wq, cout, op);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::unet_fused::direct::tests::{ramp, CASES};

    #[test]
    fn bf16_rounding_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3F80);
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
        // 1 + 2⁻⁸ is halfway between 1 and 1 + 2⁻⁷: ties to the even mantissa (1.0).
        assert_eq!(from_bf16(to_bf16(1.0 + 1.0 / 256.0)), 1.0);
        // 1 + 3·2⁻⁸ is halfway between 1 + 2⁻⁷ and 1 + 2⁻⁶: ties to even (1 + 2⁻⁶).
        assert_eq!(from_bf16(to_bf16(1.0 + 3.0 / 256.0)), 1.0 + 1.0 / 64.0);
        assert_eq!(from_bf16(to_bf16(1.0 + 1.0 / 200.0)), 1.0 + 1.0 / 128.0);
    }

    /// The bf16 kernel against a plain loop in f64 over the bf16-rounded operands: the products
    /// of bf16 values are exact in f32, so only the f32 summation differs.
    #[test]
    fn bf16_convolution_matches_a_plain_loop_on_rounded_operands() {
        if !supported() {
            eprintln!("skipped: no AVX-512-BF16 on this CPU");
            return;
        }
        for (n, h, w, c, cout) in CASES {
            let s = Shape { n, h, w, c };
            let (x, wt) = (ramp(s.numel(), 37, 101), ramp(9 * c * cout, 53, 97));
            let mut pad = vec![u32::MAX; pad_len(s)];
            let mut out = vec![f32::NAN; s.pixels() * cout];
            conv3(&x, s, &pack_weight(&wt, c, cout), cout, &mut pad, &mut out);
            let r = |v: f32| from_bf16(to_bf16(v)) as f64;
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
                                        acc += r(xv) * r(wv);
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
}
