//! A small CNN classifier and its trainer, shared by the Fashion-MNIST feature classifier
//! ([`crate::eval::classifier`]) and Ambient-Omni's noise-conditional clean-vs-corrupted
//! classifier ([`crate::curation::ambient::classifier`]).
//!
//! The network on `[n, C, H, W]` inputs: conv 3×3 C→32 (padding 1), max-pool 2, ReLU,
//! conv 3×3 32→64, max-pool 2, ReLU, linear 64·⌊H/4⌋·⌊W/4⌋→128, ReLU (the 128-d penultimate
//! features), linear 128→K (the logits). He-normal initial weights, zero biases. Training is
//! plain Adam (β = 0.9, 0.999, ε = 1e-8; no weight decay) with the learning rate decayed to 0
//! along a half cosine, on the mean cross-entropy (K classes) or the mean binary
//! cross-entropy with logits (K = 1). It is deterministic: the initial weights come from
//! `(seed, Stream::Init, key)` and the example order of epoch e from
//! `(seed, Stream::Data, key + e)`.
//!
//! Weights are stored as safetensors (f32, one tensor per parameter named by its field path,
//! e.g. `conv1.weight`) with string metadata chosen by the caller.

use std::collections::HashMap;
use std::path::Path;

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::activation::{log_sigmoid, log_softmax, relu};
use burn::tensor::module::{conv2d, linear, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::tensor::{Dtype, TensorView};

use super::stored_tensor::checked_f32;

use crate::error::{Error, Result};
use crate::fsutil::{create_dir, write_atomic};
use crate::models::optim::Adam;
use crate::models::params::{self, HostParam};
use crate::rng::{Rng, Stream};

/// Width of the penultimate features.
pub const FEATURE_DIM: usize = 128;
const C1: usize = 32;
const C2: usize = 64;

/// The input and output sizes of a [`Cnn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CnnShape {
    /// Input channels.
    pub channels: usize,
    /// Input height in pixels (≥ 4).
    pub height: usize,
    /// Input width in pixels (≥ 4).
    pub width: usize,
    /// Logits per input (1: a binary classifier).
    pub classes: usize,
}

impl CnnShape {
    /// Values per input, `channels · height · width`.
    pub fn input_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    fn flat(&self) -> usize {
        C2 * (self.height / 4) * (self.width / 4)
    }
}

/// A 3×3 convolution with bias.
#[derive(Module, Debug)]
struct Conv {
    /// [out, in, 3, 3]
    weight: Param<Tensor<4>>,
    /// [out]
    bias: Param<Tensor<1>>,
}

/// A dense layer `y = x·W + b`.
#[derive(Module, Debug)]
struct Dense {
    /// [in, out]
    weight: Param<Tensor<2>>,
    /// [out]
    bias: Param<Tensor<1>>,
}

/// The CNN (see the module doc).
#[derive(Module, Debug)]
pub struct Cnn {
    conv1: Conv,
    conv2: Conv,
    fc1: Dense,
    fc2: Dense,
}

fn he_normal(fan_in: usize, n: usize, gain: f64, rng: &mut Rng) -> Vec<f32> {
    let std = (gain / fan_in as f64).sqrt();
    (0..n).map(|_| (rng.normal() * std) as f32).collect()
}

impl Conv {
    fn init(cin: usize, cout: usize, rng: &mut Rng, device: &Device) -> Self {
        let w = he_normal(cin * 9, cout * cin * 9, 2.0, rng);
        Self {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(w, [cout, cin, 3, 3]),
                device,
            )),
            bias: Param::from_tensor(Tensor::zeros([cout], device)),
        }
    }

    /// x: [b, in, h, w] → [b, out, h, w] (stride 1, padding 1).
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let opts = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        conv2d(x, self.weight.val(), Some(self.bias.val()), opts)
    }
}

impl Dense {
    fn init(fan_in: usize, fan_out: usize, gain: f64, rng: &mut Rng, device: &Device) -> Self {
        let w = he_normal(fan_in, fan_in * fan_out, gain, rng);
        Self {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(w, [fan_in, fan_out]),
                device,
            )),
            bias: Param::from_tensor(Tensor::zeros([fan_out], device)),
        }
    }

    /// x: [b, in] → [b, out].
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        linear(x, self.weight.val(), Some(self.bias.val()))
    }
}

