//! Where CPython keeps what stoke reads: structure offsets per version.

use crate::memory::Memory;
use crate::tables::TABLE;
use crate::PythonError;

/// How the end of one C-level evaluation is marked in the frame chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameEntry {
    /// 3.8 to 3.10: one `PyFrameObject` per `_PyEval_EvalFrameDefault` call
    /// (frames are counted).
    Counted,
    /// 3.11: a `bool is_entry` at this offset of `_PyInterpreterFrame`.
    IsEntry(usize),
    /// 3.12 and later: a `char owner` at this offset; the C stack's shim
    /// frame (owner 3) separates two evaluations.
    Owner(usize),
}

/// Offsets (bytes) of the fields stoke reads, for one CPython version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offsets {
    /// (major, minor).
    pub version: (u8, u8),
    /// `_PyRuntimeState.interpreters.head`.
    pub runtime_interpreters_head: usize,
    /// `PyInterpreterState.tstate_head` / `threads.head`.
    pub interp_threads_head: usize,
    /// `PyThreadState.next`.
    pub tstate_next: usize,
    /// `PyThreadState.thread_id` (the `pthread_t`).
    pub tstate_thread_id: usize,
    /// `PyThreadState.native_thread_id` (3.11 and later).
    pub tstate_native_thread_id: Option<usize>,
    /// `PyThreadState.frame` (≤ 3.10), `.cframe` (3.11, 3.12) or
    /// `.current_frame` (3.13).
    pub tstate_frame: usize,
    /// `_PyCFrame.current_frame` (3.11, 3.12: the thread's frame pointer
    /// goes through the C frame).
    pub cframe_current_frame: Option<usize>,
    /// `f_back` / `previous`.
    pub frame_previous: usize,
    /// `f_code` / `f_executable`.
    pub frame_code: usize,
    /// `f_lasti` (an `int`, ≤ 3.10), `prev_instr` (3.11, 3.12) or
    /// `instr_ptr` (3.13) (pointers).
    pub frame_instr: usize,
    /// How evaluations are delimited.
    pub frame_entry: FrameEntry,
    /// `co_qualname` (3.11 and later).
    pub code_qualname: Option<usize>,
    /// `co_lnotab` (3.8, 3.9) or `co_linetable`.
    pub code_linetable: usize,
    /// `co_code_adaptive` (3.11 and later: the instructions, inline).
    pub code_adaptive: Option<usize>,
    /// `co_filename`.
    pub code_filename: usize,
    /// `co_name`.
    pub code_name: usize,
    /// `co_firstlineno`.
    pub code_firstlineno: usize,
    /// `PyASCIIObject.state`.
    pub unicode_state: usize,
    /// `PyASCIIObject.length`.
    pub unicode_length: usize,
    /// `sizeof(PyASCIIObject)`: where an ASCII string's characters start.
    pub unicode_ascii_size: usize,
    /// `sizeof(PyCompactUnicodeObject)`: where other compact strings' start.
    pub unicode_compact_size: usize,
    /// `PyVarObject.ob_size` of a bytes object.
    pub bytes_size: usize,
    /// `PyBytesObject.ob_sval`.
    pub bytes_sval: usize,
}

/// `PyObject.ob_type`.
pub const OB_TYPE: u64 = 8;

impl Offsets {
    /// The checked-in table's row for 3.8 to 3.12.
    pub fn for_version(major: u8, minor: u8) -> Option<Offsets> {
        TABLE.iter().copied().find(|o| o.version == (major, minor))
    }

    /// Reads `_Py_DebugOffsets` at the start of `_PyRuntime` (3.13 and
    /// later), checking its cookie, version and the structure sizes it
    /// states.
    pub fn from_debug_offsets(
        memory: &dyn Memory,
        runtime: u64,
        version: u64,
    ) -> Result<Offsets, PythonError> {
        let mut buf = vec![0u8; DEBUG_OFFSETS_WORDS * 8 + 8];
        memory.read(runtime, &mut buf)?;
        if &buf[..8] != b"xdebugpy" {
            return Err(PythonError::Layout("no _Py_DebugOffsets cookie"));
        }
        let word = |i: usize| u64::from_le_bytes(buf[8 + i * 8..16 + i * 8].try_into().unwrap());
        // Words after the cookie, in the 3.13 layout.
        let stated = word(0);
        if stated >> 16 != version >> 16 {
            return Err(PythonError::Layout(
                "_Py_DebugOffsets version differs from Py_Version",
            ));
        }
        if word(1) != 0 {
            return Err(PythonError::FreeThreaded);
        }
        let at = |i: usize, size_index: usize| -> Result<usize, PythonError> {
            let v = word(i);
            // Every offset lies inside the structure whose size is stated.
            if v >= word(size_index) || v > 1 << 20 {
                return Err(PythonError::Layout("_Py_DebugOffsets out of range"));
            }
            Ok(v as usize)
        };
        // Indices: see `struct _Py_DebugOffsets` in CPython 3.13's
        // Include/internal/pycore_runtime.h.
        const RT: usize = 2; // runtime_state: size, finalizing, interpreters_head
        const IS: usize = RT + 3; // interpreter_state: 13 words
        const TS: usize = IS + 13; // thread_state: 9 words
        const IF: usize = TS + 9; // interpreter_frame: 6 words
        const CO: usize = IF + 6; // code_object: 10 words
        const UO: usize = CO + 10 + 2 + 4 + 3 + 3 + 3 + 2 + 3 + 3; // … unicode_object
        const BO: usize = UO - 3; // bytes_object: size, ob_size, ob_sval
        let ascii_size = word(UO + 3) as usize;
        if !(16..=256).contains(&ascii_size) {
            return Err(PythonError::Layout("_Py_DebugOffsets out of range"));
        }
        Ok(Offsets {
            version: ((version >> 24) as u8, (version >> 16) as u8),
            runtime_interpreters_head: at(RT + 2, RT)?,
            interp_threads_head: at(IS + 3, IS)?,
            tstate_next: at(TS + 2, TS)?,
            tstate_thread_id: at(TS + 5, TS)?,
            tstate_native_thread_id: Some(at(TS + 6, TS)?),
            tstate_frame: at(TS + 4, TS)?,
            cframe_current_frame: None,
            frame_previous: at(IF + 1, IF)?,
            frame_code: at(IF + 2, IF)?,
            frame_instr: at(IF + 3, IF)?,
            frame_entry: FrameEntry::Owner(at(IF + 5, IF)?),
            code_qualname: Some(at(CO + 3, CO)?),
            code_linetable: at(CO + 4, CO)?,
            code_adaptive: Some(at(CO + 9, CO)?),
            code_filename: at(CO + 1, CO)?,
            code_name: at(CO + 2, CO)?,
            code_firstlineno: at(CO + 5, CO)?,
            unicode_state: at(UO + 1, UO)?,
            unicode_length: at(UO + 2, UO)?,
            unicode_ascii_size: ascii_size,
            // The compact header adds utf8_length and utf8 (two words).
            unicode_compact_size: ascii_size + 16,
            bytes_size: at(BO + 1, BO)?,
            bytes_sval: at(BO + 2, BO)?,
        })
    }
}

/// Words of `_Py_DebugOffsets` after its cookie, up to the unicode object's.
const DEBUG_OFFSETS_WORDS: usize = 2 + 3 + 13 + 9 + 6 + 10 + 2 + 4 + 3 + 3 + 3 + 2 + 3 + 3 + 4;
