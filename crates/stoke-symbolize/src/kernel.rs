//! Kernel symbols from `/proc/kallsyms`.

use std::path::{Path, PathBuf};

use crate::readahead::{ReadAhead, StopFlag};
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

/// How many lines are parsed between two looks at the stop flag.
const LINES_PER_CHECK: usize = 4096;

/// Kernel symbols for a symbolizer: read when first needed, or ahead of
/// need at idle priority ([`Kernel::prefetch`]).
///
/// Reading `/proc/kallsyms` costs about 50 ms of CPU in the kernel, which
/// generates the text on each read, and 20 ms to parse. Done ahead, on a
/// CPU the target leaves idle, this is off the path from the end of
/// recording to the outputs. On a machine kept busy the read-ahead may not
/// run at all, so it is never waited for: if it has not finished when the
/// symbols are needed, they are read at once on the calling thread.
pub(crate) struct Kernel {
    path: PathBuf,
    loaded: Option<Result<KernelSymbols, UnknownReason>>,
    ahead: Option<ReadAhead<Result<KernelSymbols, UnknownReason>>>,
}

impl Kernel {
    /// The running kernel's symbols, not read yet.
    pub(crate) fn new() -> Kernel {
        Kernel::from_path(Path::new(KALLSYMS))
    }

    /// Symbols from a file in the format of `/proc/kallsyms`.
    pub(crate) fn from_path(path: &Path) -> Kernel {
        Kernel {
            path: path.to_path_buf(),
            loaded: None,
            ahead: None,
        }
    }

    /// Starts reading the symbols ahead at idle priority (see
    /// [`ReadAhead`]), unless they are read or being read already.
    pub(crate) fn prefetch(&mut self) {
        if self.loaded.is_none() && self.ahead.is_none() {
            self.ahead = ReadAhead::read_file("stoke-kallsyms", &self.path, KernelSymbols::read);
        }
    }

    /// The symbols: the read-ahead's if it has finished, else read now.
    pub(crate) fn symbols(&mut self) -> &Result<KernelSymbols, UnknownReason> {
        let ahead = &mut self.ahead;
        let path = &self.path;
        self.loaded.get_or_insert_with(|| {
            ahead
                .take()
                .and_then(ReadAhead::take)
                .or_else(|| KernelSymbols::load(path, &StopFlag::default()))
                .unwrap_or(Err(UnknownReason::KernelSymbolsHidden))
        })
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    address: u64,
    name_start: u32,
    name_len: u32,
}

/// Kernel text symbols sorted by address.
#[derive(Debug)]
pub(crate) struct KernelSymbols {
    names: String,
    entries: Vec<Entry>,
}

impl KernelSymbols {
    /// Reads and parses a kallsyms file; unreadable or all-zero addresses
    /// (`kptr_restrict`) mean the symbols are hidden. `None` when `stop`
    /// was set before the end.
    pub(crate) fn load(
        path: &Path,
        stop: &StopFlag,
    ) -> Option<Result<KernelSymbols, UnknownReason>> {
        match std::fs::File::open(path) {
            Ok(file) => KernelSymbols::read(file, stop),
            Err(_) => Some(Err(UnknownReason::KernelSymbolsHidden)),
        }
    }

    /// Parses kallsyms text from `input`, as [`KernelSymbols::load`] does.
    pub(crate) fn read(
        input: impl std::io::Read,
        stop: &StopFlag,
    ) -> Option<Result<KernelSymbols, UnknownReason>> {
        // Streamed: the whole text is ~5 MB, the kept names under half of it.
        let reader = std::io::BufReader::with_capacity(1 << 16, input);
        match KernelSymbols::parse(reader, stop) {
            Ok(Some(symbols)) if !symbols.entries.is_empty() => Some(Ok(symbols)),
            Ok(None) => None,
            Ok(Some(_)) | Err(_) => Some(Err(UnknownReason::KernelSymbolsHidden)),
        }
    }

    /// Parses `ADDRESS TYPE NAME [MODULE]` lines, keeping text symbols.
    fn parse(
        mut input: impl std::io::BufRead,
        stop: &StopFlag,
    ) -> std::io::Result<Option<KernelSymbols>> {
        let mut names = String::new();
        let mut entries: Vec<Entry> = Vec::new();
        let mut keep = |line: &[u8]| {
            if let Some((address, name)) = text_symbol(line) {
                let name_start = names.len() as u32;
                names.push_str(name);
                entries.push(Entry {
                    address,
                    name_start,
                    name_len: name.len() as u32,
                });
            }
        };
        // Lines are parsed where they lie in the reader's buffer; only a
        // line cut by the buffer's end is copied.
        let mut partial: Vec<u8> = Vec::with_capacity(256);
        let mut count = 0usize;
        loop {
            let chunk = input.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            let used = chunk.len();
            let mut rest = chunk;
            while let Some(end) = memchr::memchr(b'\n', rest) {
                let (line, after) = rest.split_at(end + 1);
                rest = after;
                count += 1;
                if count.is_multiple_of(LINES_PER_CHECK) && stop.is_set() {
                    return Ok(None);
                }
                if partial.is_empty() {
                    keep(line);
                } else {
                    partial.extend_from_slice(line);
                    keep(&partial);
                    partial.clear();
                }
            }
            partial.extend_from_slice(rest);
            input.consume(used);
        }
        if !partial.is_empty() {
            keep(&partial);
        }
        let mut symbols = KernelSymbols { names, entries };
        symbols.sort_and_pick_aliases();
        Ok(Some(symbols))
    }

