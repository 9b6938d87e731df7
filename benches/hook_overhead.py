"""Cost of `bytecache.enable()` where it does nothing, and of a decorator-free hit
(not a test; tests never assert on time).

    python benches/hook_overhead.py              # both figures, in this process
    python benches/hook_overhead.py fib [--enable] [--n 27]
    python benches/hook_overhead.py hit

`fib` runs recursive fib(n) in a module nobody marked, with `enable()` on when
`--enable` is given (both variants import bytecache): run it as two whole
processes side by side, A/B paired, to compare, e.g. with `/usr/bin/time` or
hyperfine. On 3.12+ calls are intercepted per function (nothing marked: CPython
runs untouched); 3.11 uses a PEP 523 frame hook, which costs every Python call
its inlining (the floor is printed: a C hook that only forwards).

`hit` times a decorator-free hit of f(int), answered from the results kept in
this process, next to a plain call and a `functools.lru_cache` hit.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import types
from pathlib import Path

import bytecache
from bytecache import _bytecache


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def fib_calls(n: int) -> int:
    a, b = 1, 1
    for _ in range(n):
        a, b = b, a + b + 1
    return a


def timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def build_forwarding_hook():
    """Compile tests/other_hook.c (a C PEP 523 hook that only forwards): the
    floor of any frame hook on this machine. None without a compiler/headers."""
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


def fib_figures(n: int, repeat: int, enable: bool | None) -> None:
    """`enable`: None compares off and on in this process; a bool runs one side."""
    calls = fib_calls(n)
    sides = [False, True] if enable is None else [enable]
    for on in sides:
        if on:
            bytecache.enable(modules=["nothing_is_marked"])
        t = statistics.median(timed(lambda: fib(n), repeat))
        label = "enable() on, nothing marked" if on else "plain"
        print(f"fib({n}) {label:28} {t * 1e9 / calls:6.1f} ns/call  ({t * 1e3:.1f} ms)")
        if on:
            bytecache.disable()
    if enable is None and _bytecache.hook_mechanism() == "frame":
        floor = build_forwarding_hook()
        if floor is not None:
            floor.install()
            t = statistics.median(timed(lambda: fib(n), repeat))
            floor.uninstall()
            print(f"fib({n}) {'C hook that only forwards':28} {t * 1e9 / calls:6.1f} ns/call "
                  "(the PEP 523 floor)")


def square(x: int) -> int:
    return x * x


@functools.cache
def square_lru(x: int) -> int:
    return x * x


def target_module():
    """A module of its own holding `square`, so that `enable()` marks it and
    not this script's timing code."""
    m = types.ModuleType("hook_overhead_target")
    exec("def square(x):\n    return x * x\n", m.__dict__)
    sys.modules[m.__name__] = m
    return m


def hit_figures(loops: int, repeat: int) -> None:
    xs = [5] * loops

    def per_call(f) -> float:
        empty = timed(lambda: [x for x in xs], repeat)
        full = timed(lambda: [f(x) for x in xs], repeat)
        return statistics.median(b - a for a, b in zip(empty, full, strict=True)) * 1e9 / loops

    plain = per_call(square)
    square_lru(5)
    lru = per_call(square_lru)
    target = target_module()
    with tempfile.TemporaryDirectory() as cache:
        bytecache.enable([target.__name__], min_seconds=0, cache_dir=cache)
        target.square(5)  # a miss: stored, and kept in this process
        hit = per_call(target.square)
        stats = bytecache.stats()
        bytecache.disable()
    assert stats["hits"] >= loops * repeat, stats
    print(f"square(5) plain call              {plain:6.1f} ns/call")
    print(f"square(5) lru_cache hit           {lru:6.1f} ns/call")
    print(f"square(5) decorator-free hit      {hit:6.1f} ns/call  "
          f"({_bytecache.hook_mechanism()} mechanism)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", nargs="?", choices=["all", "fib", "hit"], default="all")
    ap.add_argument("--enable", action="store_true", help="fib: with enable() on")
    ap.add_argument("--n", type=int, default=27)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--loops", type=int, default=1_000_000)
    a = ap.parse_args()
    print(f"Python {sys.version.split()[0]}, {_bytecache.hook_mechanism()} mechanism")
    if a.what in ("all", "fib"):
        fib_figures(a.n, a.repeat, a.enable if a.what == "fib" else None)
    if a.what in ("all", "hit"):
        hit_figures(a.loops, a.repeat)


if __name__ == "__main__":
    main()
