//! The fused U-Net's layout: the blocks in execution order with their channels, resolutions
//! and parameter indices (the same structure as [`UnetConfig::init`]), and the weights
//! normalised for use.

use super::conv::{flip, from_kernel_order, to_kernel_order, transpose};
use super::direct_bf16;
use crate::error::{Error, Result};
use crate::models::layers::NORM_EPS;
use crate::models::params::HostParam;
use crate::models::unet::{UnetConfig, UnetPrecision};

/// The role of a block (see [`crate::models::unet`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Enc,
    Down,
    Dec,
    Up,
}

impl Kind {
    pub fn encoder(self) -> bool {
        matches!(self, Kind::Enc | Kind::Down)
    }
}

/// One block: shapes and parameter indices.
#[derive(Debug, Clone)]
pub struct BlockPlan {
    pub kind: Kind,
    /// Channels of the block's input (after the skip concatenation).
    pub cin: usize,
    pub cout: usize,
    /// Resolution of the input and of the block's computation.
    pub res_in: usize,
    pub res: usize,
    /// Output concatenated to the previous one before this block (0 = the input conv,
    /// k = block k − 1), and the previous output's channels.
    pub skip_from: Option<usize>,
    pub x_ch: usize,
    pub w0: usize,
    pub w1: usize,
    pub emb: usize,
    pub gain: usize,
    pub conv_skip: Option<usize>,
}

/// How a parameter is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A convolution `[cout, cin, k, k]`, normalised per output filter.
    Conv { cout: usize, cin: usize, k: usize },
    /// A linear layer `[out, in]`, normalised per row.
    Linear { out: usize, inp: usize },
    /// A scalar gain, used as stored.
    Gain,
}

/// The network's layout.
#[derive(Debug, Clone)]
pub struct Plan {
    pub img_channels: usize,
    pub res: usize,
    pub noise_channels: usize,
    pub emb_channels: usize,
    pub num_classes: usize,
    pub conv_in: usize,
    pub c0: usize,
    pub blocks: Vec<BlockPlan>,
    pub emb_noise: usize,
    pub emb_label: Option<usize>,
    pub out_conv: usize,
    pub out_gain: usize,
    pub logvar: Option<usize>,
    pub kinds: Vec<ParamKind>,
    /// Largest activation and im2col matrix of one image, in floats.
    pub max_act: usize,
    pub max_col: usize,
    /// bf16 operands for the 3×3 convolutions of the forward pass and the input gradient
    /// (`unet.precision = "bf16"` on a CPU with AVX-512-BF16).
    pub bf16: bool,
}

