//! One arm of DisCL's comparison: a Fashion-MNIST classifier trained on the long-tailed real
//! set with or without a spectrum's synthetic images, by one of five plans at the same budget
//! of `steps` optimiser steps:
//! - `real`: the real set, one stage;
//! - `balanced`: class-balanced resampling of the real set ([`super::balanced`]), one stage;
//! - `all-synthetic`: the real set merged with every synthetic image, one stage;
//! - `fixed`: one stage per λ ascending, each the real set merged with that λ's images
//!   ([`super::fixed`]), then `final_steps` on the real set alone;
//! - `adaptive`: `stages` stages, the first at the lowest λ and each next one at the λ whose
//!   held-out images gained most in true-class probability ([`super::adaptive`]), then
//!   `final_steps` on the real set alone.
//!
//! The result holds the test accuracy overall, per class and per shot group after every stage
//! and at the end, and the seconds: training (the stages), selection (the adaptive rule's
//! held-out evaluations), synthesis and the choice of hard examples (both read from the
//! spectrum's sidecar); curation is their sum. Test scoring is not counted.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use super::adaptive::{held_out_sources, iqr_mean, next_lambda};
use super::balanced::class_balanced;
use super::fixed::{at_lambda, lambdas, stage_steps};
use super::spectrum::{self, Spectrum};
use crate::data::images::ImageSet;
use crate::error::{Error, Result};
use crate::eval::classifier::{Classifier, ClassifierConfig, NUM_CLASSES};
use crate::eval::staged::{score, Item, Score, StagedClassifier};

/// Which plan an arm follows (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArmKind {
    Real,
    Balanced,
    AllSynthetic,
    Fixed,
    Adaptive,
}

impl ArmKind {
    /// True when the arm trains on a spectrum's images.
    pub fn needs_spectrum(self) -> bool {
        matches!(self, Self::AllSynthetic | Self::Fixed | Self::Adaptive)
    }
}

/// An arm's config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArmConfig {
    /// The plan.
    pub arm: ArmKind,
    /// Optimiser steps in all, the same for every arm (at batch 128 on the 14,886 images of
    /// fmnist-lt, 117 steps are one epoch of the real set).
    pub steps: usize,
    /// Of `steps`, those of the final real-only stage of `fixed` and `adaptive`.
    pub final_steps: usize,
    /// Images per optimiser step.
    pub batch: usize,
    /// Initial Adam learning rate, decayed to 0 along one half cosine over `steps`.
    pub lr: f64,
    /// The λ levels of `fixed` and `adaptive`, ascending; empty: every level of the spectrum.
    pub lambdas: Vec<f64>,
    /// Stages of `adaptive` before the final one; 0: one per λ level.
    pub stages: usize,
    /// Fraction of the spectrum's source examples whose images `adaptive` holds out to
    /// measure progress (never trained on), in (0, 1).
    pub held_out: f64,
    /// Only the synthetic images the filter kept.
    pub kept_only: bool,
}

impl Default for ArmConfig {
    fn default() -> Self {
        Self {
            arm: ArmKind::Real,
            steps: 1200,
            final_steps: 200,
            batch: 128,
            lr: 1e-3,
            lambdas: Vec::new(),
            stages: 0,
            held_out: 0.2,
            kept_only: true,
        }
    }
}

impl ArmConfig {
    /// Checks the numbers, naming the field and a fix.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, why: String| {
            Err(Error::InvalidValue {
                field: format!("curriculum {field}"),
                why,
            })
        };
        if self.steps == 0 || self.batch == 0 {
            return bad(
                "steps/batch",
                format!("both must be ≥ 1 (got {} and {})", self.steps, self.batch),
            );
        }
        let curriculum = matches!(self.arm, ArmKind::Fixed | ArmKind::Adaptive);
        if curriculum && self.final_steps >= self.steps {
            return bad(
                "final_steps",
                format!(
                    "{} leaves no steps of {} for the λ stages; lower it (e.g. steps/6)",
                    self.final_steps, self.steps
                ),
            );
        }
        if self.arm == ArmKind::Adaptive && !(self.held_out > 0.0 && self.held_out < 1.0) {
            return bad(
                "held_out",
                format!("{} is outside (0, 1); use e.g. 0.2", self.held_out),
            );
        }
        Ok(())
    }
}

/// One stage of a finished arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageReport {
    /// Its λ (None: real images only).
    pub lambda: Option<f64>,
    /// Real and synthetic training items (resampled draws count once each).
    pub real: usize,
    pub synthetic: usize,
    pub steps: usize,
    /// Test accuracy after it.
    pub score: Score,
    /// Adaptive only: per λ, the IQR-trimmed mean progress measured after it (None: no
    /// held-out image at that λ).
    pub progress: Vec<(f64, Option<f64>)>,
}

