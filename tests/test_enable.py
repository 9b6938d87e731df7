"""`bytecache.enable()`: decorator-free memoization of marked modules, through
the real core and store, in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bytecache import _bytecache
from conftest import Runner

PIPELINE = """
import bytecache
bytecache.enable(min_seconds=0)
import helper

def load(n, scale=2):
    ran("load")
    return [i * scale for i in range(n)]

def total(n):
    ran("total")
    return sum(load(n)) + helper.h(n)

print(total(4))
"""


def test_script_rerun_hits_without_decorators(runner: Runner) -> None:
    runner.write("helper.py", "def h(x):\n    ran('h')\n    return x\n")
    first = runner.out(PIPELINE)
    assert first == ["RAN", "total", "RAN", "load", "RAN", "h", "16"]
    # Second process: the outermost call hits; nothing below it runs.
    assert runner.out(PIPELINE) == ["16"]


def test_unmarked_module_is_not_memoized_but_its_edits_count(runner: Runner) -> None:
    runner.write("helper.py", "def h(x):\n    ran('h')\n    return x\n")
    runner.run(PIPELINE)
    runner.write("helper.py", "def h(x):\n    ran('h')\n    return x + 100\n")
    # helper is not marked (h is never memoized itself) but total reaches it.
    assert runner.out(PIPELINE) == ["RAN", "total", "RAN", "h", "116"]


def test_modules_globs(runner: Runner) -> None:
    runner.write("pipeline/__init__.py", "")
    runner.write("pipeline/steps.py", "def step(x):\n    ran('step')\n    return x * 3\n")
    runner.write("other.py", "def g(x):\n    ran('g')\n    return x\n")
    script = """
import bytecache
bytecache.enable(modules=["pipeline.*"], min_seconds=0)
from pipeline.steps import step
import other
print(step(2), other.g(1))
"""
    assert runner.out(script) == ["RAN", "step", "RAN", "g", "6", "1"]
    assert runner.out(script) == ["RAN", "g", "6", "1"]


def test_cheap_functions_stop_being_keyed(runner: Runner) -> None:
    out = runner.out("""
import bytecache
from bytecache import _auto, _bytecache
bytecache.enable(min_seconds=10)

def cheap(x):
    return x + 1

taken = _bytecache.hook_adopt(cheap)
for i in range(20):
    cheap(i)
print(len(_auto._cheap), bytecache.stats()["misses"], taken, _bytecache.hook_adopt(cheap))
""")
    # 3.12+: the function had our vectorcall and got its own back, so it costs
    # nothing any more (the frame hook needs no adopting: False, False).
    taken = str(_bytecache.hook_mechanism() == "vectorcall")
    assert out == ["1", "5", taken, "False"]


def test_min_seconds_default_skips_fast_calls(runner: Runner) -> None:
    script = """
import time, bytecache
bytecache.enable()

def fast(x):
    ran("fast")
    return x

def slow(x):
    ran("slow")
    time.sleep(0.15)
    return x

print(fast(1), slow(2))
"""
    runner.run(script)
    assert runner.out(script) == ["RAN", "fast", "1", "2"]


def test_environment_off(runner: Runner) -> None:
    runner.run(PIPELINE.replace("import helper\n", "").replace(" + helper.h(n)", ""))
    out = runner.run(PIPELINE.replace("import helper\n", "").replace(" + helper.h(n)", "")
                     + "print(bytecache.is_enabled())\n",
                     BYTECACHE="off")
    assert out.stdout.split() == ["RAN", "total", "RAN", "load", "12", "False"]


def test_disabled_block(runner: Runner) -> None:
    out = runner.out("""
import bytecache
bytecache.enable(min_seconds=0)

def f(x):
    ran()
    return x

f(1)
with bytecache.disabled():
    f(1)
f(1)
""")
    assert out == ["RAN", "RAN"]


def test_disable_restores_and_stops(runner: Runner) -> None:
    out = runner.out("""
import bytecache
from bytecache import _bytecache
bytecache.enable(min_seconds=0)

def f(x):
    ran()
    return x

f(1); f(1)
bytecache.disable()
f(1)
print(_bytecache.hook_installed())
""")
    assert out == ["RAN", "RAN", "False"]


def test_unavailable_hook_warns_once_and_decorator_still_works(runner: Runner) -> None:
    proc = runner.run("""
import warnings, bytecache
warnings.simplefilter("always")
def refuse(*a):
    raise RuntimeError("unsupported interpreter")
bytecache._bytecache.hook_install = refuse
bytecache.enable(); bytecache.enable()

@bytecache.memoize
def f(x):
    ran()
    return x
