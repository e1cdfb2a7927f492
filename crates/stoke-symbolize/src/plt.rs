//! What the linker adds to a binary's code without a symbol: PLT stubs, and
//! the extent of each code section, which bounds every symbol.
//!
//! A call to a function of another module goes through a stub in `.plt`
//! (lazy binding, or `-z now`), `.plt.sec` (with `-z ibt`: the `.plt` then
//! holds only the lazy-binding halves) or `.plt.got` (functions whose
//! address is also taken). No symbol table names these stubs, so the
//! nearest symbol before them (often the size-0 `_init` at the end of
//! `.init`) used to be stretched over them. Here each stub is named
//! `TARGET@plt`, as perf and objdump name them: its `jmp *SLOT(%rip)` is
//! decoded, and the relocation that fills `SLOT` (`.rela.plt` `JUMP_SLOT`,
//! `.rela.dyn` `GLOB_DAT`) names the target. A slot filled by an
//! `IRELATIVE` relocation (libc calling its own ifuncs: `memcpy`, `strlen`)
//! has no symbol, only the address of the ifunc's resolver; the symbol
//! table names that address ([`StubTarget::Ifunc`]), else it reads
//! `*ABS*+0xADDR@plt` as in perf. Lazy stubs without a `jmp` (`-z ibt`
//! `.plt`) are named by the relocation index they push. The `.plt` header
//! (the jump into the dynamic linker's resolver) and any stub that cannot
//! be decoded are named after their section, `[.plt]`.
//!
//! Decoding is for x86-64; elsewhere only the section bounds apply.

use std::collections::HashMap;
use std::ops::Range;

use object::elf;
use object::read::elf::{ElfFile64, FileHeader, Rela, SectionHeader};
use object::{Endianness, Object, ObjectSection, SectionFlags};

use crate::elf::ElfImage;

/// Where a stub jumps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StubTarget {
    /// A dynamic symbol, by name (without version).
    Symbol(String),
    /// An ifunc of this module, by the address of its resolver.
    Ifunc(u64),
    /// Not known: the `.plt` header, or a stub that could not be decoded;
    /// the section's name.
    Section(&'static str),
}

/// One PLT stub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stub {
    /// Its stated address.
    pub(crate) address: u64,
    /// Its size in bytes (the section's entry size).
    pub(crate) size: u64,
    /// Where it jumps.
    pub(crate) target: StubTarget,
}

/// The code sections of a binary and its PLT stubs.
#[derive(Clone, Debug, Default)]
pub(crate) struct CodeLayout {
    /// Executable sections, sorted by start.
    sections: Vec<Range<u64>>,
    /// PLT stubs, sorted by address.
    stubs: Vec<Stub>,
}

/// The PLT sections, and the stub size to assume when `sh_entsize` is not
/// a plausible one.
const PLT_SECTIONS: &[(&str, u64)] = &[
    (".plt", 16),
    (".plt.sec", 16),
    (".plt.bnd", 16),
    (".plt.got", 8),
];

impl CodeLayout {
    /// Reads the layout of a parsed ELF file; empty when it has no section
    /// headers.
    pub(crate) fn of(image: &ElfImage) -> CodeLayout {
        let Ok(obj) = object::File::parse(&*image.bytes) else {
            return CodeLayout::default();
        };
        let mut sections: Vec<Range<u64>> = obj
            .sections()
            .filter(|s| is_executable(s.flags()) && s.address() != 0 && s.size() > 0)
            .map(|s| s.address()..s.address().saturating_add(s.size()))
            .collect();
        sections.sort_by_key(|r| (r.start, r.end));
        let mut stubs = match ElfFile64::<Endianness>::parse(&*image.bytes) {
            Ok(elf) if elf.elf_header().e_machine(elf.endian()) == elf::EM_X86_64 => {
                x86_64_stubs(&elf)
            }
            _ => Vec::new(),
        };
        stubs.sort_by_key(|s| s.address);
        stubs.dedup_by_key(|s| s.address);
        CodeLayout { sections, stubs }
    }

    /// A layout from its parts (sorted), for tests.
    #[cfg(test)]
    pub(crate) fn new(sections: Vec<Range<u64>>, stubs: Vec<Stub>) -> CodeLayout {
        CodeLayout { sections, stubs }
    }

