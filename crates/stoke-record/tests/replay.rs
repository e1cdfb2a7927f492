//! Replayed event streams: the aggregator is a function of its events and
//! of the process facts it is given, so hand-built streams check what each
//! event kind does to the counted stacks.

use stoke_model::{Avma, FrameAddress, Mapping, MappingKind, Pid, Registers, Tid};
use stoke_record::{
    Aggregator, ModuleUnavailable, RawFrame, ReplayFacts, ThreadKey, TruncationReason, UnwindMode,
};
use stoke_sample::{Event, Sample, StackBytes};

/// Pids far above any real one, so nothing live could answer for them.
const P: Pid = Pid(4_000_001);
const CHILD: Pid = Pid(4_000_002);

fn file_map(start: u64, end: u64, file_offset: u64, path: &str, inode: u64) -> Mapping {
    Mapping {
        start: Avma(start),
        end: Avma(end),
        file_offset,
        kind: MappingKind::File(path.into()),
        dev: 0x803,
        inode,
        build_id: None,
        executable: true,
    }
}

fn mmap(pid: Pid, mapping: Mapping) -> Event {
    Event::Mmap {
        pid,
        tid: Tid(pid.0),
        mapping,
    }
}

fn comm(pid: Pid, tid: u32, name: &str, exec: bool) -> Event {
    Event::Comm {
        pid,
        tid: Tid(tid),
        name: name.into(),
        exec,
    }
}

fn exit(pid: Pid, tid: u32) -> Event {
    Event::Exit { pid, tid: Tid(tid) }
}

/// A frame-pointer sample: user addresses leaf first.
fn sample(pid: Pid, tid: u32, user: &[u64]) -> Event {
    Event::Sample(Sample {
        pid,
        tid: Tid(tid),
        user_callchain: user.to_vec(),
        ..Sample::default()
    })
}

fn replay(facts: ReplayFacts, events: Vec<Event>) -> Aggregator {
    let mut aggregator = Aggregator::with_facts(UnwindMode::FramePointer, Box::new(facts));
    for event in events {
        aggregator.handle(event);
    }
    aggregator
}

/// Each counted stack as readable text, root first: `name:tid;frame;frame N`.
fn folded(aggregator: &Aggregator) -> Vec<String> {
    let mut lines: Vec<String> = aggregator
        .stacks()
        .into_iter()
        .map(|(thread, frames, n)| {
            let names: Vec<String> = frames
                .iter()
                .rev()
                .map(|f| frame_name(aggregator, f))
                .collect();
            format!("{};{} {n}", thread_name(thread), names.join(";"))
        })
        .collect();
    lines.sort();
    lines
}

fn thread_name(thread: &ThreadKey) -> String {
    format!(
        "{}/{}:{}",
        thread.process_name.as_deref().unwrap_or("?"),
        thread.thread_name.as_deref().unwrap_or("?"),
        thread.tid.0
    )
}

fn frame_name(aggregator: &Aggregator, frame: &RawFrame) -> String {
    match frame {
        RawFrame::Module(m, a) => format!(
            "{}+{:#x}",
            aggregator.module_path(*m).unwrap().display(),
            a.address()
        ),
        RawFrame::Unmapped(a) => format!("unmapped@{:#x}", a.address()),
        RawFrame::Truncated(r) => format!("[truncated: {r}]"),
        other => format!("{other:?}"),
    }
}

#[test]
fn frames_are_file_offsets_of_the_mapped_module() {
    let a = replay(
        ReplayFacts::new(),
        vec![
            comm(P, P.0, "app", true),
            mmap(P, file_map(0x40_0000, 0x40_2000, 0x1000, "/bin/app", 1)),
            mmap(P, file_map(0x7f00_0000, 0x7f00_1000, 0, "/lib/libc.so", 2)),
            sample(P, P.0, &[0x7f00_0010, 0x40_0100]),
            sample(P, P.0, &[0x7f00_0010, 0x40_0100]),
            sample(P, P.0, &[0x40_1000]),
        ],
    );
    assert_eq!(
        folded(&a),
        [
            // Return addresses keep their value; they are looked up at -1 later.
            "app/app:4000001;/bin/app+0x1100;/lib/libc.so+0x10 2",
            "app/app:4000001;/bin/app+0x2000 1",
        ]
    );
    assert_eq!(a.samples(), 3);
    assert_eq!(a.distinct_stacks(), 2);
}

