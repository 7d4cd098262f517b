//! f32 tensors read back from a safetensors file, checked: present, F32, of the expected
//! shape and finite. The one decoder of the weight files (checkpoints, the CNN classifiers,
//! MobileNetV2); each reader words its own hint around [`TensorIssue::describe`].

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

/// Why a stored tensor cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorIssue {
    /// No tensor of that name.
    Missing,
    /// Another dtype or shape than expected.
    Kind { dtype: Dtype, shape: Vec<usize> },
    /// A NaN or infinite value.
    NonFinite(f32),
}

impl TensorIssue {
    /// `tensor NAME is missing` / `is DTYPE SHAPE, expected F32 SHAPE` / `holds a non-finite
    /// value V`.
    pub fn describe(&self, name: &str, expected: &[usize]) -> String {
        match self {
            Self::Missing => format!("tensor {name} is missing"),
            Self::Kind { dtype, shape } => {
                format!("tensor {name} is {dtype:?} {shape:?}, expected F32 {expected:?}")
            }
            Self::NonFinite(v) => format!("tensor {name} holds a non-finite value {v}"),
        }
    }
}

/// The values of an F32 tensor (little-endian, as safetensors stores them), any shape.
pub fn f32_values(view: &TensorView) -> Result<Vec<f32>, TensorIssue> {
    if view.dtype() != Dtype::F32 {
        return Err(TensorIssue::Kind {
            dtype: view.dtype(),
            shape: view.shape().to_vec(),
        });
    }
    Ok(view
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Tensor `name` of `st`: F32, of `shape`, every value finite.
pub fn checked_f32(st: &SafeTensors, name: &str, shape: &[usize]) -> Result<Vec<f32>, TensorIssue> {
    let view = st.tensor(name).map_err(|_| TensorIssue::Missing)?;
    if view.shape() != shape {
        return Err(TensorIssue::Kind {
            dtype: view.dtype(),
            shape: view.shape().to_vec(),
        });
    }
    let data = f32_values(&view)?;
    if let Some(&v) = data.iter().find(|v| !v.is_finite()) {
        return Err(TensorIssue::NonFinite(v));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_every_issue_is_named() {
        let a: Vec<u8> = [1.5f32, -2.0, 0.25, 8.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let nan: Vec<u8> = [f32::NAN, 1.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let half = [0u8; 4];
        let views = vec![
            ("a", TensorView::new(Dtype::F32, vec![2, 2], &a).unwrap()),
            ("n", TensorView::new(Dtype::F32, vec![2], &nan).unwrap()),
            ("h", TensorView::new(Dtype::F16, vec![2], &half).unwrap()),
        ];
        let bytes = safetensors::serialize(views, &None).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(
            checked_f32(&st, "a", &[2, 2]).unwrap(),
            [1.5, -2.0, 0.25, 8.0]
        );
        assert_eq!(checked_f32(&st, "x", &[1]), Err(TensorIssue::Missing));
        let e = checked_f32(&st, "a", &[4]).unwrap_err();
        assert_eq!(
            e.describe("a", &[4]),
            "tensor a is F32 [2, 2], expected F32 [4]"
        );
        let e = checked_f32(&st, "h", &[2]).unwrap_err();
        assert!(e.describe("h", &[2]).contains("F16"), "{e:?}");
        assert!(matches!(
            checked_f32(&st, "n", &[2]),
            Err(TensorIssue::NonFinite(v)) if v.is_nan()
        ));
        // Without the shape and finiteness checks (checkpoints): the raw values.
        assert_eq!(f32_values(&st.tensor("n").unwrap()).unwrap().len(), 2);
    }
}
