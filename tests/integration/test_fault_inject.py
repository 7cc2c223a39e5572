#!/usr/bin/python3
"""Fault injection: N trials of kill -9 or SIGSTOP/SIGCONT of a random worker at a random moment during concurrent greedy generation; every request ends with the undisturbed text or a clear error within 5 s of the fault; afterwards pid has no more fds or children than before, its RSS is flat, and after pid stop nothing is left in /dev/shm or the process table."""
import os
import random
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fault_lib import Daemon, fail, text_of  # noqa: E402

# The whole ASan suite took 19.4 min of tests on a shared 2-core machine (2026-12-02), leaving
# little of CI's 25 min for the build and the fuzzers; a trial takes 3-3.6 s, so the 100
# (362 s measured) do not fit, and 20 (~85 s with the set-up) still hit every worker with both
# faults. PI_FAULT_TRIALS=100 runs the full count.
TRIALS = int(os.environ.get("PI_FAULT_TRIALS", "20"))
SEED = int(os.environ.get("PI_FAULT_SEED", str(int(time.time()))))
CLIENTS = 3
N_TOKENS = 150
PROMPTS = ["", "Once upon a time", "The little dog", "Lily and Ben went to the park", "One day"]
FAIL_WITHIN_S = 5.0
RSS_SLACK_KIB = 6 * 1024