impl Cnn {
    /// Fresh weights for `shape` from `(seed, Stream::Init, key)`.
    pub fn init(shape: CnnShape, seed: u64, key: u64, device: &Device) -> Self {
        let mut rng = Rng::new(seed, Stream::Init, key);
        Self {
            conv1: Conv::init(shape.channels, C1, &mut rng, device),
            conv2: Conv::init(C1, C2, &mut rng, device),
            fc1: Dense::init(shape.flat(), FEATURE_DIM, 2.0, &mut rng, device),
            fc2: Dense::init(FEATURE_DIM, shape.classes, 1.0, &mut rng, device),
        }
    }

    /// Inputs [b, C, H, W] → penultimate features [b, 128].
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let pool = || MaxPoolOptions::new([2, 2]);
        // Max-pooling before the ReLU equals pooling after it and costs a quarter.
        let h = relu(max_pool2d(self.conv1.forward(x), pool())); // [b, 32, H/2, W/2]
        let h = relu(max_pool2d(self.conv2.forward(h), pool())); // [b, 64, H/4, W/4]
        let [b, c, hh, ww] = h.dims();
        relu(self.fc1.forward(h.reshape([b, c * hh * ww]))) // [b, 128]
    }

    /// Features [b, 128] → logits [b, K].
    pub fn logits(&self, features: Tensor<2>) -> Tensor<2> {
        self.fc2.forward(features)
    }
}

/// Inputs as a tensor: `values` holds `n` inputs of `shape`, row-major.
pub fn inputs(values: &[f32], n: usize, shape: CnnShape, device: &Device) -> Tensor<4> {
    Tensor::from_data(
        TensorData::new(
            values.to_vec(),
            [n, shape.channels, shape.height, shape.width],
        ),
        device,
    )
}

/// The training schedule of [`fit`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Passes over the `n` training items.
    pub epochs: usize,
    /// Items per optimiser step (the last step of an epoch takes the remainder).
    pub batch: usize,
    /// Initial learning rate, decayed to 0 along a half cosine.
    pub lr: f64,
    /// Seed of the initial weights and of the item order.
    pub seed: u64,
    /// Random-stream index of the network (keeps its draws apart from other users' of the
    /// same seed).
    pub key: u64,
}

/// What the logits are trained against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// Softmax cross-entropy against one-hot targets `[b, K]`.
    CrossEntropy,
    /// Binary cross-entropy with logits (K = 1) against targets `[b, 1]` in {0, 1}.
    Binary,
}

/// Fills one batch: gets the global step and the batch's item indices (in `0..n`), and
/// pushes their inputs `[b, C, H, W]` and targets (`[b, K]` one-hot or `[b, 1]` in {0, 1}).
pub type FillBatch<'a> =
    dyn FnMut(usize, &[usize], &mut Vec<f32>, &mut Vec<f32>) -> Result<()> + 'a;

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// Optimiser steps of `epochs` passes over `n` items in batches of `batch` (the last step of
/// an epoch takes the remainder).
pub fn steps_for(n: usize, batch: usize, epochs: usize) -> usize {
    n.div_ceil(batch.max(1)) * epochs
}

/// Trains a fresh network of `shape` on `n` items; `progress(done, total, loss)` is called
/// after every optimiser step. One stage of a [`Trainer`] over the whole schedule.
pub fn fit(
    shape: CnnShape,
    n: usize,
    s: &Schedule,
    objective: Objective,
    fill: &mut FillBatch,
    progress: &mut dyn FnMut(usize, usize, f64),
) -> Result<Cnn> {
    let total = steps_for(n, s.batch, s.epochs);
    let mut trainer = Trainer::new(shape, s, objective, total);
    trainer.stage(n, total, fill, progress)?;
    trainer.finish()
}

