"""The profilers under test: how each one is run, and its raw figures.

Every run happens in its own empty folder and wraps the target in
`/usr/bin/time -f '%e %U %S' -o T.txt`, the bare run included, so the
target's own wall and CPU time are measured the same way everywhere.

A run returns a dict of raw figures (see `_result`); run.py turns them into
ratios against the bare run of the same round.
"""

import os
import shutil
import subprocess
import tempfile
import time

import measure
import metrics

TIME_FILE = "T.txt"
STDOUT = "stdout.txt"
SVG = "out.svg"
FOLDED = "out.folded"
# Not counted in "bytes written": the wrapper's files, captured stdio, and
# the outputs (SVG, folded stacks) that both sides produce.
NOT_PROFILER_BYTES = {TIME_FILE, STDOUT, SVG, FOLDED, "perf.err", "stoke.err", "script.err"}


def fresh_dir(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def wrapped(target):
    return ["/usr/bin/time", "-f", "%e %U %S", "-o", TIME_FILE, *target]


def _open_stdout(run_dir, keep_stdout):
    if keep_stdout:
        return open(os.path.join(run_dir, STDOUT), "wb")
    return subprocess.DEVNULL


def _result(run_dir, start_mono, start_real, end_mono, procs, target_cpu_in=None):
    """Common figures from a finished run (procs: all measured processes).

    target_cpu_in: index of the process whose rusage includes the target's
    CPU (the profiler that reaped it), so that CPU is subtracted.
    """
    target = measure.read_time_file(os.path.join(run_dir, TIME_FILE))
    end_real = start_real + (end_mono - start_mono)
    prof_cpu = sum(p["cpu"] for p in procs)
    if target_cpu_in is not None:
        prof_cpu -= target["cpu"]
    folded = os.path.join(run_dir, FOLDED)
    stacks = metrics.read_folded(folded) if os.path.exists(folded) else []
    svg = os.path.join(run_dir, SVG)
    return {
        "target_wall": target["wall"],
        "target_cpu": target["cpu"],
        "cmd_wall": end_mono - start_mono,
        "exit_to_svg": end_real - target["exit_realtime"],
        "disk_bytes": measure.dir_bytes(run_dir, NOT_PROFILER_BYTES),
        "svg_bytes": os.path.getsize(svg) if os.path.exists(svg) else None,
        "peak_rss_kb": max((p["peak_rss_kb"] for p in procs), default=0),
        "prof_cpu": prof_cpu,
        "stacks": stacks,
        "samples": metrics.total_samples(stacks),
        "procs": [{k: p[k] for k in ("argv0", "exit", "cpu", "peak_rss_kb")} for p in procs],
    }


def _check(procs, run_dir, what):
    bad = [p for p in procs if p["exit"] != 0]
    if bad:
        errs = ""
        for name in ("perf.err", "stoke.err", "script.err"):
            path = os.path.join(run_dir, name)
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    errs += f.read()[-600:]
        raise RuntimeError(f"{what}: {bad[0]['argv0']} exited {bad[0]['exit']}: {errs.strip()}")


def run_bare(ctx, target, run_dir, keep_stdout):
    start_real = time.time()
    with _stdio(run_dir, keep_stdout, None) as (out, _):
        r = measure.run_pipe([wrapped(target)], run_dir, stdout=out)
    _check(r["procs"], run_dir, "bare")
    res = _result(run_dir, r["start"], start_real, r["start"] + r["wall"], [])
    res["prof_cpu"] = None
    res["peak_rss_kb"] = None
    return res


def run_perf(ctx, target, run_dir, keep_stdout, mode):
    """perf record (fp callchains or DWARF) | perf script | collapse | flamegraph."""
    perf, tools = ctx["tools"]["perf"], ctx["tools"]
    call_graph = ["-g"] if mode == "fp" else ["--call-graph", "dwarf"]
    event = [] if ctx["pmu"] else ["-e", "cpu-clock"]
    record = [perf, "record", *event, "-F", str(ctx["freq"]), *call_graph,
              "-o", "perf.data", "--", *wrapped(target)]
    start_real = time.time()
    with _stdio(run_dir, keep_stdout, "perf.err") as (out, err):
        r1 = measure.run_pipe([record], run_dir, stdout=out, stderr=err)
    _check(r1["procs"], run_dir, "perf record")
    with open(os.path.join(run_dir, FOLDED), "wb") as folded, \
            open(os.path.join(run_dir, "script.err"), "wb") as err:
        r2 = measure.run_pipe([[perf, "script", "-i", "perf.data"],
                               [tools["inferno-collapse-perf"]]],
                              run_dir, stdout=folded, stderr=err)
    _check(r2["procs"], run_dir, "perf script | inferno-collapse-perf")
    with open(os.path.join(run_dir, SVG), "wb") as svg, \
            open(os.path.join(run_dir, "script.err"), "ab") as err:
        r3 = measure.run_pipe([[tools["inferno-flamegraph"], FOLDED]],
                              run_dir, stdout=svg, stderr=err)
    _check(r3["procs"], run_dir, "inferno-flamegraph")
    procs = r1["procs"] + r2["procs"] + r3["procs"]
    res = _result(run_dir, r1["start"], start_real, r3["start"] + r3["wall"], procs,
                  target_cpu_in=0)
    res["record_end_after_exit"] = start_real + (r1["procs"][0]["end"] - r1["start"]) \
        - measure.read_time_file(os.path.join(run_dir, TIME_FILE))["exit_realtime"]
    res["samples"] = perf_sample_count(perf, run_dir)
    return res


def perf_sample_count(perf, run_dir):
    """Samples in perf.data, counted after the timed part.

    inferno-collapse-perf weights each stack by the sample's period when
    `perf script` prints one (it does by default: ns for cpu-clock, events
    for cycles), so the folded counts are not sample counts. The shares
    computed from that file are period-weighted; the count comes from here.
    """
    r = subprocess.run([perf, "script", "-i", "perf.data", "-F", "period"], cwd=run_dir,
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return sum(1 for line in r.stdout.splitlines() if line.strip())


def run_stoke(ctx, target, run_dir, keep_stdout, flags):
    argv = [ctx["stoke"], "record", *flags, "-F", str(ctx["freq"]),
            "-o", FOLDED, "-o", SVG, "--", *wrapped(target)]
    env = dict(os.environ, STOKE_STATS="1")
    start_real = time.time()
    with _stdio(run_dir, keep_stdout, "stoke.err") as (out, err):
        r = measure.run_pipe([argv], run_dir, stdout=out, stderr=err, env=env)
    _check(r["procs"], run_dir, "stoke record")
    res = _result(run_dir, r["start"], start_real, r["start"] + r["wall"], r["procs"],
                  target_cpu_in=0)
    res["record_end_after_exit"] = res["exit_to_svg"]
    with open(os.path.join(run_dir, "stoke.err"), errors="replace") as f:
        reported = metrics.stoke_reported_rss_kb(f.read())
    if reported is not None:
        res["peak_rss_polled_kb"] = res["peak_rss_kb"]
        res["peak_rss_kb"] = reported
    return res


class _stdio:
    """Opens the run's stdout (file or /dev/null) and stderr file."""

    def __init__(self, run_dir, keep_stdout, err_name):
        self.run_dir, self.keep, self.err_name = run_dir, keep_stdout, err_name

    def __enter__(self):
        self.out = _open_stdout(self.run_dir, self.keep)
        self.err = (open(os.path.join(self.run_dir, self.err_name), "wb")
                    if self.err_name else subprocess.DEVNULL)
        return self.out, self.err

    def __exit__(self, *exc):
        for f in (self.out, self.err):
            if f is not subprocess.DEVNULL:
                f.close()


def probe_stoke_variants(stoke, variants, probe_target):
    """Keep the variants with which stoke profiles a short CPU burner."""
    kept = []
    for flags in variants:
        with tempfile.TemporaryDirectory() as d:
            r = subprocess.run([stoke, "record", *flags, "-F", "999", "-o", "probe.folded",
                                "--", *probe_target], cwd=d, capture_output=True, text=True)
        if r.returncode == 0:
            kept.append(flags)
        else:
            why = (r.stderr.strip().splitlines() or ["(no message)"])[-1]
            print(f"[bench] skipping stoke variant {flags or '(default)'}: "
                  f"exit {r.returncode}: {why}", flush=True)
    return kept


def profiler_list(stoke, stoke_variants):
    """[(label, function(ctx, target, run_dir, keep_stdout))], bare first."""
    profs = [
        ("bare", run_bare),
        ("perf -g", lambda c, t, d, k: run_perf(c, t, d, k, "fp")),
        ("perf dwarf", lambda c, t, d, k: run_perf(c, t, d, k, "dwarf")),
    ]
    if stoke:
        for flags in stoke_variants:
            label = " ".join(["stoke", *flags])
            profs.append((label, lambda c, t, d, k, f=flags: run_stoke(c, t, d, k, f)))
    return profs
