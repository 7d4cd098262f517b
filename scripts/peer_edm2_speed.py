#!/usr/bin/env python3
"""PyTorch peer benchmark: an EDM2-style U-Net configured like curadiff's `fmnist` preset.

A small, independent re-implementation of the network described in Karras et al.,
"Analyzing and Improving the Training Dynamics of Diffusion Models" (EDM2; reference code
NVlabs/edm2, training/networks_edm2.py), written only to time it on the CPU next to our Rust
engine. Nothing here is imported from EDM2.

Configuration (matches `--preset fmnist`):
  28x28x1 images, 10 classes, model channels 16, multipliers [1, 2, 4] (16/32/64 channels at
  28/14/7), 1 encoder block per level (decoder: 2), no self-attention, 64 noise (Fourier)
  channels, 64 embedding channels, label balance 0.5, concat balance 0.5, residual balance 0.3,
  activation clip 256, out gain and embedding gains initialised to 0, EDM preconditioning with
  sigma_data 0.5, no log-variance head. Loss: EDM2 / EDM weighting
  (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2, ln(sigma) ~ N(-1.2, 1.2^2), mean over all
  elements, 10% label dropout (class vector zeroed). Adam(betas 0.9/0.99, eps 1e-8).
  Forced weight normalisation happens inside forward in training mode, as in EDM2.

Timed:
  train    -- one full step: draw noise/sigma, forward, loss, backward, Adam step.
  forward  -- eval mode, torch.no_grad(), one Precond forward on the same batch size.
  sampling -- EDM Heun sampler, --sample-steps steps (2*steps-1 network evaluations), Karras
              sigma schedule (sigma_min 0.002, sigma_max 80, rho 7), class-conditional.

Data are synthetic (random tensors in [-1, 1], random labels): only speed is measured.

Prints exactly one JSON line on stdout; progress goes to stderr.

Usage:
  pip install torch numpy
  python3 scripts/peer_edm2_speed.py                       # fp32, 2 threads, batch 128
  python3 scripts/peer_edm2_speed.py --mode channels_last
  python3 scripts/peer_edm2_speed.py --mode bf16
  python3 scripts/peer_edm2_speed.py --steps 3 --warmup 1 --sample-steps 2   # smoke test
"""

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


# ---------------------------------------------------------------------------------------------
# Magnitude-preserving primitives.

def normalize(x, dim=None, eps=1e-4):
    """Scale x to unit RMS magnitude over `dim` (default: every dim but the batch one)."""
    if dim is None:
        dim = tuple(range(1, x.ndim))
    n = torch.linalg.vector_norm(x, dim=dim, keepdim=True, dtype=torch.float32)
    # ||x|| / sqrt(#elements reduced) == RMS; eps keeps zero rows finite.
    reduced = x.numel() // n.numel()
    n = eps + n * (1.0 / math.sqrt(reduced))
    return x / n.to(x.dtype)


def mp_silu(x):
    return F.silu(x) * (1.0 / 0.596)


def mp_sum(a, b, t):
    """(1-t)*a + t*b, rescaled so unit-magnitude inputs give a unit-magnitude output."""
    return torch.lerp(a, b, t) * (1.0 / math.hypot(1.0 - t, t))


def mp_cat(a, b, t):
    """Channel concat of a and b, weighted (1-t):t, magnitude preserving."""
    ca, cb = a.shape[1], b.shape[1]
    s = math.sqrt((ca + cb) / ((1.0 - t) ** 2 + t ** 2))
    return torch.cat([a * (s * (1.0 - t) / math.sqrt(ca)), b * (s * t / math.sqrt(cb))], dim=1)


class MPFourier(torch.nn.Module):
    """Random Fourier features of a scalar, sqrt(2)*cos(2*pi*(f*x + p)); fixed buffers."""

    def __init__(self, channels):
        super().__init__()
        self.register_buffer("freqs", 2 * math.pi * torch.randn(channels))
        self.register_buffer("phases", 2 * math.pi * torch.rand(channels))

    def forward(self, x):
        y = torch.outer(x.float(), self.freqs) + self.phases
        return (torch.cos(y) * math.sqrt(2.0)).to(x.dtype)


