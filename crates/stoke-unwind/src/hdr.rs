//! The `.eh_frame_hdr` binary-search table, read directly.
//!
//! Every linker writes it the same way: `eh_frame_ptr` as `pcrel|sdata4`,
//! `fde_count` as `udata4`, and the table as pairs of `datarel|sdata4`
//! (initial location, FDE address), relative to the start of the section.
//! That one layout is decoded here, with checked arithmetic, so a corrupt
//! table can only miss; any other layout makes the caller index `.eh_frame`
//! itself instead.

use std::ops::Range;

/// `DW_EH_PE_pcrel | DW_EH_PE_sdata4`.
const PCREL_SDATA4: u8 = 0x1b;
/// `DW_EH_PE_udata4`.
const UDATA4: u8 = 0x03;
/// `DW_EH_PE_datarel | DW_EH_PE_sdata4`.
const DATAREL_SDATA4: u8 = 0x3b;
/// Size of the fixed header before the table.
const HEADER: usize = 12;
/// Size of one table entry.
const ENTRY: usize = 8;

/// A validated `.eh_frame_hdr` search table.
#[derive(Clone, Debug)]
pub(crate) struct HdrTable {
    /// Where the table entries are in the module's bytes.
    entries: Range<usize>,
    /// The stated address of `.eh_frame_hdr` (entries are relative to it).
    hdr_svma: u64,
    /// The stated address of `.eh_frame`, as the header states it.
    eh_frame_svma: u64,
}

fn i32_at(bytes: &[u8], at: usize) -> Option<i32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(i32::from_le_bytes(b.try_into().ok()?))
}

impl HdrTable {
    /// Validates the header at `range` of `bytes`, stated to be at `hdr_svma`.
    /// `None` for another encoding, an empty table, or one that does not fit.
    pub(crate) fn parse(bytes: &[u8], range: Range<usize>, hdr_svma: u64) -> Option<HdrTable> {
        let hdr = bytes.get(range.clone())?;
        if hdr.get(..4)? != [1, PCREL_SDATA4, UDATA4, DATAREL_SDATA4] {
            return None;
        }
        let eh_frame_svma = hdr_svma
            .wrapping_add(4)
            .wrapping_add(i64::from(i32_at(hdr, 4)?) as u64);
        let count = usize::try_from(i32_at(hdr, 8)? as u32).ok()?;
        let len = count.checked_mul(ENTRY)?;
        if count == 0 || HEADER.checked_add(len)? > hdr.len() {
            return None;
        }
        let start = range.start + HEADER;
        Some(HdrTable {
            entries: start..start + len,
            hdr_svma,
            eh_frame_svma,
        })
    }

    /// The stated address of `.eh_frame` according to the header.
    pub(crate) fn eh_frame_svma(&self) -> u64 {
        self.eh_frame_svma
    }

    /// The `.eh_frame` offset of the FDE whose initial location is the
    /// greatest one not above `svma`. It may not cover `svma`: the caller
    /// checks the FDE's range.
    pub(crate) fn lookup(&self, bytes: &[u8], svma: u64) -> Option<usize> {
        let table = bytes.get(self.entries.clone())?;
        let field = |i: usize, second: bool| {
            let at = i * ENTRY + if second { 4 } else { 0 };
            let rel = i64::from(i32_at(table, at).unwrap_or(0));
            self.hdr_svma.wrapping_add(rel as u64)
        };
        // First entry whose start is above svma; the one before is the candidate.
        let (mut lo, mut hi) = (0, table.len() / ENTRY);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if field(mid, false) <= svma {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let fde_svma = field(lo.checked_sub(1)?, true);
        usize::try_from(fde_svma.checked_sub(self.eh_frame_svma)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(i32, i32)], hdr_svma_to_eh_frame: i32) -> Vec<u8> {
        let mut v = vec![1, PCREL_SDATA4, UDATA4, DATAREL_SDATA4];
        v.extend_from_slice(&(hdr_svma_to_eh_frame - 4).to_le_bytes());
        v.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for (start, fde) in entries {
            v.extend_from_slice(&start.to_le_bytes());
            v.extend_from_slice(&fde.to_le_bytes());
        }
        v
    }

    #[test]
    fn finds_the_entry_at_or_below_the_address() {
        // .eh_frame_hdr at 0x2000, .eh_frame at 0x2100.
        let bytes = table(&[(-0x1000, 0x100), (-0xf00, 0x120), (-0xe00, 0x140)], 0x100);
        let t = HdrTable::parse(&bytes, 0..bytes.len(), 0x2000).unwrap();
        assert_eq!(t.eh_frame_svma(), 0x2100);
        assert_eq!(t.lookup(&bytes, 0x0fff), None);
        assert_eq!(t.lookup(&bytes, 0x1000), Some(0));
        assert_eq!(t.lookup(&bytes, 0x10ff), Some(0));
        assert_eq!(t.lookup(&bytes, 0x1100), Some(0x20));
        assert_eq!(t.lookup(&bytes, 0x9999), Some(0x40));
    }

    #[test]
    fn rejects_tables_that_do_not_fit_or_use_another_encoding() {
        let mut bytes = table(&[(0, 0x100)], 0x100);
        bytes[8] = 0xff; // count far past the end
        assert!(HdrTable::parse(&bytes, 0..bytes.len(), 0).is_none());
        let mut bytes = table(&[(0, 0x100)], 0x100);
        bytes[3] = 0x03;
        assert!(HdrTable::parse(&bytes, 0..bytes.len(), 0).is_none());
        let bytes = table(&[], 0x100);
        assert!(HdrTable::parse(&bytes, 0..bytes.len(), 0).is_none());
    }
}
