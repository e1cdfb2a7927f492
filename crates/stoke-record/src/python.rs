//! Python frames spliced into native stacks, in place of the interpreter's
//! `_PyEval_EvalFrameDefault` frames.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use stoke_model::{FrameAddress, Mapping, MappingKind, Pid, Tid};
use stoke_python::{Code, Interpreter, PyFrame, PyStack};
use stoke_sample::{Sample, WhileStopped};

use crate::facts::{LiveProcfs, ProcessFacts};
use crate::stack::RawFrame;
use crate::store::{ModuleStore, Unloaded};
use crate::Target;

/// Whether Python frames are read from CPython targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PythonMode {
    /// Read them from any CPython 3.8 to 3.13 found in the target.
    #[default]
    Auto,
    /// Show the interpreter's C functions only.
    Off,
}

/// The name of the frame put where Python frames could not be read
/// consistently with the sample.
pub const PYTHON_STALE_FRAME: &str = "[python: stale]";

/// A Python frame, interned: its code object and line.
#[derive(Clone, Debug)]
pub(crate) struct PythonFrame {
    pub code: Arc<Code>,
    pub line: Option<u32>,
}

/// The interpreter found in each process (`None`: none).
type Interpreters = HashMap<Pid, Option<Interpreter>>;

/// The interpreters, even if a reader panicked while holding them.
fn lock(interpreters: &Mutex<Interpreters>) -> MutexGuard<'_, Interpreters> {
    interpreters
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The sampled thread's stack pointer and the stack copy that starts there.
fn stack_of(sample: &Sample) -> (Option<u64>, &[u8]) {
    let sp = sample.user_regs.map(|r| r.sp());
    let copy = sample
        .user_stack
        .as_ref()
        .filter(|s| Some(s.start) == sp)
        .map_or(&[][..], |s| s.bytes.as_slice());
    (sp, copy)
}

/// The interpreters of the target's processes and the frames read so far.
#[derive(Default)]
pub(crate) struct PythonFrames {
    mode: PythonMode,
    /// Shared with the ptrace sampler's [`WhileStopped`] hook, which reads
    /// with the same readers (and code caches) on the same thread.
    interpreters: Arc<Mutex<Interpreters>>,
    pub frames: Vec<PythonFrame>,
    index: HashMap<(usize, Option<u32>), u32>,
    /// Samples whose Python frames were spliced in.
    pub spliced: u64,
    /// Samples marked stale.
    pub stale: u64,
    /// Samples whose Python frames were read while their thread was
    /// stopped for the sample (ptrace).
    pub read_stopped: u64,
    /// Why an interpreter could not be read (one line per process).
    pub warnings: Vec<String>,
}

impl PythonFrames {
    pub fn new(mode: PythonMode) -> PythonFrames {
        PythonFrames {
            mode,
            ..PythonFrames::default()
        }
    }

    /// Forgets what was found in `pid` (it exec'd or mapped a libpython).
    pub fn forget(&mut self, pid: Pid) {
        if self.mode == PythonMode::Auto {
            lock(&self.interpreters).remove(&pid);
        }
    }

    /// A new mapping of `pid`: if it may hold an interpreter (a `libpython3`
    /// or a `python` executable) other than the one found, what was found
    /// in `pid` is looked at again.
    pub fn mapped(&mut self, pid: Pid, mapping: &Mapping) {
        if !may_hold_interpreter(mapping) {
            return;
        }
        let MappingKind::File(path) = &mapping.kind else {
            return;
        };
        let known = matches!(lock(&self.interpreters).get(&pid), Some(Some(i)) if i.path == *path);
        if !known {
            self.forget(pid);
        }
    }

    /// Takes on an interpreter found in `pid` before recording started.
    pub fn adopt(&mut self, pid: Pid, interpreter: Interpreter) {
        if self.mode == PythonMode::Auto {
            lock(&self.interpreters).insert(pid, Some(interpreter));
        }
    }

    /// A hook for a sampler that stops threads to sample them (ptrace):
    /// it reads the Python frames of a thread of a process already known
    /// to hold an interpreter while the thread is still stopped, so the
    /// read is exact, and attaches them to the sample. Nothing else is done
    /// in the stop (a process not yet looked at is looked at afterwards, by
    /// [`Self::replacements`]). `None` with `--python off`.
    pub fn while_stopped(&self) -> Option<WhileStopped> {
        if self.mode == PythonMode::Off {
            return None;
        }
        let interpreters = Arc::clone(&self.interpreters);
        Some(Box::new(move |sample: &mut Sample| {
            let mut interpreters = lock(&interpreters);
            let Some(Some(interp)) = interpreters.get_mut(&sample.pid) else {
                return;
            };
            let (sp, copy) = stack_of(sample);
            let stack = interp.reader.stack_with(tid_of(sample.tid), sp, copy);
            sample.attached = Some(Arc::new(StoppedRead(stack)));
        }))
    }

