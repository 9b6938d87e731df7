"""@bytecache.memoize end to end: every case runs real interpreters."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from conftest import Runner

BASIC = """
import bytecache

@bytecache.memoize
def slow(n, scale=2):
    ran()
    return [n * scale, {"n": n}]

print(slow(21))
"""


def test_second_process_gets_stored_result(runner: Runner) -> None:
    first = runner.run(BASIC).stdout
    second = runner.run(BASIC).stdout
    assert first.count("RAN") == 1
    assert "RAN" not in second
    assert first.replace("RAN\n", "") == second == "[42, {'n': 21}]\n"


def test_versions_live_side_by_side(runner: Runner) -> None:
    # Editing A -> B -> A: A's result is still there (B did not replace it).
    a = """
import bytecache

@bytecache.memoize
def f(x):
    ran()
    return x + 1

print(f(1))
"""
    b = a.replace("x + 1", "x + 2")
    assert runner.out(a) == ["RAN", "2"]
    assert runner.out(b) == ["RAN", "3"]
    assert runner.out(a) == ["2"]
    assert runner.out(b) == ["3"]


def test_defaults_bound_keywords_and_positionals_share_an_entry(runner: Runner) -> None:
    out = runner.run(BASIC.replace("print(slow(21))", """
print(slow(21))
print(slow(21, 2))
print(slow(n=21, scale=2))
print(slow(21, scale=3))
""")).stdout
    assert out.count("RAN") == 2


def test_types_are_part_of_the_key(runner: Runner) -> None:
    out = runner.out("""
import bytecache

@bytecache.memoize
def ident(x):
    ran()
    return repr(x)

for v in (1, 1.0, True, "1", b"1", (1,), [1], {1}, frozenset([1])):
    print(ident(v))
""")
    assert out.count("RAN") == 9


def test_ignore_leaves_a_parameter_out_of_the_key(runner: Runner) -> None:
    out = runner.out("""
import bytecache

@bytecache.memoize(ignore=("verbose",))
def f(x, verbose=False):
    ran()
    return x

f(1, verbose=True); f(1, verbose=False)
""")
    assert out.count("RAN") == 1


def test_ignore_must_name_a_parameter(runner: Runner) -> None:
    proc = runner.run("""
import bytecache
try:
    @bytecache.memoize(ignore=("nope",))
    def f(x):
        return x
except TypeError as e:
    print("TypeError", e)
""")
    assert "TypeError" in proc.stdout and "nope" in proc.stdout


def test_min_seconds_stores_only_slow_calls(runner: Runner) -> None:
    script = """
import time, bytecache

@bytecache.memoize(min_seconds=0.2)
def f(x):
    ran()
    if x == "slow":
        time.sleep(0.3)
    return x

f("fast"); f("slow")
"""
    runner.run(script)
    out = runner.out(script)
    assert out.count("RAN") == 1  # fast recomputed, slow served


def test_cache_dir_option(runner: Runner) -> None:
    other = runner.root / "elsewhere"
    script = f"""
import bytecache

@bytecache.memoize(cache_dir={str(other)!r})
def f(x):
    ran()
    return x

f(1)
"""
    runner.run(script)
    assert "RAN" not in runner.out(script)
    assert other.is_dir()
    assert stat.S_IMODE(other.stat().st_mode) == 0o700


def test_configure_cache_dir_and_default_mode(runner: Runner) -> None:
    other = runner.root / "configured"
    runner.run(f"""
import bytecache
bytecache.configure(cache_dir={str(other)!r})

@bytecache.memoize
def f(x):
    return x

f(1)
print(bytecache.stats()["cache_dir"])
""")
    assert other.is_dir() and stat.S_IMODE(other.stat().st_mode) == 0o700


def test_xdg_cache_home_is_the_default(runner: Runner) -> None:
    xdg = runner.root / "xdg"
    env = runner.env(XDG_CACHE_HOME=str(xdg))
    del env["BYTECACHE_DIR"]
    runner.write("main.py", BASIC)
    subprocess.run([sys.executable, "main.py"], cwd=runner.work, env=env, check=True,
                   capture_output=True)
    assert (xdg / "bytecache").is_dir()


def test_methods_static_and_class_methods(runner: Runner) -> None:
    script = """
