//! Kernel symbols from `/proc/kallsyms`.

use std::path::Path;

use crate::UnknownReason;

/// The kernel's symbol list.
pub(crate) const KALLSYMS: &str = "/proc/kallsyms";

/// An address further than this past the nearest kernel symbol is not
/// attributed to it (kallsyms has no sizes).
const MAX_DISTANCE: u64 = 1 << 20;

#[derive(Clone, Copy, Debug)]
struct Entry {
    address: u64,
    name_start: usize,
    name_end: usize,
}

/// Kernel text symbols sorted by address.
#[derive(Debug)]
pub(crate) struct KernelSymbols {
    names: String,
    entries: Vec<Entry>,
}

impl KernelSymbols {
    /// Reads and parses a kallsyms file; unreadable or all-zero addresses
    /// (`kptr_restrict`) mean the symbols are hidden.
    pub(crate) fn load(path: &Path) -> Result<KernelSymbols, UnknownReason> {
        let text = std::fs::read_to_string(path).map_err(|_| UnknownReason::KernelSymbolsHidden)?;
        let symbols = KernelSymbols::parse(&text);
        if symbols.entries.is_empty() {
            return Err(UnknownReason::KernelSymbolsHidden);
        }
        Ok(symbols)
    }

    /// Parses kallsyms text (`ADDR TYPE NAME [MODULE]` per line), keeping
    /// text symbols with a non-zero address.
    fn parse(text: &str) -> KernelSymbols {
        let mut parsed: Vec<(u64, &str)> = Vec::new();
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            let (Some(address), Some(kind), Some(name)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if !matches!(kind, "t" | "T" | "w" | "W") {
                continue;
            }
            match u64::from_str_radix(address, 16) {
                Ok(address) if address != 0 => parsed.push((address, name)),
                _ => {}
            }
        }
        // Aliases at one address: prefer fewer leading underscores, then shorter.
        parsed.sort_by_key(|&(address, name)| {
            let underscores = name.bytes().take_while(|&b| b == b'_').count();
            (address, underscores, name.len(), name)
        });
        parsed.dedup_by_key(|&mut (address, _)| address);
        let mut names = String::new();
        let entries = parsed
            .into_iter()
            .map(|(address, name)| {
                let name_start = names.len();
                names.push_str(name);
                Entry {
                    address,
                    name_start,
                    name_end: names.len(),
                }
            })
            .collect();
        KernelSymbols { names, entries }
    }

    /// The symbol at or before `address`, if close enough.
    pub(crate) fn lookup(&self, address: u64) -> Option<&str> {
        let i = self.entries.partition_point(|e| e.address <= address);
        let entry = self.entries[..i].last()?;
        (address - entry.address < MAX_DISTANCE)
            .then(|| &self.names[entry.name_start..entry.name_end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
ffffffff81000000 T _text
ffffffff81000000 T _stext
ffffffff81001000 t do_one_initcall
ffffffff81002000 D some_data
ffffffff81003000 T schedule
ffffffffc0000000 t ext4_foo\t[ext4]
";

    #[test]
    fn lookups_find_the_preceding_text_symbol() {
        let syms = KernelSymbols::parse(SAMPLE);
        assert_eq!(syms.lookup(0xffffffff81000010), Some("_text"));
        assert_eq!(syms.lookup(0xffffffff81002010), Some("do_one_initcall"));
        assert_eq!(syms.lookup(0xffffffff81003004), Some("schedule"));
        assert_eq!(syms.lookup(0xffffffffc0000010), Some("ext4_foo"));
        assert_eq!(syms.lookup(0x1000), None);
        assert_eq!(syms.lookup(0xffffffff90000000), None);
    }

    #[test]
    fn zero_addresses_mean_hidden() {
        let hidden = "0000000000000000 T _text\n0000000000000000 T schedule\n";
        assert!(KernelSymbols::parse(hidden).entries.is_empty());
    }
}
