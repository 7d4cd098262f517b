//! Image metrics in the feature space of the Fashion-MNIST classifier ([`super::classifier`]).
//!
//! All metrics take feature vectors as row-major `[n, dim]` f32 slices and compute in f64.
//! - Fréchet distance (Heusel et al. 2017, the FID formula on our features):
//!   ‖μa − μb‖² + tr Ca + tr Cb − 2 tr((Ca^½ Cb Ca^½)^½), with unbiased covariances
//!   (divisor n − 1). The square roots are symmetric: both come from faer's self-adjoint
//!   eigendecomposition with negative round-off eigenvalues clipped to 0, so rank-deficient
//!   covariances (fewer samples than dimensions) are handled. The covariances are faer's
//!   parallel matmul Xcᵀ·Xc; in 1280 dimensions (MobileNetV2 features, 10,000 vs 10,000 rows)
//!   the whole distance took 0.9 s on 2 cores (AMD EPYC, 2026-12-02; the ignored test `frechet_distance_timing_10k_by_1280`).
//! - KID (Bińkowski et al. 2018): the unbiased MMD² with the polynomial kernel
//!   k(x, y) = (x·y/d + 1)³, averaged over random subsets drawn without replacement; the
//!   reported spread is the population standard deviation over the subsets (as torch-fidelity
//!   reports it). Single estimates can be negative.
//! - Precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the union of
//!   balls around its points with radius the distance to the point's k-th nearest neighbour in
//!   the same set (itself excluded). Precision is the fraction of generated points inside the
//!   real manifold, recall the fraction of real points inside the generated one.
//!
//! [`evaluate`] runs the classifier on samples and reference images and returns all of them,
//! plus, for class-conditional samples, how often the classifier agrees with the label.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};
use rayon::prelude::*;
use serde::Serialize;

use super::classifier::{self, Classifier, FEATURE_NETWORK, NUM_CLASSES};
use crate::data::images::ImageSet;
use crate::error::{Error, Result};
use crate::rng::{Rng, Stream};

/// KID subsets drawn by [`evaluate`].
pub const KID_SUBSETS: usize = 100;
/// Examples per KID subset in [`evaluate`] (fewer when either set is smaller).
pub const KID_SUBSET_SIZE: usize = 1000;
/// Neighbour rank of the precision/recall manifolds in [`evaluate`].
pub const PR_K: usize = 3;

/// Random-stream index of the KID subsets, far above any training-step index.
const KID_KEY: u64 = 0x4B49_4421 << 32;
/// Query rows per block of the pairwise distances, which bounds their memory.
const BLOCK: usize = 256;

/// Metrics of a set of generated images against a reference set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageMetrics {
    /// Fréchet distance of the feature distributions.
    pub fd: f64,
    /// KID: mean and standard deviation of the unbiased MMD² over subsets.
    pub kid_mean: f64,
    pub kid_std: f64,
    /// Precision and recall with k = [`PR_K`].
    pub precision: f64,
    pub recall: f64,
    /// Generated images.
    pub n_samples: usize,
    /// Reference images.
    pub n_reference: usize,
    /// The network the features come from.
    pub feature_network: String,
    /// For class-conditional samples: the fraction the classifier assigns to their label.
    pub class_accuracy: Option<f64>,
    /// The same per class (10 entries); a class without samples is NaN (null in JSON).
    pub per_class_accuracy: Option<Vec<f64>>,
}

/// C ← A·B + beta·C for row-major f64 slices with explicit strides (`matrixmultiply::dgemm`).
#[allow(clippy::too_many_arguments)]
fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f64],
    (rsa, csa): (usize, usize),
    b: &[f64],
    (rsb, csb): (usize, usize),
    beta: f64,
    c: &mut [f64],
) {
    assert!(
        m == 0 || k == 0 || (m - 1) * rsa + (k - 1) * csa < a.len(),
        "gemm: A too small"
    );
    assert!(
        k == 0 || n == 0 || (k - 1) * rsb + (n - 1) * csb < b.len(),
        "gemm: B too small"
    );
    assert!(c.len() >= m * n, "gemm: C too small");
    // SAFETY: the asserts above keep every index the kernel touches inside the slices; C is
    // row-major [m, n] and does not alias A or B (distinct borrows).
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// The symmetric positive semi-definite square root U·diag(√λ⁺)·Uᵀ of the symmetric matrix
/// `m` (its lower triangle is read), from faer's self-adjoint eigendecomposition m = U·diag(λ)·Uᵀ;
/// negative round-off eigenvalues are clipped to 0.
fn sqrtm_psd(m: MatRef<'_, f64>) -> Result<Mat<f64>> {
    let evd = m.self_adjoint_eigen(Side::Lower).map_err(eigen_error)?;
    let (u, lambda) = (evd.U(), evd.S().column_vector());
    let n = m.nrows();
    let scaled = Mat::from_fn(n, n, |i, j| u[(i, j)] * lambda[j].max(0.0).sqrt()); // U·diag(√λ⁺)
    Ok(&scaled * u.transpose())
}

fn eigen_error(e: faer::linalg::evd::EvdError) -> Error {
    Error::Model(format!(
        "Fréchet distance: the symmetric eigensolver failed ({e:?}); the covariances are \
         too ill-conditioned, check the features for huge or degenerate values"
    ))
}

/// The Fréchet distance of N(μa, Ca) and N(μb, Cb) in `dim` dimensions (row-major covariances,
/// taken as symmetric): ‖μa − μb‖² + tr Ca + tr Cb − 2 tr((Ca^½ Cb Ca^½)^½).
pub fn frechet_distance_gaussians(
    mu_a: &[f64],
    cov_a: &[f64],
    mu_b: &[f64],
    cov_b: &[f64],
    dim: usize,
) -> Result<f64> {
    if mu_a.len() != dim || mu_b.len() != dim {
        return Err(Error::Model(format!(
            "Fréchet distance: means of {} and {} entries in {dim} dimensions; give {dim} each",
            mu_a.len(),
            mu_b.len()
        )));
    }
    if cov_a.len() != dim * dim || cov_b.len() != dim * dim {
        return Err(Error::Model(format!(
            "Fréchet distance: covariances of {} and {} entries in {dim} dimensions; give \
             [{dim}, {dim}] = {} each",
            cov_a.len(),
            cov_b.len(),
            dim * dim
        )));
    }
    let ca = MatRef::from_row_major_slice(cov_a, dim, dim); // [dim, dim]
    let cb = MatRef::from_row_major_slice(cov_b, dim, dim); // [dim, dim]
    let mean_term: f64 = mu_a.iter().zip(mu_b).map(|(a, b)| (a - b) * (a - b)).sum();
    let s = sqrtm_psd(ca)?; // Ca^½, [dim, dim]
    let inner = &s * cb * &s; // Ca^½ Cb Ca^½, [dim, dim]
    let inner = Mat::from_fn(dim, dim, |i, j| 0.5 * (inner[(i, j)] + inner[(j, i)]));
    let lambda = inner
        .self_adjoint_eigenvalues(Side::Lower)
        .map_err(eigen_error)?;
    let tr_sqrt: f64 = lambda.iter().map(|&l| l.max(0.0).sqrt()).sum();
    Ok(
        mean_term + ca.diagonal().column_vector().sum() + cb.diagonal().column_vector().sum()
            - 2.0 * tr_sqrt,
    )
}

/// Checks that `x` is `n` rows of `dim` finite features.
fn check_features(x: &[f32], n: usize, dim: usize, what: &str) -> Result<()> {
    if dim == 0 || n.checked_mul(dim) != Some(x.len()) {
        return Err(Error::Model(format!(
            "{what}: expected {n} rows of {dim} features ({} values), got {} values",
            n.saturating_mul(dim),
            x.len()
        )));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::Model(format!(
            "{what}: feature {} of row {} is not finite ({})",
            i % dim,
            i / dim,
            x[i]
        )));
    }
    Ok(())
}

