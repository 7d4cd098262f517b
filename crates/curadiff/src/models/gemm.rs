//! The one single-precision GEMM wrapper of the CPU kernels: C ← A·B + beta·C for row-major
//! slices with explicit strides, on the `gemm` crate's kernels (which pick AVX-512, AVX2+FMA
//! or scalar code from the features the CPU reports at run time). It runs on the calling
//! thread: the kernels parallelise over independent blocks of rows or images themselves, so
//! that results do not depend on the number of threads.

/// C ← A·B + beta·C with A `[m, k]` at strides `(rsa, csa)`, B `[k, n]` at `(rsb, csb)` and C
/// row-major `[m, n]`. `beta` must be 0 or 1 (overwrite or accumulate).
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    beta: f32,
    c: &mut [f32],
) {
    assert!(beta == 0.0 || beta == 1.0, "sgemm: beta must be 0 or 1");
    assert!(
        m == 0 || k == 0 || (m - 1) * rsa + (k - 1) * csa < a.len(),
        "sgemm: A too small"
    );
    assert!(
        k == 0 || n == 0 || (k - 1) * rsb + (n - 1) * csb < b.len(),
        "sgemm: B too small"
    );
    assert!(c.len() >= m * n, "sgemm: C too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if beta == 0.0 {
            c[..m * n].iter_mut().for_each(|v| *v = 0.0);
        }
        return;
    }
    // SAFETY: the asserts above keep every index the kernel touches inside the slices; C is
    // row-major [m, n] and does not alias A or B (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            beta == 1.0,
            a.as_ptr(),
            csa as isize,
            rsa as isize,
            b.as_ptr(),
            csb as isize,
            rsb as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_by_hand_with_transposes_and_accumulation() {
        // A = [[1, 2, 3], [4, 5, 6]], B = [[1, 0], [0, 1], [1, 1]] → A·B = [[4, 5], [10, 11]].
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let mut c = [9.0f32; 4];
        sgemm(2, 3, 2, &a, (3, 1), &b, (2, 1), 0.0, &mut c);
        assert_eq!(c, [4.0, 5.0, 10.0, 11.0]);
        // Accumulate Aᵀ-stored A: the same A read from its transpose [3, 2] column-wise.
        let at = [1.0, 4.0, 2.0, 5.0, 3.0, 6.0];
        sgemm(2, 3, 2, &at, (1, 2), &b, (2, 1), 1.0, &mut c);
        assert_eq!(c, [8.0, 10.0, 20.0, 22.0]);
        // A larger product against a plain triple loop.
        let (m, k, n) = (37, 29, 19);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 13) as f32 - 6.0).collect();
        let mut c = vec![0.0f32; m * n];
        sgemm(m, k, n, &a, (k, 1), &b, (n, 1), 0.0, &mut c);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
                assert_eq!(c[i * n + j], want, "({i}, {j})");
            }
        }
    }
}
