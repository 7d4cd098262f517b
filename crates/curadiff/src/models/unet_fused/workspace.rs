//! The buffers one chunk of images keeps between calls: activations saved by the forward
//! pass for the backward pass, scratch space, and the chunk's weight gradients.

/// Saved activations of one block (see [`super::pass`]); unused ones stay empty.
#[derive(Debug, Default)]
pub struct BlockTape {
    /// The input after 2×2 pooling or 2× upsampling.
    pub a: Vec<f32>,
    /// The 1×1 skip convolution's output.
    pub xs: Vec<f32>,
    /// Encoder: the pixel-normalised input of the residual branch.
    pub xn: Vec<f32>,
    /// mp_silu of the first convolution's input, and its output.
    pub s0: Vec<f32>,
    pub y0: Vec<f32>,
    /// Embedding projection `[n, cout]` and the modulation 1 + gain·projection.
    pub lin: Vec<f32>,
    pub c: Vec<f32>,
    /// Modulated first output, and mp_silu of it (the second convolution's input).
    pub m: Vec<f32>,
    pub s1: Vec<f32>,
    /// The block's output.
    pub out: Vec<f32>,
}

/// One chunk's buffers.
#[derive(Debug, Default)]
pub struct Workspace {
    /// NHWC input with the constant channel, `[n, H, W, C + 1]`.
    pub xin: Vec<f32>,
    /// The input convolution's output.
    pub x0: Vec<f32>,
    pub blocks: Vec<BlockTape>,
    /// mp_cat(previous output, skip) per decoder block fed a skip (empty otherwise).
    pub cats: Vec<Vec<f32>>,
    /// Embedding: noise projection, scaled class vectors, label projection, the mp_sum
    /// before MP-SiLU, and the embedding itself, `[n, ·]`.
    pub e1: Vec<f32>,
    pub cl: Vec<f32>,
    pub e2: Vec<f32>,
    pub emb_pre: Vec<f32>,
    pub emb: Vec<f32>,
    /// The output convolution before its gain, NHWC.
    pub o: Vec<f32>,
    /// im2col matrix and scratch activations.
    pub col: Vec<f32>,
    pub s: [Vec<f32>; 4],
    /// Small per-image scratch: embedding gradient, modulation gradients.
    pub d_emb: Vec<f32>,
    pub dc: Vec<f32>,
    pub dlin: Vec<f32>,
    /// Gradient reaching each output used as a skip (0 = the input convolution).
    pub skip_grads: Vec<Vec<f32>>,
    /// This chunk's gradients of the normalised weights (kernel order).
    pub grads: Vec<Vec<f32>>,
}

/// `v` resized to `n` floats (reusing its allocation once it is large enough).
pub fn buf(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() != n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}
