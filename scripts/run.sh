#!/usr/bin/env bash
# Set up (first time only) and run the headline sweep: LeNet on Fashion-MNIST.
# Extra arguments go to `lrfind run`, e.g. scripts/run.sh --steps 200 --optimizer adam
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

have_data() {
    .venv/bin/python -c "import sys; from lrfind.setup.data import BUILTIN_DATASETS, locate
sys.exit(0 if locate(BUILTIN_DATASETS['fashion-mnist'], None) else 1)"
}
# Offline machines: Debian packages Fashion-MNIST. Online, lrfind downloads it itself.
if ! have_data && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "Installing Fashion-MNIST from Debian (dataset-fashion-mnist)..."
    apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 ||
        { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null; } ||
        echo "Could not install dataset-fashion-mnist; lrfind will try to download it."
fi
exec .venv/bin/lrfind run --model lenet --dataset fashion-mnist "$@"
