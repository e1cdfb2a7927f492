//! ELF symbol tables merged into one sorted table for address lookups.

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
    size: u64,
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
    /// over weak over local, fewer leading underscores, shorter).
    pub(crate) fn build(mut symbols: Vec<RawSymbol<'_>>) -> SymbolTable {
        symbols.sort_by(|a, b| {
            a.address
                .cmp(&b.address)
                .then_with(|| a.preference().cmp(&b.preference()))
        });
        let mut table = SymbolTable::default();
        for sym in &symbols {
            if let Some(last) = table.entries.last_mut() {
                if last.address == sym.address {
                    last.size = last.size.max(sym.size);
                    continue;
                }
            }
            let name_start = table.names.len();
            table.names.push_str(sym.name);
            table.entries.push(Entry {
                address: sym.address,
                size: sym.size,
                name_start,
                name_end: table.names.len(),
            });
        }
        table.entries.shrink_to_fit();
        table.names.shrink_to_fit();
        table
    }

    /// Number of distinct symbol addresses.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The symbol covering `address`, with the offset into it: the nearest
    /// preceding symbol if its size covers the address (an unsized symbol
    /// covers up to the next one), else an enclosing sized symbol shortly
    /// before it.
    pub(crate) fn lookup(&self, address: u64) -> Option<(&str, u64)> {
        let i = self.entries.partition_point(|e| e.address <= address);
        let nearest = self.entries[..i].last()?;
        let covers = |e: &Entry| address - e.address < e.size;
        let entry = if nearest.size == 0 || covers(nearest) {
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
        let table = SymbolTable::build(vec![
            sym(0x200, 0x10, "b", SymbolSource::Symtab),
            sym(0x100, 0x80, "a", SymbolSource::Symtab),
            sym(0x300, 0, "label", SymbolSource::Symtab),
        ]);
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
        let table = SymbolTable::build(vec![
            sym(0x100, 0x40, "__libc_malloc", SymbolSource::Symtab),
            sym(0x100, 0x40, "malloc", SymbolSource::Dynsym),
            sym(0x100, 0x40, "malloc", SymbolSource::Symtab),
        ]);
        assert_eq!(table.len(), 1);
        assert_eq!(table.lookup(0x120), Some(("malloc", 0x20)));
    }

    #[test]
    fn nested_symbols_fall_back_to_the_enclosing_one() {
        let table = SymbolTable::build(vec![
            sym(0x100, 0x100, "outer", SymbolSource::Symtab),
            sym(0x140, 0x10, "inner", SymbolSource::Symtab),
        ]);
        assert_eq!(table.lookup(0x145), Some(("inner", 5)));
        assert_eq!(table.lookup(0x160), Some(("outer", 0x60)));
    }
}