    /// The end of the code section holding `address`, if one does.
    pub(crate) fn section_end(&self, address: u64) -> Option<u64> {
        let i = self.sections.partition_point(|r| r.start <= address);
        self.sections[..i]
            .iter()
            .rev()
            .find(|r| r.contains(&address))
            .map(|r| r.end)
    }

    /// The PLT stubs, sorted by address.
    pub(crate) fn stubs(&self) -> &[Stub] {
        &self.stubs
    }
}

fn is_executable(flags: SectionFlags) -> bool {
    match flags {
        SectionFlags::Elf { sh_flags, .. } => {
            let alloc_exec = elf::SHF_ALLOC.0 | elf::SHF_EXECINSTR.0;
            sh_flags.0 & alloc_exec == alloc_exec
        }
        _ => false,
    }
}

/// What each relocated GOT slot holds, and `.rela.plt` in order (lazy
/// stubs push their index into it).
#[derive(Default)]
struct Relocations {
    by_slot: HashMap<u64, StubTarget>,
    plt_order: Vec<StubTarget>,
}

fn x86_64_stubs(elf: &ElfFile64<'_, Endianness>) -> Vec<Stub> {
    let endian = elf.endian();
    let data = elf.data();
    let Some(relocations) = read_relocations(elf) else {
        return Vec::new();
    };
    let mut stubs = Vec::new();
    for section in elf.elf_section_table().iter() {
        let Ok(name) = elf.elf_section_table().section_name(endian, section) else {
            continue;
        };
        let Some(&(name, default_size)) = PLT_SECTIONS.iter().find(|(n, _)| n.as_bytes() == name)
        else {
            continue;
        };
        let Ok(bytes) = section.data(endian, data) else {
            continue;
        };
        let start = section.sh_addr(endian);
        let size = match section.sh_entsize(endian) {
            entry @ (8 | 16) => entry,
            _ if bytes.starts_with(&ENDBR64) => 16,
            _ => default_size,
        };
        for (i, entry) in bytes.chunks_exact(size as usize).enumerate() {
            let address = start + i as u64 * size;
            let target = decode(entry, address, &relocations).unwrap_or(StubTarget::Section(name));
            stubs.push(Stub {
                address,
                size,
                target,
            });
        }
    }
    stubs
}

/// The relocations of the dynamic relocation sections (`.rela.plt`,
/// `.rela.dyn`) that can fill a PLT stub's slot.
fn read_relocations(elf: &ElfFile64<'_, Endianness>) -> Option<Relocations> {
    let endian = elf.endian();
    let data = elf.data();
    let table = elf.elf_section_table();
    let dynsym = elf.elf_dynamic_symbol_table();
    let mut out = Relocations::default();
    for section in table.iter() {
        let Ok(Some((relas, _link))) = section.rela(endian, data) else {
            continue;
        };
        let is_plt = table.section_name(endian, section).ok() == Some(b".rela.plt".as_slice());
        for rela in relas {
            let target = match rela.r_type(endian, false) {
                elf::R_X86_64_JUMP_SLOT | elf::R_X86_64_GLOB_DAT => {
                    let index = rela.r_sym(endian, false);
                    let symbol = dynsym.symbol(object::SymbolIndex(index as usize)).ok();
                    symbol
                        .and_then(|s| dynsym.symbol_name(endian, s).ok())
                        .and_then(|name| std::str::from_utf8(name).ok())
                        .filter(|name| !name.is_empty())
                        .map(|name| StubTarget::Symbol(name.to_string()))
                }
                elf::R_X86_64_IRELATIVE => u64::try_from(rela.r_addend(endian))
                    .ok()
                    .map(StubTarget::Ifunc),
                _ => None,
            };
            if is_plt {
                out.plt_order
                    .push(target.clone().unwrap_or(StubTarget::Section(".plt")));
            }
            if let Some(target) = target {
                out.by_slot.entry(rela.r_offset(endian)).or_insert(target);
            }
        }
    }
    Some(out)
}

/// `endbr64`, which starts every stub built with `-z ibt`.
const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];

