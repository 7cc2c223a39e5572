"""Shared helpers of the fault-injection and soak tests (imported, not a test): a pid with CPU
host workers on stories260K (the committed default model where ../shared is absent) in a private folder, and what a process holds (children, fds, RSS,
/dev/shm entries) so the tests can check nothing leaks."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

SKIP = 77


def fail(msg, log=None):
    print("FAIL: " + msg, flush=True)
    if log and os.path.exists(log):
        print("--- pid.log (end):")
        print("".join(open(log, errors="replace").readlines()[-40:]))
    sys.exit(1)


def daemon_env():
    """The environment for pid: under ASan, freed memory waits in a quarantine (256 MiB by
    default) that shows as RSS growth; without it pid's RSS is its live heap, which the tests
    check stays flat."""
    env = dict(os.environ)
    opts = env.get("ASAN_OPTIONS", "")
    env["ASAN_OPTIONS"] = (opts + ":" if opts else "") + "quarantine_size_mb=0"
    return env


class Daemon:
    def __init__(self, name, cpu_workers=2, max_seqs=4):
        shared = os.environ.get("PI_SHARED", "")
        src = os.environ.get("PI_SRC", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
        default = os.path.join(src, "models", "pi-tiny-gutenberg.gguf")
        stories = shared and os.path.isfile(os.path.join(shared, "models/stories260K.bin"))
        if not stories and not os.path.isfile(default):
            print("SKIP: neither $PI_SHARED/models/stories260K.bin nor models/pi-tiny-gutenberg.gguf is there")
            sys.exit(SKIP)
        self.bin = os.environ["PI_BIN"]
        self.dir = os.path.join(os.environ.get("PI_TMP", "/tmp"), "%s.%d" % (name, os.getpid()))
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.ep = "ipc://%s/pid.sock" % self.dir
        self.log = os.path.join(self.dir, "pid.log")
        self.cpu_workers, self.max_seqs = cpu_workers, max_seqs
        self.pid = 0
        if not stories:     # a fresh clone: the committed default model (and its sidecar)
            print("note: $PI_SHARED/models/stories260K.bin not found: the test runs on the committed default model")
            self.model = os.path.join(self.dir, "pi-tiny-gutenberg.gguf")
            shutil.copy(default, self.model)
            shutil.copy(default[:-len(".gguf")] + ".pi-sparse.gguf", self.dir)
            return
        self.model = os.path.join(self.dir, "stories260K.gguf")
        subprocess.run([self.pictl, "model", "import-llama2c", "--checkpoint",
                        os.path.join(shared, "models/stories260K.bin"), "--tokenizer",
                        os.path.join(shared, "models/tok512.bin"), "-o", self.model],
                       check=True, stdout=subprocess.DEVNULL, timeout=120)

    @property
    def pictl(self):
        return os.path.join(self.bin, "pictl")

    def start(self):
        r = subprocess.run([os.path.join(self.bin, "pid"), "start", "-m", self.model, "--cpu-workers",
                            str(self.cpu_workers), "--gpu-backend", "host", "--max-seqs", str(self.max_seqs),
                            "--listen", self.ep], capture_output=True, text=True, timeout=180,
                           env=daemon_env())
        if r.returncode != 0:
            fail("pid start: " + r.stdout + r.stderr, self.log)
        self.pid = int(open(os.path.join(self.dir, "pid.pid")).read())

    def stop(self):
        r = subprocess.run([os.path.join(self.bin, "pid"), "stop", "--listen", self.ep],
                           capture_output=True, text=True, timeout=90)
        if r.returncode != 0:
            fail("pid stop: " + r.stdout + r.stderr, self.log)

    def cleanup(self):
        for p in [self.pid] + self.children():
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        if not os.environ.get("KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def workers(self):
        """[(name, pid, state)] from pictl workers."""
        r = subprocess.run([self.pictl, "workers", "--endpoint", self.ep], capture_output=True,
                           text=True, timeout=20)
        out = []
        for line in r.stdout.splitlines()[1:]:
            f = line.split()
            if len(f) >= 3:
                out.append((f[0], int(f[1]), f[2]))
        return out

    def wait_ready(self, timeout_s=60):
        t0 = time.time()
        while time.time() - t0 < timeout_s:
            w = self.workers()
            if w and all(s == "ready" for _, _, s in w) and len(w) == self.cpu_workers + 1:
                return w
            time.sleep(0.05)
        fail("workers not ready within %d s: %s" % (timeout_s, self.workers()), self.log)

    def generate(self, prompt, n, extra=()):
        """A running pictl generate --json --temp 0 (Popen)."""
        return subprocess.Popen([self.pictl, "generate", "--endpoint", self.ep, "--temp", "0", "-n",
                                 str(n), "--json"] + list(extra) + [prompt],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def children(self):
        """Live (non-zombie) children of pid."""
        if not self.pid:
            return []
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                st = open("/proc/%s/stat" % d).read()
            except OSError:
                continue
            rest = st[st.rindex(")") + 2:].split()
            if int(rest[1]) == self.pid and rest[0] not in ("Z", "X"):
                out.append(int(d))
        return out

    def fds(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def fds_settled(self, at_most, timeout_s=10.0):
        """pid's fd count once it is at most at_most, or after timeout_s: the connections of
        clients that just finished close in ZeroMQ's I/O thread, a moment after the client."""
        t0 = time.time()
        n = self.fds()
        while n > at_most and time.time() - t0 < timeout_s:
            time.sleep(0.1)
            n = self.fds()
        return n

    def rss_kib(self):
        for line in open("/proc/%d/status" % self.pid):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def shm_entries(self):
        """/dev/shm entries named after pid or one of its workers (past or present)."""
        return sorted(e for e in os.listdir("/dev/shm") if e.startswith("pi-"))


def text_of(out):
    return json.loads(out)["text"]
