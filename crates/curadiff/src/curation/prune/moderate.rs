//! Moderate-DS (Xia et al., ICLR 2023, "Moderate Coreset"; reference §B.1 step 2), per
//! class: the class's median feature m_k (the coordinate-wise median of its examples'
//! features), each example's distance d_i = ‖z_i − m_k‖ to its class's median, and the two
//! readings of "keep by that distance" the reference leaves open:
//!
//! - `moderate-ds`: score −|d_i − median_{j ∈ k} d_j|, near the class's median distance,
//!   neither the easiest nor the hardest examples (Moderate-DS's own rule; its code keeps the
//!   middle band of distance ranks);
//! - `closest-to-median`: score −d_i, closest to the class median (the reading of a
//!   third-party review of the pruning paper).
//!
//! Medians of an even count are the mean of the two middle values (as NumPy's `median`).

/// The median of `v` (not empty); reorders `v`.
fn median(v: &mut [f64]) -> f64 {
    let n = v.len();
    let (_, &mut hi, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    if n % 2 == 1 {
        return hi;
    }
    // The lower middle is the largest value below position n/2.
    let lo = v[..n / 2].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    0.5 * (lo + hi)
}

/// Indices of the rows of each class, classes `0..=max label`.
fn by_class(labels: &[u32]) -> Vec<Vec<usize>> {
    let k = labels.iter().max().map_or(0, |&m| m as usize + 1);
    let mut by = vec![Vec::new(); k];
    for (i, &l) in labels.iter().enumerate() {
        by[l as usize].push(i);
    }
    by
}

/// The coordinate-wise median feature of the rows `rows` (not empty) of `x` (`[n, dim]`).
pub fn median_feature(x: &[f32], dim: usize, rows: &[usize]) -> Vec<f64> {
    let mut col = vec![0.0; rows.len()];
    (0..dim)
        .map(|j| {
            for (c, &r) in col.iter_mut().zip(rows) {
                *c = x[r * dim + j] as f64;
            }
            median(&mut col)
        })
        .collect()
}

/// Each row's Euclidean distance to the median feature of its class.
pub fn median_distances(x: &[f32], dim: usize, labels: &[u32]) -> Vec<f64> {
    let mut d = vec![0.0; labels.len()];
    for rows in by_class(labels).iter().filter(|r| !r.is_empty()) {
        let m = median_feature(x, dim, rows);
        for &r in rows {
            let row = &x[r * dim..(r + 1) * dim];
            d[r] = row
                .iter()
                .zip(&m)
                .map(|(&v, &c)| (v as f64 - c) * (v as f64 - c))
                .sum::<f64>()
                .sqrt();
        }
    }
    d
}

/// `moderate-ds` scores: −|d_i − median of d over i's class|.
pub fn moderate_ds(x: &[f32], dim: usize, labels: &[u32]) -> Vec<f64> {
    let d = median_distances(x, dim, labels);
    let mut out = vec![0.0; d.len()];
    for rows in by_class(labels).iter().filter(|r| !r.is_empty()) {
        let mut dk: Vec<f64> = rows.iter().map(|&r| d[r]).collect();
        let mid = median(&mut dk);
        for &r in rows {
            out[r] = -(d[r] - mid).abs();
        }
    }
    out
}

/// `closest-to-median` scores: −d_i.
pub fn closest_to_median(x: &[f32], dim: usize, labels: &[u32]) -> Vec<f64> {
    median_distances(x, dim, labels)
        .into_iter()
        .map(|d| -d)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut [5.0]), 5.0);
    }

    #[test]
    fn hand_made_features_give_the_hand_computed_scores() {
        // Class 0: rows 0–4 = (0,0), (1,0), (2,−1), (10,0), (1,3). Coordinate medians:
        // x of 0, 1, 1, 2, 10 → 1; y of −1, 0, 0, 0, 3 → 0; so m_0 = (1, 0) and
        // d = 1, 0, √2, 9, 3, whose median is √2.
        // Class 1: rows 5–6 = (5,5), (7,5): m_1 = (6, 5), d = 1, 1, median distance 1.
        let x = [
            0.0f32, 0.0, 1.0, 0.0, 2.0, -1.0, 10.0, 0.0, 1.0, 3.0, 5.0, 5.0, 7.0, 5.0,
        ];
        let labels = [0, 0, 0, 0, 0, 1, 1];
        assert_eq!(median_feature(&x, 2, &[0, 1, 2, 3, 4]), vec![1.0, 0.0]);
        let d = median_distances(&x, 2, &labels);
        let s2 = 2f64.sqrt();
        let want = [1.0, 0.0, s2, 9.0, 3.0, 1.0, 1.0];
        for (a, b) in d.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{d:?}");
        }
        let m = moderate_ds(&x, 2, &labels);
        let want_m = [-(s2 - 1.0), -s2, 0.0, -(9.0 - s2), -(3.0 - s2), 0.0, 0.0];
        for (a, b) in m.iter().zip(want_m) {
            assert!((a - b).abs() < 1e-12, "{m:?}");
        }
        // Near the median distance keeps row 2 first, then row 0; closest to the median
        // keeps row 1 first, then row 0.
        let c = closest_to_median(&x, 2, &labels);
        assert_eq!(c[..5], [-1.0, -0.0, -s2, -9.0, -3.0]);
    }

    #[test]
    fn an_empty_class_in_between_is_skipped() {
        let x = [1.0f32, 3.0, 7.0];
        let d = median_distances(&x, 1, &[0, 2, 2]);
        assert_eq!(d, vec![0.0, 2.0, 2.0]);
    }
}
