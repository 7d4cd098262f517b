//! Linear filtering of image planes with reflect padding: the border is mirrored about the
//! pixel edge (scipy.ndimage's `mode='reflect'`, "d c b a | a b c d | d c b a"), so a
//! constant image stays constant and no energy leaks in from outside.

/// The source index of position `i` (possibly outside `0..n`) under reflect padding.
pub fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let period = 2 * n;
    let m = i.rem_euclid(period);
    (if m < n { m } else { period - 1 - m }) as usize
}

/// Correlates each row of the `[h, w]` plane with the 1-D `kernel` (odd length, centred),
/// writing into `out`.
pub fn rows(plane: &[f32], h: usize, w: usize, kernel: &[f64], out: &mut [f32]) {
    let r = (kernel.len() / 2) as isize;
    for y in 0..h {
        let row = &plane[y * w..(y + 1) * w];
        for x in 0..w {
            let mut acc = 0.0f64;
            for (k, &kv) in kernel.iter().enumerate() {
                acc += kv * row[reflect(x as isize + k as isize - r, w)] as f64;
            }
            out[y * w + x] = acc as f32;
        }
    }
}

/// Correlates each column of the `[h, w]` plane with the 1-D `kernel`, writing into `out`.
pub fn columns(plane: &[f32], h: usize, w: usize, kernel: &[f64], out: &mut [f32]) {
    let r = (kernel.len() / 2) as isize;
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0f64;
            for (k, &kv) in kernel.iter().enumerate() {
                acc += kv * plane[reflect(y as isize + k as isize - r, h) * w + x] as f64;
            }
            out[y * w + x] = acc as f32;
        }
    }
}

/// Correlates the `[h, w]` plane with the square 2-D `kernel` (`[side, side]`, odd side,
/// centred), writing into `out`. Zero taps are skipped.
pub fn plane_2d(plane: &[f32], h: usize, w: usize, kernel: &[f64], side: usize, out: &mut [f32]) {
    let r = (side / 2) as isize;
    let taps: Vec<(isize, isize, f64)> = (0..side * side)
        .filter(|&k| kernel[k] != 0.0)
        .map(|k| ((k / side) as isize - r, (k % side) as isize - r, kernel[k]))
        .collect();
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0f64;
            for &(dy, dx, kv) in &taps {
                let sy = reflect(y as isize + dy, h);
                let sx = reflect(x as isize + dx, w);
                acc += kv * plane[sy * w + sx] as f64;
            }
            out[y * w + x] = acc as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_mirrors_about_the_pixel_edge() {
        // n = 4: … c d | a b c d | d c b a | a b …  written as indices.
        let got: Vec<usize> = (-5..10).map(|i| reflect(i, 4)).collect();
        assert_eq!(got, vec![3, 3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0, 0, 1]);
        assert!((-3..4).all(|i| reflect(i, 1) == 0));
    }
}
