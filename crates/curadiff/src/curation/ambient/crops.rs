//! The crop classifiers of Ambient-Omni's locality (reference §C.4, steps 1–3): for each crop
//! side s, a binary classifier tells an s×s crop of an in-distribution image (label 1) from
//! one of an out-of-distribution image (label 0). Inputs are zero-padded crops at a random
//! position, everything outside the crop set to 0 (the reference's layout; 0 is mid-grey in
//! [-1, 1]). The network is the small CNN of [`crate::models::cnn`] with one logit, trained
//! with binary cross-entropy on a balanced stream: each epoch holds 2·m items, m = the larger
//! class's size, the smaller class cycled (each item at a fresh random crop position).
//!
//! An out-of-distribution image is then tiled by crops of each side (rows and columns
//! 0, s, 2s, … and a last tile flush with the far edge, so the tiles cover it) and its
//! **pass rate** for s is the mean p(in-distribution) over its tiles. Its crop side is the
//! largest s whose pass rate exceeds the threshold (reference: 0.25), or 1 when none does, and
//! the locality map ([`super::locality`]) turns the side into the example's σ_max.

use burn::tensor::activation::sigmoid;
use serde::{Deserialize, Serialize};

use crate::data::images::ImageSet;
use crate::error::{Error, Result};
use crate::models::cnn::{self, Cnn, CnnShape, Objective, Schedule};
use crate::rng::{Rng, Stream};

/// Random-stream index of the networks' weights and item orders (+ the side).
const KEY: u64 = 0x4352_4F50 << 32;
/// Random-stream index base of the crop positions during training.
const POS_KEY: u64 = KEY + (1 << 30);
/// Inputs per forward pass at inference.
const INFER_BATCH: usize = 512;

/// How the crop classifiers are trained and read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CropConfig {
    /// The crop sides, ascending (28 px default: 4, 8, 12, 16, 20, 24; the reference's
    /// AFHQ-64 uses 4, 8, 16, 24).
    pub sizes: Vec<usize>,
    /// Passes over the balanced stream per side.
    pub epochs: usize,
    pub batch: usize,
    /// Initial Adam learning rate, decayed to 0 along a half cosine.
    pub lr: f64,
    /// Seed of the weights, the item order and the crop positions.
    pub seed: u64,
    /// A side passes when the mean p(in-distribution) of its tiles exceeds this (reference:
    /// 0.25).
    pub threshold: f64,
}

impl Default for CropConfig {
    fn default() -> Self {
        Self {
            sizes: vec![4, 8, 12, 16, 20, 24],
            epochs: 2,
            batch: 128,
            lr: 1e-3,
            seed: 0,
            threshold: 0.25,
        }
    }
}

impl CropConfig {
    /// Checks the sides against an image side, and the training values.
    pub fn validate(&self, side: usize) -> Result<()> {
        let invalid = |f: &str, why: String| Error::InvalidValue {
            field: format!("ambient crops {f}"),
            why,
        };
        if self.sizes.is_empty()
            || self.sizes.windows(2).any(|w| w[1] <= w[0])
            || self.sizes[0] < 2
            || self.sizes[self.sizes.len() - 1] > side
        {
            return Err(invalid(
                "sizes",
                format!(
                    "must be ascending crop sides in 2..={side} (the image side; side 1 is \
                     what an image that passes at no side gets); got {:?}",
                    self.sizes
                ),
            ));
        }
        if self.epochs == 0 || self.batch == 0 {
            return Err(invalid("epochs/batch", "both must be at least 1".into()));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(invalid("lr", format!("must be > 0 (got {})", self.lr)));
        }
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return Err(invalid(
                "threshold",
                format!("must be in (0, 1) (got {})", self.threshold),
            ));
        }
        Ok(())
    }
}

/// Appends `image` (`[C, H, W]`) zero outside the s×s crop at (`top`, `left`).
pub fn push_crop(
    image: &[f32],
    shape: [usize; 3],
    s: usize,
    top: usize,
    left: usize,
    out: &mut Vec<f32>,
) {
    let [c, h, w] = shape;
    for ch in 0..c {
        for r in 0..h {
            for col in 0..w {
                let inside = (top..top + s).contains(&r) && (left..left + s).contains(&col);
                out.push(if inside {
                    image[(ch * h + r) * w + col]
                } else {
                    0.0
                });
            }
        }
    }
}

/// The tile starts of side `s` along `len`: 0, s, 2s, … while they fit, and `len − s` when
/// those leave the far edge uncovered.
pub fn tile_starts(len: usize, s: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..).map(|k| k * s).take_while(|&t| t + s <= len).collect();
    if v.last().is_some_and(|&t| t + s < len) {
        v.push(len - s);
    }
    v
}

/// One trained crop classifier per side.
#[derive(Debug, Clone)]
pub struct CropClassifiers {
    nets: Vec<Cnn>,
    pub config: CropConfig,
    pub image_shape: [usize; 3],
    /// Training seconds.
    pub seconds: f64,
}

