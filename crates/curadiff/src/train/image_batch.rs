//! Training batches of images: which examples a step trains on, at which σ, and as which
//! (input, target) pairs.
//!
//! Every batch is a pure function of the run seed, the step, the noise schedule's state and
//! (with noise windows) the walk's cursor, which the task saves in its checkpoints, so resume
//! is bit-identical. Examples come from an endless sequence of shuffled epochs. Without
//! windows, step s trains on positions s·b … s·b + b − 1 of it. With windows
//! ([`crate::data::windows`]) σ is drawn first, and the walk yields the next example of the
//! sequence that admits it, skipping the others (reference §C.3, noise-first rejection), so
//! the σ marginal stays the schedule's and a clean example still comes once per epoch.

use crate::curation::targets::{Clean, Targets};
use crate::data::images::ImageSet;
use crate::data::windows::NoiseWindow;
use crate::diffusion::noise::NoiseSampler;
use crate::error::{Error, Result};
use crate::rng::{Rng, Stream};

/// A training batch of images.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageBatch {
    /// Dataset index of each example.
    pub index: Vec<usize>,
    /// Training targets, flattened: the clean images y, or a target rule's per-example
    /// targets ([`crate::curation::targets`]).
    pub clean: Vec<f32>,
    /// Noisy inputs, e.g. x = y + σ·n.
    pub x: Vec<f32>,
    pub sigma: Vec<f64>,
    /// The class the network sees (None: dropped or unlabelled).
    pub labels: Vec<Option<usize>>,
}

impl ImageBatch {
    /// The rows `idx` of the batch, in that order.
    pub fn subset(&self, idx: &[usize]) -> ImageBatch {
        let d = self.clean.len() / self.sigma.len().max(1);
        let rows = |v: &[f32]| -> Vec<f32> {
            idx.iter()
                .flat_map(|&i| v[i * d..(i + 1) * d].iter().copied())
                .collect()
        };
        ImageBatch {
            index: idx.iter().map(|&i| self.index[i]).collect(),
            clean: rows(&self.clean),
            x: rows(&self.x),
            sigma: idx.iter().map(|&i| self.sigma[i]).collect(),
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
        }
    }
}

/// The same targets and labels as `b` with σ and noise re-drawn from the `(seed, Reference,
/// step)` stream, x = target + σ·n: what a reference scores when it does not share the
/// learner's noise (`select.same_noise = false`).
pub fn redraw_noise(
    b: &ImageBatch,
    noise: &mut dyn NoiseSampler,
    seed: u64,
    step: u64,
) -> ImageBatch {
    let mut rng = Rng::new(seed, Stream::Reference, step);
    let sigma = noise.draw(&mut rng, b.sigma.len());
    let d = b.clean.len() / b.sigma.len().max(1);
    let x = b
        .clean
        .chunks(d.max(1))
        .zip(&sigma)
        .flat_map(|(y, &s)| {
            y.iter()
                .map(|&v| v + (rng.normal() * s) as f32)
                .collect::<Vec<_>>()
        })
        .collect();
    ImageBatch {
        index: b.index.clone(),
        clean: b.clean.clone(),
        x,
        sigma,
        labels: b.labels.clone(),
    }
}

/// How a step's examples meet their noise levels.
pub struct Draw<'a> {
    /// Per-example noise windows, in the set's order (None: every example admits every σ).
    pub windows: Option<&'a [NoiseWindow]>,
    /// The buffer b of the windows' floors (σ > σ_min·b).
    pub buffer: f64,
    /// The rule that makes each example's (input, target) pair.
    pub targets: &'a dyn Targets,
    /// Probability of dropping an example's class.
    pub label_dropout: f64,
}

/// The endless sequence of epochs: epoch k is a permutation drawn from the
/// `(seed, Data, 2^40 + k)` stream; the current epoch's permutation is kept, so a task that
/// holds one shuffles once per epoch.
pub struct Epochs {
    seed: u64,
    n: usize,
    current: Option<(u64, Vec<usize>)>,
}

impl Epochs {
    /// The epochs of a set of `n` examples under run seed `seed`.
    pub fn new(seed: u64, n: usize) -> Self {
        Self {
            seed,
            n,
            current: None,
        }
    }

    /// The example at position `pos` of the sequence.
    fn at(&mut self, pos: u64) -> usize {
        let n = self.n as u64;
        let epoch = pos / n;
        if self.current.as_ref().map(|c| c.0) != Some(epoch) {
            let mut rng = Rng::new(self.seed, Stream::Data, (1 << 40) + epoch);
            let mut p: Vec<usize> = (0..self.n).collect();
            for i in (1..self.n).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                p.swap(i, j);
            }
            self.current = Some((epoch, p));
        }
        self.current
            .as_ref()
            .map(|c| c.1[(pos % n) as usize])
            .unwrap_or(0)
    }
}

