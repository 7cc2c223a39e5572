#!/usr/bin/env bash
# The main job: set up, build, start the pid daemon on the default model and
# generate with it. The default model is stories260K (llama2.c's tiny Llama),
# imported from ../shared/models into models/stories260K.gguf.
# Usage: scripts/quickstart.sh [PROMPT]
set -euo pipefail
cd "$(dirname "$0")/.."
prompt=${1:-"Once upon a time"}
[ -d /usr/local/cuda/bin ] && export PATH="$PATH:/usr/local/cuda/bin"

scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DPI_CUDA=AUTO >/dev/null
cmake --build build -j"$(nproc)"

shared=${PI_SHARED:-../shared}
model=models/stories260K.gguf
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