fn shape_of(image: [usize; 3]) -> CnnShape {
    CnnShape {
        channels: image[0],
        height: image[1],
        width: image[2],
        classes: 1,
    }
}

/// Trains one classifier per side of `cfg` on crops of `inside` (label 1) against crops of
/// `outside` (label 0). `progress(side, done, total, loss)` after every step.
pub fn train(
    inside: &ImageSet,
    outside: &ImageSet,
    cfg: &CropConfig,
    progress: &mut dyn FnMut(usize, usize, usize, f64),
) -> Result<CropClassifiers> {
    let shape = [inside.channels, inside.height, inside.width];
    if inside.is_empty() || outside.is_empty() {
        return Err(Error::Config(format!(
            "the crop classifiers need in- and out-of-distribution images; got {} and {}",
            inside.len(),
            outside.len()
        )));
    }
    if [outside.channels, outside.height, outside.width] != shape {
        return Err(Error::Config(format!(
            "in- and out-of-distribution images differ in shape: {shape:?} and {:?}",
            [outside.channels, outside.height, outside.width]
        )));
    }
    if shape[1] < 4 || shape[2] < 4 {
        return Err(Error::Config(format!(
            "the crop classifiers need images of at least 4×4 pixels, got {}×{}",
            shape[1], shape[2]
        )));
    }
    cfg.validate(shape[1].min(shape[2]))?;
    let start = std::time::Instant::now();
    let m = inside.len().max(outside.len());
    let mut nets = Vec::new();
    for &s in &cfg.sizes {
        let schedule = Schedule {
            epochs: cfg.epochs,
            batch: cfg.batch,
            lr: cfg.lr,
            seed: cfg.seed,
            // Apart by 2²⁰ per side: the item orders of pass o use key + o.
            key: KEY + ((s as u64) << 20),
        };
        let mut fill =
            |step: usize, rows: &[usize], x: &mut Vec<f32>, y: &mut Vec<f32>| -> Result<()> {
                let key = POS_KEY + ((s as u64) << 24) + step as u64;
                let mut rng = Rng::new(cfg.seed, Stream::Data, key);
                for &i in rows {
                    let (image, label) = if i < m {
                        (inside.image(i % inside.len()), 1.0)
                    } else {
                        (outside.image((i - m) % outside.len()), 0.0)
                    };
                    let top = (rng.uniform() * (shape[1] - s + 1) as f64) as usize;
                    let left = (rng.uniform() * (shape[2] - s + 1) as f64) as usize;
                    push_crop(
                        image,
                        shape,
                        s,
                        top.min(shape[1] - s),
                        left.min(shape[2] - s),
                        x,
                    );
                    y.push(label);
                }
                Ok(())
            };
        let net = cnn::fit(
            shape_of(shape),
            2 * m,
            &schedule,
            Objective::Binary,
            &mut fill,
            &mut |d, t, l| progress(s, d, t, l),
        )?;
        nets.push(net);
    }
    Ok(CropClassifiers {
        nets,
        config: cfg.clone(),
        image_shape: shape,
        seconds: start.elapsed().as_secs_f64(),
    })
}

impl CropClassifiers {
    /// p(in-distribution) of `n` inputs of the classifier of side index `k`.
    fn p_inside(&self, k: usize, inputs: &[f32], n: usize) -> Result<Vec<f32>> {
        let shape = shape_of(self.image_shape);
        let len = shape.input_len();
        if n * len != inputs.len() {
            return Err(Error::Model(format!(
                "expected {n} crop inputs of {len} values, got {}",
                inputs.len()
            )));
        }
        let device = crate::device::inference();
        let mut out = Vec::with_capacity(n);
        for chunk in inputs.chunks(INFER_BATCH * len) {
            let b = chunk.len() / len;
            let net = &self.nets[k];
            let z = net.logits(net.features(cnn::inputs(chunk, b, shape, &device)));
            let p = sigmoid(z).try_into_vec_as::<f32>().map_err(|e| {
                Error::Model(format!("cannot read the crop classifier output: {e:?}"))
            })?;
            out.extend(p);
        }
        Ok(out)
    }

    /// The pass rates of the images `rows` of `set`: `[rows.len(), sizes.len()]` row-major,
    /// the mean p(in-distribution) over each image's tiles of each side.
    pub fn pass_rates(&self, set: &ImageSet, rows: &[usize]) -> Result<Vec<f32>> {
        let shape = [set.channels, set.height, set.width];
        if shape != self.image_shape {
            return Err(Error::Config(format!(
                "the crop classifiers take images of shape {:?}, the data has {shape:?}",
                self.image_shape
            )));
        }
        self.config.validate(shape[1].min(shape[2]))?;
        let k = self.config.sizes.len();
        let mut out = vec![0.0f32; rows.len() * k];
        // Enough images per pass to fill the inference batches.
        for (ki, &s) in self.config.sizes.iter().enumerate() {
            let (tr, tc) = (tile_starts(shape[1], s), tile_starts(shape[2], s));
            let tiles = tr.len() * tc.len();
            let per = (INFER_BATCH * 4 / tiles).max(1);
            for (ci, chunk) in rows.chunks(per).enumerate() {
                let mut inputs = Vec::with_capacity(chunk.len() * tiles * set.image_len());
                for &i in chunk {
                    for &t in &tr {
                        for &l in &tc {
                            push_crop(set.image(i), shape, s, t, l, &mut inputs);
                        }
                    }
                }
                let p = self.p_inside(ki, &inputs, chunk.len() * tiles)?;
                for (j, pj) in p.chunks(tiles).enumerate() {
                    let mean = pj.iter().map(|&v| v as f64).sum::<f64>() / tiles as f64;
                    out[(ci * per + j) * k + ki] = mean as f32;
                }
            }
        }
        Ok(out)
    }
}

