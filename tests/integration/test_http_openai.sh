#!/bin/bash
# The npm `openai` client works against pid's HTTP API: models.list names the model, a greedy completions.create equals what `pictl generate --temp 0 -n 30` prints after the prompt, a streamed chat.completions.create assembles the same text as the non-streamed one and ends with finish_reason and usage, and a bad value raises a 400 BadRequestError. Optional: SKIP (with the reason) where npm is absent or `npm install openai` fails (no network).
set -u
. "$(dirname "$0")/daemon_lib.sh"

B=${PI_BIN:?PI_BIN not set}
if "$B/pid" start --http 127.0.0.1:1 -m /nonexistent 2>&1 | grep -q "built without HTTP support"; then
    echo "SKIP: this pid was built without HTTP support (libmicrohttpd, libcjson absent at configure time)"
    exit 77
fi
command -v npm >/dev/null && command -v node >/dev/null ||
    { echo "SKIP: npm/node are not installed (the openai client test is optional)"; exit 77; }
daemon_setup http_openai

mkdir -p "$D/js" && cd "$D/js" || fail "mkdir"
if ! timeout 180 npm install --no-audit --no-fund --silent openai >"$D/npm.log" 2>&1; then
    echo "SKIP: 'npm install openai' failed (no registry access?): $(tail -n 1 "$D/npm.log")"
    exit 77
fi
cd - >/dev/null || fail "cd"

PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
timeout 120 "$B/pid" start -m "$MODEL" --cpu-workers 1 --gpu-backend host --listen "$EP" \
    --http "127.0.0.1:$PORT" >"$D/start.out" 2>&1 || { cat "$D/start.out"; fail "pid start --http"; }
remember_pids
timeout 120 "$B/pictl" generate --endpoint "$EP" --temp 0 -n 30 "Once upon a time" >"$D/pictl.txt" 2>"$D/pictl.err" ||
    fail "pictl generate: $(cat "$D/pictl.err")"

cat >"$D/js/check.js" <<'JS'
const fs = require('fs');
const mod = require('openai');
const OpenAI = mod.OpenAI || mod.default || mod;
const [base, pictlFile, modelName] = process.argv.slice(2);
const client = new OpenAI({ baseURL: base + '/v1', apiKey: 'unused', maxRetries: 0, timeout: 120000 });
function check(cond, what) { if (!cond) { console.error('FAIL: ' + what); process.exit(1); } }
(async () => {
  const models = await client.models.list();
  const ids = [];
  for await (const m of models) ids.push(m.id);
  check(ids.includes(modelName), 'models.list: ' + JSON.stringify(ids));
  console.log('ok: models.list ' + JSON.stringify(ids));

  let want = fs.readFileSync(pictlFile, 'utf8');
  if (want.endsWith('\n')) want = want.slice(0, -1);
  check(want.startsWith('Once upon a time'), 'pictl echoes the prompt: ' + JSON.stringify(want));
  want = want.slice('Once upon a time'.length); /* OpenAI completions do not echo the prompt */
  const c = await client.completions.create({ model: 'x', prompt: 'Once upon a time', max_tokens: 30, temperature: 0 });
  check(c.choices[0].text === want, 'completion ' + JSON.stringify(c.choices[0].text) + ' != pictl ' + JSON.stringify(want));
  check(c.usage.completion_tokens === 30 && c.choices[0].finish_reason === 'length', 'usage ' + JSON.stringify(c.usage));
  console.log('ok: completions.create (greedy, 30 tokens) equals pictl generate');

  const req = { model: 'x', messages: [{ role: 'user', content: 'Tell me a story.' }], max_tokens: 25, temperature: 0 };
  const plain = await client.chat.completions.create(req);
  const stream = await client.chat.completions.create({ ...req, stream: true });
  let text = '', finish = null, usage = null;
  for await (const ch of stream) {
    if (ch.choices[0] && ch.choices[0].delta && ch.choices[0].delta.content) text += ch.choices[0].delta.content;
    if (ch.choices[0] && ch.choices[0].finish_reason) finish = ch.choices[0].finish_reason;
    if (ch.usage) usage = ch.usage;
  }
  check(text === plain.choices[0].message.content, 'stream ' + JSON.stringify(text) + ' != ' + JSON.stringify(plain.choices[0].message.content));
  check(finish === 'length' && usage && usage.completion_tokens === 25, 'stream end ' + finish + ' ' + JSON.stringify(usage));
  console.log('ok: streamed chat.completions.create == non-streamed: ' + JSON.stringify(text.slice(0, 40)));

  try {
    await client.completions.create({ model: 'x', prompt: '', temperature: 7 });
    check(false, 'temperature 7 accepted');
  } catch (e) {
    check(e.status === 400, 'bad value: status ' + e.status + ' ' + e);
    console.log('ok: temperature 7 -> ' + e.status + ' ' + e.message);
  }
})().catch((e) => { console.error('FAIL: ' + (e.stack || e)); process.exit(1); });
JS
(cd "$D/js" && timeout 300 node check.js "http://127.0.0.1:$PORT" "$D/pictl.txt" "$MODEL_NAME") || fail "openai client checks"
timeout 60 "$B/pid" stop --listen "$EP" >/dev/null || fail "pid stop"
echo PASS
