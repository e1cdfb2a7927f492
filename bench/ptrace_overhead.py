#!/usr/bin/env python3
"""Target slowdown under stoke's ptrace backend against its perf backend.

    python3 bench/ptrace_overhead.py [--rounds N] [--json out.json]

from the repository root (python3 standard library only; needs gcc and a
built `target/release/stoke`, which it builds if missing). A benchmark, not
a test: it prints a table and asserts nothing.

Workload: `fixtures/spin_work.c`, fixed work on 1 thread and on 16 threads,
which times itself (first thread start to last join), so the figure is the
target's own slowdown, without stoke's start-up or symbolization. Each round
runs, interleaved: the bare program, then `stoke record --backend perf` and
`--backend ptrace` at 99 Hz and 999 Hz. Reported: the median elapsed time,
the slowdown against the bare median, and the samples each recording kept.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STOKE = os.path.join(ROOT, "target", "release", "stoke")
# (label, threads, mega-iterations per thread): about 2 s of CPU each.
WORKLOADS = [("1 thread", 1, 800), ("16 threads", 16, 50)]
VARIANTS = [
    ("bare", None),
    ("perf 99 Hz", ["--backend", "perf", "-F", "99"]),
    ("ptrace 99 Hz", ["--backend", "ptrace", "-F", "99"]),
    ("perf 999 Hz", ["--backend", "perf", "-F", "999"]),
    ("ptrace 999 Hz", ["--backend", "ptrace", "-F", "999"]),
]


def build(tmp):
    if not os.path.exists(STOKE):
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    out = os.path.join(tmp, "spin_work")
    subprocess.run(["gcc", "-O2", "-g", "-fno-omit-frame-pointer", "-pthread",
                    "-I", os.path.join(ROOT, "fixtures"), "-o", out,
                    os.path.join(ROOT, "fixtures", "spin_work.c")], check=True)
    return out


def run_once(binary, threads, mega, flags, tmp):
    """Returns (elapsed seconds inside the target, samples or None)."""
    target = [binary, str(threads), str(mega)]
    if flags is None:
        out = subprocess.run(target, capture_output=True, text=True, check=True).stdout
        samples = None
    else:
        folded = os.path.join(tmp, "out.folded")
        proc = subprocess.run([STOKE, "record", *flags, "-o", folded, "--", *target],
                              capture_output=True, text=True, check=True)
        out = proc.stdout
        with open(folded) as f:
            samples = sum(int(line.rsplit(" ", 1)[1]) for line in f if line.strip())
    match = re.search(r"elapsed ([0-9.]+)", out)
    if not match:
        sys.exit(f"no elapsed line from {target}: {out!r}")
    return float(match.group(1)), samples


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        binary = build(tmp)
        results = {}
        for _ in range(args.rounds):
            for label, threads, mega in WORKLOADS:
                for name, flags in VARIANTS:
                    elapsed, samples = run_once(binary, threads, mega, flags, tmp)
                    cell = results.setdefault((label, name), {"elapsed": [], "samples": []})
                    cell["elapsed"].append(elapsed)
                    if samples is not None:
                        cell["samples"].append(samples)
    load = open("/proc/loadavg").read().split()[0]
    print(f"spin_work, {args.rounds} rounds, median; {os.cpu_count()} CPUs, load {load}")
    print(f"{'workload':<12} {'profiler':<14} {'elapsed s':>10} {'slowdown':>9} {'samples':>8}")
    table = []
    for label, _, _ in WORKLOADS:
        bare = statistics.median(results[(label, "bare")]["elapsed"])
        for name, _ in VARIANTS:
            cell = results[(label, name)]
            median = statistics.median(cell["elapsed"])
            slowdown = median / bare - 1
            samples = int(statistics.median(cell["samples"])) if cell["samples"] else None
            print(f"{label:<12} {name:<14} {median:>10.3f} {slowdown * 100:>8.1f}% "
                  f"{samples if samples is not None else '-':>8}")
            table.append({"workload": label, "profiler": name, "elapsed": median,
                          "slowdown": slowdown, "samples": samples})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(table, f, indent=1)


if __name__ == "__main__":
    main()
