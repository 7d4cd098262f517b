//! The image denoiser: an EDM2-style magnitude-preserving U-Net (Karras et al. 2024,
//! `networks_edm2.py`), scaled to 28×28 images on a CPU.
//!
//! Structure, per resolution level ℓ with `channels·mults[ℓ]` channels:
//! - encoder: an input conv (level 0) or a down block (2×2 average), then `blocks` encoder
//!   blocks; every output is kept as a skip;
//! - decoder, from the lowest level up: two blocks at the lowest level or an up block (nearest
//!   2×), then `blocks + 1` decoder blocks, each fed `mp_cat(x, skip)`;
//! - a block: pixel norm (encoder), conv3×3 → ×(1 + emb·gain) → MP-SiLU → conv3×3, joined to its
//!   input by `mp_sum(·, ·, 0.3)`; self-attention at the levels listed in `attn_levels`;
//! - conditioning: Fourier features of c_noise = ln σ / 4 through an MP-linear layer,
//!   `mp_sum`-ed with an MP-linear embedding of the one-hot class (scaled by √classes); a zero
//!   class vector is the unconditional model, which label dropout trains;
//! - output: an MP-conv with a learned gain that starts at 0 (F = 0, D = c_skip·x).
//!
//! Every weight is stored at row norm √fan_in (forced weight normalisation after each Adam
//! step, see [`crate::train::optim`]) and used normalised, so activations keep unit magnitude.
//! There are no biases and no group norms. The optional learned uncertainty u(σ) (EDM2 Sec.
//! 5) turns the per-example loss into λ‖D − y‖²/e^u + u.

use burn::module::{Module, Param};
use burn::tensor::activation::softmax;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::layers::{mp_silu, MpLinear, NORM_EPS};
use crate::error::{Error, Result};
use crate::rng::{Rng, Stream};

/// Shape of the U-Net.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnetConfig {
    /// Image channels (1 for Fashion-MNIST).
    pub img_channels: usize,
    /// Image height and width (square; divisible by 2^(levels − 1)).
    pub resolution: usize,
    /// Base channel count.
    pub channels: usize,
    /// Channel multiplier per level; the number of levels is its length.
    pub mults: Vec<usize>,
    /// Encoder blocks per level (the decoder has one more).
    pub blocks: usize,
    /// Levels (0 = full resolution) whose blocks end in self-attention.
    pub attn_levels: Vec<usize>,
    /// Channels per attention head.
    pub head_channels: usize,
    /// Fourier features of the noise level.
    pub noise_channels: usize,
    /// Embedding width (EDM2: 4 × channels).
    pub emb_channels: usize,
    /// Classes of the class-conditional model; 0 = unconditional.
    pub num_classes: usize,
    /// Probability that a training example's class is dropped (the unconditional model).
    pub label_dropout: f64,
    /// Learn the per-σ uncertainty u(σ) of EDM2 and weight the loss by it.
    pub uncertainty: bool,
    /// The engine that trains and runs the network on the CPU.
    #[serde(default)]
    pub engine: UnetEngine,
    /// Operand precision of the fused engine's 3×3 convolutions (see [`UnetPrecision`]).
    #[serde(default)]
    pub precision: UnetPrecision,
}

/// `f32` (the default), or `bf16`: the fused engine's 3×3 convolutions of the forward pass and
/// of the input gradient round their operands to bf16 and sum in f32 (the weight gradient,
/// the master weights, Adam and everything element-wise stay f32, as PyTorch's autocast), on
/// CPUs with AVX-512-BF16; elsewhere, and on the burn engine, it computes in f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnetPrecision {
    #[default]
    F32,
    Bf16,
}

/// How the U-Net is computed: `fused`, the hand-written CPU engine of
/// [`crate::models::unet_fused`] (the default; networks with attention fall back to burn), or
/// `burn`, burn's autodiff on the compiled backend (the reference, and the GPU path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnetEngine {
    #[default]
    Fused,
    Burn,
}

