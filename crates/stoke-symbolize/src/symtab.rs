//! ELF symbol tables merged into one sorted table for address lookups,
//! with the PLT stubs no table names, each symbol bounded by its section.

use crate::plt::{CodeLayout, StubTarget};

/// Which ELF table a symbol came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SymbolSource {
    /// `.symtab` (of the binary or of its debug file): every function.
    Symtab,
    /// `.dynsym`: exported functions only.
    Dynsym,
}

/// A code symbol as read from an ELF file.
#[derive(Clone, Debug)]
pub(crate) struct RawSymbol<'a> {
    /// `st_value`.
    pub(crate) address: u64,
    /// `st_size`; 0 when unknown.
    pub(crate) size: u64,
    /// The (mangled) name.
    pub(crate) name: &'a str,
    /// `STT_FUNC`/`STT_GNU_IFUNC` rather than an untyped label.
    pub(crate) is_function: bool,
    /// `STB_*`.
    pub(crate) binding: object::elf::SymbolBind,
    /// The table it came from.
    pub(crate) source: SymbolSource,
}

impl RawSymbol<'_> {
    /// Orders aliases at one address: the first is the name shown.
    fn preference(&self) -> impl Ord + '_ {
        let binding = match self.binding {
            object::elf::STB_GLOBAL => 0,
            object::elf::STB_WEAK => 1,
            _ => 2,
        };
        let underscores = self.name.bytes().take_while(|&b| b == b'_').count();
        (
            self.source,
            !self.is_function,
            binding,
            underscores,
            self.name.len(),
            self.name,
        )
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    address: u64,
    /// `st_size`; 0 when unknown.
    size: u64,
    /// Where the symbol's coverage ends: its size, or for an unsized symbol
    /// the end of its section; never past the end of its section.
    end: u64,
    name_start: usize,
    name_end: usize,
}

/// Symbols sorted by address, one name per address, names in one buffer.
#[derive(Debug, Default)]
pub(crate) struct SymbolTable {
    names: String,
    entries: Vec<Entry>,
}

/// How many sized symbols before the nearest one are tried when the nearest
/// does not cover the address (a small symbol nested in a larger one).
const ENCLOSING_LOOKBACK: usize = 16;

impl SymbolTable {
    /// Builds the table from symbols of any tables, aliases resolved by
    /// preference (`.symtab` over `.dynsym`, functions over labels, global
    /// over weak over local, fewer leading underscores, shorter), with the
    /// PLT stubs of `layout` added (a stub wins over a symbol at its
    /// address) and every symbol bounded by the code section holding it.
    pub(crate) fn build(mut symbols: Vec<RawSymbol<'_>>, layout: &CodeLayout) -> SymbolTable {
        symbols.sort_by(|a, b| {
            a.address
                .cmp(&b.address)
                .then_with(|| a.preference().cmp(&b.preference()))
        });
        // Sized up front (stub names at most ~40 bytes each): grown by
        // doubling, the two buffers peaked at up to twice their size, tens
        // of MB for a library of 250k symbols.
        let kept = symbols
            .iter()
            .enumerate()
            .filter(|(i, sym)| *i == 0 || symbols[i - 1].address != sym.address)
            .map(|(_, sym)| sym.name.len());
        let (count, bytes) = kept.fold((0, 0), |(n, b), len| (n + 1, b + len));
        let mut table = SymbolTable {
            names: String::with_capacity(bytes + 40 * layout.stubs().len()),
            entries: Vec::with_capacity(count + layout.stubs().len()),
        };
        for sym in &symbols {
            if let Some(last) = table.entries.last_mut() {
                if last.address == sym.address {
                    last.size = last.size.max(sym.size);
                    continue;
                }
            }
            table.push(sym.address, sym.size, sym.name);
        }
        table.add_stubs(layout);
        for entry in &mut table.entries {
            let section_end = layout.section_end(entry.address).unwrap_or(u64::MAX);
            entry.end = match entry.size {
                0 => section_end,
                size => entry.address.saturating_add(size).min(section_end),
            };
        }
        table.entries.shrink_to_fit();
        table.names.shrink_to_fit();
        table
    }