class MPConv(torch.nn.Module):
    """Weight-normalised conv (kernel k x k) or linear layer (kernel None).

    In training mode the stored weight is first overwritten by its normalised version
    (forced weight normalisation); the forward pass then uses normalize(w) / sqrt(fan_in),
    times an optional gain.
    """

    def __init__(self, cin, cout, kernel=None):
        super().__init__()
        shape = (cout, cin) if kernel is None else (cout, cin, kernel, kernel)
        self.weight = torch.nn.Parameter(torch.randn(shape))

    def forward(self, x, gain=1.0):
        w = self.weight.float()
        if self.training:
            with torch.no_grad():
                self.weight.copy_(normalize(w))
        w = normalize(w)
        fan_in = w[0].numel()
        w = w * (gain / math.sqrt(fan_in))
        if w.ndim == 2:
            return F.linear(x, w)
        return F.conv2d(x, w, padding=w.shape[-1] // 2)


def downsample(x):
    # EDM2 resample 'down' with filter [1,1]: depthwise 2x2 box filter, stride 2.
    return F.avg_pool2d(x, 2)


def upsample(x):
    # EDM2 resample 'up' with filter [1,1]: transposed 2x2 box filter * 4 == nearest.
    return F.interpolate(x, scale_factor=2, mode="nearest")


# ---------------------------------------------------------------------------------------------
# U-Net.

RES_BALANCE = 0.3
ATTN_BALANCE = 0.3
CLIP_ACT = 256.0


class Block(torch.nn.Module):
    def __init__(self, cin, cout, cemb, flavor, resample="keep", attention=False, head_ch=64):
        super().__init__()
        assert flavor in ("enc", "dec") and resample in ("keep", "down", "up")
        self.flavor, self.resample = flavor, resample
        self.heads = cout // head_ch if attention else 0
        self.emb_gain = torch.nn.Parameter(torch.zeros(()))
        self.conv_res0 = MPConv(cout if flavor == "enc" else cin, cout, 3)
        self.emb_linear = MPConv(cemb, cout)
        self.conv_res1 = MPConv(cout, cout, 3)
        self.conv_skip = MPConv(cin, cout, 1) if cin != cout else None
        if self.heads:
            self.attn_qkv = MPConv(cout, 3 * cout, 1)
            self.attn_proj = MPConv(cout, cout, 1)

    def forward(self, x, emb):
        if self.resample == "down":
            x = downsample(x)
        elif self.resample == "up":
            x = upsample(x)
        if self.flavor == "enc":
            if self.conv_skip is not None:
                x = self.conv_skip(x)
            x = normalize(x, dim=1)  # pixel norm
        h = self.conv_res0(mp_silu(x))
        scale = self.emb_linear(emb, gain=self.emb_gain) + 1
        h = mp_silu(h * scale[:, :, None, None].to(h.dtype))
        h = self.conv_res1(h)
        if self.flavor == "dec" and self.conv_skip is not None:
            x = self.conv_skip(x)
        x = mp_sum(x, h, RES_BALANCE)
        if self.heads:
            n, c, hh, ww = x.shape
            qkv = self.attn_qkv(x).reshape(n, self.heads, c // self.heads, 3, hh * ww)
            q, k, v = normalize(qkv, dim=2).unbind(3)
            att = torch.einsum("bhcq,bhck->bhqk", q, k * (1.0 / math.sqrt(q.shape[2])))
            att = att.softmax(dim=3)
            a = torch.einsum("bhqk,bhck->bhcq", att, v).reshape(n, c, hh, ww)
            x = mp_sum(x, self.attn_proj(a), ATTN_BALANCE)
        return x.clamp(-CLIP_ACT, CLIP_ACT)


class UNet(torch.nn.Module):
    def __init__(self, res=28, img_ch=1, label_dim=10, ch=16, mults=(1, 2, 4), blocks=1,
                 cnoise=64, cemb=64, label_balance=0.5, concat_balance=0.5, in0_attention=False):
        super().__init__()
        widths = [ch * m for m in mults]
        self.label_balance, self.concat_balance = label_balance, concat_balance
        self.out_gain = torch.nn.Parameter(torch.zeros(()))
        self.emb_fourier = MPFourier(cnoise)
        self.emb_noise = MPConv(cnoise, cemb)
        self.emb_label = MPConv(label_dim, cemb) if label_dim else None

        self.enc = torch.nn.ModuleList()
        enc_out = []
        c = img_ch + 1
        for level, w in enumerate(widths):
            if level == 0:
                self.enc.append(MPConv(c, w, 3))
            else:
                self.enc.append(Block(c, c, cemb, "enc", resample="down"))
            enc_out.append(w if level == 0 else c)
            c = enc_out[-1]
            for _ in range(blocks):
                self.enc.append(Block(c, w, cemb, "enc"))
                c = w
                enc_out.append(c)

        self.dec = torch.nn.ModuleList()
        self.dec_takes_skip = []
        for level in reversed(range(len(widths))):
            w = widths[level]
            if level == len(widths) - 1:
                # EDM2 puts self-attention in 'in0' unconditionally; the fmnist preset has none.
                self.dec.append(Block(c, c, cemb, "dec", attention=in0_attention))
                self.dec.append(Block(c, c, cemb, "dec"))
                self.dec_takes_skip += [False, False]
            else:
                self.dec.append(Block(c, c, cemb, "dec", resample="up"))
                self.dec_takes_skip.append(False)
            for _ in range(blocks + 1):
                cin = c + enc_out.pop()
                self.dec.append(Block(cin, w, cemb, "dec"))
                self.dec_takes_skip.append(True)
                c = w
        assert not enc_out
        self.out_conv = MPConv(c, img_ch, 3)

    def forward(self, x, c_noise, labels):
        emb = self.emb_noise(self.emb_fourier(c_noise))
        if self.emb_label is not None:
            lab = self.emb_label(labels * math.sqrt(labels.shape[1]))
            emb = mp_sum(emb, lab, self.label_balance)
        emb = mp_silu(emb)

        x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        skips = []
        for i, blk in enumerate(self.enc):
            x = blk(x) if i == 0 else blk(x, emb)
            skips.append(x)
        for blk, takes in zip(self.dec, self.dec_takes_skip):
            if takes:
                x = mp_cat(x, skips.pop(), self.concat_balance)
            x = blk(x, emb)
        return self.out_conv(x, gain=self.out_gain)


class Precond(torch.nn.Module):
    """EDM preconditioning: D(x; sigma) = c_skip x + c_out F(c_in x; ln(sigma)/4)."""

    def __init__(self, sigma_data=0.5, **kw):
        super().__init__()
        self.sigma_data = sigma_data
        self.unet = UNet(**kw)

    def forward(self, x, sigma, labels):
        sd = self.sigma_data
        sigma = sigma.float().reshape(-1, 1, 1, 1)
        c_skip = sd ** 2 / (sigma ** 2 + sd ** 2)
        c_out = sigma * sd / (sigma ** 2 + sd ** 2).sqrt()
        c_in = (sd ** 2 + sigma ** 2).rsqrt()
        c_noise = sigma.flatten().log() / 4
        f = self.unet(c_in * x, c_noise, labels)
        return c_skip * x + c_out * f.float()


def edm2_loss(net, images, labels, p_mean=-1.2, p_std=1.2, sigma_data=0.5):
    n = images.shape[0]
    sigma = (torch.randn(n, 1, 1, 1) * p_std + p_mean).exp()
    weight = (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2
    noisy = images + torch.randn_like(images) * sigma
    denoised = net(noisy, sigma, labels)
    return (weight * (denoised.float() - images) ** 2).mean()


def karras_sigmas(steps, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    i = torch.arange(steps, dtype=torch.float64)
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    s = (a + i / max(steps - 1, 1) * (b - a)) ** rho
    return torch.cat([s, torch.zeros(1, dtype=torch.float64)])


@torch.no_grad()
def heun_sample(net, labels, steps, shape, memfmt):
    """EDM deterministic Heun sampler (2*steps - 1 network evaluations)."""
    t = karras_sigmas(steps)
    x = (torch.randn(shape, dtype=torch.float64) * t[0]).float().contiguous(memory_format=memfmt)
    nfe = 0
    for i in range(steps):
        tc, tn = float(t[i]), float(t[i + 1])
        sc = torch.full((shape[0],), tc)
        d = (x - net(x, sc, labels)) / tc
        nfe += 1
        xn = x + (tn - tc) * d
        if i < steps - 1:
            sn = torch.full((shape[0],), tn)
            d2 = (xn - net(xn, sn, labels)) / tn
            nfe += 1
            xn = x + (tn - tc) * 0.5 * (d + d2)
        x = xn
    return x, nfe


# ---------------------------------------------------------------------------------------------

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20, help="timed training steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps before each phase")
    ap.add_argument("--forward-steps", type=int, default=None,
                    help="timed no-grad forwards (default: --steps)")
    ap.add_argument("--mode", choices=["fp32", "channels_last", "bf16"], default="fp32")
    ap.add_argument("--sample-steps", type=int, default=16, help="Heun steps (NFE = 2n-1)")
    ap.add_argument("--sample-batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.005)
    ap.add_argument("--label-dropout", type=float, default=0.1)
    ap.add_argument("--in0-attention", action="store_true",
                    help="add EDM2's self-attention in the lowest decoder block (not in fmnist)")
    ap.add_argument("--forward-only", action="store_true", help="skip training and sampling")
    ap.add_argument("--skip-sampling", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    memfmt = torch.channels_last if args.mode == "channels_last" else torch.contiguous_format
    amp = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.mode == "bf16" \
        else contextlib.nullcontext

    net = Precond(sigma_data=0.5, in0_attention=args.in0_attention)
    net = net.to(memory_format=memfmt)
    params = sum(p.numel() for p in net.parameters())
    log(f"torch {torch.__version__}, threads {torch.get_num_threads()}, params {params:,}, "
        f"mode {args.mode}")

    B, C, R, K = args.batch, 1, 28, 10
    images = (torch.rand(B, C, R, R) * 2 - 1).contiguous(memory_format=memfmt)
    classes = torch.randint(0, K, (B,))
    onehot = F.one_hot(classes, K).float()

    load_start = os.getloadavg()[0]
    out = {
        "bench": "peer_edm2_speed",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": B,
        "params": params,
        "mode": args.mode,
        "in0_attention": args.in0_attention,
    }

    # Training.
    if not args.forward_only:
        opt = torch.optim.Adam(net.parameters(), lr=args.lr, betas=(0.9, 0.99), eps=1e-8)
        net.train()

        def train_step():
            keep = (torch.rand(B, 1) >= args.label_dropout).float()
            with amp():
                loss = edm2_loss(net, images, onehot * keep)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss

        for _ in range(args.warmup):
            train_step()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            loss = train_step()
        dt = time.perf_counter() - t0
        out["train_steps"] = args.steps
        out["train_s_per_step"] = dt / args.steps
        out["train_images_per_s"] = B * args.steps / dt
        out["final_loss"] = float(loss.detach())
        log(f"train: {dt / args.steps * 1000:.1f} ms/step, {B * args.steps / dt:.1f} img/s")

    # Forward (no grad, eval mode).
    net.eval()
    fsteps = args.forward_steps if args.forward_steps is not None else args.steps
    sigma = (torch.randn(B) * 1.2 - 1.2).exp()
    with torch.no_grad(), amp():
        for _ in range(args.warmup):
            net(images, sigma, onehot)
        t0 = time.perf_counter()
        for _ in range(fsteps):
            net(images, sigma, onehot)
        dt = time.perf_counter() - t0
    out["forward_steps"] = fsteps
    out["forward_s_per_batch"] = dt / fsteps
    out["forward_images_per_s"] = B * fsteps / dt
    log(f"forward: {dt / fsteps * 1000:.1f} ms/batch, {B * fsteps / dt:.1f} img/s")

    # Sampling.
    if not (args.forward_only or args.skip_sampling):
        SB = args.sample_batch
        slab = F.one_hot(torch.arange(SB) % K, K).float()
        with amp():
            t0 = time.perf_counter()
            x, nfe = heun_sample(net, slab, args.sample_steps, (SB, C, R, R), memfmt)
            dt = time.perf_counter() - t0
        assert torch.isfinite(x).all()
        out["sample_steps"] = args.sample_steps
        out["sample_nfe"] = nfe
        out["sample_batch"] = SB
        out["sampling_s"] = dt
        out["sampling_images_per_s"] = SB / dt
        log(f"sampling: {nfe} NFE, {dt:.2f} s for {SB} images, {SB / dt:.1f} img/s")

    out["cpu"] = cpu_model()
    out["nproc"] = os.cpu_count()
    # On a 2-core machine, other busy processes make multi-threaded (OpenMP) kernels stall
    # badly; a 1-minute load average well above 0 means the numbers are contaminated.
    out["loadavg_1m_start"] = load_start
    out["loadavg_1m_end"] = os.getloadavg()[0]
    out["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
