#!/usr/bin/env bash
# A Q4_K_M file made by llama.cpp's own quantizer runs in pi, and pi's perplexity on it equals
# llama-perplexity's (llama.cpp's protocol: pictl perplexity --llamacpp) within 1%.
# Needs scripts/build_llamacpp_tools.sh first (PI_LLAMACPP_BIN) and a Release build of pi
# (PI_BIN, default build/bin). The model is synthetic and SiLU (pictl model synth --plain: only
# llama.cpp's tensors and keys, so both engines compute the same function), 7B-shaped with
# --layers 1 so its rows are K-quant blocks; the text is the first --bytes of the shared corpus.
# pi's host backend runs K-quants with scalar code: 4 chunks of 128 take ~4 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${PI_BIN:-build/bin}
lcpp=${PI_LLAMACPP_BIN:?set PI_LLAMACPP_BIN (scripts/build_llamacpp_tools.sh)}
shared=${PI_SHARED:-../shared}
bytes=${1:-800}
tmp=${PI_TMP:-/tmp}/llamacpp_quant
mkdir -p "$tmp"
"$bin/pictl" model synth --shape 7b --layers 1 --type f16 --plain -o "$tmp/m-f16.gguf" >/dev/null 2>&1
"$lcpp/llama-quantize" "$tmp/m-f16.gguf" "$tmp/m-q4km.gguf" Q4_K_M >"$tmp/quantize.log" 2>&1
{ xz -dc "$shared/corpus/gutenberg-train.txt.xz" || true; } | head -c "$bytes" >"$tmp/text.txt"  # xz ends on SIGPIPE
"$lcpp/llama-perplexity" -m "$tmp/m-q4km.gguf" -f "$tmp/text.txt" -c 128 -b 128 -t "$(nproc)" 2>"$tmp/lcpp.log" >/dev/null
theirs=$(sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$tmp/lcpp.log")  # not always at a line start
ours=$("$bin/pictl" perplexity -m "$tmp/m-q4km.gguf" --file "$tmp/text.txt" --ctx 128 --llamacpp --gpu-backend host \
  --cpu-workers 1 2>"$tmp/pi.log" | sed -n 's/^perplexity: //p')
python3 - "$ours" "$theirs" <<'PY'
import sys
ours, theirs = float(sys.argv[1]), float(sys.argv[2])
d = abs(ours / theirs - 1)
print("Q4_K_M (llama-quantize): pi %.4f, llama.cpp %.4f, %.4f%% apart (limit 1%%): %s" % (ours, theirs, 100 * d, "ok" if d < 0.01 else "FAIL"))
sys.exit(0 if d < 0.01 else 1)
PY
