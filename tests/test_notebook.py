"""Notebook behaviour in a real Jupyter kernel (ipykernel through nbclient):
Run All, re-running a cell, restarting the kernel, editing one function."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

SETUP = """%load_ext bytecache
import os, sys, time
# Body executions are counted through a descriptor kept on `sys` (the standard
# library is keyed by version, so this is not part of any key).
sys._bc_fd = os.open(os.environ["BC_MARKER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)"""

LOAD = """def load(n):
    os.write(sys._bc_fd, b"load ")
    print("loading", n)
    time.sleep(0.2)
    return list(range(n))"""

CLEAN = """def clean(rows):
    os.write(sys._bc_fd, b"clean ")
    time.sleep(0.2)
    return [r * {k} for r in rows]"""


def _notebook(k: int = 2) -> object:
    cells = [SETUP, LOAD, CLEAN.format(k=k), "rows = load(5)", "sum(clean(rows))",
             "sum(clean(rows))"]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    return nb


def _run(nb: object, cwd: Path) -> list[object]:
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return [c.outputs for c in nb.cells]


@pytest.fixture
def notebook_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BYTECACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BC_MARKER", str(tmp_path / "marker"))
    monkeypatch.delenv("BYTECACHE", raising=False)
    return tmp_path


def _marker(tmp: Path) -> list[str]:
    path = tmp / "marker"
    words = path.read_text().split() if path.exists() else []
    path.write_text("")
    return words


def test_run_all_restart_run_all(notebook_env: Path) -> None:
    first = _run(_notebook(), notebook_env)
    # Re-running the same cell in one kernel hits (cells 5 and 6 are the same call).
    assert _marker(notebook_env) == ["load", "clean"]
    second = _run(_notebook(), notebook_env)  # a new kernel: restart + Run All
    assert _marker(notebook_env) == []
    assert [len(o) for o in first] == [len(o) for o in second]
    strip = [[{k: v for k, v in o.items() if k != "execution_count"} for o in outs]
             for outs in first]
    again = [[{k: v for k, v in o.items() if k != "execution_count"} for o in outs]
             for outs in second]
    assert strip == again  # replayed prints and results look the same
    assert first[3][0]["text"] == "loading 5\n"


def test_editing_one_function_recomputes_only_what_depends_on_it(notebook_env: Path) -> None:
    _run(_notebook(k=2), notebook_env)
    _marker(notebook_env)
    outputs = _run(_notebook(k=3), notebook_env)
    assert _marker(notebook_env) == ["clean"]
    assert outputs[4][0]["data"]["text/plain"] == "30"


def test_unchanged_definition_keeps_its_object(notebook_env: Path) -> None:
    nb = nbformat.v4.new_notebook()
    src = "import functools\n@functools.lru_cache\ndef sq(x):\n    return x * x"
    nb.cells = [nbformat.v4.new_code_cell(c) for c in [
        "%load_ext bytecache", src, "sq(3); first = sq", src, "sq is first, sq.cache_info().hits",
        src.replace("x * x", "x * x * 1"), "sq is first",
    ]]
    outs = _run(nb, notebook_env)
    assert outs[4][0]["data"]["text/plain"] == "(True, 0)"
    assert outs[6][0]["data"]["text/plain"] == "False"


def test_os_environ_is_not_needed(notebook_env: Path) -> None:
    # The kernel inherits BYTECACHE_DIR: the cache lands where the test says.
    _run(_notebook(), notebook_env)
    assert os.path.isdir(notebook_env / "cache")


def test_cell_run_before_load_ext(notebook_env: Path) -> None:
    # The function exists before the extension is loaded: on 3.12+ it is found
    # by the scan of the user namespace, not by the function watcher.
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in [
        "import os, sys, time\nsys._bc_fd = os.open(os.environ['BC_MARKER'], "
        "os.O_WRONLY | os.O_APPEND | os.O_CREAT)",
        LOAD, "%load_ext bytecache", "rows = load(5)", "rows = load(5)", "len(rows)",
    ]]
    outs = _run(nb, notebook_env)
    assert _marker(notebook_env) == ["load"]
    assert outs[5][0]["data"]["text/plain"] == "5"
