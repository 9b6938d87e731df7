"""Libraries in keys: an installed distribution is keyed by what is installed
(not by its name and version). Real interpreters, real venvs, real `pip
install`s."""

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

