//! Reading a thread's Python frames through [`Memory`].

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use crate::linetable::{line_of, LineFormat};
use crate::memory::{read_u64, Memory};
use crate::offsets::{FrameEntry, Offsets, OB_TYPE};
use crate::PythonError;

/// Where an interpreter's state lives in its process, and how it is laid out.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The structure offsets.
    pub offsets: Offsets,
    /// The address of `_PyRuntime`.
    pub runtime: u64,
    /// The address of `PyCode_Type`, to check code objects against.
    pub code_type: Option<u64>,
    /// The addresses of `_PyEval_EvalFrameDefault` (and its `.cold` part).
    pub eval_ranges: Vec<Range<u64>>,
}

/// A code object's names and line table, read once.
#[derive(Debug, PartialEq, Eq)]
pub struct Code {
    /// `co_qualname` (3.11 and later), else `co_name`.
    pub qualname: String,
    /// `co_filename`.
    pub file: String,
    /// `co_firstlineno`.
    pub first_line: u32,
    table: Vec<u8>,
    /// The name and file pointers it was read with: a code object freed
    /// and another made at its address is told apart by them.
    identity: [u64; 2],
}

/// One Python frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PyFrame {
    /// Its code object.
    pub code: Arc<Code>,
    /// The line it is at, where the line table names one.
    pub line: Option<u32>,
    /// The frame's own address in the target.
    pub addr: u64,
}

/// What a thread's Python state said at a sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PyStack {
    /// No thread state for this thread (not a Python thread).
    NoThread,
    /// What was read disagrees with itself or with the sample.
    Stale,
    /// The Python frames, leaf first, grouped by the C-level evaluation
    /// (`_PyEval_EvalFrameDefault` call) that runs them, innermost first.
    Evals(Vec<Vec<PyFrame>>),
}

impl PyStack {
    /// The address of the innermost Python frame, if any.
    pub fn leaf_address(&self) -> Option<u64> {
        match self {
            PyStack::Evals(evals) => evals.iter().flatten().next().map(|f| f.addr),
            _ => None,
        }
    }
}

/// At most this many thread states are walked.
const MAX_THREADS: usize = 512;
/// At most this many frames are read per sample.
const MAX_FRAMES: usize = 1024;
/// A string or line table longer than this is not believed.
const MAX_BYTES: u64 = 1 << 16;
/// The root C frame is a field of the thread state, within this many bytes.
const ROOT_CFRAME_REACH: u64 = 1 << 16;
/// `FRAME_OWNED_BY_CSTACK`: the shim frame at the entry of an evaluation.
const OWNED_BY_CSTACK: u8 = 3;

