"""Files that native code opens while a miss runs are dependencies (read) or
effects (written), like those Python's `open` opens: a C extension reading
with `open` or `fopen`, imported before the call or inside it (`dlopen`),
from the calling thread or one it starts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import Runner

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="native opens are observed on Linux")

SOURCE = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static long sum_fd(int fd) {
    long s = 0; unsigned char b[256]; ssize_t n;
    while ((n = read(fd, b, sizeof b)) > 0) for (ssize_t i = 0; i < n; i++) s += b[i];
    return s;
}
static PyObject *with_open(PyObject *self, PyObject *arg) {
    const char *path = PyUnicode_AsUTF8(arg); if (!path) return NULL;
    int fd = open(path, O_RDONLY); if (fd < 0) return PyLong_FromLong(-1);
    long s = sum_fd(fd); close(fd); return PyLong_FromLong(s);
}
static PyObject *with_fopen(PyObject *self, PyObject *arg) {
    const char *path = PyUnicode_AsUTF8(arg); if (!path) return NULL;
    FILE *f = fopen(path, "rb"); if (!f) return PyLong_FromLong(-1);
    long s = 0; int c; while ((c = fgetc(f)) != EOF) s += c; fclose(f); return PyLong_FromLong(s);
}
struct job { const char *path; long sum; };
static void *worker(void *p) {
    struct job *j = p; int fd = open(j->path, O_RDONLY);
    j->sum = fd < 0 ? -1 : sum_fd(fd); if (fd >= 0) close(fd); return NULL;
}
static PyObject *in_thread(PyObject *self, PyObject *arg) {
    struct job j = {PyUnicode_AsUTF8(arg), 0}; pthread_t t;
    if (!j.path) return NULL;
    Py_BEGIN_ALLOW_THREADS
    pthread_create(&t, NULL, worker, &j); pthread_join(t, NULL);
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(j.sum);
}
static PyObject *write_to(PyObject *self, PyObject *arg) {
    const char *path = PyUnicode_AsUTF8(arg); if (!path) return NULL;
    FILE *f = fopen(path, "w"); if (!f) return PyLong_FromLong(-1);
    fputs("x", f); fclose(f); return PyLong_FromLong(1);
}
static PyObject *env(PyObject *self, PyObject *arg) {
    const char *name = PyUnicode_AsUTF8(arg); if (!name) return NULL;
    const char *value = getenv(name);
    return PyUnicode_FromString(value ? value : "unset");
}
static PyMethodDef M[] = {
    {"env", env, METH_O, ""},
    {"with_open", with_open, METH_O, ""}, {"with_fopen", with_fopen, METH_O, ""},
    {"in_thread", in_thread, METH_O, ""}, {"write_to", write_to, METH_O, ""}, {0}};
static struct PyModuleDef D = {PyModuleDef_HEAD_INIT, "reader", 0, -1, M};
PyMODINIT_FUNC PyInit_reader(void) { return PyModule_Create(&D); }
"""


def build(work: Path) -> None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler")
    (work / "reader.c").write_text(SOURCE)
    so = work / ("reader" + sysconfig.get_config_var("EXT_SUFFIX"))
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-pthread",
                    f"-I{sysconfig.get_paths()['include']}", str(work / "reader.c"), "-o",
                    str(so)], check=True)


def script(how: str, path: str, import_inside: bool) -> str:
    top = "" if import_inside else "import reader\n"
    inside = "    import reader\n" if import_inside else ""
    return f"""import bytecache
{top}
@bytecache.memoize
def total(path):
    ran()
{inside}    return reader.{how}(path)

print(total({path!r}))
"""


@pytest.mark.parametrize("import_inside", [False, True], ids=["imported", "imported-in-call"])
@pytest.mark.parametrize("how", ["with_open", "with_fopen", "in_thread"])
@pytest.mark.parametrize("relative", [True, False], ids=["relative", "absolute"])
def test_a_file_native_code_reads_is_a_dependency(runner: Runner, how: str,
                                                  import_inside: bool, relative: bool) -> None:
    build(runner.work)
    data = runner.work / "data.bin"
    data.write_bytes(b"\x01\x02")
    path = "data.bin" if relative else str(data)
    main = script(how, path, import_inside)
    assert runner.out(main) == ["RAN", "3"]
    assert runner.out(main) == ["3"]
    data.write_bytes(b"\x01\x02\x04")  # changed
    assert runner.out(main) == ["RAN", "7"]
    assert runner.out(main) == ["7"]
    data.unlink()  # gone: -1, valid while it stays gone
    assert runner.out(main) == ["RAN", "-1"]
    assert runner.out(main) == ["-1"]
    data.write_bytes(b"\x05")  # back
    assert runner.out(main) == ["RAN", "5"]


