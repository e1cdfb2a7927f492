//! What a binary gives a profiler: symbols, call frame information, DWARF,
//! frame pointers, a separate debug file. For `stoke doctor`; nothing here
//! is on the recording path.

use std::fs::File;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection, ObjectSymbol};

use crate::debuginfo::DebugSearch;
use crate::elf::ElfImage;
use crate::symtab::SymbolSource;

/// How many functions the frame-pointer heuristic looks at, at most.
const PROLOGUES_SAMPLED: usize = 400;

/// What one binary offers for unwinding and naming.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleFacts {
    /// Function symbols in `.symtab` (every function, static ones too).
    pub symtab_functions: usize,
    /// Function symbols in `.dynsym` (exported ones only).
    pub dynsym_functions: usize,
    /// `.gnu_debugdata` (MiniDebugInfo: a compressed `.symtab`).
    pub mini_debug_info: bool,
    /// `.eh_frame` call frame information (what DWARF unwinding needs).
    pub eh_frame: bool,
    /// `.debug_frame` call frame information.
    pub debug_frame: bool,
    /// DWARF debug info in the binary itself (inline frames).
    pub dwarf_info: bool,
    /// DWARF line tables in the binary itself (`--lines`).
    pub dwarf_lines: bool,
    /// Of the functions looked at, how many begin by setting up a frame
    /// pointer (`push %rbp; mov %rsp,%rbp`), and how many were looked at.
    pub frame_pointer_prologues: (usize, usize),
    /// The GNU build-id, as hex.
    pub build_id: Option<String>,
    /// The `.gnu_debuglink` file name.
    pub debuglink: Option<PathBuf>,
    /// A separate debug file with DWARF that provably belongs to it.
    pub debug_file: Option<PathBuf>,
    /// A Go binary (`.go.buildinfo` or `.gopclntab`).
    pub go: bool,
    /// It exports `_PyRuntime`: CPython's interpreter is in it.
    pub python_runtime: bool,
}

impl ModuleFacts {
    /// Whether most functions set up a frame pointer (a heuristic on their
    /// first instructions; `None` when no function could be looked at).
    pub fn has_frame_pointers(&self) -> Option<bool> {
        let (with, of) = self.frame_pointer_prologues;
        (of > 0).then(|| with * 2 >= of)
    }

    /// Whether functions get names from the binary itself (or its
    /// MiniDebugInfo), static ones included.
    pub fn names_every_function(&self) -> bool {
        self.symtab_functions > 0 || self.mini_debug_info || self.debug_file.is_some()
    }
}

