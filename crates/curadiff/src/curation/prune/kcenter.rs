//! k-center greedy per class (Sener & Savarese, ICLR 2018, "Active Learning for
//! Convolutional Neural Networks: A Core-Set Approach"): an order, not a score. Within each
//! class, the first pick is the example closest to the class's mean feature; each next pick
//! is the example farthest from everything picked so far (the largest distance to its nearest
//! pick; ties go to the lowest index), so the first k picks are the greedy 2-approximation of
//! the k-center cover. The pick order becomes a score, 1 − p/n_k for the example picked at
//! position p (from 0) in its class of n_k, so that keeping the top fraction f of a class
//! keeps its first picks, and keeping the top fraction of the pool keeps about f of every
//! class, each by its own order.
//!
//! Cost: n_k² · dim per class (squared distances in f32, the picks' update in parallel):
//! about 4.6·10⁹ multiply-adds per class of 6,000 at dim 128.

use rayon::prelude::*;

/// Rows per parallel task of the distance update.
const TASK_ROWS: usize = 256;

/// ‖a − b‖², in eight independent lanes (which the compiler vectorises).
fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for ((s, &p), &q) in acc.iter_mut().zip(x).zip(y) {
            *s += (p - q) * (p - q);
        }
    }
    let tail = a.len() / 8 * 8;
    let rest: f32 = a[tail..]
        .iter()
        .zip(&b[tail..])
        .map(|(&p, &q)| (p - q) * (p - q))
        .sum();
    acc.iter().sum::<f32>() + rest
}

/// The larger of two (distance, index) candidates; ties go to the lower index.
fn farther(a: (f32, usize), b: (f32, usize)) -> (f32, usize) {
    if b.0 > a.0 || (b.0 == a.0 && b.1 < a.1) {
        b
    } else {
        a
    }
}

/// The k-center greedy order of the rows `rows` of `x` (`[n, dim]`): positions into `rows`,
/// first pick first.
pub fn greedy_order(x: &[f32], dim: usize, rows: &[usize]) -> Vec<usize> {
    let m = rows.len();
    if m == 0 {
        return Vec::new();
    }
    let g: Vec<f32> = rows
        .iter()
        .flat_map(|&r| x[r * dim..(r + 1) * dim].iter().copied())
        .collect(); // [m, dim]
    let mut mean = vec![0.0f64; dim];
    for row in g.chunks_exact(dim.max(1)) {
        for (s, &v) in mean.iter_mut().zip(row) {
            *s += v as f64;
        }
    }
    mean.iter_mut().for_each(|s| *s /= m as f64);
    let to_mean = |i: usize| -> f64 {
        g[i * dim..(i + 1) * dim]
            .iter()
            .zip(&mean)
            .map(|(&v, &c)| (v as f64 - c) * (v as f64 - c))
            .sum()
    };
    let mut first = 0;
    for i in 1..m {
        if to_mean(i) < to_mean(first) {
            first = i;
        }
    }
    // Squared distance of each row to its nearest pick; picked rows hold −∞.
    let mut near = vec![f32::INFINITY; m];
    let mut order = Vec::with_capacity(m);
    let mut pick = first;
    loop {
        order.push(pick);
        near[pick] = f32::NEG_INFINITY;
        if order.len() == m {
            return order;
        }
        let c = &g[pick * dim..(pick + 1) * dim];
        let best = near
            .par_chunks_mut(TASK_ROWS)
            .enumerate()
            .map(|(t, chunk)| {
                let mut best = (f32::NEG_INFINITY, usize::MAX);
                for (k, d) in chunk.iter_mut().enumerate() {
                    let i = t * TASK_ROWS + k;
                    if *d != f32::NEG_INFINITY {
                        *d = d.min(sq_dist(&g[i * dim..(i + 1) * dim], c));
                        best = farther(best, (*d, i));
                    }
                }
                best
            })
            .reduce(|| (f32::NEG_INFINITY, usize::MAX), farther);
        pick = best.1;
    }
}