#[test]
fn a_forked_child_inherits_its_parents_mappings_and_names_until_it_execs() {
    let a = replay(
        ReplayFacts::new(),
        vec![
            comm(P, P.0, "shell", true),
            mmap(P, file_map(0x1000, 0x2000, 0, "/bin/sh", 1)),
            Event::Fork {
                pid: CHILD,
                ppid: P,
                tid: Tid(CHILD.0),
                ptid: Tid(P.0),
            },
            sample(CHILD, CHILD.0, &[0x1010]),
            comm(CHILD, CHILD.0, "tool", true),
            // After exec the shell's mappings are gone from the child.
            sample(CHILD, CHILD.0, &[0x1010]),
            mmap(CHILD, file_map(0x1000, 0x3000, 0, "/bin/tool", 3)),
            sample(CHILD, CHILD.0, &[0x1010]),
        ],
    );
    assert_eq!(
        folded(&a),
        [
            "shell/shell:4000002;/bin/sh+0x10 1",
            "tool/tool:4000002;/bin/tool+0x10 1",
            "tool/tool:4000002;unmapped@0x1010 1",
        ]
    );
}

#[test]
fn a_mapping_replaced_at_the_same_address_names_the_new_module() {
    // dlclose then dlopen of another library at the same place: no unmap
    // event exists; the new mapping replaces what it overlaps.
    let a = replay(
        ReplayFacts::new(),
        vec![
            comm(P, P.0, "app", true),
            mmap(P, file_map(0x5000, 0x6000, 0, "/lib/one.so", 4)),
            sample(P, P.0, &[0x5020]),
            mmap(P, file_map(0x5000, 0x6000, 0, "/lib/two.so", 5)),
            sample(P, P.0, &[0x5020]),
        ],
    );
    assert_eq!(
        folded(&a),
        [
            "app/app:4000001;/lib/one.so+0x20 1",
            "app/app:4000001;/lib/two.so+0x20 1",
        ]
    );
}

#[test]
fn a_pid_seen_again_after_its_exit_starts_fresh() {
    let a = replay(
        ReplayFacts::new(),
        vec![
            comm(P, P.0, "old", true),
            comm(P, P.0 + 1, "old-worker", false),
            mmap(P, file_map(0x1000, 0x2000, 0, "/bin/old", 1)),
            sample(P, P.0, &[0x1010]),
            exit(P, P.0 + 1),
            exit(P, P.0),
            // The kernel hands the pid to an unrelated process, whose
            // mappings stoke has not been told of yet.
            sample(P, P.0, &[0x1010]),
            sample(P, P.0 + 1, &[0x1010]),
        ],
    );
    assert_eq!(
        folded(&a),
        [
            "?/?:4000001;unmapped@0x1010 1",
            "?/?:4000002;unmapped@0x1010 1",
            "old/old:4000001;/bin/old+0x10 1",
        ]
    );
}

#[test]
fn missing_mappings_and_names_are_asked_of_the_process_facts() {
    let facts = ReplayFacts::new().thread(Tid(P.0), "attached").maps(
        P,
        vec![file_map(0x9000, 0xa000, 0x2000, "/bin/attached", 7)],
    );
    let a = replay(facts, vec![sample(P, P.0, &[0x9004])]);
    assert_eq!(
        folded(&a),
        ["attached/attached:4000001;/bin/attached+0x2004 1"]
    );
}

