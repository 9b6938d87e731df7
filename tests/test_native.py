"""Native callees in the user's own extension modules: keyed by the code
loaded in the process (the linker's build ID, read from memory), so a rebuilt
extension recomputes, an identical rebuild reuses, and a process still running
the old build never files its results under the new build's identity."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import Runner

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="dl_iterate_phdr is Linux's")

SOURCE = """
#define PY_SSIZE_T_CLEAN
#include <Python.h>
/* %(comment)s */
static PyObject *scale(PyObject *self, PyObject *x) {
    return PyLong_FromLong(PyLong_AsLong(x) * %(factor)d);
}
static PyMethodDef methods[] = {{"scale", scale, METH_O, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "fastext", NULL, -1, methods};
PyMODINIT_FUNC PyInit_fastext(void) { return PyModule_Create(&module); }
"""

MAIN = """
import os, sys, time
import bytecache
import fastext

@bytecache.memoize
def f(x):
    ran()
    return fastext.scale(x)

print(f(int(os.environ.get("X", "1"))))
if os.environ.get("REBUILD_THEN"):
    # The extension is rebuilt on disk while this process runs the old one.
    sys.stdout.flush()
    while not os.path.exists("rebuilt"):
        time.sleep(0.05)
    print(f(int(os.environ["REBUILD_THEN"])))
"""


def build(work: Path, factor: int, *, comment: str = "", build_id: bool = True) -> None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler")
    src = work / "fastext.c"
    src.write_text(SOURCE % {"factor": factor, "comment": comment})
    so = work / ("fastext" + sysconfig.get_config_var("EXT_SUFFIX"))
    tmp = so.with_suffix(".tmp")
    flag = "-Wl,--build-id=sha1" if build_id else "-Wl,--build-id=none"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", f"-I{sysconfig.get_paths()['include']}", flag,
                    str(src), "-o", str(tmp)], check=True)
    os.replace(tmp, so)  # a running process keeps the file it mapped


def test_a_rebuilt_extension_recomputes_and_an_identical_rebuild_reuses(runner: Runner) -> None:
    runner.write("main.py", MAIN)
    build(runner.work, 2)
    assert runner.out() == ["RAN", "2"]
    assert runner.out() == ["2"]
    build(runner.work, 2, comment="only a comment changed")
    assert runner.out() == ["2"]
    build(runner.work, 3)
    assert runner.out() == ["RAN", "3"]


def test_a_process_running_the_old_build_does_not_file_results_under_the_new(
        runner: Runner) -> None:
    runner.write("main.py", MAIN)
    build(runner.work, 2)
    proc = subprocess.Popen([sys.executable, "main.py"], cwd=runner.work,
                            env=runner.env(REBUILD_THEN="5"), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().split() == ["RAN"]
    assert proc.stdout.readline().split() == ["2"]
    build(runner.work, 3)
    (runner.work / "rebuilt").write_text("")
    out, _ = proc.communicate(timeout=60)
    assert out.split() == ["RAN", "10"]  # still the old code: 5 * 2
    assert runner.out(X="5") == ["RAN", "15"]  # the new build computes afresh


def test_without_a_build_id_a_new_process_recomputes(runner: Runner) -> None:
    runner.write("main.py", MAIN)
    build(runner.work, 2, build_id=False)
    assert runner.out() == ["RAN", "2"]
    # The loaded segments hold relocated addresses: never the same twice.
    assert runner.out() == ["RAN", "2"]


def test_a_native_function_claiming_a_library_module_is_keyed_by_its_own(
        runner: Runner) -> None:
    # `__module__` says where a function is documented, not where its code
    # lives: a module-level C function is keyed by the module that defined it.
    runner.write("main.py", MAIN.replace("import fastext\n",
                                         "import fastext\nfastext.scale.__module__ = 'json'\n"))
    build(runner.work, 2)
    assert runner.out() == ["RAN", "2"]
    build(runner.work, 3)
    assert runner.out() == ["RAN", "3"]
