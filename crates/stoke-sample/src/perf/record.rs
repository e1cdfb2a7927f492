//! Parsing perf records into [`Event`]s.
//!
//! Input is one record as bytes (header included), linearized by the ring
//! reader. A record that is too short or inconsistent yields `None`; nothing
//! here panics on garbage.

use std::path::PathBuf;

use stoke_model::{Avma, BuildId, DwarfReg, Mapping, MappingKind, Pid, Registers, Tid};

use super::attr::{sample, X86_64_USER_REGS};
use super::cursor::Cursor;
use crate::{Event, Sample, StackBytes};

/// `PERF_RECORD_*` types.
mod kind {
    pub(super) const MMAP: u32 = 1;
    pub(super) const LOST: u32 = 2;
    pub(super) const COMM: u32 = 3;
    pub(super) const EXIT: u32 = 4;
    pub(super) const FORK: u32 = 7;
    pub(super) const SAMPLE: u32 = 9;
    pub(super) const MMAP2: u32 = 10;
    pub(super) const LOST_SAMPLES: u32 = 13;
    pub(super) const SWITCH: u32 = 14;
    pub(super) const SWITCH_CPU_WIDE: u32 = 15;
}

/// `PERF_RECORD_MISC_COMM_EXEC` (in COMM records).
const MISC_COMM_EXEC: u16 = 1 << 13;
/// `PERF_RECORD_MISC_MMAP_BUILD_ID` (in MMAP2 records).
const MISC_MMAP_BUILD_ID: u16 = 1 << 14;
/// `PERF_RECORD_MISC_MMAP_DATA` (in MMAP records): not executable.
const MISC_MMAP_DATA: u16 = 1 << 13;

/// `PERF_CONTEXT_*` callchain markers.
const CONTEXT_KERNEL: u64 = -128i64 as u64;
const CONTEXT_USER: u64 = -512i64 as u64;
/// Values at or above this are markers, not addresses.
const CONTEXT_MAX: u64 = -4095i64 as u64;

/// `PROT_EXEC` in MMAP2 records.
const PROT_EXEC: u32 = 0x4;

/// The size of a record header.
pub(crate) const HEADER_SIZE: usize = 8;

/// DWARF numbers of the registers in [`X86_64_USER_REGS`], in the order the
/// kernel writes them (AX BX CX DX SI DI BP SP IP R8..R15).
const PERF_TO_DWARF: [DwarfReg; 17] = [
    DwarfReg::Rax,
    DwarfReg::Rbx,
    DwarfReg::Rcx,
    DwarfReg::Rdx,
    DwarfReg::Rsi,
    DwarfReg::Rdi,
    DwarfReg::Rbp,
    DwarfReg::Rsp,
    DwarfReg::Rip,
    DwarfReg::R8,
    DwarfReg::R9,
    DwarfReg::R10,
    DwarfReg::R11,
    DwarfReg::R12,
    DwarfReg::R13,
    DwarfReg::R14,
    DwarfReg::R15,
];

/// How the sampler's events lay their records out.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    /// The `PERF_SAMPLE_*` bits.
    pub(crate) sample_type: u64,
}

/// The fixed part of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// `PERF_RECORD_*`.
    pub(crate) kind: u32,
    /// `misc` flags.
    pub(crate) misc: u16,
    /// Total size in bytes, header included.
    pub(crate) size: u16,
}

/// Reads the header at the start of `bytes`.
pub(crate) fn header(bytes: &[u8]) -> Option<Header> {
    let mut c = Cursor::new(bytes);
    Some(Header {
        kind: c.u32()?,
        misc: c.u16()?,
        size: c.u16()?,
    })
}

/// Splits a linear run of records into records. Stops at the first header
/// whose size is impossible (shorter than a header or past the end).
pub(crate) fn split_records(mut bytes: &[u8], mut each: impl FnMut(&[u8])) {
    while let Some(h) = header(bytes) {
        let size = usize::from(h.size);
        if size < HEADER_SIZE || size > bytes.len() {
            return;
        }
        each(&bytes[..size]);
        bytes = &bytes[size..];
    }
}

/// The `PERF_SAMPLE_IDENTIFIER` of a sample record (the id of the event, or
/// of the event it was inherited from).
pub(crate) fn sample_identifier(layout: &Layout, record: &[u8]) -> Option<u64> {
    let h = header(record)?;
    if h.kind != kind::SAMPLE || layout.sample_type & sample::IDENTIFIER == 0 {
        return None;
    }
    let mut c = Cursor::new(record);
    c.skip(HEADER_SIZE)?;
    c.u64()
}