/// A network in training that keeps its state between stages: the weights, Adam's moments,
/// the step count of the one half-cosine learning-rate schedule over `total` steps, and the
/// count of item orders drawn. Each stage trains on its own `n` items for a number of steps;
/// an item order is a fresh shuffle of `0..n` from `(seed, Stream::Data, key + o)` for the
/// o-th order of the whole run, and a stage that ends inside an order drops its rest. So
/// stages that hold the same items and end on whole epochs give bit for bit the weights of one
/// stage over all their steps.
pub struct Trainer {
    shape: CnnShape,
    objective: Objective,
    /// Always `Some` between steps (taken by Adam's update, which consumes the module).
    net: Option<Cnn>,
    adam: Adam,
    lr: f64,
    batch: usize,
    seed: u64,
    key: u64,
    total: usize,
    done: usize,
    orders: u64,
}

impl Trainer {
    /// Fresh weights from `(s.seed, Stream::Init, s.key)` and a learning rate that falls from
    /// `s.lr` to 0 along a half cosine over `total` steps (`s.epochs` is not used: each
    /// stage says its steps).
    pub fn new(shape: CnnShape, s: &Schedule, objective: Objective, total: usize) -> Self {
        let device = crate::device::training();
        Self {
            shape,
            objective,
            net: Some(Cnn::init(shape, s.seed, s.key, &device)),
            adam: Adam::plain(BETA1, BETA2, EPS),
            lr: s.lr,
            batch: s.batch.max(1),
            seed: s.seed,
            key: s.key,
            total: total.max(1),
            done: 0,
            orders: 0,
        }
    }

    /// Optimiser steps taken so far.
    pub fn done(&self) -> usize {
        self.done
    }

    /// Steps of the whole schedule.
    pub fn total(&self) -> usize {
        self.total
    }

    /// The learning rate of step `done`: half-cosine decay from lr to 0 over the schedule.
    fn lr_at(&self, done: usize) -> f64 {
        let done = done.min(self.total) as f64;
        self.lr * 0.5 * (1.0 + (std::f64::consts::PI * done / self.total as f64).cos())
    }

    /// Trains `steps` optimiser steps on `n` items (`fill` gets the global step and the
    /// batch's item indices in `0..n`); `progress(done, total, loss)` after every step.
    pub fn stage(
        &mut self,
        n: usize,
        steps: usize,
        fill: &mut FillBatch,
        progress: &mut dyn FnMut(usize, usize, f64),
    ) -> Result<()> {
        if steps == 0 {
            return Ok(());
        }
        if n == 0 {
            return Err(Error::Model(format!(
                "a classifier stage of {steps} steps has no training items; give it examples or 0 steps"
            )));
        }
        let device = crate::device::training();
        let shape = self.shape;
        let mut x = Vec::with_capacity(self.batch * shape.input_len());
        let mut y = Vec::with_capacity(self.batch * shape.classes);
        let mut left = steps;
        while left > 0 {
            let mut rng = Rng::new(self.seed, Stream::Data, self.key + self.orders);
            self.orders += 1;
            let mut order: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
            for chunk in order.chunks(self.batch).take(left) {
                x.clear();
                y.clear();
                fill(self.done, chunk, &mut x, &mut y)?;
                let value = self.step(chunk.len(), &x, &y, &device)?;
                left -= 1;
                progress(self.done, self.total, value);
            }
        }
        Ok(())
    }

    /// One optimiser step on a batch of `b` inputs `x` and targets `y`; returns its loss.
    fn step(&mut self, b: usize, x: &[f32], y: &[f32], device: &Device) -> Result<f64> {
        let shape = self.shape;
        let Some(net) = self.net.take() else {
            return Err(Error::Model(
                "internal: the classifier was lost in training".into(),
            ));
        };
        let logits = net.logits(net.features(inputs(x, b, shape, device))); // [b, K]
        let target =
            Tensor::<2>::from_data(TensorData::new(y.to_vec(), [b, shape.classes]), device);
        let loss = match self.objective {
            Objective::CrossEntropy => (log_softmax(logits, 1) * target).sum().neg(),
            Objective::Binary => {
                // −[y·log σ(z) + (1 − y)·log σ(−z)]
                let pos = log_sigmoid(logits.clone()) * target.clone();
                let neg = log_sigmoid(logits.neg()) * target.neg().add_scalar(1.0);
                (pos + neg).sum().neg()
            }
        }
        .div_scalar(b as f64); // [1]
        let value: f64 = loss
            .clone()
            .inner()
            .try_into_vec_as::<f32>()
            .map_err(|e| Error::Model(format!("cannot read the classifier loss: {e:?}")))?[0]
            as f64;
        if !value.is_finite() {
            self.net = Some(net);
            return Err(Error::Model(format!(
                "classifier training diverged: the loss is {value} at step {} of {}; lower the \
                 learning rate (now {})",
                self.done, self.total, self.lr
            )));
        }
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        let lr = self.lr_at(self.done);
        self.net = Some(self.adam.step(net, &grads, lr));
        self.done += 1;
        Ok(value)
    }