/// Looks at a binary the caller opened. `path` is the path the target
/// names (it locates debug files), `root` the target's root when the file
/// was opened through `/proc/PID/root`.
pub fn inspect_module(
    file: &File,
    path: &Path,
    root: Option<&Path>,
    debug_dirs: &[PathBuf],
) -> Result<ModuleFacts, String> {
    let image = ElfImage::open_file(path, file).map_err(|e| e.to_string())?;
    let obj = object::File::parse(&*image.bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let has = |name: &str| {
        obj.section_by_name(name)
            .is_some_and(|s| s.size() > 0 && s.file_range().is_some())
    };
    let symtab = image.symbols(SymbolSource::Symtab);
    let dynsym = image.symbols(SymbolSource::Dynsym);
    let python_runtime = obj
        .dynamic_symbols()
        .chain(obj.symbols())
        .any(|s| s.name() == Ok("_PyRuntime") && !s.is_undefined());
    let starts: Vec<u64> = symtab
        .iter()
        .chain(dynsym.iter())
        .filter(|s| s.is_function && s.size > 0)
        .map(|s| s.address)
        .collect();
    let frame_pointer_prologues = prologue_count(&image, &starts);
    let search = DebugSearch {
        opened_path: path,
        target_path: path,
        root,
        debug_dirs,
        open: crate::open_file,
    };
    let debug_file = search
        .find(&image, image.build_id.as_deref())
        .map(|debug| debug.path);
    Ok(ModuleFacts {
        symtab_functions: symtab.iter().filter(|s| s.is_function).count(),
        dynsym_functions: dynsym.iter().filter(|s| s.is_function).count(),
        mini_debug_info: has(".gnu_debugdata"),
        eh_frame: has(".eh_frame"),
        debug_frame: has(".debug_frame"),
        dwarf_info: image.has_dwarf,
        dwarf_lines: has(".debug_line") || has(".zdebug_line"),
        frame_pointer_prologues,
        build_id: image
            .build_id
            .as_ref()
            .map(|id| id.iter().map(|b| format!("{b:02x}")).collect()),
        debuglink: image.debuglink.as_ref().map(|(name, _)| name.clone()),
        debug_file,
        go: has(".go.buildinfo") || has(".gopclntab"),
        python_runtime,
    })
}

/// How many of (up to [`PROLOGUES_SAMPLED`] of) the functions starting at
/// `starts` (ELF addresses) begin with an x86-64 frame-pointer prologue,
/// and how many were looked at.
fn prologue_count(image: &ElfImage, starts: &[u64]) -> (usize, usize) {
    let mut starts = starts.to_vec();
    starts.sort_unstable();
    starts.dedup();
    let step = (starts.len() / PROLOGUES_SAMPLED).max(1);
    let mut with = 0;
    let mut of = 0;
    for &start in starts.iter().step_by(step) {
        let Some(offset) = stoke_model::layout::svma_to_file_offset(&image.segments, start) else {
            continue;
        };
        let Some(code) = usize::try_from(offset)
            .ok()
            .and_then(|o| image.bytes.get(o..o.checked_add(16)?))
        else {
            continue;
        };
        of += 1;
        with += usize::from(sets_up_frame_pointer(code));
    }
    (with, of)
}

/// Whether code begins with `push %rbp` (after an optional `endbr64`) and
/// sets `%rbp` from `%rsp` within its next few instructions (gcc schedules
/// other moves in between). Without frame pointers `%rbp` is an ordinary
/// callee-saved register: pushed, but not loaded from `%rsp`.
fn sets_up_frame_pointer(code: &[u8]) -> bool {
    let code = code.strip_prefix(&[0xf3, 0x0f, 0x1e, 0xfa]).unwrap_or(code);
    let Some(rest) = code.strip_prefix(&[0x55]) else {
        return false;
    };
    // 48 89 e5 / 48 8b ec: mov %rsp,%rbp.
    rest.windows(3)
        .take(10)
        .any(|w| w == [0x48, 0x89, 0xe5] || w == [0x48, 0x8b, 0xec])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_pointer_prologues_are_recognised() {
        assert!(sets_up_frame_pointer(&[0x55, 0x48, 0x89, 0xe5, 0x90]));
        assert!(sets_up_frame_pointer(&[
            0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0x48, 0x89, 0xe5
        ]));
        // push %rbp; mov %rdi,%rax; mov %rsp,%rbp (gcc -O2).
        assert!(sets_up_frame_pointer(&[
            0x55, 0x48, 0x89, 0xf8, 0x48, 0x89, 0xe5
        ]));
        // push %rbp; push %rbx: %rbp saved as a plain register.
        assert!(!sets_up_frame_pointer(&[
            0x55, 0x53, 0x48, 0x83, 0xec, 0x08
        ]));
        // sub $0x18,%rsp: no frame pointer.
        assert!(!sets_up_frame_pointer(&[0x48, 0x83, 0xec, 0x18]));
        assert!(!sets_up_frame_pointer(&[0x55]));
    }

    #[test]
    fn stoke_tests_binary_can_be_inspected() {
        let me = std::env::current_exe().unwrap();
        let file = File::open(&me).unwrap();
        let facts = inspect_module(&file, &me, None, &[]).unwrap();
        assert!(facts.eh_frame, "{facts:?}");
        assert!(facts.symtab_functions > 100, "{facts:?}");
        assert!(!facts.go && !facts.python_runtime);
    }
}
