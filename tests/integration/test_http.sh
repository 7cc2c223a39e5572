#!/bin/bash
# pid start --http serves the OpenAI-compatible API through the same scheduler as RPC: /health (503 loading while the workers load, then 200), /v1/models, a greedy /v1/completions equal to `pictl generate --temp 0 -n 50 ""`, streamed completions equal to the non-streamed text and ending with usage and [DONE], streamed and plain chat, stop strings (plain and streamed), /metrics counters rising, 400s for bad JSON and bad values, and a client that disconnects mid-stream leaves 0 active requests (curl and Python).
set -u
. "$(dirname "$0")/daemon_lib.sh"

B=${PI_BIN:?PI_BIN not set}
if "$B/pid" start --http 127.0.0.1:1 -m /nonexistent 2>&1 | grep -q "built without HTTP support"; then
    echo "SKIP: this pid was built without HTTP support (libmicrohttpd, libcjson absent at configure time)"
    exit 77
fi
command -v curl >/dev/null || { echo "SKIP: curl is not installed (scripts/setup.sh installs it)"; exit 77; }
daemon_setup http

# A bad http value in the config names the file, the line and the form.
printf 'http = 127.0.0.1\n' >"$D/bad.conf"
out=$("$B/pid" start --config "$D/bad.conf" -m "$MODEL" 2>&1) && fail "a bad http = was accepted"
echo "$out" | grep -q "bad.conf:1.*HOST:PORT" || fail "bad http = message: $out"
echo "ok: config 'http = 127.0.0.1' refused: $out"

PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
# A context far beyond the model's trained one (allowed with a warning) so a long stream runs for long.
timeout 120 "$B/pid" start -m "$MODEL" --cpu-workers 1 --gpu-backend host --max-seqs 4 \
    --n-ctx 10100 --listen "$EP" --http "127.0.0.1:$PORT" >"$D/start.out" 2>&1 ||
    { cat "$D/start.out"; fail "pid start --http"; }
remember_pids
grep -q "HTTP API at http://127.0.0.1:$PORT" "$D/pid.log" || fail "pid did not log its HTTP address"

# curl: health, models, the greedy completion against pictl's.
body=$(curl -sS -m 30 -w ' %{http_code}' "$URL/health") || fail "curl /health"
[ "$body" = '{"status":"ok"} 200' ] || fail "/health: $body"
echo "ok: curl /health: $body"
body=$(curl -sS -m 30 "$URL/v1/models") || fail "curl /v1/models"
echo "$body" | grep -q "\"id\":\"$MODEL_NAME\"" || fail "/v1/models: $body"
echo "ok: curl /v1/models names $MODEL_NAME"
curl -sS -m 120 "$URL/v1/completions" -H 'Content-Type: application/json' \
    -d '{"prompt":"","temperature":0,"max_tokens":50}' >"$D/greedy.json" || fail "curl /v1/completions"
timeout 120 "$B/pictl" generate --endpoint "$EP" --temp 0 -n 50 "" >"$D/pictl.txt" 2>"$D/pictl.err" ||
    fail "pictl generate: $(cat "$D/pictl.err")"
/usr/bin/python3 - "$D/greedy.json" "$D/pictl.txt" <<'PY' || fail "HTTP text differs from pictl's"
import json, sys
j = json.load(open(sys.argv[1]))
t = j["choices"][0]["text"].encode()
p = open(sys.argv[2], "rb").read()
p = p[:-1] if p.endswith(b"\n") else p
assert j["choices"][0]["finish_reason"] == "length", j
assert j["usage"]["completion_tokens"] == 50, j
assert j["usage"]["total_tokens"] == j["usage"]["prompt_tokens"] + 50, j
if t != p:
    print("http :", t, "\npictl:", p); sys.exit(1)
PY
echo "ok: greedy /v1/completions (temperature 0, 50 tokens) equals pictl generate --temp 0 -n 50"

# curl: a streamed completion ends with a finish_reason chunk, usage and [DONE].
curl -sS -N -m 120 "$URL/v1/completions" -d '{"prompt":"","temperature":0,"max_tokens":20,"stream":true}' \
    >"$D/stream.sse" || fail "curl stream"
[ "$(tail -n 2 "$D/stream.sse" | head -n 1)" = "data: [DONE]" ] || fail "stream does not end with [DONE]"
grep -q '"finish_reason":"length"}\],"usage":{"prompt_tokens":1,"completion_tokens":20,"total_tokens":21}' \
    "$D/stream.sse" || fail "stream's last chunk: $(tail -n 4 "$D/stream.sse")"
echo "ok: curl stream ends with finish_reason, usage and [DONE]"

# curl: a client that goes away mid-stream (curl killed by its own --max-time).
curl -sS -N -m 1 "$URL/v1/completions" -d '{"prompt":"","max_tokens":10000,"stream":true}' \
    >"$D/cut.sse" 2>/dev/null
grep -q '^data: {' "$D/cut.sse" || fail "the long stream sent nothing within 1 s"