impl Default for UnetConfig {
    fn default() -> Self {
        Self {
            img_channels: 1,
            resolution: 28,
            channels: 32,
            mults: vec![1, 2, 2],
            blocks: 1,
            attn_levels: vec![2],
            head_channels: 64,
            noise_channels: 64,
            emb_channels: 128,
            num_classes: 10,
            label_dropout: 0.1,
            uncertainty: false,
            engine: UnetEngine::Fused,
            precision: UnetPrecision::F32,
        }
    }
}

fn invalid(field: &str, why: impl Into<String>) -> Error {
    Error::InvalidValue {
        field: format!("unet.{field}"),
        why: why.into(),
    }
}

impl UnetConfig {
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [
            ("img_channels", self.img_channels),
            ("resolution", self.resolution),
            ("channels", self.channels),
            ("blocks", self.blocks),
            ("head_channels", self.head_channels),
            ("noise_channels", self.noise_channels),
            ("emb_channels", self.emb_channels),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be at least 1"));
            }
        }
        if self.mults.is_empty() || self.mults.contains(&0) {
            return Err(invalid(
                "mults",
                "must list at least one positive multiplier",
            ));
        }
        let div = 1usize << (self.mults.len() - 1);
        if !self.resolution.is_multiple_of(div) {
            return Err(invalid(
                "resolution",
                format!(
                    "{} is not divisible by 2^(levels − 1) = {div}; use fewer levels",
                    self.resolution
                ),
            ));
        }
        if let Some(&l) = self.attn_levels.iter().find(|&&l| l >= self.mults.len()) {
            return Err(invalid(
                "attn_levels",
                format!("level {l} does not exist (levels 0..{})", self.mults.len()),
            ));
        }
        for &l in &self.attn_levels {
            let c = self.channels * self.mults[l];
            if c > self.head_channels && !c.is_multiple_of(self.head_channels) {
                return Err(invalid(
                    "head_channels",
                    format!(
                        "{} channels at level {l} are not a multiple of {}",
                        self.channels * self.mults[l],
                        self.head_channels
                    ),
                ));
            }
        }
        if !(0.0..1.0).contains(&self.label_dropout) {
            return Err(invalid("label_dropout", "must be in [0, 1)"));
        }
        Ok(())
    }

    /// Values per image.
    pub fn image_len(&self) -> usize {
        self.img_channels * self.resolution * self.resolution
    }

    /// A freshly initialised network; weights come from the run's `Init` stream.
    pub fn init(&self, seed: u64, device: &Device) -> Unet {
        let mut rng = Rng::new(seed, Stream::Init, 0);
        let rng = &mut rng;
        let ce = self.emb_channels;
        let cn = |l: usize| self.channels * self.mults[l];
        let mut enc = Vec::new();
        let mut skips = Vec::new();
        let mut cout = self.img_channels + 1;
        let conv_in = MpConv::init(cout, cn(0), 3, rng, device);
        cout = cn(0);
        skips.push(cout);
        for l in 0..self.mults.len() {
            let attn = self.attn_levels.contains(&l);
            if l > 0 {
                enc.push(Block::init(
                    cout,
                    cout,
                    ce,
                    Flavor::Down,
                    false,
                    self,
                    rng,
                    device,
                ));
                skips.push(cout);
            }
            for _ in 0..self.blocks {
                let cin = cout;
                cout = cn(l);
                enc.push(Block::init(
                    cin,
                    cout,
                    ce,
                    Flavor::Enc,
                    attn,
                    self,
                    rng,
                    device,
                ));
                skips.push(cout);
            }
        }
        let mut dec = Vec::new();
        for l in (0..self.mults.len()).rev() {
            let attn = self.attn_levels.contains(&l);
            if l == self.mults.len() - 1 {
                dec.push(Block::init(
                    cout,
                    cout,
                    ce,
                    Flavor::Dec,
                    attn,
                    self,
                    rng,
                    device,
                ));
                dec.push(Block::init(
                    cout,
                    cout,
                    ce,
                    Flavor::Dec,
                    false,
                    self,
                    rng,
                    device,
                ));
            } else {
                dec.push(Block::init(
                    cout,
                    cout,
                    ce,
                    Flavor::Up,
                    false,
                    self,
                    rng,
                    device,
                ));
            }
            for _ in 0..=self.blocks {
                let skip = skips.pop().unwrap_or(0);
                let cin = cout + skip;
                cout = cn(l);
                let mut b = Block::init(cin, cout, ce, Flavor::Dec, attn, self, rng, device);
                b.cat_skip = true;
                dec.push(b);
            }
        }
        let out_conv = MpConv::init(cout, self.img_channels, 3, rng, device);
        let zero = |n: usize| Param::from_tensor(Tensor::<1>::zeros([n], device));
        Unet {
            conv_in,
            enc,
            dec,
            emb_noise: MpLinear::init(self.noise_channels, ce, rng, device),
            emb_label: (self.num_classes > 0)
                .then(|| MpLinear::init(self.num_classes, ce, rng, device)),
            out_conv,
            out_gain: zero(1),
            logvar: self
                .uncertainty
                .then(|| MpLinear::init(self.noise_channels, 1, rng, device)),
        }
    }

    /// The fixed random Fourier frequencies and phases of the noise embedding (EDM2's
    /// `MPFourier`), from the seed's `Init` stream (index 1).
    pub fn fourier(&self, seed: u64) -> Fourier {
        let mut rng = Rng::new(seed, Stream::Init, 1);
        let freqs = (0..self.noise_channels).map(|_| rng.normal()).collect();
        let phases = (0..self.noise_channels).map(|_| rng.uniform()).collect();
        Fourier { freqs, phases }
    }
}

