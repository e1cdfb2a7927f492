//! DWARF unwinding of sampled user stacks, with unwind tables loaded once per
//! module and a per-process table of where each module is mapped.

use std::collections::HashMap;
use std::sync::Arc;

use stoke_model::{FrameAddress, Mapping, MappingKind, ModuleKey, Pid, Registers};
use stoke_sample::StackBytes;
use stoke_unwind::{
    Code, ModuleRef, ModuleUnwindInfo, StackEnd, TruncationReason, UnwindMode, Unwinder,
};

use crate::facts::ProcessFacts;
use crate::processes::Process;
use crate::store::{ModuleStore, Unloaded};
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

    /// Unwinds one sample's user stack into `out`, leaf first. Modules are
    /// read from `store` (through `facts`) when first met.
    #[allow(clippy::too_many_arguments)]
    pub fn unwind(
        &mut self,
        pid: Pid,
        process: &mut Process,
        regs: &Registers,
        stack: &StackBytes,
        out: &mut Vec<FrameAddress>,
        store: &mut ModuleStore,
        facts: &mut dyn ProcessFacts,
    ) -> StackEnd {
        self.refresh_table(pid, process, store, facts);
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
            // Less was copied than asked for: the kernel met memory it
            // could not read, and a larger copy would not help.
            (StackEnd::Truncated(TruncationReason::StackCopyExhausted), _) if !stack.hit_limit => {
                StackEnd::Truncated(TruncationReason::StackCopyCut)
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
    fn refresh_table(
        &mut self,
        pid: Pid,
        process: &Process,
        store: &mut ModuleStore,
        facts: &mut dyn ProcessFacts,
    ) {
        if let Some(t) = self.tables.get(&pid) {
            if t.generation == process.generation {
                return;
            }
        }
        let mut entries = Vec::new();
        let mut failed = Vec::new();
        for mapping in &process.mappings {
            let info = match self.module_info(pid, mapping, store, facts) {
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
        store: &mut ModuleStore,
        facts: &mut dyn ProcessFacts,
    ) -> Result<Arc<ModuleUnwindInfo>, Option<LoadFailure>> {
        let key = mapping.module_key();
        if let Some(cached) = self.modules.get(&key) {
            return cached.clone();
        }
        let loaded = load_module(store.get(pid, mapping, facts), mapping).map(Arc::new);
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

/// Parses a module's unwind tables from the store's image of it (the file,
/// or for the vDSO the kernel's image, the same in every process).
fn load_module(
    loaded: crate::store::Loaded,
    mapping: &Mapping,
) -> Result<ModuleUnwindInfo, Option<LoadFailure>> {
    let path = match &mapping.kind {
        MappingKind::File(path) => Some(path),
        _ => None,
    };
    let image = match (loaded, path) {
        (Ok(image), _) => image,
        (Err(Unloaded::Unavailable(why)), Some(path)) => {
            return Err(Some(LoadFailure {
                reason: why.reason,
                warning: Warning::unavailable(path, why),
            }))
        }
        (Err(_), _) => return Err(None),
    };
    ModuleUnwindInfo::parse(image).map_err(|_| {
        path.map(|path| LoadFailure {
            reason: TruncationReason::ModuleUnreadable,
            warning: Warning::ModuleUnreadable {
                path: path.clone(),
                errno: None,
            },
        })
    })
}
