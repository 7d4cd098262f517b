//! DisCL's fixed "diverse → specific" curriculum (reference §D.2, ImageNet-LT's
//! `seq_curri_guid`): one stage per image guidance λ in ascending order, each training on the
//! real long-tailed set merged with the synthetic images of its λ, then a final stage on the
//! real set alone. The curriculum's steps are shared evenly by its stages, the remainder
//! going to the early ones.

use crate::error::{Error, Result};

use super::spectrum::SpectrumRow;

/// Two λ closer than this are the same level (λ = 1 − s is stored rounded).
pub const LAMBDA_TOLERANCE: f64 = 1e-6;

/// True when `row` was made at image guidance `lambda`.
pub fn at_lambda(row: &SpectrumRow, lambda: f64) -> bool {
    (row.lambda - lambda).abs() < LAMBDA_TOLERANCE
}

/// `steps` shared by `stages` stages: ⌊steps/stages⌋ each, one more for the first
/// `steps mod stages`.
pub fn stage_steps(steps: usize, stages: usize) -> Vec<usize> {
    if stages == 0 {
        return Vec::new();
    }
    (0..stages)
        .map(|i| steps / stages + usize::from(i < steps % stages))
        .collect()
}

/// The λ levels of a curriculum, ascending: `wanted` (each must occur in `rows`), or every
/// level of `rows` when `wanted` is empty.
pub fn lambdas(rows: &[SpectrumRow], wanted: &[f64]) -> Result<Vec<f64>> {
    let mut present: Vec<f64> = Vec::new();
    for r in rows {
        if !present
            .iter()
            .any(|&l| (l - r.lambda).abs() < LAMBDA_TOLERANCE)
        {
            present.push(r.lambda);
        }
    }
    present.sort_by(f64::total_cmp);
    if wanted.is_empty() {
        if present.is_empty() {
            return Err(Error::Config(
                "the spectrum holds no synthetic images (with kept_only, the filter kept none); \
                 synthesise more or lower the filter's τ"
                    .into(),
            ));
        }
        return Ok(present);
    }
    let mut out = Vec::with_capacity(wanted.len());
    for &l in wanted {
        if !present.iter().any(|&p| (p - l).abs() < LAMBDA_TOLERANCE) {
            return Err(Error::InvalidValue {
                field: "curriculum lambdas".into(),
                why: format!(
                    "λ = {l} has no synthetic images in the spectrum (it holds λ {present:?}); \
                     pick from those or leave the list empty for all"
                ),
            });
        }
        out.push(l);
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::curation::curriculum::spectrum::tests::row;

    #[test]
    fn stages_share_steps_and_lambdas_ascend() {
        assert_eq!(stage_steps(10, 3), [4, 3, 3]);
        assert_eq!(stage_steps(9, 3), [3, 3, 3]);
        assert!(stage_steps(9, 0).is_empty());
        let rows = [
            row(1, 0, 0.1, true),
            row(2, 1, 1.0, true),
            row(3, 0, 0.5, true),
        ];
        let l = lambdas(&rows, &[]).unwrap();
        assert_eq!(l.len(), 3);
        assert!((l[0] - 0.0).abs() < 1e-12 && (l[1] - 0.5).abs() < 1e-12);
        assert!((l[2] - 0.9).abs() < 1e-12);
        assert!(at_lambda(&rows[0], 0.9));
        let e = lambdas(&rows, &[0.3]).unwrap_err().to_string();
        assert!(e.contains("λ = 0.3"), "{e}");
        assert!(lambdas(&[], &[]).is_err());
    }
}
