"""bytecache against other memoizers, same workloads, one run.

    python benches/python/bench.py --out bench-report          # full suite (~10 min)
    python benches/python/bench.py --out /tmp/r --quick        # smoke run (~2 min)

Writes OUT/results.json, OUT/report.md and OUT/chart.png. See README.md beside this file.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import io
import json
import os
import platform
import random
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import workloads  # noqa: E402

import tools  # noqa: E402
from tools import PERSISTENT, TOOLS  # noqa: E402

CHILD = os.path.join(HERE, "child.py")


@dataclass
class Cfg:
    target_rep: float = 0.01  # seconds per repetition (loop count is calibrated to it)
    min_reps: int = 9
    max_reps: int = 31
    min_total: float = 0.3  # keep repeating until this much time was spent...
    cell_budget: float = 3.0  # ...but stop after this much (at least 3 repetitions)
    children: int = 7  # new processes per tool for the new-process workloads
    entries: int = 100_000
    entries_budget: float = 60.0  # seconds per phase (write, read) per tool
    contend_keys: int = 20
    contend_runs: int = 3
    contend_timeout: float = 60.0
    hook_reps: int = 15


@dataclass
class Result:
    workload: str
    tool: str
    status: str  # ok | n/a | skipped | error | not cached
    samples: list[float] = field(default_factory=list)  # seconds per call
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None


@dataclass
class Workload:
    id: str
    title: str
    what: str
    results: list[Result] = field(default_factory=list)


RESULTS: list[Workload] = []
ROOT_TMP = tempfile.mkdtemp(prefix="bytecache-bench-")


def log(*a: object) -> None:
    print(*a, file=sys.__stderr__, flush=True)


def fresh_dir(tag: str) -> str:
    return tempfile.mkdtemp(prefix=f"{tag.replace('.', '_')}-", dir=ROOT_TMP)


def drop(path: str) -> None:
    tools.close_all()
    shutil.rmtree(path, ignore_errors=True)


class Computations(io.TextIOBase):
    """Stands in for sys.stderr: counts the workload functions' `@@computed` lines and
    keeps everything else (warnings) for the report."""

    def __init__(self) -> None:
        self.count = 0
        self.other: list[str] = []
        self._partial = ""

    def mark(self, _tag: object) -> None:
        self.count += 1

    def write(self, s: str) -> int:
        if s.startswith(workloads.MARK):
            self.count += 1  # print() writes the mark, then its other parts, separately
            self._partial = s
            return len(s)
        *lines, self._partial = (self._partial + s).split("\n")
        for line in lines:
            if line.strip() and not line.startswith(workloads.MARK):
                self.other.append(line.strip())
        return len(s)


@contextlib.contextmanager
def watched():
    c = Computations()
    sys._bench_sink = c.mark
    try:
        with contextlib.redirect_stderr(c), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield c
    finally:
        del sys._bench_sink
    c.other.extend(f"{w.category.__name__}: {w.message}" for w in caught)


def measure(cfg: Cfg, call: Callable[[], Any]) -> list[float]:
    """timeit-style: seconds per call, one sample per repetition of `n` calls."""
    n = 1  # autorange, as timeit does: 1, 2, 5, 10, 20, 50, ... calls until >= target_rep
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            call()
        if time.perf_counter() - t0 >= cfg.target_rep or n >= 100_000:
            break
        n = n * 5 // 2 if str(n)[0] == "2" else n * 2
    samples: list[float] = []
    spent = 0.0
    while len(samples) < cfg.max_reps:
        gc_was = gc.isenabled()
        gc.disable()
        t0 = time.perf_counter()
        for _ in range(n):
            call()
        dt = time.perf_counter() - t0
        if gc_was:
            gc.enable()
        samples.append(dt / n)
        spent += dt
        if len(samples) >= cfg.min_reps and spent >= cfg.min_total:
            break
        if len(samples) >= 3 and spent >= cfg.cell_budget:
            break
    return samples


def short(e: BaseException) -> str:
    s = f"{type(e).__name__}: {e}"
    return s if len(s) < 120 else s[:117] + "..."


# --- in-process workloads ------------------------------------------------------------------

HIT_WORKLOADS = [
    ("noargs", "hit: f()", "warm hit, no arguments, small result"),
    ("int", "hit: f(int)", "warm hit, one int argument"),
    ("str", "hit: f(1 KB str)", "warm hit, a 1024-character str"),
    ("tuple", "hit: f(tuple of 10 floats)", "warm hit, tuple of 10 floats"),
    ("kwargs", "hit: f(**4 kwargs)", "warm hit, keyword arguments: int, float, str, tuple"),
    ("array", "hit: f(1 MiB array)", "warm hit, 1 MiB float64 array argument"),
    ("big_array", "hit: f(100 MiB array)", "warm hit, 100 MiB float64 array argument"),
]


def warm_hits(cfg: Cfg, tool_list: list[str]) -> None:
    for name, title, what in HIT_WORKLOADS:
        wl = Workload(f"hit_{name}", title, what + " (key computation + lookup + load)")
        RESULTS.append(wl)
        args, kwargs = workloads.make_args(name)
        func = getattr(workloads, f"f_{name}")
        for tool in tool_list:
            d = fresh_dir(tool)
            try:
                f = tools.wrap(tool, func, d)
                with watched() as c:
                    expected = f(*args, **kwargs)
                    populated = c.count
                    f(*args, **kwargs)
                    second = c.count - populated
                    samples = measure(cfg, lambda f=f, a=args, k=kwargs: f(*a, **k))
                    timed_computations = c.count - populated - second
                    again = f(*args, **kwargs)
                assert again == expected
                res = Result(wl.id, tool, "ok", samples)
                if second or timed_computations:
                    res.status = "not cached"
                    res.note = f"the function ran {timed_computations} times while timed"
                if c.other:
                    res.note = (res.note + " " + "; ".join(sorted(set(c.other)))[:200]).strip()
            except TypeError as e:
                res = Result(wl.id, tool, "n/a", note=short(e))
            except Exception as e:  # noqa: BLE001 - a failing tool is reported, not fatal
                res = Result(wl.id, tool, "error", note=short(e))
            finally:
                drop(d)
            wl.results.append(res)
            log(f"  {wl.id:<16} {tool:<18} {fmt(res.median)} {res.status} {res.note}")


def small_miss(cfg: Cfg, tool_list: list[str]) -> None:
    wl = Workload("miss_small", "miss: store a new small result",
                  "each call has a new int argument: key + lookup (miss) + trivial body + store "
                  "of a 3-element list; the cache grows during the measurement (entries noted)")
    RESULTS.append(wl)
    for tool in tool_list:
        d = fresh_dir(tool)
        counter = iter(range(10**9))
        try:
            f = tools.wrap(tool, workloads.f_miss, d)
            with watched() as c:
                samples = measure(cfg, lambda f=f, c=counter: f(next(c)))
            calls = next(counter)
            res = Result(wl.id, tool, "ok", samples, f"{calls} entries written")
            if c.count != calls:
                res.note += f"; but the function ran {c.count} times"
        except Exception as e:  # noqa: BLE001
            res = Result(wl.id, tool, "error", note=short(e))
        finally:
            drop(d)
        wl.results.append(res)
        log(f"  {wl.id:<16} {tool:<18} {fmt(res.median)} {res.note}")


def run_child(*argv: str, timeout: float = 300) -> tuple[dict[str, Any], int, float, str]:
    """(last JSON line of stdout, computations reported on stderr, wall seconds, stderr)."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, CHILD, *argv], capture_output=True, text=True,
                       timeout=timeout)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"child {argv[0]} failed: {p.stderr.strip()[-300:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    computed = sum(line.startswith(workloads.MARK) for line in p.stderr.splitlines())
    other = [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith(workloads.MARK)]
    return out, computed, wall, "\n".join(other)


