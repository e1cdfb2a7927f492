//! Kernel symbols from `/proc/kallsyms`.

use std::path::Path;

use crate::UnknownReason;

/// The kernel's symbol list.
pub(crate) const KALLSYMS: &str = "/proc/kallsyms";

/// The sysctl that hides kernel addresses from unprivileged readers.
const KPTR_RESTRICT: &str = "/proc/sys/kernel/kptr_restrict";

/// `kernel.kptr_restrict`, if readable.
pub(crate) fn kptr_restrict() -> Option<u32> {
    std::fs::read_to_string(KPTR_RESTRICT)
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The warning given once when kernel frames cannot be named, with the
/// setting in force and the remedy.
pub(crate) fn hidden_message(kptr_restrict: Option<u32>) -> String {
    let setting = match kptr_restrict {
        Some(value) => format!("kernel.kptr_restrict={value}"),
        None => "kernel.kptr_restrict".to_string(),
    };
    let remedy = if kptr_restrict == Some(2) {
        "set kernel.kptr_restrict=1 and run as root, or set it to 0"
    } else {
        "run as root or set kernel.kptr_restrict=0"
    };
    format!(
        "kernel symbols are hidden ({setting}: /proc/kallsyms shows no addresses); \
         kernel frames read [unknown]: {remedy}"
    )
}

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
        let file = std::fs::File::open(path).map_err(|_| UnknownReason::KernelSymbolsHidden)?;
        // Streamed: the whole text is ~7 MB, the kept names a third of it.
        let symbols = KernelSymbols::parse(std::io::BufReader::with_capacity(1 << 16, file))
            .map_err(|_| UnknownReason::KernelSymbolsHidden)?;
        if symbols.entries.is_empty() {
            return Err(UnknownReason::KernelSymbolsHidden);
        }
        Ok(symbols)
    }

    fn parse(mut input: impl std::io::BufRead) -> std::io::Result<KernelSymbols> {
        let mut names = String::new();
        let mut entries = Vec::new();
        let mut line = String::new();
        while input.read_line(&mut line)? > 0 {
            let mut fields = line.split_whitespace();
            if let (Some(address), Some("t" | "T" | "w" | "W"), Some(name)) =
                (fields.next(), fields.next(), fields.next())
            {
                if let Ok(address @ 1..) = u64::from_str_radix(address, 16) {
                    let name_start = names.len();
                    names.push_str(name);
                    entries.push(Entry {
                        address,
                        name_start,
                        name_end: names.len(),
                    });
                }
            }
            line.clear();
        }
        // Aliases at one address: prefer fewer leading underscores, then shorter.
        let name = |e: &Entry| &names[e.name_start..e.name_end];
        entries.sort_by(|a, b| {
            let key = |e: &Entry| {
                let n = name(e);
                (
                    e.address,
                    n.bytes().take_while(|&b| b == b'_').count(),
                    n.len(),
                )
            };
            key(a).cmp(&key(b)).then_with(|| name(a).cmp(name(b)))
        });
        entries.dedup_by_key(|e| e.address);
        entries.shrink_to_fit();
        Ok(KernelSymbols { names, entries })
    }

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
        let syms = KernelSymbols::parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(syms.lookup(0xffffffff81000010), Some("_text"));
        assert_eq!(syms.lookup(0xffffffff81002010), Some("do_one_initcall"));
        assert_eq!(syms.lookup(0xffffffff81003004), Some("schedule"));
        assert_eq!(syms.lookup(0xffffffffc0000010), Some("ext4_foo"));
        assert_eq!(syms.lookup(0x1000), None);
        assert_eq!(syms.lookup(0xffffffff90000000), None);
    }

    #[test]
    fn the_hidden_message_names_the_setting_and_the_remedy() {
        let one = hidden_message(Some(1));
        assert!(one.contains("kernel.kptr_restrict=1"), "{one}");
        assert!(
            one.contains("run as root or set kernel.kptr_restrict=0"),
            "{one}"
        );
        assert!(hidden_message(Some(2)).contains("set kernel.kptr_restrict=1 and run as root"));
        assert!(hidden_message(None).contains("kernel.kptr_restrict"));
    }

    #[test]
    fn zero_addresses_mean_hidden() {
        let hidden = "0000000000000000 T _text\n0000000000000000 T schedule\n";
        assert!(KernelSymbols::parse(hidden.as_bytes())
            .unwrap()
            .entries
            .is_empty());
    }
}
