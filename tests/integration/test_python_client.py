#!/usr/bin/python3
"""Proves that a client written only from proto/pi.proto (protoc's Python code + pyzmq) can drive pid:
greedy Generate reproduces llama2.c's stories260K output, Tokenize/Detokenize and Status answer (3 workers,
distinct pids), a wrong protocol header gets Error VERSION, and Shutdown stops the daemon."""
import os
import shutil
import subprocess
import sys
import tempfile
import time


def skip(msg):
    print("SKIP: " + msg)
    sys.exit(77)


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


try:
    import zmq
    import google.protobuf  # noqa: F401
except ImportError as e:
    skip("python3-zmq and python3-protobuf are needed (scripts/setup.sh installs them): %s" % e)

PI_BIN = os.environ.get("PI_BIN", "build/bin")
PI_SRC = os.environ.get("PI_SRC", ".")
PI_TMP = os.environ.get("PI_TMP", "/tmp")
PI_SHARED = os.environ.get("PI_SHARED", "../shared")
MODELS = os.path.join(PI_SHARED, "models")
for f in ("stories260K.bin", "tok512.bin", "stories260K.expected.txt"):
    if not os.path.exists(os.path.join(MODELS, f)):
        skip("%s not found (the shared test data is absent)" % os.path.join(MODELS, f))
if not shutil.which("protoc"):
    skip("protoc not found (package protobuf-compiler; scripts/setup.sh installs it)")

HEADER = b"PIRPC01"
os.makedirs(PI_TMP, exist_ok=True)
work = tempfile.mkdtemp(prefix="pyclient-", dir=PI_TMP)
subprocess.run(["protoc", "--python_out=" + work, "-I", os.path.join(PI_SRC, "proto"), "pi.proto"],
               check=True)
sys.path.insert(0, work)
import pi_pb2 as pb  # noqa: E402

model = os.path.join(PI_TMP, "py-stories.gguf")
subprocess.run([os.path.join(PI_BIN, "pictl"), "model", "import-llama2c",
                "--checkpoint", os.path.join(MODELS, "stories260K.bin"),
                "--tokenizer", os.path.join(MODELS, "tok512.bin"), "-o", model], check=True)

sock_path = os.path.join(PI_TMP, "pyclient.sock")
endpoint = "ipc://" + sock_path
log_path = os.path.join(work, "pid.log")
log = open(log_path, "wb")
proc = subprocess.Popen([os.path.join(PI_BIN, "pid"), "start", "--foreground", "-m", model,
                         "--cpu-workers", "2", "--gpu-backend", "host", "--listen", endpoint],
                        stdout=log, stderr=subprocess.STDOUT)


def pid_log():
    log.flush()
    with open(log_path, "rb") as f:
        return f.read().decode("utf-8", "replace")[-4000:]


def die(msg):
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    print("--- pid output ---\n" + pid_log())
    fail(msg)


ctx = zmq.Context()
sock = ctx.socket(zmq.DEALER)
sock.setsockopt(zmq.LINGER, 0)
sock.connect(endpoint)
next_id = [0]


def send(req, header=HEADER):
    next_id[0] += 1
    req.id = next_id[0]
    sock.send_multipart([header, req.SerializeToString()])
    return req.id


def recv(rid, timeout_s):
    """The next Response for request rid (others are skipped)."""
    deadline = time.time() + timeout_s
    while True:
        left = deadline - time.time()
        if left <= 0 or not sock.poll(int(left * 1000)):
            die("no answer to request %d within %.0f s" % (rid, timeout_s))
        frames = sock.recv_multipart()
        if len(frames) != 2 or frames[0] != HEADER:
            die("bad frames from pid: %r" % [f[:16] for f in frames])
        resp = pb.Response()
        resp.ParseFromString(frames[1])
        if resp.id == rid or (resp.id == 0 and resp.WhichOneof("kind") == "error"):
            return resp


def call(req, timeout_s=30):
    resp = recv(send(req), timeout_s)
    if resp.WhichOneof("kind") == "error":
        die("pid answered %s with Error %s: %s" % (req.WhichOneof("kind"),
            pb.Error.Code.Name(resp.error.code), resp.error.message))
    return resp


def status_req():
    r = pb.Request()
    r.status.SetInParent()
    return r