def new_process(cfg: Cfg, tool_list: list[str]) -> None:
    store = Workload("big_store", "miss: compute + store a 100 MiB result",
                     "f(seed) returns a new 100 MiB float64 array (np.arange, ~same cost for "
                     "every tool); 3 distinct seeds, one call each")
    load = Workload("big_load_inproc", "100 MiB result, new process: load (in child)",
                    "a fresh Python process calls f(0) whose 100 MiB result is on disk; time of "
                    "that call measured inside the child (store open + key + read + unpickle)")
    load_wall = Workload("big_load_wall", "100 MiB result, new process: child wall time",
                         "same as above, wall time of the whole child process (interpreter "
                         "start, imports, the call, exit)")
    cold = Workload("cold_first_call", "cold start: first call in a new process (hit)",
                    "a fresh process wraps f and calls f(7) once; the result (small) is on disk; "
                    "includes opening the cache and, for bytecache, fingerprinting f")
    cold_wall = Workload("cold_wall", "cold start: child wall time",
                         "wall time of that whole child process (interpreter start, imports)")
    RESULTS.extend([store, load, load_wall, cold, cold_wall])
    for tool in tool_list:
        if tool == "plain":
            plain_process(cfg, store, (load, load_wall), (cold, cold_wall))
            continue
        if tool not in PERSISTENT:
            for wl in (store, load, load_wall, cold, cold_wall):
                wl.results.append(Result(wl.id, tool, "n/a", note="in-memory only"))
            continue
        d = fresh_dir(tool)
        try:
            f = tools.wrap(tool, workloads.f_big_result, d)
            samples = []
            with watched() as c:
                for seed in (1, 2, 0):
                    t0 = time.perf_counter()
                    f(seed)
                    samples.append(time.perf_counter() - t0)
            store.results.append(Result(store.id, tool, "ok", samples,
                                        "; ".join(sorted(set(c.other)))[:200]))
            tools.close_all()
            inproc, walls, computed, notes = [], [], 0, set()
            for _ in range(cfg.children):
                out, n, wall, other = run_child("load", tool, d)
                inproc.append(out["seconds"])
                walls.append(wall)
                computed += n
                if not out["ok"]:
                    notes.add("wrong result")
                if other:
                    notes.add(other[:200])
            status = "ok" if computed == 0 else "not cached"
            note = f"recomputed in {computed} of {cfg.children} children" if computed else ""
            note = "; ".join([note, *sorted(notes)]).strip("; ")
            load.results.append(Result(load.id, tool, status, inproc, note))
            load_wall.results.append(Result(load_wall.id, tool, status, walls, note))
        except Exception as e:  # noqa: BLE001
            for wl in (store, load, load_wall):
                if not any(r.tool == tool for r in wl.results):
                    wl.results.append(Result(wl.id, tool, "error", note=short(e)))
        finally:
            drop(d)
        log(f"  big result       {tool:<18} load {fmt(load.results[-1].median)}")

        d = fresh_dir(tool)
        try:
            f = tools.wrap(tool, workloads.f_cold, d)
            with watched():
                f(7)
            tools.close_all()
            inproc, walls, computed = [], [], 0
            for _ in range(cfg.children):
                out, n, wall, _other = run_child("cold", tool, d)
                inproc.append(out["seconds"])
                walls.append(wall)
                computed += n
            status = "ok" if computed == 0 else "not cached"
            note = f"recomputed in {computed} of {cfg.children} children" if computed else ""
            cold.results.append(Result(cold.id, tool, status, inproc, note))
            cold_wall.results.append(Result(cold_wall.id, tool, status, walls, note))
        except Exception as e:  # noqa: BLE001
            for wl in (cold, cold_wall):
                wl.results.append(Result(wl.id, tool, "error", note=short(e)))
        finally:
            drop(d)
        log(f"  cold start       {tool:<18} {fmt(cold.results[-1].median)}")