/// Rows of `x` (a length that `dim` divides), checked as in [`check_features`].
fn rows_of(x: &[f32], dim: usize, what: &str) -> Result<usize> {
    let n = x.len().checked_div(dim).unwrap_or(0);
    if dim == 0 || n * dim != x.len() {
        return Err(Error::Model(format!(
            "{what}: {} values are not whole rows of {dim} features",
            x.len()
        )));
    }
    check_features(x, n, dim, what)?;
    Ok(n)
}

/// Mean and unbiased covariance (divisor n − 1) of `n ≥ 2` rows.
pub(crate) fn mean_cov(x: &[f32], n: usize, dim: usize) -> (Vec<f64>, Vec<f64>) {
    let mut mu = vec![0.0; dim];
    for row in x.chunks_exact(dim) {
        for (m, &v) in mu.iter_mut().zip(row) {
            *m += v as f64;
        }
    }
    mu.iter_mut().for_each(|m| *m /= n as f64);
    let centred: Vec<f64> = x
        .chunks_exact(dim)
        .flat_map(|row| row.iter().zip(&mu).map(|(&v, &m)| v as f64 - m))
        .collect();
    let xc = MatRef::from_row_major_slice(&centred, n, dim); // [n, dim]
    let mut cov = vec![0.0; dim * dim];
    // Xcᵀ·Xc/(n − 1): [dim, dim], faer's parallel matmul.
    matmul(
        MatMut::from_row_major_slice_mut(&mut cov, dim, dim),
        Accum::Replace,
        xc.transpose(),
        xc,
        1.0 / (n - 1) as f64,
        Par::rayon(0),
    );
    (mu, cov)
}

/// The Fréchet distance between the Gaussians fitted to `na` rows of `a` and `nb` rows of `b`
/// (`dim` features each, at least two rows per set).
pub fn frechet_distance(a: &[f32], na: usize, b: &[f32], nb: usize, dim: usize) -> Result<f64> {
    check_features(a, na, dim, "Fréchet distance, first set")?;
    check_features(b, nb, dim, "Fréchet distance, second set")?;
    if na < 2 || nb < 2 {
        return Err(Error::Model(format!(
            "the Fréchet distance needs at least 2 rows per set (got {na} and {nb})"
        )));
    }
    let (mu_a, cov_a) = mean_cov(a, na, dim);
    let (mu_b, cov_b) = mean_cov(b, nb, dim);
    frechet_distance_gaussians(&mu_a, &cov_a, &mu_b, &cov_b, dim)
}

/// `m` distinct indices of `0..n` in random order (a partial Fisher–Yates shuffle).
fn choose(n: usize, m: usize, rng: &mut Rng) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    for i in 0..m {
        let j = i + rng.below((n - i) as u64) as usize;
        idx.swap(i, j);
    }
    idx.truncate(m);
    idx
}

fn gather(x: &[f32], rows: &[usize], dim: usize) -> Vec<f64> {
    rows.iter()
        .flat_map(|&r| x[r * dim..(r + 1) * dim].iter().map(|&v| v as f64))
        .collect()
}

/// The unbiased MMD² of equal-size row sets `x`, `y` ([m, dim] each) with the kernel
/// (x·y/dim + 1)³.
fn mmd2_unbiased(x: &[f64], y: &[f64], m: usize, dim: usize) -> f64 {
    let kernel_sum = |p: &[f64], q: &[f64], skip_diagonal: bool| {
        let mut g = vec![0.0; m * m];
        gemm(m, dim, m, p, (dim, 1), q, (1, dim), 0.0, &mut g);
        let mut sum = 0.0;
        for i in 0..m {
            for j in 0..m {
                if !(skip_diagonal && i == j) {
                    sum += (g[i * m + j] / dim as f64 + 1.0).powi(3);
                }
            }
        }
        sum
    };
    let pairs = (m * (m - 1)) as f64;
    (kernel_sum(x, x, true) + kernel_sum(y, y, true)) / pairs
        - 2.0 * kernel_sum(x, y, false) / (m * m) as f64
}

