"""The private CPython layouts in src/cpython/ against the running interpreter's
own headers: `tools/cpython_offsets.c`, compiled with them, must print exactly the
offsets this build asserts (`_bytecache._cpython_layout()`)."""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

from bytecache import _bytecache

TOOL = Path(__file__).resolve().parent.parent / "tools" / "cpython_offsets.c"


def test_offsets_match_the_headers(tmp_path: Path) -> None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler")
    include = sysconfig.get_paths()["include"]
    assert Path(include, "internal", "pycore_frame.h").exists(), (
        f"CPython's internal headers are missing under {include}")
    exe = tmp_path / "offsets"
    subprocess.run([cc, f"-I{include}", f"-I{include}/internal", str(TOOL), "-o", str(exe)],
                   check=True)
    printed = {}
    for line in subprocess.run([str(exe)], check=True, capture_output=True,
                               text=True).stdout.splitlines():
        name, offset = line.rsplit(" ", 1)
        printed[name] = int(offset)
    assert printed == dict(_bytecache._cpython_layout())
