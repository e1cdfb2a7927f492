//! One user-space module (executable or shared library), loaded once: its
//! segments, its DWARF (own or from a debug file) and its symbol tables.

use std::path::Path;
use std::sync::Arc;

use memmap2::Mmap;

use crate::cfi::FunctionBounds;
use crate::debuginfo::DebugSearch;
use crate::demangle::demangle;
use crate::dwarf::{self, DwarfFrame};
use stoke_model::layout::{file_offset_to_svma, svma_to_file_offset, LoadSegment};

use crate::elf::{ElfImage, LoadError};
use crate::plt::CodeLayout;
use crate::symtab::{SymbolSource, SymbolTable};
use crate::{FileOpener, SymbolFrame, SymbolizeOptions, Symbolized, UnknownReason};

/// Where a module's file is and where to look for its debug info.
pub(crate) struct ModuleSource<'a> {
    /// The path to open (possibly under `/proc/PID/root`).
    pub(crate) opened_path: &'a Path,
    /// The path as the target names it.
    pub(crate) target_path: &'a Path,
    /// The target's root, when the file is opened through it.
    pub(crate) root: Option<&'a Path>,
    /// The build-id the mapping reported.
    pub(crate) build_id: Option<&'a [u8]>,
    /// The file, already mapped by the caller (read instead of `opened_path`).
    pub(crate) map: Option<Arc<Mmap>>,
    /// How files (the binary when not mapped, its debug files) are opened.
    pub(crate) open: FileOpener,
    /// Name by symbol tables only, leaving DWARF inside the binary unread,
    /// when the binary's build-id is this one (stoke's own).
    pub(crate) symbols_only_for: Option<&'a [u8]>,
}

/// A parsed module, ready for lookups.
pub(crate) struct Module {
    segments: Vec<LoadSegment>,
    build_id: Option<Vec<u8>>,
    dwarf: Option<dwarf::Dwarf>,
    symbols: SymbolTable,
    /// Function extents from `.eh_frame`, for addresses no symbol covers.
    functions: Option<FunctionBounds>,
    /// Problems met while loading, for the symbolizer's warnings.
    pub(crate) warnings: Vec<String>,
}

impl Module {
    /// Opens and parses the binary, finds its debug info, builds the tables.
    pub(crate) fn load(
        source: &ModuleSource<'_>,
        options: &SymbolizeOptions,
    ) -> Result<Module, UnknownReason> {
        let opened = match &source.map {
            Some(map) => ElfImage::from_map(source.target_path, Arc::clone(map)),
            None => ElfImage::open(source.opened_path, source.open),
        };
        let binary = opened.map_err(|e| match e {
            LoadError::Io { .. } => UnknownReason::FileUnavailable(e.to_string()),
            LoadError::Parse { .. } | LoadError::Dwarf { .. } | LoadError::NotElf(_) => {
                UnknownReason::BadElf(e.to_string())
            }
        })?;
        let search = DebugSearch {
            opened_path: source.opened_path,
            target_path: source.target_path,
            root: source.root,
            debug_dirs: &options.debug_dirs,
            open: source.open,
        };
        let build_id = binary.build_id.as_deref().or(source.build_id);
        let symbols_only = source.symbols_only_for.is_some() && source.symbols_only_for == build_id;
        let debug = if binary.has_dwarf {
            None
        } else {
            search.find(&binary, build_id)
        };
        let dwarf_image = match &debug {
            Some(image) => options.reads_separate_dwarf().then_some(image),
            None => (binary.has_dwarf && !symbols_only).then_some(&binary),
        };
        let mut warnings = Vec::new();
        let dwarf = dwarf_image.and_then(|image| {
            let alt = image.altlink.as_ref().and_then(|_| search.find_alt(image));
            dwarf::Dwarf::load(image, alt.as_ref())
                .map_err(|e| warnings.push(format!("{e}; using symbol tables only")))
                .ok()
        });

        // MiniDebugInfo matters only when no real debug file was found.
        let mini = match (&debug, binary.has_dwarf) {
            (None, false) => binary.mini_debug_info(),
            _ => None,
        };
        let mut raw = binary.symbols(SymbolSource::Symtab);
        for extra in [&debug, &mini].into_iter().flatten() {
            raw.extend(extra.symbols(SymbolSource::Symtab));
        }
        raw.extend(binary.symbols(SymbolSource::Dynsym));
        let symbols = SymbolTable::build(raw, &CodeLayout::of(&binary));

        Ok(Module {
            segments: binary.segments.clone(),
            build_id: binary.build_id.clone(),
            dwarf,
            symbols,
            functions: FunctionBounds::load(&binary),
            warnings,
        })
    }