/// KID of row sets `a` and `b` (`dim` features each): the mean and the population standard
/// deviation of the unbiased MMD² over `subsets` subset pairs of `min(subset_size, na, nb)`
/// rows each, drawn without replacement from `(seed, Stream::Eval)`.
pub fn kid(
    a: &[f32],
    b: &[f32],
    dim: usize,
    subsets: usize,
    subset_size: usize,
    seed: u64,
) -> Result<(f64, f64)> {
    let na = rows_of(a, dim, "KID, first set")?;
    let nb = rows_of(b, dim, "KID, second set")?;
    let m = subset_size.min(na).min(nb);
    if m < 2 || subsets == 0 {
        return Err(Error::Model(format!(
            "KID needs at least one subset of at least 2 rows per set (got {subsets} subsets \
             of {m} rows from sets of {na} and {nb})"
        )));
    }
    let values: Vec<f64> = (0..subsets)
        .into_par_iter()
        .map(|s| {
            let mut rng = Rng::new(seed, Stream::Eval, KID_KEY + s as u64);
            let x = gather(a, &choose(na, m, &mut rng), dim);
            let y = gather(b, &choose(nb, m, &mut rng), dim);
            mmd2_unbiased(&x, &y, m, dim)
        })
        .collect();
    let mean = values.iter().sum::<f64>() / subsets as f64;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / subsets as f64;
    Ok((mean, var.sqrt()))
}

/// Squared Euclidean norms of the rows.
fn sq_norms(x: &[f64], dim: usize) -> Vec<f64> {
    x.chunks_exact(dim)
        .map(|r| r.iter().map(|v| v * v).sum())
        .collect()
}

/// Squared distances of the query rows `q` to all rows of `r`: [rows of q, rows of r].
fn sq_dists(q: &[f64], qn: &[f64], r: &[f64], rn: &[f64], dim: usize) -> Vec<f64> {
    let (bq, nr) = (qn.len(), rn.len());
    let mut d = vec![0.0; bq * nr];
    gemm(bq, dim, nr, q, (dim, 1), r, (1, dim), 0.0, &mut d);
    for (i, row) in d.chunks_exact_mut(nr).enumerate() {
        for (v, &n2) in row.iter_mut().zip(rn) {
            *v = (qn[i] + n2 - 2.0 * *v).max(0.0);
        }
    }
    d
}

