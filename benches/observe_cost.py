"""What observing a miss costs (issue: Safety II).

    python benches/observe_cost.py [--repeat N]

For each workload, the body run plainly and the same body run inside an
active observation (`_observe.Observation().start()` ... `.stop()`: what a
miss adds around the call), the best of N interleaved runs (the least
disturbed by other processes: timeit's rule), and their ratio.
Targets: a numpy/pandas pipeline step within 1.10x, a pure-Python call-heavy
function within 1.5x. Also what idle observation costs code outside misses:
calls of watched C functions (`time.time`, `os.stat`) with bytecache's
observer installed, against a fresh interpreter without bytecache.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def python_calls() -> int:
    return fib(22)


def numpy_step() -> float:
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.random((400, 400))
    return float(np.linalg.solve(a @ a.T + np.eye(400), a.sum(axis=1)).sum())


def pandas_step() -> float:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"k": rng.integers(0, 1000, 200_000), "v": rng.random(200_000),
                       "s": rng.integers(0, 50, 200_000).astype(str)})
    g = df.groupby(["k", "s"])["v"].agg(["mean", "sum"]).reset_index()
    m = g.merge(df.groupby("k")["v"].max().rename("mx").reset_index(), on="k")
    return float(m["mean"].sum() + m["mx"].sum())


_DIR = tempfile.mkdtemp()
for _i in range(50):
    with open(os.path.join(_DIR, f"part{_i}.csv"), "w") as _f:
        _f.write("a,b\n" + "\n".join(f"{j},{j * 2}" for j in range(200)))


def files_step() -> int:
    total = 0
    for i in range(50):
        path = os.path.join(_DIR, f"part{i}.csv")
        if os.path.exists(path) and os.path.getsize(path) > 0:
            with open(path) as f:
                total += sum(int(line.split(",")[1]) for line in f.read().splitlines()[1:])
    return total


WORKLOADS = {
    "pure-Python calls (fib 22)": (python_calls, 1.5),
    "numpy step (solve 400x400)": (numpy_step, 1.10),
    "pandas step (groupby+merge 2e5 rows)": (pandas_step, 1.10),
    "files step (50 files: exists, getsize, read)": (files_step, 1.5),
}


def measure(fn, repeat: int) -> tuple[float, float]:
    from bytecache import _observe

    _observe.install()
    fn()  # warm up (imports, caches)
    plain, observed = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        plain.append(time.perf_counter() - t)
        obs = _observe.Observation()
        t = time.perf_counter()
        obs.start()
        try:
            fn()
        finally:
            obs.stop()
        observed.append(time.perf_counter() - t)
    return min(plain), min(observed)


IDLE = """
import time, os, sys
if sys.argv[1] == "with":
    import bytecache
    from bytecache import _observe
    _observe.install()
def loop():
    t = time.perf_counter()
    for _ in range(200_000):
        time.time()
        os.stat(".")
    return time.perf_counter() - t
loop()
print(min(loop() for _ in range(5)))
"""


def idle(repeat: int) -> tuple[float, float]:
    plain, observed = [], []
    for _ in range(repeat):
        for mode, out in (("without", plain), ("with", observed)):
            r = subprocess.run([sys.executable, "-c", IDLE, mode], capture_output=True,
                               text=True, check=True)
            out.append(float(r.stdout))
    return min(plain), min(observed)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    rows = []
    print(f"{'workload':46} {'plain':>10} {'observed':>10} {'ratio':>7} {'target':>7}")
    for name, (fn, target) in WORKLOADS.items():
        try:
            p, o = measure(fn, args.repeat)
        except ImportError as e:
            print(f"{name:46} skipped ({e})")
            continue
        rows.append({"workload": name, "plain_s": p, "observed_s": o, "ratio": o / p,
                     "target": target})
        print(f"{name:46} {p * 1e3:8.2f}ms {o * 1e3:8.2f}ms {o / p:6.3f}x {target:6.2f}x")
    p, o = idle(max(3, args.repeat // 2))
    rows.append({"workload": "idle: 200k time.time()+os.stat() outside misses",
                 "plain_s": p, "observed_s": o, "ratio": o / p, "target": None})
    print(f"{'idle: 200k time.time()+os.stat(), no miss':46} {p * 1e3:8.2f}ms {o * 1e3:8.2f}ms "
          f"{o / p:6.3f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
