#!/usr/bin/env bash
# The default model from scratch, in one run on the GPU machine (about 10 minutes):
#   scripts/train/all.sh [WORK]            (PI_BIN: pi's bin folder, default build/bin)
# 1 prepare.py: corpus -> tokenizer and token streams (held-out books by unseen authors)
# 2 train.py: ReluLLaMA (relu) and dReLU trained side by side on the one GPU, same shape, seed and
#   time; the card says which is kept and why (choose.py)
# 3 export.py -> models/pi-tiny-gutenberg.gguf; pictl model profile -> its sidecar; the predictors
#   (scripts/train_predictor.py)
# 4 checks for the card: logits against PyTorch (check_logits.py), perplexity of the held-in slice
#   (models/heldin.txt) with --ffn dense, exact and predicted and of the held-out authors, samples
# 5 card.py -> models/MODEL_CARD.md
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${1:-work/train}
bin=${PI_BIN:-build/bin}
shared=${PI_SHARED:-../shared}
minutes=${PI_TRAIN_MINUTES:-6}
seed=${PI_TRAIN_SEED:-1}
# PI_TRAIN_SHAPE: other train.py shape flags (a quick smoke run of this script on a CPU)
read -r -a shape <<<"${PI_TRAIN_SHAPE:---dim 288 --layers 8 --heads 6 --ffn 1152 --ctx 256 --batch 64 --lr 2e-3 --warmup 200}"
model=models/pi-tiny-gutenberg.gguf
mkdir -p "$work" models
log() { echo "== $(date +%T) $*"; }

if [ "${PI_TRAIN_REUSE:-0}" = 1 ] && [ -f "$work/prepare.log" ]; then
  log "prepare: reusing $work (PI_TRAIN_REUSE=1)"
else
  log "prepare"
  python3 scripts/train/prepare.py --corpus "$shared/corpus/gutenberg-train.txt.xz" --out "$work" --seed "$seed" \
    | tee "$work/prepare.log"
fi

if [ "${PI_TRAIN_REUSE:-0}" = 1 ] && [ -f "$work/relu.pt" ] && [ -f "$work/drelu.pt" ]; then
  log "train: reusing $work/relu.pt and drelu.pt (PI_TRAIN_REUSE=1)"
else
  log "train relu and drelu side by side, $minutes minutes each"
  pids=()
  for act in relu drelu; do
    python3 scripts/train/train.py --data "$work" --out "$work/$act.pt" --act "$act" --minutes "$minutes" \
      --seed "$seed" --eval-every 1000 --log-every 200 "${shape[@]}" >"$work/train_$act.log" 2>&1 &
    pids+=($!)
  done
  wait "${pids[0]}" || { tail -20 "$work/train_relu.log"; exit 1; }
  wait "${pids[1]}" || { tail -20 "$work/train_drelu.log"; exit 1; }
fi
tail -n 3 "$work/train_relu.log" "$work/train_drelu.log"
act=$(python3 scripts/train/choose.py "$work/relu.pt" "$work/drelu.pt" | tee "$work/choice.txt" | tail -1)
log "kept: $act ($(head -1 "$work/choice.txt"))"

ctx=$(python3 -c "import torch, sys; print(torch.load(sys.argv[1], map_location='cpu')['config']['ctx'])" "$work/$act.pt")
log "export, profile, predictors"
python3 scripts/train/export.py --ckpt "$work/$act.pt" --tokenizer "$work/tok.model" --type f16 -o "$model"
"$bin/pictl" model profile -m "$model" --corpus "$work/train.txt" --tokens 200000 --ctx "$ctx" \
  --dump-pairs "$work/pairs.bin" --pairs-per-layer 60000 | tee "$work/profile.log"
python3 scripts/train_predictor.py --pairs "$work/pairs.bin" --sidecar "${model%.gguf}.pi-sparse.gguf" \
  --seed "$seed" | tee "$work/predictor.log"

log "checks"
python3 scripts/train/check_logits.py --ckpt "$work/$act.pt" --tokenizer "$work/tok.model" -m "$model" \
  --text "$work/val.txt" --pictl "$bin/pictl" | tee "$work/check_logits.log"
# The held-in slice: about 6 KB of training text from a fixed place, committed for CI's perplexity check.
python3 - "$work/train.txt" models/heldin.txt <<'PY'
import sys
t = open(sys.argv[1], encoding="utf-8").read()
start = t.index("\n\n", len(t) // 3) + 2
end = t.index("\n\n", start + 6000)
open(sys.argv[2], "w", encoding="utf-8").write(t[start:end] + "\n")
PY
for ffn in dense exact predicted; do
  "$bin/pictl" perplexity -m "$model" --file models/heldin.txt --ctx "$ctx" --ffn "$ffn" --gpu-backend host \
    --cpu-workers 1 >"$work/ppl_heldin_$ffn.txt"
  tail -1 "$work/ppl_heldin_$ffn.txt"
done
head -c 100000 "$work/val.txt" >"$work/val_slice.txt"
"$bin/pictl" perplexity -m "$model" --file "$work/val_slice.txt" --ctx "$ctx" --ffn dense --gpu-backend host \
  --cpu-workers 1 >"$work/ppl_unseen.txt"
tail -1 "$work/ppl_unseen.txt"
n_sample=$((ctx - 16 < 200 ? ctx - 16 : 200))
"$bin/pid" run -m "$model" --gpu-backend host --ffn predicted --measure-recall -n "$n_sample" --temp 0.7 --seed "$seed" \
  -p "It was a dark and stormy night" >"$work/sample.txt" 2>"$work/sample.err"
cat "$work/sample.txt"

log "card"
python3 scripts/train/card.py --work "$work" --model "$model" -o models/MODEL_CARD.md
log "done: $model, ${model%.gguf}.pi-sparse.gguf, models/heldin.txt, models/MODEL_CARD.md"