f(1); f(1)
""")
    assert proc.stderr.count("BytecacheWarning") == 1
    assert "unsupported interpreter" in proc.stderr
    assert proc.stdout.split() == ["RAN"]


def test_closure_cells_are_part_of_the_key(runner: Runner) -> None:
    out = runner.out("""
import bytecache
bytecache.enable(min_seconds=0)

def make(k):
    def add(x):
        ran(k)
        return x + k
    return add

print(make(1)(10), make(2)(10), make(1)(10))
""")
    assert out == ["RAN", "1", "RAN", "2", "11", "12", "11"]


def test_methods_and_reentrant_hash(runner: Runner) -> None:
    out = runner.out("""
import bytecache
bytecache.enable(min_seconds=0)

class Key:
    def __init__(self, v):
        self.v = v
    def __hash__(self):
        return hash(self.v)
    def __eq__(self, other):
        return self.v == other.v

class Model:
    def __init__(self, k):
        self.k = k
    def predict(self, key):
        ran()
        return key.v * self.k

m = Model(3)
print(m.predict(Key(2)), m.predict(Key(2)), len({Key(1), Key(1)}))
""")
    assert out == ["RAN", "6", "6", "1"]


def test_redefined_function_and_its_globals_are_collected(runner: Runner) -> None:
    # A notebook re-running a cell: each run defines a new `f` reading a new
    # large global. Nothing bytecache keeps may hold the old versions.
    out = runner.out("""
import gc, weakref
import bytecache
bytecache.enable(min_seconds=0)

class Big:
    def __init__(self, n):
        self.n = n
        self.data = list(range(1000))

def helper(x):
    return x * 2

CELL = '''
BIG = Big(run)
def f(x):
    return BIG.n + helper(x) + (f(x - 1) if x > 0 else 0)
f(1); f(1)
'''
refs = []
for run in range(6):
    exec(compile(CELL, f"<cell {run}>", "exec"), globals())
    refs.append((weakref.ref(f), weakref.ref(BIG)))
gc.collect()
alive = [(r() is not None, b() is not None) for r, b in refs]
print(sum(r for r, _ in alive[:-1]), sum(b for _, b in alive[:-1]), alive[-1])
print(f(1), bytecache.stats()["hits"] > 0)
""")
    assert out == ["0", "0", "(True,", "True)", "12", "True"]


@pytest.mark.parametrize("core", ["ctrace", "sysmon"])
def test_under_coverage(runner: Runner, core: str) -> None:
    # coverage's sys.monitoring core (3.12+) and its C tracer see the misses'
    # bodies; hits answer as without coverage.
    pytest.importorskip("coverage")
    if core == "sysmon" and sys.version_info < (3, 12):
        pytest.skip("sys.monitoring needs 3.12")
    runner.write("main.py", """
import bytecache
bytecache.enable(min_seconds=0)

def target(x):
    ran()
    y = x * 3
    return y

print(target(1), target(1), target(2))
""")
    proc = subprocess.run([sys.executable, "-m", "coverage", "run", "--data-file=.cov", "main.py"],
                          cwd=runner.work, env=runner.env(COVERAGE_CORE=core),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["RAN", "RAN", "3", "3", "6"]
    import coverage

    data = coverage.CoverageData(basename=str(runner.work / ".cov"))
    data.read()
    assert 7 in (data.lines(str(runner.work / "main.py")) or [])  # y = x * 3


def test_stored_plain_results_are_answered_by_the_hook_in_rust(runner: Runner) -> None:
    # Results another process stored (lists: never kept in this one) are
    # read in Rust from the second call on, counted, fresh objects each time.
    script = """
import bytecache
from bytecache import _bytecache
bytecache.enable(min_seconds=0)

def load(n):
    ran("load")
    return [n, "value"]

STEPS
"""
    runner.run(script.replace("STEPS", "load(1)"))
    out = runner.out(script.replace("STEPS", """
a, b, c = load(1), load(1), load(1)
print(a == b == c == [1, "value"], a is not b, _bytecache.fast_totals()[0])
"""))
    assert out == ["True", "True", "2"]


def test_marked_calls_that_cannot_be_stored_back_off(runner: Runner) -> None:
    # A marked method that mutates its instance (never stored): after three
    # refusals in a row the hook runs its calls as they are, 2, 4, 8 ... of
    # them between tries, so a loop of them costs little more than unmarked
    # calls; every call runs.
    out = runner.out("""
import bytecache
from bytecache import _auto
bytecache.enable(min_seconds=0)

class Graph:
    def __init__(self):
        self.edges = []

    def add(self, a, b):
        ran("add")
        self.edges.append((a, b))

g = Graph()
for i in range(20):
    g.add(i, i + 1)
print(len(g.edges), _auto.target_for(Graph.add).counters.uncacheable)
""")
    assert out.count("RAN") == 20
    assert out[-2:] == ["20", "6"]
