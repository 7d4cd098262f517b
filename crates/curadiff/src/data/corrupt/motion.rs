//! Motion blur: the image averaged along a straight line segment of `length` pixels through
//! each pixel, at `angle` degrees counter-clockwise from the +x axis (rows grow downward, so
//! the direction is (cos θ, −sin θ) in (column, row)). The kernel is built by laying
//! n = ⌈4·length⌉ + 1 equally spaced points from −length/2 to +length/2 along the segment,
//! splatting each bilinearly with weight 1/n onto the pixel grid (unit sum), and it is
//! applied per channel with reflect padding ([`super::filter`]). The segment is centred, so
//! the image does not shift.

use super::filter;

/// The motion kernel of `length` (> 0) pixels at `angle_deg`: `(weights, side)`, weights
/// `[side, side]` row-major with the centre at `(side/2, side/2)`.
pub fn kernel(length: f64, angle_deg: f64) -> (Vec<f64>, usize) {
    let r = (length / 2.0).ceil() as usize + 1;
    let side = 2 * r + 1;
    let mut k = vec![0.0f64; side * side];
    let n = (4.0 * length).ceil() as usize + 1;
    let (dx, dy) = (angle_deg.to_radians().cos(), -angle_deg.to_radians().sin());
    for i in 0..n {
        let t = -length / 2.0 + length * i as f64 / (n - 1) as f64;
        let (x, y) = (r as f64 + t * dx, r as f64 + t * dy);
        let (x0, y0) = (x.floor(), y.floor());
        let (fx, fy) = (x - x0, y - y0);
        let (x0, y0) = (x0 as usize, y0 as usize);
        let w = 1.0 / n as f64;
        for (yy, wy) in [(y0, 1.0 - fy), (y0 + 1, fy)] {
            for (xx, wx) in [(x0, 1.0 - fx), (x0 + 1, fx)] {
                if wx * wy > 0.0 {
                    k[yy * side + xx] += w * wx * wy;
                }
            }
        }
    }
    (k, side)
}

/// Blurs `image` (`[channels, h, w]`) in place along a `length`-pixel line at `angle_deg`.
pub fn motion_blur(
    image: &mut [f32],
    channels: usize,
    h: usize,
    w: usize,
    length: f64,
    angle_deg: f64,
) {
    let (k, side) = kernel(length, angle_deg);
    let mut out = vec![0.0f32; h * w];
    for c in 0..channels {
        let plane = &mut image[c * h * w..(c + 1) * h * w];
        filter::plane_2d(plane, h, w, &k, side, &mut out);
        plane.copy_from_slice(&out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blurred image of a single bright pixel, 21×21, centre (10, 10).
    fn of_delta(length: f64, angle: f64) -> Vec<f32> {
        let mut img = vec![0.0f32; 21 * 21];
        img[10 * 21 + 10] = 1.0;
        motion_blur(&mut img, 1, 21, 21, length, angle);
        img
    }

    /// Mean, and the second moments about it, of the image as a mass over (x, up) with
    /// up = −(row − 10).
    fn moments(img: &[f32]) -> (f64, (f64, f64), (f64, f64, f64)) {
        let mut s = (0.0, 0.0, 0.0);
        for (k, &v) in img.iter().enumerate() {
            let (x, up) = ((k % 21) as f64 - 10.0, 10.0 - (k / 21) as f64);
            s = (s.0 + v as f64, s.1 + v as f64 * x, s.2 + v as f64 * up);
        }
        let (mx, mu) = (s.1 / s.0, s.2 / s.0);
        let mut c = (0.0, 0.0, 0.0);
        for (k, &v) in img.iter().enumerate() {
            let (x, up) = ((k % 21) as f64 - 10.0 - mx, 10.0 - (k / 21) as f64 - mu);
            let v = v as f64 / s.0;
            c = (c.0 + v * x * x, c.1 + v * x * up, c.2 + v * up * up);
        }
        (s.0, (mx, mu), c)
    }

    /// A horizontal line of length 4, by hand: 17 points at −2, −1.75, …, 2 on the centre row,
    /// each 1/17; the pixel at offset j gets Σ (1 − |t − j|) over the points within 1 of it:
    /// j = 0 → (1 + 2·(0.75 + 0.5 + 0.25))/17 = 4/17, j = ±1 → 4/17, j = ±2 → (1 + 0.75 +
    /// 0.5 + 0.25)/17 = 2.5/17; the rows above and below stay dark.
    #[test]
    fn a_horizontal_delta_becomes_the_hand_computed_line() {
        let img = of_delta(4.0, 0.0);
        let want = [2.5, 4.0, 4.0, 4.0, 2.5].map(|v| v / 17.0);
        for (j, w) in want.iter().enumerate() {
            let got = img[10 * 21 + 8 + j] as f64;
            assert!(
                (got - w).abs() < 1e-6,
                "offset {}: {got} vs {w}",
                j as i32 - 2
            );
        }
        let elsewhere: f64 = img.iter().map(|&v| v as f64).sum::<f64>() - want.iter().sum::<f64>();
        assert!(elsewhere.abs() < 1e-6, "{elsewhere}");
    }

    /// At any angle: unit sum, centred on the pixel, and the mass lies along the direction θ
    /// with the spread of n equally spaced points on the segment (variance
    /// length²/12·(n + 1)/(n − 1) along it, plus at most the bilinear splat's 1/4) and almost
    /// none across it.
    #[test]
    fn a_delta_becomes_a_unit_line_of_the_right_length_and_angle() {
        for (length, angle) in [(7.0, 30.0), (9.0, 90.0), (6.0, -45.0), (11.0, 120.0)] {
            let img = of_delta(length, angle);
            let (sum, (mx, mu), (cxx, cxu, cuu)) = moments(&img);
            assert!((sum - 1.0).abs() < 1e-6, "sum {sum}");
            assert!(mx.abs() < 1e-6 && mu.abs() < 1e-6, "centre {mx} {mu}");
            let (c, s) = (angle.to_radians().cos(), angle.to_radians().sin());
            let along = c * c * cxx + 2.0 * c * s * cxu + s * s * cuu;
            let across = s * s * cxx - 2.0 * c * s * cxu + c * c * cuu;
            let n = (4.0 * length).ceil() + 1.0;
            let uniform = length * length / 12.0 * (n + 1.0) / (n - 1.0);
            assert!(
                along >= uniform - 0.01 && along <= uniform + 0.25,
                "{length} at {angle}°: variance along {along} vs {uniform}"
            );
            assert!(
                across < 0.35,
                "{length} at {angle}°: variance across {across}"
            );
            // Nothing beyond half the length from the centre, plus the bilinear splat's reach
            // (one pixel per axis, at most √2 along the line).
            for (k, &v) in img.iter().enumerate() {
                let (x, up) = ((k % 21) as f64 - 10.0, 10.0 - (k / 21) as f64);
                if v != 0.0 {
                    let reach = length / 2.0 + std::f64::consts::SQRT_2;
                    assert!(
                        (x * c + up * s).abs() <= reach + 1e-9,
                        "{length} at {angle}°: {k}"
                    );
                }
            }
        }
    }
}
