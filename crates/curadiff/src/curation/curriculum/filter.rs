//! The filter of synthetic images, in place of DisCL's CLIP score (reference §D.1 step 3): a
//! classifier trained on the long-tailed set (never the image metrics' classifier) keeps an
//! image when it gives the intended class a probability ≥ τ; the cosine similarity of the
//! image's classifier features to its source's is recorded, as DisCL records the
//! image-to-real-image CLIP similarity.

use std::path::Path;

use crate::data::fingerprint::fingerprint;
use crate::data::images::ImageSet;
use crate::error::{Error, Result};
use crate::eval::classifier::{self, Classifier};

/// The cosine similarity of two feature vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}

/// Checks the threshold τ ∈ [0, 1].
pub fn check_tau(tau: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&tau) {
        return Err(Error::InvalidValue {
            field: "tau".into(),
            why: format!(
                "{tau} is not a probability in [0, 1]; the filter keeps an image whose intended \
                 class gets probability ≥ τ, e.g. 0.5 (0 keeps every image)"
            ),
        });
    }
    Ok(())
}

/// The filter classifier at `path`, checked: not the image metrics' classifier, trained on
/// `set` (the generator's training set, by fingerprint), and telling apart the generator's
/// `num_classes` classes.
pub fn load(path: &Path, set: &ImageSet, num_classes: usize) -> Result<Classifier> {
    let bad = |why: String| Error::BadFile {
        path: path.to_path_buf(),
        why,
    };
    let train_hint = "train one on the generator's training set with `curadiff classifier \
                      --run GEN_RUN --out FILE`";
    if path == classifier::default_path() {
        return Err(bad(format!(
            "is the image metrics' classifier, which must stay independent of the data it \
             judges; {train_hint}"
        )));
    }
    let clf = Classifier::load(path)?;
    check(&clf, set, num_classes).map_err(|why| bad(format!("{why}; {train_hint}")))?;
    Ok(clf)
}

/// Why `clf` cannot filter images of a generator with `num_classes` classes trained on
/// `set`, if it cannot.
pub fn check(
    clf: &Classifier,
    set: &ImageSet,
    num_classes: usize,
) -> std::result::Result<(), String> {
    if clf.num_classes() != num_classes {
        return Err(format!(
            "the filter classifier tells apart {} classes, the generator {num_classes}",
            clf.num_classes()
        ));
    }
    let have = fingerprint(set);
    match clf.trained_on() {
        Some(d) if d == have => Ok(()),
        Some(d) => Err(format!(
            "the filter classifier was trained on other data (fingerprint {d}), the generator's \
             training set is {have}"
        )),
        None => {
            Err("the filter classifier's file does not record the data it was trained on".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::data::images::tests::fixture;

    #[test]
    fn cosine_by_hand() {
        // (1, 2, 2)·(2, 0, 1) = 4; |a| = 3, |b| = √5: 4/(3√5).
        let c = cosine(&[1.0, 2.0, 2.0], &[2.0, 0.0, 1.0]);
        assert!((c - 4.0 / (3.0 * 5f64.sqrt())).abs() < 1e-12, "{c}");
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 0.0]), 0.0);
        assert!((cosine(&[0.5, 0.5], &[3.0, 3.0]) - 1.0).abs() < 1e-12);
        assert!(check_tau(0.5).is_ok() && check_tau(1.2).is_err() && check_tau(f64::NAN).is_err());
    }

    #[test]
    fn a_filter_for_other_data_or_another_class_count_is_refused() {
        let set = fixture(40);
        let cfg = classifier::ClassifierConfig {
            epochs: 1,
            batch: 16,
            lr: 2e-3,
            seed: 1,
        };
        let clf = classifier::train(&set, &cfg, &mut |_, _, _| {}).unwrap();
        assert!(check(&clf, &set, 10).is_ok());
        let e = check(&clf, &set, 5).unwrap_err();
        assert!(e.contains("10 classes, the generator 5"), "{e}");
        let other = set.subset(&(0..30).collect::<Vec<_>>());
        let e = check(&clf, &other, 10).unwrap_err();
        assert!(
            e.contains("other data") && e.contains(&fingerprint(&other)),
            "{e}"
        );
        // Through a file: the data fingerprint survives saving.
        let dir = std::env::temp_dir().join(format!("curadiff-filter-{}", std::process::id()));
        let p = dir.join("lt.safetensors");
        clf.save(&p).unwrap();
        assert!(load(&p, &set, 10).is_ok());
        let e = load(&p, &set, 7).unwrap_err().to_string();
        assert!(
            e.contains("lt.safetensors") && e.contains("curadiff classifier --run"),
            "{e}"
        );
        let e = load(&classifier::default_path(), &set, 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("metrics' classifier"), "{e}");
        std::fs::remove_dir_all(dir).ok();
    }
}
