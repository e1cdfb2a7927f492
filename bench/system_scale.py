#!/usr/bin/env python3
"""Whole-machine recording at scale, stoke against perf in the same run:

  - `-a -- sh -c 'loop of 500 short commands'` (xz -1 of a 64 KiB file);
  - `-a -- make -j2` of a small C project (16 files, each compiled anew).

    python3 bench/system_scale.py [--rounds N] [--stoke PATH] [--inferno DIR]

stoke: `stoke record -a -F 999 -o F.folded -o F.svg -- CMD`; perf:
`perf record -a -g -F 999 -e cpu-clock -- CMD` + `perf script |
inferno-collapse-perf | inferno-flamegraph`. Per profiler and scenario:
samples of the scenario's processes (roots named after them) against their
CPU time (getrusage of a wrapper that runs CMD) at 999 Hz, the share of
those samples whose leaf names a function (perf's folded counts divided
by cpu-clock's period, as inferno-collapse-perf weighs by it), peak RSS (VmHWM, polled) and
stop-to-SVG (from CMD's end to the SVG written). Medians over rounds.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from system import Peak, read_folded, REPO  # noqa: E402

FREQ = 999
WRAP = ("import os,resource,subprocess,sys,time\n"
        "subprocess.run(sys.argv[2:])\n"
        "r=resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "open(sys.argv[1],'w').write(f'{r.ru_utime+r.ru_stime} {time.monotonic()}')\n")
# Unnamed leaves: stoke's `module+0xOFF`, perf/inferno's `[unknown]` or `[module]`.
UNNAMED = re.compile(r"\[unknown\]|\+0x[0-9a-f]+$|^0x[0-9a-f]+$|^\[[^\]]*\]$")
# inferno-collapse-perf weighs perf's samples by period (ns for cpu-clock).
PERF_PERIOD = round(1e9 / FREQ)


def prepare(build):
    os.makedirs(build, exist_ok=True)
    for name, target in [("scale_sh", "sh"), ("scale_xz", "xz"), ("scale_make", "make")]:
        link = os.path.join(build, name)
        if not os.path.exists(link):
            os.symlink(shutil.which(target), link)
    with open(os.path.join(build, "input.bin"), "wb") as f:
        f.write(os.urandom(32 * 1024) + bytes(32 * 1024))
    proj = os.path.join(build, "proj")
    os.makedirs(proj, exist_ok=True)
    objs = []
    for i in range(16):
        with open(os.path.join(proj, f"f{i}.c"), "w") as f:
            f.write("".join(f"int f{i}_{j}(int x) {{ int s = 0; for (int k = 0; k < x; k++)"
                            f" s += k * {j} ^ (s >> 3); return s; }}\n" for j in range(300)))
        objs.append(f"f{i}.o")
    with open(os.path.join(proj, "main.c"), "w") as f:
        f.write("int main(void) { return 0; }\n")
    with open(os.path.join(proj, "Makefile"), "w") as f:
        f.write(f"OBJS = main.o {' '.join(objs)}\nprog: $(OBJS)\n\tcc -o $@ $(OBJS)\n"
                "%.o: %.c\n\tcc -O2 -c -o $@ $<\nclean:\n\trm -f prog *.o\n")
    return {
        "500 commands": ([f"{build}/scale_sh", "-c",
                          f"i=0; while [ $i -lt 500 ]; do {build}/scale_xz -1 -c "
                          f"{build}/input.bin > /dev/null; i=$((i+1)); done"],
                         {"scale_sh", "scale_xz"}, None),
        "make -j2": ([f"{build}/scale_make", "-s", "-C", proj, "-j2", "prog"],
                     {"scale_make", "cc", "gcc", "cc1", "as", "collect2", "ld", "x86_64-linux-gnu-gcc"},
                     [f"{build}/scale_make", "-s", "-C", proj, "clean"]),
    }


def measure(stacks, roots):
    n = named = 0
    for frames, count in stacks:
        if frames[0] in roots:
            n += count
            if not UNNAMED.search(frames[-1]):
                named += count
    return n, (named / n if n else None)


def run_one(kind, cmd, roots, tmp, stoke, inferno):
    peak = Peak()
    peak.start()
    info = os.path.join(tmp, "cpu")
    wrapped = [sys.executable, "-c", WRAP, info, *cmd]
    folded, svg = os.path.join(tmp, "x.folded"), os.path.join(tmp, "x.svg")
    if kind == "stoke":
        p = subprocess.Popen([stoke, "record", "-a", "-F", str(FREQ), "-o", folded, "-o", svg,
                              "--", *wrapped], stderr=subprocess.DEVNULL)
        peak.pids.add(p.pid)
        p.wait()
    else:
        data = os.path.join(tmp, "perf.data")
        p = subprocess.Popen(["perf", "record", "-a", "-g", "-F", str(FREQ), "-e", "cpu-clock",
                              "-o", data, "--", *wrapped],
                             stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        peak.pids.add(p.pid)
        p.wait()
        with open(folded, "w") as out:
            script = subprocess.Popen(["perf", "script", "-i", data], stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL)
            collapse = subprocess.Popen([os.path.join(inferno, "inferno-collapse-perf")],
                                        stdin=script.stdout, stdout=out)
            peak.pids.update([script.pid, collapse.pid])
            script.stdout.close()
            collapse.wait()
            script.wait()
        with open(svg, "w") as out:
            fg = subprocess.Popen([os.path.join(inferno, "inferno-flamegraph"), folded],
                                  stdout=out)
            peak.pids.add(fg.pid)
            fg.wait()
    done = time.monotonic()
    peak.stop.set()
    cpu, ended = (float(x) for x in open(info).read().split())
    samples, named = measure(read_folded(folded), roots)
    if kind == "perf":
        samples /= PERF_PERIOD
    return {"samples/expected": samples / (cpu * FREQ) if cpu else None, "named": named,
            "rss_mb": peak.peak / 1024, "stop_to_svg": done - ended, "cpu_s": cpu}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--stoke", default=os.path.join(REPO, "target/release/stoke"))
    ap.add_argument("--inferno", default=os.path.dirname(shutil.which("inferno-flamegraph") or ""))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scenarios = prepare(os.path.join(tmp, "build"))
        results = {}
        for r in range(args.rounds):
            for name, (cmd, roots, clean) in scenarios.items():
                for kind in (["stoke", "perf"] if r % 2 == 0 else ["perf", "stoke"]):
                    if clean:
                        subprocess.run(clean, check=True)
                    print(f"round {r + 1}: {name}: {kind}", file=sys.stderr, flush=True)
                    res = run_one(kind, cmd, roots, tmp, args.stoke, args.inferno)
                    results.setdefault((name, kind), []).append(res)
        print(f"load average: {os.getloadavg()}")
        for (name, kind), runs in results.items():
            row = {k: statistics.median(x[k] for x in runs if x[k] is not None)
                   for k in runs[0]}
            print(f"{name:14} {kind:6} " + "  ".join(f"{k} {v:.2f}" for k, v in row.items()))


if __name__ == "__main__":
    main()
