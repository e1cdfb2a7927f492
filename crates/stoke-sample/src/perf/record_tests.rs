//! The record parser on synthetic records.

use super::*;
use crate::sys::ring::unread_spans;

/// Builds a record: fields appended in order, header filled in by `finish`.
struct Rec(Vec<u8>);

impl Rec {
    fn new() -> Rec {
        Rec(vec![0; HEADER_SIZE])
    }
    fn u8(mut self, v: u8) -> Rec {
        self.0.push(v);
        self
    }
    fn u16(mut self, v: u16) -> Rec {
        self.0.extend(v.to_ne_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Rec {
        self.0.extend(v.to_ne_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Rec {
        self.0.extend(v.to_ne_bytes());
        self
    }
    fn bytes(mut self, b: &[u8]) -> Rec {
        self.0.extend_from_slice(b);
        self
    }
    /// A NUL-terminated string padded to 8 bytes, as the kernel writes it.
    fn string(mut self, s: &str) -> Rec {
        self.0.extend(s.as_bytes());
        self.0.push(0);
        let padded = self.0.len().div_ceil(8) * 8;
        self.0.resize(padded, 0);
        self
    }
    /// The `sample_id` trailer (pid/tid, time, cpu, identifier).
    fn trailer(self) -> Rec {
        self.u32(1).u32(1).u64(5).u32(0).u32(0).u64(77)
    }
    fn finish(mut self, kind: u32, misc: u16) -> Vec<u8> {
        let size = self.0.len() as u16;
        self.0[..4].copy_from_slice(&kind.to_ne_bytes());
        self.0[4..6].copy_from_slice(&misc.to_ne_bytes());
        self.0[6..8].copy_from_slice(&size.to_ne_bytes());
        self.0
    }
}

const CALLCHAIN_LAYOUT: Layout = Layout {
    sample_type: sample::IDENTIFIER
        | sample::IP
        | sample::TID
        | sample::TIME
        | sample::CPU
        | sample::PERIOD
        | sample::CALLCHAIN,
};

const STACK_LAYOUT: Layout = Layout {
    sample_type: CALLCHAIN_LAYOUT.sample_type | sample::REGS_USER | sample::STACK_USER,
};

fn sample_head(ips: &[u64]) -> Rec {
    let mut r = Rec::new()
        .u64(0xabc) // identifier
        .u64(0xffff_ffff_8100_0000) // ip
        .u32(100)
        .u32(101)
        .u64(123_456_789)
        .u32(1)
        .u32(0)
        .u64(1_001_001)
        .u64(ips.len() as u64);
    for &ip in ips {
        r = r.u64(ip);
    }
    r
}

fn callchain_sample() -> Vec<u8> {
    sample_head(&[
        CONTEXT_KERNEL,
        0xffff_ffff_8100_0000,
        0xffff_ffff_8100_1000,
        CONTEXT_USER,
        0x40_1000,
        0x40_2000,
        0x40_3000,
    ])
    .finish(kind::SAMPLE, 0)
}

fn expect_sample(event: Option<Event>) -> Sample {
    match event {
        Some(Event::Sample(s)) => s,
        other => panic!("expected a sample, got {other:?}"),
    }
}

#[test]
fn callchains_split_at_context_markers() {
    let record = callchain_sample();
    let s = expect_sample(parse(&CALLCHAIN_LAYOUT, &record));
    assert_eq!((s.pid, s.tid, s.cpu), (Pid(100), Tid(101), 1));
    assert_eq!((s.time, s.period), (123_456_789, 1_001_001));
    assert_eq!(
        s.kernel_stack,
        [0xffff_ffff_8100_0000, 0xffff_ffff_8100_1000]
    );
    assert_eq!(s.user_callchain, [0x40_1000, 0x40_2000, 0x40_3000]);
    assert!(s.user_regs.is_none() && s.user_stack.is_none());
    assert_eq!(sample_identifier(&CALLCHAIN_LAYOUT, &record), Some(0xabc));
}

#[test]
fn guest_and_hypervisor_frames_are_dropped() {
    let hv = -32i64 as u64;
    let record = sample_head(&[hv, 0x1, CONTEXT_USER, 0x2]).finish(kind::SAMPLE, 0);
    let s = expect_sample(parse(&CALLCHAIN_LAYOUT, &record));
    assert!(s.kernel_stack.is_empty());
    assert_eq!(s.user_callchain, [0x2]);
}

fn stack_sample(abi: u64, stack: &[u8], dyn_size: u64) -> Vec<u8> {
    let mut r = sample_head(&[CONTEXT_USER, 0x40_1000]).u64(abi);
    if abi != 0 {
        for i in 0..17u64 {
            r = r.u64(0x1000 + i);
        }
    }
    r = r.u64(stack.len() as u64);
    if !stack.is_empty() {
        r = r.bytes(stack).u64(dyn_size);
    }
    r.finish(kind::SAMPLE, 0)
}

#[test]
fn user_registers_are_renumbered_for_dwarf() {
    let stack: Vec<u8> = (0..64).collect();
    let s = expect_sample(parse(&STACK_LAYOUT, &stack_sample(2, &stack, 24)));
    let regs = s.user_regs.expect("registers");
    // perf order: AX BX CX DX SI DI BP SP IP R8..R15
    assert_eq!(regs.get(DwarfReg::Rax), Some(0x1000));
    assert_eq!(regs.get(DwarfReg::Rbx), Some(0x1001));
    assert_eq!(regs.get(DwarfReg::Rdx), Some(0x1003));
    assert_eq!(regs.sp(), 0x1007);
    assert_eq!(regs.ip(), 0x1008);
    assert_eq!(regs.get(DwarfReg::R8), Some(0x1009));
    assert_eq!(regs.get(DwarfReg::R15), Some(0x1010));
    let bytes = s.user_stack.expect("stack");
    assert_eq!(bytes.start, 0x1007);
    assert_eq!(bytes.bytes, &stack[..24]);
    assert!(!bytes.hit_limit);
    assert_eq!(
        bytes.read_u64(0x1007),
        Some(u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]))
    );
}

#[test]
fn full_stack_copies_hit_the_limit() {
    let s = expect_sample(parse(&STACK_LAYOUT, &stack_sample(2, &[7; 32], 32)));
    assert!(s.user_stack.expect("stack").hit_limit);
}

#[test]
fn kernel_threads_have_no_user_registers() {
    let s = expect_sample(parse(&STACK_LAYOUT, &stack_sample(0, &[], 0)));
    assert!(s.user_regs.is_none());
    assert!(s.user_stack.is_none());
}

fn mmap2(misc: u16, prot: u32, name: &str) -> Vec<u8> {
    let r = Rec::new()
        .u32(10)
        .u32(11)
        .u64(0x7f00_0000_0000)
        .u64(0x2000)
        .u64(0x1000);
    let r = if misc & MISC_MMAP_BUILD_ID != 0 {
        let mut id = [0u8; 20];
        id.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
        r.u8(20).u8(0).u16(0).bytes(&id)
    } else {
        r.u32(8).u32(1).u64(4242).u64(0)
    };
    r.u32(prot)
        .u32(2)
        .string(name)
        .trailer()
        .finish(kind::MMAP2, misc)
}

#[test]
fn mmap2_records_carry_build_ids() {
    let event = parse(
        &CALLCHAIN_LAYOUT,
        &mmap2(MISC_MMAP_BUILD_ID, 5, "/usr/lib/libc.so.6"),
    );
    let Some(Event::Mmap { pid, tid, mapping }) = event else {
        panic!("expected a mapping, got {event:?}");
    };
    assert_eq!((pid, tid), (Pid(10), Tid(11)));
    assert_eq!(
        (mapping.start, mapping.end),
        (Avma(0x7f00_0000_0000), Avma(0x7f00_0000_2000))
    );
    assert_eq!(mapping.file_offset, 0x1000);
    assert_eq!(mapping.kind, MappingKind::File("/usr/lib/libc.so.6".into()));
    assert_eq!(
        mapping.build_id.unwrap().to_string(),
        "000102030405060708090a0b0c0d0e0f10111213"
    );
    assert_eq!((mapping.dev, mapping.inode), (0, 0));
}

#[test]
fn mmap2_records_carry_device_and_inode() {
    let event = parse(&CALLCHAIN_LAYOUT, &mmap2(0, 5, "[vdso]"));
    let Some(Event::Mmap { mapping, .. }) = event else {
        panic!("expected a mapping, got {event:?}");
    };
    assert_eq!(mapping.kind, MappingKind::Vdso);
    assert_eq!((mapping.dev, mapping.inode), (makedev(8, 1), 4242));
    assert!(mapping.build_id.is_none());
    assert!(
        parse(&CALLCHAIN_LAYOUT, &mmap2(0, 3, "/data")).is_none(),
        "not executable"
    );
    let anon = parse(&CALLCHAIN_LAYOUT, &mmap2(0, 7, "//anon"));
    assert!(
        matches!(anon, Some(Event::Mmap { mapping, .. }) if mapping.kind == MappingKind::Anonymous)
    );
}

#[test]
fn comm_records_say_whether_they_come_from_exec() {
    let record = |misc| {
        Rec::new()
            .u32(7)
            .u32(8)
            .string("sh")
            .trailer()
            .finish(kind::COMM, misc)
    };
    let event = parse(&CALLCHAIN_LAYOUT, &record(MISC_COMM_EXEC));
    assert!(
        matches!(&event, Some(Event::Comm { pid: Pid(7), tid: Tid(8), name, exec: true }) if name == "sh"),
        "{event:?}"
    );
    let event = parse(&CALLCHAIN_LAYOUT, &record(0));
    assert!(
        matches!(event, Some(Event::Comm { exec: false, .. })),
        "{event:?}"
    );
}

#[test]
fn fork_exit_and_lost_records() {
    let task = |kind| {
        Rec::new()
            .u32(1)
            .u32(2)
            .u32(3)
            .u32(4)
            .u64(9)
            .trailer()
            .finish(kind, 0)
    };
    let fork = parse(&CALLCHAIN_LAYOUT, &task(kind::FORK));
    assert!(matches!(
        fork,
        Some(Event::Fork {
            pid: Pid(1),
            ppid: Pid(2),
            tid: Tid(3),
            ptid: Tid(4)
        })
    ));
    let exit = parse(&CALLCHAIN_LAYOUT, &task(kind::EXIT));
    assert!(matches!(
        exit,
        Some(Event::Exit {
            pid: Pid(1),
            tid: Tid(3)
        })
    ));
    let lost = Rec::new().u64(55).u64(12).trailer().finish(kind::LOST, 0);
    assert!(matches!(
        parse(&CALLCHAIN_LAYOUT, &lost),
        Some(Event::Lost { count: 12 })
    ));
    let lost = Rec::new().u64(3).trailer().finish(kind::LOST_SAMPLES, 0);
    assert!(matches!(
        parse(&CALLCHAIN_LAYOUT, &lost),
        Some(Event::Lost { count: 3 })
    ));
}

#[test]
fn unknown_records_are_skipped_by_size() {
    let mut stream = Rec::new().u64(1).u64(2).finish(99, 0);
    stream.extend(Rec::new().u32(7).u32(7).string("x").finish(kind::COMM, 0));
    let mut events = Vec::new();
    split_records(&stream, |r| events.push(parse(&CALLCHAIN_LAYOUT, r)));
    assert_eq!(events.len(), 2);
    assert!(events[0].is_none());
    assert!(matches!(&events[1], Some(Event::Comm { name, .. }) if name == "x"));
}

#[test]
fn a_record_wrapping_the_ring_end_parses_whole() {
    // A 64-byte data area; the sample starts 16 bytes before the end.
    let record = callchain_sample();
    let size = 128;
    let tail = 3 * size as u64 - 16;
    let mut area = vec![0u8; size];
    for (i, b) in record.iter().enumerate() {
        area[(tail as usize + i) % size] = *b;
    }
    let head = tail + record.len() as u64;
    let (a, b) = unread_spans(tail, head, size);
    assert!(!b.is_empty(), "the record should wrap");
    let mut linear = area[a].to_vec();
    linear.extend_from_slice(&area[b]);
    let mut samples = Vec::new();
    split_records(&linear, |r| {
        samples.push(expect_sample(parse(&CALLCHAIN_LAYOUT, r)))
    });
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].user_callchain, [0x40_1000, 0x40_2000, 0x40_3000]);
}