/// A finished arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmResult {
    pub config: ArmConfig,
    /// Classifier seed.
    pub seed: u64,
    /// Test accuracy at the end.
    pub score: Score,
    pub stages: Vec<StageReport>,
    /// Training items per class of the real set (they decide the shot groups).
    pub train_counts: Vec<usize>,
    /// Adaptive only: held-out source examples and their synthetic images.
    pub held_out_sources: usize,
    pub held_out_images: usize,
    pub train_seconds: f64,
    pub selection_seconds: f64,
    pub synthesis_seconds: f64,
    /// Choosing the hard examples the spectrum was made from (`curadiff hard`).
    #[serde(default)]
    pub hard_seconds: f64,
    /// Selection, synthesis and the choice of hard examples.
    pub curation_seconds: f64,
    /// Training plus curation.
    pub seconds: f64,
}

/// Items of the real set (set 0), then of `synthetic` (set 1, the given indices).
fn items(real: &ImageSet, synthetic: &[usize]) -> Vec<Item> {
    (0..real.len())
        .map(|i| (0, i))
        .chain(synthetic.iter().map(|&j| (1, j)))
        .collect()
}

/// True-class probability of every image of `set`.
fn p_true(clf: &Classifier, set: &ImageSet) -> Result<Vec<f64>> {
    let p = clf.probabilities(&set.pixels, set.len())?;
    Ok(set
        .labels
        .iter()
        .enumerate()
        .map(|(i, &l)| p[i * NUM_CLASSES + l as usize] as f64)
        .collect())
}