impl Plan {
    pub fn new(cfg: &UnetConfig, params: &[HostParam]) -> Result<Self> {
        if !cfg.attn_levels.is_empty() {
            return Err(Error::Model(
                "the fused U-Net has no attention; use unet.engine = \"burn\" for networks \
                 with unet.attn_levels"
                    .into(),
            ));
        }
        let mut kinds = vec![ParamKind::Gain; params.len()];
        let mut find = |name: &str, kind: ParamKind| -> Result<usize> {
            let i = params
                .iter()
                .position(|p| p.name == name)
                .ok_or_else(|| Error::Model(format!("the network has no parameter {name}")))?;
            let want: Vec<usize> = match kind {
                ParamKind::Conv { cout, cin, k } => vec![cout, cin, k, k],
                ParamKind::Linear { out, inp } => vec![out, inp],
                ParamKind::Gain => vec![1],
            };
            if params[i].shape != want {
                return Err(Error::Model(format!(
                    "parameter {name} has shape {:?}, the fused plan expects {want:?}",
                    params[i].shape
                )));
            }
            kinds[i] = kind;
            Ok(i)
        };
        let cn = |l: usize| cfg.channels * cfg.mults[l];
        let ce = cfg.emb_channels;
        let conv = |cout, cin, k| ParamKind::Conv { cout, cin, k };
        let conv_in = find("conv_in.weight", conv(cn(0), cfg.img_channels + 1, 3))?;
        let mut blocks = Vec::new();
        let block = |prefix: String,
                     kind: Kind,
                     cin: usize,
                     cout: usize,
                     res_in: usize,
                     skip: Option<(usize, usize)>,
                     find: &mut dyn FnMut(&str, ParamKind) -> Result<usize>|
         -> Result<BlockPlan> {
            let res = match kind {
                Kind::Down => res_in / 2,
                Kind::Up => res_in * 2,
                _ => res_in,
            };
            let c0in = if kind.encoder() { cout } else { cin };
            Ok(BlockPlan {
                kind,
                cin,
                cout,
                res_in,
                res,
                skip_from: skip.map(|s| s.0),
                x_ch: cin - skip.map_or(0, |s| s.1),
                w0: find(&format!("{prefix}.conv_res0.weight"), conv(cout, c0in, 3))?,
                w1: find(&format!("{prefix}.conv_res1.weight"), conv(cout, cout, 3))?,
                emb: find(
                    &format!("{prefix}.emb_linear.weight"),
                    ParamKind::Linear { out: cout, inp: ce },
                )?,
                gain: find(&format!("{prefix}.emb_gain"), ParamKind::Gain)?,
                conv_skip: if cin != cout {
                    Some(find(
                        &format!("{prefix}.conv_skip.weight"),
                        conv(cout, cin, 1),
                    )?)
                } else {
                    None
                },
            })
        };
        // Outputs: 0 = the input conv, k = block k − 1; `skips` holds (output, channels).
        let mut skips = vec![(0usize, cn(0))];
        let mut cout = cn(0);
        let mut res = cfg.resolution;
        let levels = cfg.mults.len();
        let mut e = 0;
        for l in 0..levels {
            if l > 0 {
                let b = block(
                    format!("enc.{e}"),
                    Kind::Down,
                    cout,
                    cout,
                    res,
                    None,
                    &mut find,
                )?;
                res = b.res;
                blocks.push(b);
                e += 1;
                skips.push((blocks.len(), cout));
            }
            for _ in 0..cfg.blocks {
                let cin = cout;
                cout = cn(l);
                blocks.push(block(
                    format!("enc.{e}"),
                    Kind::Enc,
                    cin,
                    cout,
                    res,
                    None,
                    &mut find,
                )?);
                e += 1;
                skips.push((blocks.len(), cout));
            }
        }
        let mut d = 0;
        for l in (0..levels).rev() {
            if l == levels - 1 {
                for _ in 0..2 {
                    blocks.push(block(
                        format!("dec.{d}"),
                        Kind::Dec,
                        cout,
                        cout,
                        res,
                        None,
                        &mut find,
                    )?);
                    d += 1;
                }
            } else {
                let b = block(
                    format!("dec.{d}"),
                    Kind::Up,
                    cout,
                    cout,
                    res,
                    None,
                    &mut find,
                )?;
                res = b.res;
                blocks.push(b);
                d += 1;
            }
            for _ in 0..=cfg.blocks {
                let skip = skips
                    .pop()
                    .ok_or_else(|| Error::Model("internal: U-Net skip stack is empty".into()))?;
                let cin = cout + skip.1;
                cout = cn(l);
                blocks.push(block(
                    format!("dec.{d}"),
                    Kind::Dec,
                    cin,
                    cout,
                    res,
                    Some(skip),
                    &mut find,
                )?);
                d += 1;
            }
        }
        let emb_noise = find(
            "emb_noise.weight",
            ParamKind::Linear {
                out: ce,
                inp: cfg.noise_channels,
            },
        )?;
        let emb_label = if cfg.num_classes > 0 {
            Some(find(
                "emb_label.weight",
                ParamKind::Linear {
                    out: ce,
                    inp: cfg.num_classes,
                },
            )?)
        } else {
            None
        };
        let out_conv = find("out_conv.weight", conv(cfg.img_channels, cout, 3))?;
        let out_gain = find("out_gain", ParamKind::Gain)?;
        let logvar = if cfg.uncertainty {
            Some(find(
                "logvar.weight",
                ParamKind::Linear {
                    out: 1,
                    inp: cfg.noise_channels,
                },
            )?)
        } else {
            None
        };
        let hw = |r: usize| r * r;
        let mut max_act = hw(cfg.resolution) * (cfg.img_channels + 1).max(cn(0));
        let mut max_col = 9 * max_act;
        for b in &blocks {
            let widest = b.cin.max(b.cout);
            max_act = max_act.max(hw(b.res).max(hw(b.res_in)) * widest);
            max_col = max_col.max(9 * hw(b.res) * widest);
        }
        Ok(Self {
            img_channels: cfg.img_channels,
            res: cfg.resolution,
            noise_channels: cfg.noise_channels,
            emb_channels: ce,
            num_classes: cfg.num_classes,
            conv_in,
            c0: cn(0),
            blocks,
            emb_noise,
            emb_label,
            out_conv,
            out_gain,
            logvar,
            kinds,
            max_act,
            max_col,
            bf16: cfg.precision == UnetPrecision::Bf16 && direct_bf16::supported(),
        })
    }

    /// Multiply-adds ×2 of one image's forward pass (convolutions and linear layers).
    pub fn forward_flops(&self) -> f64 {
        let conv = |res: usize, cin: usize, cout: usize, k: usize| {
            2.0 * (res * res * cin * cout * k * k) as f64
        };
        let mut f = conv(self.res, self.img_channels + 1, self.c0, 3)
            + conv(self.res, self.c0, self.img_channels, 3);
        for b in &self.blocks {
            let c0in = if b.kind.encoder() { b.cout } else { b.cin };
            f += conv(b.res, c0in, b.cout, 3) + conv(b.res, b.cout, b.cout, 3);
            if b.conv_skip.is_some() {
                f += conv(b.res, b.cin, b.cout, 1);
            }
            f += 2.0 * (self.emb_channels * b.cout) as f64;
        }
        f
    }
}

