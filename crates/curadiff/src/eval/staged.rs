//! The Fashion-MNIST classifier of [`super::classifier`] trained in stages, for DisCL's
//! curricula ([`crate::curation::curriculum::arm`]): each stage is a list of examples drawn
//! from one or more labelled sets (real and synthetic images alike, each with its own pixels
//! and label, repeats allowed) and a number of optimiser steps. The weights, Adam's state and
//! the one half-cosine learning-rate schedule over the steps of all stages carry on from
//! stage to stage ([`crate::models::cnn::Trainer`]); with the same seed the result is the
//! same. One stage over a set for whole epochs gives bit for bit the weights of
//! [`super::classifier::train`] with that many epochs.
//!
//! [`score`] gives the accuracy on a (balanced) test set overall, per class, and as the mean
//! over the classes of each many / medium / few-shot group
//! ([`crate::data::long_tail::group_means`]).

use serde::{Deserialize, Serialize};
use std::time::Instant;

use super::classifier::{
    check_set, Classifier, ClassifierConfig, CLASSIFIER_KEY, NUM_CLASSES, SHAPE,
};
use crate::data::images::ImageSet;
use crate::data::long_tail::{group_means, ShotGroup};
use crate::error::{Error, Result};
use crate::models::cnn::{Objective, Schedule, Trainer};

/// One training example of a stage: (index into the stage's sets, example index in that set).
pub type Item = (usize, usize);

/// Accuracy of a classifier on a test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Fraction of the test images classified as their label.
    pub overall: f64,
    /// Per class: the fraction of its test images classified as it (0 without test images).
    pub per_class: Vec<f64>,
    /// Mean of `per_class` over the many-shot classes (None: the group has no class).
    pub many: Option<f64>,
    /// The same over the medium-shot classes.
    pub medium: Option<f64>,
    /// The same over the few-shot classes.
    pub few: Option<f64>,
}

/// Per class `0..k`: the fraction of the examples labelled with it that are predicted as it
/// (0 for a class without examples).
pub fn per_class_accuracy(pred: &[usize], labels: &[u32], k: usize) -> Vec<f64> {
    let mut right = vec![0usize; k];
    let mut all = vec![0usize; k];
    for (&p, &l) in pred.iter().zip(labels) {
        let l = l as usize;
        if l < k {
            all[l] += 1;
            right[l] += (p == l) as usize;
        }
    }
    right
        .iter()
        .zip(&all)
        .map(|(&r, &n)| if n == 0 { 0.0 } else { r as f64 / n as f64 })
        .collect()
}

/// The score of `clf` on `test`; `train_counts` (training images per class) decide the shot
/// groups.
pub fn score(clf: &Classifier, test: &ImageSet, train_counts: &[usize]) -> Result<Score> {
    check_set(test, "test set")?;
    let pred = clf.predict(&test.pixels, test.len())?;
    let right = pred
        .iter()
        .zip(&test.labels)
        .filter(|&(&p, &l)| p == l as usize)
        .count();
    let per_class = per_class_accuracy(&pred, &test.labels, NUM_CLASSES);
    let groups = group_means(&per_class, train_counts);
    let group = |g: ShotGroup| groups.iter().find(|x| x.0 == g).and_then(|x| x.1);
    Ok(Score {
        overall: if test.is_empty() {
            0.0
        } else {
            right as f64 / test.len() as f64
        },
        many: group(ShotGroup::Many),
        medium: group(ShotGroup::Medium),
        few: group(ShotGroup::Few),
        per_class,
    })
}

/// The classifier in training, between stages.
pub struct StagedClassifier {
    trainer: Trainer,
    config: ClassifierConfig,
    seconds: f64,
}

