"""Python-level timings of bytecache's Store vs diskcache (same run, same disk).

Run: python benches/py_store.py   (after `maturin develop --release`)
     python benches/py_store.py --scale   (get among 1k vs 1M entries; a few minutes)
Reports the median over batches of per-call times.
"""

from __future__ import annotations

import json
import pickle
import statistics
import subprocess
import sys
import tempfile
import time

import diskcache
import numpy as np

from bytecache import _bytecache as bc

BATCH, BATCHES = 1000, 200
PAYLOAD = pickle.dumps({"result": list(range(10))}, protocol=5)  # ~60 bytes


def per_call(fn) -> float:
    times = []
    for _ in range(BATCHES):
        t = time.perf_counter()
        for _ in range(BATCH):
            fn()
        times.append((time.perf_counter() - t) / BATCH)
    return statistics.median(times) * 1e6


def new_process_ms(code: str, *args: str, runs: int = 9) -> float:
    out = []
    for _ in range(runs):
        r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        out.append(float(r.stdout))
    return statistics.median(out)


BC_BIG = """
import pickle, sys, time
import numpy
from bytecache import _bytecache as bc
s = bc.Store(sys.argv[1], secret_path=sys.argv[2])
t = time.perf_counter()
payload, buffers, files, dirs, secs = s.get(bytes(16))
a = pickle.loads(payload, buffers=buffers)
dt = time.perf_counter() - t
assert a.shape == (100 * 2**20 // 8,)
print(dt * 1e3)
"""

DC_BIG = """
import sys, time
import numpy, diskcache
c = diskcache.Cache(sys.argv[1])
t = time.perf_counter()
a = c.get("big")
dt = time.perf_counter() - t
assert a.shape == (100 * 2**20 // 8,)
print(dt * 1e3)
"""


def scale(n_small: int = 1_000, n_large: int = 1_000_000) -> dict[str, float]:
    """A get of a random key among N entries, N = 1k and 1M, after one pass over
    all keys (the steady state of a long-running process)."""
    import random

    res: dict[str, float] = {}
    rng = random.Random(1)
    for n in (n_small, n_large):
        d = tempfile.mkdtemp()
        s = bc.Store(d + "/store", secret_path=d + "/secret", max_bytes=8 << 30)
        dc = diskcache.Cache(d + "/diskcache", size_limit=8 << 30)
        keys = [i.to_bytes(16, "little") for i in range(n)]
        g = b"g" * 16
        for k in keys:
            s.put(k, g, PAYLOAD, [], [], [], [], 0.01)
        with dc.transact():
            for i in range(n):
                dc.set(i, PAYLOAD)
        for k in keys:
            s.get(k)
        order = [rng.randrange(n) for _ in range(BATCH * BATCHES)]
        it = iter(order * 2)
        res[f"bytecache get, random key among {n} (us)"] = per_call(
            lambda s=s, keys=keys, it=it: s.get(keys[next(it)]))
        it2 = iter(order * 2)
        res[f"diskcache get, random key among {n} (us)"] = per_call(
            lambda dc=dc, it2=it2: dc.get(next(it2)))
        dc.close()
    for tool in ("bytecache", "diskcache"):
        res[f"{tool} get ratio {n_large} / {n_small}"] = (
            res[f"{tool} get, random key among {n_large} (us)"]
            / res[f"{tool} get, random key among {n_small} (us)"])
    return res


def main() -> None:
    if "--scale" in sys.argv:
        print(json.dumps(scale(), indent=1))
        return
    d = tempfile.mkdtemp()
    s = bc.Store(d + "/store", secret_path=d + "/secret")
    dc = diskcache.Cache(d + "/diskcache")
    g = b"g" * 16
    k = b"k" * 16
    s.put(k, g, PAYLOAD, [], [], [], [], 0.01)
    dc.set("k", PAYLOAD)
    res: dict[str, float] = {}
    res["bytecache small get (us)"] = per_call(lambda: s.get(k))
    res["diskcache small get (us)"] = per_call(lambda: dc.get("k"))
    n = iter(range(10**9))
    res["bytecache small put (us)"] = per_call(
        lambda: s.put(next(n).to_bytes(16, "little"), g, PAYLOAD, [], [], [], [], 0.01)
    )
    m = iter(range(10**9))
    res["diskcache small put (us)"] = per_call(lambda: dc.set(next(m), PAYLOAD))

    arr = np.arange(100 * 2**20 // 8, dtype=np.float64)
    bufs: list[pickle.PickleBuffer] = []
    payload = pickle.dumps(arr, protocol=5, buffer_callback=bufs.append)
    s.put(bytes(16), g, payload, [b.raw() for b in bufs], [], [], [], 1.0)
    dc.set("big", arr)
    res["bytecache 100 MiB get, new process (ms)"] = new_process_ms(
        BC_BIG, d + "/store", d + "/secret"
    )
    res["diskcache 100 MiB get, new process (ms)"] = new_process_ms(DC_BIG, d + "/diskcache")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
