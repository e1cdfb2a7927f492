#!/usr/bin/env python3
"""stoke vs perf + inferno: overhead, stack quality and time to flame graph.

    python3 bench/run.py [--rounds N] [--quick] [--json out.json]

Run from the repository root. Methodology: docs/benchmarks.md. Python 3
standard library only.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import measure  # noqa: E402
import metrics  # noqa: E402
import prepare  # noqa: E402
import profilers  # noqa: E402

# stoke variants to compare, one list of extra `stoke record` flags each.
# Adding a backend or unwind mode is one more entry, e.g. ["--unwind", "fp"].
# A variant whose flags stoke rejects is skipped with a message.
STOKE_VARIANTS = [
    [],  # the default: DWARF unwinding of 32 KiB stack copies
    ["--unwind", "fp"],  # the kernel's frame-pointer walk only
    ["--backend", "ptrace"],  # where perf events are forbidden
]

FREQ = 999
LIBC_START = ["main", "__libc_start_main", "__libc_start_call_main", "__libc_start_main_impl"]
PYTHON_LOOP = "s = 0\nfor i in range({n}):\n    s += i * i % 7\nprint(s)\n"


# CPU hogs beside the target in the "busy" workload: with the target, they
# keep every CPU of a 2-CPU machine busy for the whole round (bare run, every
# profiler and perf's post-processing), as when people profile a loaded box.
BUSY_HOGS = 3
HOG = [sys.executable, "-c", "while True: pass"]


def workloads(fx, xz_input, quick):
    """[(name, argv, keep_stdout, root frames, is cpu_split, hogs)]; ~2-3 s of CPU each."""
    q = quick
    py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"
    return [
        ("cpu_split fp", [fx["cpu_split_fp"], "1.0" if q else "2.5"], True, ["main"], True, 0),
        ("cpu_split nofp", [fx["cpu_split_nofp"], "1.0" if q else "2.5"], True, ["main"], True,
         0),
        ("threads16", [fx["threads16"], "30" if q else "80"], True,
         ["main", "start_thread"], False, 0),
        ("xz -9", ["xz", "-9", "-T1", "-c", xz_input], False, LIBC_START, False, 0),
        ("python3 loop", [py, "-c", PYTHON_LOOP.format(n=8_000_000 if q else 20_000_000)],
         True, LIBC_START, False, 0),
        (f"busy: cpu_split fp + {BUSY_HOGS} hogs", [fx["cpu_split_fp"], "0.5" if q else "1.0"],
         True, ["main"], True, BUSY_HOGS),
    ]


class Hogs:
    """`count` CPU-bound processes for the length of a `with` block; killed and
    reaped at its end (so their CPU counts as this script's, not as noise)."""

    def __init__(self, count):
        self.count, self.procs = count, []

    def __enter__(self):
        self.procs = [subprocess.Popen(HOG, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
                      for _ in range(self.count)]
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()


def slug(text):
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def rotated(items, k):
    k %= len(items)
    return items[k:] + items[:k]


def derive(raw, bare, roots, is_split, run_dir):
    """Per-run metrics from a run's raw figures and the same round's bare run."""
    samples = raw["samples"]
    expected = FREQ * raw["target_cpu"]
    d = {
        "target_wall_s": raw["target_wall"],
        "target_cpu_s": raw["target_cpu"],
        "cmd_wall_s": raw["cmd_wall"],
        "slowdown": raw["target_wall"] / bare["target_wall"],
        "cmd_ratio": raw["cmd_wall"] / bare["cmd_wall"],
        "exit_to_svg_s": raw["exit_to_svg"],
        "record_end_after_exit_s": raw.get("record_end_after_exit"),
        "disk_bytes": raw["disk_bytes"],
        "svg_bytes": raw["svg_bytes"],
        "bytes_per_sample": raw["disk_bytes"] / samples if samples else None,
        "peak_rss_mb": raw["peak_rss_kb"] / 1024 if raw["peak_rss_kb"] else None,
        "prof_cpu_s": raw["prof_cpu"],
        "cpu_s_per_1k_samples": raw["prof_cpu"] / samples * 1000
        if samples and raw["prof_cpu"] is not None else None,
        "samples": samples,
        "samples_per_expected": samples / expected if samples and expected else None,
        "root_share": metrics.root_share(raw["stacks"], roots) if samples else None,
        "attr_err_pp": None,
        "procs": raw["procs"],
    }
    if is_split and samples:
        truth = metrics.fixture_split(os.path.join(run_dir, profilers.STDOUT))
        share = metrics.hot_share(raw["stacks"])
        if truth is not None and share is not None:
            d["hot_share"], d["hot_truth"] = share, truth
            d["attr_err_pp"] = abs(share - truth) * 100
    return d


def run_round(ctx, profs, wl, round_no, build):
    name, argv, keep, roots, is_split, hogs = wl
    raws, errors = {}, {}
    with Hogs(hogs):
        for label, fn in rotated(profs, round_no):
            run_dir = profilers.fresh_dir(os.path.join(build, "runs", slug(name), slug(label)))
            try:
                raws[label] = (fn(ctx, argv, run_dir, keep), run_dir)
            except (RuntimeError, OSError, ValueError) as e:
                errors[label] = str(e)
                print(f"[bench]   {name} / {label}: FAILED: {e}", flush=True)
    if "bare" not in raws:
        return {}, errors
    bare = raws["bare"][0]
    return {label: derive(raw, bare, roots, is_split, d)
            for label, (raw, d) in raws.items()}, errors


METRICS = ["slowdown", "cmd_ratio", "target_wall_s", "exit_to_svg_s",
           "record_end_after_exit_s", "disk_bytes",
           "bytes_per_sample", "peak_rss_mb", "cpu_s_per_1k_samples",
           "samples_per_expected", "root_share", "attr_err_pp", "svg_bytes", "foreign_cpu_s"]


def clean_rounds(rounds, max_foreign):
    """The rounds other processes left alone, if there are at least 3 of them
    (else all rounds: the medians then carry the noise, and say so)."""
    clean = [r for r in rounds if r.get("foreign_cpu_s", 0) <= max_foreign]
    return clean if len(clean) >= 3 else rounds


def medians(rounds):
    out = {}
    for m in METRICS:
        values = [r[m] for r in rounds if r.get(m) is not None]
        out[m] = statistics.median(values) if values else None
    out["rounds_used"] = len(rounds)
    return out


COLUMNS = [  # (header, metric, format)
    ("target slowdown", "slowdown", "{:.3f}"),
    ("whole cmd / bare", "cmd_ratio", "{:.3f}"),
    ("target wall s", "target_wall_s", "{:.2f}"),
    ("exit→SVG s", "exit_to_svg_s", "{:.3f}"),
    ("disk MB", "disk_bytes", "MB"),
    ("bytes/sample", "bytes_per_sample", "{:.0f}"),
    ("peak RSS MB", "peak_rss_mb", "{:.1f}"),
    ("CPU s/1k samples", "cpu_s_per_1k_samples", "{:.3f}"),
    ("samples/expected", "samples_per_expected", "{:.3f}"),
    ("reach root %", "root_share", "%"),
    ("hot err pp", "attr_err_pp", "{:.2f}"),
]


def fmt(value, how):
    if value is None:
        return "–"
    if how == "MB":
        return f"{value / 1e6:.2f}"
    if how == "%":
        return f"{value * 100:.1f}"
    return how.format(value)


def table(results):
    head = ["workload", "profiler", "rounds"] + [c[0] for c in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for wl, per_prof in results.items():
        for label, med in per_prof.items():
            if label == "bare":
                # exit→SVG of the bare run: the floor of that measurement
                cells = ["1", "1", fmt(med["target_wall_s"], "{:.2f}"),
                         fmt(med["exit_to_svg_s"], "{:.3f}")] + ["–"] * (len(COLUMNS) - 4)
            else:
                cells = [fmt(med[m], how) for _, m, how in COLUMNS]
            lines.append("| " + " | ".join([wl, label, str(med["rounds_used"])] + cells) + " |")
    return "\n".join(lines)


def measure_workload(ctx, profs, wl, rounds, build, args, failures):
    """Warm-up round, then `rounds` rounds; {profiler: [per-round metrics]}."""
    name = wl[0]
    collected = {label: [] for label, _ in profs}
    for r in range(rounds + 1):  # round 0 is the warm-up, discarded
        retries = args.retries if r else 0
        for attempt in range(1 + retries):
            with measure.ForeignCpu() as foreign:
                derived, errors = run_round(ctx, profs, wl, r, build)
            if foreign.seconds <= args.max_foreign or attempt == retries:
                break
            prepare.log(f"{name}: round {r}: {foreign.seconds:.2f} CPU s used by other "
                        "processes during the round; running it again")
        for label, e in errors.items():
            failures.setdefault(f"{name} / {label}", []).append(e)
        if r == 0:
            prepare.log(f"{name}: warm-up done")
            continue
        for label, d in derived.items():
            d["foreign_cpu_s"] = foreign.seconds
            collected[label].append(d)
        summary = "  ".join(f"{lb}={d['slowdown']:.3f}" for lb, d in derived.items())
        prepare.log(f"{name}: round {r}/{rounds}: target slowdown {summary} "
                    f"(other processes: {foreign.seconds:.2f} CPU s)")
    return collected


def headline(info, rounds, quick):
    return (f"{info['date']}, {info['nproc']} CPUs ({info['cpu']}), kernel {info['kernel']}, "
            f"{info['perf']}, {info['inferno']}, event {info['perf_event']}, "
            f"perf_event_paranoid={info['perf_event_paranoid']}, "
            f"{rounds} rounds{' (quick)' if quick else ''}, medians")


def report(path, max_foreign):
    with open(path) as f:
        data = json.load(f)
    results = {wl: {label: medians(clean_rounds(rs, max_foreign)) for label, rs in per.items() if rs}
               for wl, per in data["per_round"].items()}
    print(headline(data["machine"], data["rounds"], data["quick"]))
    print(table(results))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--rounds", type=int, default=None, help="measured rounds (default 5, --quick 3)")
    ap.add_argument("--quick", action="store_true", help="3 rounds, shorter workloads")
    ap.add_argument("--json", metavar="FILE", help="write all figures and machine info here")
    ap.add_argument("--only", metavar="TEXT", help="only workloads whose name contains TEXT")
    ap.add_argument("--no-stoke", action="store_true", help="leave stoke out (perf rows only)")
    ap.add_argument("--stoke", metavar="PATH",
                    help="use this stoke binary instead of building the repository's "
                         "(e.g. an older build, for before/after figures)")
    ap.add_argument("--max-foreign", type=float, default=0.5, metavar="S",
                    help="redo a round if other processes used more than S CPU seconds "
                         "during it (default 0.5)")
    ap.add_argument("--retries", type=int, default=2, help="redos per noisy round (default 2)")
    ap.add_argument("--report", metavar="JSON", help="only print the table of an earlier --json")
    args = ap.parse_args()
    if args.report:
        return report(args.report, args.max_foreign)
    rounds = args.rounds or (3 if args.quick else 5)

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    build = os.path.join(repo, "bench", "build")
    os.makedirs(build, exist_ok=True)

    tools = prepare.ensure_tools()
    os.environ["PATH"] = os.environ.get("PATH", "") + os.pathsep + prepare.CARGO_BIN
    if args.no_stoke:
        stoke, stoke_why = None, "--no-stoke"
    elif args.stoke:
        stoke, stoke_why = os.path.abspath(args.stoke), None
    else:
        stoke, stoke_why = prepare.build_stoke(repo, tools["cargo"])
    fx = prepare.build_fixtures(repo, build, tools["gcc"])
    variants = profilers.probe_stoke_variants(stoke, STOKE_VARIANTS, [fx["cpu_split_fp"], "0.1"]) \
        if stoke else []
    if stoke and not variants:
        stoke_why = "stoke failed with every variant (see above)"
    xz_input = prepare.make_xz_input(os.path.join(build, "xz-input-8mb.txt" if args.quick
                                                  else "xz-input-20mb.txt"), 8 if args.quick else 20)
    pmu = prepare.has_pmu(tools["perf"])
    info = prepare.machine_info(tools, pmu, stoke)
    info["stoke_skipped"] = stoke_why if not variants else None
    prepare.log(f"machine: {json.dumps(info)}")
    if float((info["loadavg_at_start"] or "0").split()[0]) > 0.5:
        prepare.log("WARNING: load average > 0.5: something else is running; figures will be noisy")

    ctx = {"tools": tools, "pmu": pmu, "stoke": stoke, "freq": FREQ}
    profs = profilers.profiler_list(stoke, variants)
    wls = [w for w in workloads(fx, xz_input, args.quick) if not args.only or args.only in w[0]]

    results, per_round, failures = {}, {}, {}
    started = time.monotonic()
    for wl in wls:
        name = wl[0]
        per_round[name] = measure_workload(ctx, profs, wl, rounds, build, args, failures)
        results[name] = {label: medians(clean_rounds(rs, args.max_foreign))
                         for label, rs in per_round[name].items() if rs}

    info["duration_s"] = round(time.monotonic() - started, 1)
    info["loadavg_at_end"] = prepare._read("/proc/loadavg")
    print()
    print(headline(info, rounds, args.quick))
    print(table(results))
    if failures:
        print("\nfailed runs:")
        for k, errs in failures.items():
            print(f"  {k}: {len(errs)}x, last: {errs[-1][:300]}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "rounds": rounds, "quick": args.quick, "freq": FREQ,
                       "stoke_variants": variants, "medians": results,
                       "per_round": per_round, "failures": failures}, f, indent=1)
        prepare.log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