def plain_process(cfg: Cfg, store: Workload, *children: tuple[Workload, Workload]) -> None:
    """The reference for the new-process workloads: the same children calling the
    function itself (computing it), so a tool's first call can be read as plain + overhead."""
    store.results.append(Result(store.id, "plain", "n/a", note="nothing is stored"))
    for (inproc_wl, wall_wl), mode in zip(children, ("load", "cold"), strict=True):
        inproc, walls = [], []
        for _ in range(cfg.children):
            out, _n, wall, _other = run_child(mode, "plain", fresh_dir("plain"))
            inproc.append(out["seconds"])
            walls.append(wall)
        note = "computes the result (nothing is memoized)"
        inproc_wl.results.append(Result(inproc_wl.id, "plain", "ok", inproc, note))
        wall_wl.results.append(Result(wall_wl.id, "plain", "ok", walls, note))
        log(f"  {mode:<16} plain              {fmt(inproc_wl.results[-1].median)}")


def many_entries(cfg: Cfg, tool_list: list[str]) -> None:
    n_target = cfg.entries
    write = Workload("entries_write", f"{n_target // 1000}k distinct entries: write (per entry)",
                     f"f(i) for i in range({n_target}), all misses, small results; samples are "
                     "the mean per entry of each chunk of 1000; a tool that would exceed "
                     f"{cfg.entries_budget:.0f} s is stopped there and its N reported")
    read = Workload("entries_read", f"{n_target // 1000}k distinct entries: read (per entry)",
                    "then f(i) again for every entry written, shuffled order (seed 0), all hits")
    RESULTS.extend([write, read])
    chunk = 1000
    for tool in tool_list:
        d = fresh_dir(tool)
        try:
            f = tools.wrap(tool, workloads.f_entry, d)
            wsamples: list[float] = []
            spent = 0.0
            written = 0
            with watched() as c:
                while written < n_target and spent < cfg.entries_budget:
                    end, i = min(written + chunk, n_target), written
                    t0 = time.perf_counter()
                    while i < end and time.perf_counter() - t0 + spent < cfg.entries_budget:
                        f(i)
                        i += 1
                    dt = time.perf_counter() - t0
                    wsamples.append(dt / max(1, i - written))
                    written = i
                    spent += dt
                wcomputed = c.count
                order = list(range(written))
                random.Random(0).shuffle(order)
                rsamples: list[float] = []
                read_n = 0
                rspent = 0.0
                while read_n < written and rspent < cfg.entries_budget:
                    part, done = order[read_n:read_n + chunk], 0
                    t0 = time.perf_counter()
                    for i in part:
                        if time.perf_counter() - t0 + rspent >= cfg.entries_budget:
                            break
                        f(i)
                        done += 1
                    dt = time.perf_counter() - t0
                    rsamples.append(dt / max(1, done))
                    read_n += done
                    rspent += dt
                rcomputed = c.count - wcomputed
            scaled = "" if written == n_target else (
                f"SCALED DOWN: N = {written} (stopped after {spent:.0f} s; full N would take "
                f"> {cfg.entries_budget:.0f} s)")
            wnote = "; ".join(x for x in (f"N = {written}, total {spent:.2f} s", scaled) if x)
            rnote = f"{read_n} of {written} read, total {rspent:.2f} s"
            rstatus = "ok"
            if rcomputed:
                rstatus = "not cached"
                rnote += f"; {rcomputed} recomputed"
            if read_n < written:
                rnote += f" (stopped after {cfg.entries_budget:.0f} s)"
            write.results.append(Result(write.id, tool, "ok", wsamples, wnote,
                                        {"N": written, "total": spent}))
            read.results.append(Result(read.id, tool, rstatus, rsamples, rnote,
                                       {"N": read_n, "total": rspent}))
        except Exception as e:  # noqa: BLE001
            for wl in (write, read):
                if not any(r.tool == tool for r in wl.results):
                    wl.results.append(Result(wl.id, tool, "error", note=short(e)))
        finally:
            drop(d)
        log(f"  entries          {tool:<18} write {fmt(write.results[-1].median)} "
            f"read {fmt(read.results[-1].median)} {write.results[-1].note}")


