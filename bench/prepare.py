"""Setting up: tools, builds, input data, machine facts."""

import datetime
import os
import platform
import random
import shutil
import subprocess
import sys

CARGO_BIN = os.path.expanduser("~/.cargo/bin")


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def which(name):
    return shutil.which(name) or shutil.which(name, path=CARGO_BIN)


def _apt_install(package):
    log(f"installing {package} with apt-get")
    if os.geteuid() != 0:
        sys.exit(f"bench: {package} is missing and we are not root: apt-get install {package}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], env=env, check=True)


def ensure_tools():
    """Install what is missing (saying so); return {tool: path}."""
    for tool, package in [("perf", "linux-perf"), ("gcc", "gcc"), ("xz", "xz-utils")]:
        if not which(tool):
            _apt_install(package)
    if not os.access("/usr/bin/time", os.X_OK):
        _apt_install("time")
    if not (which("inferno-collapse-perf") and which("inferno-flamegraph")):
        if not which("cargo"):
            sys.exit("bench: inferno is missing and cargo is not on PATH or in ~/.cargo/bin")
        log("installing inferno with `cargo install inferno`")
        subprocess.run([which("cargo"), "install", "inferno"], check=True)
    tools = {t: which(t) for t in ["perf", "gcc", "xz", "inferno-collapse-perf",
                                   "inferno-flamegraph", "cargo"]}
    tools["time"] = "/usr/bin/time"
    for t, path in tools.items():
        if not path:
            sys.exit(f"bench: {t} still missing after installing")
    return tools


def build_stoke(repo, cargo):
    """`cargo build --release`; return (path to stoke or None, why not)."""
    log("building stoke: cargo build --release")
    r = subprocess.run([cargo, "build", "--release"], cwd=repo,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    exe = os.path.join(repo, "target", "release", "stoke")
    if r.returncode != 0:
        tail = "\n".join(r.stderr.strip().splitlines()[-15:])
        log(f"cargo build --release failed; stoke rows are skipped:\n{tail}")
        return None, "cargo build --release failed"
    return exe, None


FP = ["-O2", "-g", "-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer"]
NOFP = ["-O2", "-g", "-fomit-frame-pointer"]


def build_fixtures(repo, build, gcc):
    """Compile the C fixtures into the build folder; return {name: path}."""
    jobs = {
        "cpu_split_fp": ("fixtures/cpu_split.c", FP, []),
        "cpu_split_nofp": ("fixtures/cpu_split.c", NOFP, []),
        "threads16": ("bench/fixtures/threads16.c", FP, ["-pthread"]),
    }
    out = {}
    for name, (src, flags, extra) in jobs.items():
        exe = os.path.join(build, name)
        argv = [gcc, *flags, *extra, "-o", exe, os.path.join(repo, src)]
        subprocess.run(argv, check=True)
        out[name] = exe
    return out


def make_xz_input(path, megabytes, seed=20261121):
    """Deterministic, compressible text: log-like lines from a small
    vocabulary, emitted in runs of 256 consecutive lines picked from 1,000
    base lines. xz -9 -T1 compresses it ~400:1 at ~7 MB/s of CPU here."""
    if os.path.exists(path) and os.path.getsize(path) >= megabytes * 1_000_000:
        return path
    log(f"generating {megabytes} MB of xz input in {path}")
    rng = random.Random(seed)
    syll = ["ka", "to", "mi", "re", "su", "no", "ha", "ri", "ze", "lo", "pa", "que",
            "vin", "dor", "el", "ast"]
    words = ["".join(rng.choice(syll) for _ in range(rng.randint(1, 4))) for _ in range(500)]
    base = [f"host{rng.randrange(40):02d} svc={rng.choice(words)} "
            f"msg=\"{' '.join(rng.choices(words, k=rng.randint(3, 12)))}\"\n"
            for _ in range(1000)]
    written, target = 0, megabytes * 1_000_000
    with open(path + ".tmp", "w") as out:
        while written < target:
            start = rng.randrange(len(base) - 256)
            chunk = "".join(base[start:start + 256])
            out.write(chunk)
            written += len(chunk)
    os.replace(path + ".tmp", path)
    return path


def has_pmu(perf):
    """True if a hardware cycles counter works (`perf stat -e cycles true`)."""
    r = subprocess.run([perf, "stat", "-x,", "-e", "cycles", "true"],
                       capture_output=True, text=True)
    return r.returncode == 0 and "<not supported>" not in r.stderr \
        and "<not counted>" not in r.stderr


def _first_line(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True)
        return (r.stdout or r.stderr).strip().splitlines()[0]
    except (OSError, IndexError):
        return None


def _cargo_installed(cargo, crate):
    try:
        r = subprocess.run([cargo, "install", "--list"], capture_output=True, text=True)
    except OSError:
        return None
    for line in r.stdout.splitlines():
        if line.startswith(crate + " "):
            return line.rstrip(":")
    return None


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def machine_info(tools, pmu, stoke):
    cpu_model = None
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": cpu_model,
        "kernel": platform.release(),
        "perf": _first_line([tools["perf"], "--version"]),
        "inferno": _cargo_installed(tools["cargo"], "inferno"),
        "stoke": _first_line([stoke, "--version"]) if stoke else None,
        "gcc": _first_line([tools["gcc"], "--version"]),
        "xz": _first_line([tools["xz"], "--version"]),
        "python3": platform.python_version(),
        "pmu": pmu,
        "perf_event": "cycles" if pmu else "cpu-clock",
        "perf_event_paranoid": _read("/proc/sys/kernel/perf_event_paranoid"),
        "perf_event_max_stack": _read("/proc/sys/kernel/perf_event_max_stack"),
        "loadavg_at_start": _read("/proc/loadavg"),
        "root": os.geteuid() == 0,
    }
