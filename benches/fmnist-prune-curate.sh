#!/bin/sh
# The curation behind benches/fmnist-prune.toml and benches/fmnist-prune-ratios.toml: the
# surrogate, features of the pool, one score file per criterion and the coresets.
#   sh benches/fmnist-prune-curate.sh [CURADIFF] [OUT]
# The pool is the first 1,000 examples of each Fashion-MNIST class (data.max_per_class =
# 1000, 10,000 images). The surrogate is the project's classifier trained with seed 1 (on the
# 60,000 training images, as the paper's surrogates are pretrained on other data; the image
# metrics use seed 0 and are never the surrogate); its training seconds are recorded in its
# file and counted once in every coreset's curation seconds, with the feature extraction and
# the criterion. Every coreset keeps its fraction over the whole pool (global selection, as
# DRO needs classes to reweight), at least 10 examples per class.
set -eu
BIN=${1:-target/release/curadiff}
OUT=${2:-runs/fmnist-prune/curation}
POOL="--max-per-class 1000"
mkdir -p "$OUT"
"$BIN" classifier --seed 1
"$BIN" prune features --features classifier $POOL --out "$OUT/features.npy"
# Random scores need no features (nor the surrogate): their curation is the draw alone.
"$BIN" prune score --criterion random --seed 0 $POOL --out "$OUT/random.npy"
for c in gaussian moderate-ds closest-to-median kcenter random; do
    if [ "$c" != random ]; then
        "$BIN" prune score --from-features "$OUT/features.npy" --criterion "$c" $POOL \
            --out "$OUT/$c.npy"
    fi
    for k in 0.7 0.5 0.3; do
        "$BIN" prune select --scores "$OUT/$c.npy" --keep "$k" --min-per-class 10 $POOL \
            --out "$OUT/$c-$k.npy"
    done
done
