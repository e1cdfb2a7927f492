#!/usr/bin/env python3
"""How long a 20,000-stack flame graph takes to load in Chromium: stoke's
default SVG against inferno's default SVG of the same folded stacks (its
peer: same renderer, without stoke's embedded stacks and script) and
stoke's `--min-width 0` (every frame drawn), in the same run.

    python3 bench/svg_load.py [--loads N]

from the repository root, after `cargo build --release`. Needs Debian's
chromium, node and playwright-core in target/browser (.ci/run installs
them: `npm install --prefix target/browser playwright-core`); inferno's
column is left out where `inferno-flamegraph` is not on PATH. The load time
is the browser's, from navigation to the `load` event (stoke's script then
has run its setup), median of N loads in one browser. Figures:
docs/benchmarks.md.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def many_stacks(n):
    """The same profile as tests/browser.rs: n distinct stacks, 8 to 30
    frames deep, of 3,000 functions, counts 1 to 50, from a fixed seed."""
    seed = 0x5EED
    mask = (1 << 64) - 1

    def nxt(m):
        nonlocal seed
        seed = (seed * 6364136223846793005 + 1442695040888963407) & mask
        return (seed >> 33) % m

    lines = {}
    while len(lines) < n:
        depth = 8 + nxt(23)
        stack = ["app", "main"] + [f"fn_{nxt(100) + 100 * (level % 30)}" for level in range(depth)]
        lines[";".join(stack)] = 1 + nxt(50)
    return "".join(f"{s} {c}\n" for s, c in sorted(lines.items()))


def load_times(svg, loads):
    env = dict(os.environ, NODE_PATH=os.path.join(ROOT, "target/browser/node_modules"))
    out = subprocess.run(
        ["node", os.path.join(ROOT, "tests/browser/check.js"), svg, f"measure:{loads}"],
        env=env, check=True, capture_output=True, text=True,
    )
    result = json.loads(out.stdout)
    if result["errors"]:
        sys.exit(f"bench: JavaScript errors in {svg}: {result['errors']}")
    return result["loads"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--loads", type=int, default=7)
    args = parser.parse_args()
    stoke = os.path.join(ROOT, "target/release/stoke")
    if not os.path.exists(stoke):
        sys.exit("bench: build stoke first (cargo build --release)")
    with tempfile.TemporaryDirectory() as tmp:
        folded = os.path.join(tmp, "big.folded")
        with open(folded, "w") as f:
            f.write(many_stacks(20_000))
        svgs = {}
        svgs["stoke (default)"] = os.path.join(tmp, "stoke.svg")
        subprocess.run([stoke, "convert", folded, "-o", svgs["stoke (default)"]], check=True)
        svgs["stoke --min-width 0"] = os.path.join(tmp, "stoke-all.svg")
        subprocess.run([stoke, "convert", folded, "-o", svgs["stoke --min-width 0"], "--min-width", "0"], check=True)
        inferno = shutil.which("inferno-flamegraph")
        if inferno:
            svgs["inferno (default)"] = os.path.join(tmp, "inferno.svg")
            with open(folded) as src, open(svgs["inferno (default)"], "w") as dst:
                subprocess.run([inferno], stdin=src, stdout=dst, check=True)
        else:
            print("bench: inferno-flamegraph is not installed; its column is left out", file=sys.stderr)
        medians = {}
        print(f"{'SVG':<22} {'size':>9} {'load (median of %d)' % args.loads:>22}", flush=True)
        for name, svg in svgs.items():
            # Drawing every frame takes long: once is enough to see it.
            times = load_times(svg, 1 if "min-width 0" in name else args.loads)
            medians[name] = statistics.median(times)
            size = os.path.getsize(svg) / 1e6
            print(f"{name:<22} {size:>7.1f} MB {medians[name]:>19.0f} ms", flush=True)
        if "inferno (default)" in medians:
            ratio = medians["stoke (default)"] / medians["inferno (default)"]
            print(f"stoke / inferno load time: {ratio:.2f}")


if __name__ == "__main__":
    main()
