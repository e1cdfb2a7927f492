//! Addresses to names.
//!
//! Design constraints:
//! - Batch and once: callers hand every unique address of a module in one
//!   call; each module is opened and parsed once and cached by its key.
//! - A miss is a value ([`Symbolized::Unknown`] with a reason), never an error:
//!   the caller renders it as `module+0xoffset`.
//! - Code no symbol names (static functions of stripped libraries) is still
//!   attributed to its function: [`Symbolized::Unnamed`] gives the start of
//!   the function whose `.eh_frame` FDE covers the address, so every sample
//!   of that function gets the same `module+0xSTART` name.
//! - The vDSO is read from stoke's own memory ([`Symbolizer::symbolize_vdso`]):
//!   the kernel maps one image into every process of an ABI.
//! - A target's binaries are not opened here: the caller's module store
//!   opens each one (through `/proc/PID/root` or `/proc/PID/map_files`,
//!   checked to be the mapped file) and hands its mapping
//!   ([`ModuleRequest::map`]), the same bytes the unwinder read. Separate
//!   debug files are looked up beside it and under the target's root
//!   ([`ModuleRequest::root`]) and opened with the one checked opener
//!   ([`stoke_model::file::open_regular`]) unless the caller installs
//!   another ([`Symbolizer::open_files_with`]).
//! - Addresses map to the ELF's own addresses by the one layout rule the
//!   unwinder uses too ([`stoke_model::layout`]).
//! - Addresses are file offsets (`avma - mapping start + pgoff`).
//! - Debug info is used only when it provably belongs to the binary (same
//!   build-id, or the debuglink's CRC32).
//! - Perf maps are opened without following symlinks and only when owned by
//!   root or the target's owner; a refusal is a value plus a warning. They
//!   are read up to a bounded size ([`Symbolizer::symbolize_jit`]).
//! - Nothing a caller waits for runs at idle priority: the kernel-symbol
//!   read-ahead ([`Symbolizer::prefetch_kernel`]) is an idle-priority child
//!   process, killed and not waited for when it has not finished.
//!
//! Left to the caller: rendering misses, marking kernel frames (`_[k]`), and
//! which mapping an absolute address belongs to.

mod cfi;
mod debuginfo;
mod demangle;
mod dwarf;
mod elf;
mod inspect;
mod jit;
mod kernel;
mod module;
mod plt;
mod readahead;
mod symtab;
mod sys;
mod vdso;

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use stoke_model::{BuildId, FrameAddress, Pid};

pub use crate::inspect::{inspect_module, ModuleFacts};
use crate::jit::{JitMap, MapError, Stamp};
use crate::kernel::Kernel;
use crate::module::{Module, ModuleSource};
pub use crate::sys::{map_file, release_pages};
pub use crate::vdso::own_image as own_vdso_image;

/// Options of a [`Symbolizer`].
#[derive(Clone, Debug)]
pub struct SymbolizeOptions {
    /// Demangle Rust and C++ names.
    pub demangle: bool,
    /// Drop Rust legacy hashes (`::h0123…`) from demangled names.
    pub strip_rust_hash: bool,
    /// Expand inlined functions into frames of their own.
    pub inlines: bool,
    /// Extra folders to look for separate debug info in.
    pub debug_dirs: Vec<PathBuf>,
    /// Also read the DWARF of separate debug files (distribution `-dbg`
    /// packages), for inline frames and lines in system libraries. Their
    /// symbol tables, which name every function, are always used. Off by
    /// default: such files are large and compressed (libc's costs about
    /// 0.2 s and 30 MB to decompress) for detail few profiles need. DWARF
    /// inside a binary itself is always read.
    pub separate_debug_dwarf: bool,
    /// The caller wants source lines (`func (file.c:42)`): reads the DWARF
    /// of separate debug files too, as `separate_debug_dwarf` does. Lines
    /// are reported in [`SymbolFrame`] whenever DWARF has them; this only
    /// decides how much DWARF is read.
    pub lines: bool,
}