/// Trains one arm: `cfg` with classifier seed `seed` on `real` (the long-tailed pool the
/// spectrum's source ids refer to), scored on `test`; `spectrum_dir` is needed by the arms
/// that use synthetic images. `progress` gets a line per stage.
pub fn run_arm(
    seed: u64,
    cfg: &ArmConfig,
    real: &ImageSet,
    test: &ImageSet,
    spectrum_dir: Option<&Path>,
    progress: &mut dyn FnMut(&str),
) -> Result<ArmResult> {
    cfg.validate()?;
    if real.is_empty() {
        return Err(Error::Config("the real training set is empty".into()));
    }
    let spec: Option<Spectrum> = match (cfg.arm.needs_spectrum(), spectrum_dir) {
        (true, None) => {
            return Err(Error::Config(format!(
                "the {:?} arm trains on synthetic images: give the spectrum folder written by \
                 `curadiff synth`",
                cfg.arm
            )))
        }
        (true, Some(d)) => Some(spectrum::load(d, real, cfg.kept_only)?),
        (false, _) => None,
    };
    let ccfg = ClassifierConfig {
        epochs: 0,
        batch: cfg.batch,
        lr: cfg.lr,
        seed,
    };
    let counts = real.class_counts();
    let mut clf = StagedClassifier::new(&ccfg, cfg.steps)?;
    let mut stages = Vec::new();
    let mut selection = 0.0;
    let mut held = (0, 0);
    let mut log = |clf: &StagedClassifier, stages: &Vec<StageReport>| {
        if let Some(s) = stages.last() {
            let (done, total) = clf.steps();
            progress(&format!(
                "stage {} (λ {:?}): step {done}/{total}, test accuracy {:.4}, few-shot {:?}",
                stages.len(),
                s.lambda,
                s.score.overall,
                s.score.few
            ));
        }
    };
    let run = |clf: &mut StagedClassifier,
               sets: &[&ImageSet],
               it: &[Item],
               steps: usize,
               lambda: Option<f64>|
     -> Result<StageReport> {
        clf.stage(sets, it, steps, &mut |_, _, _| {})?;
        let real_items = it.iter().filter(|i| i.0 == 0).count();
        Ok(StageReport {
            lambda,
            real: real_items,
            synthetic: it.len() - real_items,
            steps,
            score: score(&clf.classifier()?, test, &counts)?,
            progress: Vec::new(),
        })
    };
    match (cfg.arm, &spec) {
        (ArmKind::Real, _) => {
            stages.push(run(&mut clf, &[real], &items(real, &[]), cfg.steps, None)?);
        }
        (ArmKind::Balanced, _) => {
            let draws: Vec<Item> = class_balanced(real, real.len(), seed)
                .into_iter()
                .map(|i| (0, i))
                .collect();
            stages.push(run(&mut clf, &[real], &draws, cfg.steps, None)?);
        }
        (ArmKind::AllSynthetic, Some(sp)) => {
            let all: Vec<usize> = (0..sp.set.len()).collect();
            let it = items(real, &all);
            stages.push(run(&mut clf, &[real, &sp.set], &it, cfg.steps, None)?);
        }
        (ArmKind::Fixed, Some(sp)) => {
            let levels = lambdas(&sp.meta.rows, &cfg.lambdas)?;
            let split = stage_steps(cfg.steps - cfg.final_steps, levels.len());
            for (&l, &steps) in levels.iter().zip(&split) {
                let at: Vec<usize> = (0..sp.set.len())
                    .filter(|&j| at_lambda(&sp.meta.rows[j], l))
                    .collect();
                let it = items(real, &at);
                stages.push(run(&mut clf, &[real, &sp.set], &it, steps, Some(l))?);
                log(&clf, &stages);
            }
        }
        (ArmKind::Adaptive, Some(sp)) => {
            let levels = lambdas(&sp.meta.rows, &cfg.lambdas)?;
            let n_stages = if cfg.stages == 0 {
                levels.len()
            } else {
                cfg.stages
            };
            let sources: BTreeSet<u64> = sp.meta.rows.iter().map(|r| r.source_id).collect();
            let out = held_out_sources(&sources, cfg.held_out, seed);
            let is_held = |j: usize| out.contains(&sp.meta.rows[j].source_id);
            // Per λ: the held-out images (a set each) and the trainable ones.
            let mut probe = Vec::with_capacity(levels.len());
            let mut train = Vec::with_capacity(levels.len());
            for &l in &levels {
                let at: Vec<usize> = (0..sp.set.len())
                    .filter(|&j| at_lambda(&sp.meta.rows[j], l))
                    .collect();
                let (h, t): (Vec<usize>, Vec<usize>) = at.into_iter().partition(|&j| is_held(j));
                held.1 += h.len();
                probe.push(sp.set.subset(&h));
                train.push(t);
            }
            held.0 = out.len();
            let t = Instant::now();
            let first = clf.classifier()?;
            let mut before = probe
                .iter()
                .map(|s| p_true(&first, s))
                .collect::<Result<Vec<_>>>()?;
            selection += t.elapsed().as_secs_f64();
            let mut pick = 0;
            let split = stage_steps(cfg.steps - cfg.final_steps, n_stages);
            for &steps in &split {
                let it = items(real, &train[pick]);
                let mut report = run(&mut clf, &[real, &sp.set], &it, steps, Some(levels[pick]))?;
                let t = Instant::now();
                let now_clf = clf.classifier()?;
                let now = probe
                    .iter()
                    .map(|s| p_true(&now_clf, s))
                    .collect::<Result<Vec<_>>>()?;
                let gains: Vec<Vec<f64>> = now
                    .iter()
                    .zip(&before)
                    .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x - y).collect())
                    .collect();
                report.progress = levels
                    .iter()
                    .zip(&gains)
                    .map(|(&l, g)| (l, iqr_mean(g).map(|m| m.0)))
                    .collect();
                pick = next_lambda(&gains).unwrap_or(pick);
                before = now;
                selection += t.elapsed().as_secs_f64();
                stages.push(report);
                log(&clf, &stages);
            }
        }
        (_, None) => {
            return Err(Error::Config(format!(
                "internal: the {:?} arm lost its spectrum",
                cfg.arm
            )))
        }
    }
    if matches!(cfg.arm, ArmKind::Fixed | ArmKind::Adaptive) {
        let it = items(real, &[]);
        stages.push(run(&mut clf, &[real], &it, cfg.final_steps, None)?);
    }
    log(&clf, &stages);
    let final_score = match stages.last() {
        Some(s) => s.score.clone(),
        None => score(&clf.classifier()?, test, &counts)?,
    };
    let synthesis = spec.as_ref().map_or(0.0, |s| s.meta.seconds);
    let hard = spec.as_ref().map_or(0.0, |s| s.meta.hard_seconds);
    let curation = selection + synthesis + hard;
    let train_seconds = clf.train_seconds();
    Ok(ArmResult {
        config: cfg.clone(),
        seed,
        score: final_score,
        stages,
        train_counts: counts,
        held_out_sources: held.0,
        held_out_images: held.1,
        train_seconds,
        selection_seconds: selection,
        synthesis_seconds: synthesis,
        hard_seconds: hard,
        curation_seconds: curation,
        seconds: train_seconds + curation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::curation::curriculum::spectrum::tests::{meta, row};
    use crate::data::images::{load_fashion_mnist, Split};

    fn fixture(split: Split) -> ImageSet {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fmnist-fixture");
        load_fashion_mnist(&dir, split).expect("the committed fixture")
    }

    #[test]
    fn every_arm_runs_its_stages_at_the_same_budget_and_deterministically() {
        let all = fixture(Split::Train);
        let real = all.subset(&(0..120).collect::<Vec<_>>());
        let test = fixture(Split::Test);
        // A stand-in spectrum: images 120..180 of the fixture as "synthetic" images of the
        // first 60 real examples, 20 at each of λ 0, 0.5 and 0.9 (strengths 1, 0.5, 0.1).
        let dir = std::env::temp_dir().join(format!("curadiff-arm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut pixels = Vec::new();
        let mut rows = Vec::new();
        for j in 0..60 {
            let s = [1.0, 0.5, 0.1][j / 20];
            pixels.extend_from_slice(all.image(120 + j));
            rows.push(row(real.ids[j], real.labels[j], s, j % 7 != 3));
        }
        let mut m = meta(&real, rows);
        m.shape = [1, 28, 28];
        spectrum::write(&dir, &pixels, &m).unwrap();
        let base = ArmConfig {
            steps: 8,
            final_steps: 2,
            batch: 32,
            lr: 2e-3,
            ..ArmConfig::default()
        };
        let go = |arm: ArmKind, stages: usize| {
            let cfg = ArmConfig {
                arm,
                stages,
                ..base.clone()
            };
            run_arm(3, &cfg, &real, &test, Some(&dir), &mut |_| {}).unwrap()
        };
        let kept = m.rows.iter().filter(|r| r.kept).count();
        let r = go(ArmKind::Real, 0);
        assert_eq!(r.stages.len(), 1);
        assert_eq!((r.stages[0].real, r.stages[0].synthetic), (120, 0));
        assert_eq!(r.synthesis_seconds, 0.0);
        let b = go(ArmKind::Balanced, 0);
        assert_eq!(b.stages[0].real, 120);
        let s = go(ArmKind::AllSynthetic, 0);
        assert_eq!(s.stages[0].synthetic, kept);
        assert_eq!((s.synthesis_seconds, s.hard_seconds), (1.25, 0.5));
        assert_eq!(s.curation_seconds, 1.75);
        assert_eq!(s.seconds, s.train_seconds + 1.75);
        // Fixed: λ 0, 0.5, 0.9 ascending (6 steps as 2 + 2 + 2), then 2 real-only steps.
        let f = go(ArmKind::Fixed, 0);
        let lam: Vec<Option<f64>> = f.stages.iter().map(|s| s.lambda).collect();
        assert_eq!(lam.len(), 4);
        assert_eq!(lam[0], Some(0.0));
        assert!((lam[2].unwrap() - 0.9).abs() < 1e-9 && lam[3].is_none());
        assert_eq!(
            f.stages.iter().map(|s| s.steps).collect::<Vec<_>>(),
            [2, 2, 2, 2]
        );
        let at0 = m.rows.iter().filter(|r| r.kept && r.lambda == 0.0).count();
        assert_eq!(f.stages[0].synthetic, at0);
        // Adaptive: 3 stages (2 + 2 + 2) starting at the lowest λ, each reporting progress per
        // λ, then the real-only stage; held out: ⌈0.2·51⌉ = 11 of the 51 sources whose image
        // the filter kept (rows j ≡ 3 mod 7 of 60 were rejected: 9 of them).
        let a = go(ArmKind::Adaptive, 3);
        assert_eq!(a.stages.len(), 4);
        assert_eq!(a.stages[0].lambda, Some(0.0));
        assert_eq!(kept, 51);
        assert_eq!(a.held_out_sources, 11);
        assert!(a.stages[..3].iter().all(|s| s.progress.len() == 3));
        let trained: usize = a.stages[..3].iter().map(|s| s.synthetic).sum();
        assert!(trained < kept && a.held_out_images > 0);
        // The same seed gives the same numbers.
        let again = go(ArmKind::Adaptive, 3);
        assert_eq!(again.stages, a.stages);
        assert_eq!(again.score, a.score);
        for x in [&r, &b, &s, &f, &a] {
            assert_eq!(x.score.per_class.len(), 10);
        }
        // A synthetic arm without its spectrum, and a bad held-out fraction: refused.
        let cfg = ArmConfig {
            arm: ArmKind::Fixed,
            ..base.clone()
        };
        let e = run_arm(3, &cfg, &real, &test, None, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("curadiff synth"), "{e}");
        let cfg = ArmConfig {
            arm: ArmKind::Adaptive,
            held_out: 1.0,
            ..base
        };
        let e = run_arm(3, &cfg, &real, &test, Some(&dir), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("held_out"), "{e}");
        std::fs::remove_dir_all(dir).ok();
    }
}
