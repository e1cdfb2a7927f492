//! One module's unwind tables: where its CFI sections are, an address index
//! over their FDEs, and its `PT_LOAD` layout.
//!
//! Everything is computed once in [`ModuleUnwindInfo::parse`]; lookups borrow
//! the shared bytes and never allocate.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use gimli::{
    BaseAddresses, DebugFrame, EhFrame, EndianSlice, FrameDescriptionEntry, LittleEndian,
    UnwindSection,
};
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, Object, ObjectSection};
use stoke_model::layout::{self, LoadSegment};

use crate::hdr::HdrTable;
use crate::UnwindInfoError;

/// The gimli reader over a module's bytes.
pub(crate) type Reader<'a> = EndianSlice<'a, LittleEndian>;

/// The FDE covering an address, with the section it came from (its
/// expressions are read from that section).
pub(crate) enum FoundFde<'a> {
    /// An FDE in `.eh_frame`.
    EhFrame(EhFrame<Reader<'a>>, FrameDescriptionEntry<Reader<'a>>),
    /// An FDE in `.debug_frame`.
    DebugFrame(DebugFrame<Reader<'a>>, FrameDescriptionEntry<Reader<'a>>),
}

/// One entry of a sorted FDE index: the code range an FDE covers.
#[derive(Clone, Copy, Debug)]
struct IndexEntry {
    start: u64,
    len: u64,
    offset: usize,
}

/// The bytes of a section: a range of the module's bytes, or a decompressed copy.
enum SectionBytes {
    Range(Range<usize>),
    Owned(Vec<u8>),
}

/// How much of the entry point counts as its stub ([`ModuleUnwindInfo::is_entry_stub`]).
const ENTRY_STUB_BYTES: u64 = 64;

/// Parsed unwind tables of one ELF module.
///
/// Holds the module's bytes (shared, via `Arc`) and a few ranges and indexes
/// into them; cheap to share across threads (`Send + Sync`).
pub struct ModuleUnwindInfo {
    /// Unique per instance, for the unwinder's rule cache.
    id: u64,
    /// The ELF entry point (`e_entry`), where a process starts, if any.
    entry: Option<u64>,
    data: Arc<dyn AsRef<[u8]> + Send + Sync>,
    bases: BaseAddresses,
    eh_frame: Option<Range<usize>>,
    /// The `.eh_frame_hdr` binary-search table, when it has the usual layout.
    hdr_table: Option<HdrTable>,
    /// Sorted index over `.eh_frame`, built when there is no usable hdr table.
    eh_frame_index: Vec<IndexEntry>,
    debug_frame: Option<SectionBytes>,
    debug_frame_index: Vec<IndexEntry>,
    loads: Vec<LoadSegment>,
    /// The GNU build-id note, if the file has one.
    build_id: Option<Vec<u8>>,
}

impl std::fmt::Debug for ModuleUnwindInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleUnwindInfo")
            .field("eh_frame", &self.eh_frame)
            .field("hdr_table", &self.hdr_table)
            .field("eh_frame_index_len", &self.eh_frame_index.len())
            .field("debug_frame_index_len", &self.debug_frame_index.len())
            .field("loads", &self.loads)
            .finish()
    }
}

/// A fresh module id; ids are never reused, so cached rules never outlive
/// their module's identity.
fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn range_of(offset: u64, size: u64, len: usize) -> Option<Range<usize>> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    (end <= len).then_some(start..end)
}