def contention(cfg: Cfg, tool_list: list[str]) -> None:
    k = cfg.contend_keys
    wl = Workload("contend", f"2 processes contending on the same {k} keys",
                  f"two processes started together call f(0..{k - 1}) in the same order; each "
                  "computation sleeps 50 ms (one process alone: "
                  f"{k * 0.05:.1f} s); wall time until both finish; duplicates = computations "
                  f"beyond {k}")
    RESULTS.append(wl)
    for tool in tool_list:
        if tool not in PERSISTENT:
            wl.results.append(Result(wl.id, tool, "n/a", note="in-memory only, nothing shared"))
            continue
        times, dups = [], []
        try:
            for _ in range(cfg.contend_runs):
                d = fresh_dir(tool)
                go = os.path.join(d, "..", os.path.basename(d) + ".go")
                procs = [subprocess.Popen([sys.executable, CHILD, "contend", tool, d, go, str(k),
                                           str(j)], stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True) for j in range(2)]
                deadline = time.monotonic() + cfg.contend_timeout
                for p in procs:
                    ready, _, _ = select.select([p.stdout], [], [],
                                                max(0.0, deadline - time.monotonic()))
                    line = p.stdout.readline() if ready else ""
                    if '"ready"' not in line:
                        for q in procs:
                            q.kill()
                        err = " ".join(q.communicate()[1].strip()[-200:] for q in procs)
                        raise RuntimeError(f"child not ready after {cfg.contend_timeout:.0f} s "
                                           f"(warm-up call, distinct key per process) {err}")
                open(go, "w").close()
                try:
                    outs = [p.communicate(timeout=cfg.contend_timeout) for p in procs]
                except subprocess.TimeoutExpired:
                    for p in procs:
                        p.kill()
                    errs = [p.communicate()[1] for p in procs]
                    done = [sum(ln.startswith(workloads.MARK) for ln in e.splitlines()) - 1
                            for e in errs]
                    raise RuntimeError(
                        f"timed out: run {len(times) + 1} did not finish in "
                        f"{cfg.contend_timeout:.0f} s; computations by then: {done[0]} + "
                        f"{done[1]}; earlier runs: {times and fmt(times[0])}, dups {dups}"
                    ) from None
                if any(p.returncode for p in procs):
                    raise RuntimeError(f"child failed: {outs[0][1][-300:]} {outs[1][1][-300:]}")
                res = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
                if not all(r["ok"] for r in res):
                    raise RuntimeError("wrong result")
                computed = 0
                for _, err in outs:
                    for line in err.splitlines():
                        parts = line.split()
                        if parts[:1] == [workloads.MARK] and int(parts[1]) >= 0:
                            computed += 1
                times.append(max(r["end"] for r in res) - min(r["start"] for r in res))
                dups.append(computed - k)
                os.unlink(go)
                drop(d)
            note = f"duplicate computations per run: {', '.join(map(str, dups))} (of {k} keys)"
            wl.results.append(Result(wl.id, tool, "ok", times, note, {"duplicates": dups}))
        except Exception as e:  # noqa: BLE001
            wl.results.append(Result(wl.id, tool, "error", note=short(e)))
        log(f"  contend          {tool:<18} {fmt(wl.results[-1].median)} {wl.results[-1].note}")


