//! Unwinding real stacks: a C fixture built by gcc dumps its registers and
//! stack at two points of interest; the test unwinds the dumps through the
//! fixture's and libc's own CFI (or frame pointers) and checks the frames.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use common::{Dump, Modules};
use stoke_model::FrameAddress;
use stoke_unwind::{StackEnd, UnwindMode, Unwinder};

/// Builds and runs a fixture variant once; returns its dump folder.
fn dumps(variant: &'static str) -> PathBuf {
    static OMIT: OnceLock<PathBuf> = OnceLock::new();
    static KEEP: OnceLock<PathBuf> = OnceLock::new();
    static DEBUG_FRAME: OnceLock<PathBuf> = OnceLock::new();
    let (cell, flags): (_, &[&str]) = match variant {
        "omit-fp" => (&OMIT, &["-O2", "-g", "-fomit-frame-pointer"]),
        "keep-fp" => (&KEEP, &["-O2", "-g", "-fno-omit-frame-pointer"]),
        // CFI for the fixture's own code only in .debug_frame.
        "debug-frame" => (
            &DEBUG_FRAME,
            &[
                "-O2",
                "-g",
                "-fomit-frame-pointer",
                "-fno-asynchronous-unwind-tables",
                "-fno-unwind-tables",
            ],
        ),
        _ => unreachable!(),
    };
    cell.get_or_init(|| {
        let binary = common::build_fixture("unwind_fixture", variant, flags);
        let out = common::scratch_dir().join(format!("dumps-{variant}"));
        common::run_fixture(&binary, &out);
        out
    })
    .clone()
}

/// Unwinds a dump; returns the frames as (file, symbol) and how it ended.
fn unwind(dump: &Dump, mode: UnwindMode) -> (Vec<FrameAddress>, Vec<(String, String)>, StackEnd) {
    let modules = Modules::from_maps(&dump.maps);
    let regs = common::registers(&dump.regs);
    let mut frames = Vec::new();
    let end = Unwinder::new().unwind(
        &regs,
        mode,
        &mut |addr| modules.module_ref(addr),
        &mut |addr| dump.stack.read(addr),
        1024,
        &mut frames,
    );
    let names = frames
        .iter()
        .map(|f| modules.symbolize(f.lookup_address()))
        .collect();
    (frames, names, end)
}

fn describe(names: &[(String, String)], end: &StackEnd) -> String {
    let mut s: Vec<String> = names.iter().map(|(f, n)| format!("{f}:{n}")).collect();
    s.push(format!("{end:?}"));
    s.join("\n")
}

/// The fixture's function names, in order, with consecutive repeats collapsed.
fn collapsed(names: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (file, name) in names {
        let label = if file.starts_with("unwind_fixture") {
            name.clone()
        } else {
            format!("[{file}]")
        };
        if out.last() != Some(&label) {
            out.push(label);
        }
    }
    out
}

#[test]
fn recursion_unwinds_through_every_level_to_start_with_cfi() {
    let dump = common::read_dump(&dumps("omit-fp"), "recursion");
    for mode in [UnwindMode::Dwarf, UnwindMode::Auto] {
        let (frames, names, end) = unwind(&dump, mode);
        let text = describe(&names, &end);
        assert_eq!(end, StackEnd::Complete, "{mode:?}:\n{text}");
        assert!(matches!(frames[0], FrameAddress::InstructionPointer(_)));
        assert!(frames[1..]
            .iter()
            .all(|f| matches!(f, FrameAddress::ReturnAddress(_))));
        let recurse = names.iter().filter(|(_, n)| n == "recurse").count();
        assert_eq!(recurse, 101, "{mode:?}: depth 100..=0\n{text}");
        let libc = if names.iter().any(|(f, _)| f.starts_with("libc.so")) {
            "[libc.so.6]"
        } else {
            "[?]"
        };
        assert_eq!(
            collapsed(&names),
            ["recurse", "main", libc, "_start"],
            "{mode:?}:\n{text}"
        );
    }
}

#[test]
fn qsort_comparator_unwinds_through_libc_to_its_caller() {
    let dump = common::read_dump(&dumps("omit-fp"), "qsort");
    let (_, names, end) = unwind(&dump, UnwindMode::Dwarf);
    let text = describe(&names, &end);
    assert_eq!(end, StackEnd::Complete, "{text}");
    let path = collapsed(&names);
    assert_eq!(
        path,
        [
            "compare_ints",
            "[libc.so.6]",
            "sort_numbers",
            "main",
            "[libc.so.6]",
            "_start"
        ],
        "{text}"
    );
}

