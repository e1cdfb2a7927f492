#!/usr/bin/env python3
"""Whole-machine benchmark: `stoke record -a -d 5` against
`perf record -a -g -F 999 -d 5` + `perf script | inferno-collapse-perf |
inferno-flamegraph`, in the same run, while three workloads run: a shell
loop of `xz -9` (short-lived processes), a Python loop and a four-thread C
program (bench/fixtures/count4.c).

    python3 bench/system.py [--rounds N] [--stoke PATH] [--inferno DIR] [--json OUT]

Per profiler and round (the order of profilers rotates each round):
  - each workload's throughput while recorded, as a slowdown against the
    same workload run bare in the same round;
  - stop-to-SVG: from the end of the 5 s window to the SVG written;
  - peak RSS of the profiler's processes (VmHWM, polled; the largest one);
  - samples/expected: samples of the workloads' processes against their CPU
    time in the window (from /proc, children included) at 999 Hz;
  - share of the workloads' samples whose stack reaches a root
    (`_start`, `start_thread`, `clone3`, `__libc_start_main`);
  - lost records (stoke's summary; perf's "lost N chunks" warnings).
Medians over rounds are printed; python3 standard library only.
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WINDOW = 5.0
WORK = 4.0  # workloads run this long inside the window
FREQ = 999
ROOTS = {"_start", "start_thread", "clone3", "__clone3", "clone", "__libc_start_main"}
WORKLOADS = ["xz", "python3", "count4"]

PY_LOOP = (
    "import signal,sys\n"
    "n=0\n"
    "def stop(*_):\n"
    "    print('units', n // 1000); sys.stdout.flush(); sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, stop)\n"
    "def work(k):\n"
    "    return sum(i * i for i in range(k))\n"
    "while True:\n"
    "    work(1000); n += 1000\n"
)


class Peak(threading.Thread):
    """Polls VmHWM of a set of pids until stopped; keeps the largest."""

    def __init__(self):
        super().__init__(daemon=True)
        self.pids, self.peak, self.stop = set(), 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            for pid in list(self.pids):
                try:
                    with open(f"/proc/{pid}/status") as f:
                        for line in f:
                            if line.startswith("VmHWM:"):
                                self.peak = max(self.peak, int(line.split()[1]))
                except OSError:
                    pass
            time.sleep(0.01)


def cpu_seconds(pid):
    """utime+stime+cutime+cstime of a live process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def start_workloads(build):
    # Names of their own (symlinks: the kernel names a process after the
    # file it execs), so that other programs on the machine are not counted.
    xz = subprocess.Popen(
        [f"{build}/xz_loop", "-c", 'n=0; trap \'echo units $n; exit 0\' TERM; '
         f'while :; do {build}/xz_bench -9 -c {build}/input.txt > /dev/null; '
         'n=$((n+1)); done'],
        stdout=subprocess.PIPE, text=True)
    py = subprocess.Popen([f"{build}/py_bench", "-c", PY_LOOP], stdout=subprocess.PIPE,
                          text=True)
    c4 = subprocess.Popen([f"{build}/count4"], stdout=subprocess.PIPE, text=True)
    procs = dict(zip(WORKLOADS, [xz, py, c4]))
    return procs, {k: cpu_seconds(p.pid) for k, p in procs.items()}, time.monotonic()


def stop_workloads(procs, cpu0, started):
    cpu = {k: cpu_seconds(p.pid) - cpu0[k] for k, p in procs.items()}
    wall = time.monotonic() - started
    rate = {}
    for k, p in procs.items():
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=30)
        m = re.search(r"units (\d+)", out)
        rate[k] = int(m.group(1)) / wall if m else None
    return rate, cpu


def read_folded(path):
    stacks = []
    with open(path, errors="replace") as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if stack and count.isdigit():
                stacks.append((stack.split(";"), int(count)))
    return stacks


def workload_of(root):
    return {"xz_loop": "xz", "xz_bench": "xz", "py_bench": "python3", "count4": "count4"}.get(root)


def root_share(stacks):
    """Share of the workloads' (weighted) samples reaching a root frame."""
    total = reached = 0
    for frames, count in stacks:
        if workload_of(frames[0]) is None:
            continue
        total += count
        if ROOTS.intersection(re.sub(r"_\[[kjiw]\]$", "", f) for f in frames):
            reached += count
    return reached / total if total else None


def run_bare(build, tmp):
    procs, cpu0, started = start_workloads(build)
    time.sleep(WORK)
    rate, cpu = stop_workloads(procs, cpu0, started)
    return {"rate": rate, "cpu": cpu}


def run_stoke(build, tmp, stoke, extra):
    peak = Peak()
    peak.start()
    svg, folded = os.path.join(tmp, "s.svg"), os.path.join(tmp, "s.folded")
    p = subprocess.Popen([stoke, "record", "-a", "-d", str(WINDOW), "-F", str(FREQ), *extra,
                          "-o", folded, "-o", svg], stderr=subprocess.PIPE, text=True)
    peak.pids.add(p.pid)
    err = ""
    while True:
        line = p.stderr.readline()
        err += line
        if not line or line.startswith("stoke: recording"):
            break
    ready = time.monotonic()
    procs, cpu0, started = start_workloads(build)
    time.sleep(max(0.0, ready + WORK - time.monotonic()))
    rate, cpu = stop_workloads(procs, cpu0, started)
    err += p.stderr.read()
    p.wait()
    done = time.monotonic()
    peak.stop.set()
    stacks = read_folded(folded)
    samples = {k: 0 for k in WORKLOADS}
    for frames, count in stacks:
        w = workload_of(frames[0])
        if w:
            samples[w] += count
    m = re.search(r"([\d,]+) lost", err)
    return {"rate": rate, "cpu": cpu, "stop_to_svg": done - (ready + WINDOW),
            "rss_kb": peak.peak, "samples": samples, "root_share": root_share(stacks),
            "lost": int(m.group(1).replace(",", "")) if m else None}