impl SymbolizeOptions {
    /// Whether the DWARF of separate debug files is read.
    pub(crate) fn reads_separate_dwarf(&self) -> bool {
        self.separate_debug_dwarf || self.lines
    }
}

impl Default for SymbolizeOptions {
    fn default() -> Self {
        SymbolizeOptions {
            demangle: true,
            strip_rust_hash: true,
            inlines: true,
            debug_dirs: Vec::new(),
            separate_debug_dwarf: false,
            lines: false,
        }
    }
}

/// One function frame found for an address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SymbolFrame {
    /// The (demangled) function name.
    pub name: String,
    /// Source file, if debug info has it.
    pub file: Option<String>,
    /// Source line, if debug info has it.
    pub line: Option<u32>,
    /// Whether this frame was inlined into the one before it.
    pub inlined: bool,
}

/// Why an address got no name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum UnknownReason {
    /// The file could not be opened (gone, no permission).
    FileUnavailable(String),
    /// The file is not a readable ELF file.
    BadElf(String),
    /// No symbol or debug info covers the address.
    NoSymbol,
    /// Kernel symbols are hidden (`kptr_restrict`) or unreadable.
    KernelSymbolsHidden,
}

/// The outcome for one address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Symbolized {
    /// The frames at the address, outermost first: the real function, then
    /// each inlined callee down to the innermost.
    Found(Vec<SymbolFrame>),
    /// No symbol names the address, but the module's call frame information
    /// (`.eh_frame`) shows which function holds it: a static function of a
    /// stripped module. Render it as `{module}+{function_offset:#x}`; every
    /// address in the function gets the same offset, so its samples merge.
    Unnamed {
        /// The function's start as a file offset (the convention addresses
        /// are given in).
        function_offset: u64,
    },
    /// No name.
    Unknown(UnknownReason),
}

/// How the symbolizer opens a file by path: debug files, and binaries
/// given by path only ([`Symbolizer::open_files_with`]).
pub type FileOpener = fn(&Path) -> std::io::Result<File>;

/// The default [`FileOpener`]: the checked opener every file a target
/// names goes through ([`stoke_model::file::open_regular`]: non-blocking,
/// regular files only), following symlinks (`/usr/lib/debug/.build-id/`
/// is made of them).
pub(crate) fn open_file(path: &Path) -> std::io::Result<File> {
    stoke_model::file::open_regular(path, stoke_model::file::Follow::Yes)
}

/// A module to symbolize addresses in.
#[derive(Clone, Debug)]
pub struct ModuleRequest<'a> {
    /// The path as the target sees it (from its maps): names the module in
    /// messages and locates its debug files.
    pub path: &'a Path,
    /// The build-id the mapping had, when known, to check debug files.
    pub build_id: Option<&'a BuildId>,
    /// The module's bytes, mapped by the caller's module store, which
    /// opened the file and checked it is the one mapped. `None`: `path` is
    /// opened here (a file of this host that stoke's user names, as tests
    /// and tools do), never a target's.
    pub map: Option<Arc<Mmap>>,
    /// The target's root (`/proc/PID/root`), where debug files are looked
    /// up too, and whose `path` the binary is.
    pub root: Option<&'a Path>,
}

/// What identifies one version of a file on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FileId {
    dev: u64,
    inode: u64,
    size: u64,
    mtime_ns: i128,
}

