"""The PEP 523 frame hook (``_bytecache.hook_*``) and ``bytecache._auto``.

Every case runs a small script in a fresh interpreter: a hook bug is a crash,
and a crash must fail one test, not the run. The scripts use an in-memory
policy (``PRELUDE``) through the low-level ``hook_install``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from bytecache import _bytecache

PRELUDE = """
import sys
from bytecache import _bytecache as B
from bytecache._auto import _adopt_all

CACHE = {}
STATS = {"asked": [], "calls": 0, "hits": 0, "returns": 0}

def should_mark(f):
    STATS["asked"].append(f.__code__.co_name)
    return f.__module__ == "__main__" and f.__code__.co_name not in PRELUDE_NAMES

def on_call(f, args):
    STATS["calls"] += 1
    cells = tuple(c.cell_contents for c in (f.__closure__ or ()))
    key = (f.__code__, cells, args)
    try:
        hash(key)
    except TypeError:
        key = (f.__code__, cells, repr(args))
    if key in CACHE:
        STATS["hits"] += 1
        return (CACHE[key],)
    return key

def on_return(token, box):
    STATS["returns"] += 1
    CACHE[token] = box[0]

def hook_install(*callbacks):
    B.hook_install(*callbacks)
    # 3.12+: functions defined before the hook are handed to it (as enable() does).
    _adopt_all(list(globals().values()), "__main__")

def install():
    hook_install(should_mark, on_call, on_return)

PRELUDE_NAMES = {"hook_install", "install"}
"""


def run(tmp_path: Path, body: str, *, prelude: bool = True, head: str = "",
        env: dict[str, str] | None = None,
        files: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``body`` (dedented, after PRELUDE) as a script; fail on a crash."""
    for name, text in (files or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    script = tmp_path / "main.py"
    script.write_text((PRELUDE if prelude else "") + textwrap.dedent(head) + textwrap.dedent(body))
    full_env = dict(os.environ)
    full_env.pop("BYTECACHE", None)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=tmp_path, env=full_env, timeout=timeout)
    assert proc.returncode >= 0, f"crashed with signal {-proc.returncode}\n{proc.stderr}"
    return proc