/// The batch of step `step`: the next `b` examples of the shuffled epochs (positions
/// step·b … step·b + b − 1), σ from `noise`, Gaussian noise and label dropout from the
/// `(seed, Data, step)` stream, EDM's pairs: [`draw_batch`] without windows.
pub fn image_batch(
    set: &ImageSet,
    noise: &mut dyn NoiseSampler,
    label_dropout: f64,
    seed: u64,
    step: u64,
    b: usize,
) -> Result<ImageBatch> {
    let draw = Draw {
        windows: None,
        buffer: 1.0,
        targets: &Clean,
        label_dropout,
    };
    let mut epochs = Epochs::new(seed, set.len());
    let mut cursor = step * b as u64;
    draw_batch(set, &draw, noise, &mut epochs, seed, step, b, &mut cursor)
}

/// The batch of step `step` as `draw` says, the walk starting at position `cursor` of
/// `epochs` (the epochs of `set` under `seed`) and leaving it after the last example taken.
#[allow(clippy::too_many_arguments)]
pub fn draw_batch(
    set: &ImageSet,
    draw: &Draw,
    noise: &mut dyn NoiseSampler,
    epochs: &mut Epochs,
    seed: u64,
    step: u64,
    b: usize,
    cursor: &mut u64,
) -> Result<ImageBatch> {
    let mut rng = Rng::new(seed, Stream::Data, step);
    let sigma = noise.draw(&mut rng, b);
    let mut index = Vec::with_capacity(b);
    let mut floors = Vec::with_capacity(b);
    for &s in &sigma {
        let mut skipped = 0usize;
        loop {
            let i = epochs.at(*cursor);
            *cursor += 1;
            let w = draw.windows.map_or(NoiseWindow::CLEAN, |w| w[i]);
            if w.admits(s, draw.buffer) {
                index.push(i);
                floors.push(w.floor_at(s));
                break;
            }
            skipped += 1;
            // Two epochs' worth of positions hold every example at least once.
            if skipped > 2 * set.len() {
                return Err(Error::Config(format!(
                    "no training example admits σ = {s} (step {step}): the noise windows \
                     (data.windows) leave it uncovered; give some examples a lower floor or \
                     a higher ceiling, or lower data.window_buffer"
                )));
            }
        }
    }
    Ok(fill(
        set,
        index,
        &floors,
        sigma,
        draw.targets,
        draw.label_dropout,
        &mut rng,
    ))
}

