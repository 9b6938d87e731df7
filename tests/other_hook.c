/* A second PEP 523 user for the chaining tests: counts the frames it sees and
 * chains to the eval function that was current when it was installed.
 * Built by tests/test_hook.py with the running interpreter's headers. */
#define Py_BUILD_CORE 1
#include <Python.h>
#include "internal/pycore_frame.h"

static _PyFrameEvalFunction prev = NULL;
static long long seen = 0;
static PyObject *watched = NULL; /* count only frames of code with this co_name */

static PyObject *
other_eval(PyThreadState *ts, _PyInterpreterFrame *f, int throwflag)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyCodeObject *co = (PyCodeObject *)f->f_executable;
#else
    PyCodeObject *co = f->f_code;
#endif
    if (watched == NULL || (PyCode_Check(co) && PyUnicode_Compare(co->co_name, watched) == 0)) {
        seen++;
    }
    return prev(ts, f, throwflag);
}

static PyObject *
watch(PyObject *m, PyObject *name)
{
    Py_XSETREF(watched, Py_NewRef(name));
    Py_RETURN_NONE;
}

static PyObject *
install(PyObject *m, PyObject *unused)
{
    PyInterpreterState *interp = PyInterpreterState_Get();
    prev = _PyInterpreterState_GetEvalFrameFunc(interp);
    _PyInterpreterState_SetEvalFrameFunc(interp, other_eval);
    Py_RETURN_NONE;
}

static PyObject *
uninstall(PyObject *m, PyObject *unused)
{
    _PyInterpreterState_SetEvalFrameFunc(PyInterpreterState_Get(), prev);
    Py_RETURN_NONE;
}

static PyObject *
count(PyObject *m, PyObject *unused) { return PyLong_FromLongLong(seen); }

static PyObject *
current_is_default(PyObject *m, PyObject *unused)
{
    return PyBool_FromLong(_PyInterpreterState_GetEvalFrameFunc(PyInterpreterState_Get())
                           == _PyEval_EvalFrameDefault);
}

static PyObject *
current_is_other(PyObject *m, PyObject *unused)
{
    return PyBool_FromLong(_PyInterpreterState_GetEvalFrameFunc(PyInterpreterState_Get())
                           == other_eval);
}

static PyMethodDef methods[] = {
    {"install", install, METH_NOARGS, NULL},
    {"uninstall", uninstall, METH_NOARGS, NULL},
    {"count", count, METH_NOARGS, NULL},
    {"watch", watch, METH_O, NULL},
    {"current_is_default", current_is_default, METH_NOARGS, NULL},
    {"current_is_other", current_is_other, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "other_hook", NULL, -1, methods};

PyMODINIT_FUNC PyInit_other_hook(void) { return PyModule_Create(&def); }
