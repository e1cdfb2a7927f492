#!/usr/bin/env python3
"""Target slowdown under wall-clock profiling: stoke on perf events, stoke
on ptrace, and perf's own off-CPU recipe.

    python3 bench/offcpu_overhead.py [--rounds N] [--json out.json] [--decompose] [--floor]
                                     [--pin CPU]

from the repository root (python3 standard library only; needs gcc, a
built `target/release/stoke` (built if missing) and, for the perf row,
`perf`). A benchmark, not a test: it prints a table and asserts nothing.

Workloads (`bench/fixtures/switches.c`, which times itself):
- ping-pong: two threads bounce a byte over two pipes 200,000 times
  (about 400,000 context switches);
- server: a thread blocks on a pipe for 1,500 requests a client sends
  every millisecond and works ~20 µs on each (mostly blocked).
Each round runs, interleaved: the bare program, `stoke record --mode wall`
with `--backend perf` and `--backend ptrace`, and
`perf record -e sched:sched_switch -g`. Reported: the median elapsed time,
the slowdown against the bare median, and what each recording kept.

`--decompose` adds, on the ping-pong only, stoke variants that take parts
of wall mode away, to find where its cost goes: `--mode cpu` (the clock
event alone), `--mode off-cpu` (the context-switch event and its switch
records alone), wall mode with `--unwind fp` (no user stack copies) and
with `-F 99` (a tenth of the switch-out samples).

`--floor` adds, on the ping-pong only, what the kernel's mechanisms cost
without stoke: perf counting context switches (`perf stat`), and perf
recording switch records (`--switch-events`) beside a clock event or a
context-switch sampling event, per task and for every CPU (`-a`), with
`stoke record -a --mode wall` beside them: timing every switch costs this
much whoever reads the records.

`--pin CPU` runs every workload under `taskset -c CPU` (the profilers stay
free to run elsewhere): both ping-pong threads then share one CPU, and its
time no longer depends on where the scheduler puts them or how deep the
other CPU sleeps, which otherwise makes the bare ping-pong anywhere from
0.45 s to 4 s on a 2-CPU machine.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STOKE = os.path.join(ROOT, "target", "release", "stoke")
WORKLOADS = [("ping-pong", ["pingpong", "200000"]), ("server", ["server", "1500"])]
VARIANTS = ["bare", "stoke wall perf", "stoke wall ptrace", "perf sched_switch -g"]
# --decompose: label -> stoke arguments (perf backend), ping-pong only.
PARTS = {
    "stoke cpu perf": ["--mode", "cpu"],
    "stoke off-cpu perf": ["--mode", "off-cpu"],
    "stoke wall perf fp": ["--mode", "wall", "--unwind", "fp"],
    "stoke wall perf F99": ["--mode", "wall", "-F", "99"],
}

# --floor: label -> perf command before `-- TARGET` (ping-pong only); the
# last one is stoke's, for every CPU, beside perf's per-CPU rows.
FLOOR = {
    "perf stat cs": ["perf", "stat", "-e", "context-switches", "-x,", "-o", "/dev/null"],
    "perf clock+switch": ["perf", "record", "-q", "-e", "cpu-clock", "-F", "999",
                          "--switch-events"],
    "perf cs+switch": ["perf", "record", "-q", "-e", "context-switches", "-F", "999",
                       "--switch-events"],
    "perf -a clock+switch": ["perf", "record", "-q", "-a", "-e", "cpu-clock", "-F", "999",
                             "--switch-events"],
    "perf -a cs+switch": ["perf", "record", "-q", "-a", "-e", "context-switches", "-F",
                          "999", "--switch-events"],
    "stoke -a wall": ["STOKE", "record", "-a", "--mode", "wall"],
}


def build(tmp):
    if not os.path.exists(STOKE):
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    out = os.path.join(tmp, "switches")
    subprocess.run(["gcc", "-O2", "-g", "-fno-omit-frame-pointer", "-pthread", "-o", out,
                    os.path.join(ROOT, "bench", "fixtures", "switches.c")], check=True)
    return out


def run_once(variant, target, tmp):
    """Returns (elapsed seconds inside the target, what was kept, or None)."""
    kept = None
    if variant == "bare":
        out = subprocess.run(target, capture_output=True, text=True, check=True).stdout
    elif variant in FLOOR:
        argv = [STOKE if a == "STOKE" else a for a in FLOOR[variant]]
        if argv[1] == "record":
            argv += ["-o", os.path.join(tmp, "floor.data" if argv[0] == "perf" else "x.folded")]
        out = subprocess.run([*argv, "--", *target], capture_output=True, text=True,
                             check=True).stdout
    elif variant.startswith("stoke"):
        if variant in PARTS:
            args = ["--backend", "perf", *PARTS[variant]]
        else:
            args = ["--mode", "wall", "--backend", variant.rsplit(" ", 1)[1]]
        folded = os.path.join(tmp, "out.folded")
        proc = subprocess.run([STOKE, "record", *args, "-o", folded, "--", *target],
                              capture_output=True, text=True, check=True)
        out = proc.stdout
        m = re.search(r"stoke: ([0-9,]+) samples, ([0-9,]+) lost", proc.stderr)
        kept = f"{m.group(1)} samples, {m.group(2)} lost" if m else None
    else:
        data = os.path.join(tmp, "perf.data")
        proc = subprocess.run(["perf", "record", "-q", "-e", "sched:sched_switch", "-g",
                               "-o", data, "--", *target],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            return None, proc.stderr.strip().splitlines()[-1:]
        out = proc.stdout
        kept = f"{os.path.getsize(data) // 1024} KiB perf.data"
    match = re.search(r"elapsed ([0-9.]+)", out)
    if not match:
        sys.exit(f"no elapsed line from {variant} {target}: {out!r}")
    return float(match.group(1)), kept


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json")
    parser.add_argument("--decompose", action="store_true",
                        help="also time parts of wall mode on the ping-pong")
    parser.add_argument("--floor", action="store_true",
                        help="also time the kernel's switch mechanisms under perf on the ping-pong")
    parser.add_argument("--pin", metavar="CPU",
                        help="run the workloads under taskset -c CPU")
    args = parser.parse_args()
    pin = ["taskset", "-c", args.pin] if args.pin else []
    variants = [v for v in VARIANTS if not v.startswith("perf") or shutil.which("perf")]
    if args.decompose:
        variants += list(PARTS)
    if args.floor and shutil.which("perf"):
        variants += list(FLOOR)
    with tempfile.TemporaryDirectory() as tmp:
        binary = build(tmp)
        results = {}
        loads = []
        for _ in range(args.rounds):
            loads.append(float(open("/proc/loadavg").read().split()[0]))
            for label, argv in WORKLOADS:
                for variant in variants:
                    if (variant in PARTS or variant in FLOOR) and label != "ping-pong":
                        continue
                    elapsed, kept = run_once(variant, [*pin, binary, *argv], tmp)
                    cell = results.setdefault((label, variant), {"elapsed": [], "kept": []})
                    if elapsed is not None:
                        cell["elapsed"].append(elapsed)
                    cell["kept"].append(kept)
    load = f"{statistics.median(loads):.1f} (rounds' {min(loads):.1f}-{max(loads):.1f})"
    pinned = f", pinned to CPU {args.pin}" if args.pin else ""
    print(f"switches, {args.rounds} rounds, median; {os.cpu_count()} CPUs, load {load}{pinned}")
    print(f"{'workload':<10} {'profiler':<22} {'elapsed s':>10} {'slowdown':>9}  kept (last round)")
    table = []
    for label, _ in WORKLOADS:
        bare = statistics.median(results[(label, "bare")]["elapsed"])
        for variant in variants:
            if (label, variant) not in results:
                continue
            cell = results[(label, variant)]
            if not cell["elapsed"]:
                print(f"{label:<10} {variant:<22} {'failed':>10}  {cell['kept'][-1]}")
                continue
            median = statistics.median(cell["elapsed"])
            ratio = median / bare
            print(f"{label:<10} {variant:<22} {median:>10.3f} {ratio:>8.2f}x  "
                  f"{cell['kept'][-1] or ''}")
            table.append({"workload": label, "profiler": variant, "elapsed": median,
                          "slowdown": ratio, "runs": cell["elapsed"]})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(table, f, indent=1)


if __name__ == "__main__":
    main()
