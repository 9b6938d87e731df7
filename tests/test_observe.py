"""What a miss reads at run time (issue: Safety II): every kind is observed
while the miss runs, at any call depth, and is either keyed or a reason not
to store. Each case runs real interpreters in fresh processes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from conftest import Runner


def _script(body: str, call: str = "print(f())", head: str = "") -> str:
    return textwrap.dedent(head) + "import bytecache\n\n@bytecache.memoize\n" + \
        textwrap.dedent(body) + "\n" + call + "\n"


def _runs(runner: Runner, script: str, n: int = 2, **env: str) -> list[int]:
    """How often the body ran in each of `n` fresh processes."""
    return [runner.run(script, **env).stdout.count("RAN") for _ in range(n)]


# --- nondeterministic sources: never stored, explain names them --------------------

SOURCES = {
    "time.time": ("import time", "round(time.time() * 0 + 1)"),
    "time.time_ns": ("import time", "time.time_ns() * 0"),
    "datetime.now": ("import datetime", "datetime.datetime.now().year * 0"),
    "datetime.utcnow": ("import datetime", "datetime.datetime.utcnow().year * 0"),
    "datetime.today": ("import datetime", "datetime.datetime.today().year * 0"),
    "date.today": ("import datetime", "datetime.date.today().year * 0"),
    "time.localtime": ("import time", "time.localtime().tm_year * 0"),
    "time.strftime": ("import time", "len(time.strftime('%Y')) * 0"),
    "uuid4": ("import uuid", "len(str(uuid.uuid4())) * 0"),
    "uuid1": ("import uuid", "len(str(uuid.uuid1())) * 0"),
    "os.urandom": ("import os", "len(os.urandom(4)) * 0"),
    "secrets": ("import secrets", "len(secrets.token_hex(4)) * 0"),
    "SystemRandom": ("import random", "random.SystemRandom().random() * 0"),
    "perf_counter": ("import time", "time.perf_counter() * 0"),
    "getpid": ("import os", "os.getpid() * 0"),
    "numpy default_rng()": ("import numpy as np", "float(np.random.default_rng().random()) * 0"),
}


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_nondeterministic_source_is_never_stored(runner: Runner, source: str) -> None:
    if "numpy" in source:
        pytest.importorskip("numpy")
    head, expr = SOURCES[source]
    body = f"def f():\n    ran()\n    return {expr}\n"
    script = _script(body, call="print(f()); print(f())", head=head + "\n")
    proc = runner.run(script)
    assert proc.stdout.count("RAN") == 2, proc.stdout
    assert "not cached" in proc.stderr and "differs on every run" in proc.stderr, proc.stderr
    assert runner.run(script).stdout.count("RAN") == 2
    explain = runner.run(_script(body, call="print(bytecache.explain(f))", head=head + "\n"))
    assert "not stored last time" in explain.stdout and "differs on every run" in explain.stdout


def test_source_reached_through_a_library_is_seen(runner: Runner) -> None:
    # The clock is read two calls deep inside an installed library.
    lib = runner.work / "lib" / "site-packages"
    lib.mkdir(parents=True)
    (lib / "stamps.py").write_text(
        "import datetime\n\ndef _now():\n    return datetime.datetime.now()\n\n"
        "def stamp(x):\n    return (x, _now().year * 0)\n")
    script = _script("def f():\n    ran()\n    return stamps.stamp(1)\n",
                     head="import sys\nsys.path.insert(0, 'lib/site-packages')\nimport stamps\n")
    assert _runs(runner, script) == [1, 1]


@pytest.mark.parametrize("where", ["library", "user"])
def test_reads_while_a_module_imported_in_the_call_initializes(runner: Runner, where: str) -> None:
    # A library's module body reading the clock or entropy (a default year, a
    # random token) when first imported inside the call is the library's
    # initialization, keyed by its identity; a user's module body is not.
    folder = runner.work / ("lib/site-packages" if where == "library" else "")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "initmod.py").write_text(
        "import os, time\nYEAR = time.localtime().tm_year\nTOKEN = os.urandom(4)\n"
        "def double(x):\n    return 2 * x\n")
    script = _script("def f():\n    ran()\n    import initmod\n    return initmod.double(21)\n",
                     head="import sys\nsys.path.insert(0, 'lib/site-packages')\n")
    assert _runs(runner, script) == ([1, 0] if where == "library" else [1, 1])


def test_clock_reads_of_infrastructure_do_not_prevent_storing(runner: Runner) -> None:
    # logging stamps its records with the clock; that is not the result's input.
    script = _script("""
        def f():
            ran()
            logging.getLogger("x").warning("computing")
            return 42
    """, head="import logging\n")
    assert _runs(runner, script) == [1, 0]


def test_source_in_a_thread_the_call_starts_is_seen(runner: Runner) -> None:
    script = _script("""
        def f():
            ran()
            out = []
            t = threading.Thread(target=lambda: out.append(time.time() * 0))
            t.start(); t.join()
            return out[0]
    """, head="import threading, time\n")
    assert _runs(runner, script) == [1, 1]


# --- interpreter-wide generators: keyed on their state, replayed ------------------

RANDOM_SEEDED = """
import random
random.seed({seed})
import bytecache