    fn push(&mut self, address: u64, size: u64, name: &str) {
        let name_start = self.names.len();
        self.names.push_str(name);
        self.entries.push(Entry {
            address,
            size,
            end: 0,
            name_start,
            name_end: self.names.len(),
        });
    }

    /// Adds the PLT stubs as symbols named `TARGET@plt`, an ifunc's target
    /// named as the symbol table names its resolver.
    fn add_stubs(&mut self, layout: &CodeLayout) {
        let stubs = layout.stubs();
        if stubs.is_empty() {
            return;
        }
        let symbols = self.entries.len();
        for stub in stubs {
            let name = match &stub.target {
                StubTarget::Symbol(name) => format!("{name}@plt"),
                StubTarget::Ifunc(resolver) => match self.name_at(*resolver) {
                    Some(name) => format!("{name}@plt"),
                    None => format!("*ABS*+{resolver:#x}@plt"),
                },
                StubTarget::Section(section) => format!("[{section}]"),
            };
            self.push(stub.address, stub.size, &name);
        }
        let (own, added) = self.entries.split_at(symbols);
        let mut merged = Vec::with_capacity(self.entries.len());
        let (mut i, mut j) = (0, 0);
        while i < own.len() || j < added.len() {
            let take_stub =
                j < added.len() && (i == own.len() || added[j].address <= own[i].address);
            if take_stub {
                // A symbol at the stub's own address gives way to it.
                while i < own.len() && own[i].address == added[j].address {
                    i += 1;
                }
                merged.push(added[j]);
                j += 1;
            } else {
                merged.push(own[i]);
                i += 1;
            }
        }
        self.entries = merged;
    }

    /// The name of the symbol starting exactly at `address`.
    fn name_at(&self, address: u64) -> Option<&str> {
        let i = self.entries.partition_point(|e| e.address < address);
        let entry = self.entries.get(i).filter(|e| e.address == address)?;
        Some(&self.names[entry.name_start..entry.name_end])
    }