def test_a_file_native_code_writes_is_not_stored(runner: Runner) -> None:
    build(runner.work)
    main = script("write_to", "out.txt", False) + "import os; os.remove('out.txt')\n"
    assert runner.out(main) == ["RAN", "1"]
    proc = runner.run(main)
    assert proc.stdout.split() == ["RAN", "1"]
    assert "writes out.txt" in proc.stderr


def test_an_environment_variable_native_code_reads_is_a_dependency(runner: Runner) -> None:
    build(runner.work)
    main = script("env", "BYTECACHE_TEST_SETTING", False)
    assert runner.out(main) == ["RAN", "unset"]
    assert runner.out(main) == ["unset"]
    assert runner.out(main, BYTECACHE_TEST_SETTING="fast") == ["RAN", "fast"]
    assert runner.out(main, BYTECACHE_TEST_SETTING="fast") == ["fast"]
    assert runner.out(main, BYTECACHE_TEST_SETTING="fast", OTHER_SETTING="x") == ["fast"]


def test_system_files_native_code_reads_are_not_dependencies(runner: Runner) -> None:
    # A library reading /proc or /sys (CPU counts, cgroup limits) at run time:
    # the kernel's view of the process, not the call's data.
    build(runner.work)
    main = script("with_open", "/proc/self/status", False).replace(
        "print(total(", "print(0 * total(")
    assert runner.out(main) == ["RAN", "0"]
    assert runner.out(main) == ["0"]


def test_native_opens_outside_misses_are_not_recorded(runner: Runner) -> None:
    # Opens before and after the call, and in an unmarked function, do not
    # become dependencies of the next call.
    build(runner.work)
    (runner.work / "other.bin").write_bytes(b"\x01")
    main = """import bytecache, reader
reader.with_open("other.bin")

@bytecache.memoize
def f():
    ran()
    return 1

print(f())
reader.with_open("other.bin")
"""
    assert runner.out(main) == ["RAN", "1"]
    (runner.work / "other.bin").write_bytes(b"\x02")
    assert runner.out(main) == ["1"]
    assert os.path.exists(runner.work / "other.bin")


LIBRARIES = {
    # library: (how the data file is written, the call that reads it natively)
    "pyarrow": ("import pyarrow as pa, pyarrow.parquet as pq\n"
                "pq.write_table(pa.table({{'a': {values}}}), 'data.parquet')",
                "int(pq.read_table('data.parquet').column('a').to_pylist()[-1])"),
    "polars": ("open('data.csv', 'w').write('a\\n' + '\\n'.join(map(str, {values})))",
               "int(pl.read_csv('data.csv')['a'][-1])"),
}


@pytest.mark.parametrize("library", sorted(LIBRARIES))
def test_a_library_reading_files_in_native_code(runner: Runner, library: str) -> None:
    # pyarrow (C++) and polars (Rust) open the file themselves, not through
    # Python's open().
    pytest.importorskip(library)
    write, read = LIBRARIES[library]
    imports = "import pyarrow.parquet as pq\n" if library == "pyarrow" else "import polars as pl\n"
    main = f"""import bytecache
{imports}
@bytecache.memoize
def last():
    ran()
    return {read}

print(last())
"""

    def data(values: list[int]) -> None:
        subprocess.run([sys.executable, "-c", write.format(values=values)], cwd=runner.work,
                       check=True)

    data([1, 2, 3])
    assert runner.out(main) == ["RAN", "3"]
    assert runner.out(main) == ["3"]
    data([1, 2, 4])
    assert runner.out(main) == ["RAN", "4"]
    assert runner.out(main) == ["4"]


def test_keys_of_native_code_do_not_depend_on_the_rebinding(runner: Runner) -> None:
    # A C function calling fopen is keyed by what its imports are bound to:
    # the loader's binding, before and after the observer rebinds fopen.
    build(runner.work)
    (runner.work / "data.bin").write_bytes(b"\x01")
    first = """import bytecache, reader

@bytecache.memoize
def total(path):
    ran()
    return reader.with_fopen(path)

@bytecache.memoize
def other(x):
    return x
{before}
print(total("data.bin"))
"""
    assert runner.out(first.format(before="")) == ["RAN", "1"]
    # A miss first: the imports are rebound before `total` is first keyed.
    assert runner.out(first.format(before="other(object.__name__)\n")) == ["1"]