#[test]
fn a_module_that_cannot_be_read_is_kept_with_the_reason() {
    let gone = ModuleUnavailable {
        reason: TruncationReason::ModuleUnreadable,
        errno: Some(libc::EACCES),
    };
    let exe = std::env::current_exe().unwrap();
    let facts = ReplayFacts::new()
        .module_unavailable("/lib/secret.so", gone)
        .module_file("/bin/app", &exe);
    let a = replay(
        facts,
        vec![
            comm(P, P.0, "app", true),
            mmap(P, file_map(0x1000, 0x2000, 0, "/bin/app", 1)),
            mmap(P, file_map(0x8000, 0x9000, 0, "/lib/secret.so", 2)),
            sample(P, P.0, &[0x8010, 0x1020]),
        ],
    );
    // The frame keeps its module and offset (named `secret.so+0x10` later).
    assert_eq!(
        folded(&a),
        ["app/app:4000001;/bin/app+0x20;/lib/secret.so+0x10 1"]
    );
    let (_, frames, _) = a.stacks()[0];
    let module = |i: usize| match frames[i] {
        RawFrame::Module(m, _) => m,
        ref other => panic!("not a module frame: {other:?}"),
    };
    assert_eq!(a.module_unavailable(module(0)), Some(gone));
    assert_eq!(a.module_unavailable(module(1)), None);
}

#[test]
fn a_truncated_stack_is_counted_under_its_reason() {
    // DWARF unwinding from registers in a module whose file cannot be read.
    let mut a = Aggregator::with_facts(UnwindMode::Dwarf, Box::new(ReplayFacts::new()));
    a.handle(comm(P, P.0, "app", true));
    a.handle(mmap(
        P,
        file_map(0x1000, 0x2000, 0, "/nonexistent/stoke-replay.so", 9),
    ));
    let stack = StackBytes {
        start: 0x7ff0_0000,
        bytes: vec![0; 64],
        hit_limit: false,
    };
    for _ in 0..3 {
        a.handle(Event::Sample(Sample {
            pid: P,
            tid: Tid(P.0),
            user_regs: Some(Registers::new(0x1010, 0x7ff0_0000, 0x7ff0_0010)),
            user_stack: Some(stack.clone()),
            ..Sample::default()
        }));
    }
    let stats = a.stats();
    assert_eq!(stats.samples, 3);
    assert_eq!(stats.truncated.len(), 1, "{:?}", stats.truncated);
    let (reason, count) = stats.truncated[0];
    assert_eq!(count, 3);
    let stacks = a.stacks();
    assert_eq!(stacks.len(), 1);
    let (_, frames, n) = stacks[0];
    assert_eq!(n, 3);
    assert_eq!(frames.last(), Some(&RawFrame::Truncated(reason)));
    assert!(
        matches!(
            frames.first(),
            Some(RawFrame::Module(_, FrameAddress::InstructionPointer(0x10)))
        ),
        "{frames:?}"
    );
}

#[test]
fn a_module_that_is_not_the_mapped_file_truncates_as_a_mismatch_and_lost_records_count() {
    let replaced = ModuleUnavailable {
        reason: TruncationReason::ModuleMismatch,
        errno: None,
    };
    let facts = ReplayFacts::new().module_unavailable("/srv/app", replaced);
    let mut a = Aggregator::with_facts(UnwindMode::Dwarf, Box::new(facts));
    a.handle(comm(P, P.0, "app", true));
    a.handle(mmap(P, file_map(0x1000, 0x2000, 0, "/srv/app", 3)));
    a.handle(Event::Lost { count: 5 });
    a.handle(Event::Sample(Sample {
        pid: P,
        tid: Tid(P.0),
        user_regs: Some(Registers::new(0x1010, 0x7ff0_0000, 0x7ff0_0010)),
        user_stack: Some(StackBytes {
            start: 0x7ff0_0000,
            bytes: vec![0; 64],
            hit_limit: false,
        }),
        ..Sample::default()
    }));
    let stats = a.stats();
    assert_eq!(stats.lost, 5);
    // Said as such, not as an address outside any module.
    assert_eq!(stats.truncated, [(TruncationReason::ModuleMismatch, 1)]);
    let (_, frames, _) = a.stacks()[0];
    let RawFrame::Module(module, _) = frames[0] else {
        panic!("{frames:?}")
    };
    assert_eq!(a.module_unavailable(module), Some(replaced));
}

