//! Test helpers: stack memory as a byte array, modules from a maps dump, a
//! tiny ELF-symbol-table symbolizer, and building the C fixture.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use object::{Object, ObjectSymbol, SymbolKind};
use stoke_unwind::{ModuleRef, ModuleUnwindInfo};

/// A copy of stack memory starting at `base`.
pub struct StackCopy {
    pub base: u64,
    pub bytes: Vec<u8>,
}

impl StackCopy {
    /// A stack copy from 8-byte words.
    pub fn from_words(base: u64, words: &[u64]) -> StackCopy {
        StackCopy {
            base,
            bytes: words.iter().flat_map(|w| w.to_le_bytes()).collect(),
        }
    }

    /// Reads the 8 bytes at `addr`, if they are all in the copy.
    pub fn read(&self, addr: u64) -> Result<u64, ()> {
        let start = addr.checked_sub(self.base).ok_or(())?;
        let start = usize::try_from(start).map_err(|_| ())?;
        let end = start.checked_add(8).ok_or(())?;
        let word = self.bytes.get(start..end).ok_or(())?;
        Ok(u64::from_le_bytes(word.try_into().unwrap()))
    }
}

/// One executable file mapping of a maps dump, with its parsed module.
pub struct LoadedModule {
    pub start: u64,
    pub end: u64,
    pub file_offset: u64,
    pub path: PathBuf,
    pub info: Arc<ModuleUnwindInfo>,
    pub bias: u64,
    pub symbols: Arc<Symbols>,
}

/// All executable file mappings of a process, from its `/proc/PID/maps` text.
pub struct Modules {
    pub modules: Vec<LoadedModule>,
}

impl Modules {
    /// Parses maps text and loads every executable file mapping's module
    /// (each file parsed once).
    pub fn from_maps(maps: &str) -> Modules {
        let mut cache: HashMap<PathBuf, (Arc<ModuleUnwindInfo>, Arc<Symbols>)> = HashMap::new();
        let mut modules = Vec::new();
        for line in maps.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 6 || !fields[1].contains('x') || !fields[5].starts_with('/') {
                continue;
            }
            let (start, end) = fields[0].split_once('-').unwrap();
            let start = u64::from_str_radix(start, 16).unwrap();
            let end = u64::from_str_radix(end, 16).unwrap();
            let file_offset = u64::from_str_radix(fields[2], 16).unwrap();
            let path = PathBuf::from(fields[5]);
            let (info, symbols) = cache
                .entry(path.clone())
                .or_insert_with(|| {
                    let bytes = std::fs::read(&path).unwrap();
                    let symbols = Arc::new(Symbols::from_elf(&bytes));
                    let info = ModuleUnwindInfo::parse(Arc::new(bytes)).unwrap();
                    (Arc::new(info), symbols)
                })
                .clone();
            // The caller's recipe: bias = avma of the mapping start minus the
            // stated address its file offset is loaded at.
            let svma = info.file_offset_to_svma(file_offset).unwrap();
            let bias = start.wrapping_sub(svma);
            modules.push(LoadedModule {
                start,
                end,
                file_offset,
                path,
                info,
                bias,
                symbols,
            });
        }
        Modules { modules }
    }

    /// The module mapped at `addr`.
    pub fn find(&self, addr: u64) -> Option<&LoadedModule> {
        self.modules
            .iter()
            .find(|m| m.start <= addr && addr < m.end)
    }

    /// The `ModuleRef` for `addr`, as the unwinder wants it.
    pub fn module_ref(&self, addr: u64) -> Option<ModuleRef<'_>> {
        self.find(addr).map(|m| ModuleRef {
            info: &m.info,
            bias: m.bias,
        })
    }

    /// `file name:symbol` for a lookup address, `?` parts where unknown.
    pub fn symbolize(&self, lookup: u64) -> (String, String) {
        let Some(m) = self.find(lookup) else {
            return ("?".into(), "?".into());
        };
        let file = m.path.file_name().unwrap().to_string_lossy().into_owned();
        let name = m
            .symbols
            .lookup(lookup.wrapping_sub(m.bias))
            .unwrap_or("?")
            .to_string();
        (file, name)
    }
}

/// Function symbols of an ELF file (`.symtab` and `.dynsym`), sorted.
pub struct Symbols {
    sorted: Vec<(u64, u64, String)>,
}

impl Symbols {
    /// Reads the function symbols of an ELF image.
    pub fn from_elf(bytes: &[u8]) -> Symbols {
        let file = object::File::parse(bytes).unwrap();
        let mut sorted: Vec<(u64, u64, String)> = file
            .symbols()
            .chain(file.dynamic_symbols())
            .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
            .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_string())))
            .collect();
        sorted.sort();
        sorted.dedup_by_key(|s| s.0);
        Symbols { sorted }
    }

    /// The symbol containing stated address `svma` (or the nearest one
    /// before it, when sizes are unknown).
    pub fn lookup(&self, svma: u64) -> Option<&str> {
        let i = self
            .sorted
            .partition_point(|s| s.0 <= svma)
            .checked_sub(1)?;
        let (addr, size, name) = &self.sorted[i];
        (*size == 0 || svma < addr + size).then_some(name.as_str())
    }
}

/// Compiles the C fixture `tests/data/NAME.c` with `flags` into the test's
/// scratch folder, returning the binary's path.
pub fn build_fixture(name: &str, variant: &str, flags: &[&str]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(format!("{name}.c"));
    let out = scratch_dir().join(format!("{name}-{variant}"));
    let status = Command::new("gcc")
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .expect("gcc is installed");
    assert!(status.success(), "compiling {}", src.display());
    out
}

/// A folder for this test binary's build products and dumps.
pub fn scratch_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stoke-unwind");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What the fixture dumped at one point of interest.
pub struct Dump {
    pub regs: [u64; 8],
    pub stack: StackCopy,
    pub maps: String,
}

/// Runs the fixture binary, which writes `TAG.stack` and `TAG.maps` dumps
/// into `out_dir`.
pub fn run_fixture(binary: &Path, out_dir: &Path) {
    std::fs::create_dir_all(out_dir).unwrap();
    let status = Command::new(binary).arg(out_dir).status().unwrap();
    assert!(status.success(), "running {}", binary.display());
}

/// Reads one dump written by the fixture.
pub fn read_dump(out_dir: &Path, tag: &str) -> Dump {
    let raw = std::fs::read(out_dir.join(format!("{tag}.stack"))).unwrap();
    let mut regs = [0u64; 8];
    for (i, r) in regs.iter_mut().enumerate() {
        *r = u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap());
    }
    let maps = std::fs::read_to_string(out_dir.join(format!("{tag}.maps"))).unwrap();
    Dump {
        stack: StackCopy {
            base: regs[1],
            bytes: raw[64..].to_vec(),
        },
        regs,
        maps,
    }
}

/// The dumped registers in the unwinder's form.
pub fn registers(regs: &[u64; 8]) -> stoke_model::Registers {
    use stoke_model::DwarfReg;
    let mut r = stoke_model::Registers::new(regs[0], regs[1], regs[2]);
    r.set(DwarfReg::Rbx, regs[3]);
    r.set(DwarfReg::R12, regs[4]);
    r.set(DwarfReg::R13, regs[5]);
    r.set(DwarfReg::R14, regs[6]);
    r.set(DwarfReg::R15, regs[7]);
    r
}

/// A seeded xorshift64* generator.
pub struct XorShift(pub u64);

impl XorShift {
    /// The next pseudo-random number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}
