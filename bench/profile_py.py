"""Where the time goes: run a benchmark and sample one of its Python processes with py-spy.

Starts the command after ``--``, waits for a process whose command line contains
``--match``, records it with py-spy for ``--seconds`` (all threads, raw
collapsed stacks, plus an SVG flamegraph), waits for the command to finish, and
writes a markdown table of the functions with the most samples, by own time and
including callees.

    .venv/bin/pip install py-spy   # not a project dependency
    .venv/bin/python bench/profile_py.py --match "citygate cloud run" --seconds 20 \\
        --out bench/results/profile-cloud -- .venv/bin/python bench/bench_cloud.py --replicas 1
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>.*?)(?::\d+)?\)$")


def find(match: str, timeout: float) -> psutil.Process:
    deadline = time.monotonic() + timeout
    me = psutil.Process().pid
    while time.monotonic() < deadline:
        for p in psutil.process_iter(["pid", "cmdline"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if match in cmd and p.info["pid"] != me and "profile_py" not in cmd:
                return p
        time.sleep(0.2)
    raise SystemExit(f"no process matching {match!r} within {timeout:.0f} s")


def short(frame: str) -> str:
    m = FRAME.match(frame)
    if not m:
        return frame
    file = m["file"]
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{m['fn']} ({file})"


def summarize(raw: Path, top: int) -> tuple[str, int]:
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        frames = [short(f) for f in stack.split(";")]
        # py-spy (no --idle) samples only running threads; the first frame is the thread.
        total += count
        own[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    rows = ["| own % | function |", "|---:|---|"]
    rows += [f"| {100 * c / total:.1f} | `{f}` |" for f, c in own.most_common(top)]
    rows += ["", "| incl. % | function |", "|---:|---|"]
    rows += [f"| {100 * c / total:.1f} | `{f}` |" for f, c in incl.most_common(top)]
    return "\n".join(rows) + "\n", total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--match", required=True, help="substring of the command line to profile")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--delay", type=float, default=2.0, help="seconds to wait after the process appears")
    ap.add_argument("--out", type=Path, required=True, help="prefix of the output files")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    raw = args.out.with_suffix(".raw.txt")
    bench = subprocess.Popen(cmd)
    target = find(args.match, timeout=300)
    time.sleep(args.delay)
    rec = subprocess.run(
        [spy, "record", "-p", str(target.pid), "-d", str(int(args.seconds)), "-f", "raw", "-o", str(raw)],
        capture_output=True,
        text=True,
        check=False,
    )
    bench.wait()
    if not raw.exists():
        raise SystemExit(f"py-spy failed: {rec.stderr[-500:]}")
    table, total = summarize(raw, args.top)
    md = args.out.with_suffix(".md")
    md.write_text(
        f"Profile of `{args.match}` (pid {target.pid}) for {args.seconds:.0f} s during "
        f"`{' '.join(cmd)}`: {total} samples of running threads (py-spy, 100 Hz).\n\n" + table
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
