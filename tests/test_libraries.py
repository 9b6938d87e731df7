"""Libraries in keys: an installed distribution is keyed by what is installed
(not by its name and version), and a library attribute replaced at run time
(a monkeypatch) is keyed by what replaced it. Real interpreters, real venvs,
real `pip install`s."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import bytecache
from conftest import Runner


def _wheel(out: Path, name: str, version: str, files: dict[str, str]) -> Path:
    """A pure-Python wheel of `files` (path -> text), built by hand: no build
    backend needed (Python 3.12+ venvs have no setuptools)."""
    info = f"{name}-{version}.dist-info"
    files = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    wheel = out / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
        z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel


class Venv:
    """A fresh venv (no pip of its own: this interpreter's pip installs into
    it) that imports bytecache from where the tests run it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
        self.python = root / "bin" / "python"

    def install(self, wheel: Path) -> None:
        subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(self.python), "install", "-q",
             "--no-index", "--no-deps", "--force-reinstall", "--disable-pip-version-check",
             str(wheel)],
            check=True, capture_output=True,
        )

    def run(self, runner: Runner, script: str) -> subprocess.CompletedProcess[str]:
        runner.write("main.py", script)
        env = runner.env()
        package_root = str(Path(bytecache.__file__).parent.parent)
        env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], package_root])
        return subprocess.run([str(self.python), "main.py"], cwd=runner.work, env=env,
                              capture_output=True, text=True, timeout=120, check=True)


USES_TINYPKG = """
import bytecache
import tinypkg

@bytecache.memoize
def target(n):
    ran()
    return tinypkg.f(n)

print(target(5))
"""


def test_a_package_reinstalled_with_edited_code_and_the_same_version(
        runner: Runner, tmp_path: Path) -> None:
    venv = Venv(tmp_path / "venv")
    v1 = tmp_path / "v1"
    v1.mkdir()
    venv.install(_wheel(v1, "tinypkg", "1.0", {"tinypkg/__init__.py": "def f(x):\n"
                                                                     "    return x + 1\n"}))
    assert venv.run(runner, USES_TINYPKG).stdout.split() == ["RAN", "6"]
    assert venv.run(runner, USES_TINYPKG).stdout.split() == ["6"]  # stored, reused
    v2 = tmp_path / "v2"
    v2.mkdir()
    venv.install(_wheel(v2, "tinypkg", "1.0", {"tinypkg/__init__.py": "def f(x):\n"
                                                                     "    return x + 2\n"}))
    assert venv.run(runner, USES_TINYPKG).stdout.split() == ["RAN", "7"]
    # Re-installing the first build again finds its entry.
    venv.install(_wheel(v1, "tinypkg", "1.0", {"tinypkg/__init__.py": "def f(x):\n"
                                                                     "    return x + 1\n"}))
    assert venv.run(runner, USES_TINYPKG).stdout.split() == ["6"]


# -- monkeypatches ---------------------------------------------------------------

PATCHED = """
import sys
import bytecache
{imports}
if sys.argv[-1] == "patch":
    {patch}

@bytecache.memoize
def target(n):
    ran()
    return {body}

print(target(5))
"""