/// Turns addresses into names; caches parsed modules.
pub struct Symbolizer {
    options: SymbolizeOptions,
    /// Loaded modules (or why they could not be), indexed by the maps below.
    modules: Vec<Result<Module, UnknownReason>>,
    by_file: HashMap<FileId, usize>,
    /// Modules the caller mapped, by the mapping's address (the `Arc` kept,
    /// so the address stays theirs).
    by_map: HashMap<usize, (Arc<Mmap>, usize)>,
    open: FileOpener,
    by_build_id: HashMap<Vec<u8>, usize>,
    kernel: Kernel,
    /// stoke's own vDSO, loaded on first use.
    vdso: Option<Result<Module, UnknownReason>>,
    jit: HashMap<PathBuf, (Stamp, JitMap)>,
    /// Owners of the targets, remembered while they ran ([`Symbolizer::remember_owner`]).
    target_owners: Vec<u32>,
    warnings: Vec<String>,
    /// stoke's own build-id, once asked for: its binary is named by symbol
    /// tables only ([`Symbolizer::name_self_by_symbols`]).
    own_build_id: Option<Option<Vec<u8>>>,
    name_self_by_symbols: bool,
}

impl Symbolizer {
    /// A symbolizer with these options.
    pub fn new(options: SymbolizeOptions) -> Symbolizer {
        Symbolizer {
            options,
            modules: Vec::new(),
            by_file: HashMap::new(),
            by_map: HashMap::new(),
            open: open_file,
            by_build_id: HashMap::new(),
            kernel: Kernel::new(),
            vdso: None,
            jit: HashMap::new(),
            target_owners: Vec::new(),
            warnings: Vec::new(),
            own_build_id: None,
            name_self_by_symbols: false,
        }
    }

    /// Opens debug files, and binaries given by path only, with `open` (a
    /// recording gives its non-blocking, regular-files-only opener).
    pub fn open_files_with(&mut self, open: FileOpener) {
        self.open = open;
    }

    /// The options this symbolizer was made with.
    pub fn options(&self) -> &SymbolizeOptions {
        &self.options
    }

    /// Symbolizes file offsets in one module. Returns one result per address,
    /// in order. Return addresses are looked up at `offset - 1`.
    pub fn symbolize_module(
        &mut self,
        module: &ModuleRequest<'_>,
        addresses: &[FrameAddress],
    ) -> Vec<Symbolized> {
        let index = match self.module_index(module) {
            Ok(index) => index,
            Err(reason) => return vec![Symbolized::Unknown(reason); addresses.len()],
        };
        let loaded = match &self.modules[index] {
            Ok(loaded) => loaded,
            Err(reason) => return vec![Symbolized::Unknown(reason.clone()); addresses.len()],
        };
        if let Err(reason) = check_build_id(module.path, module.build_id, loaded) {
            self.warn(reason.clone());
            return vec![
                Symbolized::Unknown(UnknownReason::FileUnavailable(reason));
                addresses.len()
            ];
        }
        lookup_all(loaded, addresses, &self.options)
    }

    /// Symbolizes file offsets in the vDSO of a process (offsets within the
    /// image: `avma - mapping start`), with stoke's own copy of it.
    ///
    /// Names drop the vDSO's `__vdso_` prefix (`__vdso_clock_gettime` reads
    /// `clock_gettime`, as libc calls it). The target is assumed to run the
    /// same vDSO as stoke (same kernel and ABI); give the mapping's build-id,
    /// when known, to have that checked.
    pub fn symbolize_vdso(
        &mut self,
        build_id: Option<&BuildId>,
        addresses: &[FrameAddress],
    ) -> Vec<Symbolized> {
        let loaded = match self.vdso.get_or_insert_with(vdso::load_own) {
            Ok(loaded) => loaded,
            Err(reason) => return vec![Symbolized::Unknown(reason.clone()); addresses.len()],
        };
        if let Err(reason) = check_build_id(Path::new("[vdso]"), build_id, loaded) {
            self.warn(reason.clone());
            return vec![
                Symbolized::Unknown(UnknownReason::FileUnavailable(reason));
                addresses.len()
            ];
        }
        let mut results = lookup_all(loaded, addresses, &self.options);
        for result in &mut results {
            if let Symbolized::Found(frames) = result {
                for frame in frames {
                    frame.name = vdso::display_name(&frame.name).to_string();
                }
            }
        }
        results
    }

