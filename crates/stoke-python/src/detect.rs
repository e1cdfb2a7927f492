//! Finding CPython in a process: its file, symbols, version and layout.

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};

use crate::memory::{Memory, ProcessMemory};
use crate::offsets::Offsets;
use crate::reader::{Layout, Reader};
use crate::PythonError;

/// A CPython interpreter found in a process.
pub struct Interpreter {
    /// The file that holds the interpreter (the executable or libpython).
    pub path: PathBuf,
    /// The reader of its threads' frames.
    pub reader: Reader<ProcessMemory>,
}

/// What an interpreter's ELF file says, addresses relative to its load.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ElfPython {
    pub runtime: u64,
    pub py_version: Option<u64>,
    pub code_type: Option<u64>,
    pub eval: Vec<Range<u64>>,
    /// The minor version from the version string, for 3.10 and before.
    pub minor_from_text: Option<u8>,
    /// The virtual address of file offset 0 (page-aligned).
    pub base_vaddr: u64,
}

/// The most read of a file that may hold an interpreter.
const MAX_FILE: u64 = 1 << 30;

/// The bytes of a file the target has mapped, by its path as the target
/// sees it (in `/proc/PID/maps`). The caller opens and maps it (stoke's
/// module store: found in the target's namespace, checked to be the file
/// mapped, never blocking on a FIFO planted at the path, regular files
/// only), so the interpreter's file is read once for detection, unwinding
/// and naming alike.
pub type MapFile<'a> = &'a mut dyn FnMut(&Path) -> std::io::Result<FileBytes>;

/// A mapped (or read) file's bytes, shared with whoever mapped it.
pub type FileBytes = std::sync::Arc<dyn AsRef<[u8]> + Send + Sync>;

/// Finds a CPython 3.8 to 3.13 in process `pid`, getting its files' bytes
/// from `map`. `Ok(None)` when the process has none.
pub fn detect(pid: i32, map: MapFile<'_>) -> Result<Option<Interpreter>, PythonError> {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| PythonError::File {
        path: format!("/proc/{pid}/maps"),
        reason: e.to_string(),
    })?;
    let exe = fs::read_link(format!("/proc/{pid}/exe")).ok();
    let mut candidates: Vec<(PathBuf, u64)> = Vec::new();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(_perms), Some(offset)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let Some(path) = f.nth(2) else { continue };
        let path = Path::new(path);
        let is_lib = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("libpython3"));
        if !(is_lib || exe.as_deref() == Some(path)) || offset != "00000000" {
            continue;
        }
        let Some(start) = range
            .split('-')
            .next()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
        else {
            continue;
        };
        if !candidates.iter().any(|(p, _)| p == path) {
            candidates.push((path.to_path_buf(), start));
        }
    }
    let memory = ProcessMemory::new(pid);
    for (path, start) in candidates {
        let Ok(image) = map(&path) else {
            continue;
        };
        // A mapping: only the pages parsed are read (headers, symbol
        // tables and, for 3.10 and before, `.rodata`), though libpython
        // with debug info is 20+ MB.
        let bytes: &[u8] = (*image).as_ref();
        let Some(elf) = inspect_elf(bytes) else {
            continue;
        };
        let bias = start.wrapping_sub(elf.base_vaddr);
        let layout = layout(&memory, &elf, bias)?;
        return Ok(Some(Interpreter {
            path,
            reader: Reader::new(memory, layout),
        }));
    }
    Ok(None)
}

/// The layout of the interpreter described by `elf`, loaded at `bias`.
pub(crate) fn layout(
    memory: &dyn Memory,
    elf: &ElfPython,
    bias: u64,
) -> Result<Layout, PythonError> {
    let runtime = bias.wrapping_add(elf.runtime);
    let offsets = match elf.py_version {
        Some(at) => {
            let mut b = [0u8; 4];
            memory.read(bias.wrapping_add(at), &mut b)?;
            let hex = u32::from_le_bytes(b);
            let (major, minor) = ((hex >> 24) as u8, (hex >> 16) as u8);
            match (major, minor) {
                (3, 11 | 12) => {
                    Offsets::for_version(3, minor).ok_or(PythonError::Unsupported(major, minor))?
                }
                (3, 13) => Offsets::from_debug_offsets(memory, runtime, u64::from(hex))?,
                _ => return Err(PythonError::Unsupported(major, minor)),
            }
        }
        None => match elf.minor_from_text {
            Some(minor @ 8..=10) => {
                Offsets::for_version(3, minor).ok_or(PythonError::Unsupported(3, minor))?
            }
            Some(minor) => return Err(PythonError::Unsupported(3, minor)),
            None => return Err(PythonError::Layout("no version string")),
        },
    };
    Ok(Layout {
        offsets,
        runtime,
        code_type: elf.code_type.map(|a| bias.wrapping_add(a)),
        eval_ranges: elf
            .eval
            .iter()
            .map(|r| bias.wrapping_add(r.start)..bias.wrapping_add(r.end))
            .collect(),
    })
}