    /// Number of distinct symbol addresses.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The symbol covering `address`, with the offset into it: the nearest
    /// preceding symbol if it covers the address (an unsized symbol covers
    /// up to the next one or the end of its section), else an enclosing
    /// sized symbol shortly before it.
    pub(crate) fn lookup(&self, address: u64) -> Option<(&str, u64)> {
        let i = self.entries.partition_point(|e| e.address <= address);
        let nearest = self.entries[..i].last()?;
        let covers = |e: &Entry| address < e.end;
        let entry = if covers(nearest) {
            nearest
        } else {
            self.entries[..i - 1]
                .iter()
                .rev()
                .take(ENCLOSING_LOOKBACK)
                .find(|e| e.size > 0 && covers(e))?
        };
        Some((
            &self.names[entry.name_start..entry.name_end],
            address - entry.address,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(address: u64, size: u64, name: &str, source: SymbolSource) -> RawSymbol<'_> {
        RawSymbol {
            address,
            size,
            name,
            is_function: true,
            binding: object::elf::STB_GLOBAL,
            source,
        }
    }

    #[test]
    fn sized_symbols_cover_only_their_range() {
        let table = SymbolTable::build(
            vec![
                sym(0x200, 0x10, "b", SymbolSource::Symtab),
                sym(0x100, 0x80, "a", SymbolSource::Symtab),
                sym(0x300, 0, "label", SymbolSource::Symtab),
            ],
            &CodeLayout::default(),
        );
        assert_eq!(table.lookup(0xff), None);
        assert_eq!(table.lookup(0x100), Some(("a", 0)));
        assert_eq!(table.lookup(0x17f), Some(("a", 0x7f)));
        assert_eq!(table.lookup(0x180), None);
        assert_eq!(table.lookup(0x20f), Some(("b", 0xf)));
        assert_eq!(table.lookup(0x210), None);
        assert_eq!(table.lookup(0x5000), Some(("label", 0x4d00)));
    }

    #[test]
    fn aliases_prefer_symtab_and_plain_names() {
        let table = SymbolTable::build(
            vec![
                sym(0x100, 0x40, "__libc_malloc", SymbolSource::Symtab),
                sym(0x100, 0x40, "malloc", SymbolSource::Dynsym),
                sym(0x100, 0x40, "malloc", SymbolSource::Symtab),
            ],
            &CodeLayout::default(),
        );
        assert_eq!(table.len(), 1);
        assert_eq!(table.lookup(0x120), Some(("malloc", 0x20)));
    }

    #[test]
    fn nested_symbols_fall_back_to_the_enclosing_one() {
        let table = SymbolTable::build(
            vec![
                sym(0x100, 0x100, "outer", SymbolSource::Symtab),
                sym(0x140, 0x10, "inner", SymbolSource::Symtab),
            ],
            &CodeLayout::default(),
        );
        assert_eq!(table.lookup(0x145), Some(("inner", 5)));
        assert_eq!(table.lookup(0x160), Some(("outer", 0x60)));
    }

    #[test]
    fn no_symbol_stretches_past_the_end_of_its_section() {
        // .init [0x1000, 0x1017) with the unsized _init, .plt [0x1020,
        // 0x1040) with no symbol, .text from 0x1040.
        let layout = CodeLayout::new(vec![0x1000..0x1017, 0x1020..0x1040, 0x1040..0x2000], vec![]);
        let table = SymbolTable::build(
            vec![
                sym(0x1000, 0, "_init", SymbolSource::Symtab),
                sym(0x1040, 0, "_start", SymbolSource::Symtab),
                sym(0x1100, 0x1000, "too_big", SymbolSource::Symtab),
            ],
            &layout,
        );
        assert_eq!(table.lookup(0x1016), Some(("_init", 0x16)));
        assert_eq!(table.lookup(0x1017), None);
        assert_eq!(table.lookup(0x1030), None);
        assert_eq!(table.lookup(0x1050), Some(("_start", 0x10)));
        assert_eq!(table.lookup(0x1fff), Some(("too_big", 0xeff)));
        assert_eq!(table.lookup(0x2000), None);
    }

    #[test]
    fn plt_stubs_are_named_for_their_targets() {
        use crate::plt::Stub;
        let stub = |address, target| Stub {
            address,
            size: 16,
            target,
        };
        let layout = CodeLayout::new(
            vec![0x1000..0x1017, 0x1020..0x1060, 0x1060..0x2000],
            vec![
                stub(0x1020, StubTarget::Section(".plt")),
                stub(0x1030, StubTarget::Symbol("puts".into())),
                stub(0x1040, StubTarget::Ifunc(0x1100)),
                stub(0x1050, StubTarget::Ifunc(0x1234)),
            ],
        );
        let mut resolver = sym(0x1100, 0x20, "memcpy", SymbolSource::Dynsym);
        resolver.is_function = true;
        let table = SymbolTable::build(
            vec![
                sym(0x1000, 0, "_init", SymbolSource::Symtab),
                sym(0x1030, 0, "label_in_the_plt", SymbolSource::Symtab),
                resolver,
            ],
            &layout,
        );
        assert_eq!(table.lookup(0x1024), Some(("[.plt]", 4)));
        assert_eq!(table.lookup(0x1030), Some(("puts@plt", 0)));
        assert_eq!(table.lookup(0x103f), Some(("puts@plt", 0xf)));
        assert_eq!(table.lookup(0x1044), Some(("memcpy@plt", 4)));
        assert_eq!(table.lookup(0x1050), Some(("*ABS*+0x1234@plt", 0)));
        assert_eq!(table.lookup(0x1060), None);
        assert_eq!(table.lookup(0x1104), Some(("memcpy", 4)));
    }
}
