"""Real libraries' own test suites, run with every function of the library
memoized (`enable(modules=[<all its modules>], min_seconds=0)`): every test
that passes without bytecache passes with it, in a cold run and again in a
new process with the warm cache. Prints counts, hits and the slowdown (not
asserted: tests never assert on time).

The libraries are pure Python and ship their tests inside the package:
toolz (functional helpers: currying, composition, introspection of
signatures) and zict (mutable mappings layered on each other, with locks,
weak references, callbacks and files); they are installed by the test
tools (zict comes with Dask's `distributed`).

Left out: zict's thread-safety stress tests (millions of calls of marked
methods that mutate their object, each a miss: minutes under bytecache, for
nothing a shorter test does not check); zict's tests that use its `check_fd_leaks`
fixture, which counts the process's open descriptors around the test and
sees the cache's own (its store keeps the data files it maps open, and maps
them as entries are first read: whichever test that happens in fails the
check; see README's limits); and networkx (with all its modules
marked, a call that cannot be stored is keyed again on every call: its
class tests take over an hour; see README's limits)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

SUPPORT = str(Path(__file__).parent / "support")

#: library -> (test package inside the installed library, pytest -k expression,
#: fixtures whose tests are left out)
LIBRARIES = {
    "toolz": ("toolz.tests", "", ""),
    "zict": ("zict.tests", "not threadsafe", "check_fd_leaks"),
}


def _pytest(tests: str, select: str, env: dict[str, str], cwd: Path
            ) -> tuple[dict[str, str], str, float]:
    """Outcome per test id, the summary line, and the wall time."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
         "-W", "ignore::bytecache.BytecacheWarning" if "BYTECACHE_MARK_LIB" in env else "default",
         "--pyargs", tests, "-p", "bytecache_marklib"] + (["-k", select] if select else []),
        cwd=cwd, env=env, capture_output=True, text=True, timeout=1800,
    )
    elapsed = time.perf_counter() - started
    outcomes = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (\S+)", line)
        if m:
            outcomes[m.group(2)] = m.group(1)
    stats = next((line for line in proc.stdout.splitlines() if "BYTECACHE-STATS" in line), "")
    return outcomes, stats, elapsed


@pytest.mark.skipif(os.environ.get("BYTECACHE_REAL_LIBRARIES", "0") == "0",
                    reason="minutes long: set BYTECACHE_REAL_LIBRARIES=1 (ci/test.sh does, on 3.11)")
@pytest.mark.parametrize("library", sorted(LIBRARIES))
def test_library_suite_passes_under_bytecache(tmp_path: Path, library: str) -> None:
    if importlib.util.find_spec(library) is None:
        pytest.skip(f"{library} is not installed (ci/env.sh installs it)")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BYTECACHE", "PYTHONHASHSEED"))}
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [SUPPORT, base.get("PYTHONPATH")]))
    base["HOME"] = str(tmp_path)
    tests, select, skip_fixtures = LIBRARIES[library]
    base["REALLIB_SKIP_FIXTURES"] = skip_fixtures
    plain, _, t_plain = _pytest(tests, select, base, tmp_path)
    marked = dict(base, BYTECACHE_MARK_LIB=library, BYTECACHE_DIR=str(tmp_path / "cache"))
    cold, cold_stats, t_cold = _pytest(tests, select, marked, tmp_path)
    warm, warm_stats, t_warm = _pytest(tests, select, marked, tmp_path)
    passing = sorted(t for t, o in plain.items() if o == "PASSED")
    assert passing, f"no test of {tests} passed without bytecache"
    broken_cold = [t for t in passing if cold.get(t) != "PASSED"]
    broken_warm = [t for t in passing if warm.get(t) != "PASSED"]
    print(f"\n{library}: {len(passing)} passing without bytecache; "
          f"cold {len(passing) - len(broken_cold)} ({cold_stats.strip()}) {t_cold / t_plain:.1f}x; "
          f"warm {len(passing) - len(broken_warm)} ({warm_stats.strip()}) {t_warm / t_plain:.1f}x")
    assert broken_cold == [] and broken_warm == []
