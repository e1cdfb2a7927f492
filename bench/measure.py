"""Running one command (or one pipe of commands) and measuring it.

For every process started here we record:
  - wall time: from just before the first fork to the moment wait4() returns,
    using a waiter thread per process (blocking wait4, so no polling delay);
  - CPU time: utime + stime from wait4()'s rusage. This includes the process's
    own reaped descendants (perf record reaps /usr/bin/time, which reaps the
    target), so callers subtract the target's CPU themselves;
  - peak RSS: /proc/PID/status VmHWM, polled every POLL_S seconds while the
    process lives. VmHWM of the process itself only (not its children). It
    misses growth in the last poll interval before exit.
"""

import os
import subprocess
import threading
import time

POLL_S = 0.010


def read_vmhwm_kb(pid):
    """VmHWM of a live process in kB, or None (gone, zombie, kernel thread)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


class _Waiter(threading.Thread):
    """Blocks in wait4() on one child and records when and how it ended."""

    def __init__(self, popen, done):
        super().__init__(daemon=True)
        self.popen = popen
        self.done = done
        self.end = None
        self.status = None
        self.rusage = None

    def run(self):
        _, status, rusage = os.wait4(self.popen.pid, 0)
        self.end = time.monotonic()
        self.status = os.waitstatus_to_exitcode(status)
        self.rusage = rusage
        self.popen.returncode = self.status  # so Popen never waits again
        with self.done:
            self.done.notify_all()


def run_pipe(stages, cwd, stdout=None, stderr=None, stdin=subprocess.DEVNULL, env=None):
    """Run stage[0] | stage[1] | ... and measure each process.

    stdout / stderr are file objects (or subprocess.DEVNULL); stdout is the
    last stage's output, stderr is shared by all stages.
    Returns {"wall": s, "start": monotonic, "procs": [{"argv0", "exit",
    "cpu", "peak_rss_kb", "end"}]}.
    """
    done = threading.Condition()
    start = time.monotonic()
    popens = []
    prev_out = stdin
    for i, argv in enumerate(stages):
        last = i == len(stages) - 1
        p = subprocess.Popen(argv, cwd=cwd, stdin=prev_out,
                             stdout=stdout if last else subprocess.PIPE,
                             stderr=stderr, env=env)
        if prev_out is not stdin and prev_out is not None:
            prev_out.close()  # the child holds its own copy
        prev_out = p.stdout
        popens.append(p)
    waiters = [_Waiter(p, done) for p in popens]
    for w in waiters:
        w.start()
    peaks = [0] * len(popens)
    with done:
        while True:
            live = [i for i, w in enumerate(waiters) if w.end is None]
            if not live:
                break
            for i in live:
                kb = read_vmhwm_kb(popens[i].pid)
                if kb is not None:
                    peaks[i] = max(peaks[i], kb)
            done.wait(POLL_S)
    for w in waiters:
        w.join()
    procs = []
    for argv, w, peak in zip(stages, waiters, peaks):
        ru = w.rusage
        procs.append({"argv0": os.path.basename(argv[0]), "exit": w.status,
                      "cpu": ru.ru_utime + ru.ru_stime, "peak_rss_kb": peak,
                      "end": w.end})
    return {"start": start, "wall": max(w.end for w in waiters) - start, "procs": procs}


def read_time_file(path):
    """Parse `/usr/bin/time -f '%e %U %S' -o path`: the target's own figures.

    Returns {"wall", "user", "sys", "cpu", "exit_realtime"}; exit_realtime is
    the file's mtime: /usr/bin/time writes it right after the target exits
    (resolution: the kernel's coarse clock, a few ms).
    """
    with open(path) as f:
        lines = [ln for ln in f.read().splitlines() if ln.strip()]
    # GNU time prefixes "Command exited with non-zero status N" on failure.
    wall, user, sys_ = (float(x) for x in lines[-1].split())
    return {"wall": wall, "user": user, "sys": sys_, "cpu": user + sys_,
            "exit_realtime": os.stat(path).st_mtime}


def dir_bytes(path, exclude=()):
    """Total size of the regular files under path, except the names listed."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            if name in exclude:
                continue
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _busy_seconds():
    """CPU seconds all CPUs spent busy (user+nice+system+irq+softirq)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _own_seconds():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class ForeignCpu:
    """CPU time used by anything but this script and its children, over a
    stretch of time: a noise gauge on a shared machine (tick resolution)."""

    def __enter__(self):
        self.busy0, self.own0 = _busy_seconds(), _own_seconds()
        return self

    def __exit__(self, *exc):
        self.seconds = max(0.0, (_busy_seconds() - self.busy0) - (_own_seconds() - self.own0))