/// For every row, the squared distance to its k-th nearest other row.
fn kth_neighbour_sq(x: &[f64], norms: &[f64], dim: usize, k: usize) -> Vec<f64> {
    let n = norms.len();
    x.par_chunks(BLOCK * dim)
        .enumerate()
        .flat_map_iter(|(b, block)| {
            let start = b * BLOCK;
            let rows = block.len() / dim;
            let mut d = sq_dists(block, &norms[start..start + rows], x, norms, dim);
            d.chunks_exact_mut(n)
                .enumerate()
                .map(|(i, row)| {
                    row[start + i] = f64::INFINITY;
                    *row.select_nth_unstable_by(k - 1, f64::total_cmp).1
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Precision and recall (Kynkäänniemi et al. 2019) of the generated rows `fake` against the
/// `real` rows, `dim` features each, with manifolds from the `k`-th nearest neighbour. Each
/// set needs more than `k` rows.
pub fn precision_recall(real: &[f32], fake: &[f32], dim: usize, k: usize) -> Result<(f64, f64)> {
    let nr = rows_of(real, dim, "precision/recall, real set")?;
    let nf = rows_of(fake, dim, "precision/recall, generated set")?;
    if k == 0 || nr <= k || nf <= k {
        return Err(Error::Model(format!(
            "precision/recall with k = {k} needs k ≥ 1 and more than k rows per set \
             (got {nr} real and {nf} generated)"
        )));
    }
    let real: Vec<f64> = real.iter().map(|&v| v as f64).collect();
    let fake: Vec<f64> = fake.iter().map(|&v| v as f64).collect();
    let (rn, fn_) = (sq_norms(&real, dim), sq_norms(&fake, dim));
    let r_real = kth_neighbour_sq(&real, &rn, dim, k);
    let r_fake = kth_neighbour_sq(&fake, &fn_, dim, k);
    let (inside, covered) = fake
        .par_chunks(BLOCK * dim)
        .enumerate()
        .map(|(b, block)| {
            let start = b * BLOCK;
            let rows = block.len() / dim;
            let d = sq_dists(block, &fn_[start..start + rows], &real, &rn, dim);
            let mut inside = 0usize;
            let mut covered = vec![false; nr];
            for (j, row) in d.chunks_exact(nr).enumerate() {
                let rf = r_fake[start + j];
                let mut hit = false;
                for (i, &dij) in row.iter().enumerate() {
                    hit |= dij <= r_real[i];
                    covered[i] |= dij <= rf;
                }
                inside += hit as usize;
            }
            (inside, covered)
        })
        .reduce(
            || (0, vec![false; nr]),
            |(n1, mut c1), (n2, c2)| {
                c1.iter_mut().zip(&c2).for_each(|(a, &b)| *a |= b);
                (n1 + n2, c1)
            },
        );
    let recall = covered.iter().filter(|&&c| c).count() as f64 / nr as f64;
    Ok((inside as f64 / nf as f64, recall))
}

/// Metrics of `n` generated images (`[n, 1, 28, 28]` in [-1, 1]) against `reference` (e.g. the
/// Fashion-MNIST test set) in the features of `clf`. With `labels` (the class each sample was
/// conditioned on), also the fraction the classifier assigns to that class, overall and per
/// class. `seed` draws the KID subsets.
pub fn evaluate(
    clf: &Classifier,
    samples: &[f32],
    n: usize,
    labels: Option<&[usize]>,
    reference: &ImageSet,
    seed: u64,
) -> Result<ImageMetrics> {
    classifier::check_set(reference, "reference set")?;
    let nr = reference.len();
    if n <= PR_K || nr <= PR_K {
        return Err(Error::Model(format!(
            "image metrics need more than {PR_K} generated and reference images \
             (got {n} and {nr})"
        )));
    }
    if let Some(l) = labels {
        if l.len() != n {
            return Err(Error::Model(format!(
                "{} class labels for {n} generated images; give one label per image",
                l.len()
            )));
        }
        if let Some((i, &c)) = l.iter().enumerate().find(|&(_, &c)| c >= NUM_CLASSES) {
            return Err(Error::Model(format!(
                "class label {c} of generated image {i} is not a Fashion-MNIST class \
                 (0..{NUM_CLASSES})"
            )));
        }
    }
    let dim = clf.feature_dim();
    let fake = clf.features(samples, n)?;
    let real = clf.features(&reference.pixels, nr)?;
    let fd = frechet_distance(&real, nr, &fake, n, dim)?;
    let (kid_mean, kid_std) = kid(&real, &fake, dim, KID_SUBSETS, KID_SUBSET_SIZE, seed)?;
    let (precision, recall) = precision_recall(&real, &fake, dim, PR_K)?;
    let (class_accuracy, per_class_accuracy) = match labels {
        None => (None, None),
        Some(l) => {
            let pred = clf.predict_from_features(&fake, n)?;
            let mut right = [0usize; NUM_CLASSES];
            let mut count = [0usize; NUM_CLASSES];
            for (&p, &c) in pred.iter().zip(l) {
                count[c] += 1;
                right[c] += (p == c) as usize;
            }
            let per: Vec<f64> = (0..NUM_CLASSES)
                .map(|c| match count[c] {
                    0 => f64::NAN,
                    k => right[c] as f64 / k as f64,
                })
                .collect();
            (
                Some(right.iter().sum::<usize>() as f64 / n as f64),
                Some(per),
            )
        }
    };
    Ok(ImageMetrics {
        fd,
        kid_mean,
        kid_std,
        precision,
        recall,
        n_samples: n,
        n_reference: nr,
        feature_network: FEATURE_NETWORK.to_string(),
        class_accuracy,
        per_class_accuracy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::images::{load_fashion_mnist, Split};
    use crate::eval::classifier::{train, ClassifierConfig};
    use std::path::Path;

    fn normals(n: usize, seed: u64) -> Vec<f64> {
        let mut r = Rng::new(seed, Stream::Eval, 99);
        (0..n).map(|_| r.normal()).collect()
    }

    /// A random symmetric positive definite matrix G·Gᵀ/n + 0.1·I.
    fn random_spd(n: usize, seed: u64) -> Vec<f64> {
        let g = normals(n * n, seed);
        let mut m = vec![0.0; n * n];
        gemm(n, n, n, &g, (n, 1), &g, (1, n), 0.0, &mut m);
        m.iter_mut().for_each(|v| *v /= n as f64);
        for i in 0..n {
            m[i * n + i] += 0.1;
        }
        m
    }

    /// `n` samples of N(μ, L·Lᵀ) for a lower-triangular L, as f32 rows.
    fn gaussian_samples(mu: &[f64], l: &[f64], n: usize, seed: u64) -> Vec<f32> {
        let d = mu.len();
        let z = normals(n * d, seed);
        let mut out = Vec::with_capacity(n * d);
        for zr in z.chunks_exact(d) {
            for i in 0..d {
                let v: f64 = mu[i] + (0..=i).map(|j| l[i * d + j] * zr[j]).sum::<f64>();
                out.push(v as f32);
            }
        }
        out
    }

    /// Q = (I − 2uuᵀ/‖u‖²)(I − 2vvᵀ/‖v‖²): a product of two Householder reflections, so an
    /// orthogonal [n, n] matrix (row-major) that is dense for random u, v.
    fn random_orthogonal(n: usize, seed: u64) -> Vec<f64> {
        let reflect = |w: &[f64]| {
            let w2: f64 = w.iter().map(|x| x * x).sum();
            let mut h = vec![0.0; n * n];
            for i in 0..n {
                for j in 0..n {
                    h[i * n + j] = (i == j) as u8 as f64 - 2.0 * w[i] * w[j] / w2;
                }
            }
            h
        };
        let (hu, hv) = (reflect(&normals(n, seed)), reflect(&normals(n, seed + 1)));
        let mut q = vec![0.0; n * n];
        gemm(n, n, n, &hu, (n, 1), &hv, (n, 1), 0.0, &mut q);
        q
    }

    /// Q·diag(d)·Qᵀ, row-major.
    fn rotated_diagonal(q: &[f64], d: &[f64]) -> Vec<f64> {
        let n = d.len();
        let mut qd = q.to_vec();
        for (k, v) in qd.iter_mut().enumerate() {
            *v *= d[k % n];
        }
        let mut m = vec![0.0; n * n];
        gemm(n, n, n, &qd, (n, 1), q, (1, n), 0.0, &mut m);
        m
    }

    #[test]
    fn psd_square_root_squares_back_and_handles_rank_deficiency() {
        let n = 30;
        let m = random_spd(n, 4);
        let s = sqrtm_psd(MatRef::from_row_major_slice(&m, n, n)).unwrap();
        let s2 = &s * &s;
        for i in 0..n {
            for j in 0..n {
                assert!((s2[(i, j)] - m[i * n + j]).abs() < 1e-11, "({i},{j})");
                assert!((s[(i, j)] - s[(j, i)]).abs() < 1e-13);
            }
        }
        // Rank one: √(vvᵀ) = vvᵀ/‖v‖ (the zero eigenvalues may come out slightly negative).
        let v = [1.0, -2.0, 2.0]; // ‖v‖ = 3
        let vvt: Vec<f64> = (0..9).map(|k| v[k / 3] * v[k % 3]).collect();
        let s = sqrtm_psd(MatRef::from_row_major_slice(&vvt, 3, 3)).unwrap();
        for k in 0..9 {
            let got = s[(k / 3, k % 3)];
            assert!((got - vvt[k] / 3.0).abs() < 1e-7, "{k}: {got}");
        }
    }

    /// In 2-D, N = A^½BA^½ has trace tr(AB) and determinant det A·det B, so
    /// tr √N = √λ₁ + √λ₂ = √(tr(AB) + 2√(det A·det B)).
    fn fd_2d_closed_form(mu_a: [f64; 2], a: [f64; 4], mu_b: [f64; 2], b: [f64; 4]) -> f64 {
        let det = |m: [f64; 4]| m[0] * m[3] - m[1] * m[2];
        let tr_ab = a[0] * b[0] + a[1] * b[2] + a[2] * b[1] + a[3] * b[3];
        let tr_sqrt = (tr_ab + 2.0 * (det(a) * det(b)).sqrt()).sqrt();
        (mu_a[0] - mu_b[0]).powi(2) + (mu_a[1] - mu_b[1]).powi(2) + a[0] + a[3] + b[0] + b[3]
            - 2.0 * tr_sqrt
    }

    #[test]
    fn frechet_distance_of_gaussians_matches_closed_forms() {
        // Non-commuting covariances, where tr √(Ca Cb) ≠ Σ √(λa λb).
        let (mu_a, a) = ([0.5, -1.0], [2.0, 1.0, 1.0, 1.0]);
        let (mu_b, b) = ([0.0, 1.0], [1.0, -0.5, -0.5, 2.0]);
        let got = frechet_distance_gaussians(&mu_a, &a, &mu_b, &b, 2).unwrap();
        let want = fd_2d_closed_form(mu_a, a, mu_b, b);
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        // Non-commuting in 3-D (‖AB − BA‖max = 2.11), against scipy 1.17.1's general sqrtm of
        // the product (the pytorch-fid formula, not our symmetric route):
        //   A = [[4, 1, .5], [1, 3, -.7], [.5, -.7, 2]]; B = [[1, .3, -.2], [.3, 2.5, .9],
        //   [-.2, .9, 1.5]]; ma = [1, 0, -1]; mb = [.5, .5, 0]
        //   ((ma - mb)**2).sum() + trace(A) + trace(B) - 2 * trace(scipy.linalg.sqrtm(A @ B)).real
        //   → 3.4077512009546407
        let a3 = [4.0, 1.0, 0.5, 1.0, 3.0, -0.7, 0.5, -0.7, 2.0];
        let b3 = [1.0, 0.3, -0.2, 0.3, 2.5, 0.9, -0.2, 0.9, 1.5];
        let got =
            frechet_distance_gaussians(&[1.0, 0.0, -1.0], &a3, &[0.5, 0.5, 0.0], &b3, 3).unwrap();
        assert!((got - 3.4077512009546407).abs() < 1e-12, "{got}");
        // Diagonal: Σ(Δμ)² + Σ(√a − √b)².
        let got = frechet_distance_gaussians(
            &[0.0, 1.0, 0.0],
            &[1.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 0.25],
            &[1.0, 1.0, -1.0],
            &[4.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            3,
        )
        .unwrap();
        assert!((got - (2.0 + 1.0 + 1.0 + 0.25)).abs() < 1e-12, "{got}");
        // Commuting but dense, in 300 dimensions: Ca = Q·diag(a)·Qᵀ, Cb = Q·diag(b)·Qᵀ with one
        // orthogonal Q give Σ(Δμ)² + Σ(√a − √b)², also when a has zeros (rank deficient).
        let n = 300;
        let q = random_orthogonal(n, 10);
        let mut da: Vec<f64> = normals(n, 11).iter().map(|v| v * v).collect();
        da[..50].iter_mut().for_each(|v| *v = 0.0);
        let db: Vec<f64> = normals(n, 12).iter().map(|v| v * v + 0.01).collect();
        let (ma, mb) = (normals(n, 13), normals(n, 14));
        let want: f64 = (0..n)
            .map(|i| (ma[i] - mb[i]).powi(2) + (da[i].sqrt() - db[i].sqrt()).powi(2))
            .sum();
        let (ca, cb) = (rotated_diagonal(&q, &da), rotated_diagonal(&q, &db));
        let got = frechet_distance_gaussians(&ma, &ca, &mb, &cb, n).unwrap();
        assert!((got - want).abs() < 1e-6 * want, "{got} vs {want}");
        // Symmetric in its arguments, in higher dimension too.
        let n = 16;
        let (ca, cb) = (random_spd(n, 5), random_spd(n, 6));
        let (ma, mb) = (normals(n, 7), normals(n, 8));
        let ab = frechet_distance_gaussians(&ma, &ca, &mb, &cb, n).unwrap();
        let ba = frechet_distance_gaussians(&mb, &cb, &ma, &ca, n).unwrap();
        assert!((ab - ba).abs() < 1e-9 * ab, "{ab} vs {ba}");
        let aa = frechet_distance_gaussians(&ma, &ca, &ma, &ca, n).unwrap();
        assert!(aa.abs() < 1e-10, "{aa}");
        let e = frechet_distance_gaussians(&ma, &ca, &mb[..3], &cb, n).unwrap_err();
        assert!(e.to_string().contains("means of 16 and 3 entries"), "{e}");
        let e = frechet_distance_gaussians(&ma, &ca[..9], &mb, &cb, n).unwrap_err();
        assert!(e.to_string().contains("covariances of 9 and 256"), "{e}");
    }

    #[test]
    fn frechet_distance_of_samples_matches_the_closed_form() {
        let n = 100_000;
        // Diagonal: μa = (0, 1, 0, 2), var a = (1, 4, 0.25, 1); μb = (1, 1, −1, 2),
        // var b = (4, 1, 1, 1) → FD = 2 + (1 + 1 + 0.25) = 4.25.
        let diag = |v: [f64; 4]| {
            let mut l = vec![0.0; 16];
            for i in 0..4 {
                l[i * 4 + i] = v[i].sqrt();
            }
            l
        };
        let a = gaussian_samples(&[0.0, 1.0, 0.0, 2.0], &diag([1.0, 4.0, 0.25, 1.0]), n, 1);
        let b = gaussian_samples(&[1.0, 1.0, -1.0, 2.0], &diag([4.0, 1.0, 1.0, 1.0]), n, 2);
        let fd = frechet_distance(&a, n, &b, n, 4).unwrap();
        assert!((fd - 4.25).abs() < 0.05, "{fd}");
        // Correlated 2-D: A = [[2, 1], [1, 1]] = L·Lᵀ with L = [[√2, 0], [1/√2, 1/√2]];
        // B = [[1, −0.5], [−0.5, 2]] with L = [[1, 0], [−0.5, √1.75]].
        let s2 = 2f64.sqrt();
        let a = gaussian_samples(&[0.5, -1.0], &[s2, 0.0, 1.0 / s2, 1.0 / s2], n, 3);
        let b = gaussian_samples(&[0.0, 1.0], &[1.0, 0.0, -0.5, 1.75f64.sqrt()], n, 4);
        let fd = frechet_distance(&a, n, &b, n, 2).unwrap();
        let want = fd_2d_closed_form(
            [0.5, -1.0],
            [2.0, 1.0, 1.0, 1.0],
            [0.0, 1.0],
            [1.0, -0.5, -0.5, 2.0],
        );
        assert!((fd - want).abs() < 0.03, "{fd} vs {want}");
    }

    #[test]
    fn frechet_distance_of_a_set_with_itself_is_zero() {
        // Full rank, and rank-deficient (fewer rows than dimensions).
        for (n, dim) in [(500, 16), (20, 32)] {
            let x: Vec<f32> = normals(n * dim, 9).iter().map(|&v| v as f32).collect();
            let fd = frechet_distance(&x, n, &x, n, dim).unwrap();
            assert!(fd.abs() < 1e-5, "n={n} dim={dim}: {fd}");
        }
        let e = frechet_distance(&[1.0, 2.0], 1, &[1.0, 2.0, 3.0, 4.0], 2, 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 2"), "{e}");
        let e = frechet_distance(&[1.0, 2.0, 3.0], 2, &[1.0, 2.0, 3.0, 4.0], 2, 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected 2 rows of 2 features"), "{e}");
    }

    #[test]
    fn kid_hand_computed_cases() {
        // d = 1, a = {0, 1}, b = {1, 2}, k(x, y) = (xy + 1)³:
        // aa: k(0,1) = 1; bb: k(1,2) = 27; ab: 1 + 1 + 8 + 27 = 37 → 1 + 27 − 2·37/4 = 9.5.
        let (mean, std) = kid(&[0.0, 1.0], &[1.0, 2.0], 1, 5, 10, 0).unwrap();
        assert!((mean - 9.5).abs() < 1e-12 && std == 0.0, "{mean} ± {std}");
        // d = 2, a = {(1,0), (0,1)}, b = {(1,1), (0,0)}, k = (x·y/2 + 1)³:
        // aa: 1; bb: 1; ab: 1.5³ + 1 + 1.5³ + 1 = 8.75 → 2 − 2·8.75/4 = −2.375 (unbiased
        // estimates can be negative).
        let (mean, _) = kid(&[1.0, 0.0, 0.0, 1.0], &[1.0, 1.0, 0.0, 0.0], 2, 1, 2, 0).unwrap();
        assert!((mean + 2.375).abs() < 1e-12, "{mean}");
        // Subsets are seeded: same seed, same answer; another seed, another one.
        let x: Vec<f32> = normals(300 * 4, 1).iter().map(|&v| v as f32).collect();
        let y: Vec<f32> = normals(200 * 4, 2).iter().map(|&v| v as f32).collect();
        let r1 = kid(&x, &y, 4, 10, 50, 3).unwrap();
        assert_eq!(r1, kid(&x, &y, 4, 10, 50, 3).unwrap());
        assert_ne!(r1, kid(&x, &y, 4, 10, 50, 4).unwrap());
        assert!(kid(&x, &y, 4, 0, 50, 3).is_err());
        assert!(kid(&x[..4], &y, 4, 1, 50, 3).is_err());
        assert!(kid(&x[..5], &y, 4, 1, 50, 3).is_err());
    }

    #[test]
    fn kid_is_near_zero_for_one_distribution_and_matches_the_population_value_for_a_shift() {
        let (n, dim) = (2000, 16);
        let x: Vec<f32> = normals(n * dim, 11).iter().map(|&v| v as f32).collect();
        let y: Vec<f32> = normals(n * dim, 12).iter().map(|&v| v as f32).collect();
        let (same, same_sd) = kid(&x, &y, dim, 50, 500, 0).unwrap();
        assert!(same.abs() < 0.01 && same_sd < 0.02, "{same} ± {same_sd}");
        // x ~ N(0, I), y ~ N(δ·1, I) in d dimensions, u = x·y/d: E(1 + u)³ = m³ + 3m·var + μ₃
        // with m, var, μ₃ the mean, variance and third central moment of 1 + u, giving
        //   E k(x, x') = 1 + 3/d,
        //   E k(y, y') = (1 + δ²)³ + 3(1 + δ²)(2δ² + 1)/d + 6δ²/d²,
        //   E k(x, y)  = 1 + 3(1 + δ²)/d,
        // so MMD² = 1.1875 + 2.310547 − 2·1.234375 = 1.029297 for d = 16, δ = 0.5.
        let (d, delta) = (dim as f64, 0.5f64);
        let a = 1.0 + delta * delta;
        let want = (1.0 + 3.0 / d)
            + (a.powi(3)
                + 3.0 * a * (2.0 * delta * delta + 1.0) / d
                + 6.0 * delta * delta / (d * d))
            - 2.0 * (1.0 + 3.0 * a / d);
        assert!((want - 1.029297).abs() < 1e-6, "{want}");
        let n = 4000;
        let x: Vec<f32> = normals(n * dim, 13).iter().map(|&v| v as f32).collect();
        let y: Vec<f32> = normals(n * dim, 14)
            .iter()
            .map(|&v| (v + delta) as f32)
            .collect();
        // One subset of all 4000 rows: the estimate's standard error is about 0.025.
        let (far, _) = kid(&x, &y, dim, 1, n, 0).unwrap();
        assert!((far - want).abs() < 0.08, "{far} vs {want}");
    }

    #[test]
    fn precision_recall_identical_and_hand_made_cases() {
        let x: Vec<f32> = normals(300 * 8, 13).iter().map(|&v| v as f32).collect();
        assert_eq!(precision_recall(&x, &x, 8, 3).unwrap(), (1.0, 1.0));
        // Real points on a line at 0, 1, 2, 3. With k = 1 every radius is 1.
        let real = [0.0f32, 0.0, 1.0, 0.0, 2.0, 0.0, 3.0, 0.0];
        // Two fakes near the real ones (inside), two far away; fake radii (k = 1) are 0.2
        // and 0.3, which cover no real point.
        let fake = [0.5f32, 0.0, 0.5, 0.2, 10.0, 0.0, 10.0, 0.3];
        let (p, r) = precision_recall(&real, &fake, 2, 1).unwrap();
        assert!((p - 0.5).abs() < 1e-12 && r == 0.0, "{p} {r}");
        // k = 2: real radii are 2, 1, 1, 2. Fakes at 4.9 (1.9 from 3: inside), 5.1 (2.1 from
        // 3: outside), −1.5 (1.5 from 0: inside) and (1.5, 2) (2.06 from 1 and 2, radius 1;
        // 2.5 from 0 and 3, radius 2: outside). Fake radii (k = 2): 4.9 → 3.94, 5.1 → 4.12,
        // −1.5 → 6.4, (1.5, 2) → 3.94: the ball around −1.5 covers every real point.
        let fake = [4.9f32, 0.0, 5.1, 0.0, -1.5, 0.0, 1.5, 2.0];
        let (p, r) = precision_recall(&real, &fake, 2, 2).unwrap();
        assert!((p - 0.5).abs() < 1e-12 && r == 1.0, "{p} {r}");
        // Recall that is partial: fakes clustered at 0 with tiny radii cover only the point 0.
        let fake = [0.0f32, 0.0, 0.05, 0.0, 0.0, 0.05];
        let (p, r) = precision_recall(&real, &fake, 2, 1).unwrap();
        assert!(p == 1.0 && (r - 0.25).abs() < 1e-12, "{p} {r}");
        let e = precision_recall(&real, &fake, 2, 3)
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than k rows"), "{e}");
    }

    #[test]
    fn evaluate_on_the_fixture() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fmnist-fixture");
        let train_set = load_fashion_mnist(&dir, Split::Train).unwrap();
        let test_set = load_fashion_mnist(&dir, Split::Test).unwrap();
        let cfg = ClassifierConfig {
            epochs: 2,
            batch: 32,
            lr: 2e-3,
            seed: 1,
        };
        let clf = train(&train_set, &cfg, &mut |_, _, _| {}).unwrap();
        let labels: Vec<usize> = test_set.labels.iter().map(|&l| l as usize).collect();
        let n = test_set.len();
        let m = evaluate(&clf, &test_set.pixels, n, Some(&labels), &train_set, 7).unwrap();
        assert_eq!((m.n_samples, m.n_reference), (200, 200));
        assert_eq!(m.feature_network, "curadiff-fmnist-classifier");
        let acc = clf.accuracy(&test_set).unwrap();
        assert!((m.class_accuracy.unwrap() - acc).abs() < 1e-12);
        let per = m.per_class_accuracy.clone().unwrap();
        assert_eq!(per.len(), 10);
        // The overall accuracy is the count-weighted mean of the per-class ones.
        let counts = test_set.class_counts();
        let weighted: f64 = per.iter().zip(&counts).map(|(a, &c)| a * c as f64).sum();
        assert!((weighted / n as f64 - acc).abs() < 1e-12);
        assert!(m.fd > 0.0 && m.precision > 0.0 && m.recall > 0.0, "{m:?}");
        // Against itself: FD ≈ 0, precision = recall = 1. (KID is not ≈ 0 here: its unbiased
        // estimator assumes independent sets, and a set against itself gives a negative bias
        // from the x·x terms of the cross kernel.)
        let same = evaluate(&clf, &test_set.pixels, n, None, &test_set, 7).unwrap();
        assert!(same.fd.abs() < 1e-6 * m.fd, "{same:?}");
        assert_eq!((same.precision, same.recall), (1.0, 1.0));
        assert!(m.kid_mean > 0.0, "{m:?}");
        assert_eq!((same.class_accuracy, same.per_class_accuracy), (None, None));
        // Classes without samples are NaN, null in JSON.
        let few: Vec<usize> = (0..n).filter(|&i| test_set.labels[i] != 3).collect();
        let sub = test_set.subset(&few);
        let sub_labels: Vec<usize> = sub.labels.iter().map(|&l| l as usize).collect();
        let m = evaluate(
            &clf,
            &sub.pixels,
            sub.len(),
            Some(&sub_labels),
            &train_set,
            7,
        )
        .unwrap();
        assert!(m.per_class_accuracy.as_ref().unwrap()[3].is_nan());
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("\"feature_network\":\"curadiff-fmnist-classifier\""));
        assert!(json.contains("null"), "{json}");
        // Input errors.
        let e = evaluate(&clf, &test_set.pixels, n, Some(&labels[..5]), &train_set, 7)
            .unwrap_err()
            .to_string();
        assert!(e.contains("5 class labels for 200"), "{e}");
        let mut bad = labels.clone();
        bad[4] = 10;
        let e = evaluate(&clf, &test_set.pixels, n, Some(&bad), &train_set, 7)
            .unwrap_err()
            .to_string();
        assert!(e.contains("class label 10 of generated image 4"), "{e}");
        let e = evaluate(&clf, &test_set.pixels[..100], n, None, &train_set, 7)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[n, 1, 28, 28]"), "{e}");
    }

    /// The metrics at full scale, with a one-epoch classifier: 10,000 training images against
    /// the 10,000 test images, and the same images with added noise. Run with `--ignored`.
    #[test]
    #[ignore]
    fn full_fashion_mnist_metrics_separate_real_from_noisy_images() {
        let dir = Path::new(crate::data::images::FASHION_MNIST_DIR);
        if !dir.join("train-images-idx3-ubyte.gz").is_file() {
            eprintln!(
                "skipped: Fashion-MNIST is not installed in {}",
                dir.display()
            );
            return;
        }
        let train_set = load_fashion_mnist(dir, Split::Train).unwrap();
        let test_set = load_fashion_mnist(dir, Split::Test).unwrap();
        let cfg = ClassifierConfig {
            epochs: 1,
            ..ClassifierConfig::default()
        };
        let start = std::time::Instant::now();
        let clf = train(&train_set, &cfg, &mut |_, _, _| {}).unwrap();
        eprintln!(
            "one-epoch classifier: {:.0} s",
            start.elapsed().as_secs_f64()
        );
        let real = train_set.subset(&(0..10_000).collect::<Vec<_>>());
        let labels: Vec<usize> = real.labels.iter().map(|&l| l as usize).collect();
        let start = std::time::Instant::now();
        let m = evaluate(&clf, &real.pixels, real.len(), Some(&labels), &test_set, 0).unwrap();
        eprintln!(
            "real: {} ({:.0} s)",
            serde_json::to_string(&m).unwrap(),
            start.elapsed().as_secs_f64()
        );
        let mut rng = Rng::new(0, Stream::Eval, 0);
        let noisy: Vec<f32> = real
            .pixels
            .iter()
            .map(|&v| (v + 0.5 * rng.normal() as f32).clamp(-1.0, 1.0))
            .collect();
        let mn = evaluate(&clf, &noisy, real.len(), Some(&labels), &test_set, 0).unwrap();
        eprintln!("noisy: {}", serde_json::to_string(&mn).unwrap());
        assert!(m.class_accuracy.unwrap() > 0.85, "{m:?}");
        assert!(m.precision > 0.5 && m.recall > 0.5, "{m:?}");
        assert!(m.kid_mean.abs() < 5.0 * m.kid_std.max(1e-3), "{m:?}");
        assert!(mn.fd > 5.0 * m.fd, "{} vs {}", mn.fd, m.fd);
        assert!(mn.kid_mean > 5.0 * m.kid_mean.max(m.kid_std), "{mn:?}");
        assert!(mn.precision < m.precision, "{mn:?}");
    }

    /// The Fréchet distance at MobileNetV2 scale: 10,000 vs 10,000 rows of 1280 synthetic
    /// features (feature extraction excluded). Run with
    /// `cargo test --release -p curadiff frechet_distance_timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn frechet_distance_timing_10k_by_1280() {
        let (n, dim, rank) = (10_000, 1280, 400);
        // Correlated, rank-400-plus-noise features: x = z·W + 0.1·e, like pooled activations
        // whose covariance has a decaying spectrum.
        let w = normals(rank * dim, 21);
        let features = |seed: u64, shift: f64| -> Vec<f32> {
            let z = normals(n * rank, seed);
            let mut x = vec![0.0; n * dim];
            gemm(n, rank, dim, &z, (rank, 1), &w, (dim, 1), 0.0, &mut x);
            let e = normals(n * dim, seed + 1);
            x.iter()
                .zip(&e)
                .map(|(v, e)| (v / (rank as f64).sqrt() + 0.1 * e + shift) as f32)
                .collect()
        };
        let (a, b) = (features(22, 0.0), features(24, 0.05));
        let start = std::time::Instant::now();
        let (mu_a, cov_a) = mean_cov(&a, n, dim);
        let (mu_b, cov_b) = mean_cov(&b, n, dim);
        let t_cov = start.elapsed().as_secs_f64();
        let fd = frechet_distance_gaussians(&mu_a, &cov_a, &mu_b, &cov_b, dim).unwrap();
        let t_total = start.elapsed().as_secs_f64();
        eprintln!(
            "FD {n} vs {n} rows x {dim}: {fd:.4} in {t_total:.2} s (means and covariances \
             {t_cov:.2} s, square roots and trace {:.2} s; {} rayon threads)",
            t_total - t_cov,
            rayon::current_num_threads()
        );
        // The mean term alone is 1280·0.05² = 3.2; the covariances differ only by sampling,
        // which biases the estimate upwards.
        assert!(fd.is_finite() && fd > 3.0, "{fd}");
        assert!(t_total < 30.0, "{t_total} s");
    }
}
