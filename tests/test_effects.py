"""A hit behaves like the call (issue: aliasing, side effects, async): what
the call shares, warns, logs and prints, in fresh processes."""

from __future__ import annotations

import textwrap

import pytest

from conftest import Runner


def _script(body: str, call: str, head: str = "", auto: bool = False) -> str:
    mark = "" if auto else "@bytecache.memoize\n"
    start = "bytecache.enable(min_seconds=0)\n" if auto else ""
    return (textwrap.dedent(head) + "import bytecache\n" + start + "\n" + mark
            + textwrap.dedent(body).strip() + "\n\n" + textwrap.dedent(call))


# --- aliasing --------------------------------------------------------------------------

ALIASED = {
    "iter returns self": ("""
        class It:
            def __iter__(self):
                return self
            def __next__(self):
                raise StopIteration
        """, "def f(it):\n    ran()\n    return iter(it)\n",
        "it = It()\nprint(f(it) is it)\nprint(f(it) is it)\n", ["True", "True"]),
    "shared empty instance": ("""
        class FrozenDict(dict):
            pass
        EMPTY = FrozenDict()
        """, "def f():\n    ran()\n    return EMPTY\n",
        "print(f() is EMPTY)\n", ["True"]),
    "setdefault existing value": ("", "def f(d):\n    ran()\n    return d.setdefault('k', [])\n",
                                  "d = {'k': [1]}\nv = f(d)\nv.append(2)\nprint(d)\n",
                                  ["{'k':", "[1,", "2]}"]),
    "sentinel": ("MISSING = object()\n", "def f():\n    ran()\n    return MISSING\n",
                 "print(f() is MISSING)\n", ["True"]),
    "global config": ("CONFIG = {'lr': 0.1}\n", "def f():\n    ran()\n    return CONFIG\n",
                      "f()['lr'] = 0.5\nprint(CONFIG)\n", ["{'lr':", "0.5}"]),
    "list holding an argument": ("", "def f(x):\n    ran()\n    return [x]\n",
                                 "x = [1]\nr = f(x)\nprint(r[0] is x)\n", ["True"]),
}


@pytest.mark.parametrize("case", sorted(ALIASED))
def test_result_sharing_an_existing_object_is_not_stored(runner: Runner, case: str) -> None:
    head, body, call, expected = ALIASED[case]
    script = _script(body, call, head=head)
    first = runner.run(script)
    assert "RAN" in first.stdout and "not cached" in first.stderr, first.stderr
    assert first.stdout.replace("RAN\n", "").split() == expected
    second = runner.run(script).stdout
    assert "RAN" in second and second.replace("RAN\n", "").split() == expected


def test_view_of_an_argument_array_is_not_stored(runner: Runner) -> None:
    pytest.importorskip("numpy")
    script = _script("def head(a):\n    ran()\n    return a[:2]\n",
                     "a = np.arange(4)\nh = head(a)\nh[0] = 9\nprint(a[0])\n",
                     head="import numpy as np\n")
    assert runner.out(script) == ["RAN", "9"]
    assert runner.out(script) == ["RAN", "9"]


NOT_ALIASED = {
    "new list": ("def f(x):\n    ran()\n    return [x, x + 1]\n", "print(f(1))\n"),
    "tuple constant": ("T = (1, 2)\n\ndef f():\n    ran()\n    return T\n", "print(f())\n"),
    "interned strings and ints": ("def f():\n    ran()\n    return {'a': 1, 'b': 'x'}\n",
                                  "print(f())\n"),
    "function and class": ("def g():\n    pass\n\ndef f():\n    ran()\n    return (g, int)\n",
                           "print(f()[1])\n"),
    "enum member": ("import enum\nclass C(enum.Enum):\n    A = 1\n\n"
                    "def f():\n    ran()\n    return [C.A]\n", "print(f())\n"),
    "copy of an argument": ("def f(x):\n    ran()\n    return list(x)\n", "print(f([1, 2]))\n"),
}


@pytest.mark.parametrize("case", sorted(NOT_ALIASED))
def test_result_without_shared_objects_is_stored(runner: Runner, case: str) -> None:
    body, call = NOT_ALIASED[case]
    script = "import bytecache\n" + body.replace("def f(", "@bytecache.memoize\ndef f(") + "\n" + call
    first = runner.run(script)
    assert first.stdout.count("RAN") == 1 and "not cached" not in first.stderr, first.stderr
    assert "RAN" not in runner.run(script).stdout


def test_dataframe_derived_from_an_argument_is_stored(runner: Runner) -> None:
    pd = pytest.importorskip("pandas")
    if int(pd.__version__.split(".")[0]) < 3:
        pytest.skip("copy-on-write is the default from pandas 3")
    script = _script("def f(df):\n    ran()\n    return df[['a']]\n",
                     "print(f(pd.DataFrame({'a': [1, 2], 'b': [3, 4]}))['a'].tolist())\n",
                     head="import pandas as pd\n")
    assert runner.out(script) == ["RAN", "[1,", "2]"]
    assert runner.out(script) == ["[1,", "2]"]


# --- warnings ----------------------------------------------------------------------------

WARNS = """
import warnings
import bytecache

@bytecache.memoize
def f():
    ran()
    warnings.warn("old api", DeprecationWarning)
    return 1

{call}
"""


def test_warning_reaches_the_callers_catch_warnings_on_a_hit(runner: Runner) -> None:
    call = """
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    f()
print(len(w), w[0].category.__name__ if w else None, str(w[0].message) if w else None)
"""
    assert runner.out(WARNS.format(call=call)) == ["RAN", "1", "DeprecationWarning", "old", "api"]
    assert runner.out(WARNS.format(call=call)) == ["1", "DeprecationWarning", "old", "api"]


