#!/usr/bin/env python3
"""How long naming takes on a large binary: stoke against perf.

    python3 bench/symbolize.py [--rounds N] [--seconds S]

from the repository root (python3 standard library; needs cargo, perf).

The workload is bench/symbolize-workload, a Rust program built with full
debug info (about 30 MB of DWARF) and frame pointers, that spends its CPU in
many functions of several crates (gimli, addr2line, object, demanglers,
inferno). Each round records the same workload for S CPU seconds:

  stoke           `stoke record -o out.folded`: the summary's "symbolized in"
                  (every unique address named once, inline frames expanded,
                  then the profile built)
  stoke --lines   the same with file:line in names
  perf report     `perf record -F 999 -g`, then the wall time of
                  `perf report --stdio` (and with --no-inline) on that file
  perf script     the wall time of `perf script` on it (what a flame graph
                  made with perf needs: every sample's stack, named)

Prints the median of each over the rounds.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKLOAD_DIR = os.path.join(ROOT, "bench", "symbolize-workload")
TARGET_DIR = os.path.join(ROOT, "bench", "build", "symbolize-target")
WORKLOAD = os.path.join(TARGET_DIR, "release", "symbolize-workload")
STOKE = os.path.join(ROOT, "target", "release", "stoke")


def build():
    env = dict(os.environ, CARGO_TARGET_DIR=TARGET_DIR,
               RUSTFLAGS="-C force-frame-pointers=yes")
    subprocess.run(["cargo", "build", "--release", "--quiet"],
                   cwd=WORKLOAD_DIR, env=env, check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)


def dwarf_megabytes(binary):
    out = subprocess.run(["size", "-A", binary], capture_output=True, text=True,
                         check=True).stdout
    total = sum(int(line.split()[1]) for line in out.splitlines()
                if line.startswith(".debug_"))
    return total / 1e6


def timed(cmd, **kwargs):
    start = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, **kwargs)
    return time.monotonic() - start


def stoke_symbolize_time(folder, seconds, extra):
    out = os.path.join(folder, "out.folded")
    proc = subprocess.run([STOKE, "record", "-F", "999", "-o", out, *extra, "--",
                           WORKLOAD, str(seconds)],
                          capture_output=True, text=True, check=True)
    match = re.search(r"symbolized in ([0-9.]+) s", proc.stderr)
    if not match:
        sys.exit(f"no 'symbolized in' in stoke's summary:\n{proc.stderr}")
    samples = re.search(r"stoke: ([0-9,]+) samples", proc.stderr).group(1)
    return float(match.group(1)), samples


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    build()
    print(f"workload: {WORKLOAD} ({os.path.getsize(WORKLOAD) / 1e6:.1f} MB, "
          f"{dwarf_megabytes(WORKLOAD):.1f} MB of DWARF), {args.seconds} s of CPU, "
          f"{args.rounds} rounds")
    figures = {k: [] for k in ["stoke", "stoke --lines", "perf report",
                               "perf report --no-inline", "perf script"]}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.rounds):
            t, samples = stoke_symbolize_time(folder, args.seconds, [])
            figures["stoke"].append(t)
            t, _ = stoke_symbolize_time(folder, args.seconds, ["--lines"])
            figures["stoke --lines"].append(t)
            data = os.path.join(folder, "perf.data")
            subprocess.run(["perf", "record", "-q", "-F", "999", "-g", "-o", data, "--",
                            WORKLOAD, str(args.seconds)],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            figures["perf report"].append(
                timed(["perf", "report", "-i", data, "--stdio"]))
            figures["perf report --no-inline"].append(
                timed(["perf", "report", "-i", data, "--stdio", "--no-inline"]))
            figures["perf script"].append(timed(["perf", "script", "-i", data]))
    print(f"(stoke's last run: {samples} samples)")
    print(f"{'naming step':<26} {'median s':>9}   rounds")
    for name, values in figures.items():
        rounds = " ".join(f"{v:.2f}" for v in values)
        print(f"{name:<26} {statistics.median(values):>9.2f}   {rounds}")


if __name__ == "__main__":
    main()