@bytecache.memoize
def split(n):
    ran()
    idx = list(range(n))
    random.shuffle(idx)
    return idx[: n // 2]

print(split(10), random.random())
"""


def test_seeded_random_is_memoized_and_the_next_draw_matches(runner: Runner) -> None:
    fresh = subprocess.run([sys.executable, "-c", RANDOM_SEEDED.format(seed=1).replace(
        "@bytecache.memoize", "").replace("ran()", "pass")], capture_output=True, text=True,
        check=True).stdout
    first = runner.run(RANDOM_SEEDED.format(seed=1)).stdout
    second = runner.run(RANDOM_SEEDED.format(seed=1)).stdout
    assert first.count("RAN") == 1 and "RAN" not in second
    # The hit leaves the generator where the call left it.
    assert second == fresh == first.replace("RAN\n", "")
    third = runner.run(RANDOM_SEEDED.format(seed=2)).stdout
    assert third.count("RAN") == 1


def test_unseeded_random_is_never_reused(runner: Runner) -> None:
    script = RANDOM_SEEDED.replace("random.seed({seed})\n", "")
    assert _runs(runner, script, 3) == [1, 1, 1]


def test_seed_inside_the_call_makes_it_deterministic(runner: Runner) -> None:
    script = _script("""
        def f():
            ran()
            random.seed(7)
            return random.random()
    """, head="import random\n")
    assert _runs(runner, script) == [1, 0]


def test_seeded_numpy_legacy_generator(runner: Runner) -> None:
    pytest.importorskip("numpy")
    script = """
import numpy as np
np.random.seed({seed})
import bytecache

@bytecache.memoize
def draw():
    ran()
    return np.random.rand(3).round(6).tolist()

print(draw(), np.random.rand())
"""
    fresh = subprocess.run([sys.executable, "-c", script.format(seed=3).replace(
        "@bytecache.memoize", "").replace("ran()", "pass")], capture_output=True, text=True,
        check=True).stdout
    first = runner.run(script.format(seed=3)).stdout
    second = runner.run(script.format(seed=3)).stdout
    assert first.count("RAN") == 1 and "RAN" not in second and second == fresh
    assert runner.run(script.format(seed=4)).stdout.count("RAN") == 1
    assert runner.run(script.replace("np.random.seed({seed})\n", "")).stdout.count("RAN") == 1


@pytest.mark.parametrize("make", [
    "random.Random(5)",
    "np.random.default_rng(5)",
    "np.random.RandomState(5)",
])
def test_generator_argument_is_advanced_on_a_hit(runner: Runner, make: str) -> None:
    if "np." in make:
        pytest.importorskip("numpy")
    draw = "rng.random()" if "Random(" in make and "State" not in make else "float(rng.random())"
    if "RandomState" in make:
        draw = "float(rng.random_sample())"
    script = f"""
import random
import numpy as np
import bytecache

@bytecache.memoize
def sample(rng):
    ran()
    return [{draw} for _ in range(3)]

rng = {make}
print(sample(rng), {draw})
"""
    first = runner.run(script).stdout
    second = runner.run(script).stdout
    assert first.count("RAN") == 1 and "RAN" not in second
    assert second == first.replace("RAN\n", "")


# --- interpreter-wide state read by libraries ----------------------------------------


def test_sys_argv_read_by_argparse(runner: Runner) -> None:
    script = """
import argparse, sys
sys.argv = ["train.py", "--epochs", "{n}"]
import bytecache

@bytecache.memoize
def train():
    ran()
    args = argparse.ArgumentParser()
    args.add_argument("--epochs", type=int)
    return args.parse_args().epochs

print(train())
"""
    assert runner.out(script.format(n=3)) == ["RAN", "3"]
    assert runner.out(script.format(n=3)) == ["3"]
    assert runner.out(script.format(n=5)) == ["RAN", "5"]
    assert runner.out(script.format(n=3)) == ["3"]  # both versions are kept


def test_decimal_context(runner: Runner) -> None:
    script = """
import decimal
decimal.getcontext().prec = {p}
import bytecache

@bytecache.memoize
def third():
    ran()
    return str(decimal.Decimal(1) / 3)

print(third())
"""
    assert runner.out(script.format(p=6)) == ["RAN", "0.333333"]
    assert runner.out(script.format(p=6)) == ["0.333333"]
    assert runner.out(script.format(p=3)) == ["RAN", "0.333"]


def test_numpy_print_options(runner: Runner) -> None:
    pytest.importorskip("numpy")
    script = """
import numpy as np
np.set_printoptions(precision={p})
import bytecache

@bytecache.memoize
def show():
    ran()
    return str(np.array([1 / 3]))

print(show())
"""
    assert runner.out(script.format(p=3)) == ["RAN", "[0.333]"]
    assert runner.out(script.format(p=3)) == ["[0.333]"]
    assert runner.out(script.format(p=5)) == ["RAN", "[0.33333]"]


def test_relative_path_follows_the_working_directory(runner: Runner) -> None:
    for d, text in (("a", "1 2"), ("b", "30")):
        (runner.work / d).mkdir()
        (runner.work / d / "data.txt").write_text(text)
    script = """
import os, sys
os.chdir(sys.argv[1] if len(sys.argv) > 1 else "{d}")
import bytecache

@bytecache.memoize
def total():
    ran()
    with open("data.txt") as f:
        return sum(map(int, f.read().split()))

print(total())
"""
    assert runner.out(script.format(d="a")) == ["RAN", "3"]
    assert runner.out(script.format(d="a")) == ["3"]
    assert runner.out(script.format(d="b")) == ["RAN", "30"]


CWD_SCRIPT = """
import os
os.chdir("{d}")
import bytecache

@bytecache.memoize
def where():
    ran()
{body}

print(where())
"""


def test_the_working_directory_read_is_keyed(runner: Runner) -> None:
    for d in ("a", "b"):
        (runner.work / d).mkdir()
    body = "    return os.path.basename(os.getcwd())"
    assert runner.out(CWD_SCRIPT.format(d="a", body=body)) == ["RAN", "a"]
    assert runner.out(CWD_SCRIPT.format(d="a", body=body)) == ["a"]
    assert runner.out(CWD_SCRIPT.format(d="b", body=body)) == ["RAN", "b"]


def test_a_call_that_moves_to_another_directory_is_not_stored(runner: Runner) -> None:
    (runner.work / "a" / "sub").mkdir(parents=True)
    body = """    os.chdir("sub")
    return 1"""
    assert runner.out(CWD_SCRIPT.format(d="a", body=body)) == ["RAN", "1"]
    assert runner.out(CWD_SCRIPT.format(d="a", body=body)) == ["RAN", "1"]


def test_a_call_that_comes_back_is_keyed_by_where_it_started(runner: Runner) -> None:
    # It reads the working directory after moving: the key holds the one it
    # started in, and it left things as they were, so it is stored.
    for d in ("a", "b"):
        (runner.work / d / "sub").mkdir(parents=True)
    body = """    os.chdir("sub")
    inside = os.path.basename(os.getcwd())
    os.chdir("..")
    return inside"""
    assert runner.out(CWD_SCRIPT.format(d="a", body=body)) == ["RAN", "sub"]
    assert runner.out(CWD_SCRIPT.format(d="a", body=body)) == ["sub"]
    assert runner.out(CWD_SCRIPT.format(d="b", body=body)) == ["RAN", "sub"]
    assert runner.out(CWD_SCRIPT.format(d="b", body=body)) == ["sub"]


# --- the file system beyond open() -----------------------------------------------------

PROBES = {
    "os.path.exists": ("os.path.exists(P)", "RAN"),
    "os.path.isfile": ("os.path.isfile(P)", "RAN"),
    "os.path.getsize": ("os.path.getsize(P) if os.path.exists(P) else -1", "RAN"),
    "pathlib.exists": ("pathlib.Path(P).exists()", "RAN"),
    "os.stat": ("os.stat(P).st_size if os.access(P, os.F_OK) else -1", "RAN"),
}


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_probed_path_is_a_dependency_absence_included(runner: Runner, probe: str) -> None:
    expr, _ = PROBES[probe]
    script = f"""
import os, pathlib
P = "flag.txt"
import bytecache

@bytecache.memoize
def check():
    ran()
    return {expr}

print(check())
"""
    first = runner.out(script)
    assert first[0] == "RAN"
    assert runner.out(script) == first[1:]  # absent: stored, valid while absent
    (runner.work / "flag.txt").write_text("x" * 5)
    assert runner.out(script)[0] == "RAN"  # appeared
    again = runner.out(script)
    assert "RAN" not in again
    if "size" in probe or "stat" in probe:
        (runner.work / "flag.txt").write_text("x" * 9)
        assert runner.out(script)[0] == "RAN"  # grew


def test_missing_probe_does_not_prevent_storing(runner: Runner) -> None:
    # An import scans a sys.path entry that does not exist; a library probes
    # /sys/fs/cgroup files that may not exist: the call is still stored.
    script = _script("""
        def f():
            ran()
            os.path.exists("/nonexistent/bytecache/probe")
            try:
                open("/nonexistent/bytecache/file")
            except OSError:
                pass
            return 7
    """, head="import os, sys\nsys.path.insert(0, '/nonexistent/entry')\n")
    assert _runs(runner, script) == [1, 0]


def test_opened_file_that_is_absent_is_valid_while_absent(runner: Runner) -> None:
    script = _script("""
        def f():
            ran()
            try:
                with open("opt.cfg") as fh:
                    return fh.read()
            except FileNotFoundError:
                return "default"
    """)
    assert runner.out(script) == ["RAN", "default"]
    assert runner.out(script) == ["default"]
    (runner.work / "opt.cfg").write_text("custom")
    assert runner.out(script) == ["RAN", "custom"]


@pytest.mark.parametrize("named", ["current.txt", "link/../data.txt", "linkdir/data.txt"])
def test_where_a_symbolic_link_leads_is_a_dependency(runner: Runner, named: str) -> None:
    # The file a link leads to can stay the same while the link is retargeted
    # (a "current" link, a directory link, `..` taken after a link).
    w = runner.work
    for d in ("v1", "v2"):
        (w / d / "inner").mkdir(parents=True)
        (w / d / "data.txt").write_text(f"data of {d}")
    (w / "current.txt").symlink_to("v1/data.txt")
    (w / "link").symlink_to("v1/inner")
    (w / "linkdir").symlink_to("v1")
    script = _script(f"""
        def f():
            ran()
            with open({named!r}) as fh:
                return fh.read().replace(" ", "_")
    """)
    assert runner.out(script) == ["RAN", "data_of_v1"]
    assert runner.out(script) == ["data_of_v1"]
    for name, target in (("current.txt", "v2/data.txt"), ("link", "v2/inner"), ("linkdir", "v2")):
        (w / name).unlink()
        (w / name).symlink_to(target)
    explain = runner.run(script.replace("print(f())", "print(bytecache.explain(f))")).stdout
    assert "(where the link leads): v1/" in explain and " v2/" in explain
    assert runner.out(script) == ["RAN", "data_of_v2"]
    assert runner.out(script) == ["data_of_v2"]


def test_file_read_in_a_thread_pool_worker(runner: Runner) -> None:
    (runner.work / "p1.txt").write_text("1 2")
    (runner.work / "p2.txt").write_text("3")
    script = _script("""
        def total():
            ran()
            def read(p):
                with open(p) as f:
                    return sum(map(int, f.read().split()))
            with ThreadPoolExecutor(2) as ex:
                return sum(ex.map(read, ["p1.txt", "p2.txt"]))
    """, call="print(total())", head="from concurrent.futures import ThreadPoolExecutor\n")
    assert runner.out(script) == ["RAN", "6"]
    assert runner.out(script) == ["6"]
    (runner.work / "p2.txt").write_text("30")
    assert runner.out(script) == ["RAN", "33"]


def test_sqlite_database_is_a_dependency(runner: Runner) -> None:
    db = runner.work / "shop.db"
    con = sqlite3.connect(db)
    con.execute("create table sales (amount real)")
    con.execute("insert into sales values (5)")
    con.commit()
    script = _script("""
        def total():
            ran()
            con = sqlite3.connect("shop.db")
            try:
                return con.execute("select sum(amount) from sales").fetchone()[0]
            finally:
                con.close()
    """, call="print(total())", head="import sqlite3\n")
    assert runner.out(script) == ["RAN", "5.0"]
    assert runner.out(script) == ["5.0"]
    con.execute("insert into sales values (7)")
    con.commit()
    con.close()
    assert runner.out(script) == ["RAN", "12.0"]


def test_file_changed_while_the_call_ran_is_not_stored(runner: Runner) -> None:
    # Another writer (a thread started before the call, so not the call's own
    # write) appends to the file while the call runs.
    (runner.work / "d.txt").write_text("1")
    script = _script("""
        def f():
            ran()
            with open("d.txt") as fh:
                v = fh.read()
            time.sleep(0.6)
            return v
    """, head="""
import threading, time
def writer():
    time.sleep(0.3)
    with open("d.txt", "a") as fh:
        fh.write("2")
threading.Thread(target=writer).start()
""")
    proc = runner.run(script)
    assert proc.stdout.count("RAN") == 1 and "changed while the call ran" in proc.stderr
    assert runner.run(script).stdout.count("RAN") == 1


# --- environment variables by name ---------------------------------------------------


@pytest.mark.parametrize("read", [
    'os.environ["MODE"]',
    'os.environ.get("MODE")',
    'os.getenv("MODE")',
    'os.path.expandvars("$MODE")',
])
def test_environment_variable_read_by_name(runner: Runner, read: str) -> None:
    script = _script(f"def f():\n    ran()\n    return {read}\n", head="import os\n")
    assert runner.out(script, MODE="a") == ["RAN", "a"]
    assert runner.out(script, MODE="a", OTHER="changed") == ["a"]  # unrelated: reused
    assert runner.out(script, MODE="b") == ["RAN", "b"]
    assert runner.out(script, MODE="a") == ["a"]  # both kept


def test_unset_environment_variable_is_a_dependency(runner: Runner) -> None:
    script = _script('def f():\n    ran()\n    return os.environ.get("MODE", "unset")\n',
                     head="import os\n")
    assert runner.out(script) == ["RAN", "unset"]
    assert runner.out(script) == ["unset"]
    assert runner.out(script, MODE="x") == ["RAN", "x"]


def test_setting_an_environment_variable_is_not_stored(runner: Runner) -> None:
    script = _script('def f():\n    ran()\n    os.environ["SET_BY_F"] = "1"\n    return 1\n',
                     head="import os\n")
    assert _runs(runner, script) == [1, 1]


# --- subprocesses and worker pools -------------------------------------------------------


@pytest.mark.parametrize("run", [
    'subprocess.run(["sh", "-c", "echo $OMP_NUM_THREADS"], capture_output=True, text=True).stdout',
    'os.system("true")',
    'subprocess.check_output(["wc", "-c", "main.py"])',
])
def test_subprocess_is_not_stored(runner: Runner, run: str) -> None:
    script = _script(f"def f():\n    ran()\n    return {run}\n", head="import os, subprocess\n")
    proc = runner.run(script)
    assert "runs a subprocess" in proc.stderr
    assert _runs(runner, script) == [1, 1]
    explain = runner.run(script.replace("print(f())", "print(bytecache.explain(f))"))
    assert "runs a subprocess" in explain.stdout


def test_process_pool_on_pickled_data_stays_memoizable(runner: Runner) -> None:
    runner.write("work_items.py", "def square(x):\n    return x * x\n")
    script = """
import bytecache
from concurrent.futures import ProcessPoolExecutor
from work_items import square

@bytecache.memoize
def total(n):
    ran()
    with ProcessPoolExecutor(2) as ex:
        return sum(ex.map(square, range(n)))

if __name__ == "__main__":
    print(total(10))
"""
    assert runner.out(script) == ["RAN", "285"]
    assert runner.out(script) == ["285"]


# --- the repros from real pipelines ----------------------------------------------------------


def test_read_csv_is_memoized(runner: Runner) -> None:
    pytest.importorskip("pandas")
    (runner.work / "d.csv").write_text("a,b\n1,2\n3,4\n")
    script = _script("""
        def load(path):
            ran()
            return pd.read_csv(path)["a"].sum().item()
    """, call='print(load("d.csv"))', head="import pandas as pd\n")
    assert runner.out(script) == ["RAN", "4"]
    assert runner.out(script) == ["4"]
    (runner.work / "d.csv").write_text("a,b\n1,2\n5,4\n")
    assert runner.out(script) == ["RAN", "6"]


def test_train_test_split_is_memoized(runner: Runner) -> None:
    pytest.importorskip("sklearn")
    script = _script("""
        def split(s):
            ran()
            return train_test_split(list(range(100)), random_state=s)
    """, call="print(split(0)[0][:3])",
       head="from sklearn.model_selection import train_test_split\n")
    first = runner.out(script)
    assert first[0] == "RAN"
    assert runner.out(script) == first[1:]


def test_explain_names_the_changed_dependency(runner: Runner) -> None:
    script = _script('def f():\n    ran()\n    return os.environ.get("MODE")\n',
                     head="import os\n", call="print(f())")
    runner.run(script, MODE="a")
    out = runner.run(script.replace("print(f())", "print(bytecache.explain(f))"),
                     MODE="b").stdout
    assert "environment variable MODE" in out and "'a' → 'b'" in out


def test_auto_mode_observes_too(runner: Runner) -> None:
    script = """
import time
import bytecache
bytecache.enable(min_seconds=0)

def stamp():
    ran()
    return time.time() * 0

print(stamp())
"""
    assert _runs(runner, script) == [1, 1]


def test_observation_is_idle_outside_misses(runner: Runner) -> None:
    # Watched functions called outside any miss behave exactly as before.
    out = runner.out("""
import time, os, datetime
import bytecache

@bytecache.memoize
def f():
    return 1

f()
print(type(time.time()).__name__, os.path.exists("main.py"), datetime.date.today().year > 2000)
""")
    assert out == ["float", "True", "True"]


def test_imports_during_the_call_are_not_probes(runner: Runner) -> None:
    # Importing stats path entries and module files (the working directory
    # among them, whose mtime changes whenever a file is created there): the
    # import system's reads are not the call's dependencies.
    runner.write("helper_mod.py", "VALUE = 3\n")
    script = _script("""
        def f():
            ran()
            import helper_mod
            import json
            return helper_mod.VALUE
    """, head="import sys\nsys.path.insert(0, '.')\n")
    assert runner.out(script) == ["RAN", "3"]
    (runner.work / "unrelated.txt").write_text("changes the directory's mtime")
    assert runner.out(script) == ["3"]


def test_looking_up_installed_distributions_is_not_a_probe(runner: Runner) -> None:
    # importlib.metadata stats every sys.path entry ('' is the working
    # directory, whose mtime changes whenever a file is created there).
    script = _script("""
        def f():
            ran()
            return importlib.metadata.version("pytest")
    """, head="import importlib.metadata, sys\nsys.path.insert(0, '')\n")
    first = runner.out(script)
    (runner.work / "new_file.txt").write_text("x")
    assert runner.out(script) == first[1:]


@pytest.mark.parametrize("broken", ["_observe._resolve", "_effects._portable_record",
                                    "_observe.path_state"])
def test_a_failure_of_observation_never_reaches_the_users_call(runner: Runner, broken: str) -> None:
    # bytecache's own recording fails (a fault injected into bytecache, not
    # into CPython or the file system): the user's open(), print() and
    # logging work as ever; the call cannot know what it read, so it is not
    # stored; one warning says so.
    (runner.work / "d.txt").write_text("5")
    module, name = broken.split(".")
    script = _script("""
        def f():
            ran()
            logging.getLogger("x").warning("reading")
            print("printing")
            with open("d.txt") as fh:
                return int(fh.read())
    """, head=f"""
import logging
from bytecache import {module}
def boom(*a, **k):
    raise RuntimeError("injected")
{module}.{name} = boom
""")
    proc = runner.run(script)
    assert proc.stdout.split() == ["RAN", "printing", "5"]
    assert "could not observe" in proc.stderr and proc.stderr.count("BytecacheWarning") == 1
    assert runner.run(script).stdout.count("RAN") == 1


def test_a_miss_of_a_pure_function_makes_no_watched_call(runner: Runner) -> None:
    # bytecache's own clock reads around a miss stay outside the observed
    # window: a function that reads nothing costs no watched-call callback.
    out = runner.out("""
import bytecache
from bytecache import _observe

calls = []
original = _observe._watched
_observe._watched = lambda *a: calls.append(a[2]) or original(*a)

@bytecache.memoize
def f(x):
    ran()
    return [x, x * 2.0]

f(1); f(2)
print("watched", len(calls), f.cache_info()["stored"])
""")
    assert out[-3:] == ["watched", "0", "2"]
