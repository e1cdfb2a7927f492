//! Addresses to names.
//!
//! Design constraints:
//! - Batch and once: callers hand every unique address of a module in one
//!   call; each module is opened and parsed once and cached by its key.
//! - A miss is a value ([`Symbolized::Unknown`] with a reason), never an error:
//!   the caller renders it as `module+0xoffset`.
//! - Files the target names are opened through `/proc/PID/root` when a pid
//!   is given, so processes in other mount namespaces resolve.

use std::path::{Path, PathBuf};

use stoke_model::{BuildId, FrameAddress, Pid};

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
}

impl Default for SymbolizeOptions {
    fn default() -> Self {
        SymbolizeOptions {
            demangle: true,
            strip_rust_hash: true,
            inlines: true,
            debug_dirs: Vec::new(),
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
    /// No name.
    Unknown(UnknownReason),
}

/// A module to symbolize addresses in.
#[derive(Clone, Debug)]
pub struct ModuleRequest<'a> {
    /// The path as the target sees it (from its maps).
    pub path: &'a Path,
    /// The target's pid, to open the file through `/proc/PID/root`.
    pub pid: Option<Pid>,
    /// The build-id the mapping had, when known, to check debug files.
    pub build_id: Option<&'a BuildId>,
}

/// Turns addresses into names; caches parsed modules.
pub struct Symbolizer {
    _options: SymbolizeOptions,
}

impl Symbolizer {
    /// A symbolizer with these options.
    pub fn new(options: SymbolizeOptions) -> Symbolizer {
        Symbolizer { _options: options }
    }

    /// Symbolizes file offsets in one module. Returns one result per address,
    /// in order. Return addresses are looked up at `offset - 1`.
    pub fn symbolize_module(
        &mut self,
        module: &ModuleRequest<'_>,
        addresses: &[FrameAddress],
    ) -> Vec<Symbolized> {
        let _ = (module, addresses);
        todo!()
    }

    /// Symbolizes kernel addresses with `/proc/kallsyms`.
    pub fn symbolize_kernel(&mut self, addresses: &[u64]) -> Vec<Symbolized> {
        let _ = addresses;
        todo!()
    }

    /// Symbolizes addresses in anonymous executable memory of a process with
    /// its JIT map (`/tmp/perf-PID.map`), if it has one.
    pub fn symbolize_jit(&mut self, pid: Pid, addresses: &[u64]) -> Vec<Symbolized> {
        let _ = (pid, addresses);
        todo!()
    }
}
