//! DWARF unwinding of sampled user stacks, with unwind tables loaded once per
//! module and a per-process table of where each module is mapped.

use std::collections::HashMap;
use std::sync::Arc;

use stoke_model::{FrameAddress, Mapping, MappingKind, ModuleKey, Pid, Registers};
use stoke_sample::procfs::{self, ModuleOpenError};
use stoke_sample::StackBytes;
use stoke_unwind::{
    Code, ModuleRef, ModuleUnwindInfo, StackEnd, TruncationReason, UnwindMode, Unwinder,
};

use crate::processes::Process;
use crate::sys::mmap::map_file;
use crate::warning::Warning;

/// Frames deeper than this are cut (`[truncated: too deep]`).
const MAX_FRAMES: usize = 4096;

struct Entry {
    start: u64,
    end: u64,
    info: Arc<ModuleUnwindInfo>,
    bias: u64,
}

/// A mapping whose module could not be loaded, and why.
struct Failed {
    start: u64,
    end: u64,
    reason: TruncationReason,
}

struct ProcessTable {
    generation: u64,
    entries: Vec<Entry>,
    /// Executable memory without unwind tables (JIT code), sorted.
    jit: Vec<(u64, u64)>,
    /// Mappings left out of `entries`, sorted: a stack that stops in one
    /// says why instead of "address outside any module".
    failed: Vec<Failed>,
}

/// Why a module's unwind tables are missing: the stacks' reason, and the
/// warning told once.
#[derive(Clone)]
struct LoadFailure {
    reason: TruncationReason,
    warning: Warning,
}

/// Unwinds user stacks from registers and stack copies.
pub(crate) struct DwarfUnwinder {
    mode: UnwindMode,
    unwinder: Unwinder,
    modules: HashMap<ModuleKey, Result<Arc<ModuleUnwindInfo>, Option<LoadFailure>>>,
    tables: HashMap<Pid, ProcessTable>,
}

impl DwarfUnwinder {
    pub fn new(mode: UnwindMode) -> DwarfUnwinder {
        DwarfUnwinder {
            mode,
            unwinder: Unwinder::new(),
            modules: HashMap::new(),
            tables: HashMap::new(),
        }
    }

    /// Whether user stacks are unwound here (else the kernel's frame-pointer
    /// callchain is used).
    pub fn enabled(&self) -> bool {
        self.mode != UnwindMode::FramePointer
    }

    /// Unwinds one sample's user stack into `out`, leaf first.
    pub fn unwind(
        &mut self,
        pid: Pid,
        process: &mut Process,
        regs: &Registers,
        stack: &StackBytes,
        out: &mut Vec<FrameAddress>,
    ) -> StackEnd {
        self.refresh_table(pid, process);
        let Some(table) = self.tables.get(&pid) else {
            return StackEnd::Truncated(stoke_unwind::TruncationReason::NoModule);
        };
        let entries = &table.entries;
        let find_module = |addr: u64| {
            let i = entries.partition_point(|e| e.start <= addr);
            let e = entries.get(i.checked_sub(1)?)?;
            (addr < e.end).then_some(ModuleRef {
                info: &e.info,
                bias: e.bias,
            })
        };
        let mut find_code = |addr: u64| match find_module(addr) {
            Some(module) => Some(Code::Module(module)),
            None => in_ranges(&table.jit, addr).then_some(Code::Jit),
        };
        let mut read_stack = |addr: u64| stack.read_u64(addr).ok_or(());
        let first = out.len();
        let end = self.unwinder.unwind_code(
            regs,
            self.mode,
            &mut find_code,
            &mut read_stack,
            MAX_FRAMES,
            out,
        );
        match (end, out[first..].last()) {
            (StackEnd::Truncated(TruncationReason::NoModule), Some(last)) => {
                let addr = last.lookup_address();
                let failed = &table.failed;
                let i = failed.partition_point(|f| f.start <= addr);
                match i.checked_sub(1).map(|i| &failed[i]) {
                    Some(f) if addr < f.end => StackEnd::Truncated(f.reason),
                    _ => end,
                }
            }
            _ => end,
        }
    }