impl ModuleUnwindInfo {
    /// Parses the CFI sections (`.eh_frame_hdr`, `.eh_frame`, `.debug_frame`)
    /// of an ELF image. `data` is the whole file (e.g. a memory map).
    ///
    /// A file without any CFI parses fine ([`has_cfi`](Self::has_cfi) is then
    /// false); only bytes that are not a 64-bit ELF file are an error.
    pub fn parse(
        data: Arc<dyn AsRef<[u8]> + Send + Sync>,
    ) -> Result<ModuleUnwindInfo, UnwindInfoError> {
        let bytes: &[u8] = (*data).as_ref();
        let elf = ElfFile64::<Endianness>::parse(bytes)
            .map_err(|e| UnwindInfoError::Elf(e.to_string()))?;
        let endian = elf.endian();

        let mut loads = Vec::new();
        let mut gnu_eh_frame = None;
        for ph in elf.elf_program_headers() {
            let p_type = ph.p_type(endian);
            if p_type == object::elf::PT_LOAD {
                loads.push(LoadSegment {
                    offset: ph.p_offset(endian),
                    vaddr: ph.p_vaddr(endian),
                    file_size: ph.p_filesz(endian),
                    executable: ph.p_flags(endian).contains(object::elf::PF_X),
                });
            } else if p_type == object::elf::PT_GNU_EH_FRAME {
                gnu_eh_frame = Some((ph.p_offset(endian), ph.p_vaddr(endian), ph.p_filesz(endian)));
            }
        }

        // Sections: file range and stated address.
        let section = |name: &str| {
            let s = elf.section_by_name(name)?;
            let (offset, size) = s.file_range()?;
            Some((range_of(offset, size, bytes.len())?, s.address()))
        };
        let mut bases = BaseAddresses::default();
        if let Some(text) = elf.section_by_name(".text") {
            bases = bases.set_text(text.address());
        }
        if let Some(got) = elf.section_by_name(".got") {
            bases = bases.set_got(got.address());
        }

        let mut hdr = section(".eh_frame_hdr");
        if hdr.is_none() {
            // No section headers (e.g. `sstrip`): the program header still points at it.
            hdr = gnu_eh_frame
                .and_then(|(off, vaddr, size)| Some((range_of(off, size, bytes.len())?, vaddr)));
        }
        let hdr_table = hdr
            .as_ref()
            .and_then(|(range, svma)| HdrTable::parse(bytes, range.clone(), *svma));
        if let Some((_, svma)) = &hdr {
            bases = bases.set_eh_frame_hdr(*svma);
        }
        let mut eh_frame = section(".eh_frame");
        if eh_frame.is_none() {
            eh_frame = hdr_table
                .as_ref()
                .and_then(|t| eh_frame_from_hdr(bytes, t.eh_frame_svma(), &loads));
        }
        if let Some((_, svma)) = &eh_frame {
            bases = bases.set_eh_frame(*svma);
        }

        let entry = Some(elf.elf_header().e_entry(endian)).filter(|&e| e != 0);
        let build_id = object::Object::build_id(&elf)
            .ok()
            .flatten()
            .map(<[u8]>::to_vec);
        let mut info = ModuleUnwindInfo {
            id: next_id(),
            entry,
            data: data.clone(),
            bases,
            hdr_table: hdr_table.filter(|_| eh_frame.is_some()),
            eh_frame: eh_frame.map(|(r, _)| r),
            eh_frame_index: Vec::new(),
            debug_frame: None,
            debug_frame_index: Vec::new(),
            loads,
            build_id,
        };

        if info.hdr_table.is_none() {
            if let Some(eh) = info.eh_frame_section() {
                info.eh_frame_index = build_index(&eh, &info.bases);
            }
        }

        if let Some(s) = elf.section_by_name(".debug_frame") {
            let compressed = s
                .compressed_file_range()
                .is_ok_and(|c| c.format != object::CompressionFormat::None);
            let bytes_of_section = if compressed {
                s.uncompressed_data()
                    .ok()
                    .map(|d| SectionBytes::Owned(d.into_owned()))
            } else {
                section(".debug_frame").map(|(r, _)| SectionBytes::Range(r))
            };
            info.debug_frame = bytes_of_section;
            if let Some(df) = info.debug_frame_section() {
                info.debug_frame_index = build_index(&df, &info.bases);
            }
        }
        Ok(info)
    }

    /// A module whose only unwind table is the raw `.eh_frame` section
    /// `eh_frame`, stated to be loaded at `eh_frame_svma`, with one `PT_LOAD`
    /// mapping file offset 0 to stated address 0. For synthetic tests and
    /// for code that carries its own CFI (e.g. JIT code).
    pub fn from_eh_frame(eh_frame: Vec<u8>, eh_frame_svma: u64) -> ModuleUnwindInfo {
        let len = eh_frame.len();
        let bases = BaseAddresses::default()
            .set_eh_frame(eh_frame_svma)
            .set_text(0);
        let mut info = ModuleUnwindInfo {
            id: next_id(),
            entry: None,
            data: Arc::new(eh_frame),
            bases,
            eh_frame: Some(0..len),
            hdr_table: None,
            eh_frame_index: Vec::new(),
            debug_frame: None,
            debug_frame_index: Vec::new(),
            loads: vec![LoadSegment {
                offset: 0,
                vaddr: 0,
                file_size: u64::MAX,
                executable: true,
            }],
            build_id: None,
        };
        if let Some(eh) = info.eh_frame_section() {
            info.eh_frame_index = build_index(&eh, &info.bases);
        }
        info
    }

    /// The file's GNU build-id, if it has one: checked against a mapping's
    /// before the tables are used for it.
    pub fn build_id(&self) -> Option<&[u8]> {
        self.build_id.as_deref()
    }

    /// The stated virtual address (as in the ELF file) that file offset
    /// `offset` is loaded at, from the `PT_LOAD` program headers, by the
    /// rule the symbolizer uses too ([`layout::file_offset_to_svma`]).
    pub fn file_offset_to_svma(&self, offset: u64) -> Option<u64> {
        layout::file_offset_to_svma(&self.loads, offset)
    }

