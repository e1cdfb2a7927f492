//! How big each ring buffer is and when poll wakes up.
//!
//! The buffer must absorb the records written between two drains without
//! loss. At 999 Hz a CPU produces ~1k samples per second: ~0.5 MB/s with
//! callchains, ~33 MB/s with 32 KiB stack copies (a record always reserves
//! the full copy size, however much of it the stack filled). Each buffer
//! holds at least a twelfth of a second of the estimated rate, rounded up to
//! a power of two (so a sixth of a second or less), and poll wakes when
//! a thirty-second of a second's worth (at most a quarter of the buffer) is
//! waiting: about 32 wake-ups per second, not one per sample. The buffers are
//! mapped into stoke and count in its memory, so they are kept small: 4 MiB
//! per CPU for 32 KiB stack copies at 999 Hz.

use super::attr::stack_copy_size;
use crate::StackCapture;

/// Estimated callchain depth (entries, markers included) of an average sample.
const TYPICAL_CALLCHAIN: u64 = 48;
/// Fixed sample fields: header, identifier, ip, pid/tid, time, cpu, period, nr.
const SAMPLE_FIXED_BYTES: u64 = 8 * 8;
/// Registers, ABI word, stack size and dyn_size words of a stack sample.
const STACK_SAMPLE_EXTRA: u64 = 8 * (17 + 3);
/// Memory all ring buffers together may take before per-CPU buffers shrink
/// (they never shrink below the caller's hint).
pub(crate) const TOTAL_BUDGET_BYTES: u64 = 512 << 20;

/// The chosen ring-buffer geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RingSize {
    /// Data pages per buffer (a power of two).
    pub(crate) data_pages: usize,
    /// `wakeup_watermark` in bytes.
    pub(crate) watermark: u32,
}

impl RingSize {
    /// Half the buffer (for when the kernel refuses to lock this much
    /// memory), with the watermark kept at most a quarter of it.
    pub(crate) fn halved(self, page_size: usize) -> Option<RingSize> {
        if self.data_pages <= 1 {
            return None;
        }
        let data_pages = self.data_pages / 2;
        let quarter = (data_pages * page_size / 4).max(page_size.min(data_pages * page_size / 2));
        Some(RingSize {
            data_pages,
            watermark: self.watermark.min(quarter.min(u32::MAX as usize) as u32),
        })
    }
}

/// The estimated bytes of one sample record.
pub(crate) fn sample_bytes(stack: StackCapture) -> u64 {
    let stack_bytes = match stack_copy_size(stack) {
        0 => 0,
        n => u64::from(n) + STACK_SAMPLE_EXTRA,
    };
    SAMPLE_FIXED_BYTES + 8 * TYPICAL_CALLCHAIN + stack_bytes
}

/// Sizes the buffers for `cpus` CPUs at `frequency` Hz, starting from the
/// caller's hint of `hint_pages` data pages.
pub(crate) fn ring_size(
    frequency: u32,
    stack: StackCapture,
    hint_pages: usize,
    cpus: usize,
    page_size: usize,
) -> RingSize {
    let page = page_size.max(1) as u64;
    let per_second = u64::from(frequency.max(1)) * sample_bytes(stack);
    let hint = (hint_pages.max(1) as u64).next_power_of_two();
    let wanted = (per_second / 12).div_ceil(page).next_power_of_two();
    let budget = TOTAL_BUDGET_BYTES / page / (cpus.max(1) as u64);
    let budget = if budget.is_power_of_two() {
        budget
    } else {
        (budget.next_power_of_two() / 2).max(1)
    };
    let pages = wanted.min(budget).max(hint);
    let bytes = pages * page;
    let watermark = (per_second / 32)
        .min(bytes / 4)
        .max(page)
        .min(u64::from(u32::MAX));
    RingSize {
        data_pages: pages as usize,
        watermark: watermark as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callchains_keep_the_hint() {
        let size = ring_size(999, StackCapture::Callchain, 256, 2, 4096);
        assert_eq!(size.data_pages, 256);
        assert!(u64::from(size.watermark) * 2 < 999 * sample_bytes(StackCapture::Callchain));
    }

    #[test]
    fn stack_copies_get_a_twelfth_of_a_second_and_wake_four_times_per_buffer() {
        let stack = StackCapture::RegsAndStack { size: 32768 };
        let size = ring_size(999, stack, 256, 2, 4096);
        let bytes = size.data_pages as u64 * 4096;
        assert!(size.data_pages.is_power_of_two());
        assert!(bytes >= 999 * sample_bytes(stack) / 12);
        assert_eq!(bytes, 4 << 20);
        assert!(u64::from(size.watermark) <= bytes / 4);
    }

    #[test]
    fn halving_keeps_the_watermark_inside_the_buffer() {
        let size = ring_size(
            999,
            StackCapture::RegsAndStack { size: 16384 },
            256,
            2,
            4096,
        );
        let half = size.halved(4096).unwrap();
        assert_eq!(half.data_pages, size.data_pages / 2);
        assert!(half.watermark as usize <= half.data_pages * 4096 / 4);
        let one = RingSize {
            data_pages: 1,
            watermark: 4096,
        };
        assert_eq!(one.halved(4096), None);
        let two = RingSize {
            data_pages: 2,
            watermark: 4096,
        };
        assert_eq!(two.halved(4096).unwrap().watermark, 2048);
    }

    #[test]
    fn many_cpus_share_a_budget_but_keep_the_hint() {
        let stack = StackCapture::RegsAndStack { size: 65528 };
        let size = ring_size(10_000, stack, 64, 1024, 4096);
        assert_eq!(size.data_pages, 128);
        let tiny = ring_size(999, stack, 1024, 1024, 4096);
        assert_eq!(tiny.data_pages, 1024);
    }
}
