//! The reader against a fake memory laid out as CPython 3.12 and 3.10 would.

use crate::memory::FakeMemory;
use crate::offsets::{FrameEntry, Offsets, OB_TYPE};
use crate::reader::{Layout, PyStack, Reader};

const RUNTIME: u64 = 0x1000;
const INTERP: u64 = 0x2000;
const TSTATE: u64 = 0x3000;
const CODE_TYPE: u64 = 0x4000;
const STACK: u64 = 0x7fff_0000;

/// An ASCII `str` object at `addr`.
fn put_str(m: &mut FakeMemory, o: &Offsets, addr: u64, s: &str) {
    m.put_u64(addr + o.unicode_length as u64, s.len() as u64);
    // kind 1, compact, ascii
    let state: u32 = (1 << 2) | (1 << 5) | (1 << 6);
    m.put(addr + o.unicode_state as u64, &state.to_le_bytes());
    m.put(addr + o.unicode_ascii_size as u64, s.as_bytes());
}

fn put_bytes(m: &mut FakeMemory, o: &Offsets, addr: u64, b: &[u8]) {
    m.put_u64(addr + o.bytes_size as u64, b.len() as u64);
    m.put(addr + o.bytes_sval as u64, b);
}

/// A code object at `addr` named `name`, first line `first`, one line per
/// code unit after the first.
fn put_code(m: &mut FakeMemory, o: &Offsets, addr: u64, name: &str, first: u32, ty: u64) {
    m.put(addr, &[0u8; 256]);
    m.put_u64(addr + OB_TYPE, ty);
    let name_at = o.code_qualname.unwrap_or(o.code_name);
    m.put_u64(addr + name_at as u64, addr + 0x400);
    put_str(m, o, addr + 0x400, name);
    m.put_u64(addr + o.code_filename as u64, addr + 0x500);
    put_str(m, o, addr + 0x500, "app.py");
    m.put_u64(addr + o.code_linetable as u64, addr + 0x600);
    m.put(addr + o.code_firstlineno as u64, &first.to_le_bytes());
    // Location table: code unit 0 on the first line, then one line down
    // per unit (no-column form, svarint 2 = +1).
    let mut table = vec![0x80 | (13 << 3), 0];
    for _ in 0..8 {
        table.extend([0x80 | (13 << 3), 2]);
    }
    put_bytes(m, o, addr + 0x600, &table);
}

fn threads_312(m: &mut FakeMemory, o: &Offsets, tid: u64) {
    m.put_u64(RUNTIME + o.runtime_interpreters_head as u64, INTERP);
    m.put_u64(INTERP + o.interp_threads_head as u64, TSTATE);
    m.put(TSTATE, &[0u8; 256]);
    m.put_u64(TSTATE + o.tstate_native_thread_id.unwrap() as u64, tid);
}

fn layout(o: Offsets) -> Layout {
    Layout {
        offsets: o,
        runtime: RUNTIME,
        code_type: Some(CODE_TYPE),
        eval_ranges: std::iter::once(0x10_0000..0x10_1000).collect(),
    }
}

/// A 3.12 frame at `addr`.
fn put_frame_312(
    m: &mut FakeMemory,
    o: &Offsets,
    addr: u64,
    code: u64,
    unit: u64,
    prev: u64,
    owner: u8,
) {
    m.put(addr, &[0u8; 80]);
    m.put_u64(addr + o.frame_code as u64, code);
    m.put_u64(addr + o.frame_previous as u64, prev);
    let adaptive = o.code_adaptive.unwrap() as u64;
    m.put_u64(addr + o.frame_instr as u64, code + adaptive + unit * 2);
    let FrameEntry::Owner(at) = o.frame_entry else {
        panic!("3.12 has owners")
    };
    m.put(addr + at as u64, &[owner]);
}

/// leaf → middle in the inner evaluation, <module> in the outer one.
fn memory_312(code_type: u64) -> (FakeMemory, Offsets) {
    let o = Offsets::for_version(3, 12).unwrap();
    let mut m = FakeMemory::default();
    threads_312(&mut m, &o, 42);
    let cframe = STACK + 0x100;
    m.put_u64(TSTATE + o.tstate_frame as u64, cframe);
    let (leaf, middle, module) = (0x5_0000, 0x5_1000, 0x5_2000);
    put_code(&mut m, &o, leaf, "Leaf.run", 10, code_type);
    put_code(&mut m, &o, middle, "middle", 20, CODE_TYPE);
    put_code(&mut m, &o, module, "<module>", 1, CODE_TYPE);
    let (f_leaf, f_middle, shim1, f_module, shim0) =
        (0x6_0000, 0x6_0100, STACK + 0x200, 0x6_0200, STACK + 0x300);
    m.put_u64(cframe + o.cframe_current_frame.unwrap() as u64, f_leaf);
    put_frame_312(&mut m, &o, f_leaf, leaf, 2, f_middle, 0);
    put_frame_312(&mut m, &o, f_middle, middle, 0, shim1, 0);
    put_frame_312(&mut m, &o, shim1, 0, 0, f_module, 3);
    put_frame_312(&mut m, &o, f_module, module, 5, shim0, 0);
    put_frame_312(&mut m, &o, shim0, 0, 0, 0, 3);
    (m, o)
}

