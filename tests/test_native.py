"""Native callees in the user's own code: keyed by the code loaded in the
process, read from memory. A function whose machine code a walk can bound is
keyed by that code (what it calls inside its object, the constant data it
uses, what it imports and from which object), so an edit elsewhere in the
extension reuses its calls; any other by its whole object (the linker's build
ID): a rebuilt extension recomputes, an identical rebuild reuses, and a process
still running the old build never files its results under the new build's
identity."""

from __future__ import annotations

import os
import platform
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


def compile_so(work: Path, name: str, source: str, *flags: str) -> Path:
    """Compiles `source` into the shared object `name` in `work`, replacing
    the file as a build does (a running process keeps the one it mapped)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler")
    src = work / (name.split(".")[0] + ".c")
    src.write_text(source)
    so = work / name
    tmp = work / (name + ".tmp")
    subprocess.run([cc, "-shared", "-fPIC", f"-I{sysconfig.get_paths()['include']}", str(src),
                    *flags, "-o", str(tmp)], check=True)
    os.replace(tmp, so)
    return so


def ext_name(module: str) -> str:
    return module + sysconfig.get_config_var("EXT_SUFFIX")


def build(work: Path, factor: int, *, comment: str = "", build_id: bool = True) -> None:
    flag = "-Wl,--build-id=sha1" if build_id else "-Wl,--build-id=none"
    compile_so(work, ext_name("fastext"), SOURCE % {"factor": factor, "comment": comment},
               "-O1", flag)


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


# Per-function keys: x86-64 only (elsewhere the whole object keys each call).
walked = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                            reason="machine code is walked on x86-64 only")

MANY = """
#define PY_SSIZE_T_CLEAN
#include <Python.h>
static long helper_g(long x) { return x * %(g)s; }
static long helper_f(long x) { return x * 3 + 1; }
static long pick(long x) { return x > 0 ? helper_f(x) : helper_g(x); }
static long (*ops[2])(long) = {helper_f, helper_g};
static long unrelated(long x) { return x - %(u)d; }
static PyObject *f(PyObject *self, PyObject *x) {
    return PyLong_FromLong(helper_f(PyLong_AsLong(x)));
}
static PyObject *g(PyObject *self, PyObject *x) {
    return PyLong_FromLong(helper_g(PyLong_AsLong(x)));
}
static PyObject *both(PyObject *self, PyObject *x) {
    return PyLong_FromLong(pick(PyLong_AsLong(x)) + pick(-PyLong_AsLong(x)));
}
static PyObject *via_pointer(PyObject *self, PyObject *x) {
    long v = PyLong_AsLong(x);
    return PyLong_FromLong(ops[v & 1](v));
}
static PyObject *u(PyObject *self, PyObject *x) {
    return PyLong_FromLong(unrelated(PyLong_AsLong(x)));
}
static PyMethodDef methods[] = {
    {"f", f, METH_O, NULL}, {"g", g, METH_O, NULL}, {"both", both, METH_O, NULL},
    {"via_pointer", via_pointer, METH_O, NULL}, {"u", u, METH_O, NULL},
    {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "many", NULL, -1, methods};
PyMODINIT_FUNC PyInit_many(void) { return PyModule_Create(&module); }
"""

# Memoizes one Python function per native function of `module` and calls each.
MEMO_MAIN = """
import bytecache
import %(module)s as ext
from bytecache._bytecache import native_identity

def memo(name):
    native = getattr(ext, name)
    def call(x):
        ran(name)
        return native(x)
    call.__name__ = call.__qualname__ = name
    return bytecache.memoize(call)

for name in %(names)r:
    print(name, memo(name)(%(arg)d), native_identity(getattr(ext, name)) is None)
"""

MANY_MAIN = MEMO_MAIN % {"module": "many", "names": ["f", "g", "both", "via_pointer"], "arg": 4}


def recomputed(out: list[str]) -> list[str]:
    """The names the runs marked as computed (`RAN name`)."""
    return [w for i, w in enumerate(out) if i and out[i - 1] == "RAN"]


def build_many(work: Path, *, g: str = "5 + 2", u: int = 1, opt: str = "-O2") -> None:
    compile_so(work, ext_name("many"), MANY % {"g": g, "u": u}, opt)


@walked
@pytest.mark.parametrize("opt", ["-O0", "-O2"])
def test_an_edit_recomputes_only_the_calls_that_reach_it(runner: Runner, opt: str) -> None:
    runner.write("main.py", MANY_MAIN)
    build_many(runner.work, opt=opt)
    first = runner.out()
    assert first == ["RAN", "f", "f", "13", "True", "RAN", "g", "g", "22", "True",
                     "RAN", "both", "both", "-5", "True",
                     "RAN", "via_pointer", "via_pointer", "13", "False"]
    assert "RAN" not in runner.out()
    # An identical rebuild reuses everything.
    build_many(runner.work, opt=opt)
    assert "RAN" not in runner.out()
    # helper_g grows (and helper_f, after it, moves): the calls reaching it
    # recompute, `f` is reused, and the call through a pointer recomputes.
    build_many(runner.work, g="7 + 2 + (x > 100 ? x / 3 : x % 5)", opt=opt)
    out = runner.out()
    assert recomputed(out) == ["g", "both", "via_pointer"]
    assert out[out.index("g", out.index("g") + 1) + 1] == "34"


@walked
def test_a_call_through_a_function_pointer_is_keyed_by_the_whole_object(
        runner: Runner) -> None:
    runner.write("main.py", MANY_MAIN)
    build_many(runner.work)
    runner.out()
    # An edit to a function nothing else calls: only the call whose code
    # cannot be bounded (an indirect call) recomputes.
    build_many(runner.work, u=2)
    assert recomputed(runner.out()) == ["via_pointer"]
    why = subprocess.run(
        [sys.executable, "-c", "import many; from bytecache._bytecache import native_identity; "
         "print(native_identity(many.via_pointer))"],
        cwd=runner.work, env=runner.env(), capture_output=True, text=True, check=True).stdout
    assert why.startswith("an indirect call at 0x")


LIB = """
long scale(long x) { return x * %(factor)d; }
"""

USES_LIB = """
#define PY_SSIZE_T_CLEAN
#include <Python.h>
long scale(long x);
static PyObject *scaled(PyObject *self, PyObject *x) {
    return PyLong_FromLong(scale(PyLong_AsLong(x)));
}
static PyMethodDef methods[] = {{"scaled", scaled, METH_O, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "useslib", NULL, -1, methods};
PyMODINIT_FUNC PyInit_useslib(void) { return PyModule_Create(&module); }
"""


@walked
def test_an_import_is_keyed_by_the_library_that_provides_it(runner: Runner) -> None:
    # The extension calls `scale` through its PLT; the library providing it
    # is the user's own: rebuilding that library recomputes, though the
    # extension is unchanged.
    runner.write("main.py", """
        import bytecache
        import useslib
        from bytecache._bytecache import native_identity

        @bytecache.memoize
        def f(x):
            ran()
            return useslib.scaled(x)

        print(f(3), native_identity(useslib.scaled))
    """)
    compile_so(runner.work, "libscale.so", LIB % {"factor": 2}, "-O2")
    compile_so(runner.work, ext_name("useslib"), USES_LIB, "-O2", f"-L{runner.work}", "-lscale",
               "-Wl,-rpath,$ORIGIN")
    assert runner.out() == ["RAN", "6", "None"]
    assert runner.out() == ["6", "None"]
    compile_so(runner.work, "libscale.so", LIB % {"factor": 2}, "-O2")
    assert runner.out() == ["6", "None"]
    compile_so(runner.work, "libscale.so", LIB % {"factor": 5}, "-O2")
    assert runner.out() == ["RAN", "15", "None"]


CTYPES_LIB = """
long scale(long x) { return x * %(factor)d; }
long other(long x) { return x - %(other)d; }
"""


@walked
def test_a_ctypes_function_is_keyed_by_its_code_and_how_ctypes_calls_it(
        runner: Runner) -> None:
    runner.write("main.py", """
        import ctypes, os
        import bytecache

        lib = ctypes.CDLL(os.path.abspath("libmine.so"))
        scale = lib.scale
        if os.environ.get("RESTYPE"):
            scale.restype = ctypes.c_int8

        @bytecache.memoize
        def f(x):
            ran()
            return scale(x)

        print(f(100))
    """)
    compile_so(runner.work, "libmine.so", CTYPES_LIB % {"factor": 2, "other": 1}, "-O2")
    assert runner.out() == ["RAN", "200"]
    assert runner.out() == ["200"]
    # Another function of the library changed: the call is reused.
    compile_so(runner.work, "libmine.so", CTYPES_LIB % {"factor": 2, "other": 7}, "-O2")
    assert runner.out() == ["200"]
    # How ctypes converts the result is part of the key.
    assert runner.out(RESTYPE="1") == ["RAN", "-56"]
    compile_so(runner.work, "libmine.so", CTYPES_LIB % {"factor": 3, "other": 7}, "-O2")
    assert runner.out() == ["RAN", "300"]


def test_a_ctypes_callback_is_not_keyed_by_its_address(runner: Runner) -> None:
    # A callback's address is a trampoline that another callback reuses once
    # this one is freed: such a pointer cannot be keyed, so the call runs.
    out = runner.run("""
        import ctypes
        import bytecache

        @bytecache.memoize
        def call(cb, x):
            ran()
            return cb(x)

        for k in (2, 3):
            cb = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_long)(lambda x, k=k: x * k)
            print(call(cb, 5))
            try:
                bytecache._bytecache.hash_value(cb)
            except bytecache.UnhashableError as e:
                print(e.kind)
            del cb
    """)
    assert out.stdout.split() == [
        "RAN", "10", "ctypes_pointer", "RAN", "15", "ctypes_pointer"]
    assert "ctypes function pointer" in out.stderr


DATA = """
#define PY_SSIZE_T_CLEAN
#include <Python.h>
static const long table[4] = {10, 20, %(table)s, 40};
static long start = %(start)d;  /* writable: `bump` writes it */
static PyObject *plain(PyObject *self, PyObject *x) {
    return PyLong_FromLong(PyLong_AsLong(x) + 1);
}
static PyObject *lookup(PyObject *self, PyObject *x) {
    return PyLong_FromLong(table[PyLong_AsLong(x) & 3]);
}
static PyObject *initial(PyObject *self, PyObject *x) {
    return PyLong_FromLong(start + PyLong_AsLong(x));
}
static PyObject *bump(PyObject *self, PyObject *x) {
    start += 1;
    Py_RETURN_NONE;
}
static long set_at_init;  /* zero in the file; the module's init sets it */
static PyObject *at_init(PyObject *self, PyObject *x) {
    return PyLong_FromLong(set_at_init + PyLong_AsLong(x));
}
static PyObject *text(PyObject *self, PyObject *x) {
    return PyUnicode_FromString("%(text)s");
}
static PyMethodDef methods[] = {
    {"plain", plain, METH_O, NULL}, {"lookup", lookup, METH_O, NULL},
    {"initial", initial, METH_O, NULL}, {"bump", bump, METH_O, NULL},
    {"text", text, METH_O, NULL}, {"at_init", at_init, METH_O, NULL},
    {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "data", NULL, -1, methods};
PyMODINIT_FUNC PyInit_data(void) {
    set_at_init = %(init)d;
    return PyModule_Create(&module);
}
"""

DATA_MAIN = MEMO_MAIN % {"module": "data", "names": ["plain", "lookup", "initial", "text",
                                                     "at_init"], "arg": 2}


@walked
def test_the_data_a_function_reads_is_part_of_its_key(runner: Runner) -> None:
    def build(table: str = "30", start: int = 5, text: str = "hello", init: int = 100) -> None:
        compile_so(runner.work, ext_name("data"),
                   DATA % {"table": table, "start": start, "text": text, "init": init}, "-O2")

    # A function using writable data is keyed by its whole object: what the
    # data holds at run time is whatever any code stored there.
    state = {"initial", "at_init"}
    runner.write("main.py", DATA_MAIN)
    build()
    assert runner.out() == ["RAN", "plain", "plain", "3", "True", "RAN", "lookup", "lookup",
                            "30", "True", "RAN", "initial", "initial", "7", "False",
                            "RAN", "text", "text", "hello", "True",
                            "RAN", "at_init", "at_init", "102", "False"]
    # Read-only data goes by content; a string literal has no symbol, so it
    # goes with the unnamed constants around it (`text` may recompute when
    # `table` beside them changes; `plain`, which reads no data, never does).
    build(table="31")
    assert {"lookup"} | state <= set(recomputed(runner.out())) <= {"lookup", "text"} | state
    build(table="31", start=6)  # a writable variable's initial value
    assert set(recomputed(runner.out())) == state
    # What the module's init stores in a variable: only init's code changed.
    build(table="31", start=6, init=200)
    out = runner.out()
    assert set(recomputed(out)) == state
    assert out[out.index("at_init") + 2] == "202"
    build(table="31", start=6, text="hullo", init=200)
    assert {"text"} | state <= set(recomputed(runner.out())) <= {"lookup", "text"} | state


MODSTATE = """
#define PY_SSIZE_T_CLEAN
#include <Python.h>
typedef struct { long factor; } state;
static PyObject *from_state(PyObject *self, PyObject *x) {
    return PyLong_FromLong(((state *)PyModule_GetState(self))->factor * PyLong_AsLong(x));
}
static PyObject *from_attr(PyObject *self, PyObject *x) {
    PyObject *k = PyObject_GetAttrString(self, "K");
    if (k == NULL) return NULL;
    long v = PyLong_AsLong(k);
    Py_DECREF(k);
    return PyLong_FromLong(v + PyLong_AsLong(x));
}
static PyObject *pure(PyObject *self, PyObject *x) {
    return PyLong_FromLong(PyLong_AsLong(x) * 2);
}
static int exec_module(PyObject *m) {
    ((state *)PyModule_GetState(m))->factor = %(factor)d;
    return PyModule_AddIntConstant(m, "K", %(k)d);
}
static PyModuleDef_Slot slots[] = {{Py_mod_exec, exec_module}, {0, NULL}};
static PyMethodDef methods[] = {
    {"from_state", from_state, METH_O, NULL}, {"from_attr", from_attr, METH_O, NULL},
    {"pure", pure, METH_O, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "modstate", NULL, sizeof(state), methods, slots};
PyMODINIT_FUNC PyInit_modstate(void) { return PyModuleDef_Init(&module); }
"""


@walked
def test_what_the_modules_init_built_keys_a_function_by_its_whole_object(
        runner: Runner) -> None:
    # Module state and module attributes are filled by the init's code, not
    # by the function's: only the init changes, and the function must see it.
    def build(factor: int, k: int) -> None:
        compile_so(runner.work, ext_name("modstate"),
                   MODSTATE % {"factor": factor, "k": k}, "-O2")

    runner.write("main.py", MEMO_MAIN % {"module": "modstate",
                                         "names": ["from_state", "from_attr", "pure"],
                                         "arg": 2})
    build(3, 10)
    assert runner.out() == ["RAN", "from_state", "from_state", "6", "False",
                            "RAN", "from_attr", "from_attr", "12", "False",
                            "RAN", "pure", "pure", "4", "True"]
    build(4, 10)
    out = runner.out()
    assert recomputed(out) == ["from_state", "from_attr"]
    assert out[out.index("from_state") + 2] == "8"
    build(4, 20)
    out = runner.out()
    assert recomputed(out) == ["from_state", "from_attr"]
    assert out[out.index("from_attr") + 2] == "22"
