//! PLT stubs are named `TARGET@plt`, in every layout gcc and ld make
//! (lazy binding, `-z now`, `-fno-plt`, `-z ibt` with `.plt.sec`), and no
//! symbol (such as the size-0 `_init` before them) is stretched over them.
//! objdump, which names stubs the same way, is the reference.

mod common;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::process::Command;

use common::*;
use object::{Object, ObjectSection};
use stoke_symbolize::Symbolized;

const PLT_SECTIONS: &[&str] = &[".plt", ".plt.sec", ".plt.got"];

/// The PLT sections of a binary: name and address range.
fn plt_sections(binary: &Path) -> Vec<(String, Range<u64>)> {
    let bytes = std::fs::read(binary).unwrap();
    let obj = object::File::parse(&*bytes).unwrap();
    obj.sections()
        .filter_map(|s| {
            let name = s.name().ok()?;
            PLT_SECTIONS
                .contains(&name)
                .then(|| (name.to_string(), s.address()..s.address() + s.size()))
        })
        .collect()
}

/// objdump's names of the stubs of a binary (`puts@plt`), by address;
/// labels relative to another (`free@plt-0x10`) are left out.
fn objdump_stubs(binary: &Path) -> BTreeMap<u64, String> {
    let mut cmd = Command::new("objdump");
    cmd.arg("-d");
    for section in PLT_SECTIONS {
        cmd.args(["-j", section]);
    }
    let out = cmd.arg(binary).output().expect("objdump");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let (address, label) = line.strip_suffix(">:")?.split_once(" <")?;
            let address = u64::from_str_radix(address, 16).ok()?;
            label
                .ends_with("@plt")
                .then(|| (address, label.to_string()))
        })
        .collect()
}

/// Whether gcc and ld build with these flags (older ones lack `-z ibt`).
fn builds(dir: &Path, flags: &[&str]) -> bool {
    let out = dir.join("probe");
    Command::new("gcc")
        .args(BASE_FLAGS)
        .args(flags)
        .arg(data("plt.c"))
        .arg("-o")
        .arg(&out)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Builds the fixture with `flags` and checks every byte of its PLT
/// sections: objdump's stubs get objdump's name, the rest (the `.plt`
/// header, the lazy halves of IBT stubs) some `…@plt` or `[section]` name,
/// and nothing is `_init` or left unnamed. Returns each byte's section,
/// address and name (nothing when the toolchain cannot build the variant).
fn check_variant(name: &str, flags: &[&str]) -> Vec<(String, u64, String)> {
    let dir = tempfile::tempdir().unwrap();
    if !builds(dir.path(), flags) {
        eprintln!("{name}: skipped: gcc or ld does not take {flags:?}");
        return Vec::new();
    }
    let binary = compile_source(&data("plt.c"), dir.path(), name, flags);
    let sections = plt_sections(&binary);
    assert!(!sections.is_empty(), "{name}: no PLT section");
    let reference = objdump_stubs(&binary);
    let mut s = symbolizer();
    let mut seen = Vec::new();
    for (section, range) in &sections {
        let addresses: Vec<u64> = range.clone().collect();
        let out = symbolize_at(&mut s, &binary, &addresses);
        for (&address, result) in addresses.iter().zip(&out) {
            let Symbolized::Found(frames) = result else {
                panic!("{name}: {section} {address:#x} unnamed: {result:?}");
            };
            let got = &frames[0].name;
            assert!(
                got.ends_with("@plt") || got == &format!("[{section}]"),
                "{name}: {section} {address:#x} named {got:?}"
            );
            let stub = reference.range(..=address).next_back();
            if let Some((start, expected)) = stub.filter(|(start, _)| address - **start < 8) {
                assert_eq!(
                    got, expected,
                    "{name}: stub at {start:#x}, byte {address:#x}"
                );
            }
            seen.push((section.clone(), address, got.clone()));
        }
    }
    for expected in reference.values() {
        assert!(
            seen.iter().any(|(_, _, got)| got == expected),
            "{name}: {expected} never named"
        );
    }
    seen
}

/// Whether some byte of `section` is named `stub`.
fn names(seen: &[(String, u64, String)], section: &str, stub: &str) -> bool {
    seen.iter().any(|(s, _, n)| s == section && n == stub)
}

#[test]
fn lazy_binding_stubs_are_named() {
    let seen = check_variant("lazy", &["-Wl,-z,lazy"]);
    for stub in ["puts@plt", "malloc@plt", "free@plt", "[.plt]"] {
        assert!(names(&seen, ".plt", stub), "{stub} not in {seen:?}");
    }
}

#[test]
fn bind_now_stubs_are_named() {
    let seen = check_variant("now", &["-Wl,-z,now"]);
    assert!(names(&seen, ".plt", "printf@plt"), "{seen:?}");
}

#[test]
fn no_plt_binaries_name_their_plt_got_stubs() {
    // Calls go through the GOT directly; what is left is .plt.got.
    let seen = check_variant("noplt", &["-fno-plt"]);
    assert!(names(&seen, ".plt.got", "__cxa_finalize@plt"), "{seen:?}");
}

#[test]
fn ibt_stubs_in_plt_sec_and_their_lazy_halves_are_named() {
    let seen = check_variant(
        "ibt",
        &["-fcf-protection=full", "-Wl,-z,ibt,-z,shstk,-z,lazy"],
    );
    if seen.is_empty() {
        return;
    }
    assert!(names(&seen, ".plt.sec", "malloc@plt"), "{seen:?}");
    // The lazy halves in .plt have no jump through the GOT; they are named
    // by the relocation index they push.
    assert!(names(&seen, ".plt", "malloc@plt"), "{seen:?}");
    let header_end = seen.iter().find(|(s, _, _)| s == ".plt").unwrap().1 + 16;
    assert!(seen
        .iter()
        .filter(|(s, address, _)| s == ".plt" && *address >= header_end)
        .all(|(_, _, n)| n != "[.plt]"));
}