def hook_overhead(cfg: Cfg) -> None:
    wl = Workload("hook", "decorator-free hook: fib(25) on unmarked code",
                  "recursive fib(25) in a module nobody marked, in a child process: plain, then "
                  "with `bytecache.enable(modules=['nothing_here'])` active (min_seconds "
                  "default); target: hooked / plain <= 1.35")
    pipe = Workload("hook_pipeline", "decorator-free hook: numpy/pandas pipeline, unmarked",
                    "workloads.pipeline() (numpy, plus pandas groupby when installed) in the same "
                    "child, plain then with the hook active and nothing marked; target: within 2 %")
    hit = Workload("hook_hit", "decorator-free hit: f(int)",
                   "a function of a module marked by `enable(modules=[...], min_seconds=0)`, "
                   "called in a loop after one miss; per call; target: <= 0.3 µs")
    RESULTS.extend([wl, pipe, hit])
    try:
        out, _, _, other = run_child("hook", str(cfg.hook_reps))
        if out["status"] != "ok":
            for w in (wl, pipe, hit):
                w.results.append(Result(w.id, "bytecache", "n/a", note=out["reason"]))
        else:
            ratio = statistics.median(out["hooked"]) / statistics.median(out["base"])
            verdict = "meets" if ratio <= 1.35 else "MISSES"
            notes = [f"hooked / plain = {ratio:.3f} ({verdict} the 1.35 target)",
                     f"is_enabled() = {out['is_enabled']}",
                     f"after disable(): median {fmt(statistics.median(out['after']))}"]
            notes += out["warnings"]
            if other:
                notes.append(other[:200])
            wl.results.append(Result(wl.id, "plain (no hook)", "ok", out["base"]))
            wl.results.append(Result(wl.id, "bytecache", "ok", out["hooked"], "; ".join(notes),
                                     {"ratio": ratio}))
            pratio = (statistics.median(out["hooked_pipeline"])
                      / statistics.median(out["base_pipeline"]))
            pverdict = "meets" if pratio <= 1.02 else "MISSES"
            pipe.results.append(Result(pipe.id, "plain (no hook)", "ok", out["base_pipeline"]))
            pipe.results.append(Result(pipe.id, "bytecache", "ok", out["hooked_pipeline"],
                                       f"hooked / plain = {pratio:.3f} ({pverdict} the 2 % target)",
                                       {"ratio": pratio}))
            hverdict = "meets" if statistics.median(out["auto_hit"]) <= 0.3e-6 else "MISSES"
            hit.results.append(Result(hit.id, "bytecache", "ok", out["auto_hit"],
                                      f"{hverdict} the 0.3 µs target"))
    except Exception as e:  # noqa: BLE001
        wl.results.append(Result(wl.id, "bytecache", "error", note=short(e)))
    for w in (wl, pipe, hit):
        for r in w.results:
            log(f"  {w.id:<16} {r.tool:<18} {fmt(r.median)} {r.status} {r.note}")


# --- identity layer, measured from Python ---------------------------------------------------


