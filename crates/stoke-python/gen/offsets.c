/* Prints the structure offsets stoke reads in a CPython process, as one
 * Rust table row. Compiled by offsets.py against one CPython's headers. */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>
#include <stdio.h>
#if PY_VERSION_HEX >= 0x03090000
#include "internal/pycore_interp.h"
#include "internal/pycore_runtime.h"
#else
#include "internal/pycore_pystate.h"
#endif
#if PY_VERSION_HEX >= 0x030B0000
#include "internal/pycore_frame.h"
#include "internal/pycore_code.h"
#else
#include <frameobject.h>
#endif

#define P(name, value) printf("        %s: %zu,\n", name, (size_t)(value))

int main(void) {
    printf("    Offsets {\n");
    printf("        version: (%d, %d),\n", PY_MAJOR_VERSION, PY_MINOR_VERSION);
    P("runtime_interpreters_head", offsetof(_PyRuntimeState, interpreters.head));
#if PY_VERSION_HEX >= 0x030B0000
    P("interp_threads_head", offsetof(PyInterpreterState, threads.head));
#else
    P("interp_threads_head", offsetof(PyInterpreterState, tstate_head));
#endif
    P("tstate_next", offsetof(PyThreadState, next));
    P("tstate_thread_id", offsetof(PyThreadState, thread_id));
#if PY_VERSION_HEX >= 0x030B0000
    printf("        tstate_native_thread_id: Some(%zu),\n", offsetof(PyThreadState, native_thread_id));
    P("tstate_frame", offsetof(PyThreadState, cframe));
    printf("        cframe_current_frame: Some(%zu),\n", offsetof(_PyCFrame, current_frame));
    P("frame_previous", offsetof(_PyInterpreterFrame, previous));
    P("frame_code", offsetof(_PyInterpreterFrame, f_code));
    P("frame_instr", offsetof(_PyInterpreterFrame, prev_instr));
#if PY_VERSION_HEX >= 0x030C0000
    printf("        frame_entry: FrameEntry::Owner(%zu),\n", offsetof(_PyInterpreterFrame, owner));
#else
    printf("        frame_entry: FrameEntry::IsEntry(%zu),\n", offsetof(_PyInterpreterFrame, is_entry));
#endif
    printf("        code_qualname: Some(%zu),\n", offsetof(PyCodeObject, co_qualname));
    P("code_linetable", offsetof(PyCodeObject, co_linetable));
    printf("        code_adaptive: Some(%zu),\n", offsetof(PyCodeObject, co_code_adaptive));
#else
    printf("        tstate_native_thread_id: None,\n");
    P("tstate_frame", offsetof(PyThreadState, frame));
    printf("        cframe_current_frame: None,\n");
    P("frame_previous", offsetof(PyFrameObject, f_back));
    P("frame_code", offsetof(PyFrameObject, f_code));
    P("frame_instr", offsetof(PyFrameObject, f_lasti));
    printf("        frame_entry: FrameEntry::Counted,\n");
    printf("        code_qualname: None,\n");
#if PY_VERSION_HEX >= 0x030A0000
    P("code_linetable", offsetof(PyCodeObject, co_linetable));
#else
    P("code_linetable", offsetof(PyCodeObject, co_lnotab));
#endif
    printf("        code_adaptive: None,\n");
#endif
    P("code_filename", offsetof(PyCodeObject, co_filename));
    P("code_name", offsetof(PyCodeObject, co_name));
    P("code_firstlineno", offsetof(PyCodeObject, co_firstlineno));
    P("unicode_state", offsetof(PyASCIIObject, state));
    P("unicode_length", offsetof(PyASCIIObject, length));
    P("unicode_ascii_size", sizeof(PyASCIIObject));
    P("unicode_compact_size", sizeof(PyCompactUnicodeObject));
    P("bytes_size", offsetof(PyVarObject, ob_size));
    P("bytes_sval", offsetof(PyBytesObject, ob_sval));
    printf("    },\n");
    return 0;
}
