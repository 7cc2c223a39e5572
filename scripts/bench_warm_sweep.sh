#!/usr/bin/env bash
# On the lent GPU machine, after scripts/bench_compare.sh --stage build,models (same machine, still warm; carry
# .deps): pid run --ffn predicted at one budget with --timings, for every warm share x variant, REPS rounds in
# turn (round 1 all configurations, then round 2, ...), so a drift of the host's memory bandwidth within the call
# spreads over every configuration instead of landing on one.
#   PI_SWEEP_SHARES="0.33 0.4 0.47"   warm shares (--warm-share)
#   PI_SWEEP_VARIANTS="A;B"           ';'-separated: VAR=value words (environment) and flags; "" is the defaults
#   PI_SWEEP_REPS=2                   rounds (the even ones with the shares backwards)
#   PI_SWEEP_BUDGET=12.6  PI_RUN_ARGS="--predictor-type q8_0"  (every run's flags, before a variant's)
# Prints one line per run (tok/s, the phases of --timings' decode table, the CPU worker's cold FFN, the GPU's
# memory peak above the baseline from nvidia-smi, the text's checksum) and a summary with each configuration's
# median; logs in $OUT/sweep-logs.tgz. Exit status 1 when a run fails. Its tok/s are not a table of engines:
# bench_compare.sh is (docs/benchmarks.md).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out=${OUT:-/tmp/out}; mkdir -p "$out"
# shellcheck source=scripts/device_env.sh
source scripts/device_env.sh; pi_device_env .deps/offline-debs
# shellcheck source=scripts/bench_lib.sh
source scripts/bench_lib.sh
model=${PI_SWEEP_MODEL:-/dev/shm/pi-bench/pwri-13b/13b-pwri.gguf} budget=${PI_SWEEP_BUDGET:-12.6}
shares=${PI_SWEEP_SHARES:-0.33 0.4 0.47} reps=${PI_SWEEP_REPS:-2}
IFS=';' read -r -a variants <<<"${PI_SWEEP_VARIANTS:-}"
[ ${#variants[@]} -gt 0 ] || variants=("")
bin=build-dev/bin logs=/tmp/sweep-logs fails=0
prompt="Once upon a time, in a small village at the edge of a great forest, there lived a young girl who"   # bench_compare.sh's
[ -f "$model" ] || { echo "bench_warm_sweep: no model at $model (scripts/bench_compare.sh --stage models first)"; exit 1; }
[ -x "$bin/pid" ] || { echo "bench_warm_sweep: no $bin/pid (scripts/bench_compare.sh --stage build first)"; exit 1; }
rm -rf "$logs"; mkdir -p "$logs"
summary=$logs/summary
: >"$summary"
for ((r = 1; r <= reps; r++)); do
  order=$shares   # even rounds run the shares backwards: a drift within the call then weighs on each alike
  # shellcheck disable=SC2086  # one share a line
  [ $((r % 2)) -eq 0 ] && order=$(printf '%s\n' $shares | tac | paste -sd' ' -)
  for vi in "${!variants[@]}"; do
    for w in $order; do
      env_words=() flags=()
      # shellcheck disable=SC2206  # words on purpose
      words=(${PI_RUN_ARGS:-} ${variants[$vi]})
      for x in "${words[@]}"; do
        if [[ $x =~ ^[A-Z_][A-Z0-9_]*= ]]; then env_words+=("$x"); else flags+=("$x"); fi
      done
      id="v$vi-w$w-r$r" log=$logs/$id.log
      st0=$(pi_steal_s)
      base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1)
      nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$log.gpu" 2>/dev/null &
      smi=$!
      env "${env_words[@]}" timeout -k 10 150 "$bin/pid" run -m "$model" -n 128 --temp 0 -p "$prompt" \
        --gpu-backend cuda --ffn predicted --vram-budget "$budget" --cpu-workers 1 --warm-share "$w" --timings \
        "${flags[@]}" >"$logs/$id.out" 2>"$log" </dev/null
      rc=$?
      kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null
      steal=$(awk -v a="$st0" -v b="$(pi_steal_s)" 'BEGIN { printf "%.2f", b - a }')
      tps=$(sed -n 's/.*generated [0-9]* tokens in [0-9.]* s (\([0-9.]*\) tok\/s).*/\1/p' "$log" | tail -1)
      peak=$(awk -v b="${base:-0}" '$1 ~ /^[0-9]+$/ && $1 > m { m = $1 } END { if (m) print m - b }' "$log.gpu")
      if [ "$rc" -ne 0 ] || [ -z "$tps" ]; then
        echo "FAIL: $id (rc $rc): $(tail -2 "$log" | tr '\n' ' ')"; fails=$((fails + 1)); continue
      fi
      sum=$(cksum <"$logs/$id.out" | cut -d' ' -f1)
      printf '%s [%s] w %s: %s tok/s | attn %s pred %s hot %s wait %s | cpu cold %s | wall %s | peak %s MiB | stolen %s s | text %s\n' \
        "$id" "${variants[$vi]:-defaults}" "$w" "$tps" "$(pi_timings_ms "$log" "gpu attn")" "$(pi_timings_ms "$log" "gpu predict")" \
        "$(pi_timings_ms "$log" "gpu hot ffn")" "$(pi_timings_ms "$log" "gpu wait for cpu")" "$(pi_timings_ms "$log" "cpu:0 cold ffn")" \
        "$(pi_timings_ms "$log" "wall")" "${peak:-?}" "$steal" "$sum"
      echo "$vi $w $tps" >>"$summary"
      grep -m1 "cuda backend: context" "$log" | sed 's/^/    /'
      grep -m1 -o "hot sets [^;]*" "$log" | sed "s/^/    /"
    done
  done
done
echo "== median tok/s of $reps rounds at $budget GiB"
for vi in "${!variants[@]}"; do
  for w in $shares; do
    v=$(awk -v a="$vi" -v b="$w" '$1 == a && $2 == b { print $3 }' "$summary" | sort -g | tr '\n' ' ')
    # shellcheck disable=SC2086  # one value a line
    med=$(printf '%s\n' $v | awk 'NF { a[++n] = $1 } END { if (n) print (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }')
    echo "[${variants[$vi]:-defaults}] w $w: median ${med:-n/a} of ($v)"
  done
done
tar -czf "$out/sweep-logs.tgz" -C "$logs" . 2>/dev/null
echo "bench_warm_sweep: $fails failures"
[ "$fails" -eq 0 ]