/// EDM2's `MPFourier`: √2·cos(2π(f·x + φ)), unit variance for random f, φ.
#[derive(Debug, Clone, PartialEq)]
pub struct Fourier {
    pub freqs: Vec<f64>,
    pub phases: Vec<f64>,
}

impl Fourier {
    /// Features of each value, `[n, channels]` flattened.
    pub fn features(&self, x: &[f64]) -> Vec<f32> {
        let tau = std::f64::consts::TAU;
        x.iter()
            .flat_map(|&v| {
                self.freqs.iter().zip(&self.phases).map(move |(f, p)| {
                    (std::f64::consts::SQRT_2 * (tau * (f * v + p)).cos()) as f32
                })
            })
            .collect()
    }
}

/// `mp_sum(a, b, t) = ((1 − t)·a + t·b) / √((1 − t)² + t²)`.
pub fn mp_sum<const D: usize>(a: Tensor<D>, b: Tensor<D>, t: f64) -> Tensor<D> {
    let s = ((1.0 - t).powi(2) + t * t).sqrt();
    a.mul_scalar((1.0 - t) / s) + b.mul_scalar(t / s)
}

/// `mp_cat`: concatenation along channels that keeps unit magnitude, weighting the two parts
/// (1 − t) : t.
pub fn mp_cat(a: Tensor<4>, b: Tensor<4>, t: f64) -> Tensor<4> {
    let na = a.dims()[1] as f64;
    let nb = b.dims()[1] as f64;
    let c = ((na + nb) / ((1.0 - t).powi(2) + t * t)).sqrt();
    Tensor::cat(
        vec![
            a.mul_scalar(c / na.sqrt() * (1.0 - t)),
            b.mul_scalar(c / nb.sqrt() * t),
        ],
        1,
    )
}

/// Pixel norm over `dim`: x / (ε + ‖x‖/√n), EDM2's `normalize`.
pub fn pixel_norm<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    let n = x.dims()[dim] as f64;
    let norm = x
        .clone()
        .square()
        .sum_dim(dim)
        .div_scalar(n)
        .sqrt()
        .add_scalar(NORM_EPS);
    x / norm
}

/// A magnitude-preserving convolution (no bias; weight used normalised).
#[derive(Module, Debug)]
pub struct MpConv {
    /// [out, in, k, k], N(0, 1) initialisation.
    pub weight: Param<Tensor<4>>,
}

impl MpConv {
    pub fn init(cin: usize, cout: usize, k: usize, rng: &mut Rng, device: &Device) -> Self {
        let w: Vec<f32> = (0..cout * cin * k * k)
            .map(|_| rng.normal() as f32)
            .collect();
        let t = Tensor::<4>::from_data(TensorData::new(w, [cout, cin, k, k]), device);
        Self {
            weight: Param::from_tensor(t),
        }
    }