active() { timeout 10 "$B/pictl" status --endpoint "$EP" 2>/dev/null | awk '/^requests:/{print $2}'; }
wait_active0() {
    local i
    for i in $(seq 1 100); do [ "$(active)" = 0 ] && return 0; sleep 0.05; done
    return 1
}
wait_active0 || fail "$(active) requests still active after curl went away"
echo "ok: curl gone mid-stream: 0 active requests"

# Python (requests when the distribution has it, else urllib).
PI_HTTP_URL=$URL timeout 300 /usr/bin/python3 - <<'PY' || fail "python checks"
import json, os, socket, sys, time
URL = os.environ["PI_HTTP_URL"]
try:
    import requests
    def post(path, body, raw=None):
        r = requests.post(URL + path, data=raw if raw is not None else json.dumps(body),
                          headers={"Content-Type": "application/json"}, timeout=120)
        return r.status_code, r.text
    def get(path):
        r = requests.get(URL + path, timeout=60)
        return r.status_code, r.text
    print("ok: python uses requests")
except ImportError:
    import urllib.request, urllib.error
    def _do(req):
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
    def post(path, body, raw=None):
        data = (raw if raw is not None else json.dumps(body)).encode()
        return _do(urllib.request.Request(URL + path, data=data, headers={"Content-Type": "application/json"}))
    def get(path):
        return _do(urllib.request.Request(URL + path))
    print("ok: python uses urllib (python3-requests absent)")

def sse(text):
    """The data lines of an event stream: JSON objects, then '[DONE]'."""
    events = [e for e in text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events), events[:3]
    out = [e[6:] for e in events]
    assert out[-1] == "[DONE]", out[-3:]
    return [json.loads(e) for e in out[:-1]]

def metric(name):
    s, t = get("/metrics")
    assert s == 200, s
    for line in t.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0

ok_before = metric('pi_http_requests_total{endpoint="/v1/completions",status="200"}')
bad_before = metric('pi_http_requests_total{endpoint="/v1/completions",status="400"}')
tok_before = metric("pi_generated_tokens_total")
ttft_before = metric("pi_time_to_first_token_seconds_count")

# Streamed completion == non-streamed text (same seed-free greedy request).
req = {"prompt": "Once upon a time", "temperature": 0, "max_tokens": 40}
s, t = post("/v1/completions", req)
assert s == 200, (s, t)
plain = json.loads(t)
s, t = post("/v1/completions", dict(req, stream=True))
assert s == 200, (s, t)
chunks = sse(t)
text = "".join(c["choices"][0]["text"] for c in chunks)
assert text == plain["choices"][0]["text"], (text, plain)
last = chunks[-1]
assert last["choices"][0]["finish_reason"] == "length" and last["usage"] == plain["usage"], last
assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
print("ok: streamed completion (%d chunks) == non-streamed text; usage %s; [DONE]" % (len(chunks), last["usage"]))

# Sampling with a seed is reproducible over HTTP too.
sreq = {"prompt": "Once", "temperature": 0.9, "top_k": 40, "top_p": 0.9, "min_p": 0.05, "seed": 7, "max_tokens": 30}
a = json.loads(post("/v1/completions", sreq)[1])["choices"][0]["text"]
b = json.loads(post("/v1/completions", sreq)[1])["choices"][0]["text"]
assert a == b, (a, b)
print("ok: seeded sampling (temperature, top_k, top_p, min_p, seed) reproducible")

# Stop strings: the text is cut before the stop, finish_reason "stop", streamed the same.
full = plain["choices"][0]["text"]
stop = full[12:17]
assert stop and stop in full, full
for stops in (stop, ["zzzz", stop]):
    s, t = post("/v1/completions", dict(req, stop=stops))
    j = json.loads(t)
    want = full[:full.index(stop)]
    assert s == 200 and j["choices"][0]["text"] == want and j["choices"][0]["finish_reason"] == "stop", (stops, j)
    s, t = post("/v1/completions", dict(req, stop=stops, stream=True))
    ch = sse(t)
    st = "".join(c["choices"][0]["text"] for c in ch)
    assert st == want and ch[-1]["choices"][0]["finish_reason"] == "stop", (st, want)
print("ok: stop %r cuts the text to %r, finish_reason stop, streamed the same" % (stop, want))

# Chat: plain and streamed, the same text; usage; role then content deltas.
creq = {"messages": [{"role": "system", "content": "You tell stories."},
                     {"role": "user", "content": "Tell me one."}], "temperature": 0, "max_tokens": 30}