/// The word at `addr` in a stack copy that starts at `start`.
fn word_at(copy: &[u8], start: u64, addr: u64) -> Option<u64> {
    let off = usize::try_from(addr.checked_sub(start)?).ok()?;
    let bytes = copy.get(off..off.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// Reads the Python frames of one interpreter's threads.
pub struct Reader<M> {
    memory: M,
    layout: Layout,
    format: LineFormat,
    codes: HashMap<u64, Option<Arc<Code>>>,
    /// Each thread's state (3.11 and later, found by native thread id) and
    /// how many reads have trusted it since the list was last walked.
    tstates: HashMap<u32, (u64, u32)>,
}

/// How many reads trust a thread's cached state (checked by one read of its
/// native thread id) before the interpreter's thread list is walked again:
/// a state freed and its memory not yet reused would still show the id.
const TSTATE_TRUSTED_READS: u32 = 64;

impl<M: Memory> Reader<M> {
    /// A reader of the process behind `memory`.
    pub fn new(memory: M, layout: Layout) -> Reader<M> {
        let format = LineFormat::for_minor(layout.offsets.version.1);
        Reader {
            memory,
            layout,
            format,
            codes: HashMap::new(),
            tstates: HashMap::new(),
        }
    }

    /// The interpreter's (major, minor) version.
    pub fn version(&self) -> (u8, u8) {
        self.layout.offsets.version
    }

    /// Whether `addr` is in `_PyEval_EvalFrameDefault` (or its cold part).
    pub fn is_eval(&self, addr: u64) -> bool {
        self.layout.eval_ranges.iter().any(|r| r.contains(&addr))
    }

    /// The memory read (tests change it between reads).
    #[cfg(test)]
    pub(crate) fn memory_mut(&mut self) -> &mut M {
        &mut self.memory
    }

    /// Code objects cached so far.
    pub fn cached_codes(&self) -> usize {
        self.codes.len()
    }

    /// The Python frames of thread `tid` whose stack pointer is `sp`.
    pub fn stack(&mut self, tid: u32, sp: Option<u64>) -> PyStack {
        self.stack_with(tid, sp, &[])
    }

    /// The Python frames of thread `tid` at a sample whose stack pointer is
    /// `sp` and whose copy of the stack from `sp` up is `copy`.
    ///
    /// The thread has run on since the sample, so the chain is read where
    /// it matches the sample: C frames (3.11, 3.12) and entry frames (3.12
    /// and later) below `sp` belong to evaluations entered after the sample
    /// and are stepped out of, and a C frame inside the copy gives its
    /// current frame as it was at the sample (from the copy, not from the
    /// live stack).
    pub fn stack_with(&mut self, tid: u32, sp: Option<u64>, copy: &[u8]) -> PyStack {
        match self.try_stack(tid, sp, copy) {
            Ok(s) => s,
            Err(_) => PyStack::Stale,
        }
    }

    fn try_stack(
        &mut self,
        tid: u32,
        sp: Option<u64>,
        copy: &[u8],
    ) -> Result<PyStack, PythonError> {
        let Some(tstate) = self.cached_thread_state(tid, sp)? else {
            return Ok(PyStack::NoThread);
        };
        let o = self.layout.offsets;
        let mut frame = read_u64(&self.memory, tstate + o.tstate_frame as u64)?;
        if let Some(current) = o.cframe_current_frame {
            // 3.11, 3.12: the C frame is a local of the running evaluation,
            // so it lies on the live part of the stack.
            if frame == 0 {
                return Ok(PyStack::Evals(Vec::new()));
            }
            // (Outside any evaluation it is the thread state's root one.)
            let is_root = |f: u64| f >= tstate && f - tstate < ROOT_CFRAME_REACH;
            let mut at_sample = None;
            if let (Some(sp), false) = (sp, is_root(frame)) {
                // Below the stack pointer: evaluations entered since the
                // sample; `previous` follows `current_frame` in _PyCFrame.
                let mut hops = 0;
                while frame < sp {
                    hops += 1;
                    if hops > MAX_FRAMES {
                        return Ok(PyStack::Stale);
                    }
                    frame = read_u64(&self.memory, frame + current as u64 + 8)?;
                    if frame == 0 || is_root(frame) {
                        // Returned past every evaluation of the sample.
                        return Ok(PyStack::Stale);
                    }
                }
                if let Some(groups) = self.by_c_frames(frame, sp, copy, current as u64, &is_root)? {
                    return Ok(groups);
                }
                at_sample = word_at(copy, sp, frame + current as u64);
            }
            frame = match at_sample {
                Some(f) => f,
                None => read_u64(&self.memory, frame + current as u64)?,
            };
        }
        self.walk(frame, sp, false, None)
    }

    /// Walks the frame chain from `frame`, grouped by evaluation. With
    /// `one`, only the evaluation `frame` is in: up to its entry (3.11) or
    /// shim (3.12) frame, or to the chain's end (a generator's frame once
    /// it yielded has no `previous`), and never into `stop` (the current
    /// frame of the evaluation outside it: a frame just pushed is not yet
    /// marked as its evaluation's entry).
    fn walk(
        &mut self,
        mut frame: u64,
        sp: Option<u64>,
        one: bool,
        stop: Option<u64>,
    ) -> Result<PyStack, PythonError> {
        let o = self.layout.offsets;
        let mut evals: Vec<Vec<PyFrame>> = Vec::new();
        let mut group: Vec<PyFrame> = Vec::new();
        let span = [
            o.frame_previous,
            o.frame_code,
            o.frame_instr,
            match o.frame_entry {
                FrameEntry::Counted => 0,
                FrameEntry::IsEntry(e) | FrameEntry::Owner(e) => e,
            },
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
            + 8;
        let mut buf = vec![0u8; span];
        let mut next = vec![0u8; span];
        // Whether `buf` already holds `frame` (read with the last code
        // object's identity, in one system call).
        let mut have = false;
        let mut seen = 0;
        while frame != 0 {
            if one && stop == Some(frame) {
                break;
            }
            seen += 1;
            if seen > MAX_FRAMES {
                return Ok(PyStack::Stale);
            }
            if !have {
                self.memory.read(frame, &mut buf)?;
            }
            have = false;
            let word = |off: usize| u64::from_le_bytes(buf[off..off + 8].try_into().unwrap());
            let previous = word(o.frame_previous);
            let code_addr = word(o.frame_code);
            let entry = match o.frame_entry {
                FrameEntry::Counted => true,
                FrameEntry::IsEntry(e) => buf[e] != 0,
                FrameEntry::Owner(e) => {
                    if buf[e] == OWNED_BY_CSTACK {
                        // The shim frame closes the evaluation it entered;
                        // it is a local of that C call. Below the stack
                        // pointer, that evaluation began after the sample:
                        // what was read so far is newer than the sample.
                        if sp.is_some_and(|sp| frame < sp) {
                            evals.clear();
                            group.clear();
                            frame = previous;
                            continue;
                        }
                        evals.push(std::mem::take(&mut group));
                        if one {
                            return Ok(PyStack::Evals(evals));
                        }
                        frame = previous;
                        continue;
                    }
                    false
                }
            };
            // The walk goes on to `previous`: it is read along with the
            // code object's identity.
            let more = previous != 0 && !(one && entry) && !(one && stop == Some(previous));
            let prefetch = more.then_some((previous, next.as_mut_slice()));
            let Some(code) = self.code_and(code_addr, prefetch)? else {
                return Ok(PyStack::Stale);
            };
            let offset = match o.code_adaptive {
                None => {
                    let lasti = i32::from_le_bytes(
                        buf[o.frame_instr..o.frame_instr + 4].try_into().unwrap(),
                    );
                    let lasti = u64::try_from(lasti).unwrap_or(0);
                    if self.format == LineFormat::Linetable310 {
                        lasti * 2
                    } else {
                        lasti
                    }
                }
                Some(adaptive) => word(o.frame_instr).saturating_sub(code_addr + adaptive as u64),
            };
            let line = line_of(self.format, &code.table, code.first_line, offset);
            group.push(PyFrame {
                code,
                line,
                addr: frame,
            });
            if entry {
                evals.push(std::mem::take(&mut group));
                if one {
                    return Ok(PyStack::Evals(evals));
                }
            }
            if more {
                std::mem::swap(&mut buf, &mut next);
                have = true;
            }
            frame = previous;
        }
        if one {
            evals.push(group);
            return Ok(PyStack::Evals(evals));
        }
        if !group.is_empty() {
            // 3.12+ frames of the outermost evaluation end without a shim
            // only if the chain was cut: say so rather than guess.
            return Ok(PyStack::Stale);
        }
        Ok(PyStack::Evals(evals))
    }

    /// 3.11, 3.12: the evaluations of a sample read through the C frames in
    /// its stack copy, starting at the live C frame `live` (at or above
    /// `sp`). The C frames of evaluations the thread returned from since the
    /// sample are still in the copy, below `live`, each linked to the next
    /// by `previous`: the innermost one is found, and each C frame's current
    /// frame, as at the sample, starts one evaluation. `None` when the copy
    /// does not hold them all (it was cut short).
    fn by_c_frames(
        &mut self,
        live: u64,
        sp: u64,
        copy: &[u8],
        current: u64,
        is_root: &dyn Fn(u64) -> bool,
    ) -> Result<Option<PyStack>, PythonError> {
        let end = sp + copy.len() as u64;
        let in_copy = |a: u64| a >= sp && a + 8 <= end;
        if !in_copy(live + current + 8) {
            return Ok(None);
        }
        // Deeper C frames: the one whose `previous` is the innermost known.
        let mut inner = live;
        'deeper: for _ in 0..MAX_FRAMES {
            let mut at = inner.saturating_sub(8) & !7;
            while at >= sp + current + 8 {
                let candidate = at - current - 8;
                if word_at(copy, sp, at) == Some(inner) && candidate < inner {
                    inner = candidate;
                    continue 'deeper;
                }
                at -= 8;
            }
            break;
        }
        let mut groups = Vec::new();
        let mut cframe = inner;
        for _ in 0..MAX_FRAMES {
            let (Some(frame), Some(previous)) = (
                word_at(copy, sp, cframe + current),
                word_at(copy, sp, cframe + current + 8),
            ) else {
                return Ok(None);
            };
            let outer = word_at(copy, sp, previous + current).filter(|_| !is_root(previous));
            match self.walk(frame, Some(sp), true, outer)? {
                PyStack::Evals(mut one) => groups.append(&mut one),
                other => return Ok(Some(other)),
            }
            if previous == 0 || is_root(previous) {
                return Ok(Some(PyStack::Evals(groups)));
            }
            if !in_copy(previous + current + 8) || previous <= cframe {
                return Ok(None);
            }
            cframe = previous;
        }
        Ok(Some(PyStack::Stale))
    }

    /// [`Reader::thread_state`], remembered per thread from 3.11: one read
    /// (its native thread id still `tid`) instead of a walk of the list.
    fn cached_thread_state(
        &mut self,
        tid: u32,
        sp: Option<u64>,
    ) -> Result<Option<u64>, PythonError> {
        let Some(native) = self.layout.offsets.tstate_native_thread_id else {
            return self.thread_state(tid, sp);
        };
        if let Some((tstate, reads)) = self.tstates.get_mut(&tid) {
            if *reads < TSTATE_TRUSTED_READS
                && read_u64(&self.memory, *tstate + native as u64).ok() == Some(u64::from(tid))
            {
                *reads += 1;
                return Ok(Some(*tstate));
            }
        }
        let found = self.thread_state(tid, sp)?;
        match found {
            Some(tstate) => {
                if self.tstates.len() >= MAX_THREADS {
                    self.tstates.clear();
                }
                self.tstates.insert(tid, (tstate, 0));
            }
            None => {
                self.tstates.remove(&tid);
            }
        }
        Ok(found)
    }

    /// The thread state of `tid`: by native thread id from 3.11; before,
    /// by the `pthread_t` (the thread's control block, just above its
    /// stack for every thread but the main one).
    fn thread_state(&self, tid: u32, sp: Option<u64>) -> Result<Option<u64>, PythonError> {
        let o = self.layout.offsets;
        let interp = read_u64(
            &self.memory,
            self.layout.runtime + o.runtime_interpreters_head as u64,
        )?;
        if interp == 0 {
            return Ok(None);
        }
        let mut tstate = read_u64(&self.memory, interp + o.interp_threads_head as u64)?;
        let span = o
            .tstate_next
            .max(o.tstate_thread_id)
            .max(o.tstate_native_thread_id.unwrap_or(0))
            + 8;
        let mut buf = vec![0u8; span];
        let mut all = Vec::new();
        while tstate != 0 && all.len() < MAX_THREADS {
            self.memory.read(tstate, &mut buf)?;
            let word = |off: usize| u64::from_le_bytes(buf[off..off + 8].try_into().unwrap());
            if let Some(native) = o.tstate_native_thread_id {
                if word(native) == u64::from(tid) {
                    return Ok(Some(tstate));
                }
            }
            all.push((tstate, word(o.tstate_thread_id)));
            tstate = word(o.tstate_next);
        }
        if o.tstate_native_thread_id.is_some() {
            return Ok(None);
        }
        if all.len() == 1 {
            return Ok(Some(all[0].0));
        }
        let Some(sp) = sp else {
            return Ok(None);
        };
        // A thread's control block sits just above its stack.
        const STACK_REACH: u64 = 64 << 20;
        let above: Vec<u64> = all
            .iter()
            .filter(|(_, id)| *id > sp && *id - sp < STACK_REACH)
            .map(|(t, _)| *t)
            .collect();
        match above.as_slice() {
            [one] => Ok(Some(*one)),
            [] => {
                // The main thread: its control block is not above its stack.
                // The list is newest first, so it is the last one.
                let main = all.last().map(|(t, _)| *t);
                let main_is_above = all
                    .last()
                    .is_some_and(|(_, id)| *id > sp && *id - sp < STACK_REACH);
                Ok(if main_is_above { None } else { main })
            }
            _ => Ok(above.iter().copied().min_by_key(|t| {
                all.iter()
                    .find(|(s, _)| s == t)
                    .map_or(u64::MAX, |(_, id)| id - sp)
            })),
        }
    }

    /// The code object at `addr`, read once; `None` when it is not one.
    /// A cached one is checked to be still the same object (its name and
    /// file pointers, one small read): the address of a code object freed
    /// since (a `compile`d string's `<module>`) is reused for new ones.
    ///
    /// `also` (address, buffer), the next frame, is filled too: in the same
    /// system call as a cached code object's identity, so that a sample's
    /// reads are one call per frame (they are made inside the thread's stop
    /// under ptrace).
    fn code_and(
        &mut self,
        addr: u64,
        also: Option<(u64, &mut [u8])>,
    ) -> Result<Option<Arc<Code>>, PythonError> {
        let mut also = also;
        if let Some(Some(c)) = self.codes.get(&addr) {
            if self.identity(addr, also.take())? == c.identity {
                return Ok(Some(c.clone()));
            }
            self.codes.remove(&addr);
        }
        if let Some((at, buf)) = also {
            self.memory.read(at, buf)?;
        }
        let code = self.read_code(addr)?;
        // A bad pointer is not cached: the address may hold a code object later.
        if code.is_some() {
            self.codes.insert(addr, code.clone());
        }
        Ok(code)
    }

    /// The name and file pointers of the code object at `addr`.
    /// With `also`, that is read in the same call.
    fn identity(&self, addr: u64, also: Option<(u64, &mut [u8])>) -> Result<[u64; 2], PythonError> {
        let o = self.layout.offsets;
        let name_at = o.code_qualname.unwrap_or(o.code_name);
        let (lo, hi) = (name_at.min(o.code_filename), name_at.max(o.code_filename));
        let mut buf = vec![0u8; hi - lo + 8];
        match also {
            Some((at, other)) => self
                .memory
                .read_many(&mut [(addr + lo as u64, &mut buf[..]), (at, other)])?,
            None => self.memory.read(addr + lo as u64, &mut buf)?,
        }
        let word = |off: usize| {
            let at = off - lo;
            u64::from_le_bytes(buf[at..at + 8].try_into().unwrap())
        };
        Ok([word(name_at), word(o.code_filename)])
    }

    fn read_code(&self, addr: u64) -> Result<Option<Arc<Code>>, PythonError> {
        if addr == 0 {
            return Ok(None);
        }
        let o = self.layout.offsets;
        let ty = read_u64(&self.memory, addr + OB_TYPE)?;
        if let Some(code_type) = self.layout.code_type {
            if ty != code_type {
                return Ok(None);
            }
        }
        let name_at = o.code_qualname.unwrap_or(o.code_name);
        let fields = [
            name_at,
            o.code_filename,
            o.code_linetable,
            o.code_firstlineno,
        ];
        let span = fields.iter().copied().max().unwrap_or(0) + 8;
        let mut buf = vec![0u8; span];
        self.memory.read(addr, &mut buf)?;
        let word = |off: usize| u64::from_le_bytes(buf[off..off + 8].try_into().unwrap());
        let first_line = u32::from_le_bytes(
            buf[o.code_firstlineno..o.code_firstlineno + 4]
                .try_into()
                .unwrap(),
        );
        let qualname = self.string(word(name_at))?;
        let file = self.string(word(o.code_filename))?;
        let table = self.bytes(word(o.code_linetable))?;
        Ok(Some(Arc::new(Code {
            qualname,
            file,
            first_line,
            table,
            identity: [word(name_at), word(o.code_filename)],
        })))
    }

    /// A compact `str` object's text.
    fn string(&self, addr: u64) -> Result<String, PythonError> {
        let o = self.layout.offsets;
        let mut head = [0u8; 8];
        let mut state = [0u8; 4];
        self.memory.read_many(&mut [
            (addr + o.unicode_length as u64, &mut head[..]),
            (addr + o.unicode_state as u64, &mut state[..]),
        ])?;
        let length = u64::from_le_bytes(head);
        let state = u32::from_le_bytes(state);
        let kind = (state >> 2) & 7;
        let compact = state & (1 << 5) != 0;
        let ascii = state & (1 << 6) != 0;
        if !compact || !(1..=4).contains(&kind) || kind == 3 {
            return Err(PythonError::Layout("not a compact string"));
        }
        let bytes = length * u64::from(kind);
        if bytes > MAX_BYTES {
            return Err(PythonError::Layout("string too long"));
        }
        let data = addr
            + if ascii {
                o.unicode_ascii_size
            } else {
                o.unicode_compact_size
            } as u64;
        let mut raw = vec![0u8; bytes as usize];
        self.memory.read(data, &mut raw)?;
        Ok(match kind {
            1 => raw.iter().map(|&b| char::from(b)).collect(),
            2 => String::from_utf16_lossy(
                &raw.chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect::<Vec<_>>(),
            ),
            _ => raw
                .chunks_exact(4)
                .map(|c| {
                    char::from_u32(u32::from_le_bytes(c.try_into().unwrap()))
                        .unwrap_or(char::REPLACEMENT_CHARACTER)
                })
                .collect(),
        })
    }

    /// A `bytes` object's contents.
    fn bytes(&self, addr: u64) -> Result<Vec<u8>, PythonError> {
        let o = self.layout.offsets;
        let size = read_u64(&self.memory, addr + o.bytes_size as u64)?;
        if size > MAX_BYTES {
            return Err(PythonError::Layout("line table too long"));
        }
        let mut raw = vec![0u8; size as usize];
        self.memory.read(addr + o.bytes_sval as u64, &mut raw)?;
        Ok(raw)
    }
}