/// The weights as used: normalised rows, 3×3 kernels in im2col order and flipped for the
/// input gradient, and the stored rows' norms.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub w: Vec<Vec<f32>>,
    /// 3×3 kernels transposed to `[9·cin, cout]` (the forward convolution's operand).
    pub wt: Vec<Vec<f32>>,
    pub flipped: Vec<Vec<f32>>,
    /// With `plan.bf16`: `wt` and `flipped` packed for [`direct_bf16`] (empty otherwise, and
    /// for convolutions it does not run).
    pub wt_bf16: Vec<Vec<u16>>,
    pub flipped_bf16: Vec<Vec<u16>>,
    norms: Vec<Vec<f32>>,
}

impl Prepared {
    pub fn new(plan: &Plan, params: &[HostParam]) -> Self {
        let mut w = Vec::with_capacity(params.len());
        let mut flipped = Vec::with_capacity(params.len());
        let mut wt = Vec::with_capacity(params.len());
        let mut wt_bf16 = Vec::with_capacity(params.len());
        let mut flipped_bf16 = Vec::with_capacity(params.len());
        let mut norms = Vec::with_capacity(params.len());
        for (p, kind) in params.iter().zip(&plan.kinds) {
            let rows = match kind {
                ParamKind::Gain => {
                    w.push(p.data.clone());
                    wt.push(Vec::new());
                    flipped.push(Vec::new());
                    wt_bf16.push(Vec::new());
                    flipped_bf16.push(Vec::new());
                    norms.push(Vec::new());
                    continue;
                }
                ParamKind::Conv { cout, .. } => *cout,
                ParamKind::Linear { out, .. } => *out,
            };
            let cols = p.data.len() / rows;
            let mut nw = p.data.clone();
            let mut ns = Vec::with_capacity(rows);
            for row in nw.chunks_exact_mut(cols) {
                let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
                let d = n + NORM_EPS as f32;
                row.iter_mut().for_each(|v| *v /= d);
                ns.push(n);
            }
            let mut f = Vec::new();
            let mut t = Vec::new();
            let (mut tb, mut fb) = (Vec::new(), Vec::new());
            if let ParamKind::Conv { cout, cin, k } = *kind {
                let mut ko = vec![0.0; nw.len()];
                to_kernel_order(&nw, cout, cin, k, &mut ko);
                nw = ko;
                if k == 3 {
                    f = vec![0.0; nw.len()];
                    flip(&nw, cout, cin, &mut f);
                    t = vec![0.0; nw.len()];
                    transpose(&nw, cout, &mut t);
                    if plan.bf16 && direct_bf16::available(cout) {
                        tb = direct_bf16::pack_weight(&t, cin, cout);
                    }
                    if plan.bf16 && direct_bf16::available(cin) {
                        fb = direct_bf16::pack_weight(&f, cout, cin);
                    }
                }
            }
            w.push(nw);
            wt.push(t);
            wt_bf16.push(tb);
            flipped_bf16.push(fb);
            flipped.push(f);
            norms.push(ns);
        }
        Self {
            w,
            wt,
            flipped,
            wt_bf16,
            flipped_bf16,
            norms,
        }
    }

    /// The gradient of the stored parameter `i` (burn's layout) from the gradient `g` of its
    /// normalised weight (kernel order for convolutions): with n = ‖w_row‖ and d = n + ε,
    /// ∂ŵ/∂w gives dw = g/d − w·(w·g)/(n·d²) per row.
    pub fn stored_grad(&self, plan: &Plan, i: usize, stored: &[f32], g: &[f32]) -> Vec<f32> {
        let (rows, g) = match plan.kinds[i] {
            ParamKind::Gain => return g.to_vec(),
            ParamKind::Conv { cout, cin, k } => {
                let mut b = vec![0.0; g.len()];
                from_kernel_order(g, cout, cin, k, &mut b);
                (cout, b)
            }
            ParamKind::Linear { out, .. } => (out, g.to_vec()),
        };
        let cols = g.len() / rows;
        let mut out = g;
        for (r, (orow, wrow)) in out
            .chunks_exact_mut(cols)
            .zip(stored.chunks_exact(cols))
            .enumerate()
        {
            let n = self.norms[i][r];
            let d = n + NORM_EPS as f32;
            let wg: f32 = wrow.iter().zip(orow.iter()).map(|(a, b)| a * b).sum();
            let k = if n > 0.0 { wg / (n * d * d) } else { 0.0 };
            for (o, &wv) in orow.iter_mut().zip(wrow) {
                *o = *o / d - wv * k;
            }
        }
        out
    }
}