def identity(cfg: Cfg, tool_list: list[str]) -> None:
    import bytecache
    from bytecache import _bytecache

    big = workloads.make_args("big_array")[0][0]
    gb = big.nbytes / 1e9
    wl = Workload("hash_100mib", "hash a 100 MiB float64 array",
                  "what each tool does to a 100 MiB array argument to key it: bytecache "
                  "`hash_value`, `joblib.hash`, cachier's default hash_func (pickle + sha256), "
                  "diskcache's `Disk.put` of the key (pickle + pickletools.optimize; "
                  "SQLite then compares the blob)")
    RESULTS.append(wl)
    import diskcache
    import joblib
    from cachier.config import _default_hash_func

    dc = diskcache.Cache(fresh_dir("dc"))
    tools._open.append(dc)
    hashers = {
        "bytecache": lambda: _bytecache.hash_value(big),
        "joblib": lambda: joblib.hash(big),
        "cachier": lambda: _default_hash_func((big,), {}),
        "diskcache": lambda: dc.disk.put(("f", big)),
    }
    for tool in tool_list:
        if tool not in hashers:
            note = "keys by `hash()`: ndarray is unhashable" if tool == "lru_cache" else \
                "same as diskcache"
            wl.results.append(Result(wl.id, tool, "n/a", note=note))
            continue
        samples = measure(cfg, hashers[tool])
        wl.results.append(Result(wl.id, tool, "ok", samples,
                                 f"{gb / statistics.median(samples):.2f} GB/s"))
        log(f"  hash 100 MiB     {tool:<18} {fmt(wl.results[-1].median)} {wl.results[-1].note}")

    string_frame(cfg, tool_list, dc)

    wl = Workload("key_int", "build the key of f(int)",
                  "bytecache `Memo(f).key({'x': 123456})`, what every call computes (the "
                  "function's plan built once, then its guards checked and the argument "
                  "hashed); joblib `MemorizedFunc._get_args_id`; diskcache "
                  "`args_to_key` + `Disk.put`; cachier default hash_func; lru_cache "
                  "`functools._make_key` + `hash`")
    RESULTS.append(wl)
    from diskcache.core import args_to_key
    mem_f = joblib.Memory(fresh_dir("jl"), verbose=0).cache(workloads.f_int)
    x = 123456
    memo = _bytecache.Memo(workloads.f_int)
    keyers = {
        "bytecache": lambda: memo.key({"x": x}),
        "lru_cache": lambda: hash(functools_make_key((x,), {}, False)),
        "joblib": lambda: mem_f._get_args_id(x),
        "diskcache": lambda: dc.disk.put(args_to_key(("workloads.f_int",), (x,), {}, False, ())),
        "cachier": lambda: _default_hash_func((x,), {}),
    }
    for tool in tool_list:
        if tool not in keyers:
            wl.results.append(Result(wl.id, tool, "n/a", note="same as diskcache"))
            continue
        samples = measure(cfg, keyers[tool])
        wl.results.append(Result(wl.id, tool, "ok", samples))
        log(f"  key f(int)       {tool:<18} {fmt(wl.results[-1].median)}")
    tools.close_all()

    first = Workload("fingerprint_first", "fingerprint: function reaching 10 helpers, first time",
                     "`Memo(top).key({'x': 1})` on a freshly imported local module where `top` "
                     "calls 10 "
                     "helper functions (which read a module constant); nothing cached yet for "
                     "these code objects. Only bytecache tracks code; the others key on the "
                     "function's name (joblib also compares the function's own source, not "
                     "its helpers')")
    warm = Workload("fingerprint_warm", "fingerprint: same function, again (cached)",
                    "`memo.key({'x': 1})` again on the same, unchanged function (its plan's "
                    "guards hold: no walk)")
    RESULTS.extend([first, warm])
    moddir = fresh_dir("fpmods")
    sys.path.insert(0, moddir)
    firsts = []
    reps = max(cfg.min_reps, 25)
    for i in range(reps):
        name = f"fp_mod_{os.getpid()}_{i}"
        helpers = "\n".join(
            f"def helper{j}(x):\n    return x * {j + i} + SCALE\n" for j in range(10))
        body = " + ".join(f"helper{j}(x)" for j in range(10))
        src = f"SCALE = {i}\n\n{helpers}\n\ndef top(x):\n    return {body}\n"
        with open(os.path.join(moddir, name + ".py"), "w") as fh:
            fh.write(src)
        importlib.invalidate_caches()
        mod = importlib.import_module(name)
        t0 = time.perf_counter()
        memo = _bytecache.Memo(mod.top)
        memo.key({"x": 1})
        firsts.append(time.perf_counter() - t0)
    warm_samples = measure(cfg, lambda: memo.key({"x": 1}))
    sys.path.remove(moddir)
    for tool in tool_list:
        if tool == "bytecache":
            first.results.append(Result(first.id, tool, "ok", firsts,
                                        f"{reps} fresh modules, one sample each"))
            warm.results.append(Result(warm.id, tool, "ok", warm_samples))
        else:
            for w in (first, warm):
                w.results.append(Result(w.id, tool, "n/a", note="no code-dependency tracking"))
    log(f"  fingerprint      first {fmt(first.results[0].median)} "
        f"warm {fmt(warm.results[0].median)}")
    del bytecache


def string_frame(cfg: Cfg, tool_list: list[str], dc: Any) -> None:
    """Keying a 1e6-row DataFrame with a string column, beside computing it."""
    try:
        import numpy as np
        import pandas as pd
    except ImportError:
        return
    from bytecache import _bytecache

    n = 1_000_000

    def compute() -> Any:
        ids = [f"user{i:07d}" for i in range(n)]
        return pd.DataFrame({"id": ids, "score": np.arange(n, dtype="float64")})

    build = measure(Cfg(min_reps=3, max_reps=5, min_total=0.0, cell_budget=5.0), compute)
    df = compute()
    wl = Workload("hash_str_frame", "hash a 1e6-row DataFrame with a string column",
                  "keying `pd.DataFrame({'id': [f'user{i:07d}' ...], 'score': float64})` "
                  "(1e6 rows); reference: computing it (the list of strings, then the "
                  f"frame) takes {fmt(statistics.median(build))}. bytecache `hash_value`, "
                  "`joblib.hash`, cachier's default hash_func, diskcache `Disk.put`")
    RESULTS.append(wl)
    import joblib
    from cachier.config import _default_hash_func

    hashers = {
        "bytecache": lambda: _bytecache.hash_value(df),
        "joblib": lambda: joblib.hash(df),
        "cachier": lambda: _default_hash_func((df,), {}),
        "diskcache": lambda: dc.disk.put(("f", df)),
    }
    for tool in tool_list:
        if tool not in hashers:
            wl.results.append(Result(wl.id, tool, "n/a", note="keys by `hash()`"))
            continue
        samples = measure(cfg, hashers[tool])
        share = statistics.median(samples) / statistics.median(build)
        wl.results.append(Result(wl.id, tool, "ok", samples,
                                 f"{share:.1%} of computing it"))
        log(f"  hash str frame   {tool:<18} {fmt(wl.results[-1].median)} {wl.results[-1].note}")


def functools_make_key(args: tuple, kwargs: dict, typed: bool) -> Any:
    import functools

    return functools._make_key(args, kwargs, typed)  # what lru_cache does in pure Python


# --- report -----------------------------------------------------------------------------------


def fmt(s: float | None) -> str:
    if s is None:
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            v = s / scale
            return f"{v:.3g} {unit}" if v < 1000 else f"{v:.0f} {unit}"
    return f"{s * 1e9:.3g} ns"


def ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "—"
    r = a / b
    return f"{r:.3g}" if r < 1000 else f"{r:.0f}"


def loadavg() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def machine_info() -> dict[str, str]:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as fh:
            mem = fh.readline().split()[1]
            mem = f"{int(mem) / 2**20:.1f} GiB"
    except OSError:
        mem = "?"
    try:
        commit = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "?"
    info = {
        "date (UTC)": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "CPU": f"{cpu}, {os.cpu_count()} logical cores",
        "memory": mem,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "git commit": commit,
    }
    info.update({k: v for k, v in tools.versions().items()})
    info["load average at start (1, 5, 15 min)"] = loadavg()
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if os.environ.get(var):
            info[var] = os.environ[var]
    return info


def write_report(out: str, cfg: Cfg, info: dict[str, str], elapsed: float, quick: bool) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as fh:
        json.dump({"machine": info, "config": asdict(cfg),
                   "elapsed": elapsed, "quick": quick,
                   "workloads": [{"id": w.id, "title": w.title, "what": w.what,
                                  "results": [asdict(r) for r in w.results]}
                                 for w in RESULTS]}, fh, indent=1)
    lines = ["# bytecache benchmarks", ""]
    if quick:
        lines += ["**QUICK RUN (`--quick`): fewer repetitions, smaller N; not for quoting.**", ""]
    lines += [
        "Generated by `bash ci/bench.sh` (`benches/python/bench.py`). Times are seconds per "
        "call (lower is better): median over repetitions, with min and max. Each repetition "
        "runs a calibrated number of calls (timeit-style, >= "
        f"{cfg.target_rep * 1e3:.0f} ms per repetition, {cfg.min_reps}-{cfg.max_reps} "
        f"repetitions, at most ~{cfg.cell_budget:.1f} s per cell but >= 3 repetitions). "
        "Every tool gets a fresh temporary cache directory per workload, on the same disk.",
        "",
        "Ratios: **bc/peer** = bytecache median ÷ peer median (< 1: bytecache is faster); "
        "**peer/bc** = peer median ÷ bytecache median (> 1: bytecache is faster).",
        "",
        "Status other than ok: *n/a* (the tool cannot do this, reason given), *not cached* (the "
        "function body ran during the timed calls, so the time is not that of a hit), *error*.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in info.items()]
    lines += [f"| load average at end | {loadavg()} |",
              f"| suite run time | {elapsed:.0f} s |", "",
              "The machine may be shared: a load average well above 0 means other processes "
              "competed for the cores during the run, which adds noise (see min and max).", ""]
    lines += ["## Tools", ""]
    lines += [f"* **{t}**: {d}" for t, d in tools.DESCRIPTION.items()]
    lines += [""]

    lines += ["## Summary (medians)", ""]
    tool_cols = TOOLS
    lines += ["| workload | " + " | ".join(tool_cols) + " |",
              "|---|" + "---:|" * len(tool_cols)]
    for w in RESULTS:
        by = {r.tool: r for r in w.results}
        cells = []
        for t in tool_cols:
            r = by.get(t)
            plain = by.get("plain (no hook)") or by.get("plain")
            if (t == "bytecache" and r is not None and r.status == "ok" and plain is not None
                    and plain.status == "ok"):
                cells.append(f"{fmt(r.median)} (plain {fmt(plain.median)})")
                continue
            if r is None:
                cells.append("—")
            elif r.status == "ok":
                cell = fmt(r.median)
                if "N" in r.extra and r.extra["N"] != cfg.entries and w.id == "entries_write":
                    cell += f" (N={r.extra['N']})"
                if "duplicates" in r.extra:
                    cell += f", dups {'/'.join(map(str, r.extra['duplicates']))}"
                cells.append(cell)
            elif r.status == "error" and "timed out" in r.note:
                cells.append("timed out")
            else:
                cells.append(f"{r.status}" + (f" ({fmt(r.median)})" if r.median else ""))
        lines.append(f"| {w.title} | " + " | ".join(cells) + " |")
    lines += ["", "(N=...: the entries workload was scaled down for that tool, see its notes; "
              "dups: duplicate computations in each contention run.)", ""]

    lines += ["## Workloads", ""]
    for w in RESULTS:
        lines += [f"### {w.title}", "", w.what, ""]
        bc = next((r for r in w.results if r.tool == "bytecache" and r.status == "ok"), None)
        lines += ["| tool | status | median | min | max | n | bc/peer | peer/bc | notes |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---|"]
        for r in w.results:
            if r.samples:
                med, lo, hi = fmt(r.median), fmt(min(r.samples)), fmt(max(r.samples))
            else:
                med = lo = hi = "—"
            if bc is not None and r.tool != "bytecache" and r.status == "ok":
                a, b = ratio(bc.median, r.median), ratio(r.median, bc.median)
            else:
                a = b = "—"
            note = r.note.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {r.tool} | {r.status} | {med} | {lo} | {hi} | {len(r.samples)} | "
                         f"{a} | {b} | {note} |")
        lines.append("")
    for name, title in [
        ("cargo-bench.txt", "Rust storage layer (`cargo bench --bench storage -- --quick`)"),
        ("cargo-bench-identity.txt", "Argument hashing and fingerprinting "
         "(`cargo bench --features bench-python --bench identity -- --quick`)"),
    ]:
        cargo = os.path.join(out, name)
        if not os.path.exists(cargo):
            continue
        with open(cargo) as fh:
            text = "\n".join(
                ln for ln in fh.read().strip().splitlines()
                if not ln.strip().startswith(("Compiling", "Downloaded", "Downloading")))
        lines += [f"## {title}", "", "```", text[-6000:] or "(no output)", "```", ""]
    lines += ["![chart](chart.png)", ""]
    with open(os.path.join(out, "report.md"), "w") as fh:
        fh.write("\n".join(lines))