#[test]
fn a_sample_inside_execve_is_the_kernel_work_for_the_new_program_not_a_truncation() {
    let mut a = Aggregator::with_facts(UnwindMode::Dwarf, Box::new(ReplayFacts::new()));
    let stack = StackBytes {
        start: 0x7ff0_0000,
        bytes: vec![0; 64],
        hit_limit: false,
    };
    // In the kernel, with the user registers of the program before exec.
    let in_kernel = |kernel: bool| {
        Event::Sample(Sample {
            pid: CHILD,
            tid: Tid(CHILD.0),
            kernel_stack: if kernel {
                vec![0xffff_ffff_8100_0000, 0xffff_ffff_8100_0100]
            } else {
                Vec::new()
            },
            user_regs: Some(Registers::new(0x1010, 0x7ff0_0000, 0)),
            user_stack: Some(stack.clone()),
            ..Sample::default()
        })
    };
    a.handle(comm(CHILD, CHILD.0, "sh", true));
    a.handle(mmap(CHILD, file_map(0x1000, 0x2000, 0, "/bin/sh", 1)));
    a.handle(comm(CHILD, CHILD.0, "tool", true));
    a.handle(in_kernel(true));
    a.handle(in_kernel(true));
    let stats = a.stats();
    assert!(stats.truncated.is_empty(), "{:?}", stats.truncated);
    let stacks = a.stacks();
    assert_eq!(stacks.len(), 1, "{:?}", folded(&a));
    let (thread, frames, n) = stacks[0];
    assert_eq!((thread.process_name.as_deref(), n), (Some("tool"), 2));
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert!(
        frames.iter().all(|f| matches!(f, RawFrame::Kernel(_))),
        "{frames:?}"
    );

    // Once the new program has run in user mode, an address outside its
    // modules is a truncation again, in the kernel or not.
    a.handle(in_kernel(false));
    a.handle(in_kernel(true));
    let stats = a.stats();
    assert_eq!(
        stats.truncated,
        [(TruncationReason::NoModule, 2)],
        "{:?}",
        folded(&a)
    );
}

/// The executable mapping of this test binary, as the kernel reports it.
fn own_code_mapping() -> Mapping {
    let exe = std::fs::read_link("/proc/self/exe").unwrap();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps
        .lines()
        .find(|l| l.contains(" r-xp ") && l.ends_with(exe.to_str().unwrap()))
        .expect("the test binary's code mapping");
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (start, end) = fields[0].split_once('-').unwrap();
    let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
    let mut mapping = file_map(hex(start), hex(end), hex(fields[2]), "/srv/own", 0);
    mapping.dev = 0;
    mapping
}

#[inline(never)]
fn a_function_with_cfi() -> u64 {
    std::hint::black_box(7)
}

#[test]
fn a_stack_copy_cut_short_by_the_kernel_is_told_apart_from_one_too_small() {
    let exe = std::fs::read_link("/proc/self/exe").unwrap();
    let facts = ReplayFacts::new().module_file("/srv/own", exe);
    let mut a = Aggregator::with_facts(UnwindMode::Dwarf, Box::new(facts));
    a.handle(comm(P, P.0, "own", true));
    a.handle(mmap(P, own_code_mapping()));
    // At the function's first instruction its return address is at rsp,
    // which the empty copy does not hold.
    let ip = a_function_with_cfi as *const () as u64;
    let sample = |hit_limit: bool| {
        Event::Sample(Sample {
            pid: P,
            tid: Tid(P.0),
            user_regs: Some(Registers::new(ip, 0x7ff0_0000, 0)),
            user_stack: Some(StackBytes {
                start: 0x7ff0_0000,
                bytes: Vec::new(),
                hit_limit,
            }),
            ..Sample::default()
        })
    };
    a.handle(sample(true));
    a.handle(sample(false));
    a.handle(sample(false));
    let mut truncated = a.stats().truncated;
    truncated.sort();
    assert_eq!(
        truncated,
        [
            (TruncationReason::StackCopyExhausted, 1),
            (TruncationReason::StackCopyCut, 2)
        ]
    );
}