    /// The network as it is now, for inference.
    pub fn snapshot(&self) -> Result<Cnn> {
        self.net
            .as_ref()
            .map(|n| n.valid())
            .ok_or_else(|| Error::Model("internal: the classifier was lost in training".into()))
    }

    /// The trained network, for inference.
    pub fn finish(self) -> Result<Cnn> {
        self.snapshot()
    }
}

/// Writes the weights of `net` to `path` (safetensors with `meta`, atomically), creating its
/// folder.
pub fn save(net: &Cnn, path: &Path, meta: HashMap<String, String>) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_dir(dir)?;
    }
    let host = params::to_host(net)?;
    let raw: Vec<(&str, Vec<u8>)> = host
        .iter()
        .map(|p| {
            let bytes = p.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (p.name.as_str(), bytes)
        })
        .collect();
    let mut views = Vec::with_capacity(raw.len());
    for (p, (name, bytes)) in host.iter().zip(&raw) {
        let view = TensorView::new(Dtype::F32, p.shape.clone(), bytes)
            .map_err(|e| Error::Model(format!("cannot store tensor {name}: {e}")))?;
        views.push((*name, view));
    }
    let file = safetensors::serialize(views, &Some(meta))
        .map_err(|e| Error::Model(format!("cannot serialise the classifier: {e}")))?;
    write_atomic(path, &file)
}

/// A weights file read from disk: its bytes and its metadata.
pub struct Stored {
    bytes: Vec<u8>,
    pub meta: HashMap<String, String>,
}

fn bad(path: &Path, why: String) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        why,
    }
}

/// Reads the safetensors file at `path` and its metadata; `what` names the network for the
/// message when it cannot be read.
pub fn open(path: &Path, what: &str) -> Result<Stored> {
    let bytes = std::fs::read(path)
        .map_err(|e| bad(path, format!("cannot read {what} ({e}); train one first")))?;
    safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
        bad(
            path,
            format!(
                "not a complete safetensors file ({e:?}): truncated or corrupt; delete it and \
                 train the classifier again"
            ),
        )
    })?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(path, format!("unreadable safetensors header ({e:?})")))?;
    let meta = header.metadata().clone().unwrap_or_default();
    Ok(Stored { bytes, meta })
}

impl Stored {
    /// The network of `shape` from the stored tensors, on the inference device: every
    /// tensor must be there, f32, of its shape and finite.
    pub fn net(&self, shape: CnnShape, path: &Path) -> Result<Cnn> {
        let st = safetensors::SafeTensors::deserialize(&self.bytes)
            .map_err(|e| bad(path, format!("not a complete safetensors file ({e:?})")))?;
        let net = Cnn::init(shape, 0, 0, &crate::device::inference());
        let expected = params::to_host(&net)?;
        let mut stored = Vec::with_capacity(expected.len());
        for p in &expected {
            let data = checked_f32(&st, &p.name, &p.shape)
                .map_err(|e| bad(path, e.describe(&p.name, &p.shape)))?;
            stored.push(HostParam {
                name: p.name.clone(),
                shape: p.shape.clone(),
                data,
            });
        }
        if st.len() != expected.len() {
            return Err(bad(
                path,
                format!(
                    "{} tensors stored, the classifier has {}",
                    st.len(),
                    expected.len()
                ),
            ));
        }
        params::from_host(net, &stored).map_err(|e| bad(path, e.to_string()))
    }
}
