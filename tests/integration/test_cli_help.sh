#!/bin/bash
# Every flag that pictl's and pid's argument parsers accept (string literals like "--temp" in each command's source files) appears in that command's --help; --version of both names the version in CMakeLists.txt; one bad value gives exactly one error line and status 2.
set -u
B=${PI_BIN:?PI_BIN not set}
S=${PI_SRC:?PI_SRC not set}
D=${PI_TMP:-/tmp}/cli_help.$$
mkdir -p "$D" || exit 1
trap 'rm -rf "$D"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# --version
want=$(sed -n 's/^project(pi VERSION \([0-9.]*\).*/\1/p' "$S/CMakeLists.txt")
for cmd in pictl pid; do
    got=$("$B/$cmd" --version) || fail "$cmd --version exited $?"
    [ "$got" = "$cmd (pi) $want" ] || fail "$cmd --version printed '$got', want '$cmd (pi) $want'"
done
echo "ok: pictl --version and pid --version print $want"

# Each command: its --help invocation, then the sources whose flags it accepts.
# (model/gen_params.c: the sampling flags; client/rpc.c: --endpoint, --token;
# daemon/config.c: pid start's table, which pid stop and status read too.)
/usr/bin/python3 - "$B" "$S" <<'PY' || exit 1
import re, subprocess, sys
B, S = sys.argv[1], sys.argv[2]
gen, rpc, conf = "model/gen_params.c", "client/rpc.c", "daemon/config.c"
commands = [
    ("pictl generate", [B + "/pictl", "generate", "--help"], ["client/cmd_generate.c", gen, rpc]),
    ("pictl chat", [B + "/pictl", "chat", "--help"], ["client/cmd_chat.c", gen, rpc]),
    ("pictl tokenize -m", [B + "/pictl", "tokenize", "-m", "x.gguf", "--help"], ["client/cmd_tokenize.c"]),
    ("pictl tokenize", [B + "/pictl", "tokenize", "--help"], [rpc, ("client/cmd_detok.c", "client_remote_tokenize")]),
    ("pictl detokenize", [B + "/pictl", "detokenize", "--help"], [rpc, ("client/cmd_detok.c", "cmd_detokenize")]),
    ("pictl status", [B + "/pictl", "status", "--help"], ["client/cmd_status.c", rpc]),
    ("pictl workers", [B + "/pictl", "workers", "--help"], ["client/cmd_status.c", rpc]),
    ("pictl restart-worker", [B + "/pictl", "restart-worker", "--help"], ["client/cmd_admin.c", rpc]),
    ("pictl shutdown", [B + "/pictl", "shutdown", "--help"], ["client/cmd_admin.c", rpc]),
    ("pictl model import-llama2c", [B + "/pictl", "model", "import-llama2c", "--help"], [("client/cmd_model.c", "import_llama2c")]),
    ("pictl model import-hf", [B + "/pictl", "model", "import-hf", "--help"], ["client/cmd_import_hf.c"]),
    ("pictl model inspect", [B + "/pictl", "model", "inspect", "--help"], [("client/cmd_model.c", "inspect")]),
    ("pictl model synth", [B + "/pictl", "model", "synth", "--help"], ["client/cmd_synth.c"]),
    ("pictl model profile", [B + "/pictl", "model", "profile", "--help"], ["client/cmd_profile.c"]),
    ("pictl model plan", [B + "/pictl", "model", "plan", "--help"], ["client/cmd_plan.c"]),
    ("pictl model set-template", [B + "/pictl", "model", "set-template", "--help"], ["client/cmd_template.c"]),
    ("pictl perplexity", [B + "/pictl", "perplexity", "--help"], ["daemon/perplexity.c"]),
    ("pid run", [B + "/pid", "run", "--help"], ["daemon/run.c", gen]),
    ("pid start", [B + "/pid", "start", "--help"], [conf, gen]),
    ("pid stop", [B + "/pid", "stop", "--help"], [conf, gen]),
    ("pid status", [B + "/pid", "status", "--help"], [conf, gen]),
]
FLAG = re.compile(r'"(--?[A-Za-z][-A-Za-z0-9]*)"')

def flags(src):
    path, fn = (src, None) if isinstance(src, str) else src
    text = open(f"{S}/{path}").read()
    if fn:  # only that function's body
        m = re.search(r"\n[a-z][^\n]*\b" + fn + r"\(int argc[^\n]*\n\{", text)
        if not m:
            sys.exit(f"FAIL: {fn} not found in {path}")
        end = text.find("\n}\n", m.end())
        text = text[m.start():end]
    return set(FLAG.findall(text)) - {"-h", "--help", "-"}

bad = 0
listed = {c: subprocess.run([B + "/" + c, "--help"], capture_output=True, text=True).stdout for c in ("pictl", "pid")}
for name, argv, srcs in commands:
    tool, sub = name.split()[:2]
    if not re.search(r"^  " + re.escape(sub) + r"\b", listed[tool], re.M):
        print(f"note: {tool} has no command '{sub}' in this build: not checked")
        continue
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        print(f"FAIL: {name} --help exited {r.returncode}: {r.stderr.strip()}")
        bad += 1
        continue
    want = set().union(*(flags(s) for s in srcs))
    missing = sorted(f for f in want
                     if not re.search(r"(^|[^-A-Za-z0-9])" + re.escape(f) + r"($|[^-A-Za-z0-9])", r.stdout))
    if missing:
        print(f"FAIL: {name} --help does not mention {' '.join(missing)}")
        bad += 1
        continue
    # docs/cli.md: the command's section names them too.
    doc = open(f"{S}/docs/cli.md").read()
    m = re.search(r"^## `" + re.escape(name) + r"[^`]*`\n(.*?)(?=^## |\Z)", doc, re.M | re.S)
    undoc = sorted(f for f in want if not m or
                   not re.search(r"(^|[^-A-Za-z0-9])" + re.escape(f) + r"($|[^-A-Za-z0-9])", m.group(1)))
    if undoc:
        print(f"FAIL: docs/cli.md's section for {name} does not mention {' '.join(undoc) or '(no section)'}")
        bad += 1
    else:
        print(f"ok: {name} --help and docs/cli.md name all {len(want)} flags its parser accepts")
sys.exit(1 if bad else 0)
PY

# One bad value: one line on stderr, status 2.
n=0
while IFS= read -r line; do
    set -- $line
    "$B/$@" </dev/null >/dev/null 2>"$D/err"
    st=$?
    lines=$(wc -l <"$D/err")
    [ $st = 2 ] && [ "$lines" = 1 ] || { cat "$D/err"; fail "'$line': status $st and $lines lines, want 2 and 1"; }
    n=$((n + 1))
done <<'CMDS'
pictl generate --temp abc hello
pictl generate --bogus hello
pictl chat --top-k -1
pictl tokenize -m x.gguf --bogus
pictl tokenize --bogus
pictl detokenize 1 x
pictl status --bogus
pictl workers --bogus
pictl restart-worker gpu0
pictl shutdown --bogus
pictl model bogus
pictl model import-llama2c --type f8
pictl model inspect
pictl model synth --layers x
pictl model profile --tokens x
pictl model plan --max-seqs x
pictl model set-template x.gguf --file
pictl bogus
pid run -m x.gguf --temp x
pid run --bogus
pid start --max-seqs x
pid stop --bogus
pid status --bogus
pid bogus
CMDS
echo "ok: $n commands with one bad value each print one error line and exit 2"
echo "PASS"