/// The crop side of each row of pass rates (`sizes.len()` values each): the largest side
/// whose rate exceeds `threshold`, else 1.
pub fn chosen_sides(rates: &[f32], sizes: &[usize], threshold: f64) -> Vec<usize> {
    rates
        .chunks(sizes.len())
        .map(|r| {
            sizes
                .iter()
                .zip(r)
                .filter(|(_, &p)| p as f64 > threshold)
                .map(|(&s, _)| s)
                .max()
                .unwrap_or(1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_image() {
        assert_eq!(tile_starts(28, 4), vec![0, 4, 8, 12, 16, 20, 24]);
        assert_eq!(tile_starts(28, 8), vec![0, 8, 16, 20]);
        assert_eq!(tile_starts(28, 12), vec![0, 12, 16]);
        assert_eq!(tile_starts(28, 24), vec![0, 4]);
        assert_eq!(tile_starts(28, 28), vec![0]);
    }

    #[test]
    fn a_crop_keeps_its_window_and_zeroes_the_rest() {
        let image: Vec<f32> = (0..16).map(|v| v as f32 + 1.0).collect();
        let mut out = Vec::new();
        push_crop(&image, [1, 4, 4], 2, 1, 2, &mut out);
        let want = [
            0., 0., 0., 0., //
            0., 0., 7., 8., //
            0., 0., 11., 12., //
            0., 0., 0., 0.,
        ];
        assert_eq!(out, want);
    }

    #[test]
    fn the_chosen_side_is_the_largest_passing_one() {
        let sizes = [4, 8, 16];
        let rates = [0.5, 0.3, 0.1, 0.2, 0.1, 0.0, 0.9, 0.1, 0.6];
        assert_eq!(chosen_sides(&rates, &sizes, 0.25), vec![8, 1, 16]);
    }

    /// In: one round blob; out: two blobs of the same shape. A 3×3 crop sees a piece of a
    /// blob or background either way (it passes), the whole image counts the blobs (it
    /// fails): the chosen side is 3.
    #[test]
    fn small_crops_of_locally_alike_images_pass_and_whole_images_do_not() {
        let side = 12;
        let blobs = |centres: &[(f32, f32)]| -> Vec<f32> {
            (0..side * side)
                .map(|p| {
                    let (r, c) = ((p / side) as f32, (p % side) as f32);
                    centres
                        .iter()
                        .map(|(cr, cc)| 1.0 - ((r - cr).powi(2) + (c - cc).powi(2)) / 4.0)
                        .fold(-1.0f32, f32::max)
                })
                .collect()
        };
        let one = |k: usize| blobs(&[(3.0 + (k % 6) as f32, 3.0 + (k / 6 % 6) as f32)]);
        let two = |k: usize| {
            let (a, b) = ((k % 3) as f32, (k / 3 % 3) as f32);
            blobs(&[(2.0 + a, 2.0 + b), (8.0 + b, 8.0 + a)])
        };
        let set = |f: &dyn Fn(usize) -> Vec<f32>, n: usize| ImageSet {
            channels: 1,
            height: side,
            width: side,
            pixels: (0..n).flat_map(f).collect(),
            labels: vec![0; n],
            num_classes: 1,
            class_names: vec!["x".into()],
            ids: (0..n as u64).collect(),
            source: vec![crate::data::images::Source::Real; n],
        };
        let (inside, outside) = (set(&one, 200), set(&two, 200));
        let cfg = CropConfig {
            sizes: vec![3, 12],
            epochs: 10,
            batch: 50,
            lr: 3e-3,
            ..Default::default()
        };
        let clf = train(&inside, &outside, &cfg, &mut |_, _, _, _| {}).unwrap();
        let rows: Vec<usize> = (0..9).collect();
        let rates = clf.pass_rates(&outside, &rows).unwrap();
        for r in rates.chunks(2) {
            assert!(
                r[0] > 0.25 && r[1] < 0.25,
                "pass rates (side 3, side 12): {r:?}"
            );
        }
        assert_eq!(chosen_sides(&rates, &cfg.sizes, 0.25), vec![3; 9]);
        let e = clf
            .pass_rates(&crate::data::images::tests::toy_set(&[2]), &[0])
            .unwrap_err()
            .to_string();
        assert!(e.contains("[1, 12, 12]"), "{e}");
    }
}
