#!/usr/bin/env bash
# The main job: set up, build, start the pid daemon on the default model and
# generate with it. The default model is models/pi-tiny-gutenberg.gguf (ours,
# models/MODEL_CARD.md) when the tree has it; until then stories260K
# (llama2.c's tiny Llama), imported from ../shared/models.
# Usage: scripts/quickstart.sh [PROMPT]
set -euo pipefail
cd "$(dirname "$0")/.."
prompt=${1:-"It was a dark and stormy night"}
[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"

scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DPI_CUDA=AUTO >/dev/null
cmake --build build -j"$(nproc)"

shared=${PI_SHARED:-../shared}
model=models/pi-tiny-gutenberg.gguf
if [ ! -f "$model" ]; then
  model=models/stories260K.gguf
  echo "quickstart: $model is used: models/pi-tiny-gutenberg.gguf is not in the tree yet (scripts/train/all.sh)"
fi
if [ ! -f "$model" ]; then
  if [ ! -f "$shared/models/stories260K.bin" ]; then
    echo "quickstart: the default model's source ($shared/models/stories260K.bin, tok512.bin) is absent." >&2
    echo "  Set PI_SHARED to the folder that holds models/stories260K.bin, or import your own:" >&2
    echo "  build/bin/pictl model import-llama2c --checkpoint X.bin --tokenizer tok.bin -o $model" >&2
    exit 1
  fi
  mkdir -p models
  build/bin/pictl model import-llama2c --checkpoint "$shared/models/stories260K.bin" \
    --tokenizer "$shared/models/tok512.bin" -o "$model"
fi

if [ -x build/bin/pid ] && build/bin/pid start --help >/dev/null 2>&1; then
  endpoint="ipc://$(pwd)/build/quickstart.sock"
  build/bin/pid start -m "$model" --listen "$endpoint" --gpu-backend auto
  trap 'build/bin/pid stop --listen "$endpoint" >/dev/null 2>&1 || true' EXIT
  build/bin/pictl generate --endpoint "$endpoint" -n 120 --temp 0.8 --seed 42 "$prompt"
else
  build/bin/pid run -m "$model" -n 120 --temp 0.8 --seed 42 -p "$prompt"
fi