    /// Starts reading `/proc/kallsyms` ahead, in a child process at idle
    /// priority (parsed by a thread as it arrives), so that the ~70 ms it
    /// takes overlap recording on a spare CPU instead of delaying the output.
    /// Never waited for: if it has not finished when
    /// [`Symbolizer::symbolize_kernel`] needs it (every CPU was busy), the
    /// child is killed and the symbols are read there and then.
    pub fn prefetch_kernel(&mut self) {
        self.kernel.prefetch();
    }

    /// Symbolizes kernel addresses with `/proc/kallsyms`.
    pub fn symbolize_kernel(&mut self, addresses: &[u64]) -> Vec<Symbolized> {
        if addresses.is_empty() {
            return Vec::new();
        }
        let symbols = match self.kernel.symbols() {
            Ok(symbols) => symbols,
            Err(reason) => {
                let reason = reason.clone();
                if reason == UnknownReason::KernelSymbolsHidden {
                    self.warn(kernel::hidden_message(kernel::kptr_restrict()));
                }
                return vec![Symbolized::Unknown(reason); addresses.len()];
            }
        };
        addresses
            .iter()
            .map(|&address| match symbols.lookup(address) {
                Some(name) => Symbolized::Found(vec![SymbolFrame {
                    name: name.to_string(),
                    file: None,
                    line: None,
                    inlined: false,
                }]),
                None => Symbolized::Unknown(UnknownReason::NoSymbol),
            })
            .collect()
    }

    /// Symbolizes addresses in anonymous executable memory of a process with
    /// its JIT map (`/tmp/perf-PID.map`), if it has one.
    ///
    /// The map is refused (every address `Unknown(FileUnavailable)`, and a
    /// warning recorded) if it is a symlink, not a regular file, or owned by
    /// anyone but root, the target's owner or the user stoke runs as. The
    /// owner is looked up while `pid` lives; for a map read after the process
    /// exited, tell the symbolizer its owner before with
    /// [`Symbolizer::remember_owner`]. At most 64 MiB of a map are read
    /// (with a warning saying what was left out).
    pub fn symbolize_jit(&mut self, pid: Pid, addresses: &[u64]) -> Vec<Symbolized> {
        let trusted = jit::trusted_uids(pid, &self.target_owners);
        let mut refusal = None;
        for path in jit::map_paths(pid) {
            match self.load_jit_map(&path, &trusted) {
                Ok(map) => {
                    return addresses
                        .iter()
                        .map(|&address| match map.lookup(address) {
                            Some(name) => Symbolized::Found(vec![SymbolFrame {
                                name: name.to_string(),
                                file: None,
                                line: None,
                                inlined: false,
                            }]),
                            None => Symbolized::Unknown(UnknownReason::NoSymbol),
                        })
                        .collect();
                }
                Err(MapError::Missing(_)) => {}
                Err(e) => refusal = refusal.or(Some(e.to_string())),
            }
        }
        let reason = match refusal {
            Some(message) => {
                self.warn(message.clone());
                UnknownReason::FileUnavailable(message)
            }
            None => UnknownReason::NoSymbol,
        };
        vec![Symbolized::Unknown(reason); addresses.len()]
    }

    /// Remembers the owner (uid) of a target while it runs, so that its perf
    /// map, and those of its children, are still trusted when they are read
    /// after it exited. Does nothing if `pid` is gone already.
    pub fn remember_owner(&mut self, pid: Pid) {
        if let Some(uid) = jit::owner(pid) {
            if !self.target_owners.contains(&uid) {
                self.target_owners.push(uid);
            }
        }
    }

    /// Problems met so far that the user should hear about once each
    /// (refused perf maps, replaced binaries, broken debug info).
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    /// Names stoke's own executable (met in a whole-machine recording) by
    /// its symbol table only: its DWARF, line tables for all of stoke, would
    /// take some 30 MB of file pages and 25 MB of parsed tables to read for
    /// the few frames of the profiler itself.
    pub fn name_self_by_symbols(&mut self) {
        self.name_self_by_symbols = true;
    }

