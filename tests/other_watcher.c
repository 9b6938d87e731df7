/* Another user of function watchers, dict watchers and PyFunction_SetVectorcall
 * (3.12+), for the coexistence tests: it counts the functions it sees created
 * and the dict events it sees, and can give a function a vectorcall of its own
 * that counts calls. Built by tests/test_hook.py with the running interpreter's
 * headers. */
#include <Python.h>

static int func_watcher = -1, dict_watcher = -1;
static long long created = 0, dict_events = 0, own_calls = 0;
static vectorcallfunc default_vc = NULL;

static int
on_func(PyFunction_WatchEvent event, PyFunctionObject *f, PyObject *new_value)
{
    if (event == PyFunction_EVENT_CREATE) {
        created++;
    }
    return 0;
}

static int
on_dict(PyDict_WatchEvent event, PyObject *d, PyObject *key, PyObject *new_value)
{
    dict_events++;
    return 0;
}

static PyObject *
own_vectorcall(PyObject *f, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    own_calls++;
    return default_vc(f, args, nargsf, kwnames);
}

static PyObject *
install(PyObject *m, PyObject *unused)
{
    func_watcher = PyFunction_AddWatcher(on_func);
    dict_watcher = PyDict_AddWatcher(on_dict);
    if (func_watcher < 0 || dict_watcher < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
uninstall(PyObject *m, PyObject *unused)
{
    if (PyFunction_ClearWatcher(func_watcher) < 0 || PyDict_ClearWatcher(dict_watcher) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
watch_dict(PyObject *m, PyObject *d)
{
    if (PyDict_Watch(dict_watcher, d) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static vectorcallfunc
fresh_default(void)
{
    if (default_vc == NULL) {
        /* What CPython gives a new function (one of no module). */
        PyObject *globals = PyDict_New();
        PyObject *f = globals ? PyRun_String("lambda: None", Py_eval_input, globals, NULL) : NULL;
        if (f != NULL) {
            default_vc = ((PyFunctionObject *)f)->vectorcall;
            Py_DECREF(f);
        }
        Py_XDECREF(globals);
    }
    return default_vc;
}

static PyObject *
take(PyObject *m, PyObject *f)
{
    if (!PyFunction_Check(f) || fresh_default() == NULL) {
        PyErr_SetString(PyExc_TypeError, "a function");
        return NULL;
    }
    PyFunction_SetVectorcall((PyFunctionObject *)f, own_vectorcall);
    Py_RETURN_NONE;
}

static PyObject *
has_default_vectorcall(PyObject *m, PyObject *f)
{
    if (!PyFunction_Check(f) || fresh_default() == NULL) {
        PyErr_SetString(PyExc_TypeError, "a function");
        return NULL;
    }
    return PyBool_FromLong(((PyFunctionObject *)f)->vectorcall == default_vc);
}

static PyObject *
has_own_vectorcall(PyObject *m, PyObject *f)
{
    return PyBool_FromLong(PyFunction_Check(f)
                           && ((PyFunctionObject *)f)->vectorcall == own_vectorcall);
}

static PyObject *
counts(PyObject *m, PyObject *unused)
{
    return Py_BuildValue("(LLL)", created, dict_events, own_calls);
}

static PyMethodDef methods[] = {
    {"install", install, METH_NOARGS, NULL},
    {"uninstall", uninstall, METH_NOARGS, NULL},
    {"watch_dict", watch_dict, METH_O, NULL},
    {"take", take, METH_O, NULL},
    {"has_default_vectorcall", has_default_vectorcall, METH_O, NULL},
    {"has_own_vectorcall", has_own_vectorcall, METH_O, NULL},
    {"counts", counts, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "other_watcher", NULL, -1, methods};

PyMODINIT_FUNC
PyInit_other_watcher(void)
{
    if (fresh_default() == NULL) {
        return NULL;
    }
    return PyModule_Create(&def);
}
