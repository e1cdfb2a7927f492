//! Where an ELF file's bytes are loaded: its `PT_LOAD` segments, and the one
//! rule that turns a file offset into the address the file states for it.
//!
//! The unwinder (to place a mapping's unwind tables) and the symbolizer (to
//! look an address up in symbols and DWARF) use the same rule, so that an
//! address names the code it was unwound with.

/// One `PT_LOAD` program header of an ELF file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadSegment {
    /// `p_offset`: where the segment's bytes start in the file.
    pub offset: u64,
    /// `p_vaddr`: the stated virtual address (SVMA) they are loaded at.
    pub vaddr: u64,
    /// `p_filesz`: how many bytes of the file the segment holds.
    pub file_size: u64,
    /// Whether the segment is executable (`PF_X`).
    pub executable: bool,
}

impl LoadSegment {
    /// Whether `offset` lies in the segment, counting from `start` (its own
    /// offset, or that rounded down to a page).
    fn holds(&self, start: u64, offset: u64) -> bool {
        offset >= start && offset - start < self.file_size.saturating_add(self.offset - start)
    }
}

/// The stated virtual address that file offset `offset` is loaded at.
///
/// An offset in the page before a segment's (unaligned) start counts as
/// part of that segment, since mappings start on page boundaries. Where an
/// offset lies in several segments (the page at a boundary is often in the
/// range of the end of a read-only segment and of the start of the code), an
/// executable one wins: code is what is sampled and unwound.
pub fn file_offset_to_svma(segments: &[LoadSegment], offset: u64) -> Option<u64> {
    let in_kind = |executable: bool| {
        let mut kind = segments.iter().filter(move |s| s.executable == executable);
        kind.clone()
            .find(|s| s.holds(s.offset, offset))
            .or_else(|| kind.find(|s| s.holds(s.offset & !0xfff, offset)))
    };
    let segment = in_kind(true).or_else(|| in_kind(false))?;
    Some(
        segment
            .vaddr
            .wrapping_sub(segment.offset)
            .wrapping_add(offset),
    )
}

/// The file offset of a stated virtual address the file holds bytes for:
/// the inverse of [`file_offset_to_svma`], executable segments first.
pub fn svma_to_file_offset(segments: &[LoadSegment], svma: u64) -> Option<u64> {
    let holds = |s: &&LoadSegment| svma >= s.vaddr && svma - s.vaddr < s.file_size;
    let segment = (segments.iter().filter(|s| s.executable).find(holds))
        .or_else(|| segments.iter().find(holds))?;
    Some(segment.offset + (svma - segment.vaddr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(offset: u64, vaddr: u64, file_size: u64, executable: bool) -> LoadSegment {
        LoadSegment {
            offset,
            vaddr,
            file_size,
            executable,
        }
    }

    #[test]
    fn a_page_shared_by_two_segments_belongs_to_the_code() {
        // lld's layout: the read-only segment ends inside the page where the
        // code segment starts, and the code's address is a page above its offset.
        let loads = [
            segment(0, 0, 0x1776c, false),
            segment(0x17770, 0x18770, 0x43a00, true),
        ];
        assert_eq!(file_offset_to_svma(&loads, 0x17000), Some(0x18000));
        assert_eq!(file_offset_to_svma(&loads, 0x17700), Some(0x18700));
        assert_eq!(file_offset_to_svma(&loads, 0x17800), Some(0x18800));
        assert_eq!(file_offset_to_svma(&loads, 0x100), Some(0x100));
        assert_eq!(svma_to_file_offset(&loads, 0x18800), Some(0x17800));
    }

    #[test]
    fn offsets_map_through_the_segment_that_holds_them() {
        let loads = [
            segment(0, 0, 0x1000, false),
            segment(0x1000, 0x401000, 0x2000, true),
        ];
        assert_eq!(file_offset_to_svma(&loads, 0x10), Some(0x10));
        assert_eq!(file_offset_to_svma(&loads, 0x1234), Some(0x401234));
        assert_eq!(file_offset_to_svma(&loads, 0x3000), None);
        assert_eq!(svma_to_file_offset(&loads, 0x401234), Some(0x1234));
        assert_eq!(svma_to_file_offset(&loads, 0x10), Some(0x10));
        assert_eq!(svma_to_file_offset(&loads, 0x403000), None);
    }
}