/// The pairs and labels of the examples `index` at `sigma` with their noise `floors`.
fn fill(
    set: &ImageSet,
    index: Vec<usize>,
    floors: &[f64],
    sigma: Vec<f64>,
    targets: &dyn Targets,
    label_dropout: f64,
    rng: &mut Rng,
) -> ImageBatch {
    let len = set.image_len() * index.len();
    let mut clean = Vec::with_capacity(len);
    let mut x = Vec::with_capacity(len);
    for ((&i, &s), &f) in index.iter().zip(&sigma).zip(floors) {
        targets.make(set.image(i), s, f, rng, &mut x, &mut clean);
    }
    let labels = index
        .iter()
        .map(|&i| {
            let drop = rng.uniform() < label_dropout;
            let foreign = set.is_foreign(i);
            set.labels
                .get(i)
                .map(|&c| c as usize)
                .filter(|_| !drop && !foreign)
        })
        .collect();
    ImageBatch {
        index,
        clean,
        x,
        sigma,
        labels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::curation::ambient::target::Ambient;
    use crate::data::images::Source;
    use crate::train::image::tests::{fixture, lognormal};

    #[test]
    fn batches_walk_through_epochs_and_are_deterministic() {
        let set = fixture(10);
        let mut noise = lognormal();
        let mut seen = Vec::new();
        for step in 0..5 {
            let b = image_batch(&set, &mut noise, 0.0, 4, step, 4).unwrap();
            seen.extend(b.index.clone());
            assert_eq!(b, image_batch(&set, &mut noise, 0.0, 4, step, 4).unwrap());
            // x = y + σ·n: the noise scale matches σ.
            let r: f64 =
                b.x.iter()
                    .zip(&b.clean)
                    .take(784)
                    .map(|(x, y)| ((x - y) as f64).powi(2))
                    .sum::<f64>()
                    / 784.0;
            assert!((r.sqrt() / b.sigma[0] - 1.0).abs() < 0.1);
        }
        // Positions 0..9 and 10..19 are two permutations of the 10 images.
        for epoch in seen.chunks(10).take(2) {
            let mut e = epoch.to_vec();
            e.sort();
            assert_eq!(e, (0..10).collect::<Vec<_>>());
        }
        // Label dropout: about 30% of 1000 draws lose their class.
        let big = fixture(100);
        let dropped = (0..10)
            .flat_map(|s| {
                image_batch(&big, &mut noise, 0.3, 1, s, 100)
                    .unwrap()
                    .labels
            })
            .filter(Option::is_none)
            .count();
        assert!((250..350).contains(&dropped), "{dropped}");
    }

    #[test]
    fn examples_of_an_extra_source_train_without_their_label() {
        let mut set = fixture(20);
        for s in &mut set.source[10..] {
            *s = Source::OutOfDistribution {
                name: "mnist".into(),
            };
        }
        let mut noise = lognormal();
        let b = image_batch(&set, &mut noise, 0.0, 3, 0, 20).unwrap();
        for (&i, l) in b.index.iter().zip(&b.labels) {
            if i < 10 {
                assert_eq!(*l, Some(set.labels[i] as usize), "example {i}");
            } else {
                assert_eq!(*l, None, "example {i}");
            }
        }
    }

    fn plain<'a>(dropout: f64) -> Draw<'a> {
        Draw {
            windows: None,
            buffer: 1.0,
            targets: &Clean,
            label_dropout: dropout,
        }
    }

    #[test]
    fn without_windows_the_walk_takes_b_positions_per_step_and_one_epochs_cache_is_exact() {
        let set = fixture(10);
        let mut noise = lognormal();
        let (mut cursor, mut epochs) = (0, Epochs::new(3, set.len()));
        for step in 0..4 {
            assert_eq!(cursor, step * 7);
            let got = draw_batch(
                &set,
                &plain(0.2),
                &mut noise,
                &mut epochs,
                3,
                step,
                7,
                &mut cursor,
            )
            .unwrap();
            // A fresh cache of the epochs gives the same batch.
            let mut fresh = Epochs::new(3, set.len());
            let again = draw_batch(
                &set,
                &plain(0.2),
                &mut noise,
                &mut fresh,
                3,
                step,
                7,
                &mut (step * 7),
            )
            .unwrap();
            assert_eq!(got, again);
        }
    }

    /// Examples 0..5 have the floor σ_min = 1 (buffer 1.2), examples 5..10 are clean: every σ
    /// below 1.2 goes to a clean example, the σ draws are the schedule's, clean examples come
    /// once per epoch, and the floor examples train on ambient targets.
    #[test]
    fn windows_admit_examples_only_inside_them_and_keep_the_sigma_draws() {
        let set = fixture(10);
        let floor = NoiseWindow {
            sigma_min: 1.0,
            sigma_max: 0.0,
        };
        let w: Vec<NoiseWindow> = (0..10)
            .map(|i| if i < 5 { floor } else { NoiseWindow::CLEAN })
            .collect();
        let draw = Draw {
            windows: Some(&w),
            buffer: 1.2,
            targets: &Ambient,
            label_dropout: 0.0,
        };
        let mut noise = lognormal();
        let mut cursor = 0;
        let (mut high, mut clean_seen) = (0, vec![0usize; 10]);
        let steps = 200;
        for step in 0..steps {
            let b = draw_batch(
                &set,
                &draw,
                &mut noise,
                &mut Epochs::new(5, set.len()),
                5,
                step,
                8,
                &mut cursor,
            )
            .unwrap();
            let plain_b = image_batch(&set, &mut noise, 0.0, 5, step, 8).unwrap();
            assert_eq!(
                b.sigma, plain_b.sigma,
                "σ is drawn first, as without windows"
            );
            for (k, (&i, &s)) in b.index.iter().zip(&b.sigma).enumerate() {
                if i < 5 {
                    assert!(s > 1.2, "example {i} with floor 1 trained at σ = {s}");
                    high += 1;
                    // Its target is not the stored image (ambient target), its input is.
                    let t = &b.clean[k * 784..(k + 1) * 784];
                    assert_ne!(t, set.image(i));
                } else {
                    clean_seen[i] += 1;
                    assert_eq!(&b.clean[k * 784..(k + 1) * 784], set.image(i));
                }
            }
        }
        assert!(high > 0);
        // The walk passed over cursor positions; each clean example came once per epoch.
        let epochs = cursor / 10;
        for &c in &clean_seen[5..] {
            assert!(
                c as u64 == epochs || c as u64 == epochs + 1,
                "{c} vs {epochs}"
            );
        }
        // Determinism: the same cursor gives the same batch.
        let mut c1 = 40;
        let mut c2 = 40;
        let b1 = draw_batch(
            &set,
            &draw,
            &mut noise,
            &mut Epochs::new(5, set.len()),
            5,
            9,
            8,
            &mut c1,
        )
        .unwrap();
        let b2 = draw_batch(
            &set,
            &draw,
            &mut noise,
            &mut Epochs::new(5, set.len()),
            5,
            9,
            8,
            &mut c2,
        )
        .unwrap();
        assert_eq!((b1, c1), (b2, c2));
    }

    #[test]
    fn an_uncovered_sigma_is_an_error_naming_the_windows() {
        let set = fixture(4);
        let w = vec![
            NoiseWindow {
                sigma_min: 1e9,
                sigma_max: 0.0,
            };
            4
        ];
        let draw = Draw {
            windows: Some(&w),
            buffer: 1.0,
            targets: &Clean,
            label_dropout: 0.0,
        };
        let e = draw_batch(
            &set,
            &draw,
            &mut lognormal(),
            &mut Epochs::new(0, set.len()),
            0,
            0,
            2,
            &mut 0,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("data.windows"), "{e}");
    }
}