s, t = post("/v1/chat/completions", creq)
assert s == 200, (s, t)
cj = json.loads(t)
assert cj["object"] == "chat.completion" and cj["choices"][0]["message"]["role"] == "assistant", cj
s, t = post("/v1/chat/completions", dict(creq, stream=True))
assert s == 200, (s, t)
ch = sse(t)
assert ch[0]["choices"][0]["delta"].get("role") == "assistant", ch[0]
ctext = "".join(c["choices"][0]["delta"].get("content", "") for c in ch)
assert ctext == cj["choices"][0]["message"]["content"], (ctext, cj)
assert ch[-1]["choices"][0]["finish_reason"] == "length" and ch[-1]["usage"] == cj["usage"], ch[-1]
assert all(c["object"] == "chat.completion.chunk" for c in ch)
print("ok: chat (plain fallback rendering) streamed == plain: %r" % ctext[:40])

# 400s with OpenAI-style errors.
bad = [(None, "{not json"), ({"temperature": 0}, None), ({"prompt": 5}, None),
       ({"prompt": "", "temperature": -1}, None), ({"prompt": "", "temperature": "hot"}, None),
       ({"prompt": "", "top_p": 1.5}, None), ({"prompt": "", "max_tokens": 0}, None),
       ({"prompt": "", "max_tokens": 2.5}, None), ({"prompt": "", "stop": [1]}, None),
       ({"prompt": "", "stream": "yes"}, None), ({"prompt": "", "n": 2}, None),
       ({"prompt": "", "max_tokens": 20000}, None)]
for body, raw in bad:
    s, t = post("/v1/completions", body, raw)
    e = json.loads(t)
    assert s == 400 and e["error"]["type"] == "invalid_request_error" and e["error"]["message"], (body, raw, s, t)
for body in ({"messages": []}, {"messages": [{"role": "user"}]}, {"messages": "hi"}, {"prompt": "x"}):
    s, t = post("/v1/chat/completions", body)
    assert s == 400 and json.loads(t)["error"]["type"] == "invalid_request_error", (body, s, t)
print("ok: %d bad requests answered 400 invalid_request_error" % (len(bad) + 4))

# Metrics rose.
ok_after = metric('pi_http_requests_total{endpoint="/v1/completions",status="200"}')
bad_after = metric('pi_http_requests_total{endpoint="/v1/completions",status="400"}')
tok_after = metric("pi_generated_tokens_total")
assert ok_after >= ok_before + 8 and bad_after >= bad_before + len(bad), (ok_before, ok_after, bad_before, bad_after)
assert tok_after >= tok_before + 40 * 2 + 30 * 2, (tok_before, tok_after)
assert metric("pi_time_to_first_token_seconds_count") > ttft_before
assert metric('pi_worker_restarts_total{worker="gpu"}') == 0
assert metric('pi_worker_rss_bytes{worker="cpu:0"}') > 0
print("ok: /metrics: completions 200 %d -> %d, 400 %d -> %d, tokens %d -> %d" %
      (ok_before, ok_after, bad_before, bad_after, tok_before, tok_after))

# A client that disconnects mid-stream: pid cancels its request.
d0 = metric("pi_http_client_disconnects_total")
host, port = URL[len("http://"):].split(":")
sk = socket.create_connection((host, int(port)), timeout=30)
body = json.dumps({"prompt": "", "max_tokens": 10000, "stream": True}).encode()
sk.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n" % len(body) + body)
got = b""
while b"data: " not in got:
    got += sk.recv(4096)
sk.close()
for _ in range(100):
    if metric("pi_http_client_disconnects_total") > d0 and metric("pi_requests_active") == 0:
        break
    time.sleep(0.05)
else:
    sys.exit("the disconnected stream was not cancelled")
print("ok: python client gone mid-stream: disconnects %d -> %d, 0 active" % (d0, metric("pi_http_client_disconnects_total")))
PY

wait_active0 || fail "$(active) requests still active at the end"
echo "ok: pictl status: 0 active requests"
timeout 60 "$B/pid" stop --listen "$EP" >/dev/null || fail "pid stop"

# /health while the workers load: 503 {"status":"loading"} (when caught), then 200.
"$B/pid" start -m "$MODEL" --cpu-workers 1 --gpu-backend host --listen "$EP" --http "127.0.0.1:$PORT" \
    --foreground >"$D/fg.log" 2>&1 &
FG=$!
PIDS_TO_KILL="$PIDS_TO_KILL $FG"
seen=""
for i in $(seq 1 600); do
    r=$(curl -s -m 5 -w ' %{http_code}' "$URL/health" 2>/dev/null) || { sleep 0.02; continue; }
    case "$r" in
    '{"status":"ok"} 200') seen="$seen ok"; break ;;
    '{"status":"loading"} 503') case "$seen" in *loading*) ;; *) seen="$seen loading" ;; esac ;;
    *) fail "/health during start: $r" ;;
    esac
    sleep 0.02
done
case "$seen" in *ok) ;; *) fail "/health never said ok while pid started (saw:$seen)" ;; esac
echo "ok: /health during start:$seen"
timeout 60 "$B/pid" stop --listen "$EP" >/dev/null || fail "pid stop (foreground)"
wait "$FG" || fail "the foreground pid exited non-zero: $(tail -n 5 "$D/fg.log")"
echo PASS