/// k-center scores of every row of `x` (`[n, dim]`) within its class (`labels`): 1 − p/n_k.
pub fn kcenter_scores(x: &[f32], dim: usize, labels: &[u32]) -> Vec<f64> {
    let k = labels.iter().max().map_or(0, |&m| m as usize + 1);
    let mut by = vec![Vec::new(); k];
    for (i, &l) in labels.iter().enumerate() {
        by[l as usize].push(i);
    }
    let mut out = vec![0.0; labels.len()];
    for rows in &by {
        let n_k = rows.len() as f64;
        for (p, pos) in greedy_order(x, dim, rows).into_iter().enumerate() {
            out[rows[pos]] = 1.0 - p as f64 / n_k;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_on_a_line_are_covered_from_the_middle_outwards() {
        // 0, 1, …, 8: mean 4 → 4; then the ends (0 and 8 tie at distance 4: lower index
        // first); then the midpoints 2 and 6 (distance 2); then the odd points (distance 1).
        let x: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let rows: Vec<usize> = (0..9).collect();
        assert_eq!(greedy_order(&x, 1, &rows), [4, 0, 8, 2, 6, 1, 3, 5, 7]);
        // Uneven: 0, 1, 2, 3, 10: mean 3.2 → 3; then 10 (7 away), 0 (3), then 1 and 2 tie.
        let x = [0.0f32, 1.0, 2.0, 3.0, 10.0];
        assert_eq!(greedy_order(&x, 1, &[0, 1, 2, 3, 4]), [3, 4, 0, 1, 2]);
        // The same points along a diagonal in 9 dimensions (a tail after the 8 lanes).
        let x9: Vec<f32> = x.iter().flat_map(|&v| [v; 9]).collect();
        assert_eq!(greedy_order(&x9, 9, &[0, 1, 2, 3, 4]), [3, 4, 0, 1, 2]);
    }

    #[test]
    fn scores_follow_the_pick_order_within_each_class() {
        // Class 0 at rows 0, 2, 4, 6, 8 = points 0, 1, 2, 3, 10; class 1 at rows 1, 3 = 5, 6.
        let x = [0.0f32, 5.0, 1.0, 6.0, 2.0, 0.0, 3.0, 0.0, 10.0];
        let labels = [0, 1, 0, 1, 0, 2, 0, 2, 0];
        let s = kcenter_scores(&x, 1, &labels);
        // Class 0 order: rows 6, 8, 0, 2, 4 → 1, 0.8, 0.6, 0.4, 0.2.
        let want0 = [(6, 1.0), (8, 0.8), (0, 0.6), (2, 0.4), (4, 0.2)];
        for (r, v) in want0 {
            assert!((s[r] - v).abs() < 1e-12, "{s:?}");
        }
        // Class 1: mean 5.5, a tie → row 1 first; class 2 (two equal points): row 5 first.
        assert_eq!((s[1], s[3]), (1.0, 0.5));
        assert_eq!((s[5], s[7]), (1.0, 0.5));
    }

    /// The textbook greedy, sequential and in exact integer arithmetic.
    fn naive_order(x: &[i64], dim: usize, m: usize) -> Vec<usize> {
        let d2 = |i: usize, j: usize| -> i64 {
            (0..dim)
                .map(|k| (x[i * dim + k] - x[j * dim + k]).pow(2))
                .sum()
        };
        // Closest to the mean: minimise ‖m·x_i − Σx‖² (the mean scaled by m, exact).
        let sum: Vec<i64> = (0..dim)
            .map(|k| (0..m).map(|i| x[i * dim + k]).sum())
            .collect();
        let to_mean = |i: usize| -> i64 {
            (0..dim)
                .map(|k| (m as i64 * x[i * dim + k] - sum[k]).pow(2))
                .sum()
        };
        let first = (0..m).min_by_key(|&i| (to_mean(i), i)).unwrap();
        let mut order = vec![first];
        let mut near: Vec<Option<i64>> = (0..m).map(|i| Some(d2(i, first))).collect();
        near[first] = None;
        while order.len() < m {
            let mut next = None;
            for (i, d) in near.iter().enumerate() {
                if let Some(d) = *d {
                    if next.is_none_or(|(best, _)| d > best) {
                        next = Some((d, i));
                    }
                }
            }
            let (_, p) = next.unwrap();
            order.push(p);
            near[p] = None;
            for (i, d) in near.iter_mut().enumerate() {
                if let Some(d) = d {
                    *d = (*d).min(d2(i, p));
                }
            }
        }
        order
    }

    #[test]
    fn parallel_lanes_and_tasks_give_the_textbook_order() {
        // 700 points with small integer coordinates (squared distances exact in f32, ties
        // plentiful), in 3 dimensions (no full lane) and 11 (one lane of 8 and a tail);
        // three parallel tasks of 256 rows.
        for dim in [3, 11] {
            let mut rng = crate::rng::Rng::new(2, crate::rng::Stream::Eval, dim as u64);
            let xi: Vec<i64> = (0..700 * dim).map(|_| rng.below(40) as i64).collect();
            let xf: Vec<f32> = xi.iter().map(|&v| v as f32).collect();
            let rows: Vec<usize> = (0..700).collect();
            assert_eq!(greedy_order(&xf, dim, &rows), naive_order(&xi, dim, 700));
        }
    }
}