    /// Stoke's own build-id, when its executable is to be named by symbols
    /// only. A module is compared by the build-id of the file opened, not
    /// only the one its mapping reported: a process that predates the
    /// recording (stoke itself) is known from /proc maps, without one.
    fn own_build_id(&mut self) -> Option<Vec<u8>> {
        if !self.name_self_by_symbols {
            return None;
        }
        let own = self.own_build_id.get_or_insert_with(|| {
            let path = Path::new("/proc/self/exe");
            let file = std::fs::File::open(path).ok()?;
            elf::ElfImage::open_file(path, &file).ok()?.build_id
        });
        own.clone()
    }

    /// Drops every parsed module (symbol tables, debug info, the debug
    /// files it mapped), keeping kernel and JIT symbols. For a caller that
    /// names each module once, in turn: memory then peaks at the largest
    /// module, not at the sum of all. A module asked for again is parsed
    /// again.
    pub fn forget_modules(&mut self) {
        self.modules.clear();
        self.by_file.clear();
        self.by_map.clear();
        self.by_build_id.clear();
    }

    fn warn(&mut self, message: String) {
        if !self.warnings.contains(&message) {
            self.warnings.push(message);
        }
    }

    /// Opens (or re-reads, if it changed) a perf map.
    fn load_jit_map(&mut self, path: &Path, trusted: &[u32]) -> Result<&JitMap, MapError> {
        let (file, stamp) = jit::open_map(path, trusted)?;
        let fresh = self.jit.get(path).is_some_and(|(s, _)| *s == stamp);
        if !fresh {
            let (map, warning) = jit::read_map(file, path, stamp.size(), jit::Limits::default())?;
            if let Some(warning) = warning {
                self.warn(warning);
            }
            self.jit.insert(path.to_path_buf(), (stamp, map));
        }
        Ok(&self.jit[path].1)
    }

    /// Finds or loads the module of a request; `Err` when the file cannot be
    /// opened (not cached: it may appear later).
    fn module_index(&mut self, request: &ModuleRequest<'_>) -> Result<usize, UnknownReason> {
        if let Some(&index) = request.build_id.and_then(|id| self.by_build_id.get(&id.0)) {
            return Ok(index);
        }
        let map_key = request.map.as_ref().map(|m| m.as_ptr() as usize);
        if let Some((_, index)) = map_key.and_then(|key| self.by_map.get(&key)) {
            return Ok(*index);
        }
        // Debug files beside the binary are looked for where it is seen.
        let opened = match (request.root, request.path.strip_prefix("/")) {
            (Some(root), Ok(relative)) => root.join(relative),
            _ => request.path.to_path_buf(),
        };
        let file_id = match &request.map {
            Some(_) => None,
            None => {
                let meta = std::fs::metadata(&opened).map_err(|e| {
                    UnknownReason::FileUnavailable(format!("{}: {e}", request.path.display()))
                })?;
                let id = FileId {
                    dev: meta.dev(),
                    inode: meta.ino(),
                    size: meta.size(),
                    mtime_ns: i128::from(meta.mtime()) * 1_000_000_000
                        + i128::from(meta.mtime_nsec()),
                };
                if let Some(&index) = self.by_file.get(&id) {
                    return Ok(index);
                }
                Some(id)
            }
        };
        let own_build_id = self.own_build_id();
        let source = ModuleSource {
            symbols_only_for: own_build_id.as_deref(),
            opened_path: &opened,
            target_path: request.path,
            root: request.root,
            build_id: request.build_id.map(|id| id.0.as_slice()),
            map: request.map.clone(),
            open: self.open,
        };
        let mut loaded = Module::load(&source, &self.options);
        if let Ok(module) = &mut loaded {
            for warning in std::mem::take(&mut module.warnings) {
                self.warn(warning);
            }
        }
        let index = self.modules.len();
        if let Some(build_id) = loaded.as_ref().ok().and_then(|m| m.build_id()) {
            self.by_build_id.insert(build_id.to_vec(), index);
        }
        self.modules.push(loaded);
        if let Some(id) = file_id {
            self.by_file.insert(id, index);
        }
        if let (Some(key), Some(map)) = (map_key, &request.map) {
            self.by_map.insert(key, (Arc::clone(map), index));
        }
        Ok(index)
    }
}

