/* Prints the private CPython offsets asserted in src/hook/compat.rs.
 * cc -I$INC -I$INC/internal tools/hook_offsets.c -o /tmp/o && /tmp/o
 * with INC=$(python3 -c "import sysconfig;print(sysconfig.get_paths()['include'])") */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>
#include "internal/pycore_frame.h"
#include "internal/pycore_code.h"
#define P(T,f) printf(#T "." #f " %zu\n", offsetof(T,f))
int main(void){
  P(_PyInterpreterFrame, localsplus); P(_PyInterpreterFrame, owner); P(_PyInterpreterFrame, stacktop);
  P(_PyInterpreterFrame, previous); P(_PyInterpreterFrame, frame_obj); P(_PyInterpreterFrame, f_locals);
#if PY_MINOR_VERSION==11
  P(_PyInterpreterFrame, f_func); P(_PyInterpreterFrame, f_code); P(_PyInterpreterFrame, prev_instr); P(_PyInterpreterFrame, is_entry);
#elif PY_MINOR_VERSION==12
  P(_PyInterpreterFrame, f_funcobj); P(_PyInterpreterFrame, f_code); P(_PyInterpreterFrame, prev_instr);P(_PyInterpreterFrame, return_offset);
#else
  P(_PyInterpreterFrame, f_funcobj); P(_PyInterpreterFrame, f_executable); P(_PyInterpreterFrame, instr_ptr);P(_PyInterpreterFrame, return_offset);
#endif
  P(PyCodeObject, co_flags); P(PyCodeObject, co_argcount); P(PyCodeObject, co_kwonlyargcount); P(PyCodeObject, co_nlocalsplus);
  P(PyCodeObject, co_name); P(PyCodeObject, co_extra); P(PyCodeObject, co_code_adaptive);
#if PY_MINOR_VERSION>=12
  P(PyCodeObject, co_framesize);
  P(PyThreadState, c_recursion_remaining);
  P(PyThreadState, datastack_chunk); P(PyThreadState, datastack_top); P(PyThreadState, datastack_limit);
  P(_PyStackChunk, data);
#endif
  printf("sizeof frame %zu\n", sizeof(_PyInterpreterFrame));
  return 0;
}