import bytecache

class Model:
    def __init__(self, k):
        self.k = k

    @bytecache.memoize
    def predict(self, x):
        ran("predict")
        return x * self.k

    @staticmethod
    @bytecache.memoize
    def double(x):
        ran("double")
        return 2 * x

    @bytecache.memoize
    @classmethod
    def make(cls, k):
        ran("make")
        return cls.__name__ + str(k)

print(Model(3).predict(2), Model(4).predict(2), Model.double(5), Model.make(1))
"""
    first = runner.run(script).stdout
    second = runner.run(script).stdout
    assert first.count("RAN") == 4
    assert "RAN" not in second
    assert second.strip() == "6 8 10 Model1"


def test_async_functions_memoize_the_awaited_value(runner: Runner) -> None:
    script = """
import asyncio, bytecache

@bytecache.memoize
async def fetch(x):
    ran()
    await asyncio.sleep(0)
    return {"x": x}

print(asyncio.run(fetch(5)))
"""
    assert runner.run(script).stdout.count("RAN") == 1
    second = runner.run(script).stdout
    assert "RAN" not in second and "{'x': 5}" in second


def test_generator_functions_are_refused(runner: Runner) -> None:
    out = runner.run("""
import bytecache
for make in ("def g():\\n    yield 1", "async def g():\\n    yield 1"):
    ns = {}
    exec(make, ns)
    try:
        bytecache.memoize(ns["g"])
    except TypeError as e:
        print("refused", "generator" in str(e))
""").stdout
    assert out.split() == ["refused", "True", "refused", "True"]


def test_exceptions_are_not_cached(runner: Runner) -> None:
    script = """
import bytecache

@bytecache.memoize
def f(x):
    ran()
    raise ValueError(x)

for _ in range(2):
    try:
        f(1)
    except ValueError as e:
        print("raised", e)
"""
    assert runner.out(script).count("RAN") == 2
    assert runner.out(script).count("RAN") == 2


def test_every_hit_is_a_fresh_object(runner: Runner) -> None:
    out = runner.out("""
import bytecache, numpy as np

@bytecache.memoize
def f():
    return {"xs": [1, 2], "a": np.arange(4.0)}

r = f(); r["xs"].append(99); r["a"][:] = -1
again = f()
print(again["xs"], again["a"].tolist(), f() is f())
""")
    assert out == ["[1,", "2]", "[0.0,", "1.0,", "2.0,", "3.0]", "False"]


def test_unhashable_argument_runs_normally_with_one_warning(runner: Runner) -> None:
    proc = runner.run("""
import threading, warnings, bytecache
warnings.simplefilter("always")

@bytecache.memoize
def f(lock, x):
    ran()
    return x

lock = threading.Lock()
print(f(lock, 1), f(lock, 1))
""")
    assert proc.stdout.count("RAN") == 2
    assert proc.stderr.count("BytecacheWarning") == 1
    assert "argument `lock`" in proc.stderr


def test_unpicklable_result_runs_normally_with_one_warning(runner: Runner) -> None:
    script = """
import threading, bytecache

@bytecache.memoize
def f(x):
    ran()
    return threading.Lock()

f(1); f(1)
"""
    proc = runner.run(script)
    assert proc.stdout.count("RAN") == 2
    assert proc.stderr.count("BytecacheWarning") == 1 and "pickled" in proc.stderr


def test_result_larger_than_max_bytes_is_not_stored_with_one_warning(runner: Runner) -> None:
    script = """
import bytecache

@bytecache.memoize
def big(x):
    ran()
    return b"x" * 100_000

@bytecache.memoize
def small(x):
    ran()
    return x

