"""Metrics computed from folded stacks (`frame;frame;leaf COUNT` per line).

Both sides are read the same way: perf's `perf script | inferno-collapse-perf`
output and stoke's `-o x.folded` output. Frames are compared by exact name
after stripping inferno's annotations (`_[k]` kernel, `_[j]` JIT, `_[i]`
inline, `_[w]` waker).
"""

import re

_ANNOTATION = re.compile(r"_\[[kjiw]\]$")


def clean(frame):
    return _ANNOTATION.sub("", frame)


def read_folded(path):
    """[(frames, count)] from a folded file; malformed lines are skipped."""
    stacks = []
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            stacks.append(([clean(x) for x in stack.split(";")], int(count)))
    return stacks


def total_samples(stacks):
    return sum(count for _, count in stacks)


def root_share(stacks, roots):
    """Share of samples whose stack holds a frame named in `roots`."""
    total = total_samples(stacks)
    if total == 0:
        return None
    roots = set(roots)
    reached = sum(count for frames, count in stacks if roots.intersection(frames))
    return reached / total


def hot_share(stacks, hot="hot", cold="cold"):
    """Samples whose leaf is `hot`, out of those whose leaf is `hot` or `cold`."""
    n_hot = sum(c for frames, c in stacks if frames[-1] == hot)
    n_cold = sum(c for frames, c in stacks if frames[-1] == cold)
    if n_hot + n_cold == 0:
        return None
    return n_hot / (n_hot + n_cold)


_SPLIT = re.compile(r"split hot=([0-9.]+) cold=([0-9.]+)")


def fixture_split(stdout_path):
    """The hot share cpu_split measured itself and printed at exit, or None."""
    try:
        with open(stdout_path, errors="replace") as f:
            m = _SPLIT.search(f.read())
    except OSError:
        return None
    return float(m.group(1)) if m else None


# A line stoke may print on stderr with STOKE_STATS=1, e.g. `peak_rss_kb=12345`
# or `peak RSS: 12.3 MB`. If found it replaces the polled figure.
_STOKE_RSS = re.compile(r"peak[ _-]?rss[ _]?(kb|kib|mb|mib)?\s*[:=]?\s*([0-9.]+)\s*(kb|kib|mb|mib)?",
                        re.IGNORECASE)


def stoke_reported_rss_kb(stderr_text):
    m = _STOKE_RSS.search(stderr_text)
    if not m:
        return None
    unit = (m.group(1) or m.group(3) or "kb").lower()
    value = float(m.group(2))
    return value * 1024 if unit.startswith("m") else value
