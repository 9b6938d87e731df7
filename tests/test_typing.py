"""The typed surface as a user's type checker sees it (mypy --strict on a
user's file against the installed package)."""

from __future__ import annotations

from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

USER = '''
import bytecache

@bytecache.memoize
def area(w: int, h: int = 2) -> float:
    return w * h * 1.0

@bytecache.memoize(ignore=("verbose",), min_seconds=0.5)
def load(path: str, verbose: bool = False) -> list[str]:
    return [path]

class Model:
    @bytecache.memoize
    def fit(self, k: int) -> int:
        return k

reveal_type(area(3))
reveal_type(load("x"))
reveal_type(area.cache_info()["hits"])
reveal_type(area.cache_clear())
reveal_type(Model().fit(2))
reveal_type(Model().fit.cache_info())
reveal_type(bytecache.stats())
reveal_type(bytecache.stats()["hits"])
reveal_type(bytecache.is_enabled())
reveal_type(bytecache.enable(["pipeline.*"], min_seconds=0.5))
reveal_type(bytecache.disable())
reveal_type(bytecache.clear(area))
reveal_type(bytecache.once(area))
area("3")
'''


def test_the_public_api_is_typed(tmp_path: Path) -> None:
    (tmp_path / "user.py").write_text(USER)
    out, err, _ = mypy_api.run(["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "c"),
                                str(tmp_path / "user.py")])
    notes = [line.split(": ", 2)[2] for line in out.splitlines() if ": note: " in line
             or ": error: " in line]
    assert notes == [
        'Revealed type is "float"',
        'Revealed type is "list[str]"',
        'Revealed type is "int"',
        'Revealed type is "int"',
        'Revealed type is "int"',
        'Revealed type is "TypedDict(bytecache._types.CacheInfo, {\'hits\': int, '
        "'misses': int, 'stored': int, 'uncacheable': int, 'saved_seconds': float})\"",
        'Revealed type is "bytecache._stats.Stats"',
        'Revealed type is "Any"',
        'Revealed type is "bool"',
        'Revealed type is "None"',
        'Revealed type is "None"',
        'Revealed type is "int"',
        'Revealed type is "bytecache._types.Memoized[[w: int, h: int =], float]"',
        'Argument 1 to "__call__" of "Memoized" has incompatible type "str"; expected "int"  '
        '[arg-type]',
    ], out + err
