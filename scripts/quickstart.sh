#!/usr/bin/env bash
# The main job: set up, build, start the pid daemon on the default model
# (models/pi-tiny-gutenberg.gguf, committed; models/MODEL_CARD.md) and generate
# with it. pid takes the default model when no -m is given.
# Usage: scripts/quickstart.sh [PROMPT]
set -euo pipefail
cd "$(dirname "$0")/.."
prompt=${1:-"It was a dark and stormy night"}
[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"

scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DPI_CUDA=AUTO >/dev/null
cmake --build build -j"$(nproc)"

if [ -z "${PI_MODEL:-}" ] && [ ! -f models/pi-tiny-gutenberg.gguf ]; then
  echo "quickstart: models/pi-tiny-gutenberg.gguf is missing from this checkout; it is committed in the" >&2
  echo "  repository (26 MB): restore it with 'git checkout -- models/', or give a model with PI_MODEL=FILE." >&2
  exit 1
fi

if [ -x build/bin/pid ] && build/bin/pid start --help >/dev/null 2>&1; then
  endpoint="ipc://$(pwd)/build/quickstart.sock"
  build/bin/pid start --listen "$endpoint" --gpu-backend auto
  trap 'build/bin/pid stop --listen "$endpoint" >/dev/null 2>&1 || true' EXIT
  build/bin/pictl generate --endpoint "$endpoint" -n 120 --temp 0.8 --seed 42 "$prompt"
else
  build/bin/pid run -n 120 --temp 0.8 --seed 42 -p "$prompt"
fi