    /// A module from an image already in memory that has no files around
    /// it (the vDSO): its own symbol tables and call frame information only.
    pub(crate) fn from_image(image: &ElfImage) -> Module {
        let mut raw = image.symbols(SymbolSource::Symtab);
        raw.extend(image.symbols(SymbolSource::Dynsym));
        Module {
            segments: image.segments.clone(),
            build_id: image.build_id.clone(),
            dwarf: None,
            symbols: SymbolTable::build(raw, &CodeLayout::of(image)),
            functions: FunctionBounds::load(image),
            warnings: Vec::new(),
        }
    }

    /// The module's own build-id.
    pub(crate) fn build_id(&self) -> Option<&[u8]> {
        self.build_id.as_deref()
    }

    /// Symbolizes one lookup address (a file offset, already moved inside
    /// the call for return addresses).
    pub(crate) fn symbolize(&self, offset: u64, options: &SymbolizeOptions) -> Symbolized {
        let Some(svma) = file_offset_to_svma(&self.segments, offset) else {
            return Symbolized::Unknown(UnknownReason::NoSymbol);
        };
        let mut frames = match &self.dwarf {
            Some(dwarf) => dwarf.frames(svma),
            None => Vec::new(),
        };
        // addr2line lists the innermost frame first; we list the real function first.
        frames.reverse();
        if !options.inlines {
            frames.truncate(1);
        }
        let name = |raw: &str| {
            if options.demangle {
                demangle(raw, options.strip_rust_hash)
            } else {
                raw.to_string()
            }
        };
        let symbol = self.symbols.lookup(svma).map(|(raw, _)| raw);
        let dwarf_name = frames.first().and_then(|f| f.name.as_deref());
        let outer_name = match (dwarf_name, symbol) {
            (Some(dwarf), Some(symbol)) if qualifies(symbol, dwarf) => name(symbol),
            (Some(dwarf), _) => name(dwarf),
            (None, Some(symbol)) => name(symbol),
            (None, None) => return self.unnamed(svma),
        };
        if frames.is_empty() {
            frames.push(DwarfFrame::default());
        }
        let mut outer_name = Some(outer_name);
        let result = frames
            .into_iter()
            .enumerate()
            .map(|(i, frame)| SymbolFrame {
                name: match (outer_name.take(), frame.name) {
                    (Some(outer), _) => outer,
                    (None, Some(raw)) => name(&raw),
                    (None, None) => "??".to_string(),
                },
                file: frame.file,
                line: frame.line,
                inlined: i > 0,
            })
            .collect();
        Symbolized::Found(result)
    }

    /// The outcome for an address no symbol names: the start of the function
    /// whose FDE covers it, as a file offset, else no symbol at all.
    fn unnamed(&self, svma: u64) -> Symbolized {
        self.functions
            .as_ref()
            .and_then(|f| f.function_start(svma))
            .and_then(|start| svma_to_file_offset(&self.segments, start))
            .map_or(Symbolized::Unknown(UnknownReason::NoSymbol), |offset| {
                Symbolized::Unnamed {
                    function_offset: offset,
                }
            })
    }
}

/// DWARF with line tables only (Rust's `debug = "line-tables-only"`, the
/// usual release setting) names functions without their path (`run`, not
/// `app::worker::run`); the symbol table's mangled name has it. Whether
/// `symbol` is such a qualified form of the plain DWARF name: mangled, and
/// demangled ending in that name (so it is the same function).
fn qualifies(symbol: &str, dwarf: &str) -> bool {
    let is_mangled = |n: &str| n.starts_with("_Z") || n.starts_with("_R");
    if is_mangled(dwarf) || !is_mangled(symbol) {
        return false;
    }
    let demangled = demangle(symbol, true);
    demangled.ends_with(&format!("::{dwarf}"))
        || demangled.contains(&format!("::{dwarf}("))
        || demangled.contains(&format!("::{dwarf}<"))
}

#[cfg(test)]
mod tests {
    use super::qualifies;

    #[test]
    fn mangled_symbols_qualify_plain_dwarf_names() {
        let rust = "_ZN6system33marker_function_for_the_self_test17h0123456789abcdefE";
        assert!(qualifies(rust, "marker_function_for_the_self_test"));
        assert!(!qualifies(rust, "other"));
        assert!(qualifies("_ZN3foo3barEv", "bar"));
        assert!(!qualifies("hash_loop", "hash_loop"));
        assert!(!qualifies("_ZN3foo3barEv", "_ZN3foo3barEv"));
    }
}