#[test]
fn frame_pointers_walk_the_recursion_to_main() {
    let dump = common::read_dump(&dumps("keep-fp"), "recursion");
    let (frames, names, end) = unwind(&dump, UnwindMode::FramePointer);
    let text = describe(&names, &end);
    assert!(frames.len() > 102, "{text}");
    assert!(names[..101].iter().all(|(_, n)| n == "recurse"), "{text}");
    assert_eq!(names[101].1, "main", "{text}");
    // Past main, libc keeps no frame pointers: whatever comes next, the walk
    // stops without a panic and says why if it is not complete.
    let _ = end;
}

#[test]
fn cfi_also_unwinds_code_that_keeps_frame_pointers() {
    let dump = common::read_dump(&dumps("keep-fp"), "qsort");
    let (_, names, end) = unwind(&dump, UnwindMode::Auto);
    let text = describe(&names, &end);
    assert_eq!(end, StackEnd::Complete, "{text}");
    assert_eq!(
        collapsed(&names)[..4],
        ["compare_ints", "[libc.so.6]", "sort_numbers", "main"],
        "{text}"
    );
}

#[test]
fn module_layout_maps_file_offsets_to_stated_addresses() {
    let dump = common::read_dump(&dumps("omit-fp"), "recursion");
    let modules = Modules::from_maps(&dump.maps);
    let fixture = modules
        .modules
        .iter()
        .find(|m| m.path.ends_with("unwind_fixture-omit-fp"))
        .expect("the fixture's text mapping");
    assert!(fixture.info.has_cfi());
    // The fixture's text is mapped from its second PT_LOAD; with a PIE the
    // stated addresses equal file offsets there (gcc/ld default layout).
    assert_eq!(
        fixture.info.file_offset_to_svma(fixture.file_offset),
        Some(fixture.file_offset)
    );
    // Every executable mapping found a load segment and lies at a page-aligned bias.
    for m in &modules.modules {
        assert_eq!(m.bias % 4096, 0, "{}", m.path.display());
    }
}

#[test]
fn a_warm_unwinder_gives_the_same_frames_as_a_cold_one() {
    let dump = common::read_dump(&dumps("omit-fp"), "qsort");
    let modules = Modules::from_maps(&dump.maps);
    let regs = common::registers(&dump.regs);
    let mut unwinder = Unwinder::new();
    let mut runs = Vec::new();
    for _ in 0..3 {
        let mut frames = Vec::new();
        let end = unwinder.unwind(
            &regs,
            UnwindMode::Dwarf,
            &mut |addr| modules.module_ref(addr),
            &mut |addr| dump.stack.read(addr),
            1024,
            &mut frames,
        );
        runs.push((frames, end));
    }
    assert_eq!(runs[0].1, StackEnd::Complete);
    assert_eq!(runs[0], runs[1]);
    assert_eq!(runs[1], runs[2]);
}

#[test]
fn debug_frame_alone_unwinds_the_recursion() {
    let dump = common::read_dump(&dumps("debug-frame"), "recursion");
    let (_, names, end) = unwind(&dump, UnwindMode::Dwarf);
    let text = describe(&names, &end);
    assert_eq!(end, StackEnd::Complete, "{text}");
    let recurse = names.iter().filter(|(_, n)| n == "recurse").count();
    assert_eq!(recurse, 101, "{text}");
    assert_eq!(
        collapsed(&names)[1..],
        ["main", "[libc.so.6]", "_start"],
        "{text}"
    );
}

#[test]
fn the_loaders_entry_stub_is_a_root() {
    use object::{Object, ObjectSymbol};
    let path = "/lib64/ld-linux-x86-64.so.2";
    let bytes = std::fs::read(path).expect("the dynamic loader");
    let elf = object::File::parse(&*bytes).unwrap();
    let entry = elf.entry();
    let data: std::sync::Arc<dyn AsRef<[u8]> + Send + Sync> = std::sync::Arc::new(bytes.clone());
    let info = stoke_unwind::ModuleUnwindInfo::parse(data).unwrap();
    // `_start` calls `_dl_start` in its first bytes: a return there ends the stack.
    assert!(info.is_entry_stub(entry + 8));
    assert!(!info.is_entry_stub(entry + 4096));
    let dl_start = elf
        .symbols()
        .chain(elf.dynamic_symbols())
        .find(|s| s.name() == Ok("_dl_start"))
        .map(|s| s.address());
    if let Some(address) = dl_start {
        assert!(
            !info.is_entry_stub(address),
            "_dl_start is not the entry stub"
        );
    }
}