impl StagedClassifier {
    /// Fresh weights from `cfg.seed` and a schedule of `total_steps` steps in batches of
    /// `cfg.batch` from `cfg.lr` (`cfg.epochs` is not used: stages say their steps).
    pub fn new(cfg: &ClassifierConfig, total_steps: usize) -> Result<Self> {
        if cfg.batch == 0 || total_steps == 0 {
            return Err(Error::InvalidValue {
                field: "classifier batch/steps".into(),
                why: format!(
                    "both must be at least 1 (got batch = {}, steps = {total_steps})",
                    cfg.batch
                ),
            });
        }
        if !(cfg.lr.is_finite() && cfg.lr > 0.0) {
            return Err(Error::InvalidValue {
                field: "classifier lr".into(),
                why: format!("must be a positive number (got {})", cfg.lr),
            });
        }
        let schedule = Schedule {
            epochs: 0,
            batch: cfg.batch,
            lr: cfg.lr,
            seed: cfg.seed,
            key: CLASSIFIER_KEY,
        };
        Ok(Self {
            trainer: Trainer::new(SHAPE, &schedule, Objective::CrossEntropy, total_steps),
            config: cfg.clone(),
            seconds: 0.0,
        })
    }

    /// Steps taken so far, and in all.
    pub fn steps(&self) -> (usize, usize) {
        (self.trainer.done(), self.trainer.total())
    }

    /// Wall seconds spent in [`StagedClassifier::stage`] so far.
    pub fn train_seconds(&self) -> f64 {
        self.seconds
    }

    /// Trains `steps` steps on `items` of `sets`; `progress(done, total, loss)` after each.
    pub fn stage(
        &mut self,
        sets: &[&ImageSet],
        items: &[Item],
        steps: usize,
        progress: &mut dyn FnMut(usize, usize, f64),
    ) -> Result<()> {
        let started = Instant::now();
        for (k, set) in sets.iter().enumerate() {
            check_set(set, &format!("stage's set {k}"))?;
        }
        if let Some(&(s, i)) = items
            .iter()
            .find(|&&(s, i)| s >= sets.len() || i >= sets[s].len())
        {
            return Err(Error::Model(format!(
                "internal: stage item ({s}, {i}) is outside its {} sets",
                sets.len()
            )));
        }
        let mut fill = |_: usize, rows: &[usize], x: &mut Vec<f32>, y: &mut Vec<f32>| {
            y.resize(rows.len() * NUM_CLASSES, 0.0f32);
            for (row, &r) in rows.iter().enumerate() {
                let (s, i) = items[r];
                x.extend_from_slice(sets[s].image(i));
                y[row * NUM_CLASSES + sets[s].labels[i] as usize] = 1.0;
            }
            Ok(())
        };
        self.trainer
            .stage(items.len(), steps, &mut fill, progress)?;
        self.seconds += started.elapsed().as_secs_f64();
        Ok(())
    }

