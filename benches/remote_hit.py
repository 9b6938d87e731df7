"""First hit in a new process of a small and of a 100 MiB result served by
the remote tier (a `redis-server` on loopback), beside the local hit and
beside the plain way to share a result through Redis (`pickle` + one
`SET`/`GET` with the same client), in one run.

    python benches/remote_hit.py [--runs 7]

Every figure is the median over fresh processes of the time the child
spends in the first call (numpy, redis and bytecache are imported before
the clock starts; modules are loaded from their compiled files, as in an
installed package):

* remote hit: an empty local cache; the entry is fetched, verified
  (signature, chunk digests), written into the local store and served
  from it;
* local hit: the entry is in the local store (the next run after a
  remote hit);
* plain Redis: `pickle.loads(r.get(key))`, no signature, no chunking, no
  local copy (what a hand-made Redis cache does).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

PRELUDE = """
import json, os, pickle, sys, time
import numpy as np
import redis
import bytecache
SIZE = sys.argv[2]

def small():
    return {"name": "small", "values": list(range(100))}

def large():
    return np.arange(100 * 2**20 // 8, dtype=np.float64)

compute = small if SIZE == "small" else large
"""

MEMO_CHILD = PRELUDE + """
f = bytecache.memoize(compute)
t0 = time.perf_counter()
value = f()
t1 = time.perf_counter()
s = bytecache.stats()
assert s["misses"] == 0 or sys.argv[3] == "fill", s
print(json.dumps({"total": t1 - t0, "remote_hits": s["remote_hits"]}))
"""

PLAIN_CHILD = PRELUDE + """
r = redis.Redis.from_url(os.environ["BYTECACHE_REMOTE"])
if sys.argv[3] == "fill":
    r.set("plain:" + SIZE, pickle.dumps(compute(), protocol=5))
t0 = time.perf_counter()
value = pickle.loads(r.get("plain:" + SIZE))
t1 = time.perf_counter()
print(json.dumps({"total": t1 - t0}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child(code: str, env: dict[str, str], *args: str) -> dict[str, float]:
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         env={**base, **env})
    if out.returncode != 0 or "Warning" in out.stderr:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    runs = ap.parse_args().runs
    root = tempfile.mkdtemp()
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no", "--dir", root],
                              stdout=subprocess.DEVNULL)
    env = {"BYTECACHE_REMOTE": f"redis://127.0.0.1:{port}/0", "HOME": root,
           "XDG_CONFIG_HOME": os.path.join(root, "config")}
    try:
        time.sleep(0.5)
        med: dict[str, float] = {}
        for size in ("small", "large"):
            fill = {**env, "BYTECACHE_DIR": os.path.join(root, "fill")}
            child(MEMO_CHILD, fill, "x", size, "fill")  # computes, uploads at exit
            child(PLAIN_CHILD, fill, "x", size, "fill")
            samples: dict[str, list[float]] = {}
            for i in range(runs):
                fresh = {**env, "BYTECACHE_DIR": os.path.join(root, f"{size}{i}")}
                remote = child(MEMO_CHILD, fresh, "x", size, "measure")
                local = child(MEMO_CHILD, fresh, "x", size, "measure")
                plain = child(PLAIN_CHILD, fresh, "x", size, "measure")
                if remote["remote_hits"] != 1 or local["remote_hits"] != 0:
                    raise RuntimeError(f"not a remote then a local hit: {remote} {local}")
                for name, r in (("remote hit", remote), ("local hit", local),
                                ("plain Redis", plain)):
                    samples.setdefault(name, []).append(r["total"])
            label = "small result" if size == "small" else "100 MiB result"
            m = {k: statistics.median(v) * 1e3 for k, v in samples.items()}
            for k, v in m.items():
                med[f"{label}: {k} (ms)"] = v
            med[f"{label}: ratio remote hit / local hit"] = m["remote hit"] / m["local hit"]
            med[f"{label}: ratio remote hit / plain Redis"] = m["remote hit"] / m["plain Redis"]
        print(f"first hit in a new process over loopback Redis, median of {runs}:")
        for k, v in med.items():
            print(f"  {k:<52} {v:10.3f}")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