big(1); big(1); small(1); small(1)
"""
    proc = runner.run(script, BYTECACHE_MAX_BYTES="50000")
    assert proc.stdout.count("RAN") == 3  # big twice, small once
    assert proc.stderr.count("BytecacheWarning") == 1 and "max_bytes" in proc.stderr
    assert runner.run(script, BYTECACHE_MAX_BYTES="50000").stdout.count("RAN") == 2


def test_stats_clear_and_cache_info(runner: Runner) -> None:
    out = runner.run("""
import bytecache

@bytecache.memoize
def f(x):
    return x

@bytecache.memoize
def g(x):
    return x

f(1); f(1); f(2); g(1)
s = bytecache.stats()
print(s["hits"], s["misses"], s["entries"], s["bytes"] > 0)
print(f.cache_info()["hits"], f.cache_info()["misses"])
print(bytecache.clear(f), bytecache.stats()["entries"])
print(bytecache.clear(), bytecache.stats()["entries"])
""").stdout.split("\n")
    assert out[0] == "1 3 3 True"
    assert out[1] == "1 2"
    assert out[2] == "2 1"
    assert out[3] == "1 0"


def test_bytecache_off_runs_everything(runner: Runner) -> None:
    runner.run(BASIC)
    assert runner.out(BASIC, BYTECACHE="off").count("RAN") == 1


def test_disabled_context_manager(runner: Runner) -> None:
    out = runner.out(BASIC.replace("print(slow(21))", """
slow(1)
with bytecache.disabled():
    slow(1)
slow(1)
"""))
    assert out.count("RAN") == 2


def test_disabled_is_per_thread(runner: Runner) -> None:
    # One thread inside `disabled()` does not disable the others; leaving
    # it memoizes again (nested blocks count).
    out = runner.out(BASIC.replace("print(slow(21))", """
import threading
inside, done = threading.Event(), threading.Event()

def other():
    with bytecache.disabled():
        with bytecache.disabled():
            slow(2)
        slow(2)
        inside.set()
        done.wait()
    slow(2)  # memoized again: computed and stored
    slow(2)

t = threading.Thread(target=other)
t.start()
inside.wait()
slow(1)
slow(1)
done.set()
t.join()
print("end")
"""))
    # slow(2) twice disabled, slow(1) once, slow(2) once after the block.
    assert out == ["RAN", "RAN", "RAN", "RAN", "end"]


def test_read_only_cache_dir_runs_normally_with_one_warning(runner: Runner) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    runner.cache.mkdir(mode=0o500)
    proc = runner.run(BASIC.replace("print(slow(21))", "slow(1); slow(1)"))
    assert proc.stdout.count("RAN") == 2
    assert proc.stderr.count("BytecacheWarning") == 1


def test_cache_dir_writable_by_others_is_refused(runner: Runner) -> None:
    runner.cache.mkdir()
    os.chmod(runner.cache, 0o777)
    proc = runner.run(BASIC.replace("print(slow(21))", "slow(1); slow(1)"))
    assert proc.stdout.count("RAN") == 2
    assert proc.stderr.count("BytecacheWarning") == 1
    assert "writable" in proc.stderr


def test_import_does_not_pull_heavy_modules(runner: Runner) -> None:
    # Start-up cost: `import bytecache` must stay a few ms (measured with -X importtime).
    heavy = ("numpy", "pandas", "typing", "inspect", "json", "pickle", "pathlib", "threading",
             "dataclasses", "asyncio")
    out = runner.out(f"""
import sys
before = set(sys.modules)
import bytecache
print(sorted(m for m in {heavy!r} if m in sys.modules and m not in before))
""")
    assert out == ["[]"]


def test_output_printed_by_a_stored_call_is_replayed_on_a_hit(runner: Runner) -> None:
    script = """
import sys, bytecache

@bytecache.memoize
def noisy(x):
    print("working on", x)
    print("careful", file=sys.stderr)
    print("done")
    return x

