"""First hit of a 100 MiB result in a new process: bytecache's store alone,
bytecache through `@memoize`, and joblib with `mmap_mode='r'`, in one run.

    python benches/first_hit.py [--runs 9]

Every figure is the median over fresh processes of the time the child spends
in the measured part (numpy, bytecache and joblib are imported before the
clock starts). For `@memoize` it reports the whole first call and, apart,
its store part: opening the store (`_config.store`), the read (`store.get`)
and unpickling onto the mapped buffer (`_core._load`). The rest of that
first call is keying: fingerprinting the function and classifying the
modules it reaches (which today includes `importlib.metadata`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

# Every child starts with this: the result's size and the function whose
# first call is measured (`big()` is a miss only in the setup run).
PRELUDE = """
import json, os, pickle, sys, time
import numpy as np
N = 100 * 2**20 // 8

def big():
    return np.arange(N, dtype=np.float64)
"""

SETUP = PRELUDE + """
from bytecache import _bytecache as bc
root = sys.argv[1]
s = bc.Store(root + "/store/store", secret_path=root + "/secret")
bufs = []
payload = pickle.dumps(big(), protocol=5, buffer_callback=bufs.append)
s.put(bytes(16), bytes(16), payload, [b.raw() for b in bufs], [], [], [], 1.0)
"""

STORE_CHILD = PRELUDE + """
from bytecache import _bytecache as bc
root = sys.argv[1]
t0 = time.perf_counter()
s = bc.Store(root + "/store/store", secret_path=root + "/secret")
t1 = time.perf_counter()
payload, buffers, files, dirs, secs = s.get(bytes(16))
t2 = time.perf_counter()
a = pickle.loads(payload, buffers=buffers)
t3 = time.perf_counter()
assert a.shape == (N,) and a[-1] == N - 1
print(json.dumps({"open": t1 - t0, "get": t2 - t1, "loads": t3 - t2, "total": t3 - t0}))
"""

MEMO_CHILD = PRELUDE + """
import bytecache
from bytecache import _config, _core
os.environ["BYTECACHE_DIR"] = sys.argv[1] + "/memo"
spent = {"store": 0.0}

def timed(fn):
    def inner(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            spent["store"] += time.perf_counter() - t
    return inner

if sys.argv[2] == "measure":
    _config.store = timed(_config.store)
    _core._get = timed(_core._get)
    _core._load = timed(_core._load)
big = bytecache.memoize(big)
t0 = time.perf_counter()
a = big()
t1 = time.perf_counter()
assert a.shape == (N,) and a[-1] == N - 1
info = bytecache.stats()
print(json.dumps({"total": t1 - t0, "store": spent["store"], "hits": info["hits"]}))
"""

JOBLIB_CHILD = PRELUDE + """
import joblib
mem = joblib.Memory(sys.argv[1] + "/joblib", mmap_mode="r", verbose=0)
t0 = time.perf_counter()
f = mem.cache(big)
a = f()
t1 = time.perf_counter()
assert a.shape == (N,) and a[-1] == N - 1
print(json.dumps({"total": t1 - t0, "mmap": isinstance(a, np.memmap)}))
"""


def child(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=9)
    runs = ap.parse_args().runs
    root = tempfile.mkdtemp()
    try:
        subprocess.run([sys.executable, "-c", SETUP, root], check=True)
        child(MEMO_CHILD, root, "fill")  # computes and stores big()
        child(JOBLIB_CHILD, root)  # computes and stores big()
        samples: dict[str, list[float]] = {}
        for _ in range(runs):
            for name, r in (("store", child(STORE_CHILD, root)),
                            ("memoize", child(MEMO_CHILD, root, "measure")),
                            ("joblib mmap_mode='r'", child(JOBLIB_CHILD, root))):
                for k, v in r.items():
                    if isinstance(v, float):
                        samples.setdefault(f"{name}: {k}", []).append(v)
                if name == "memoize" and r["hits"] != 1:
                    raise RuntimeError(f"@memoize recomputed: {r}")
                if name.startswith("joblib") and not r["mmap"]:
                    raise RuntimeError("joblib did not memory-map the result")
        med = {k: statistics.median(v) * 1e3 for k, v in samples.items()}
        med["ratio: @memoize store part / joblib"] = (
            med["memoize: store"] / med["joblib mmap_mode='r': total"])
        med["ratio: @memoize whole call / joblib"] = (
            med["memoize: total"] / med["joblib mmap_mode='r': total"])
        print(f"first hit of a 100 MiB result in a new process, median of {runs} (ms):")
        for k, v in med.items():
            print(f"  {k:<40} {v:9.3f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
