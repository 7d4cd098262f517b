//! Gaussian blur with standard deviation σ_B in pixels, per channel, as scipy.ndimage's
//! `gaussian_filter(x, σ_B)` (the corruption of Ambient-Omni's CIFAR runs, reference §C.5):
//! a separable kernel exp(−k²/(2σ_B²)) for |k| ≤ r, r = ⌊4σ_B + 0.5⌋ (truncated at 4σ_B),
//! normalised to sum 1, with reflect padding ([`super::filter`]).

use super::filter;

/// The normalised 1-D Gaussian kernel of `sigma` (> 0), `2r + 1` taps, r = ⌊4σ + 0.5⌋.
pub fn kernel(sigma: f64) -> Vec<f64> {
    let r = (4.0 * sigma + 0.5).floor() as isize;
    let mut k: Vec<f64> = (-r..=r)
        .map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f64 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= s);
    k
}

/// Blurs `image` (`[channels, h, w]`) in place with σ_B = `sigma` pixels.
pub fn blur(image: &mut [f32], channels: usize, h: usize, w: usize, sigma: f64) {
    let k = kernel(sigma);
    let mut tmp = vec![0.0f32; h * w];
    for c in 0..channels {
        let plane = &mut image[c * h * w..(c + 1) * h * w];
        filter::rows(plane, h, w, &k, &mut tmp);
        filter::columns(&tmp, h, w, &k, plane);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(x: f64, s: f64) -> f64 {
        (-x * x / (2.0 * s * s)).exp()
    }

    #[test]
    fn the_kernel_is_truncated_at_four_sigma_and_sums_to_one() {
        assert_eq!(kernel(1.0).len(), 9); // r = ⌊4.5⌋ = 4
        assert_eq!(kernel(0.6).len(), 5); // r = ⌊2.9⌋ = 2
        assert_eq!(kernel(0.1).len(), 1); // r = ⌊0.9⌋ = 0: the identity
        assert!((kernel(1.7).iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_constant_image_stays_constant() {
        let mut img = vec![0.37f32; 2 * 6 * 5];
        blur(&mut img, 2, 6, 5, 1.3);
        assert!(img.iter().all(|&v| (v - 0.37).abs() < 1e-6), "{img:?}");
    }

    /// A single bright pixel in the middle of a 9×9 image, σ_B = 1 (r = 4, so the kernel just
    /// fits): the output is the outer product of the normalised Gaussian weights,
    /// g(dy)·g(dx)/S² with S = Σ_{k=−4..4} exp(−k²/2) = 1 + 2·(0.606531 + 0.135335 +
    /// 0.011109 + 0.000335) = 2.506621…
    #[test]
    fn a_point_spreads_into_the_normalised_gaussian() {
        let mut img = vec![0.0f32; 81];
        img[4 * 9 + 4] = 1.0;
        blur(&mut img, 1, 9, 9, 1.0);
        let s: f64 = (-4..=4).map(|k| g(k as f64, 1.0)).sum();
        assert!((s - 2.506_621).abs() < 1e-6, "{s}");
        for y in 0..9 {
            for x in 0..9 {
                let want = g(y as f64 - 4.0, 1.0) * g(x as f64 - 4.0, 1.0) / (s * s);
                assert!((img[y * 9 + x] as f64 - want).abs() < 1e-7, "({y}, {x})");
            }
        }
        assert!((img[40] as f64 - 0.159_154_9).abs() < 1e-6); // ≈ 1/(2π) at the centre
    }

    /// Reflect padding at the border, by hand: a 1×5 row [1 2 3 4 5], σ_B = 0.6 (r = 2), so
    /// x[−1] = x[0] and x[−2] = x[1]; one row, so the column pass is the identity.
    #[test]
    fn the_border_reflects_about_the_pixel_edge() {
        let mut img = vec![1.0f32, 2.0, 3.0, 4.0, 5.0];
        blur(&mut img, 1, 1, 5, 0.6);
        let (w0, w1, w2) = (1.0, g(1.0, 0.6), g(2.0, 0.6));
        let s = w0 + 2.0 * w1 + 2.0 * w2;
        let first = (w0 * 1.0 + w1 * (1.0 + 2.0) + w2 * (2.0 + 3.0)) / s;
        let last = (w0 * 5.0 + w1 * (4.0 + 5.0) + w2 * (3.0 + 4.0)) / s;
        let mid = 3.0; // symmetric neighbourhood of a linear ramp
        assert!(
            (img[0] as f64 - first).abs() < 1e-6,
            "{} vs {first}",
            img[0]
        );
        assert!((img[4] as f64 - last).abs() < 1e-6, "{} vs {last}", img[4]);
        assert!((img[2] as f64 - mid).abs() < 1e-6);
    }
}