/// `Err` with a message when the mapping's build-id is known and differs
/// from the loaded module's.
fn check_build_id(path: &Path, wanted: Option<&BuildId>, loaded: &Module) -> Result<(), String> {
    match (wanted, loaded.build_id()) {
        (Some(wanted), Some(found)) if wanted.0 != found => Err(format!(
            "{}: build-id {} differs from the mapping's {wanted} (file replaced?)",
            path.display(),
            BuildId(found.to_vec()),
        )),
        _ => Ok(()),
    }
}

/// Symbolizes addresses in a loaded module, one result per address.
fn lookup_all(
    loaded: &Module,
    addresses: &[FrameAddress],
    options: &SymbolizeOptions,
) -> Vec<Symbolized> {
    // Sorted lookups touch each DWARF unit and symbol range once, in order.
    let mut order: Vec<usize> = (0..addresses.len()).collect();
    order.sort_by_key(|&i| addresses[i].lookup_address());
    let mut results = vec![Symbolized::Unknown(UnknownReason::NoSymbol); addresses.len()];
    let mut previous: Option<(u64, usize)> = None;
    for i in order {
        let lookup = addresses[i].lookup_address();
        results[i] = match previous {
            Some((address, j)) if address == lookup => results[j].clone(),
            _ => loaded.symbolize(lookup, options),
        };
        previous = Some((lookup, i));
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn symbolizer_can_move_to_another_thread() {
        assert_send::<Symbolizer>();
    }

    #[test]
    fn missing_files_are_a_reason_not_an_error() {
        let mut s = Symbolizer::new(SymbolizeOptions::default());
        let request = ModuleRequest {
            path: Path::new("/nonexistent/stoke-test-binary"),
            build_id: None,
            map: None,
            root: None,
        };
        let out = s.symbolize_module(&request, &[FrameAddress::InstructionPointer(0x1000)]);
        assert!(matches!(
            &out[..],
            [Symbolized::Unknown(UnknownReason::FileUnavailable(_))]
        ));
    }

    #[test]
    fn hidden_kernel_symbols_give_one_warning_with_the_remedy() {
        let dir = std::env::temp_dir().join(format!("stoke-kallsyms-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("kallsyms");
        std::fs::write(
            &fake,
            "0000000000000000 T _text\n0000000000000000 t schedule\n",
        )
        .unwrap();
        let mut s = Symbolizer::new(SymbolizeOptions::default());
        s.kernel = Kernel::from_path(&fake);
        for _ in 0..2 {
            let out = s.symbolize_kernel(&[0xffff_ffff_8100_0010]);
            assert_eq!(
                out,
                [Symbolized::Unknown(UnknownReason::KernelSymbolsHidden)]
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
        let warnings = s.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("kernel symbols are hidden (kernel.kptr_restrict")
                && warnings[0].contains("run as root"),
            "{warnings:?}"
        );
    }

    #[test]
    fn non_elf_files_are_bad_elf() {
        let mut s = Symbolizer::new(SymbolizeOptions::default());
        let request = ModuleRequest {
            path: Path::new("/proc/self/status"),
            build_id: None,
            map: None,
            root: None,
        };
        let out = s.symbolize_module(&request, &[FrameAddress::InstructionPointer(0x10)]);
        assert!(matches!(
            &out[..],
            [Symbolized::Unknown(
                UnknownReason::BadElf(_) | UnknownReason::FileUnavailable(_)
            )]
        ));
    }
}