    /// The weight as used: each output filter at unit norm, times `gain`.
    fn normalized(&self, gain: Option<Tensor<1>>) -> Tensor<4> {
        let w = self.weight.val();
        let [o, i, kh, kw] = w.dims();
        let flat = w.reshape([o, i * kh * kw]);
        let norm = flat.clone().square().sum_dim(1).sqrt().add_scalar(NORM_EPS); // [o, 1]
        let mut flat = flat / norm;
        if let Some(g) = gain {
            flat = flat * g.reshape([1, 1]);
        }
        flat.reshape([o, i, kh, kw])
    }

    /// x: [b, in, h, w] → [b, out, h, w] ("same" padding).
    pub fn forward(&self, x: Tensor<4>, gain: Option<Tensor<1>>) -> Tensor<4> {
        let w = self.normalized(gain);
        let k = w.dims()[2];
        let pad = k / 2;
        conv2d(x, w, None, ConvOptions::new([1, 1], [pad, pad], [1, 1], 1))
    }
}

/// 2×2 average pooling (EDM2's resample with filter [1, 1]).
pub fn downsample(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b * c, h / 2, 2, w / 2, 2])
        .mean_dim(4)
        .mean_dim(2)
        .reshape([b, c, h / 2, w / 2])
}

/// Nearest-neighbour 2× upsampling.
pub fn upsample(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b * c, h, 1, w, 1])
        .repeat_dim(4, 2)
        .repeat_dim(2, 2)
        .reshape([b, c, 2 * h, 2 * w])
}

/// The role of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Enc,
    Down,
    Dec,
    Up,
}

/// EDM2's `Block`.
#[derive(Module, Debug)]
pub struct Block {
    /// Encoder block (pixel norm on entry, channel change before the residual branch);
    /// otherwise a decoder block (channel change after it).
    pub encoder: bool,
    /// 2×2 average pooling on entry.
    pub down: bool,
    /// Nearest 2× upsampling on entry.
    pub up: bool,
    /// A decoder block fed `mp_cat(x, skip)`.
    pub cat_skip: bool,
    pub conv_res0: MpConv,
    pub conv_res1: MpConv,
    pub emb_linear: MpLinear,
    /// Gain of the embedding modulation, starting at 0.
    pub emb_gain: Param<Tensor<1>>,
    /// 1×1 conv when the channel count changes.
    pub conv_skip: Option<MpConv>,
    pub attn_qkv: Option<MpConv>,
    pub attn_proj: Option<MpConv>,
    pub head_channels: usize,
}

/// EDM2 constants: residual and attention balance, activation clamp, label and skip balance.
const RES_BALANCE: f64 = 0.3;
const ATTN_BALANCE: f64 = 0.3;
const CLIP_ACT: f64 = 256.0;
const LABEL_BALANCE: f64 = 0.5;
const CONCAT_BALANCE: f64 = 0.5;

impl Block {
    #[allow(clippy::too_many_arguments)]
    fn init(
        cin: usize,
        cout: usize,
        cemb: usize,
        flavor: Flavor,
        attn: bool,
        cfg: &UnetConfig,
        rng: &mut Rng,
        device: &Device,
    ) -> Self {
        let encoder = matches!(flavor, Flavor::Enc | Flavor::Down);
        let conv_res0 = MpConv::init(if encoder { cout } else { cin }, cout, 3, rng, device);
        let conv_res1 = MpConv::init(cout, cout, 3, rng, device);
        let emb_linear = MpLinear::init(cemb, cout, rng, device);
        let conv_skip = (cin != cout).then(|| MpConv::init(cin, cout, 1, rng, device));
        let attn_qkv = attn.then(|| MpConv::init(cout, cout * 3, 1, rng, device));
        let attn_proj = attn.then(|| MpConv::init(cout, cout, 1, rng, device));
        Self {
            encoder,
            down: flavor == Flavor::Down,
            up: flavor == Flavor::Up,
            cat_skip: false,
            conv_res0,
            conv_res1,
            emb_linear,
            emb_gain: Param::from_tensor(Tensor::<1>::zeros([1], device)),
            conv_skip,
            attn_qkv,
            attn_proj,
            head_channels: cfg.head_channels,
        }
    }