def run_perf(build, tmp, inferno):
    peak = Peak()
    peak.start()
    data = os.path.join(tmp, "perf.data")
    launched = time.monotonic()
    rec = subprocess.Popen(["perf", "record", "-a", "-g", "-F", str(FREQ), "-e", "cpu-clock",
                            "-o", data, "--", "sleep", str(WINDOW)],
                           stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    peak.pids.add(rec.pid)
    time.sleep(0.3)  # perf sets up in well under this
    procs, cpu0, started = start_workloads(build)
    time.sleep(max(0.0, launched + 0.3 + WORK - time.monotonic()))
    rate, cpu = stop_workloads(procs, cpu0, started)
    rec_err = rec.stderr.read()
    rec.wait()
    stop = launched + WINDOW
    folded = os.path.join(tmp, "p.folded")
    with open(folded, "w") as out, open(os.path.join(tmp, "script.err"), "w") as err:
        script = subprocess.Popen(["perf", "script", "-i", data], stdout=subprocess.PIPE,
                                  stderr=err)
        collapse = subprocess.Popen([os.path.join(inferno, "inferno-collapse-perf")],
                                    stdin=script.stdout, stdout=out)
        peak.pids.update([script.pid, collapse.pid])
        script.stdout.close()
        collapse.wait()
        script.wait()
    with open(os.path.join(tmp, "p.svg"), "w") as out:
        fg = subprocess.Popen([os.path.join(inferno, "inferno-flamegraph"), folded], stdout=out)
        peak.pids.add(fg.pid)
        fg.wait()
    done = time.monotonic()
    peak.stop.set()
    with open(os.path.join(tmp, "script.err")) as f:
        lost = sum(int(x) for x in re.findall(r"lost (\d+) chunks", f.read() + rec_err))
    comm = subprocess.run(["perf", "script", "-i", data, "-F", "comm"], capture_output=True,
                          text=True).stdout.split()
    samples = {k: 0 for k in WORKLOADS}
    for c in comm:
        w = workload_of(c)
        if w:
            samples[w] += 1
    return {"rate": rate, "cpu": cpu, "stop_to_svg": done - stop, "rss_kb": peak.peak,
            "samples": samples, "root_share": root_share(read_folded(folded)), "lost": lost}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--stoke", default=os.path.join(REPO, "target/release/stoke"))
    ap.add_argument("--inferno", default=os.path.dirname(shutil.which("inferno-flamegraph") or ""))
    ap.add_argument("--json")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/system.py: run as root (-a needs it)")
    build = os.path.join(HERE, "build", "system")
    os.makedirs(build, exist_ok=True)
    subprocess.run(["gcc", "-O2", "-g", "-fno-omit-frame-pointer", "-pthread", "-o",
                    f"{build}/count4", os.path.join(HERE, "fixtures", "count4.c")], check=True)
    links = {"xz_loop": shutil.which("sh"), "xz_bench": shutil.which("xz"),
             "py_bench": subprocess.run(["python3", "-c", "import sys; print(sys.executable)"],
                                        capture_output=True, text=True).stdout.strip()}
    for name, target in links.items():
        path = os.path.join(build, name)
        if os.path.lexists(path):
            os.remove(path)
        os.symlink(os.path.realpath(target), path)
    words = [f"w{i * 7919 % 5003}" for i in range(60000)]
    with open(f"{build}/input.txt", "w") as f:
        f.write(" ".join(words))
    profilers = {
        "bare": lambda tmp: run_bare(build, tmp),
        "perf -a -g": lambda tmp: run_perf(build, tmp, args.inferno),
        "stoke -a": lambda tmp: run_stoke(build, tmp, args.stoke, []),
        "stoke -a --unwind fp": lambda tmp: run_stoke(build, tmp, args.stoke, ["--unwind", "fp"]),
    }
    results = {name: [] for name in profilers}
    names = list(profilers)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            with tempfile.TemporaryDirectory() as tmp:
                print(f"round {r + 1}: {name}", file=sys.stderr)
                results[name].append(profilers[name](tmp))
    rows = []
    for name in names[1:]:
        row = {"profiler": name}
        for w in WORKLOADS:
            ratios = [b["rate"][w] / x["rate"][w] for b, x in zip(results["bare"], results[name])
                      if b["rate"][w] and x["rate"][w]]
            row[f"slowdown {w}"] = median(ratios)
        for key in ["stop_to_svg", "rss_kb", "root_share", "lost"]:
            row[key] = median([x[key] for x in results[name]])
        ratio = []
        for x in results[name]:
            expected = sum(x["cpu"].values()) * FREQ
            ratio.append(sum(x["samples"].values()) / expected if expected else None)
        row["samples/expected"] = median(ratio)
        rows.append(row)
    for row in rows:
        print(" | ".join(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}"
                         for k, v in row.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "raw": results}, f, indent=1)


if __name__ == "__main__":
    main()