noisy(1)
"""
    first = runner.run(script)
    second = runner.run(script)
    assert first.stdout == second.stdout == "working on 1\ndone\n"
    assert first.stderr == second.stderr == "careful\n"


def test_replayed_output_of_an_inner_hit_is_recorded_by_the_outer_miss(runner: Runner) -> None:
    runner.run("""
import bytecache

@bytecache.memoize
def inner():
    print("inner")
    return 1

inner()
""")
    script = """
import bytecache

@bytecache.memoize
def inner():
    print("inner")
    return 1

@bytecache.memoize
def outer(tag):
    print("outer")
    return inner() + 1

outer("a")
"""
    assert runner.run(script).stdout == "outer\ninner\n"
    assert runner.run(script).stdout == "outer\ninner\n"


def test_two_processes_missing_together_compute_once(runner: Runner) -> None:
    runner.write("main.py", """
import time, bytecache

@bytecache.memoize
def slow(x):
    ran()
    time.sleep(1.0)
    return x * 2

print(slow(21))
""")
    procs = [subprocess.Popen([sys.executable, "main.py"], cwd=runner.work, env=runner.env(),
                              stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(o.count("RAN") for o in outs) == 1
    assert all(o.strip().endswith("42") for o in outs)


def test_a_process_that_only_hits_installs_no_observer(runner: Runner) -> None:
    # Observation (audit hook, interposed functions, native rebinding) is
    # set up by the first miss: a re-run that only hits never pays for it,
    # nor for loading it (nor `explain`, `once`, `stats`: loaded when used).
    code = BASIC + """
import sys
names = ("_observe", "_effects", "_miss", "_explain", "_once", "_stats")
print("loaded:" + ",".join(n for n in names if "bytecache." + n in sys.modules))
from bytecache import _observe
print(f"observer={_observe._installed}")
"""
    first = runner.out(code)
    assert first[-2:] == ["loaded:_observe,_effects,_miss", "observer=True"]
    assert runner.out(code)[-2:] == ["loaded:", "observer=False"]


STORED = """
import os, bytecache
from bytecache import _bytecache

@bytecache.memoize
def f(x):
    ran()
    return [x, "value"]

STEPS
"""


def test_a_stored_plain_result_is_answered_without_the_python_path(runner: Runner) -> None:
    # Stored by another process (a list: never kept in this one): from the
    # second call on (the first names the store) read, unpickled and counted
    # in Rust, a fresh object each time, like the call.
    runner.run(STORED.replace("STEPS", "f(1)"))
    out = runner.out(STORED.replace("STEPS", """
a, b = f(1), f(1)
print(a == b == [1, "value"], a is not b, f.cache_info()["hits"], _bytecache.fast_totals()[0])
"""))
    assert out == ["True", "True", "2", "1"]


def test_stored_results_follow_a_new_cache_dir(runner: Runner) -> None:
    # Once the wrapper reads a directory's store in Rust, configure() and
    # the environment still decide where results are: a new directory has
    # none of them.
    other = str(runner.root / "other")
    runner.run(STORED.replace("STEPS", "f(1)"))
    # f(2) is a miss (it sets the observer up); f(1) then names the store.
    configured = runner.out(STORED.replace("STEPS", f"""
f(2); f(1); f(1)
bytecache.configure(cache_dir={other!r})
f(1)
"""))
    assert configured == ["RAN", "RAN"]  # f(2) here; f(1) again in `other`
    environ = runner.out(STORED.replace("STEPS", f"""
