#!/usr/bin/env bash
# The default model on the lent GPU machine, in one call (about 9 minutes):
#   here:   scripts/train/device_train.sh --prepare      (.deps/: offline .debs and the whole corpus)
#   device: run(command="scripts/train/device_train.sh", carry=[".deps"])
#   here:   scripts/train/device_train.sh --unpack DIR   (DIR = the call's files_at: models/ filled in)
# On the device it builds pi (host backend only: the model runs on CPU workers in CI), runs
# scripts/train/all.sh with PI_TRAIN_MINUTES (default 4) per activation, and leaves under $OUT
# the model in 15 MiB parts (files come back at most 16 MiB each), its sidecar, the held-in
# slice, the card, sha256.txt, all.log and the run's other logs (work.tar.xz): 8 files.
set -euo pipefail
cd "$(dirname "$0")/../.."
model=models/pi-tiny-gutenberg

if [ "${1:-}" = --prepare ]; then
  sh=${PI_SHARED:-../shared}
  mkdir -p .deps/shared/corpus
  rm -rf .deps/offline-debs && cp -r "$sh/offline-debs" .deps/offline-debs
  cp "$sh/corpus/gutenberg-train.txt.xz" .deps/shared/corpus/
  echo "prepared .deps ($(du -sh .deps | cut -f1)); carry [\".deps\"]"
  exit 0
fi
if [ "${1:-}" = --unpack ]; then
  d=${2:?give the folder where the device call left its files}
  mkdir -p models
  cat "$d"/model.gguf.part-* >"$model.gguf"
  cp "$d/model.pi-sparse.gguf" "$model.pi-sparse.gguf"
  cp "$d/heldin.txt" "$d/MODEL_CARD.md" models/
  sha256sum -c "$d/sha256.txt"
  echo "unpacked into models/: $(ls models | tr '\n' ' ')"
  exit 0
fi

out=${OUT:-device-out}
mkdir -p "$out"
. scripts/device_env.sh
pi_device_env .deps/offline-debs
cmake -S . -B build-train -DCMAKE_BUILD_TYPE=Release -DPI_CUDA=OFF "${PI_DEPS_CMAKE[@]}" >/tmp/cmake.log 2>&1 || { tail -30 /tmp/cmake.log; exit 1; }
cmake --build build-train -j"$(nproc)" >/tmp/build.log 2>&1 || { tail -30 /tmp/build.log; exit 1; }
work=/tmp/pi-train
status=0
# A call is cut at 600 s and then nothing is copied back: all.sh gets what is left of PI_TRAIN_DEADLINE_S
# (570 s from the start), so whatever it finished (the model is exported before the checks) comes back.
left=$(( ${PI_TRAIN_DEADLINE_S:-570} - SECONDS ))
PYTHONUNBUFFERED=1 PI_BIN=build-train/bin PI_SHARED=.deps/shared PI_TRAIN_MINUTES=${PI_TRAIN_MINUTES:-4} \
  timeout "$left" scripts/train/all.sh "$work" 2>&1 | tee "$out/all.log" || status=1
split -b 15M -d "$model.gguf" "$out/model.gguf.part-" 2>/dev/null || true
cp "$model.pi-sparse.gguf" "$out/model.pi-sparse.gguf" 2>/dev/null || true
cp models/heldin.txt models/MODEL_CARD.md "$out/" 2>/dev/null || true
(cd models && sha256sum pi-tiny-gutenberg.gguf pi-tiny-gutenberg.pi-sparse.gguf heldin.txt MODEL_CARD.md 2>/dev/null \
  | sed 's#  #  models/#') >"$out/sha256.txt" || true
tar -C "$work" -cJf "$out/work.tar.xz" --exclude='*.bin' --exclude='*.pt' --exclude='train.txt' \
  --exclude='spm_sample.txt' --exclude='val.txt' . 2>/dev/null || true
exit $status