    /// Whether `svma` lies in the first bytes of the module's ELF entry
    /// point: the stub where a process starts (the dynamic loader's `_start`
    /// calls `_dl_start` at once and has no CFI). A stack that gets there is
    /// whole.
    pub fn is_entry_stub(&self, svma: u64) -> bool {
        self.entry
            .is_some_and(|entry| (entry..entry.saturating_add(ENTRY_STUB_BYTES)).contains(&svma))
    }

    /// Whether the module has any CFI (else only frame pointers can unwind it).
    pub fn has_cfi(&self) -> bool {
        self.eh_frame.is_some() || self.debug_frame.is_some()
    }

    /// An id no other instance has (during this process's life).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The base addresses for relative pointers in the CFI sections.
    pub(crate) fn bases(&self) -> &BaseAddresses {
        &self.bases
    }

    fn bytes(&self) -> &[u8] {
        (*self.data).as_ref()
    }

    /// The `.eh_frame` section, if any.
    pub(crate) fn eh_frame_section(&self) -> Option<EhFrame<Reader<'_>>> {
        let range = self.eh_frame.clone()?;
        let mut s = EhFrame::new(self.bytes().get(range)?, LittleEndian);
        s.set_address_size(8);
        Some(s)
    }

    /// The `.debug_frame` section, if any.
    pub(crate) fn debug_frame_section(&self) -> Option<DebugFrame<Reader<'_>>> {
        let bytes = match self.debug_frame.as_ref()? {
            SectionBytes::Range(r) => self.bytes().get(r.clone())?,
            SectionBytes::Owned(v) => v.as_slice(),
        };
        let mut s = DebugFrame::new(bytes, LittleEndian);
        s.set_address_size(8);
        Some(s)
    }

    /// Finds the FDE covering `svma`, if any: `.eh_frame` first (through the
    /// `.eh_frame_hdr` table or the index), then `.debug_frame`.
    pub(crate) fn find_fde(&self, svma: u64) -> Option<FoundFde<'_>> {
        if let Some(section) = self.eh_frame_section() {
            let offset = match &self.hdr_table {
                Some(table) => table.lookup(self.bytes(), svma),
                None => index_lookup(&self.eh_frame_index, svma),
            };
            if let Some(offset) = offset {
                let fde = section.fde_from_offset(
                    &self.bases,
                    gimli::EhFrameOffset(offset),
                    EhFrame::cie_from_offset,
                );
                if let Ok(fde) = fde {
                    if fde.contains(svma) {
                        return Some(FoundFde::EhFrame(section, fde));
                    }
                }
            }
        }
        let section = self.debug_frame_section()?;
        let offset = index_lookup(&self.debug_frame_index, svma)?;
        let fde = section
            .fde_from_offset(
                &self.bases,
                gimli::DebugFrameOffset(offset),
                DebugFrame::cie_from_offset,
            )
            .ok()?;
        fde.contains(svma)
            .then_some(FoundFde::DebugFrame(section, fde))
    }
}

/// Finds `.eh_frame` from the hdr's `eh_frame_ptr` when there are no section
/// headers; it extends to the end of the `PT_LOAD` segment holding it.
fn eh_frame_from_hdr(
    bytes: &[u8],
    svma: u64,
    loads: &[LoadSegment],
) -> Option<(Range<usize>, u64)> {
    let seg = loads
        .iter()
        .find(|s| svma >= s.vaddr && svma - s.vaddr < s.file_size)?;
    let offset = seg.offset.checked_add(svma - seg.vaddr)?;
    let end = seg.offset.checked_add(seg.file_size)?;
    Some((range_of(offset, end - offset, bytes.len())?, svma))
}

/// Indexes every FDE of a section by its code range, sorted by start.
/// Unparsable entries end the walk (what came before is kept).
fn build_index<'a, S: UnwindSection<Reader<'a>>>(
    section: &S,
    bases: &BaseAddresses,
) -> Vec<IndexEntry> {
    let mut index = Vec::new();
    let mut entries = section.entries(bases);
    while let Ok(Some(entry)) = entries.next() {
        if let gimli::CieOrFde::Fde(partial) = entry {
            let Ok(fde) = partial.parse(S::cie_from_offset) else {
                continue;
            };
            if fde.len() > 0 {
                index.push(IndexEntry {
                    start: fde.initial_address(),
                    len: fde.len(),
                    offset: fde.offset(),
                });
            }
        }
    }
    index.sort_by_key(|e| e.start);
    index
}

/// The FDE offset of the index entry covering `svma`.
fn index_lookup(index: &[IndexEntry], svma: u64) -> Option<usize> {
    let i = index.partition_point(|e| e.start <= svma).checked_sub(1)?;
    let e = index[i];
    (svma - e.start < e.len).then_some(e.offset)
}