def ok(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("\n")[:-1]


def test_api_exists() -> None:
    assert not _bytecache.hook_installed()
    for name in ("hook_install", "hook_uninstall", "hook_installed", "hook_reset_marks"):
        assert callable(getattr(_bytecache, name))


def test_hit_skips_frame_and_binds_arguments(tmp_path: Path) -> None:
    out = ok(run(tmp_path, """
        RAN = []
        def f(a, b=10, *rest, c, d=4, **kw):
            RAN.append(a)
            return (a, b, rest, c, d, sorted(kw.items()))
        SEEN = []
        def spy(func, args):
            SEEN.append(args)
            return on_call(func, args)
        hook_install(should_mark, spy, on_return)
        print(B.hook_installed())
        print(f(1, c=3))
        print(f(1, 10, c=3, d=4))   # same binding: hit
        print(f(a=1, c=3))          # same binding: hit
        print(f(1, 2, 7, 8, c=3, z=9))
        print(len(RAN), STATS["hits"], STATS["returns"])
        print(SEEN[0], SEEN[-1])
        B.hook_uninstall()
        print(B.hook_installed(), f(1, c=3), len(RAN))
    """))
    assert out == [
        "True",
        "(1, 10, (), 3, 4, [])",
        "(1, 10, (), 3, 4, [])",
        "(1, 10, (), 3, 4, [])",
        "(1, 2, (7, 8), 3, 4, [('z', 9)])",
        "2 2 2",
        "(1, 10, 3, 4, (), {}) (1, 2, 3, 4, (7, 8), {'z': 9})",
        "False (1, 10, (), 3, 4, []) 3",
    ]


def test_methods_and_parameter_kinds(tmp_path: Path) -> None:
    out = ok(run(tmp_path, """
        SEEN = []
        def spy(func, args):
            SEEN.append((func.__name__, args))
            return on_call(func, args)
        class C:
            def m(self, x):
                return ("m", x)
            @staticmethod
            def s(x, /, y=2):
                return ("s", x, y)
            @classmethod
            def c(cls, *, k):
                return ("c", cls.__name__, k)
        hook_install(should_mark, spy, on_return)
        o = C()
        print(o.m(1), C.s(1), C.c(k=3), C.m(o, 1), list(map(o.m, [1])))
        for name, args in SEEN:
            print(name, args[1:] if name == "m" else args)
        print(STATS["hits"])
    """))
    assert out == [
        "('m', 1) ('s', 1, 2) ('c', 'C', 3) ('m', 1) [('m', 1)]",
        "m (1,)", "s (1, 2)", "c (<class '__main__.C'>, 3)",
        "m (1,)", "m (1,)",
        "2",
    ]


def test_miss_that_raises_propagates_and_is_not_reported(tmp_path: Path) -> None:
    out = ok(run(tmp_path, """
        install()
        def boom(x):
            raise ValueError(x)
        for _ in range(2):
            try:
                boom(1)
            except ValueError as e:
                print("caught", e.args)
        print(STATS["calls"], STATS["returns"], STATS["hits"])
    """))
    assert out == ["caught (1,)", "caught (1,)", "2 0 0"]


def test_unmarked_module_untouched(tmp_path: Path) -> None:
    out = ok(run(tmp_path, """
        import helper
        install()
        print(helper.h(2), helper.h(2), helper.RAN)
        def g(x):
            return helper.h(x)
        print(g(3), g(3), helper.RAN)
        print("h" in STATS["asked"], STATS["asked"].count("g"))
    """, files={"helper.py": """
        RAN = []
        def h(x):
            RAN.append(x)
            return x * 2
    """}))
    # The frame hook asks about every function it sees run; the vectorcall
    # mechanism never sees functions of modules imported before it.
    asked_h = _bytecache.hook_mechanism() == "frame"
    assert out == ["4 4 [2, 2]", "6 6 [2, 2, 3]", f"{asked_h} 1"]


def test_generators_coroutines_and_class_bodies_never_intercepted(tmp_path: Path) -> None:
    out = ok(run(tmp_path, """
        import asyncio
        install()
        def gen(n):
            yield from range(n)
        async def coro(n):
            return n + 1
        async def agen(n):
            for i in range(n):
                yield i
        async def collect(n):
            return [i async for i in agen(n)]
        print(list(gen(3)), list(gen(3)))
        print(asyncio.run(coro(1)), asyncio.run(coro(1)))
        print(asyncio.run(collect(2)), asyncio.run(collect(2)))
        for _ in range(2):
            class K:
                X = print("class body ran")
        exec("print('exec ran')")
        exec("print('exec ran')")
        print([x * 2 for x in range(3)], [x * 2 for x in range(3)])
        forbidden = {"gen", "coro", "agen", "K", "<module>", "<listcomp>", "<genexpr>"}
        print(sorted(forbidden & set(STATS["asked"])))
        print(STATS["asked"].count("collect"))
    """))
    assert out == [
        "[0, 1, 2] [0, 1, 2]",
        "2 2",
        "[0, 1] [0, 1]",
        "class body ran",
        "class body ran",
        "exec ran",
        "exec ran",
        "[0, 2, 4] [0, 2, 4]",
        "[]",
        "0",
    ]


def test_lambda_is_marked(tmp_path: Path) -> None:
    out = ok(run(tmp_path, """
        install()
        sq = lambda x: print("ran") or x * x
        print(sq(3), sq(3), STATS["hits"])
    """))
    assert out == ["ran", "9 9 1"]


def test_closures_share_code_but_not_results(tmp_path: Path) -> None:
    out = ok(run(tmp_path, """
        install()
        def make(n):
            def add(x):
                return x + n
            return add
        ARGS = []
        def spy(func, args):
            if func.__name__ == "add":
                ARGS.append(args)
            return on_call(func, args)
        hook_install(should_mark, spy, on_return)
        a1, a2 = make(1), make(100)
        print(a1(5), a2(5), a1(5), a2(5))
        print(set(ARGS))
        def counter():
            total = 0
            def bump(k):
                nonlocal total
                total += k
                return total
            return bump
        b = counter()
        print(b(1), b(1), b(1))
    """))
    # The cells are not in `args`; the policy keys on them (a1/a2 differ).
    assert out[0] == "6 105 6 105"
    assert out[1] == "{(5,)}"
    # `bump` mutates its cell: the policy sees different cell contents each time.
    assert out[2] == "1 2 3"


def test_reentry_from_marked_hash_and_eq(tmp_path: Path) -> None:
    out = ok(run(tmp_path, """
        install()
        class Key:
            def __init__(self, v):
                self.v = v
            def __hash__(self):
                return hash_helper(self.v)
            def __eq__(self, other):
                return isinstance(other, Key) and eq_helper(self.v, other.v)
        def hash_helper(v):
            return 1  # every Key collides: __eq__ runs during lookup
        def eq_helper(a, b):
            return a == b
        def f(k):
            print("ran", k.v)
            return k.v * 2
        print(f(Key(1)), f(Key(1)), f(Key(2)), f(Key(2)))
        print(STATS["hits"])
    """))
    assert out == ["ran 1", "ran 2", "2 2 4 4", "2"]


def test_callbacks_may_replace_or_uninstall_themselves(tmp_path: Path) -> None:
    out = ok(run(tmp_path, """
        def f(x):
            return x + 1
        def one_shot(func, args):
            B.hook_uninstall()
            return (42,)
        hook_install(should_mark, one_shot, on_return)
        print(f(1), f(1), B.hook_installed())
        def swap(func, args):
            install()
            return None
        hook_install(should_mark, swap, on_return)
        print(f(2), f(2), f(2), STATS["hits"])
    """))
    assert out == ["42 2 False", "3 3 3 1"]


def test_threads(tmp_path: Path) -> None:
    out = ok(run(tmp_path, """
        import threading
        install()
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)
        def work(n):
            return sum(fib(i) for i in range(n))
        results = []
        def worker(k):
            for _ in range(200):
                results.append(work(15 + k % 3))
        ts = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in ts: t.start()
        for t in ts: t.join()
        fibs = [0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987]
        expect = {sum(fibs[:n]) for n in (15, 16, 17)}
        print(len(results), set(results) == expect, STATS["hits"] > 0)
    """))
    assert out == ["1600 True True"]


@pytest.mark.parametrize("api", ["settrace", "setprofile"])
def test_tracing_sees_misses_not_hits(tmp_path: Path, api: str) -> None:
    out = ok(run(tmp_path, f"""
        EVENTS = []
        def tracer(frame, event, arg):
            if event == "call" and frame.f_code.co_name == "target":
                EVENTS.append(frame.f_locals.get("x"))
            return None
        def target(x):
            return x * 3
        install()
        sys.{api}(tracer)
        print(target(1), target(1), target(2), target(1))
        sys.{api}(None)
        print(EVENTS, STATS["hits"])
    """))
    assert out == ["3 3 6 3", "[1, 2] 2"]


@pytest.mark.parametrize("core", ["ctrace", "pytrace", "sysmon"])
def test_under_coverage(tmp_path: Path, core: str) -> None:
    coverage = pytest.importorskip("coverage")
    if core == "sysmon" and sys.version_info < (3, 12):
        pytest.skip("sys.monitoring needs 3.12")
    (tmp_path / "main.py").write_text(PRELUDE + textwrap.dedent("""
        def target(x):
            y = x * 3
            return y
        def other(x):
            return target(x) + 1
        install()
        print(target(1), target(1), other(2), other(2), STATS["hits"])
    """))
    env = dict(os.environ, COVERAGE_CORE=core)
    proc = subprocess.run([sys.executable, "-m", "coverage", "run", "--data-file=.cov", "main.py"],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["3", "3", "7", "7", "2"]
    data = coverage.CoverageData(basename=str(tmp_path / ".cov"))
    data.read()
    lines = data.lines(str(tmp_path / "main.py")) or []
    body = [i for i, text in enumerate((tmp_path / "main.py").read_text().split("\n"), 1)
            if text.strip() == "y = x * 3"]
    assert body and body[0] in lines  # the misses ran the body under coverage


def test_tracer_installed_first(tmp_path: Path) -> None:
    out = ok(run(tmp_path, """
        EVENTS = []
        def tracer(frame, event, arg):
            if event == "call":
                EVENTS.append(frame.f_code.co_name)
            return tracer
        sys.settrace(tracer)
        def target(x):
            return x * 3
        install()
        print(target(1), target(1))
        sys.settrace(None)
        print(EVENTS.count("target"))
    """))
    assert out == ["3 3", "1"]


@pytest.mark.parametrize("marked", [True, False])
def test_deep_recursion_raises_not_crashes(tmp_path: Path, marked: bool) -> None:
    proc = run(tmp_path, f"""
        import threading
        sys.setrecursionlimit(10**6)
        install()
        def rec(n):
            return 0 if n == 0 else 1 + rec(n - 1)
        if not {marked}:
            hook_install(lambda f: False, on_call, on_return)
        def probe(depth):
            try:
                print(depth, rec(depth))
            except RecursionError:
                print(depth, "RecursionError")
        probe(100)
        probe(10**5)
        probe(5 * 10**5)
        t = threading.Thread(target=probe, args=(10**5,))
        t.start(); t.join()
        print("alive")
    """)
    out = ok(proc)
    assert out[0] == "100 100"
    assert out[-1] == "alive"
    for line in out[1:-1]:
        depth, result = line.split()
        assert result == depth or result == "RecursionError"


@pytest.mark.skipif(sys.version_info < (3, 12),
                    reason="3.11 itself overflows the C stack on deep C recursion at a high limit")
def test_deep_c_recursion_below_deep_python_recursion(tmp_path: Path) -> None:
    # The hook gives Python frames their C-recursion units back (3.12+); C code
    # deep down the stack must still hit RecursionError, not overflow.
    out = ok(run(tmp_path, """
        import json
        sys.setrecursionlimit(10**6)
        install()
        hook_install(lambda f: False, on_call, on_return)
        nested = []
        for _ in range(100000):
            nested = [nested]
        def cmap(n):
            return 0 if n == 0 else 1 + sum(map(cmap, [n - 1]))
        def bottom():
            for work in (lambda: repr(nested), lambda: json.dumps(nested),
                         lambda: cmap(100000), lambda: nested == [nested]):
                try:
                    work()
                except RecursionError:
                    pass
            return "ok"
        def rec(n):
            return bottom() if n == 0 else rec(n - 1)
        for depth in [0, 1000, 5000, 10000, 13000, 14000, 14500, 15000, 15500, 16000, 17000]:
            try:
                rec(depth)
            except RecursionError:
                pass
        print("alive")
    """))
    assert out == ["alive"]


@pytest.mark.parametrize("marked", [True, False])
def test_recursion_within_default_limit_still_works(tmp_path: Path, marked: bool) -> None:
    # 3.12 counts every non-inlined call against a C budget of 1500 (two
    # units per call): without compensation this stopped at ~750 frames.
    out = ok(run(tmp_path, f"""
        install()
        if not {marked}:
            hook_install(lambda f: False, on_call, on_return)
        def rec(n):
            return 0 if n == 0 else 1 + rec(n - 1)
        print(rec(950), rec(950))
        sys.setrecursionlimit(8000)
        print(rec(7000))
    """))
    assert out == ["950 950", "7000"]


def test_failing_callbacks_do_not_change_output(tmp_path: Path) -> None:
    body = """
        def f(x):
            print("f", x)
            return x + 1
        def g(x):
            return f(x) * 2
        print(g(1), g(1), f(5))
    """
    baseline = ok(run(tmp_path, body))
    for broken in ("should_mark", "on_call", "on_return"):
        proc = run(tmp_path, body, head=f"""
            def bad(*a):
                raise ZeroDivisionError("bug in {broken}")
            {broken} = bad
            install()
        """)
        assert ok(proc) == baseline
        assert "ZeroDivisionError" in proc.stderr


def test_interrupt_in_callbacks_propagates(tmp_path: Path) -> None:
    # An Exception in a callback is a memoizer bug (reported, ignored); a
    # KeyboardInterrupt (Ctrl-C during a slow cache read) must still stop the
    # program, raised from the intercepted call.
    out = ok(run(tmp_path, """
        def f(x):
            print("f ran", x)
            return x
        def interrupt(*a):
            raise KeyboardInterrupt
        hook_install(should_mark, interrupt, on_return)
        try:
            f(1)
        except KeyboardInterrupt:
            print("interrupted before")
        hook_install(should_mark, lambda fn, a: "token", interrupt)
        try:
            f(2)
        except KeyboardInterrupt:
            print("interrupted after")
        B.hook_uninstall()
        print(f(3))
    """))
    assert out == ["interrupted before", "f ran 2", "interrupted after", "f ran 3", "3"]


def test_bad_return_values_are_tokens_or_ignored(tmp_path: Path) -> None:
    out = ok(run(tmp_path, """
        def f(x):
            return x + 1
        TOKENS = []
        for r in [(), (1, 2), [5], 0, "s"]:
            hook_install(should_mark, lambda fn, a, r=r: r, lambda t, v: TOKENS.append((t, v[0])))
            print(f(1))
        print(TOKENS)
    """))
    assert out == ["2"] * 5 + ["[((), 2), ((1, 2), 2), ([5], 2), (0, 2), ('s', 2)]"]


def test_hit_releases_arguments(tmp_path: Path) -> None:
    out = ok(run(tmp_path, """
        import gc, weakref
        class Obj:
            def __hash__(self): return 7
            def __eq__(self, o): return isinstance(o, Obj)
        def f(o, *rest, **kw):
            return 1
        install()
        a = Obj()
        f(a)
        def drop(func, args):
            return (99,)
        hook_install(should_mark, drop, on_return)
        b = Obj()
        r = weakref.ref(b)
        print(f(b, 1, 2, k=3))
        del b
        print(r() is None)
        B.hook_uninstall()
        rc = sys.getrefcount(Obj)
        for _ in range(1000):
            hook_install(should_mark, drop, on_return)
            f(Obj(), [1], x=Obj())
            B.hook_uninstall()
        print(sys.getrefcount(Obj) - rc)
    """))
    assert out == ["99", "True", "0"]


def test_reset_marks_and_reinstall_ask_again(tmp_path: Path) -> None:
    out = ok(run(tmp_path, """
        def f(x):
            return x
        install()
        f(1); f(2)
        print(STATS["asked"].count("f"))
        B.hook_reset_marks()
        f(3)
        print(STATS["asked"].count("f"))
        install()
        f(4)
        print(STATS["asked"].count("f"))
        hook_install(lambda fn: False, on_call, on_return)
        before = STATS["calls"]
        f(5)
        print(STATS["calls"] - before)
    """))
    assert out == ["1", "2", "3", "0"]


def test_install_rejects_non_callables() -> None:
    with pytest.raises(TypeError):
        _bytecache.hook_install(1, 2, 3)
    assert not _bytecache.hook_installed()


# --- chaining with another PEP 523 user -------------------------------------


@pytest.fixture(scope="module")
def other_hook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    include = sysconfig.get_paths()["include"]
    if cc is None or not Path(include, "internal", "pycore_frame.h").exists():
        pytest.skip("needs a C compiler and CPython's internal headers")
    out = tmp_path_factory.mktemp("other_hook")
    so = out / ("other_hook" + sysconfig.get_config_var("EXT_SUFFIX"))
    src = Path(__file__).with_name("other_hook.c")
    subprocess.run([cc, "-shared", "-fPIC", "-O1", f"-I{include}", f"-I{include}/internal",
                    str(src), "-o", str(so)], check=True)
    return out


def test_chain_other_hook_below(tmp_path: Path, other_hook: Path) -> None:
    out = ok(run(tmp_path, f"""
        sys.path.insert(0, {str(other_hook)!r})
        import other_hook as O
        O.install()
        O.watch("f")
        def f(x):
            return x + 1
        install()
        base = O.count()
        f(1)
        print(O.count() - base)   # miss: our hook chains, the other sees the frame
        base = O.count()
        f(1)
        print(O.count() - base)   # hit: frame skipped
        B.hook_uninstall()
        print(O.current_is_other())
        O.uninstall()
        print(O.current_is_default())
    """))
    assert out == ["1", "0", "True", "True"]


def test_chain_other_hook_above(tmp_path: Path, other_hook: Path) -> None:
    out = ok(run(tmp_path, f"""
        sys.path.insert(0, {str(other_hook)!r})
        import other_hook as O
        def f(x):
            print("ran", x)
            return x + 1
        install()
        O.install()              # on top of us, chains to us
        print(f(1), f(1), STATS["hits"])
        B.hook_uninstall()       # cannot unlink: stays as a pass-through
        print(B.hook_installed(), O.current_is_other(), f(1), STATS["calls"])
        install()
        print(f(2), f(2), STATS["hits"])
        O.uninstall()            # restores our hook
        print(f(2), STATS["hits"])
        B.hook_uninstall()
        print(O.current_is_default())
    """))
    assert out == [
        "ran 1", "2 2 1",
        "ran 1", "False True 2 2",
        "ran 2", "3 3 2",
        "3 3",
        "True",
    ]


def test_uninstall_restores_default(tmp_path: Path, other_hook: Path) -> None:
    out = ok(run(tmp_path, f"""
        sys.path.insert(0, {str(other_hook)!r})
        import other_hook as O
        print(O.current_is_default())
        install(); install()
        print(O.current_is_default())
        B.hook_uninstall(); B.hook_uninstall()
        print(O.current_is_default())
    """))
    # 3.12+ installs no frame hook at all.
    frame = _bytecache.hook_mechanism() == "frame"
    assert out == ["True", str(not frame), "True"]



# --- which functions are intercepted, on either mechanism --------------------


def test_functions_defined_before_and_after_install(tmp_path: Path) -> None:
    # 3.12+ sees functions created after install through its function watcher
    # and the earlier ones through the scan (`hook_adopt`); 3.11 sees frames.
    defs = """
        import functools
        RAN = []
        def deco(fn):
            @functools.wraps(fn)
            def wrapper(*a, **k):
                RAN.append("wrapper:" + fn.__name__)
                return fn(*a, **k)
            return wrapper
        def make(k):
            def add(x):
                RAN.append("add%d" % k)
                return x + k
            return add
        class C:
            def m(self, x):
                RAN.append("m")
                return x * 2
            @staticmethod
            def s(x):
                RAN.append("s")
                return x * 3
            @classmethod
            def c(cls, x):
                RAN.append("c")
                return x * 4
            @property
            def p(self):
                RAN.append("p")
                return 5
        def plain(x):
            RAN.append("plain")
            return x + 1
        @deco
        def wrapped(x):
            RAN.append("wrapped")
            return x - 1
        lam = lambda x: RAN.append("lam") or x * 7
        add3 = make(3)
        o = C()
    """
    calls = """
        def twice():
            return [(plain(1), wrapped(1), lam(1), add3(1), o.m(1), C.s(1), C.c(1),
                     o.p, make(5)(1)) for _ in range(2)]
        r = twice()
        print(r[0] == r[1], sorted(set(RAN)))
        print(len(RAN))
    """
    for order in ("before", "after"):
        body = (defs + "\n        install()\n" if order == "before"
                else "\n        install()\n" + defs) + calls
        out = ok(run(tmp_path, body))
        assert out[0] == ("True ['add3', 'add5', 'c', 'lam', 'm', 'p', 'plain', 's', "
                          "'wrapped', 'wrapper:wrapped']"), order
        # Each body ran once: the second round was answered by the policy
        # (`p`, a property getter, is an ordinary method call).
        assert out[1] == "10", order


def test_reassigned_code(tmp_path: Path) -> None:
    out = ok(run(tmp_path, """
        def f(x):
            return ("f", x)
        def g(x):
            return ("g", x)
        def gen(x):
            yield x
        install()
        print(f(1), f(1))
        f.__code__ = g.__code__
        print(f(1), f(1))
        f.__code__ = gen.__code__
        print(list(f(2)), list(f(2)))
        print(STATS["hits"])
    """))
    # The key holds the code, so the new code misses once; a generator's code
    # is never intercepted.
    assert out == ["('f', 1) ('f', 1)", "('g', 1) ('g', 1)", "[2] [2]", "2"]


def test_interrupt_in_should_mark_propagates(tmp_path: Path) -> None:
    # Ctrl-C while the policy classifies a function must stop the program: on
    # 3.11 it is raised from the first call, on 3.12+ (classified when the
    # function is created) at the next instruction.
    out = ok(run(tmp_path, """
        def interrupting(f):
            raise KeyboardInterrupt
        B.hook_install(interrupting, on_call, on_return)
        try:
            def g(x):
                return x
            print("defined")
            g(1)
            print("called")
            for _ in range(1000):
                pass
            print("looped")
        except KeyboardInterrupt:
            print("interrupted")
        B.hook_uninstall()
        print("end")
    """))
    assert out[-2:] == ["interrupted", "end"]
    assert "called" not in out and "looped" not in out


# --- 3.12+: per-function vectorcalls ----------------------------------------

vectorcall_only = pytest.mark.skipif(_bytecache.hook_mechanism() != "vectorcall",
                                     reason="the vectorcall mechanism (3.12+)")


@pytest.fixture(scope="module")
def other_watcher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler")
    include = sysconfig.get_paths()["include"]
    out = tmp_path_factory.mktemp("other_watcher")
    so = out / ("other_watcher" + sysconfig.get_config_var("EXT_SUFFIX"))
    src = Path(__file__).with_name("other_watcher.c")
    subprocess.run([cc, "-shared", "-fPIC", "-O1", f"-I{include}", str(src), "-o", str(so)],
                   check=True)
    return out


@vectorcall_only
def test_uninstall_restores_every_vectorcall(tmp_path: Path, other_watcher: Path) -> None:
    out = ok(run(tmp_path, f"""
        sys.path.insert(0, {str(other_watcher)!r})
        import other_watcher as O
        import json
        def before(x):
            return x
        install()
        def after(x):
            return x
        class K:
            def m(self):
                return 1
        closures = [(lambda: i) for i in range(3)]
        marked = [before, after, K.m, *closures]
        print([O.has_default_vectorcall(f) for f in marked],
              O.has_default_vectorcall(json.dumps))
        B.hook_uninstall()
        print(all(O.has_default_vectorcall(f) for f in marked))
        print(before(1), after(2), K().m(), [c() for c in closures])
        install()   # re-enabling takes what the scan finds again
        print([O.has_default_vectorcall(f) for f in marked])
        before(7); before(7)
        print(STATS["hits"] > 0)
        B.hook_uninstall()
        print(all(O.has_default_vectorcall(f) for f in marked))
    """))
    assert out == [
        "[False, False, False, False, False, False] True",
        "True",
        "1 2 1 [2, 2, 2]",
        # Closures only reachable through a list are not in any namespace:
        # created after the next install they would be taken, these run as is.
        "[False, False, False, True, True, True]",
        "True",
        "True",
    ]


@vectorcall_only
def test_another_function_watcher_and_vectorcall(tmp_path: Path, other_watcher: Path) -> None:
    # Another extension with its own watchers and its own vectorcall on one
    # function: both keep working, and nothing of theirs is taken or chained.
    out = ok(run(tmp_path, f"""
        sys.path.insert(0, {str(other_watcher)!r})
        import other_watcher as O
        O.install()
        def theirs(x):
            return ("theirs", x)
        O.take(theirs)
        install()
        created = O.counts()[0]
        def ours(x):
            return ("ours", x)
        print(O.counts()[0] > created)
        print(ours(1), ours(1), theirs(1), theirs(1))
        print(O.counts()[2], STATS["hits"], O.has_own_vectorcall(theirs))
        B.hook_uninstall()
        print(O.has_own_vectorcall(theirs), theirs(2), O.counts()[2])
        created = O.counts()[0]
        def later():
            pass
        print(O.counts()[0] > created)
        O.uninstall()
    """))
    assert out == [
        "True",
        "('ours', 1) ('ours', 1) ('theirs', 1) ('theirs', 1)",
        "2 1 True",
        "True ('theirs', 2) 3",
        "True",
    ]


@vectorcall_only
def test_unmarked_code_keeps_inlined_calls(tmp_path: Path, other_hook: Path) -> None:
    # No frame hook: the interpreter's eval function stays the default, and
    # functions nobody marked keep the default vectorcall.
    out = ok(run(tmp_path, f"""
        sys.path.insert(0, {str(other_hook)!r})
        import other_hook as O
        import json
        install()
        def f(x):
            return x
        print(O.current_is_default(), f(1))
    """))
    assert out == ["True 1"]



@vectorcall_only
def test_another_dict_watcher(tmp_path: Path, other_watcher: Path) -> None:
    # Plans are kept fresh by a dict watcher of ours (3.12+); another
    # extension watching the same globals changes nothing for either.
    out = ok(run(tmp_path, f"""
        sys.path.insert(0, {str(other_watcher)!r})
        import other_watcher as O
        O.install()
        O.watch_dict(globals())
        K = 1
        def f(x):
            return x + K
        memo = B.Memo(f)
        k1, k1b = memo.key({{"x": 1}}), memo.key({{"x": 1}})
        events = O.counts()[1]
        K = 2
        k2 = memo.key({{"x": 1}})
        K = 1
        k3 = memo.key({{"x": 1}})
        print(k1 == k1b, k1 != k2, k1 == k3, O.counts()[1] > events)
        O.uninstall()
    """))
    assert out == ["True True True True"]


# --- bytecache._auto ----------------------------------------------------------