    /// x: [b, cin, h, w], emb: [b, cemb] → [b, cout, h', w'].
    fn forward(&self, x: Tensor<4>, emb: Tensor<2>) -> Tensor<4> {
        let mut x = x;
        if self.down {
            x = downsample(x);
        }
        if self.up {
            x = upsample(x);
        }
        if self.encoder {
            if let Some(c) = &self.conv_skip {
                x = c.forward(x, None);
            }
            x = pixel_norm(x, 1);
        }
        let y = self.conv_res0.forward(mp_silu(x.clone()), None); // [b, cout, h, w]
        let [b, cout, _, _] = y.dims();
        let c = self
            .emb_linear
            .forward(emb)
            .mul(self.emb_gain.val().reshape([1, 1]))
            .add_scalar(1.0)
            .reshape([b, cout, 1, 1]);
        let y = self.conv_res1.forward(mp_silu(y * c), None);
        if !self.encoder {
            if let Some(cs) = &self.conv_skip {
                x = cs.forward(x, None);
            }
        }
        let mut x = mp_sum(x, y, RES_BALANCE);
        if let (Some(qkv), Some(proj)) = (&self.attn_qkv, &self.attn_proj) {
            x = mp_sum(x.clone(), self.attention(x, qkv, proj), ATTN_BALANCE);
        }
        x.clamp(-CLIP_ACT, CLIP_ACT)
    }

    /// Multi-head self-attention over pixels with pixel-normalised q, k, v.
    fn attention(&self, x: Tensor<4>, qkv: &MpConv, proj: &MpConv) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let heads = (c / self.head_channels).max(1);
        let ch = c / heads;
        let hw = h * w;
        let y = qkv.forward(x, None).reshape([b, heads, ch, 3, hw]);
        let y = pixel_norm(y, 2);
        let part = |i: usize| y.clone().narrow(3, i, 1).reshape([b * heads, ch, hw]);
        let (q, k, v) = (part(0), part(1), part(2));
        let logits = q.swap_dims(1, 2).matmul(k).div_scalar((ch as f64).sqrt()); // [bh, q, k]
        let att = softmax(logits, 2);
        let out = v.matmul(att.swap_dims(1, 2)); // [bh, ch, q]
        proj.forward(out.reshape([b, c, h, w]), None)
    }
}

/// The network F of D = c_skip·x + c_out·F(c_in·x; σ, class).
#[derive(Module, Debug)]
pub struct Unet {
    pub conv_in: MpConv,
    pub enc: Vec<Block>,
    pub dec: Vec<Block>,
    pub emb_noise: MpLinear,
    pub emb_label: Option<MpLinear>,
    pub out_conv: MpConv,
    /// Output gain, starting at 0.
    pub out_gain: Param<Tensor<1>>,
    /// The uncertainty head u(σ) (EDM2's `logvar_linear`), when enabled.
    pub logvar: Option<MpLinear>,
}

impl Unet {
    /// F for x_in = c_in·x `[b, C, H, W]`, Fourier features of c_noise `[b, noise_channels]`,
    /// and class vectors `[b, classes]` (one-hot, or zero for unconditional; `None` for an
    /// unconditional network).
    pub fn forward(
        &self,
        x_in: Tensor<4>,
        noise: Tensor<2>,
        class: Option<Tensor<2>>,
    ) -> Tensor<4> {
        let mut emb = self.emb_noise.forward(noise); // [b, cemb]
        if let (Some(lin), Some(cl)) = (&self.emb_label, class) {
            let k = cl.dims()[1] as f64;
            emb = mp_sum(emb, lin.forward(cl.mul_scalar(k.sqrt())), LABEL_BALANCE);
        }
        let emb = mp_silu(emb);
        let [b, _, h, w] = x_in.dims();
        let ones = Tensor::<4>::ones([b, 1, h, w], &x_in.device());
        let mut x = self.conv_in.forward(Tensor::cat(vec![x_in, ones], 1), None);
        let mut skips = vec![x.clone()];
        for blk in &self.enc {
            x = blk.forward(x, emb.clone());
            skips.push(x.clone());
        }
        for blk in &self.dec {
            if blk.cat_skip {
                if let Some(s) = skips.pop() {
                    x = mp_cat(x, s, CONCAT_BALANCE);
                }
            }
            x = blk.forward(x, emb.clone());
        }
        self.out_conv.forward(x, Some(self.out_gain.val()))
    }