def _patched(runner: Runner, imports: str, patch: str, body: str) -> list[list[str]]:
    """Runs the script unpatched, patched, patched again, unpatched again:
    what each printed."""
    script = PATCHED.format(imports=imports, patch=patch, body=body)
    runner.write("main.py", script)
    out = []
    for arg in ("plain", "patch", "patch", "plain"):
        proc = subprocess.run([sys.executable, "main.py", arg], cwd=runner.work,
                              env=runner.env(), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "Warning" not in proc.stderr, proc.stderr
        out.append(proc.stdout.split())
    return out


def test_a_standard_library_attribute_the_code_names_replaced(runner: Runner) -> None:
    out = _patched(runner, "import math", "math.sqrt = lambda x: round(x ** 0.5, 1)",
                   "math.sqrt(n)")
    assert out == [["RAN", "2.23606797749979"], ["RAN", "2.2"], ["2.2"], ["2.23606797749979"]]


def test_a_standard_library_attribute_replaced_by_a_partial(runner: Runner) -> None:
    out = _patched(runner, "import functools, json",
                   "json.dumps = functools.partial(json.dumps, sort_keys=True)",
                   "json.dumps({'b': n, 'a': 1})")
    assert [o[0] == "RAN" for o in out] == [True, True, False, False]


def test_a_standard_library_attribute_reached_only_through_library_code(
        runner: Runner) -> None:
    # The code names `json.dumps`; the patch is of what `json.encoder` uses.
    out = _patched(runner, "import json, json.encoder",
                   "json.encoder.encode_basestring_ascii = lambda s: '\"?\"'",
                   "json.dumps({'k': n})")
    assert out == [["RAN", '{"k":', "5}"], ["RAN", '{"?":', "5}"], ['{"?":', "5}"],
                   ['{"k":', "5}"]]


def test_a_library_module_dict_with_a_key_that_is_not_text(runner: Runner) -> None:
    # A key that is not a `str` names no attribute: the scan of the library's
    # modules passes it over (the call is still memoized) and still sees the
    # patch beside it.
    out = _patched(runner, "import json, json.encoder\nvars(json.encoder)[1] = json.dumps",
                   "json.encoder.encode_basestring_ascii = lambda s: '\"?\"'",
                   "json.dumps({'k': n})")
    assert out == [["RAN", '{"k":', "5}"], ["RAN", '{"?":', "5}"], ['{"?":', "5}"],
                   ['{"k":', "5}"]]


LOUD = """import json
class Loud(json.JSONEncoder):
    def encode(self, o):
        return "LOUD" + super().encode(o)"""


def test_a_library_attribute_replaced_by_an_instance_of_a_users_class(runner: Runner) -> None:
    # `json.dumps(x)` encodes with the module's `_default_encoder`.
    out = _patched(runner, LOUD, "json._default_encoder = Loud()", "json.dumps([n])")
    assert out == [["RAN", "[5]"], ["RAN", "LOUD[5]"], ["LOUD[5]"], ["[5]"]]


def test_a_library_class_replaced_by_a_users_class(runner: Runner) -> None:
    # With any option, `json.dumps` makes an encoder of the module's `JSONEncoder`.
    out = _patched(runner, LOUD, "json.JSONEncoder = Loud",
                   "json.dumps([n], separators=(',', ':'))")
    assert out == [["RAN", "[5]"], ["RAN", "LOUD[5]"], ["LOUD[5]"], ["[5]"]]


def test_an_installed_package_attribute_the_code_names_replaced(runner: Runner) -> None:
    out = _patched(runner, "import numpy as np", "np.mean = lambda a: -1.0",
                   "float(np.mean([n, 1]))")
    assert out == [["RAN", "3.0"], ["RAN", "-1.0"], ["-1.0"], ["3.0"]]


def test_an_installed_package_attribute_swapped_for_another_of_its_own(
        runner: Runner) -> None:
    # Both are the library's, but not what it defined under that name.
    out = _patched(runner, "import numpy as np", "np.mean = np.median",
                   "float(np.mean([n, 1, 1]))")
    assert out == [["RAN", "2.3333333333333335"], ["RAN", "1.0"], ["1.0"],
                   ["2.3333333333333335"]]


def test_an_installed_package_attribute_reached_only_through_library_code(
        runner: Runner, tmp_path: Path) -> None:
    venv = Venv(tmp_path / "venv")
    venv.install(_wheel(tmp_path, "tinypkg", "1.0", {
        "tinypkg/__init__.py": "from tinypkg import _impl\n"
                               "def f(x):\n    return _impl.helper(x) + 1\n",
        "tinypkg/_impl.py": "def helper(x):\n    return x * 10\n",
    }))
    script = PATCHED.format(imports="import tinypkg, tinypkg._impl",
                            patch="tinypkg._impl.helper = lambda x: x * 100",
                            body="tinypkg.f(n)")
    out = []
    for arg in ("plain", "patch", "patch", "plain"):
        out.append(venv.run(runner, script.replace("sys.argv[-1]", repr(arg))).stdout.split())
    assert out == [["RAN", "51"], ["RAN", "501"], ["501"], ["51"]]


def test_a_monkeypatch_fixture_in_a_test_suite(runner: Runner) -> None:
    # Two tests of the user's, one with pytest's `monkeypatch`: the patched
    # call is not answered with the unpatched result, nor the other way round.
    runner.write("test_suite.py", """
import json
import bytecache

@bytecache.memoize
def dump(n):
    return json.dumps({"n": n})

def test_plain():
    assert dump(1) == '{"n": 1}'

def test_patched(monkeypatch):
    monkeypatch.setattr(json, "dumps", lambda obj: "fake")
    assert dump(1) == "fake"

def test_plain_again():
    assert dump(1) == '{"n": 1}'
""")
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "test_suite.py"], cwd=runner.work, env=runner.env(),
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_unpatched_libraries_add_nothing_to_keys(runner: Runner) -> None:
    # No value of numpy's, pandas's or the standard library's modules is taken
    # for a patch in a plain process (a false one would make keys differ
    # between processes that import different things).
    proc = runner.run("""
import json, logging, os, re, numpy as np, pandas as pd
from bytecache import _bytecache

def f(df):
    logging.getLogger("x").debug(re.escape(os.sep))
    return json.dumps(float(np.mean(pd.concat([df, df])["a"])))

key, record = _bytecache.call_key(f, {"df": pd.DataFrame({"a": [1.0]})}, [], True)
print([name for kind, name, _, _ in record if kind == "patch"])
""")
    assert proc.stdout.split() == ["[]"]


def test_explain_names_the_replaced_attribute(runner: Runner) -> None:
    proc = runner.run("""
import json, json.encoder
import bytecache

@bytecache.memoize
def dump(n):
    return json.dumps({"n": n})

dump(1)
json.encoder.encode_basestring_ascii = lambda s: '"?"'
print(bytecache.explain(dump, 1))
""")
    assert "library attribute `json.encoder.encode_basestring_ascii` replaced" in proc.stdout


def test_a_library_attribute_replaced_by_a_mock_runs_the_call(runner: Runner) -> None:
    # A mock makes up attributes and state for whatever is asked of it: it is
    # not hashed (a walk of it never ends); the call runs, with a warning.
    proc = runner.run("""
import json, json.encoder
from unittest import mock
import bytecache

@bytecache.memoize
def dump(n):
    ran()
    return json.dumps({"n": n})

with mock.patch("json.dumps", return_value="fake"):
    print(dump(1))
with mock.patch("json.encoder.encode_basestring_ascii", side_effect=lambda s: '"?"'):
    print(dump(1))
print(dump(1))
print(dump(1))
""")
    assert proc.stdout.split() == ["RAN", "fake", "RAN", '{"?":', "1}", "RAN", '{"n":', "1}",
                                   '{"n":', "1}"]
    assert proc.stderr.count("is replaced by a mock") == 2