    /// For a sample whose user frames are `user` (leaf first), the Python
    /// frames to put in place of each evaluation frame: (index in `user`,
    /// raw frames leaf first), in order. Empty when there is nothing to do.
    pub fn replacements(
        &mut self,
        sample: &Sample,
        user: &[FrameAddress],
        truncated: bool,
        out: &mut Vec<(usize, Vec<RawFrame>)>,
        store: &mut ModuleStore,
        facts: &mut dyn ProcessFacts,
    ) {
        out.clear();
        if self.mode == PythonMode::Off {
            return;
        }
        let mut interpreters = lock(&self.interpreters);
        let interp = interpreters.entry(sample.pid).or_insert_with(|| {
            let mut map = |p: &Path| image_of(sample.pid, p, store, facts);
            match stoke_python::detect(sample.pid.0 as i32, &mut map) {
                Ok(found) => found,
                // Gone before it could be looked at: nothing to say.
                Err(_) if !Path::new(&format!("/proc/{}", sample.pid)).exists() => None,
                Err(e) => {
                    self.warnings
                        .push(format!("Python frames of pid {} not read: {e}", sample.pid));
                    None
                }
            }
        });
        let Some(interp) = interp else { return };
        let evals: Vec<usize> = user
            .iter()
            .enumerate()
            .filter(|(_, a)| interp.reader.is_eval(a.lookup_address()))
            .map(|(i, _)| i)
            .collect();
        if evals.is_empty() {
            return;
        }
        let stopped = sample
            .attached
            .as_ref()
            .and_then(|a| a.downcast_ref::<StoppedRead>());
        let stack = match stopped {
            // Read while the thread was stopped for the sample.
            Some(StoppedRead(stack)) => {
                self.read_stopped += 1;
                stack.clone()
            }
            None => {
                let (sp, copy) = stack_of(sample);
                interp.reader.stack_with(tid_of(sample.tid), sp, copy)
            }
        };
        drop(interpreters);
        let groups = match stack {
            PyStack::Evals(groups) => as_sampled(groups, sample),
            _ => None,
        };
        let groups = match groups {
            Some(groups)
                if groups.len() == evals.len() || (truncated && groups.len() > evals.len()) =>
            {
                groups
            }
            _ => {
                self.stale += 1;
                out.extend(evals.iter().map(|&i| (i, vec![RawFrame::PythonStale])));
                return;
            }
        };
        self.spliced += 1;
        for (&i, group) in evals.iter().zip(&groups) {
            let frames = group
                .iter()
                .map(|f| RawFrame::Python(self.intern(&f.code, f.line)))
                .collect();
            out.push((i, frames));
        }
    }

    fn intern(&mut self, code: &Arc<Code>, line: Option<u32>) -> u32 {
        // The code object is held in `frames`, so its address stays unique.
        let key = (Arc::as_ptr(code) as usize, line);
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let i = self.frames.len() as u32;
        self.frames.push(PythonFrame {
            code: code.clone(),
            line,
        });
        self.index.insert(key, i);
        i
    }
}

/// Python frames read by [`PythonFrames::while_stopped`], attached to a sample.
struct StoppedRead(PyStack);

/// Whether a new mapping may be the interpreter (a `libpython3` or a
/// `python` executable).
fn may_hold_interpreter(mapping: &Mapping) -> bool {
    let MappingKind::File(path) = &mapping.kind else {
        return false;
    };
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("libpython3") || n.starts_with("python"))
}

/// The nice value the thread reading a likely CPython's frames asks for
/// (granted to root): on a busy machine a fifth of the reads came more than
/// 1 ms after their sample at nice 0, and a late read is more often stale.
pub(crate) const READER_NICE: i32 = -10;

/// What was learnt of a target before recording: whether it is likely a
/// CPython, and the interpreter of an attached process (found once, then
/// handed on to the recording rather than looked for again).
#[derive(Default)]
pub(crate) struct PythonTarget {
    /// Likely a CPython: the sampler wakes for every sample, so Python
    /// frames are read close to it.
    pub likely: bool,
    /// The interpreter of an attached process.
    pub found: Option<(Pid, Interpreter)>,
}

