#!/bin/bash
# A chat through `pictl chat` and through /v1/chat/completions renders the model's template as Jinja2 does, end to end: stories260K given the published ChatML template (pictl model set-template) answers both exactly as greedy generation from Jinja2's rendering of the same conversation (two turns), with the same prompt token counts.
set -u
. "$(dirname "$0")/daemon_lib.sh"
B=${PI_BIN:?PI_BIN not set}
/usr/bin/python3 -c 'import jinja2' 2>/dev/null ||
    { echo "SKIP: python3-jinja2 is not installed (scripts/setup.sh installs it)"; exit 77; }
daemon_setup chat_e2e

# The template exactly as teknium/OpenHermes-2.5-Mistral-7B publishes it (chat_reference.py).
/usr/bin/python3 - "$PI_SRC/tests/integration" >"$D/chatml.jinja" <<'PY' || fail "template"
import sys
sys.path.insert(0, sys.argv[1])
import chat_reference
sys.stdout.write(chat_reference.TEMPLATES["teknium/OpenHermes-2.5-Mistral-7B"][3])
PY
"$B/pictl" model set-template "$MODEL" --file "$D/chatml.jinja" -o "$D/chatml.gguf" || fail "set-template"
"$B/pictl" model inspect "$D/chatml.gguf" | grep -q "tokenizer.chat_template" || fail "no template in the copy"

HTTP=""
if ! "$B/pid" start --http 127.0.0.1:1 -m /nonexistent 2>&1 | grep -q "built without HTTP support"; then
    PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    HTTP="--http 127.0.0.1:$PORT"
fi
timeout 120 "$B/pid" start -m "$D/chatml.gguf" --cpu-workers 1 --gpu-backend host --listen "$EP" $HTTP \
    >"$D/start.out" 2>&1 || { cat "$D/start.out"; fail "pid start"; }
remember_pids
[ -n "$HTTP" ] || echo "note: pid has no HTTP support in this build: only pictl chat is checked"

printf 'Hello\nWho are you?\n' |
    timeout 120 "$B/pictl" chat --endpoint "$EP" --temp 0 -n 16 --stats >"$D/chat.out" 2>"$D/chat.err" ||
    { cat "$D/chat.err"; fail "pictl chat"; }

/usr/bin/python3 - "$B/pictl" "$EP" "$PI_SRC/tests/integration" "$D" "${PORT:-}" <<'PY' || fail "see above"
import json, re, subprocess, sys, urllib.request
pictl, ep, lib, d, port = sys.argv[1:6]
sys.path.insert(0, lib)
import chat_reference as cr
family, bos, eos, tmpl = cr.TEMPLATES["teknium/OpenHermes-2.5-Mistral-7B"]

def greedy(prompt):
    r = subprocess.run([pictl, "generate", "--endpoint", ep, "--json", "--temp", "0", "-n", "16", "-f", "-"],
                       input=prompt.encode(), capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    return j["text"], j["prompt_tokens"]

msgs, want_out, want_counts = [], b"", []
for turn in ("Hello", "Who are you?"):
    msgs.append(("user", turn))
    ref = cr.render(tmpl, bos, eos, msgs)   # Jinja2: the reference rendering
    text, n = greedy(ref)
    msgs.append(("assistant", text))
    want_out += text.encode() + b"\n"
    want_counts.append(n)
got = open(f"{d}/chat.out", "rb").read()
assert got == want_out, f"pictl chat printed {got!r}, greedy from Jinja2's rendering gives {want_out!r}"
counts = [int(x) for x in re.findall(r"^prompt (\d+) tokens", open(f"{d}/chat.err").read(), re.M)]
assert counts == want_counts, f"pictl chat prompt tokens {counts}, Jinja2 rendering {want_counts}"
print(f"ok: pictl chat, 2 turns: replies and prompt tokens {counts} equal greedy generation from Jinja2's rendering")

if port:
    body = json.dumps({"messages": [{"role": r, "content": c} for r, c in msgs[:3]],
                       "temperature": 0, "max_tokens": 16}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", body,
                                 {"Content-Type": "application/json"})
    j = json.loads(urllib.request.urlopen(req, timeout=60).read())
    content = j["choices"][0]["message"]["content"]
    assert content == msgs[3][1], f"HTTP chat gave {content!r}, want {msgs[3][1]!r}"
    assert j["usage"]["prompt_tokens"] == want_counts[1], (j["usage"], want_counts)
    print(f"ok: /v1/chat/completions on the same conversation: the same reply and {want_counts[1]} prompt tokens")
PY
timeout 60 "$B/pid" stop --listen "$EP" >/dev/null 2>&1 || fail "pid stop"
echo "PASS"
