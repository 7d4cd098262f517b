#!/bin/sh
# The curation behind benches/fmnist-lt-discl.toml (DisCL on long-tailed Fashion-MNIST with the
# hard classes in the tail, preset fmnist-lt-hard):
#   sh benches/fmnist-lt-discl.sh [CURADIFF] [OUT] [PRESET]
# PRESET fmnist-lt (label order: easy classes in the tail) with OUT runs/label feeds
# benches/fmnist-lt-discl-label.toml.
# 1. the generator: the `fmnist` U-Net (bf16) on the long-tailed set alone, 409,600 images
#    (3,200 steps of 128, 27.5 epochs of its 14,886 images), snapshots at 102,400 and
#    153,600 images; CFG (w = 2) samples of every snapshot are classified by the metrics'
#    classifier (1,000 samples each) to check the ≥ 80% criterion (2026-12-07: 0.60, 0.68,
#    0.69 at 102k, 154k, 205k images; 0.836 at 410k);
# 2. the filter: the project's CNN classifier trained on the same long-tailed pool;
# 3. the hard examples: every example of the few-shot classes (rule `tail`: Coat 166,
#    Pullover 100, Shirt 60; `--rule oof-lowest` is the other rule, not used by this grid);
# 4. the spectrum: img2img of each tail example at strengths 0.1, 0.3, 0.5, 0.7, 0.9, 1.0
#    (λ = 0.9 … 0), 4 seeds each, CFG w = 2, the filter at τ = 0.5.
# Then: curadiff bench --grid benches/fmnist-lt-discl.toml --out runs/lt-discl
set -eu
BIN=${1:-target/release/curadiff}
OUT=${2:-runs}
PRESET=${3:-fmnist-lt-hard}
mkdir -p "$OUT"
"$BIN" classifier
"$BIN" train --preset "$PRESET" --out "$OUT/lt-gen" --set unet.precision=bf16 \
    --set train.duration_nimg=409600 --set 'train.snapshot_nimg=[102400,153600]'
"$BIN" eval images --run "$OUT/lt-gen" --snapshots --cfg 2 --n 1000
"$BIN" classifier --run "$OUT/lt-gen" --out "$OUT/lt-filter.safetensors"
"$BIN" hard --run "$OUT/lt-gen" --rule tail --out "$OUT/lt-tail.npy"
"$BIN" synth --run "$OUT/lt-gen" --hard "$OUT/lt-tail.npy" \
    --filter "$OUT/lt-filter.safetensors" --strengths 0.1,0.3,0.5,0.7,0.9,1.0 \
    --seeds 10,20,30,40 --cfg 2 --tau 0.5 --out "$OUT/lt-spectrum"
