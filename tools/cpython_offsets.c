/* Prints every private CPython offset that src/cpython/ asserts, one
 * "struct.field offset" line each, from the interpreter's own headers:
 *   INC=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['include'])")
 *   cc -I$INC -I$INC/internal tools/cpython_offsets.c -o /tmp/o && /tmp/o
 * tests/test_layout.py compares the output with bytecache._bytecache._cpython_layout(). */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>
#include "internal/pycore_frame.h"
#include "internal/pycore_code.h"
#define P(T, f) printf(#T "." #f " %zu\n", offsetof(T, f))
int main(void) {
    P(PyCodeObject, co_flags);
    P(PyCodeObject, co_argcount);
    P(PyCodeObject, co_kwonlyargcount);
    P(PyCodeObject, co_nlocalsplus);
    P(PyCodeObject, co_name);
    P(PyCodeObject, co_extra);
    P(PyCodeObject, co_code_adaptive);
#if PY_MINOR_VERSION >= 12
    P(PyCodeObject, co_framesize);
    P(PyCodeObject, co_version);
#endif
    P(_PyInterpreterFrame, localsplus);
    P(_PyInterpreterFrame, owner);
    P(_PyInterpreterFrame, stacktop);
    P(_PyInterpreterFrame, previous);
    P(_PyInterpreterFrame, frame_obj);
    P(_PyInterpreterFrame, f_locals);
    printf("sizeof _PyInterpreterFrame %zu\n", sizeof(_PyInterpreterFrame));
#if PY_MINOR_VERSION == 11
    P(_PyInterpreterFrame, f_func);
    P(_PyInterpreterFrame, f_code);
    P(_PyInterpreterFrame, prev_instr);
    P(_PyInterpreterFrame, is_entry);
    P(PyThreadState, recursion_remaining);
    P(PyThreadState, recursion_limit);
#else
#if PY_MINOR_VERSION == 12
    P(_PyInterpreterFrame, f_code);
    P(_PyInterpreterFrame, prev_instr);
#else
    P(_PyInterpreterFrame, f_executable);
    P(_PyInterpreterFrame, instr_ptr);
#endif
    P(_PyInterpreterFrame, f_funcobj);
    P(_PyInterpreterFrame, return_offset);
    P(PyThreadState, py_recursion_remaining);
    P(PyThreadState, py_recursion_limit);
    P(PyThreadState, c_recursion_remaining);
#endif
    return 0;
}