fn names(stack: &PyStack) -> Vec<Vec<(String, Option<u32>)>> {
    let PyStack::Evals(evals) = stack else {
        panic!("not frames: {stack:?}")
    };
    evals
        .iter()
        .map(|e| {
            e.iter()
                .map(|f| (f.code.qualname.clone(), f.line))
                .collect()
        })
        .collect()
}

#[test]
fn a_312_chain_is_named_and_split_at_its_shim_frames() {
    let (m, o) = memory_312(CODE_TYPE);
    let mut r = Reader::new(m, layout(o));
    let stack = r.stack(42, Some(STACK));
    assert_eq!(
        names(&stack),
        vec![
            vec![
                ("Leaf.run".to_string(), Some(12)),
                ("middle".to_string(), Some(20))
            ],
            vec![("<module>".to_string(), Some(6))],
        ]
    );
    assert_eq!(r.cached_codes(), 3);
    assert!(r.is_eval(0x10_0010));
    assert!(!r.is_eval(0x20_0000));
}

#[test]
fn another_thread_has_no_python_stack() {
    let (m, o) = memory_312(CODE_TYPE);
    let mut r = Reader::new(m, layout(o));
    assert_eq!(r.stack(7, Some(STACK)), PyStack::NoThread);
}

#[test]
fn a_code_object_of_the_wrong_type_is_stale_not_a_name() {
    let (m, o) = memory_312(0xbad);
    let mut r = Reader::new(m, layout(o));
    assert_eq!(r.stack(42, Some(STACK)), PyStack::Stale);
}

#[test]
fn a_c_frame_below_the_stack_pointer_is_stale() {
    let (m, o) = memory_312(CODE_TYPE);
    let mut r = Reader::new(m, layout(o));
    // The thread has returned past the evaluation that owned the C frame.
    assert_eq!(r.stack(42, Some(STACK + 0x1000)), PyStack::Stale);
}

#[test]
fn unreadable_memory_is_stale() {
    let o = Offsets::for_version(3, 12).unwrap();
    let mut r = Reader::new(FakeMemory::default(), layout(o));
    assert_eq!(r.stack(42, None), PyStack::Stale);
}

#[test]
fn a_310_chain_counts_one_evaluation_per_frame() {
    let o = Offsets::for_version(3, 10).unwrap();
    assert_eq!(o.frame_entry, FrameEntry::Counted);
    let mut m = FakeMemory::default();
    m.put_u64(RUNTIME + o.runtime_interpreters_head as u64, INTERP);
    m.put_u64(INTERP + o.interp_threads_head as u64, TSTATE);
    m.put(TSTATE, &[0u8; 256]);
    let (f1, f0) = (0x6_0000, 0x6_1000);
    m.put_u64(TSTATE + o.tstate_frame as u64, f1);
    let (c1, c0) = (0x5_0000, 0x5_1000);
    for (code, name) in [(c1, "work"), (c0, "<module>")] {
        m.put(code, &[0u8; 256]);
        m.put_u64(code + OB_TYPE, CODE_TYPE);
        m.put_u64(code + o.code_name as u64, code + 0x400);
        put_str(&mut m, &o, code + 0x400, name);
        m.put_u64(code + o.code_filename as u64, code + 0x500);
        put_str(&mut m, &o, code + 0x500, "app.py");
        m.put_u64(code + o.code_linetable as u64, code + 0x600);
        m.put(code + o.code_firstlineno as u64, &3u32.to_le_bytes());
        // bytes 0..4 line 3, 4..8 line 4
        put_bytes(&mut m, &o, code + 0x600, &[4, 0, 4, 1]);
    }
    for (frame, code, back, lasti) in [(f1, c1, f0, 3i32), (f0, c0, 0, 0)] {
        m.put(frame, &[0u8; 128]);
        m.put_u64(frame + o.frame_previous as u64, back);
        m.put_u64(frame + o.frame_code as u64, code);
        m.put(frame + o.frame_instr as u64, &lasti.to_le_bytes());
    }
    let mut r = Reader::new(m, layout(o));
    assert_eq!(
        names(&r.stack(1, Some(STACK))),
        vec![
            vec![("work".to_string(), Some(4))],
            vec![("<module>".to_string(), Some(3))],
        ]
    );
}

