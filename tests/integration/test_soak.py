#!/usr/bin/python3
"""Soak: random concurrent requests (greedy and sampled generations of random lengths, some cancelled, tokenize and status) against pid on loopback tcp with a token, for PI_SOAK_SECONDS (CI default 60; 600 for the 10-minute run): no request lost (each ends with its tokens, its cancel, or a clear error), greedy texts equal the undisturbed ones, and pid's RSS and fds are flat."""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fault_lib import Daemon, daemon_env, fail  # noqa: E402

SECONDS = float(os.environ.get("PI_SOAK_SECONDS", "60"))
SEED = int(os.environ.get("PI_SOAK_SEED", str(int(time.time()))))
CLIENTS = 5
PROMPTS = ["", "Once upon a time", "The little dog", "Lily and Ben went to the park", "One day"]
FULL = 200
RSS_SLACK_KIB = 6 * 1024
TOKEN = "soak-token-%d-0123456789" % os.getpid()
ADMIN = "soak-admin-%d-0123456789" % os.getpid()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def main():
    print("soak: %.0f s (PI_SOAK_SECONDS), seed %d (PI_SOAK_SEED), %d concurrent clients" %
          (SECONDS, SEED, CLIENTS), flush=True)
    d = Daemon("soak", cpu_workers=2, max_seqs=4)
    d.ep = "tcp://127.0.0.1:%d" % free_port()
    os.environ["PI_TOKEN"] = TOKEN
    conf = os.path.join(d.dir, "pid.conf")
    with open(conf, "w") as f:
        f.write("token = %s\nadmin_token = %s\npid_file = %s/pid.pid\nlog_file = %s\n" %
                (TOKEN, ADMIN, d.dir, d.log))
    try:
        r = subprocess.run([os.path.join(d.bin, "pid"), "start", "--config", conf, "-m", d.model,
                            "--cpu-workers", "2", "--gpu-backend", "host", "--max-seqs", "4",
                            "--listen", d.ep], capture_output=True, text=True, timeout=180,
                           env=daemon_env())
        if r.returncode != 0:
            fail("pid start: " + r.stdout + r.stderr, d.log)
        d.pid = int(open(os.path.join(d.dir, "pid.pid")).read())
        d.wait_ready()
        want = {}
        for p in PROMPTS:
            g = d.generate(p, FULL)
            out, err = g.communicate(timeout=120)
            if g.returncode != 0:
                fail("undisturbed generate %r: %s" % (p, err), d.log)
            want[p] = json.loads(out)["text"]

        lock = threading.Lock()
        counts = {"greedy": 0, "sampled": 0, "cancelled": 0, "tokenize": 0, "status": 0, "tokens": 0}
        errors = []
        stop_at = time.time() + SECONDS
        rss = []

        def one(rnd):
            kind = rnd.choices(["greedy", "sampled", "cancel", "tokenize", "status"], [5, 3, 1, 1, 1])[0]
            p = rnd.choice(PROMPTS)
            if kind in ("tokenize", "status"):
                args = [d.pictl, kind, "--endpoint", d.ep] + ([p or "x"] if kind == "tokenize" else [])
                r = subprocess.run(args, capture_output=True, text=True, timeout=120)
                if r.returncode != 0:
                    return "%s: exit %d: %s" % (kind, r.returncode, r.stderr.strip())
                with lock:
                    counts[kind] += 1
                return None
            n = rnd.randint(1, FULL)
            extra = [] if kind == "greedy" else ["--temp", "0.9", "--seed", str(rnd.randint(1, 1 << 30))]
            if kind == "cancel":
                extra = []
                n = FULL
            # A cancelled one streams, so its Ctrl-C comes after its first output: by then pictl
            # reads SIGINT through its signalfd (before that, SIGINT would simply kill it).
            fmt = [] if kind == "cancel" else ["--json"]
            g = subprocess.Popen([d.pictl, "generate", "--endpoint", d.ep, "-n", str(n)] + fmt +
                                 (["--temp", "0"] if kind != "sampled" else []) + extra + [p],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if kind == "cancel":
                g.stdout.read(1)
                time.sleep(rnd.uniform(0.0, 0.2))
                g.send_signal(signal.SIGINT)
            out, err = g.communicate(timeout=300)
            if kind == "cancel":
                if g.returncode == 0:
                    with lock:
                        counts["cancelled"] += 1  # it finished before the Ctrl-C
                    return None
                elif g.returncode != 130:
                    return "cancelled generate: exit %d: %s" % (g.returncode, err.strip())
                else:
                    with lock:
                        counts["cancelled"] += 1
                    return None
            if g.returncode != 0:
                return "%s generate %r -n %d: exit %d: %s" % (kind, p, n, g.returncode, err.strip())
            j = json.loads(out)
            if j["stop_reason"] not in ("length", "eos"):
                return "generate: stop_reason %r" % j["stop_reason"]
            if j["stop_reason"] == "length" and j["generated_tokens"] != n:
                return "generate -n %d gave %d tokens" % (n, j["generated_tokens"])
            if kind == "greedy" and not want[p].startswith(j["text"]):
                return "greedy %r -n %d: %r is not a prefix of the undisturbed text" % (p, n, j["text"])
            with lock:
                counts[kind] += 1
                counts["tokens"] += j["generated_tokens"]
            return None

        def client(i):
            rnd = random.Random(SEED * 100 + i)
            while time.time() < stop_at:
                e = one(rnd)
                if e:
                    with lock:
                        errors.append(e)
                    return

        ths = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        t0 = time.time()
        for t in ths:
            t.start()
        time.sleep(min(10.0, SECONDS / 4))
        rss_warm, fds_warm = d.rss_kib(), d.fds()
        while any(t.is_alive() for t in ths):
            rss.append(d.rss_kib())
            time.sleep(1.0)
        for t in ths:
            t.join()
        elapsed = time.time() - t0
        if errors:
            fail("lost or wrong request: %s" % errors[0], d.log)
        time.sleep(0.5)
        rss_end, fds_end = d.rss_kib(), d.fds()
        total = sum(counts[k] for k in ("greedy", "sampled", "cancelled", "tokenize", "status"))
        print("%d requests in %.0f s: %s; no request lost" % (total, elapsed, counts), flush=True)
        print("pid RSS: %d KiB after warm-up, max %d, end %d; fds %d after warm-up, %d at the end" %
              (rss_warm, max(rss) if rss else rss_end, rss_end, fds_warm, fds_end), flush=True)
        if rss_end > rss_warm + RSS_SLACK_KIB:
            fail("pid's RSS grew from %d KiB to %d KiB" % (rss_warm, rss_end), d.log)
        if fds_end > fds_warm:
            fail("pid holds %d fds at the end, %d after warm-up" % (fds_end, fds_warm), d.log)
        if counts["greedy"] == 0 or counts["sampled"] == 0:
            fail("the soak ran too few requests: %s" % counts, d.log)
        r = subprocess.run([os.path.join(d.bin, "pid"), "stop", "--config", conf, "--listen", d.ep],
                           capture_output=True, text=True, timeout=90)
        if r.returncode != 0:
            fail("pid stop: " + r.stdout + r.stderr, d.log)
        log = open(d.log).read()
        if "ERROR: LeakSanitizer" in log or "runtime error" in log:
            fail("sanitizer report in pid.log", d.log)
        print("PASS")
    finally:
        d.cleanup()


main()
