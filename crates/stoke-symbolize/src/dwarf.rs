//! DWARF lookups (functions, inline chains, file and line) with addr2line
//! over sections we load ourselves, so debug files found by build-id or
//! debuglink and dwz supplementary files can be used.

use crate::elf::{ElfImage, LoadError, Reader};

/// One frame from DWARF, innermost first as addr2line lists them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DwarfFrame {
    /// The raw (linkage, else plain) name.
    pub(crate) name: Option<String>,
    /// Source file.
    pub(crate) file: Option<String>,
    /// Source line.
    pub(crate) line: Option<u32>,
}

/// The name of a section to load, or "" for sections lookups never read
/// (variable locations), which saves decompressing them.
fn wanted(id: gimli::SectionId) -> &'static str {
    match id {
        gimli::SectionId::DebugLoc | gimli::SectionId::DebugLocLists => "",
        _ => id.name(),
    }
}

/// A lazily indexed DWARF context.
pub(crate) struct Dwarf {
    context: addr2line::Context<Reader>,
}

impl Dwarf {
    /// Loads the DWARF sections of `image`, with `sup` as its dwz
    /// supplementary file.
    pub(crate) fn load(image: &ElfImage, sup: Option<&ElfImage>) -> Result<Dwarf, LoadError> {
        let mut dwarf = gimli::Dwarf::load(|id| image.section(wanted(id)))?;
        if let Some(sup) = sup {
            dwarf.load_sup(|id| sup.section(wanted(id)))?;
        }
        dwarf.populate_abbreviations_cache(gimli::AbbreviationsCacheStrategy::Duplicates);
        let context = addr2line::Context::from_dwarf(dwarf).map_err(|source| LoadError::Dwarf {
            path: image.path.clone(),
            source,
        })?;
        Ok(Dwarf { context })
    }

    /// The frames at a stated address, innermost first; empty when no unit
    /// covers it or the DWARF is broken there.
    pub(crate) fn frames(&self, svma: u64) -> Vec<DwarfFrame> {
        let mut out = Vec::new();
        // Split DWARF (.dwo) loads are skipped: their frames come back without names.
        let Ok(mut iter) = self.context.find_frames(svma).skip_all_loads() else {
            return out;
        };
        while let Ok(Some(frame)) = iter.next() {
            let name = frame
                .function
                .as_ref()
                .and_then(|f| f.raw_name().ok())
                .map(|n| n.into_owned());
            let (file, line) = match frame.location {
                Some(loc) => (loc.file.map(str::to_string), loc.line),
                None => (None, None),
            };
            out.push(DwarfFrame { name, file, line });
        }
        // A unit that covers the address but knows nothing about it.
        if out.iter().all(|f| f.name.is_none() && f.file.is_none()) {
            out.clear();
        }
        out
    }
}