    /// One warning per module whose unwind tables could not be loaded.
    pub fn warnings(&self) -> impl Iterator<Item = Warning> + '_ {
        self.modules
            .values()
            .filter_map(|m| m.as_ref().err()?.as_ref().map(|f| f.warning.clone()))
    }

    /// Drops an exited process's table (its pid may be reused).
    pub fn forget(&mut self, pid: Pid) {
        self.tables.remove(&pid);
    }

    /// Rebuilds a process's table when its mappings changed.
    fn refresh_table(&mut self, pid: Pid, process: &Process) {
        if let Some(t) = self.tables.get(&pid) {
            if t.generation == process.generation {
                return;
            }
        }
        let mut entries = Vec::new();
        let mut failed = Vec::new();
        for mapping in &process.mappings {
            let info = match self.module_info(pid, mapping) {
                Ok(info) => info,
                Err(Some(failure)) => {
                    failed.push(Failed {
                        start: mapping.start.0,
                        end: mapping.end.0,
                        reason: failure.reason,
                    });
                    continue;
                }
                Err(None) => continue,
            };
            let Some(svma) = info.file_offset_to_svma(mapping.file_offset) else {
                continue;
            };
            entries.push(Entry {
                start: mapping.start.0,
                end: mapping.end.0,
                bias: mapping.start.0.wrapping_sub(svma),
                info,
            });
        }
        failed.sort_by_key(|f| f.start);
        let table = ProcessTable {
            generation: process.generation,
            jit: jit_ranges(&process.mappings, &entries, &failed),
            entries,
            failed,
        };
        self.tables.insert(pid, table);
    }

    /// A mapping's unwind tables, loaded once per module; `Err(None)` for
    /// mappings that have none to load (anonymous memory).
    fn module_info(
        &mut self,
        pid: Pid,
        mapping: &Mapping,
    ) -> Result<Arc<ModuleUnwindInfo>, Option<LoadFailure>> {
        let key = mapping.module_key();
        if let Some(cached) = self.modules.get(&key) {
            return cached.clone();
        }
        let loaded = load_module(pid, mapping).map(Arc::new);
        self.modules.insert(key, loaded.clone());
        loaded
    }
}

/// The executable mappings that are no module with unwind tables: anonymous
/// JIT code (V8, HotSpot, LuaJIT, CPython's `-X perf` trampolines), or code in
/// a file that is no ELF (a memfd a JIT maps twice). A module that could not
/// be read or is not the one mapped is not JIT: its stacks say so. Sorted, as
/// mappings are.
fn jit_ranges(mappings: &[Mapping], modules: &[Entry], failed: &[Failed]) -> Vec<(u64, u64)> {
    mappings
        .iter()
        .filter(|m| {
            m.executable
                && modules
                    .binary_search_by_key(&m.start.0, |e| e.start)
                    .is_err()
                && failed
                    .binary_search_by_key(&m.start.0, |f| f.start)
                    .is_err()
        })
        .map(|m| (m.start.0, m.end.0))
        .collect()
}

/// Whether `addr` lies in one of the sorted, disjoint `ranges`.
fn in_ranges(ranges: &[(u64, u64)], addr: u64) -> bool {
    let i = ranges.partition_point(|&(start, _)| start <= addr);
    i.checked_sub(1)
        .and_then(|i| ranges.get(i))
        .is_some_and(|&(_, end)| addr < end)
}

/// Reads a module's unwind tables: its file (through the target's root, or
/// its map_files link when the binary was deleted or replaced while it
/// runs), or for the vDSO the kernel's image, which is the same in every
/// process.
fn load_module(pid: Pid, mapping: &Mapping) -> Result<ModuleUnwindInfo, Option<LoadFailure>> {
    let unreadable = |path: &std::path::Path, errno| LoadFailure {
        reason: TruncationReason::ModuleUnreadable,
        warning: Warning::ModuleUnreadable {
            path: path.to_path_buf(),
            errno,
        },
    };
    let data: Arc<dyn AsRef<[u8]> + Send + Sync> = match &mapping.kind {
        MappingKind::File(path) => {
            let file = procfs::open_mapped_file(pid, mapping).map_err(|e| match e {
                ModuleOpenError::Mismatch { path } => Some(LoadFailure {
                    reason: TruncationReason::ModuleMismatch,
                    warning: Warning::ModuleMismatch { path },
                }),
                e @ ModuleOpenError::Unreadable { .. } => Some(unreadable(path, e.errno())),
                ModuleOpenError::NotAFile => None,
            })?;
            let map = map_file(&file).map_err(|e| Some(unreadable(path, e.raw_os_error())))?;
            let info =
                ModuleUnwindInfo::parse(Arc::new(map)).map_err(|_| Some(unreadable(path, None)))?;
            // A mapping known by its build-id (perf's MMAP2 records give it
            // in place of the inode) is checked by it.
            if let (Some(wanted), Some(found)) = (&mapping.build_id, info.build_id()) {
                if wanted.0 != found {
                    return Err(Some(LoadFailure {
                        reason: TruncationReason::ModuleMismatch,
                        warning: Warning::ModuleMismatch { path: path.clone() },
                    }));
                }
            }
            return Ok(info);
        }
        // The kernel maps the same image into every process: stoke's own.
        MappingKind::Vdso => Arc::new(stoke_symbolize::own_vdso_image().map_err(|_| None)?),
        _ => return Err(None),
    };
    ModuleUnwindInfo::parse(data).map_err(|_| None)
}
