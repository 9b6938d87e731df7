"""Instructions per warm hit, bytecache against functools.lru_cache, counted by
callgrind: a load-independent figure for small deltas on a shared machine.

    python benches/hit_instructions.py            # needs valgrind on PATH
    python benches/hit_instructions.py --calls 5000

Each cell runs a fresh interpreter twice under `valgrind --tool=callgrind`
(0 and N calls after a first call that stores the result) and reports
(Ir(N) - Ir(0)) / N: the loop, the call and the tool's work, nothing of
start-up. The miss row is bytecache storing a new small result per call.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile

CHILD = """
import functools, sys, tempfile
import bytecache

tool, workload, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = tempfile.mkdtemp()

def f_int(x):
    return x + 1

def f_kwargs(*, alpha, beta, gamma, delta):
    return (alpha, beta, gamma, len(delta))

wrap = (functools.lru_cache(maxsize=None) if tool == "lru_cache"
        else bytecache.memoize(cache_dir=d))
fi, fk = wrap(f_int), wrap(f_kwargs)
kw = {"alpha": 1, "beta": 2.5, "gamma": "three", "delta": (4, 5, 6)}
fi(123456), fk(**kw)
if workload == "int":
    for _ in range(n):
        fi(123456)
elif workload == "kwargs":
    for _ in range(n):
        fk(**kw)
else:  # miss: a new small result stored per call
    for i in range(n):
        fi(i)
"""

ROWS = [("hit: f(int)", "int"), ("hit: f(**4 kwargs)", "kwargs"), ("miss: store f(int)", "miss")]


def instructions(script: str, tool: str, workload: str, n: int) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, script, tool, workload, str(n)],
        capture_output=True, text=True, check=True,
    ).stderr
    found = re.search(r"Collected : (\d+)", out)
    if found is None:
        raise RuntimeError(f"no callgrind total in: {out[-500:]}")
    return int(found.group(1))


def per_call(script: str, tool: str, workload: str, n: int) -> float:
    return (instructions(script, tool, workload, n) - instructions(script, tool, workload, 0)) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20_000)
    a = ap.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        script = f"{tmp}/child.py"
        with open(script, "w") as f:
            f.write(CHILD)
        print("| workload | bytecache (instructions/call) | lru_cache | bytecache/lru_cache |")
        print("|---|---:|---:|---:|")
        for label, workload in ROWS:
            bc = per_call(script, "bytecache", workload, a.calls if workload != "miss" else 500)
            if workload == "miss":
                print(f"| {label} | {bc:,.0f} | | |")
                continue
            lru = per_call(script, "lru_cache", workload, a.calls)
            print(f"| {label} | {bc:,.0f} | {lru:,.0f} | {bc / lru:.2f} |")


if __name__ == "__main__":
    main()
