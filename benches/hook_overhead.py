"""Overhead of the PEP 523 frame hook (not a test).

    python benches/hook_overhead.py [--repeat 5]

1. recursive fib(25): no hook vs hook installed with nothing marked (the
   price every Python call pays once `bytecache.enable()` is on; the PEP 523
   floor measured on 3.11.7 is ~1.32x, from lost call inlining);
2. a marked function hit through a trivial in-memory policy, ns per call,
   next to a plain call and a functools.lru_cache hit.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from bytecache import _bytecache as B


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


FIB_CALLS = 242785  # calls made by fib(25)


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def build_forwarding_hook():
    """Compile tests/other_hook.c (a C hook that only counts and forwards):
    the PEP 523 floor on this machine. None without a compiler/headers."""
    cc = shutil.which("cc") or shutil.which("gcc")
    include = sysconfig.get_paths()["include"]
    src = Path(__file__).resolve().parent.parent / "tests" / "other_hook.c"
    if cc is None or not Path(include, "internal", "pycore_frame.h").exists():
        return None
    out = Path(tempfile.mkdtemp())
    so = out / ("other_hook" + sysconfig.get_config_var("EXT_SUFFIX"))
    r = subprocess.run([cc, "-shared", "-fPIC", "-O2", f"-I{include}", f"-I{include}/internal",
                        str(src), "-o", str(so)], capture_output=True)
    if r.returncode != 0:
        return None
    sys.path.insert(0, str(out))
    return importlib.import_module("other_hook")


def square(x: int) -> int:
    return x * x


@functools.cache
def square_lru(x: int) -> int:
    return x * x


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--loops", type=int, default=1_000_000)
    a = ap.parse_args()
    print(f"Python {sys.version.split()[0]}")

    base = best(lambda: fib(25), a.repeat)
    B.hook_install(lambda f: False, lambda f, args: None, lambda t, v: None)
    hooked = best(lambda: fib(25), a.repeat)
    B.hook_uninstall()
    print(f"fib(25) no hook        {base * 1e9 / FIB_CALLS:7.1f} ns/call")
    print(f"fib(25) hook, unmarked {hooked * 1e9 / FIB_CALLS:7.1f} ns/call  ({hooked / base:.2f}x)")
    floor = build_forwarding_hook()
    if floor is not None:
        floor.install()
        fwd = best(lambda: fib(25), a.repeat)
        floor.uninstall()
        print(f"fib(25) C forward-only {fwd * 1e9 / FIB_CALLS:7.1f} ns/call  ({fwd / base:.2f}x,"
              " the PEP 523 floor)")

    n = a.loops
    xs = [5] * n

    def loop(f):
        return lambda: [f(x) for x in xs]

    empty = best(lambda: [x for x in xs], a.repeat)
    plain = best(loop(square), a.repeat) - empty
    square_lru(5)
    lru = best(loop(square_lru), a.repeat) - empty

    cache: dict[tuple, tuple] = {}

    def on_call(f, args):
        hit = cache.get(args)
        return hit if hit is not None else [args]  # a list token: never a 1-tuple

    def on_return(token, value):
        cache[token[0]] = (value,)

    B.hook_install(lambda f: f is square, on_call, on_return)
    square(5)
    hit = best(loop(square), a.repeat) - empty
    B.hook_install(lambda f: f is square, lambda f, args: None, on_return)
    consulted = best(loop(square), a.repeat) - empty
    B.hook_uninstall()
    print(f"square(5) plain call   {plain * 1e9 / n:7.1f} ns/call")
    print(f"square(5) lru_cache hit{lru * 1e9 / n:7.1f} ns/call")
    print(f"square(5) hook hit     {hit * 1e9 / n:7.1f} ns/call  (dict policy in Python)")
    print(f"square(5) on_call->None{consulted * 1e9 / n:7.1f} ns/call  (marked, run normally)")


if __name__ == "__main__":
    main()