#[test]
fn debug_offsets_are_checked() {
    let mut m = FakeMemory::default();
    let mut words = vec![0u64; 70];
    words[0] = 0x030D_00F0;
    // Every structure 0x100 bytes, every field at 8.
    for w in words.iter_mut().skip(2) {
        *w = 8;
    }
    for size_index in [2, 5, 18, 27, 33, 63, 66] {
        words[size_index] = 0x100;
    }
    words[66 + 3] = 40; // sizeof(PyASCIIObject)
    let mut bytes = b"xdebugpy".to_vec();
    for w in &words {
        bytes.extend(w.to_le_bytes());
    }
    m.put(RUNTIME, &bytes);
    let o = Offsets::from_debug_offsets(&m, RUNTIME, 0x030D_00F0).unwrap();
    assert_eq!(o.version, (3, 13));
    assert_eq!(o.unicode_compact_size, 56);
    assert_eq!(o.frame_entry, FrameEntry::Owner(8));
    // Another version's offsets are refused.
    assert!(Offsets::from_debug_offsets(&m, RUNTIME, 0x030E_00F0).is_err());
    // A free-threaded build is refused.
    let mut ft = bytes.clone();
    ft[16] = 1;
    m.put(RUNTIME, &ft);
    assert_eq!(
        Offsets::from_debug_offsets(&m, RUNTIME, 0x030D_00F0),
        Err(crate::PythonError::FreeThreaded)
    );
    // No cookie, no offsets.
    m.put(RUNTIME, b"notdebug");
    assert!(Offsets::from_debug_offsets(&m, RUNTIME, 0x030D_00F0).is_err());
}

#[test]
fn an_evaluation_entered_after_the_sample_is_stepped_out_of() {
    let (mut m, o) = memory_312(CODE_TYPE);
    // The live C frame (STACK + 0x100) is below the sample's stack pointer:
    // its `previous` is the one the sample was in, whose current frame the
    // sample's copy holds (<module>'s, though the live stack says leaf's).
    let (sp, outer) = (STACK + 0x180, STACK + 0x280);
    m.put_u64(STACK + 0x100 + 8, outer);
    m.put_u64(outer, 0x6_0100);
    let mut copy = vec![0u8; 0x200];
    copy[(outer - sp) as usize..(outer - sp) as usize + 8]
        .copy_from_slice(&0x6_0200u64.to_le_bytes());
    let mut r = Reader::new(m, layout(o));
    assert_eq!(
        names(&r.stack_with(42, Some(sp), &copy)),
        vec![vec![("<module>".to_string(), Some(6))]]
    );
    // Without the copy, the C frame's live current frame is read.
    assert_eq!(names(&r.stack_with(42, Some(sp), &[]))[0][0].0, "middle");
}

#[test]
fn a_code_object_made_where_a_freed_one_was_is_read_anew() {
    let (m, o) = memory_312(CODE_TYPE);
    let mut r = Reader::new(m, layout(o));
    assert_eq!(names(&r.stack(42, Some(STACK)))[0][0].0, "Leaf.run");
    // Leaf.run's code object is freed and `other` made at its address.
    let leaf = 0x5_0000;
    let name_at = o.code_qualname.unwrap() as u64;
    r.memory_mut().put_u64(leaf + name_at, leaf + 0x700);
    put_str(r.memory_mut(), &o, leaf + 0x700, "other");
    assert_eq!(names(&r.stack(42, Some(STACK)))[0][0].0, "other");
}

/// A memory that counts its calls (each `read_many` one, as one system call).
struct Counting(FakeMemory, std::cell::Cell<usize>);

impl crate::Memory for Counting {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), crate::PythonError> {
        self.1.set(self.1.get() + 1);
        self.0.read(addr, buf)
    }

    fn read_many(&self, requests: &mut [(u64, &mut [u8])]) -> Result<(), crate::PythonError> {
        self.1.set(self.1.get() + 1);
        requests
            .iter_mut()
            .try_for_each(|(addr, buf)| self.0.read(*addr, buf))
    }
}

#[test]
fn a_cached_chain_is_read_in_one_call_per_frame() {
    let (m, o) = memory_312(CODE_TYPE);
    let mut r = Reader::new(Counting(m, std::cell::Cell::new(0)), layout(o));
    let first = r.stack(42, Some(STACK));
    r.memory_mut().1.set(0);
    assert_eq!(r.stack(42, Some(STACK)), first);
    // The remembered thread state checked by its thread id (1), its frame
    // and C frame (2), then one call per frame (5, with the two shims):
    // each cached code object's identity comes with the next frame.
    assert_eq!(r.memory_mut().1.get(), 8);
}

#[test]
fn a_thread_state_is_remembered_until_its_thread_id_changes() {
    let (m, o) = memory_312(CODE_TYPE);
    let mut r = Reader::new(m, layout(o));
    let first = r.stack(42, Some(STACK));
    // The interpreter's thread list is no longer read: the state found
    // before is used, checked by its thread id.
    r.memory_mut()
        .put_u64(RUNTIME + o.runtime_interpreters_head as u64, 0);
    assert_eq!(r.stack(42, Some(STACK)), first);
    // Its memory now holds another thread's state: looked for anew.
    r.memory_mut()
        .put_u64(RUNTIME + o.runtime_interpreters_head as u64, INTERP);
    r.memory_mut()
        .put_u64(TSTATE + o.tstate_native_thread_id.unwrap() as u64, 43);
    assert_eq!(r.stack(42, Some(STACK)), PyStack::NoThread);
    assert_eq!(r.stack(43, Some(STACK)), first);
}
