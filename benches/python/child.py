"""A fresh process for the workloads that need one. Prints one JSON object as the last line
of stdout; computations are reported on stderr by the workload functions themselves.

    python child.py load|cold TOOL CACHE_DIR
    python child.py contend TOOL CACHE_DIR GO_FILE KEYS INDEX
    python child.py hook REPEATS
"""

from __future__ import annotations

import json
import os
import sys
import time

T_START = time.perf_counter()

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import workloads  # noqa: E402

import tools  # noqa: E402


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def load(tool: str, cache_dir: str) -> None:
    f = tools.wrap(tool, workloads.f_big_result, cache_dir)
    t0 = time.perf_counter()
    value = f(0)
    t1 = time.perf_counter()
    ok = value.shape == (100 * workloads.MIB // 8,) and float(value[-1]) == value.shape[0] - 1
    tools.close_all()
    emit({"seconds": t1 - t0, "setup": t0 - T_START, "ok": bool(ok)})


def cold(tool: str, cache_dir: str) -> None:
    f = tools.wrap(tool, workloads.f_cold, cache_dir)
    t0 = time.perf_counter()
    value = f(7)
    t1 = time.perf_counter()
    tools.close_all()
    emit({"seconds": t1 - t0, "setup": t0 - T_START, "ok": value["x"] == 7})


def contend(tool: str, cache_dir: str, go_file: str, keys: int, index: int) -> None:
    f = tools.wrap(tool, workloads.f_contended, cache_dir)
    f(-1 - index)  # warm up (imports, store open), a key of its own, outside the timed region
    emit({"ready": True})
    while not os.path.exists(go_file):
        time.sleep(0.001)
    t0 = time.time()
    ok = all(f(k) == k * 7 for k in range(keys))
    t1 = time.time()
    tools.close_all()
    emit({"start": t0, "end": t1, "ok": ok})


def hook(repeats: int) -> None:
    import tempfile
    import types
    import warnings

    import bytecache

    if not hasattr(bytecache, "enable"):
        emit({"status": "n/a", "reason": "bytecache.enable() does not exist in this build"})
        return

    def sample(fn) -> list[float]:
        out = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        return out

    def fib() -> None:
        workloads.fib(25)

    sample(fib), sample(workloads.pipeline)  # warm-up
    base, base_pipeline = sample(fib), sample(workloads.pipeline)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Nothing of the benchmark is marked: only a module that does not exist.
        bytecache.enable(modules=["nothing_here"])
    is_enabled = getattr(bytecache, "is_enabled", None)
    active = bool(is_enabled()) if is_enabled is not None else None
    hooked, hooked_pipeline = sample(fib), sample(workloads.pipeline)
    if hasattr(bytecache, "disable"):
        bytecache.disable()
    after = sample(fib)

    # A decorator-free hit: f(int) of a marked module, called in a loop.
    marked = types.ModuleType("bench_marked")
    exec("def f(x):\n    return x + 1\n", marked.__dict__)
    sys.modules["bench_marked"] = marked
    bytecache.enable(modules=["bench_marked"], min_seconds=0, cache_dir=tempfile.mkdtemp())
    f = marked.f
    f(123456)  # the miss that stores it

    def hits(n: int = 100_000) -> None:
        for _ in range(n):
            f(123456)

    hit_times = [t / 100_000 for t in sample(hits)]
    bytecache.disable()
    emit({
        "status": "ok",
        "base": base,
        "hooked": hooked,
        "after": after,
        "base_pipeline": base_pipeline,
        "hooked_pipeline": hooked_pipeline,
        "auto_hit": hit_times,
        "warnings": [str(w.message) for w in caught],
        "is_enabled": active,
    })


def main() -> None:
    mode = sys.argv[1]
    if mode == "load":
        load(sys.argv[2], sys.argv[3])
    elif mode == "cold":
        cold(sys.argv[2], sys.argv[3])
    elif mode == "contend":
        contend(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
    elif mode == "hook":
        hook(int(sys.argv[2]))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