/// Whether a target is likely a CPython (an attached process holding one,
/// or a command named `python…`, or a script whose `#!` line names it).
pub(crate) fn looks_like_python(target: &Target, store: &mut ModuleStore) -> PythonTarget {
    match target {
        Target::Pid(pid) => {
            let mut facts = LiveProcfs;
            let mut map = |p: &Path| image_of(*pid, p, store, &mut facts);
            match stoke_python::detect(pid.0 as i32, &mut map) {
                Ok(Some(interpreter)) => PythonTarget {
                    likely: true,
                    found: Some((*pid, interpreter)),
                },
                _ => PythonTarget::default(),
            }
        }
        // Waking for every sample of every process would cost too much.
        Target::System { .. } => PythonTarget::default(),
        Target::Command(spec) => {
            let named = |s: &std::ffi::OsStr| {
                Path::new(s)
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("python"))
            };
            if named(&spec.program) {
                return PythonTarget {
                    likely: true,
                    found: None,
                };
            }
            // A script run directly: its `#!` line (read from the start
            // only; a FIFO or device named as the program is not read).
            let mut head = [0u8; 128];
            let read = stoke_model::file::open_regular(
                Path::new(&spec.program),
                stoke_model::file::Follow::Yes,
            )
            .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
            .unwrap_or(0);
            let line = head[..read].split(|&b| b == b'\n').next().unwrap_or(&[]);
            PythonTarget {
                likely: line.starts_with(b"#!") && line.windows(6).any(|w| w == b"python"),
                found: None,
            }
        }
    }
}

/// The bytes of a file process `pid` has mapped, by its path, from the
/// module store: opened once through the process-facts seam (the target's
/// root, checked against the mapping's device and inode, else its
/// `map_files` link; never blocking, regular files only), mapped, and
/// shared with the unwinder and the symbolizer.
fn image_of(
    pid: Pid,
    path: &Path,
    store: &mut ModuleStore,
    facts: &mut dyn ProcessFacts,
) -> std::io::Result<stoke_python::FileBytes> {
    let mappings = facts
        .executable_mappings(pid)
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
    let mapping = mappings
        .iter()
        .find(|m| matches!(&m.kind, MappingKind::File(p) if p == path))
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
    match store.get(pid, mapping, facts) {
        Ok(image) => Ok(image),
        Err(Unloaded::Unavailable(why)) => Err(match why.errno {
            Some(errno) => std::io::Error::from_raw_os_error(errno),
            None => std::io::Error::other(why.reason.to_string()),
        }),
        Err(Unloaded::NoFile) => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
    }
}

/// The name of a Python frame: `qualname (file.py:line)`, the file's name only.
pub(crate) fn frame_name(frame: &PythonFrame) -> String {
    let file = frame
        .code
        .file
        .rsplit('/')
        .next()
        .unwrap_or(&frame.code.file);
    match frame.line {
        Some(line) => format!("{} ({file}:{line})", frame.code.qualname),
        None => format!("{} ({file})", frame.code.qualname),
    }
}

fn tid_of(tid: Tid) -> u32 {
    tid.0
}

/// The part of a chain read after the sample that the sample was in: from
/// the innermost frame whose address is in a register or the copy of the
/// stack (the evaluation running a frame keeps it in a local) to the
/// outermost. Frames inside it were called after the sample, and are
/// dropped (with the evaluations they alone made up); `None` when no frame
/// is anchored. Without registers and stack there is nothing to check
/// against, and the chain is taken as read.
fn as_sampled(mut groups: Vec<Vec<PyFrame>>, sample: &Sample) -> Option<Vec<Vec<PyFrame>>> {
    let (Some(regs), Some(bytes)) = (&sample.user_regs, &sample.user_stack) else {
        return Some(groups);
    };
    if groups.iter().all(|g| g.is_empty()) {
        return Some(groups);
    }
    let anchored = |addr: u64| {
        // DWARF numbers 0 to 16: the general registers and the return address.
        (0..17).any(|r| regs.get_dwarf(r) == Some(addr))
            || bytes.bytes.chunks_exact(8).any(|w| w == addr.to_le_bytes())
    };
    let (g, f) = groups.iter().enumerate().find_map(|(g, group)| {
        group
            .iter()
            .position(|frame| anchored(frame.addr))
            .map(|f| (g, f))
    })?;
    groups.drain(..g);
    groups[0].drain(..f);
    Some(groups)
}