    /// Sorts by address (the core kernel comes sorted, modules follow) and
    /// keeps one name per address: fewer leading underscores, then shorter.
    fn sort_and_pick_aliases(&mut self) {
        let names = &self.names;
        let name = |e: &Entry| &names[e.name_start as usize..(e.name_start + e.name_len) as usize];
        if !self.entries.is_sorted_by_key(|e| e.address) {
            self.entries.sort_by_key(|e| e.address);
        }
        let key = |e: &Entry| {
            let n = name(e);
            (n.bytes().take_while(|&b| b == b'_').count(), n.len(), n)
        };
        let mut kept = 0;
        for i in 0..self.entries.len() {
            let entry = self.entries[i];
            if kept > 0 && self.entries[kept - 1].address == entry.address {
                if key(&entry) < key(&self.entries[kept - 1]) {
                    self.entries[kept - 1] = entry;
                }
            } else {
                self.entries[kept] = entry;
                kept += 1;
            }
        }
        self.entries.truncate(kept);
        self.entries.shrink_to_fit();
    }

    pub(crate) fn lookup(&self, address: u64) -> Option<&str> {
        let i = self.entries.partition_point(|e| e.address <= address);
        let entry = self.entries[..i].last()?;
        (address - entry.address < MAX_DISTANCE).then(|| {
            &self.names[entry.name_start as usize..(entry.name_start + entry.name_len) as usize]
        })
    }
}

/// The address and name of a text symbol's line (`t`, `T`, `w`, `W`, with
/// a non-zero address): `ADDRESS TYPE NAME[\t[MODULE]]\n`.
fn text_symbol(line: &[u8]) -> Option<(u64, &str)> {
    let space = memchr::memchr(b' ', line)?;
    let (address, rest) = line.split_at(space);
    let [b' ', kind, b' ', rest @ ..] = rest else {
        return None;
    };
    if !matches!(kind, b't' | b'T' | b'w' | b'W') {
        return None;
    }
    let end = rest
        .iter()
        .position(|&b| b.is_ascii_whitespace())
        .unwrap_or(rest.len());
    let address = parse_hex(address).filter(|&a| a != 0)?;
    Some((address, std::str::from_utf8(&rest[..end]).ok()?))
}

/// A hexadecimal number of at most 16 digits.
fn parse_hex(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &b| {
        let digit = (b as char).to_digit(16)?;
        Some(value << 4 | u64::from(digit))
    })
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

    fn parse(text: &str) -> KernelSymbols {
        KernelSymbols::parse(text.as_bytes(), &StopFlag::default())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn lines_cut_by_the_read_buffer_parse_the_same() {
        let whole = parse(SAMPLE);
        for capacity in [1, 7, 25, 64] {
            let reader = std::io::BufReader::with_capacity(capacity, SAMPLE.as_bytes());
            let cut = KernelSymbols::parse(reader, &StopFlag::default())
                .unwrap()
                .unwrap();
            assert_eq!(cut.names, whole.names, "capacity {capacity}");
            assert_eq!(cut.entries.len(), whole.entries.len());
        }
        let unterminated = parse("ffffffff81000000 T _text\nffffffff81003000 T schedule");
        assert_eq!(unterminated.lookup(0xffffffff81003004), Some("schedule"));
    }

    #[test]
    fn lookups_find_the_preceding_text_symbol() {
        let syms = parse(SAMPLE);
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
        assert!(parse(hidden).entries.is_empty());
    }

    #[test]
    fn aliases_prefer_fewer_underscores_then_shorter_names_in_any_order() {
        let syms = parse(
            "ffffffff81003000 T __x64_sys_read\n\
             ffffffff81001000 T __schedule\n\
             ffffffff81001000 T schedule_long\n\
             ffffffff81001000 T schedule\n\
             ffffffff81003000 T ksys_read\n",
        );
        assert_eq!(syms.entries.len(), 2);
        assert_eq!(syms.lookup(0xffffffff81001004), Some("schedule"));
        assert_eq!(syms.lookup(0xffffffff81003004), Some("ksys_read"));
    }

    /// The file every lookup test reads: two text symbols.
    fn fake_kallsyms(dir: &Path) -> PathBuf {
        let path = dir.join("kallsyms");
        std::fs::write(&path, SAMPLE).unwrap();
        path
    }

    /// On a machine kept busy the idle-priority read-ahead may never run:
    /// the symbols must then be read at once, not waited for. Here the
    /// read-ahead never finishes; before the symbols were read on the
    /// caller's thread, this hung.
    #[test]
    fn a_starved_read_ahead_is_not_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let mut kernel = Kernel::from_path(&fake_kallsyms(dir.path()));
        // A read-ahead whose child never writes.
        let mut never = std::process::Command::new("sleep");
        never.arg("600");
        kernel.ahead = ReadAhead::spawn("test-kallsyms", never, KernelSymbols::read);
        assert!(kernel.ahead.is_some());
        let symbols = kernel.symbols().as_ref().unwrap();
        assert_eq!(symbols.lookup(0xffffffff81003004), Some("schedule"));
    }

    #[test]
    fn a_finished_read_ahead_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let mut kernel = Kernel::from_path(&fake_kallsyms(dir.path()));
        let parsed = parse("ffffffff81000000 T only_from_the_read_ahead\n");
        kernel.ahead = Some(ReadAhead::finished(Ok(parsed)));
        let symbols = kernel.symbols().as_ref().unwrap();
        assert_eq!(
            symbols.lookup(0xffffffff81000004),
            Some("only_from_the_read_ahead")
        );
    }

    #[test]
    fn a_stopped_parse_gives_nothing() {
        let stop = StopFlag::default();
        stop.set();
        let text = SAMPLE.repeat(LINES_PER_CHECK);
        assert!(KernelSymbols::parse(text.as_bytes(), &stop)
            .unwrap()
            .is_none());
    }
}