/// Where the stub at `address` jumps: through the slot of its
/// `jmp *SLOT(%rip)` (optionally after `endbr64` and a `bnd` prefix), else
/// by the `.rela.plt` index a lazy stub pushes (`push $INDEX`).
fn decode(entry: &[u8], address: u64, relocations: &Relocations) -> Option<StubTarget> {
    let body = entry.strip_prefix(&ENDBR64).unwrap_or(entry);
    let skipped = (entry.len() - body.len()) as u64;
    let (prefix, body) = match body {
        [0xf2, rest @ ..] => (1, rest),
        _ => (0, body),
    };
    match body {
        // jmp *disp32(%rip): the slot is relative to the next instruction.
        [0xff, 0x25, d0, d1, d2, d3, ..] => {
            let disp = i32::from_le_bytes([*d0, *d1, *d2, *d3]);
            let next = address + skipped + prefix + 6;
            let slot = next.wrapping_add_signed(i64::from(disp));
            relocations.by_slot.get(&slot).cloned()
        }
        // push $index (the lazy half of an IBT stub).
        [0x68, i0, i1, i2, i3, ..] if prefix == 0 => {
            let index = u32::from_le_bytes([*i0, *i1, *i2, *i3]);
            relocations.plt_order.get(index as usize).cloned()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relocations() -> Relocations {
        let mut r = Relocations::default();
        r.by_slot
            .insert(0x4018, StubTarget::Symbol("puts".to_string()));
        r.plt_order = vec![
            StubTarget::Symbol("puts".to_string()),
            StubTarget::Ifunc(0x9f550),
        ];
        r
    }

    #[test]
    fn jumps_through_a_slot_are_decoded_with_or_without_endbr64_and_bnd() {
        let r = relocations();
        // jmp *0x2fe2(%rip) at 0x1030: next instruction 0x1036 + 0x2fe2 = 0x4018.
        let plain = [
            0xff, 0x25, 0xe2, 0x2f, 0, 0, 0x68, 0, 0, 0, 0, 0xe9, 0, 0, 0, 0,
        ];
        assert_eq!(
            decode(&plain, 0x1030, &r),
            Some(StubTarget::Symbol("puts".into()))
        );
        // endbr64; bnd jmp *disp(%rip) at 0x1050: next is 0x105b.
        let disp = (0x4018i64 - 0x105b) as i32;
        let mut ibt = vec![0xf3, 0x0f, 0x1e, 0xfa, 0xf2, 0xff, 0x25];
        ibt.extend_from_slice(&disp.to_le_bytes());
        ibt.extend_from_slice(&[0x0f, 0x1f, 0x44, 0, 0]);
        assert_eq!(
            decode(&ibt, 0x1050, &r),
            Some(StubTarget::Symbol("puts".into()))
        );
        // A slot nothing relocates.
        assert_eq!(decode(&plain, 0x2000, &r), None);
    }

    #[test]
    fn lazy_ibt_stubs_are_named_by_the_index_they_push() {
        let r = relocations();
        let lazy = [
            0xf3, 0x0f, 0x1e, 0xfa, 0x68, 1, 0, 0, 0, 0xf2, 0xe9, 0, 0, 0, 0, 0x90,
        ];
        assert_eq!(decode(&lazy, 0x1030, &r), Some(StubTarget::Ifunc(0x9f550)));
        let out_of_range = [0x68, 9, 0, 0, 0, 0xe9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(decode(&out_of_range, 0x1030, &r), None);
    }

    #[test]
    fn the_plt_header_is_not_a_stub() {
        // push GOT+8(%rip); jmp *GOT+16(%rip): the slot has no relocation.
        let header = [
            0xff, 0x35, 0xe2, 0x2f, 0, 0, 0xff, 0x25, 0xe4, 0x2f, 0, 0, 0x0f, 0x1f, 0x40, 0,
        ];
        assert_eq!(decode(&header, 0x1020, &relocations()), None);
    }

    #[test]
    fn section_ends_bound_addresses_inside_them_only() {
        let layout = CodeLayout {
            sections: vec![0x1000..0x1017, 0x1020..0x1040, 0x1040..0x2000],
            stubs: Vec::new(),
        };
        assert_eq!(layout.section_end(0x1000), Some(0x1017));
        assert_eq!(layout.section_end(0x1016), Some(0x1017));
        assert_eq!(layout.section_end(0x1017), None);
        assert_eq!(layout.section_end(0x1030), Some(0x1040));
        assert_eq!(layout.section_end(0x1040), Some(0x2000));
        assert_eq!(layout.section_end(0x2000), None);
        assert_eq!(layout.section_end(0x10), None);
    }
}
