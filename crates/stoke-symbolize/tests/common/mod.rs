//! Fixture helpers: build the C fixture in variants (with gcc, strip and
//! objcopy), and read symbol addresses and file offsets back with `object`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use object::{Object, ObjectSegment, ObjectSymbol};
use stoke_model::FrameAddress;
use stoke_symbolize::{ModuleRequest, SymbolizeOptions, Symbolized, Symbolizer};

/// The fixture's source.
pub fn source() -> PathBuf {
    data("inline.c")
}

/// A file of `tests/data`.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Flags every variant is built with: optimized, PIE, exported symbols (so
/// `.dynsym` names them), and the text segment moved so that its file
/// offsets differ from its addresses.
pub const BASE_FLAGS: &[&str] = &[
    "-O2",
    "-fPIE",
    "-pie",
    "-rdynamic",
    "-Wl,--section-start=.init=0x20000",
];

/// Runs a command and panics with its output if it fails.
pub fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compiles the fixture to `dir/name` with the base flags plus `extra`.
pub fn compile(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    compile_source(&source(), dir, name, extra)
}

/// Compiles the C file `src` to `dir/name` with the base flags plus `extra`.
pub fn compile_source(src: &Path, dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let mut args: Vec<&str> = BASE_FLAGS.to_vec();
    args.extend_from_slice(extra);
    args.extend_from_slice(&[src.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    run("gcc", &args);
    out
}

/// A function symbol of a binary: its address and size.
#[derive(Clone, Copy, Debug)]
pub struct Function {
    pub address: u64,
    pub size: u64,
}

/// Looks a function up in `.symtab` (or `.dynsym`) of `binary`.
pub fn function(binary: &Path, name: &str) -> Function {
    let bytes = std::fs::read(binary).unwrap();
    let obj = object::File::parse(&*bytes).unwrap();
    obj.symbols()
        .chain(obj.dynamic_symbols())
        .find(|s| s.name() == Ok(name))
        .map(|s| Function {
            address: s.address(),
            size: s.size(),
        })
        .unwrap_or_else(|| panic!("{name} not in {}", binary.display()))
}

/// The file offset of a stated address, from the program headers.
pub fn file_offset(binary: &Path, address: u64) -> u64 {
    let bytes = std::fs::read(binary).unwrap();
    let obj = object::File::parse(&*bytes).unwrap();
    obj.segments()
        .find_map(|seg| {
            let (offset, size) = seg.file_range();
            let start = seg.address();
            (address >= start && address - start < size).then(|| address - start + offset)
        })
        .unwrap_or_else(|| panic!("{address:#x} is in no segment"))
}

/// Symbolizes instruction pointers at the given stated addresses of a binary.
pub fn symbolize_at(
    symbolizer: &mut Symbolizer,
    binary: &Path,
    addresses: &[u64],
) -> Vec<Symbolized> {
    let offsets: Vec<FrameAddress> = addresses
        .iter()
        .map(|&a| FrameAddress::InstructionPointer(file_offset(binary, a)))
        .collect();
    let request = ModuleRequest {
        path: binary,
        build_id: None,
        map: None,
        root: None,
    };
    symbolizer.symbolize_module(&request, &offsets)
}

/// Every address of a function.
pub fn body(f: Function) -> Vec<u64> {
    (f.address..f.address + f.size).collect()
}

/// A symbolizer with default options.
pub fn symbolizer() -> Symbolizer {
    Symbolizer::new(SymbolizeOptions::default())
}

/// Line numbers of the fixture's lines containing `marker`.
pub fn lines_with(marker: &str) -> Vec<u32> {
    std::fs::read_to_string(source())
        .unwrap()
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(marker))
        .map(|(i, _)| i as u32 + 1)
        .collect()
}

/// The name of the outermost frame, if found.
pub fn outer_name(s: &Symbolized) -> Option<&str> {
    match s {
        Symbolized::Found(frames) => frames.first().map(|f| f.name.as_str()),
        Symbolized::Unnamed { .. } | Symbolized::Unknown(_) => None,
    }
}
