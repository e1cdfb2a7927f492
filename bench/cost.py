#!/usr/bin/env python3
"""stoke's own cost per sample and fixed cost, beside perf record's.

    python3 bench/cost.py [--stoke PATH [--stoke PATH2]] [--rounds N] [--durations 1,3,6]
                          [--target python|native]

From the repository root. A one-thread CPU spinner runs (a Python loop by
default, so Python frames are read too; `--target native` spins in C, built
with gcc); each profiler is
attached to it for recordings of several lengths (1, 3 and 6 s by default).
The profiler's own CPU time (user + system, from wait4: it is the only
process measured, the spinner is not its child) against its sample count
is fitted with a least-squares line in each round:

    per sample = the slope (CPU per extra sample)
    fixed      = the intercept (CPU of a recording with no samples)

(two lengths alone made the intercept swing by tens of ms, even below 0,
with a few ms of noise in either run)

so start-up, attaching and naming (stoke) or writing perf.data (perf) land
in the fixed cost and the steady work of each sample in the marginal one.
Medians over the rounds. Python 3 standard library only.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

FREQ = 999  # --freq


def run_measured(argv, cwd):
    """(CPU seconds of the process itself, its stderr)."""
    err = tempfile.TemporaryFile(dir=cwd)
    proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=err)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err.seek(0)
    text = err.read().decode(errors="replace")
    if proc.returncode != 0:
        sys.exit(f"cost.py: {argv[0]} failed ({proc.returncode}):\n{text}")
    return usage.ru_utime + usage.ru_stime, text


def stoke_run(stoke, pid, seconds, cwd):
    argv = [stoke, "record", "-F", str(FREQ), "-p", str(pid), "-d", str(seconds),
            "-o", os.path.join(cwd, "out.folded")]
    cpu, err = run_measured(argv, cwd)
    m = re.search(r"stoke: ([\d,]+) samples", err)
    if not m:
        sys.exit(f"cost.py: no sample count in stoke's output:\n{err}")
    return cpu, int(m.group(1).replace(",", ""))


def perf_run(pid, seconds, cwd):
    # perf's child `sleep` only sets the duration; its CPU is not perf's.
    argv = ["perf", "record", "-F", str(FREQ), "-g", "-p", str(pid),
            "-o", os.path.join(cwd, "perf.data"), "--", "sleep", str(seconds)]
    cpu, err = run_measured(argv, cwd)
    m = re.search(r"\((\d+) samples\)", err)
    if not m:
        sys.exit(f"cost.py: no sample count in perf's output:\n{err}")
    return cpu, int(m.group(1))


def fit(points):
    """Least-squares line through (samples, CPU seconds): (slope, intercept)."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return slope, my - slope * mx


def costs(runs, rounds, durations):
    """Per profiler, (per sample, fixed, rounds used): every profiler is run
    in each round, in turn, so that a change in the machine's load falls on
    all of them alike; each round fits a line through its recordings of
    every duration (CPU against samples): the slope is the cost per sample,
    the intercept the fixed cost."""
    per = {name: [] for name, _ in runs}
    fixed = {name: [] for name, _ in runs}
    for _ in range(rounds):
        for name, run in runs:
            points = [(n, c) for c, n in (run(d) for d in durations)]
            line = fit(points)
            if line is None or line[0] <= 0:
                continue
            per[name].append(line[0])
            fixed[name].append(line[1])
    return [(name, (statistics.median(per[name]), statistics.median(fixed[name]),
                    len(per[name])) if per[name] else None) for name, _ in runs]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stoke", action="append",
                    help="a stoke binary (default target/release/stoke); give it "
                         "more than once to compare builds in the same rounds")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--durations", default="1,3,6",
                    help="recording lengths in seconds, comma-separated (at least two)")
    ap.add_argument("--freq", type=int, default=FREQ)
    ap.add_argument("--target", choices=["python", "native"], default="python")
    args = ap.parse_args()
    durations = [float(d) for d in args.durations.split(",") if d]
    if len(set(durations)) < 2:
        sys.exit("cost.py: --durations needs at least two different lengths")
    globals()["FREQ"] = args.freq
    stokes = [os.path.abspath(p) for p in (args.stoke or ["target/release/stoke"])]
    build = tempfile.TemporaryDirectory(prefix="stoke-cost-spin-")
    if args.target == "native":
        spin = os.path.join(build.name, "spin")
        subprocess.run(["gcc", "-O2", "-x", "c", "-o", spin, "-"], check=True,
                       input=b"int main(void) { volatile unsigned long n = 0; for (;;) n++; }\n")
        spinner = subprocess.Popen([spin])
    else:
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        with tempfile.TemporaryDirectory(prefix="stoke-cost-") as cwd:
            runs = []
            for i, stoke in enumerate(stokes):
                name = "stoke" if len(stokes) == 1 else f"stoke #{i + 1}"
                runs.append((name, lambda s, stoke=stoke: stoke_run(stoke, spinner.pid, s, cwd)))
            if subprocess.run(["perf", "--version"], capture_output=True).returncode == 0:
                runs.append(("perf record -g", lambda s: perf_run(spinner.pid, s, cwd)))
            else:
                print("cost.py: perf not found; stoke only", file=sys.stderr)
            rows = costs(runs, args.rounds, durations)
    finally:
        spinner.kill()
        spinner.wait()
        build.cleanup()
    load = open("/proc/loadavg").read().split()[0]
    print(f"{FREQ} Hz, one spinning {args.target} thread, recordings of "
          f"{', '.join(f'{d:g}' for d in durations)} s fitted per round, "
          f"median of {args.rounds} rounds; load {load} at the end")
    if len(stokes) > 1:
        for i, stoke in enumerate(stokes):
            print(f"stoke #{i + 1}: {stoke}")
    print(f"{'profiler':<16} {'per sample':>12} {'fixed':>10}")
    for name, c in rows:
        if c is None:
            print(f"{name:<16} {'(no extra samples)':>23}")
            continue
        per, fixed, _ = c
        print(f"{name:<16} {per * 1e6:>9.1f} µs {fixed * 1e3:>7.1f} ms")


if __name__ == "__main__":
    main()
