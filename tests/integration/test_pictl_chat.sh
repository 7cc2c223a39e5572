#!/bin/bash
# pictl chat against a real pid on stories260K: turns piped on stdin stream replies that equal greedy generation from the whole conversation rendered so far (so history is sent, byte for byte), /exit stops reading, end of input (Ctrl-D) ends the chat, --system opens it, a bad value is one error line; and pictl generate --stop cuts the text before the stop string.
set -u
. "$(dirname "$0")/daemon_lib.sh"
daemon_setup pictl_chat

timeout 120 "$B/pid" start -m "$MODEL" --cpu-workers 1 --gpu-backend host --listen "$EP" \
    >"$D/start.out" 2>&1 || { cat "$D/start.out"; fail "pid start"; }
remember_pids

# The replies pid must give: greedy generation from the plain rendering of
# the conversation (stories260K has no chat template: "role: content" lines).
expect_chat() {  # $1: output file, $2: system text or "", then the user turns
    /usr/bin/python3 - "$B/pictl" "$EP" "$@" <<'PY'
import json, subprocess, sys
pictl, ep, out, system, turns = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
msgs = [("system", system)] if system else []
want = b""
for t in turns:
    msgs.append(("user", t))
    prompt = "".join(f"{r}: {c}\n" for r, c in msgs) + "assistant: "
    r = subprocess.run([pictl, "generate", "--endpoint", ep, "--json", "--temp", "0", "-n", "16", "-f", "-"],
                       input=prompt.encode(), capture_output=True, timeout=120)
    if r.returncode != 0:
        sys.exit("pictl generate failed: " + r.stderr.decode())
    text = json.loads(r.stdout)["text"]
    msgs.append(("assistant", text))
    want += text.encode() + b"\n"
open(out, "wb").write(want)
PY
}

printf 'Hello\nWho are you?\n/exit\nnever sent\n' |
    timeout 120 "$B/pictl" chat --endpoint "$EP" --temp 0 -n 16 --stats >"$D/chat.out" 2>"$D/chat.err" ||
    { cat "$D/chat.err"; fail "pictl chat exited $?"; }
expect_chat "$D/want.out" "" "Hello" "Who are you?" || fail "computing the expected replies"
cmp -s "$D/chat.out" "$D/want.out" || { echo "--- got:"; cat "$D/chat.out"; echo "--- want:"; cat "$D/want.out"; fail "chat replies differ from greedy generation of the conversation"; }
[ "$(grep -c '^prompt ' "$D/chat.err")" = 2 ] || { cat "$D/chat.err"; fail "expected 2 turns (none after /exit)"; }
p1=$(sed -n '1s/^prompt \([0-9]*\) tokens.*/\1/p' "$D/chat.err")
p2=$(sed -n '2s/^prompt \([0-9]*\) tokens.*/\1/p' "$D/chat.err")
[ "$p2" -gt "$p1" ] || fail "the second turn's prompt ($p2 tokens) does not hold the first ($p1)"
echo "ok: two piped turns stream replies equal to greedy generation of the conversation; /exit stops (prompts $p1 then $p2 tokens)"
sed 's/^/  | /' "$D/chat.out"

# End of input (Ctrl-D) ends the chat with status 0; --system opens it.
printf 'Tell me a story.\n' |
    timeout 120 "$B/pictl" chat --endpoint "$EP" --temp 0 -n 16 --system "You are a storyteller." \
        >"$D/sys.out" 2>"$D/sys.err" || { cat "$D/sys.err"; fail "pictl chat --system exited $?"; }
expect_chat "$D/sys.want" "You are a storyteller." "Tell me a story." || fail "computing the expected reply"
cmp -s "$D/sys.out" "$D/sys.want" || fail "--system reply differs: '$(cat "$D/sys.out")' vs '$(cat "$D/sys.want")'"
echo "ok: end of input ends the chat (status 0); --system opens the conversation"

# A bad value: one line on stderr, status 2.
timeout 10 "$B/pictl" chat --endpoint "$EP" --temp abc </dev/null >/dev/null 2>"$D/bad.err"
st=$?
[ $st = 2 ] && [ "$(wc -l <"$D/bad.err")" = 1 ] || { cat "$D/bad.err"; fail "--temp abc: status $st, want 2 and one line"; }
echo "ok: a bad value is one line: $(cat "$D/bad.err")"

# pictl generate --stop (here because pid is up): the greedy text ends right before the
# first occurrence of the stop string, streamed and --json alike.
/usr/bin/python3 - "$B/pictl" "$EP" <<'PY' || fail "pictl generate --stop"
import json, subprocess, sys
pictl, ep = sys.argv[1], sys.argv[2]
run = lambda *a: subprocess.run([pictl, "generate", "--endpoint", ep, "--temp", "0", "-n", "60", *a],
                                capture_output=True, timeout=120)
full = json.loads(run("--json", "Once").stdout)["text"]
stop = full[25:29]          # a piece from the middle of the text
want = full[:full.find(stop)]
r = run("--stop", stop, "--stop", "NEVER-APPEARS", "Once")
assert r.returncode == 0, r.stderr
assert r.stdout.decode() == "Once" + want + "\n", (r.stdout, want)
j = json.loads(run("--json", "--stop", stop, "Once").stdout)
assert j["text"] == want and j["stop_reason"] == "stop", j
print(f"ok: generate --stop {stop!r}: text cut before it ({len(want)} of {len(full)} bytes), streamed and --json")
PY

timeout 60 "$B/pid" stop --listen "$EP" >/dev/null 2>&1 || fail "pid stop"
echo "PASS"