f(3); f(1); f(1)
os.environ["BYTECACHE_DIR"] = {other + "2"!r}
f(1)
"""))
    assert environ == ["RAN", "RAN"]


def test_a_damaged_record_read_in_rust_is_recomputed_with_one_warning(runner: Runner) -> None:
    runner.run(STORED.replace("STEPS", "f(1)"))
    data = runner.cache / "store" / "data"
    (segment,) = [p for p in data.iterdir()]
    raw = bytearray(segment.read_bytes())
    at = raw.find(b"value")
    assert at > 0
    raw[at:at + 5] = b"VALUE"  # the MAC no longer matches
    segment.write_bytes(bytes(raw))
    # Two misses first: the first sets the observer up, the second names
    # the store; f(1) is then read in Rust.
    proc = runner.run(STORED.replace("STEPS", "f(2); f(3); print(f(1))"))
    assert proc.stdout.split() == ["RAN", "RAN", "RAN", "[1,", "'value']"]
    assert proc.stderr.count("BytecacheWarning") == 1 and "damaged" in proc.stderr
    assert runner.out(STORED.replace("STEPS", "print(f(1))")) == ["[1,", "'value']"]


BACKOFF = """
import bytecache

@bytecache.memoize
def grow(items, x):
    print("ran", x)
    if isinstance(items, list):
        items.append(x)  # mutates its argument: never stored
    return len(items)

STEPS
"""


def test_calls_that_cannot_be_stored_back_off(runner: Runner) -> None:
    # Three refusals in a row, then 2, 4, 8 ... calls run as they are
    # (neither keyed nor observed), each followed by one try: of 20 calls,
    # those tried are 1, 2, 3, 6, 11 and 20. Every call runs and returns its
    # own result; explain says why the next ones are not memoized.
    out = runner.run(BACKOFF.replace("STEPS", """
items = []
print([grow(items, i) for i in range(20)] == list(range(1, 21)))
print("tried", grow.cache_info()["uncacheable"])
print(bytecache.explain(grow, [], 0))
""")).stdout.splitlines()
    assert [line for line in out if line.startswith("ran")] == [f"ran {i}" for i in range(20)]
    assert "True" in out and "tried 6" in out
    assert out[-1].startswith("not memoized for now: its last 6 calls could not be stored "
                              "(the latest: mutated its arguments")
    assert out[-1].endswith("the next 16 calls run as they are, then one is tried again")


def test_a_stored_result_ends_the_back_off(runner: Runner) -> None:
    # After the back-off the tried call is storable (a tuple is not
    # mutated): it is stored, and from then on every call is memoized.
    out = runner.run(BACKOFF.replace("STEPS", """
items = []
for i in range(5):
    grow(items, i)      # tried: 0, 1, 2; then 3 and 4 run as they are
grow((1, 2), 5)         # tried and stored
grow((1, 2), 5)         # a hit
grow([], 6); grow([], 7)  # tried (refused), not yet three in a row
print(grow.cache_info()["uncacheable"], grow.cache_info()["stored"], grow.cache_info()["hits"])
""")).stdout.split()
    assert out[-3:] == ["5", "1", "1"]


def test_ctrl_c_while_a_stored_result_is_read_in_rust_reaches_the_program(
        runner: Runner) -> None:
    # Unpickling a stored result raises KeyboardInterrupt (once): the call
    # raises it, as from the Python path, rather than reading it again. The
    # trigger (the collector's switch) is state no key covers.
    runner.write("boom.py", """
        import gc

        class Boom:
            def __setstate__(self, state):
                if not gc.isenabled():
                    gc.enable()
                    raise KeyboardInterrupt
                self.x = state["x"]
    """)
    script = """
import gc, bytecache, boom
from bytecache import _bytecache

@bytecache.memoize
def f(x):
    b = boom.Boom()
    b.x = x
    return b

STEPS
"""
    runner.run(script.replace("STEPS", "f(1)"))
    out = runner.out(script.replace("STEPS", """
f(2); f(3)  # misses: the observer is set up, then the store is named
gc.disable()
try:
    f(1)
    print("no-interrupt")
except KeyboardInterrupt:
    print("interrupted")
x = f(1).x
print(x, _bytecache.fast_totals()[0])  # read in Rust
"""))
    assert out[-3:] == ["interrupted", "1", "1"]