def main():
    rnd = random.Random(SEED)
    print("fault injection: %d trials (PI_FAULT_TRIALS; CI runs 20: a trial takes 3-3.6 s under ASan "
          "on 2 shared cores and the whole suite already takes ~19 of CI's 25 min, so the issue's 100 "
          "(362 s measured) do not fit; 20 still hit every worker with both faults), seed %d "
          "(PI_FAULT_SEED), %d clients x %d tokens" % (TRIALS, SEED, CLIENTS, N_TOKENS), flush=True)
    d = Daemon("fault_inject", cpu_workers=2, max_seqs=4)
    shm_before = set(d.shm_entries())
    try:
        d.start()
        d.wait_ready()
        # The undisturbed texts, and a warm-up so RSS and fds have settled before the baseline.
        want = {}
        for p in PROMPTS:
            g = d.generate(p, N_TOKENS)
            out, err = g.communicate(timeout=120)
            if g.returncode != 0:
                fail("undisturbed generate %r: %s" % (p, err), d.log)
            want[p] = text_of(out)
        t_gen = time.time()
        gs = [d.generate(PROMPTS[i % len(PROMPTS)], N_TOKENS) for i in range(CLIENTS)]
        for g in gs:
            g.communicate(timeout=120)
        t_gen = time.time() - t_gen
        fds0, kids0, rss0 = d.fds(), sorted(d.children()), d.rss_kib()
        print("undisturbed: %d concurrent requests take %.2f s; pid holds %d fds, %d children, "
              "RSS %d KiB" % (CLIENTS, t_gen, fds0, len(kids0), rss0), flush=True)

        stats = {"ok": 0, "failed": 0, "during": 0, "kill": 0, "stop": 0}
        by_worker = {}
        t_all = time.time()
        rss_mid = None
        ready = d.wait_ready()
        back_to_back = 0
        for trial in range(TRIALS):
            # The target is chosen before the clients start, so the fault's moment is only the
            # random delay, spread over the undisturbed run's length.
            name, wpid, _ = rnd.choice(ready)
            prompts = [rnd.choice(PROMPTS) for _ in range(CLIENTS)]
            gs = [d.generate(p, N_TOKENS) for p in prompts]
            time.sleep(rnd.uniform(0.0, max(0.05, t_gen * 0.9)))
            fault = rnd.choice(["kill", "stop"])
            during = any(g.poll() is None for g in gs)
            stats["during"] += during
            t_fault = time.time()
            try:
                os.kill(wpid, signal.SIGKILL if fault == "kill" else signal.SIGSTOP)
            except ProcessLookupError:
                pass  # back to back: pid replaced it meanwhile
            if fault == "kill":
                desc = "kill -9"
            else:
                held = rnd.uniform(0.05, 2.5)
                time.sleep(held)
                try:
                    os.kill(wpid, signal.SIGCONT)
                except ProcessLookupError:
                    pass  # pid already killed it as stopped
                desc = "SIGSTOP %.2f s, SIGCONT" % held
            stats[fault] += 1
            by_worker[name] = by_worker.get(name, 0) + 1
            results = []
            for p, g in zip(prompts, gs):
                try:
                    out, err = g.communicate(timeout=120)
                except Exception:
                    g.kill()
                    fail("trial %d (%s of %s): a request did not end within 120 s" % (trial, desc, name), d.log)
                t_end = time.time() - t_fault
                if g.returncode == 0:
                    if text_of(out) != want[p]:
                        fail("trial %d (%s of %s): prompt %r: text differs from the undisturbed run:\n%r\nwant\n%r"
                             % (trial, desc, name, p, text_of(out), want[p]), d.log)
                    stats["ok"] += 1
                    results.append("ok")
                else:
                    msg = err.strip().splitlines()[-1] if err.strip() else ""
                    if not msg.startswith("pictl generate: pid: "):
                        fail("trial %d (%s of %s): request failed without a clear error: %r"
                             % (trial, desc, name, err), d.log)
                    if t_end > FAIL_WITHIN_S + (held if fault == "stop" else 0):
                        fail("trial %d (%s of %s): the request failed %.1f s after the fault (> %.0f s): %s"
                             % (trial, desc, name, t_end, FAIL_WITHIN_S, msg), d.log)
                    stats["failed"] += 1
                    results.append("error after %.1f s: %s" % (t_end, msg))
            print("trial %3d: %-28s of %-5s %s -> %s" % (trial, desc, name,
                  "mid-generation" if during else "after the requests", "; ".join(results)), flush=True)
            # One trial in four hits the next one before the workers are all back: a worker
            # may then be starting (loading) or already dead when the fault comes.
            if rnd.random() < 0.25 and trial + 1 < TRIALS:
                ready = [w for w in d.workers() if w[1] > 0] or d.wait_ready()
                back_to_back += 1
            else:
                ready = d.wait_ready()
            if trial == TRIALS // 2:
                rss_mid = d.rss_kib()

        elapsed = time.time() - t_all
        # Quiet pid: its sockets to finished clients close, its children are the workers.
        time.sleep(0.5)
        fds1, kids1, rss1 = d.fds_settled(fds0), sorted(d.children()), d.rss_kib()
        print("%d trials in %.0f s (%.1f s each): %d kill -9, %d SIGSTOP/SIGCONT, %d hit a running "
              "generation, %d came before the workers were all back; workers hit %s; requests: %d identical to the undisturbed text, %d failed "
              "with a clear error" % (TRIALS, elapsed, elapsed / max(1, TRIALS), stats["kill"], stats["stop"],
                                      stats["during"], back_to_back, by_worker, stats["ok"], stats["failed"]), flush=True)
        print("pid after: %d fds (before %d), %d children (before %d), RSS %d KiB (before %d, "
              "half-way %s)" % (fds1, fds0, len(kids1), len(kids0), rss1, rss0, rss_mid), flush=True)
        if fds1 > fds0:
            fail("pid holds %d fds after the trials, %d before" % (fds1, fds0), d.log)
        if len(kids1) != len(kids0):
            fail("pid has %d children after the trials, %d before" % (len(kids1), len(kids0)), d.log)
        base = rss_mid if rss_mid else rss0
        if rss1 > base + RSS_SLACK_KIB:
            fail("pid's RSS grew from %d KiB (half-way) to %d KiB" % (base, rss1), d.log)
        if stats["ok"] == 0:
            fail("no request survived a fault", d.log)
        kids = d.children()
        d.stop()
        time.sleep(0.2)
        left = [k for k in kids if os.path.exists("/proc/%d" % k) and
                open("/proc/%d/stat" % k).read().split(")")[-1].split()[0] not in ("Z", "X")]
        if left:
            fail("workers still running after pid stop: %s" % left)
        new_shm = [e for e in set(d.shm_entries()) - shm_before
                   if e.endswith("-%d" % d.pid) or any(e.endswith("-%d" % k) for k in kids0 + kids1)]
        if new_shm:
            fail("left in /dev/shm after pid stop: %s" % new_shm)
        if "ERROR: LeakSanitizer" in open(d.log).read() or "runtime error" in open(d.log).read():
            fail("sanitizer report in pid.log", d.log)
        print("ok: after pid stop no worker, /dev/shm entry or socket is left")
        print("PASS")
    finally:
        d.cleanup()


main()
