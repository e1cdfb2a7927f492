//! Function bounds from call frame information, for code no symbol names.
//!
//! Stripped libraries keep only exported functions in `.dynsym`, but every
//! function still has an `.eh_frame` FDE (the unwinder needs it), and an
//! FDE's `[initial_location, +address_range)` is the function's extent. So
//! an address no symbol covers can still be attributed to *its function*:
//! all samples in one static function get that function's start, and merge.
//!
//! Lookups use `.eh_frame_hdr`'s sorted table when the module has one, and
//! otherwise a sorted index of every FDE, built on the first lookup.

use std::sync::OnceLock;

use gimli::{BaseAddresses, EhFrame, EhFrameHdr, ParsedEhFrameHdr, UnwindSection};

use crate::elf::{ElfImage, Reader};

/// One FDE's address range, in stated addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FdeRange {
    start: u64,
    end: u64,
}

/// A module's `.eh_frame`, ready to answer "which function holds this
/// address": the sections are borrowed from the mapped file, nothing is
/// parsed until the first lookup.
pub(crate) struct FunctionBounds {
    eh_frame: EhFrame<Reader>,
    bases: BaseAddresses,
    /// The binary search table, when `.eh_frame_hdr` has one.
    hdr: Option<ParsedEhFrameHdr<Reader>>,
    /// Every FDE sorted by start, built once when there is no table.
    index: OnceLock<Vec<FdeRange>>,
}

impl FunctionBounds {
    /// The bounds of `image`'s functions, or `None` if it has no `.eh_frame`.
    pub(crate) fn load(image: &ElfImage) -> Option<FunctionBounds> {
        let eh_frame_address = image.section_address(".eh_frame")?;
        let section = image.section(".eh_frame").ok()?;
        if section.is_empty() {
            return None;
        }
        let mut eh_frame = EhFrame::from(section);
        eh_frame.set_address_size(image.address_size);
        let mut bases = BaseAddresses::default().set_eh_frame(eh_frame_address);
        if let Some(text) = image.section_address(".text") {
            bases = bases.set_text(text);
        }
        if let Some(got) = image.section_address(".got") {
            bases = bases.set_got(got);
        }
        let hdr_address = image.section_address(".eh_frame_hdr");
        if let Some(address) = hdr_address {
            bases = bases.set_eh_frame_hdr(address);
        }
        let hdr = hdr_address.and_then(|_| {
            let section = image.section(".eh_frame_hdr").ok()?;
            let parsed = EhFrameHdr::from(section)
                .parse(&bases, image.address_size)
                .ok()?;
            parsed.table().is_some().then_some(parsed)
        });
        Some(FunctionBounds {
            eh_frame,
            bases,
            hdr,
            index: OnceLock::new(),
        })
    }

    /// The start (a stated address) of the function whose FDE covers `svma`.
    pub(crate) fn function_start(&self, svma: u64) -> Option<u64> {
        if let Some(table) = self.hdr.as_ref().and_then(|hdr| hdr.table()) {
            let fde = table
                .fde_for_address(&self.eh_frame, &self.bases, svma, EhFrame::cie_from_offset)
                .ok()?;
            return (fde.len() > 0).then(|| fde.initial_address());
        }
        let index = self.index.get_or_init(|| self.build_index());
        covering(index, svma).map(|range| range.start)
    }

    /// Every FDE of the section, sorted by start; parsing stops at the first
    /// broken entry (what came before it is still usable).
    fn build_index(&self) -> Vec<FdeRange> {
        let mut ranges = Vec::new();
        let mut entries = self.eh_frame.entries(&self.bases);
        while let Ok(Some(entry)) = entries.next() {
            let gimli::CieOrFde::Fde(partial) = entry else {
                continue;
            };
            let Ok(fde) = partial.parse(EhFrame::cie_from_offset) else {
                continue;
            };
            // Empty FDEs and those the linker zeroed out (discarded sections)
            // describe no code.
            if fde.len() > 0 && fde.initial_address() != 0 {
                ranges.push(FdeRange {
                    start: fde.initial_address(),
                    end: fde.initial_address().saturating_add(fde.len()),
                });
            }
        }
        ranges.sort_by_key(|r| (r.start, r.end));
        ranges.shrink_to_fit();
        ranges
    }
}

/// The range covering `address` in ranges sorted by start: the last one
/// starting at or before it, if it reaches that far.
fn covering(ranges: &[FdeRange], address: u64) -> Option<FdeRange> {
    let i = ranges.partition_point(|r| r.start <= address);
    ranges[..i].last().copied().filter(|r| address < r.end)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Both lookups agree on a real stripped library: every FDE's first,
    /// middle and last byte map to its start through `.eh_frame_hdr`.
    #[test]
    fn the_hdr_table_and_the_index_agree_on_liblzma() {
        let path = Path::new("/usr/lib/x86_64-linux-gnu/liblzma.so.5");
        if !path.exists() {
            eprintln!("skipped: {} is not installed", path.display());
            return;
        }
        let image = ElfImage::open(path, crate::open_file).unwrap();
        let bounds = FunctionBounds::load(&image).unwrap();
        assert!(bounds.hdr.is_some(), "liblzma has an .eh_frame_hdr table");
        let index = bounds.build_index();
        assert!(index.len() > 100, "only {} FDEs", index.len());
        for range in &index {
            for address in [range.start, (range.start + range.end) / 2, range.end - 1] {
                assert_eq!(bounds.function_start(address), Some(range.start));
            }
        }
    }

    #[test]
    fn an_address_belongs_to_the_range_that_starts_before_and_reaches_it() {
        let ranges = [
            FdeRange {
                start: 0x100,
                end: 0x180,
            },
            FdeRange {
                start: 0x200,
                end: 0x210,
            },
        ];
        assert_eq!(covering(&ranges, 0xff), None);
        assert_eq!(covering(&ranges, 0x100), Some(ranges[0]));
        assert_eq!(covering(&ranges, 0x17f), Some(ranges[0]));
        assert_eq!(covering(&ranges, 0x180), None);
        assert_eq!(covering(&ranges, 0x20f), Some(ranges[1]));
        assert_eq!(covering(&ranges, 0x210), None);
    }
}