    /// u(σ) per example from the Fourier features of c_noise: `[b]` (zeros without the head).
    pub fn logvar(&self, noise: Tensor<2>) -> Option<Tensor<1>> {
        self.logvar.as_ref().map(|l| {
            let b = noise.dims()[0];
            l.forward(noise).reshape([b])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t4(v: Vec<f32>, shape: [usize; 4]) -> Tensor<4> {
        Tensor::<4>::from_data(TensorData::new(v, shape), &Device::flex())
    }

    #[test]
    fn resampling_by_hand() {
        // 4×4 ramp → 2×2 block means; upsampling repeats each value in a 2×2 block.
        let x = t4((0..16).map(|v| v as f32).collect(), [1, 1, 4, 4]);
        let d: Vec<f32> = downsample(x).try_into_vec_as::<f32>().unwrap();
        assert_eq!(d, vec![2.5, 4.5, 10.5, 12.5]);
        let u: Vec<f32> = upsample(t4(vec![1.0, 2.0, 3.0, 4.0], [1, 1, 2, 2]))
            .try_into_vec_as::<f32>()
            .unwrap();
        let want = [
            1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.,
        ];
        assert_eq!(u, want.to_vec());
    }

    #[test]
    fn magnitude_preserving_sums_and_concatenation() {
        // For independent unit-variance inputs, mp_sum and mp_cat keep unit variance
        // (EDM2 eqs. 88–89), whatever the balance t.
        let mut rng = Rng::new(0, Stream::Eval, 0);
        let n = 64 * 1024;
        let mut draw = |c: usize| {
            t4(
                (0..n * c).map(|_| rng.normal() as f32).collect(),
                [n, c, 1, 1],
            )
        };
        let (a, b) = (draw(3), draw(5));
        for t in [0.3, 0.5, 0.8] {
            let s: f32 = mp_sum(a.clone(), draw(3), t).square().mean().into_scalar();
            assert!((s - 1.0).abs() < 0.02, "mp_sum t={t}: {s}");
            let c: f32 = mp_cat(a.clone(), b.clone(), t)
                .square()
                .mean()
                .into_scalar();
            assert!((c - 1.0).abs() < 0.02, "mp_cat t={t}: {c}");
        }
        // Pixel norm: every pixel's channel vector gets norm √C.
        let p: Vec<f32> = pixel_norm(t4(vec![3.0, 4.0], [1, 2, 1, 1]), 1)
            .try_into_vec_as::<f32>()
            .unwrap();
        let want = 2f32.sqrt() / 5.0;
        assert!((p[0] - 3.0 * want).abs() < 1e-4 && (p[1] - 4.0 * want).abs() < 1e-4);
    }

    #[test]
    fn mp_conv_keeps_unit_magnitude() {
        let mut rng = Rng::new(1, Stream::Init, 0);
        let conv = MpConv::init(16, 8, 3, &mut rng, &Device::flex());
        let x = t4(
            (0..64 * 16 * 64).map(|_| rng.normal() as f32).collect(),
            [64, 16, 8, 8],
        );
        // Interior pixels (no zero padding) have unit variance.
        let y = conv.forward(x, None).slice([0..64, 0..8, 1..7, 1..7]);
        let v: f32 = y.square().mean().into_scalar();
        assert!((v - 1.0).abs() < 0.05, "{v}");
    }

    #[test]
    fn configs_are_checked() {
        assert!(UnetConfig::default().validate().is_ok());
        let bad = UnetConfig {
            resolution: 30,
            mults: vec![1, 2, 2],
            ..Default::default()
        };
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("unet.resolution") && e.contains("30"), "{e}");
        let bad = UnetConfig {
            attn_levels: vec![5],
            ..Default::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("unet.attn_levels"));
        let bad = UnetConfig {
            label_dropout: 1.0,
            ..Default::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("label_dropout"));
    }
}