def test_warning_ignored_during_the_miss_is_shown_by_a_later_hit(runner: Runner) -> None:
    quiet = "with warnings.catch_warnings():\n    warnings.simplefilter('ignore')\n    f()\n"
    loud = ("with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n    f()\nprint(len(w))\n")
    assert runner.out(WARNS.format(call=quiet)) == ["RAN"]
    assert runner.out(WARNS.format(call=loud)) == ["1"]


def test_warning_as_error_still_raises_at_its_line(runner: Runner) -> None:
    script = """
import warnings
import bytecache

@bytecache.memoize
def f():
    ran("before")
    warnings.warn("bad", UserWarning)
    ran("after")
    return 1

warnings.simplefilter("error")
try:
    f()
except UserWarning as e:
    print("raised", e)
"""
    assert runner.out(script) == ["RAN", "before", "raised", "bad"]


def test_warnings_shown_once_per_location_as_without_bytecache(runner: Runner) -> None:
    script = WARNS.format(call="f(); f()").replace("DeprecationWarning", "UserWarning")
    first = runner.run(script)
    assert first.stderr.count("UserWarning: old api") == 1
    second = runner.run(script)
    assert second.stderr.count("UserWarning: old api") == 1  # the hit shows it once, like a fresh run


# --- logging ------------------------------------------------------------------------------

LOGS = """
import logging
import bytecache

log = logging.getLogger("pipeline")

class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []
    def emit(self, record):
        self.records.append((record.levelname, record.getMessage()))

@bytecache.memoize
def fit(n):
    ran()
    log.info("fitting on %d rows", n)
    log.debug("details")
    return n * 2

h = ListHandler()
log.addHandler(h)
log.setLevel(logging.{level})
print(fit(100), h.records)
"""


def test_log_records_reach_the_callers_handler_on_a_hit(runner: Runner) -> None:
    first = runner.run(LOGS.format(level="INFO")).stdout
    assert first.count("RAN") == 1 and "[('INFO', 'fitting on 100 rows')]" in first
    second = runner.run(LOGS.format(level="INFO")).stdout
    assert "RAN" not in second and second == first.replace("RAN\n", "")


def test_log_records_follow_the_level_of_the_moment(runner: Runner) -> None:
    runner.run(LOGS.format(level="INFO"))
    out = runner.run(LOGS.format(level="WARNING")).stdout
    assert out.strip() == "200 []"


# --- output ----------------------------------------------------------------------------------


@pytest.mark.parametrize("auto", [False, True])
def test_output_inside_the_callers_redirect_stdout(runner: Runner, auto: bool) -> None:
    script = _script("""
        def train(epochs):
            ran()
            for e in range(epochs):
                print(f"epoch {e}")
            return epochs * 10
        """, """
        def main():
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                r = train(2)
            return r, buf.getvalue()

        print(main())
        """, head="import contextlib, io\n", auto=auto)
    assert runner.out(script) == ["RAN", "(20,", "'epoch", "0\\nepoch", "1\\n')"]
    assert runner.out(script) == ["(20,", "'epoch", "0\\nepoch", "1\\n')"]


def test_nested_miss_inside_a_redirect_is_not_the_outer_calls_output(runner: Runner) -> None:
    script = _script("""
        def inner():
            ran("inner")
            print("inner says")
            return 1
        """, """
        @bytecache.memoize
        def outer():
            ran("outer")
            print("outer says")
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                inner()
            return buf.getvalue()

        print(repr(outer()))
        """, head="import contextlib, io\n")
    first = runner.run(script).stdout
    assert first == "RAN outer\nouter says\nRAN inner\n'inner says\\n'\n"
    second = runner.run(script).stdout
    assert second == "outer says\n'inner says\\n'\n"


# --- async --------------------------------------------------------------------------------------

ASYNC = """
import asyncio
import bytecache

@bytecache.memoize
async def f(x):
    ran()
    await asyncio.sleep(0.2)
    print("f", x)
    return x * 2

async def chatter():
    for _ in range(3):
        print("other task")
        await asyncio.sleep(0.05)

async def main():
    r = await asyncio.wait_for(asyncio.gather(f(1), f(1), chatter()), timeout=20)
    print(r[:2])

asyncio.run(main())
"""


def test_gather_of_the_same_call_does_not_block_the_loop(runner: Runner) -> None:
    out = runner.run(ASYNC).stdout
    assert "[2, 2]" in out
    assert out.count("RAN") == 1  # the second waited (awaiting) for the first's result
    assert out.count("other task") == 3


def test_other_tasks_output_is_not_replayed(runner: Runner) -> None:
    runner.run(ASYNC)
    out = runner.run(ASYNC).stdout
    assert "RAN" not in out
    assert out.count("f 1") == 2  # each hit replays f's own output
    assert out.count("other task") == 3  # not replayed by the hits


def test_log_and_warning_text_on_stderr_is_shown_once_on_a_hit(runner: Runner) -> None:
    # A StreamHandler's and the warnings module's own text is the display of a
    # record or warning: a hit re-emits those, it does not replay the text too.
    script = """
import logging, warnings
logging.basicConfig(level=logging.INFO, format="LOG %(message)s")
import bytecache

@bytecache.memoize
def f():
    ran()
    logging.getLogger("p").info("step")
    warnings.warn("careful")
    return 1

print(f())
"""
    first = runner.run(script)
    second = runner.run(script)
    assert "RAN" not in second.stdout
    for proc in (first, second):
        assert proc.stderr.count("LOG step") == 1, proc.stderr
        assert proc.stderr.count("UserWarning: careful") == 1, proc.stderr