/// The kernel timestamp of a record: a sample's `TIME` field, or for other
/// records the `TIME` in the `sample_id` trailer that `sample_id_all` appends.
pub(crate) fn record_time(layout: &Layout, record: &[u8]) -> Option<u64> {
    let h = header(record)?;
    let st = layout.sample_type;
    if st & sample::TIME == 0 {
        return None;
    }
    let record = record.get(..usize::from(h.size))?;
    let offset = if h.kind == kind::SAMPLE {
        let before = [sample::IDENTIFIER, sample::IP, sample::TID];
        HEADER_SIZE + 8 * before.iter().filter(|&&bit| st & bit != 0).count()
    } else {
        // The trailer is pid/tid, time, id, stream_id, cpu, identifier,
        // each present when its bit is set: the time is followed by the rest.
        let after = [
            sample::ID,
            sample::STREAM_ID,
            sample::CPU,
            sample::IDENTIFIER,
        ];
        let tail = 8 + 8 * after.iter().filter(|&&bit| st & bit != 0).count();
        record
            .len()
            .checked_sub(tail)
            .filter(|&o| o >= HEADER_SIZE)?
    };
    let mut c = Cursor::new(record);
    c.skip(offset)?;
    c.u64()
}

/// The pid and tid in the `sample_id` trailer of a non-sample record.
pub(crate) fn trailer_task(layout: &Layout, record: &[u8]) -> Option<(Pid, Tid)> {
    let st = layout.sample_type;
    if st & sample::TID == 0 {
        return None;
    }
    let after = [
        sample::TIME,
        sample::ID,
        sample::STREAM_ID,
        sample::CPU,
        sample::IDENTIFIER,
    ];
    let tail = 8 + 8 * after.iter().filter(|&&bit| st & bit != 0).count();
    let offset = record
        .len()
        .checked_sub(tail)
        .filter(|&o| o >= HEADER_SIZE)?;
    let mut c = Cursor::new(record);
    c.skip(offset)?;
    Some((Pid(c.u32()?), Tid(c.u32()?)))
}

/// Parses one record. `None` for records stoke does not use (unknown types,
/// non-executable mappings) and for malformed ones.
pub(crate) fn parse(layout: &Layout, record: &[u8]) -> Option<Event> {
    let h = header(record)?;
    let mut c = Cursor::new(record.get(..usize::from(h.size))?);
    c.skip(HEADER_SIZE)?;
    match h.kind {
        kind::SAMPLE => parse_sample(layout, &mut c).map(Event::Sample),
        kind::MMAP2 => parse_mmap2(h.misc, &mut c),
        kind::MMAP => parse_mmap(h.misc, &mut c),
        kind::COMM => Some(Event::Comm {
            pid: Pid(c.u32()?),
            tid: Tid(c.u32()?),
            name: c.c_string()?,
            exec: h.misc & MISC_COMM_EXEC != 0,
        }),
        kind::FORK => Some(Event::Fork {
            pid: Pid(c.u32()?),
            ppid: Pid(c.u32()?),
            tid: Tid(c.u32()?),
            ptid: Tid(c.u32()?),
        }),
        kind::EXIT => Some(Event::Exit {
            pid: Pid(c.u32()?),
            tid: {
                c.skip(4)?;
                Tid(c.u32()?)
            },
        }),
        kind::LOST => {
            c.skip(8)?;
            Some(Event::Lost { count: c.u64()? })
        }
        kind::LOST_SAMPLES => Some(Event::Lost { count: c.u64()? }),
        // A per-CPU event's records also name the other task (after the
        // header); the `sample_id` trailer is the task switching out (an
        // out record) or in (an in record), as in a per-task record.
        kind::SWITCH | kind::SWITCH_CPU_WIDE => super::switch::parse_switch(layout, h.misc, record),
        _ => None,
    }
}

