#!/bin/bash
# --n-ctx beyond the model's trained context is allowed with a one-line warning on stderr (as llama.cpp does), and a request longer than the trained context then runs.
set -u
. "$(dirname "$0")/daemon_lib.sh"
daemon_setup daemon_n_ctx
big=$((MODEL_CTX * 2)) over=$((MODEL_CTX + 188))

timeout 120 "$B/pid" start -m "$MODEL" --cpu-workers 1 --gpu-backend host --max-seqs 1 \
    --n-ctx $big --listen "$EP" >"$D/start.out" 2>&1 || { cat "$D/start.out"; fail "pid start"; }
remember_pids
n=$(grep -c "warning: --n-ctx $big is larger than the model's trained context ($MODEL_CTX)" "$D/pid.log")
[ "$n" = 1 ] || fail "want one warning line in the log, got $n"
echo "ok: $(grep "warning: --n-ctx" "$D/pid.log")"
timeout 120 "$B/pictl" generate --endpoint "$EP" --temp 0.8 --seed 1 -n $over --json "Once" >"$D/g.json" 2>"$D/g.err" \
    || fail "a $over-token request in a $big context: $(cat "$D/g.err")"
got=$(/usr/bin/python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["generated_tokens"], j["stop_reason"])' "$D/g.json")
case "$got" in
    "$over length"|*" eos") echo "ok: generated past $MODEL_CTX positions or stopped at eos: $got" ;;
    *) fail "unexpected result: $got" ;;
esac
timeout 60 "$B/pid" stop --listen "$EP" >/dev/null || fail "pid stop"
echo PASS