def chart(out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ws = [w for w in RESULTS if any(r.median for r in w.results)]
    tools_seen = [t for t in [*TOOLS, "plain (no hook)"]
                  if any(r.tool == t and r.median for w in ws for r in w.results)]
    fig, ax = plt.subplots(figsize=(max(12, len(ws) * 1.1), 7))
    width = 0.8 / max(1, len(tools_seen))
    for i, t in enumerate(tools_seen):
        xs, ys = [], []
        for j, w in enumerate(ws):
            r = next((r for r in w.results if r.tool == t), None)
            if r is not None and r.median and r.status == "ok":
                xs.append(j + (i - (len(tools_seen) - 1) / 2) * width)
                ys.append(r.median)
        ax.bar(xs, ys, width, label=t)
    ax.set_yscale("log")
    ax.set_ylabel("median seconds per call (log scale, lower is better)")
    ax.set_xticks(range(len(ws)))
    ax.set_xticklabels([w.title for w in ws], rotation=60, ha="right", fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("bytecache vs. other memoizers (only results with status ok)")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "chart.png"), dpi=110)
    plt.close(fig)


SECTIONS = ["hits", "miss", "process", "entries", "contend", "hook", "identity"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench-report")
    ap.add_argument("--quick", action="store_true", help="smoke run: few repetitions, small N")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--only", default=",".join(SECTIONS), help=",".join(SECTIONS))
    ap.add_argument("--entries", type=int, default=None, help="N for the many-entries workload")
    ap.add_argument("--entries-budget", type=float, default=None,
                    help="seconds per phase per tool before N is scaled down")
    ap.add_argument("--report-only", metavar="RESULTS_JSON",
                    help="rewrite report.md and chart.png from a results.json, run nothing")
    a = ap.parse_args()
    if a.report_only:
        with open(a.report_only) as fh:
            data = json.load(fh)
        for w in data["workloads"]:
            wl = Workload(w["id"], w["title"], w["what"])
            wl.results = [Result(**r) for r in w["results"]]
            RESULTS.append(wl)
        cfg = Cfg(**data["config"])
        elapsed = float(data.get("elapsed", 0.0))
        write_report(a.out, cfg, data["machine"], elapsed, data.get("quick", False))
        chart(a.out)
        return
    cfg = Cfg()
    if a.quick:
        cfg = Cfg(min_reps=3, max_reps=5, min_total=0.05, cell_budget=0.5, children=2,
                  entries=5_000, entries_budget=5.0, contend_keys=6, contend_runs=1,
                  hook_reps=5)
    if a.entries is not None:
        cfg.entries = a.entries
    if a.entries_budget is not None:
        cfg.entries_budget = a.entries_budget
    tool_list = [t for t in a.tools.split(",") if t]
    only = set(a.only.split(","))
    info = machine_info()
    log(f"bytecache benchmark suite; scratch dir {ROOT_TMP}")
    for k, v in info.items():
        log(f"  {k}: {v}")
    np.random.default_rng(0)
    t0 = time.perf_counter()
    try:
        if "hits" in only:
            warm_hits(cfg, tool_list)
        if "miss" in only:
            small_miss(cfg, tool_list)
        if "process" in only:
            # Always beside the function itself: the reference for start-up costs.
            new_process(cfg, tool_list if "plain" in tool_list else ["plain", *tool_list])
        if "entries" in only:
            many_entries(cfg, tool_list)
        if "contend" in only:
            contention(cfg, tool_list)
        if "hook" in only:
            hook_overhead(cfg)
        if "identity" in only:
            identity(cfg, tool_list)
    finally:
        tools.close_all()
        shutil.rmtree(ROOT_TMP, ignore_errors=True)
    elapsed = time.perf_counter() - t0
    write_report(a.out, cfg, info, elapsed, a.quick)
    chart(a.out)
    log(f"wrote {a.out}/report.md, {a.out}/chart.png, {a.out}/results.json "
        f"({elapsed:.0f} s)")


if __name__ == "__main__":
    main()