fn parse_sample(layout: &Layout, c: &mut Cursor<'_>) -> Option<Sample> {
    let st = layout.sample_type;
    let mut s = Sample::default();
    if st & sample::IDENTIFIER != 0 {
        c.skip(8)?;
    }
    if st & sample::IP != 0 {
        c.skip(8)?;
    }
    if st & sample::TID != 0 {
        s.pid = Pid(c.u32()?);
        s.tid = Tid(c.u32()?);
    }
    if st & sample::TIME != 0 {
        s.time = c.u64()?;
    }
    for bit in [sample::ADDR, sample::ID, sample::STREAM_ID] {
        if st & bit != 0 {
            c.skip(8)?;
        }
    }
    if st & sample::CPU != 0 {
        s.cpu = c.u32()?;
        c.skip(4)?;
    }
    if st & sample::PERIOD != 0 {
        s.period = c.u64()?;
    }
    if st & sample::READ != 0 {
        return None; // never requested: its layout depends on read_format
    }
    if st & sample::CALLCHAIN != 0 {
        let nr = c.u64()?;
        let ips = c.bytes(usize::try_from(nr).ok()?.checked_mul(8)?)?;
        split_callchain(ips, &mut s);
    }
    if st & sample::REGS_USER != 0 {
        let abi = c.u64()?;
        if abi != 0 {
            let mut regs = Registers::default();
            for reg in PERF_TO_DWARF
                .iter()
                .take(X86_64_USER_REGS.count_ones() as usize)
            {
                regs.set(*reg, c.u64()?);
            }
            s.user_regs = Some(regs);
        }
    }
    if st & sample::STACK_USER != 0 {
        let size = c.u64()?;
        if size > 0 {
            let bytes = c.bytes(usize::try_from(size).ok()?)?;
            let dyn_size = c.u64()?;
            let used = dyn_size.min(size) as usize;
            s.user_stack = Some(StackBytes {
                start: s.user_regs.map_or(0, |r| r.sp()),
                bytes: bytes[..used].to_vec(),
                hit_limit: dyn_size >= size,
            });
        }
    }
    Some(s)
}

/// Sorts callchain entries into kernel and user frames by the context
/// markers before them, dropping the markers (and hypervisor/guest frames).
fn split_callchain(ips: &[u8], s: &mut Sample) {
    #[derive(PartialEq)]
    enum Context {
        Kernel,
        User,
        Other,
    }
    let mut context = Context::User;
    for chunk in ips.chunks_exact(8) {
        let ip = u64::from_ne_bytes(chunk.try_into().unwrap_or_default());
        match ip {
            CONTEXT_KERNEL => context = Context::Kernel,
            CONTEXT_USER => context = Context::User,
            ip if ip >= CONTEXT_MAX => context = Context::Other,
            ip => match context {
                Context::Kernel => s.kernel_stack.push(ip),
                Context::User => s.user_callchain.push(ip),
                Context::Other => {}
            },
        }
    }
}

fn parse_mmap2(misc: u16, c: &mut Cursor<'_>) -> Option<Event> {
    let pid = Pid(c.u32()?);
    let tid = Tid(c.u32()?);
    let (start, len, file_offset) = (c.u64()?, c.u64()?, c.u64()?);
    let (mut dev, mut inode, mut build_id) = (0, 0, None);
    if misc & MISC_MMAP_BUILD_ID != 0 {
        let size = usize::from(c.u8()?);
        c.skip(3)?;
        let id = c.bytes(20)?;
        build_id = Some(BuildId(id.get(..size)?.to_vec())).filter(|id| !id.0.is_empty());
    } else {
        let (major, minor) = (c.u32()?, c.u32()?);
        dev = makedev(major, minor);
        inode = c.u64()?;
        c.skip(8)?; // ino_generation
    }
    let prot = c.u32()?;
    c.skip(4)?; // flags
    let name = c.c_string()?;
    if prot & PROT_EXEC == 0 {
        return None;
    }
    let mapping = Mapping {
        start: Avma(start),
        end: Avma(start.checked_add(len)?),
        file_offset,
        kind: mapping_kind(&name),
        dev,
        inode,
        build_id,
        executable: true,
    };
    Some(Event::Mmap { pid, tid, mapping })
}

fn parse_mmap(misc: u16, c: &mut Cursor<'_>) -> Option<Event> {
    let pid = Pid(c.u32()?);
    let tid = Tid(c.u32()?);
    let (start, len, file_offset) = (c.u64()?, c.u64()?, c.u64()?);
    let name = c.c_string()?;
    if misc & MISC_MMAP_DATA != 0 {
        return None;
    }
    let mapping = Mapping {
        start: Avma(start),
        end: Avma(start.checked_add(len)?),
        file_offset,
        kind: mapping_kind(&name),
        dev: 0,
        inode: 0,
        build_id: None,
        executable: true,
    };
    Some(Event::Mmap { pid, tid, mapping })
}

/// What a mapping's name (from a record or `/proc/PID/maps`) says it is.
pub(crate) fn mapping_kind(name: &str) -> MappingKind {
    let name = name.strip_suffix(" (deleted)").unwrap_or(name);
    match name {
        "[vdso]" => MappingKind::Vdso,
        "" | "//anon" => MappingKind::Anonymous,
        _ if name.starts_with('[') => MappingKind::Special(name.to_string()),
        _ => MappingKind::File(PathBuf::from(name)),
    }
}

/// `makedev(3)` with glibc's encoding of major and minor numbers.
pub(crate) fn makedev(major: u32, minor: u32) -> u64 {
    let (major, minor) = (u64::from(major), u64::from(minor));
    ((major & 0xffff_f000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0xff)
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
