//! Garbage in, a truncated stack out: random registers, random or corrupted
//! stack bytes and random table bytes never panic and always terminate.

mod common;

use std::sync::Arc;

use common::{Modules, StackCopy, XorShift};
use object::{Object, ObjectSection};
use stoke_model::{DwarfReg, Registers};
use stoke_unwind::{ModuleUnwindInfo, StackEnd, UnwindMode, Unwinder};

/// Rounds multiplier: `STOKE_UNWIND_FUZZ=100 cargo test --release` for a longer run.
fn scale() -> usize {
    std::env::var("STOKE_UNWIND_FUZZ")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// The seed: fixed, unless `STOKE_UNWIND_SEED` says otherwise.
fn seed() -> u64 {
    std::env::var("STOKE_UNWIND_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15)
}

const MODES: [UnwindMode; 3] = [
    UnwindMode::Auto,
    UnwindMode::Dwarf,
    UnwindMode::FramePointer,
];

/// Unwinds with `modules`, asserting only the contract: at most
/// `max_frames` frames, the first one the instruction pointer.
fn check(modules: &Modules, regs: &Registers, stack: &StackCopy, mode: UnwindMode) -> StackEnd {
    let max_frames = 300;
    let mut out = Vec::new();
    let end = Unwinder::new().unwind(
        regs,
        mode,
        &mut |addr| modules.module_ref(addr),
        &mut |addr| stack.read(addr),
        max_frames,
        &mut out,
    );
    assert!(!out.is_empty() && out.len() <= max_frames);
    assert_eq!(out[0].address(), regs.ip());
    end
}

fn random_registers(rng: &mut XorShift, ip: u64, stack: &StackCopy) -> Registers {
    let mut regs = Registers::default();
    for n in 0..=16u16 {
        regs.set_dwarf(n, rng.next());
    }
    regs.set(DwarfReg::Rip, ip);
    // Mostly a plausible stack pointer, sometimes anything.
    if rng.next() & 3 != 0 {
        let offset = rng.next() % (stack.bytes.len() as u64 + 64);
        regs.set(DwarfReg::Rsp, stack.base.wrapping_add(offset) & !7);
    }
    if rng.next() & 1 == 0 {
        let offset = rng.next() % (stack.bytes.len() as u64 + 64);
        regs.set(DwarfReg::Rbp, stack.base.wrapping_add(offset));
    }
    regs
}

#[test]
fn random_registers_and_corrupted_real_stacks_never_panic() {
    let binary = common::build_fixture(
        "unwind_fixture",
        "robustness",
        &["-O2", "-fomit-frame-pointer"],
    );
    let out = common::scratch_dir().join("dumps-robustness");
    common::run_fixture(&binary, &out);
    let dump = common::read_dump(&out, "qsort");
    let modules = Modules::from_maps(&dump.maps);
    let mut rng = XorShift(seed());
    let mut ends = std::collections::HashMap::new();
    for round in 0..3000 * scale() {
        let mut stack = StackCopy {
            base: dump.stack.base,
            bytes: dump.stack.bytes.clone(),
        };
        // Flip a few bytes, or replace the whole copy with noise.
        if round % 5 == 0 {
            stack.bytes.iter_mut().for_each(|b| *b = rng.next() as u8);
        } else {
            for _ in 0..(rng.next() % 16) {
                let i = (rng.next() as usize) % stack.bytes.len();
                stack.bytes[i] = rng.next() as u8;
            }
        }
        let m = &modules.modules[(rng.next() as usize) % modules.modules.len()];
        let ip = match rng.next() % 3 {
            0 => rng.next(),
            _ => m.start + rng.next() % (m.end - m.start),
        };
        let regs = if round % 7 == 0 {
            common::registers(&dump.regs)
        } else {
            random_registers(&mut rng, ip, &stack)
        };
        let end = check(&modules, &regs, &stack, MODES[round % 3]);
        *ends
            .entry(format!("{end:?}").chars().take(30).collect::<String>())
            .or_insert(0) += 1;
    }
    // Noise mostly truncates; the point is that nothing panicked or hung.
    assert!(ends.len() > 1, "{ends:?}");
}

#[test]
fn random_table_bytes_never_panic() {
    let mut rng = XorShift(seed() ^ 42);
    let libc_path = std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("/libc.so"))
        .map(String::from);
    if let Some(path) = libc_path {
        let bytes = std::fs::read(path).unwrap();
        // Truncated ELF files: an error or a module with fewer tables.
        for len in [0, 4, 64, 1000, bytes.len() / 2, bytes.len() - 1] {
            let _ = ModuleUnwindInfo::parse(Arc::new(bytes[..len].to_vec()));
        }
    }
    // Corrupted CFI tables of the fixture, unwinding its real stack dump.
    let binary = common::build_fixture("unwind_fixture", "robustness-cfi", &["-O2"]);
    let out = common::scratch_dir().join("dumps-robustness-cfi");
    common::run_fixture(&binary, &out);
    let dump = common::read_dump(&out, "recursion");
    let modules = Modules::from_maps(&dump.maps);
    let fixture = modules
        .modules
        .iter()
        .find(|m| m.path == binary)
        .expect("fixture mapping");
    let elf = std::fs::read(&binary).unwrap();
    let file = object::File::parse(&*elf).unwrap();
    let cfi: Vec<(usize, usize)> = [".eh_frame", ".eh_frame_hdr"]
        .iter()
        .filter_map(|name| file.section_by_name(name)?.file_range())
        .map(|(o, s)| (o as usize, s as usize))
        .collect();
    assert_eq!(cfi.len(), 2);
    for round in 0..400 * scale() {
        let mut bytes = elf.clone();
        for _ in 0..1 + rng.next() % 8 {
            let (offset, size) = cfi[(rng.next() % 2) as usize];
            bytes[offset + (rng.next() as usize) % size] = rng.next() as u8;
        }
        let Ok(info) = ModuleUnwindInfo::parse(Arc::new(bytes)) else {
            continue;
        };
        let regs = common::registers(&dump.regs);
        let mut out = Vec::new();
        let _ = Unwinder::new().unwind(
            &regs,
            MODES[round % 3],
            &mut |addr| {
                let m = modules.find(addr)?;
                let info = if m.path == fixture.path {
                    &info
                } else {
                    &m.info
                };
                Some(stoke_unwind::ModuleRef { info, bias: m.bias })
            },
            &mut |addr| dump.stack.read(addr),
            300,
            &mut out,
        );
        assert!(out.len() <= 300);
    }
}
