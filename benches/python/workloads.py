"""The functions the benchmark memoizes, and nothing else.

This module is imported both by the driver (`bench.py`) and by the child processes it
starts (`child.py`), so every tool sees the same module and qualified name in both.

A function that really runs (a miss) prints one `@@computed` line on stderr. That is how
the driver counts computations, including those in other processes, without the function
writing a file or mutating a global (both of which would, correctly, make bytecache refuse
to store the result).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

MARK = "@@computed"
MIB = 1 << 20


def computed(tag: object) -> None:
    # Never through sys.stderr: bytecache captures what a stored call prints
    # and replays it on every hit, which would count hits as computations.
    # In-process runs set `sys._bench_sink` (an attribute of a standard-library
    # module, so the counter is not part of any key); children report on fd 2.
    try:
        sink = sys._bench_sink
    except AttributeError:
        os.write(2, f"{MARK} {tag}\n".encode())
    else:
        sink(tag)


# --- warm hits: cheap bodies, small results; the cost measured is the tool's ------------


def f_noargs():
    computed("noargs")
    return 42


def f_int(x):
    computed("int")
    return x + 1


def f_str(s):
    computed("str")
    return len(s)


def f_tuple(t):
    computed("tuple")
    return sum(t)


def f_kwargs(*, alpha, beta, gamma, delta):
    computed("kwargs")
    return (alpha, beta, gamma, len(delta))


def f_array(a):
    computed("array")
    return float(a[0])


def f_big_array(a):
    computed("big_array")
    return float(a[0])


# --- misses, large results, many entries --------------------------------------------------


def f_miss(i):
    computed("miss")
    return [i, i * 2.0, "small result"]


def f_big_result(seed):
    computed("big_result")
    return np.arange(100 * MIB // 8, dtype=np.float64) + seed


def f_cold(x):
    computed("cold")
    return {"x": x, "values": list(range(10))}


def f_entry(i):
    computed("entry")
    return i * 3


def f_contended(k):
    computed(k)
    time.sleep(0.05)  # a computation worth sharing between processes
    return k * 7


# --- decorator-free hook overhead: plain recursive code nobody marked ----------------------


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def pipeline():
    """A small numpy (and pandas, when installed) pipeline: vectorized work with a
    few Python calls per step, as in a notebook."""
    rng = np.random.default_rng(0)
    x = rng.random((100_000, 8))
    w = rng.random((8, 8))
    for _ in range(10):
        x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-9)
        x = np.tanh(x @ w)
    total = float(x.sum())
    try:
        import pandas as pd
    except ImportError:
        return total
    df = pd.DataFrame(x, columns=[f"c{i}" for i in range(8)])
    df["g"] = (df["c0"] * 10).round().astype(int)
    return total + float(df.groupby("g").mean().sum().sum())


# --- arguments ----------------------------------------------------------------------------


def make_args(name: str) -> tuple[tuple, dict]:
    """The (args, kwargs) of one warm-hit workload; deterministic, so a child process
    builds the same arguments."""
    rng = np.random.default_rng(12345)
    if name == "noargs":
        return (), {}
    if name == "int":
        return (123456,), {}
    if name == "str":
        return ("x" * 1023 + "y",), {}
    if name == "tuple":
        return (tuple(float(v) for v in rng.random(10)),), {}
    if name == "kwargs":
        return (), {"alpha": 1, "beta": 2.5, "gamma": "three", "delta": (4, 5, 6)}
    if name == "array":
        return (rng.random(MIB // 8),), {}
    if name == "big_array":
        return (rng.random(100 * MIB // 8),), {}
    raise KeyError(name)