/// Reads what stoke needs from an interpreter's ELF file; `None` unless it
/// exports `_PyRuntime`.
pub(crate) fn inspect_elf<'d, R: object::ReadRef<'d>>(data: R) -> Option<ElfPython> {
    let file = object::File::parse(data).ok()?;
    let mut elf = ElfPython::default();
    let mut found = false;
    for sym in file.dynamic_symbols() {
        match sym.name() {
            Ok("_PyRuntime") => {
                elf.runtime = sym.address();
                found = true;
            }
            Ok("Py_Version") => elf.py_version = Some(sym.address()),
            Ok("PyCode_Type") => elf.code_type = Some(sym.address()),
            Ok("_PyEval_EvalFrameDefault") => {
                elf.eval
                    .push(sym.address()..sym.address() + sym.size().max(1));
            }
            _ => {}
        }
    }
    if !found {
        return None;
    }
    for sym in file.symbols() {
        if let Ok(name) = sym.name() {
            let eval = name == "_PyEval_EvalFrameDefault"
                || name.starts_with("_PyEval_EvalFrameDefault.cold");
            if eval && sym.size() > 0 {
                let r = sym.address()..sym.address() + sym.size();
                if !elf.eval.contains(&r) {
                    elf.eval.push(r);
                }
            }
        }
    }
    elf.base_vaddr = file
        .segments()
        .find(|s| s.file_range().0 == 0)
        .map_or(0, |s| s.address() & !0xfff);
    if elf.py_version.is_none() {
        // The version strings are in `.rodata`; the whole file (up to
        // MAX_FILE) where there are no section headers.
        let rodata = file.section_by_name(".rodata").and_then(|s| s.data().ok());
        let whole = || {
            let len = data.len().ok()?.min(MAX_FILE);
            data.read_bytes_at(0, len).ok()
        };
        elf.minor_from_text = rodata.or_else(whole).and_then(minor_from_version_string);
    }
    Some(elf)
}

/// The minor version named by the `PY_VERSION` strings (`"3.10.13"`) in a
/// file: the most frequent one. The linker may have merged the string into
/// the tail of a longer one (`".../versions/3.10.13"`), so it need only
/// end a string and not follow a digit or a dot.
pub(crate) fn minor_from_version_string(data: &[u8]) -> Option<u8> {
    let mut counts = [0u32; 32];
    for (i, w) in data.windows(3).enumerate() {
        if w[1..] != *b"3." || w[0].is_ascii_digit() || w[0] == b'.' {
            continue;
        }
        let rest = &data[i + 3..data.len().min(i + 20)];
        let minor_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if minor_len == 0 || minor_len > 2 || rest.get(minor_len) != Some(&b'.') {
            continue;
        }
        let patch = &rest[minor_len + 1..];
        let patch_len = patch.iter().take_while(|b| b.is_ascii_digit()).count();
        if patch_len == 0 || patch_len > 2 {
            continue;
        }
        // The string ends at the patch (or a release tag such as `rc1`, `+`).
        let end = patch[patch_len..].iter().position(|&b| b == 0)?;
        if end > 4
            || !patch[patch_len..patch_len + end]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'+')
        {
            continue;
        }
        let minor: usize = std::str::from_utf8(&rest[..minor_len]).ok()?.parse().ok()?;
        if let Some(c) = counts.get_mut(minor) {
            *c += 1;
        }
    }
    let (minor, n) = counts.iter().enumerate().max_by_key(|(_, n)| **n)?;
    (*n > 0).then_some(minor as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_string_names_the_minor() {
        let data = b"junk\x003.10.13\x00more\x003.1\x00/v/3.10.13+\x00x 13.9.1\x00";
        assert_eq!(minor_from_version_string(data), Some(10));
        assert_eq!(minor_from_version_string(b"\x00no version\x00"), None);
    }
}