try:
    # Wait until pid answers Status and its 3 workers are ready.
    deadline = time.time() + 30
    st = None
    while time.time() < deadline:
        if proc.poll() is not None:
            die("pid exited with %d before answering" % proc.returncode)
        if not os.path.exists(sock_path):
            time.sleep(0.2)
            continue
        rid = send(status_req())
        if sock.poll(1000):
            resp = recv(rid, 1)
            if resp.WhichOneof("kind") == "status":
                st = resp.status
                if len(st.workers) == 3 and all(w.state == "ready" for w in st.workers):
                    break
        time.sleep(0.2)
    else:
        die("pid did not become ready within 30 s; last status: %s" % st)

    names = sorted(w.name for w in st.workers)
    pids = {w.pid for w in st.workers}
    if names != ["cpu:0", "cpu:1", "gpu"] or len(pids) != 3 or 0 in pids or proc.pid in pids:
        die("expected workers gpu, cpu:0, cpu:1 with distinct pids: %s" % st)
    print("status: pid %d, workers %s" % (st.pid, [(w.name, w.pid, w.state) for w in st.workers]))

    # Greedy generation from BOS reproduces the reference text.
    req = pb.Request()
    req.generate.prompt = ""
    req.generate.max_tokens = 200
    req.generate.sampling.temperature = 0.0
    req.generate.sampling.top_p = 1.0
    req.generate.sampling.repeat_penalty = 1.0
    rid = send(req)
    text, tokens, done = b"", [], None
    while done is None:
        resp = recv(rid, 120)
        kind = resp.WhichOneof("kind")
        if kind == "chunk":
            text += resp.chunk.text
            tokens += list(resp.chunk.tokens)
        elif kind == "done":
            done = resp.done
        else:
            die("generate: unexpected %s: %s" % (kind, resp))
    with open(os.path.join(MODELS, "stories260K.expected.txt"), "rb") as f:
        expected = f.read()
    strip1 = lambda b: b[:-1] if b.endswith(b"\n") else b  # noqa: E731
    if strip1(text) != strip1(expected):
        die("generated text differs from stories260K.expected.txt\n--- got ---\n%r\n--- want ---\n%r"
            % (text, expected))
    if done.generated_tokens != len(tokens) or len(tokens) == 0 or len(tokens) > 200:
        die("done says %d tokens, chunks carried %d" % (done.generated_tokens, len(tokens)))
    print("generate: %d tokens, %.1f tok/s, first token %.1f ms, stop %s" % (
        done.generated_tokens, done.tokens_per_second, done.time_to_first_token_ms, done.stop_reason))

    # Tokenize (with and without BOS) and Detokenize back.
    req = pb.Request()
    req.tokenize.text = "Once upon a time"
    with_bos = list(call(req).tokenize.tokens)
    req.tokenize.no_bos = True
    no_bos = list(call(req).tokenize.tokens)
    if not no_bos or with_bos[1:] != no_bos or with_bos[0] != 1:
        die("tokenize: with BOS %s, without %s" % (with_bos, no_bos))
    req = pb.Request()
    req.detokenize.tokens.extend(no_bos)
    back = call(req).detokenize.text
    if back.strip() != b"Once upon a time":
        die("detokenize(%s) = %r" % (no_bos, back))
    print("tokenize: %s -> %r" % (no_bos, back))

    # A header from another protocol version: Error VERSION, answered in ours.
    rid = send(status_req(), header=b"PIRPC99")
    resp = recv(rid, 10)
    if resp.WhichOneof("kind") != "error" or resp.error.code != pb.Error.VERSION:
        die("wrong header: expected Error VERSION, got %s" % resp)
    print("wrong header: %s: %s" % (pb.Error.Code.Name(resp.error.code), resp.error.message))

    # Still serving after the bad message.
    if len(call(status_req()).status.workers) != 3:
        die("status after the bad header")

    req = pb.Request()
    req.shutdown.SetInParent()
    if call(req).WhichOneof("kind") != "shutdown":
        die("shutdown: no ShutdownReply")
    try:
        rc = proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        die("pid still running 20 s after Shutdown")
    if rc != 0:
        die("pid exited with %d after Shutdown" % rc)
    def alive(p):
        try:
            os.kill(p, 0)
            return True
        except ProcessLookupError:
            return False
    gone_by = time.time() + 5
    while any(alive(w.pid) for w in st.workers) and time.time() < gone_by:
        time.sleep(0.1)
    left = [w.name for w in st.workers if alive(w.pid)]
    if left:
        die("workers %s outlived pid" % left)
    print("shutdown: pid exited 0")
finally:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    sock.close()
    ctx.term()
    log.close()

shutil.rmtree(work, ignore_errors=True)
print("test_python_client: ok")