    /// The classifier as it is now (its config's epochs are 0: trained in stages).
    pub fn classifier(&self) -> Result<Classifier> {
        let cfg = ClassifierConfig {
            epochs: 0,
            ..self.config.clone()
        };
        Ok(Classifier::from_net(
            self.trainer.snapshot()?,
            cfg,
            Some(self.seconds),
            None,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::images::{load_fashion_mnist, Split};
    use crate::eval::classifier::{self, IMAGE_LEN};
    use crate::models::params;
    use std::path::Path;

    fn fixture(split: Split) -> ImageSet {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fmnist-fixture");
        load_fashion_mnist(&dir, split).expect("the committed fixture")
    }

    fn weights(c: &Classifier) -> Vec<f32> {
        // The logits of fixed inputs stand for the weights: equal weights, equal logits.
        let x: Vec<f32> = (0..3 * IMAGE_LEN)
            .map(|i| ((i % 17) as f32 / 8.0) - 1.0)
            .collect();
        c.logits(&x, 3).unwrap()
    }

    fn cfg() -> ClassifierConfig {
        ClassifierConfig {
            epochs: 2,
            batch: 50,
            lr: 2e-3,
            seed: 9,
        }
    }

    #[test]
    fn stages_on_the_same_data_equal_one_run_and_classifier_train() {
        let set = fixture(Split::Train).subset(&(0..100).collect::<Vec<_>>());
        let items: Vec<Item> = (0..set.len()).map(|i| (0, i)).collect();
        // 100 images in batches of 50: 2 steps per epoch, 2 epochs = 4 steps.
        let mut one = StagedClassifier::new(&cfg(), 4).unwrap();
        one.stage(&[&set], &items, 4, &mut |_, _, _| {}).unwrap();
        let mut two = StagedClassifier::new(&cfg(), 4).unwrap();
        let mut seen = Vec::new();
        two.stage(&[&set], &items, 2, &mut |d, t, _| seen.push((d, t)))
            .unwrap();
        // The same examples, split over two sets, in a second stage.
        let (a, b) = (set.subset(&[0]), set.subset(&(1..100).collect::<Vec<_>>()));
        let split: Vec<Item> = std::iter::once((0, 0))
            .chain((0..99).map(|i| (1, i)))
            .collect();
        two.stage(&[&a, &b], &split, 2, &mut |d, t, _| seen.push((d, t)))
            .unwrap();
        assert_eq!(seen, [(1, 4), (2, 4), (3, 4), (4, 4)]);
        assert_eq!(two.steps(), (4, 4));
        let (c1, c2) = (one.classifier().unwrap(), two.classifier().unwrap());
        assert_eq!(weights(&c1), weights(&c2));
        assert_eq!(
            params::to_host(c1.net_for_tests()).unwrap(),
            params::to_host(c2.net_for_tests()).unwrap()
        );
        // classifier::train is the one-stage case of the same trainer.
        let plain = classifier::train(&set, &cfg(), &mut |_, _, _| {}).unwrap();
        assert_eq!(
            params::to_host(plain.net_for_tests()).unwrap(),
            params::to_host(c1.net_for_tests()).unwrap()
        );
        // A stage on other data after the first changes the result; the same call again
        // gives it again (determinism).
        let run = || {
            let mut t = StagedClassifier::new(&cfg(), 4).unwrap();
            t.stage(&[&set], &items, 2, &mut |_, _, _| {}).unwrap();
            t.stage(&[&set], &items[..40], 2, &mut |_, _, _| {})
                .unwrap();
            weights(&t.classifier().unwrap())
        };
        let other = run();
        assert_eq!(other, run());
        assert_ne!(other, weights(&c1));
        // Zero steps are refused, naming the fix.
        let e = StagedClassifier::new(&cfg(), 0).err().unwrap().to_string();
        assert!(e.contains("steps = 0"), "{e}");
    }

    #[test]
    fn per_class_accuracy_of_a_hand_made_case() {
        // Class 0: 2 of 3 right; class 1: 0 of 1; class 2: 1 of 1; class 3: no examples.
        let pred = [0, 0, 1, 0, 2];
        let labels = [0, 0, 0, 1, 2];
        assert_eq!(
            per_class_accuracy(&pred, &labels, 4),
            [2.0 / 3.0, 0.0, 1.0, 0.0]
        );
    }

    #[test]
    fn score_groups_follow_the_training_counts() {
        let test = fixture(Split::Test);
        let train = fixture(Split::Train);
        let mut t = StagedClassifier::new(&cfg(), 2).unwrap();
        let items: Vec<Item> = (0..train.len()).map(|i| (0, i)).collect();
        t.stage(&[&train], &items, 2, &mut |_, _, _| {}).unwrap();
        let clf = t.classifier().unwrap();
        // Counts: classes 0–3 many (> 1000), 4–6 medium, 7–9 few (< 200).
        let counts = [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60];
        let s = score(&clf, &test, &counts).unwrap();
        let pred = clf.predict(&test.pixels, test.len()).unwrap();
        let pc = per_class_accuracy(&pred, &test.labels, 10);
        assert_eq!(s.per_class, pc);
        let mean = |r: std::ops::Range<usize>| pc[r.clone()].iter().sum::<f64>() / r.len() as f64;
        assert_eq!(s.many, Some(mean(0..4)));
        assert_eq!(s.medium, Some(mean(4..7)));
        assert_eq!(s.few, Some(mean(7..10)));
        assert!((s.overall - clf.accuracy(&test).unwrap()).abs() < 1e-12);
    }
}
