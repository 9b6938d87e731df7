"""Where a module comes from decides whether it is walked (the user's code) or
keyed by version (a library). Taking a library for the user's code is only
slower; the other way round would return stale results, so a module file that
sits in a library directory but links to the user's code must be walked."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import sysconfig
import uuid
from pathlib import Path

import pytest

from bytecache import _modkind


def _load(name: str, path: Path) -> None:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


def test_libraries_and_user_code(tmp_path: Path) -> None:
    import json

    import pytest as installed

    assert _modkind.classify(json.__name__) == _modkind._PY
    assert _modkind.classify(installed.__name__).startswith(f"pytest=={installed.__version__}#")
    assert _modkind.classify("builtins") == _modkind._PY
    name = f"user_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text("X = 1\n")
    _load(name, tmp_path / f"{name}.py")
    try:
        assert _modkind.classify(name) is None
    finally:
        del sys.modules[name]


def test_a_link_from_a_library_directory_to_user_code_is_walked(tmp_path: Path) -> None:
    site = Path(sysconfig.get_paths()["purelib"])
    if not os.access(site, os.W_OK):
        pytest.skip("site-packages is not writable here")
    name = f"bytecache_link_{uuid.uuid4().hex}"
    target = tmp_path / "mine.py"
    target.write_text("X = 1\n")
    link = site / f"{name}.py"
    link.symlink_to(target)
    try:
        _load(name, link)
        assert sys.modules[name].__file__ == str(link)
        assert _modkind.classify(name) is None
    finally:
        link.unlink()
        sys.modules.pop(name, None)


def test_a_user_directory_linking_into_a_library_is_at_worst_walked(tmp_path: Path) -> None:
    # The path does not start with a library directory, so it is not resolved:
    # the module is walked like the user's own code (never stale).
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "thing.py").write_text("X = 1\n")
    alias = tmp_path / "alias"
    alias.symlink_to(lib)
    name = f"alias_{uuid.uuid4().hex}"
    _load(name, alias / "thing.py")
    try:
        assert _modkind.classify(name) is None
    finally:
        del sys.modules[name]


def test_a_submodule_without_a_file_belongs_to_its_package() -> None:
    import types

    import pytest as installed

    expected = _modkind.classify("pytest")
    assert expected.startswith(f"pytest=={installed.__version__}#")
    name = f"pytest._synthetic_{uuid.uuid4().hex}"
    sys.modules[name] = types.ModuleType(name)  # no __file__, as an extension's submodule
    try:
        assert _modkind.classify(name) == expected
    finally:
        del sys.modules[name]
    assert _modkind.classify(f"pytest._not_there_{uuid.uuid4().hex}") == expected
    # Without a package above it, a module with no file is the user's.
    assert _modkind.classify(f"nowhere_{uuid.uuid4().hex}") is None


def test_classifying_a_module_not_loaded_imports_nothing(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # `importlib.util.find_spec("pkg.sub")` would import `pkg` (running its
    # __init__); locating it must not.
    name = f"pkg_{uuid.uuid4().hex}"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (tmp_path / name / "sub.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _modkind.classify(f"{name}.sub") is None
    kind, is_package, code, path = _modkind.unloaded(f"{name}.sub")
    assert (kind, is_package, path) == ("source", False, str(tmp_path / name / "sub.py"))
    assert name not in sys.modules and f"{name}.sub" not in sys.modules


def test_distributions_are_found_without_importlib_metadata() -> None:
    script = (
        "import sys, numpy\n"
        "from bytecache import _modkind\n"
        "print(_modkind.classify('numpy.linalg'))\n"
        "print('importlib.metadata' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.split()
    import numpy

    assert out[0].startswith(f"numpy=={numpy.__version__}#")
    assert out[1] == "False"


def test_module_paths_resolve_as_realpath_does(tmp_path: Path) -> None:
    # `_realpath` resolves directories once per process; every kind of link
    # must still resolve exactly as `os.path.realpath` does.
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f.py").write_text("")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    (tmp_path / "a" / "lf.py").symlink_to(tmp_path / "a" / "b" / "f.py")
    (tmp_path / "a" / "rel").symlink_to(Path("..") / "a" / "b")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    cases = ["link/b/f.py", "a/lf.py", "a/rel/f.py", "link/rel/f.py", "missing/x.py",
             "a/../link/b/f.py", "loop/x.py", "a/b/./f.py", "link/b/"]
    # Twice: the second round finds every directory resolved already.
    for case in cases + cases:
        path = str(tmp_path / case)
        assert _modkind._realpath(path) == os.path.realpath(path), case
    assert _modkind._realpath("relative/x.py") == os.path.realpath("relative/x.py")
    assert _modkind._realpath("/") == "/"