#[test]
fn short_and_garbage_records_never_panic() {
    let records = [
        callchain_sample(),
        stack_sample(2, &[1; 40], 16),
        mmap2(MISC_MMAP_BUILD_ID, 5, "/bin/x"),
        mmap2(0, 5, "/bin/x"),
    ];
    for record in &records {
        for len in 0..record.len() {
            let mut cut = record[..len].to_vec();
            if len >= HEADER_SIZE {
                cut[6..8].copy_from_slice(&(len as u16).to_ne_bytes());
            }
            let _ = parse(&STACK_LAYOUT, &cut);
            let _ = parse(&CALLCHAIN_LAYOUT, &cut);
            split_records(&cut, |r| drop(parse(&STACK_LAYOUT, r)));
        }
    }
    // Pseudo-random bytes with plausible headers.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..5000 {
        let len = (next() % 200) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if len >= HEADER_SIZE {
            let kind = [1u32, 2, 3, 4, 7, 9, 10, 13][(next() % 8) as usize];
            bytes[..4].copy_from_slice(&kind.to_ne_bytes());
        }
        split_records(&bytes, |r| drop(parse(&STACK_LAYOUT, r)));
        let _ = parse(&CALLCHAIN_LAYOUT, &bytes);
    }
}

#[test]
fn records_are_timed_from_the_sample_or_the_trailer() {
    let comm = Rec::new()
        .u32(7)
        .u32(8)
        .string("sh")
        .trailer()
        .finish(kind::COMM, 0);
    assert_eq!(record_time(&CALLCHAIN_LAYOUT, &comm), Some(5));
    let sample = callchain_sample();
    let parsed = expect_sample(parse(&CALLCHAIN_LAYOUT, &sample));
    assert_eq!(record_time(&CALLCHAIN_LAYOUT, &sample), Some(parsed.time));
    assert_eq!(record_time(&CALLCHAIN_LAYOUT, &sample[..12]), None);
}
