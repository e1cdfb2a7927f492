//! JIT symbols from perf maps (`/tmp/perf-PID.map`), opened safely: stoke
//! often runs as root, and the map lives in a world-writable folder, so a
//! symlink or a file planted by another user is refused. A map is read as a
//! stream, at most [`MAX_MAP_BYTES`] of it and [`MAX_MAP_ENTRIES`] entries,
//! and lines longer than [`MAX_LINE_BYTES`] are skipped: the target's user
//! writes it, and a huge or sparse file must not make stoke use gigabytes.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use stoke_model::Pid;

/// Why a perf map was not used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MapError {
    /// There is no map (the common case: not a JIT).
    #[error("{0}: no such file")]
    Missing(PathBuf),
    /// The path is a symbolic link.
    #[error("refused {0}: it is a symbolic link")]
    Symlink(PathBuf),
    /// Not a regular file (a FIFO, a device, a folder).
    #[error("refused {0}: not a regular file")]
    NotRegular(PathBuf),
    /// Owned by someone other than root or the target's owner.
    #[error("refused {path}: owned by uid {uid}, not by root or the target's owner")]
    Owner {
        /// The map.
        path: PathBuf,
        /// Its owner.
        uid: u32,
    },
    /// Another I/O error, errno kept.
    #[error("{path}: {source}")]
    Io {
        /// The map.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// What identifies one version of a map file (it grows while the JIT runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    dev: u64,
    inode: u64,
    size: u64,
    mtime_ns: i128,
}

impl Stamp {
    /// The file's size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            inode: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// The perf map paths of a process, most specific first: inside its mount
/// namespace under its namespaced pid, then the host's.
pub(crate) fn map_paths(pid: Pid) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(nspid) = namespaced_pid(pid) {
        if nspid != pid.0 {
            paths.push(PathBuf::from(format!(
                "/proc/{pid}/root/tmp/perf-{nspid}.map"
            )));
        }
    }
    paths.push(PathBuf::from(format!("/tmp/perf-{pid}.map")));
    paths
}

/// The innermost pid of a process (`NSpid:` in `/proc/PID/status`).
fn namespaced_pid(pid: Pid) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

/// The owner (uid) of a live process, from `/proc/PID`.
pub(crate) fn owner(pid: Pid) -> Option<u32> {
    std::fs::metadata(format!("/proc/{pid}"))
        .ok()
        .map(|m| m.uid())
}

/// The uids whose maps are trusted for `pid`: root, the process's owner
/// while it lives, the user stoke runs as, and `known_owners` (remembered
/// while the targets lived, for maps read after they exited).
pub(crate) fn trusted_uids(pid: Pid, known_owners: &[u32]) -> Vec<u32> {
    let mut uids = vec![0];
    uids.extend(owner(pid));
    uids.extend(std::fs::metadata("/proc/self").ok().map(|m| m.uid()));
    uids.extend_from_slice(known_owners);
    uids
}

/// Opens a map without following a final symlink and without blocking on a
/// FIFO, and checks it is a regular file owned by a trusted uid.
pub(crate) fn open_map(path: &Path, trusted: &[u32]) -> Result<(File, Stamp), MapError> {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(MapError::Missing(path.to_path_buf()))
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(MapError::Symlink(path.to_path_buf()))
        }
        Err(source) => {
            return Err(MapError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let meta = file.metadata().map_err(|source| MapError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(MapError::NotRegular(path.to_path_buf()));
    }
    if !trusted.contains(&meta.uid()) {
        return Err(MapError::Owner {
            path: path.to_path_buf(),
            uid: meta.uid(),
        });
    }
    Ok((file, Stamp::of(&meta)))
}

/// At most this much of a perf map is read (about 400,000 lines of
/// `node --perf-basic-prof`).
pub(crate) const MAX_MAP_BYTES: u64 = 64 << 20;

/// At most this many entries of a perf map are kept (48 MB of entries).
pub(crate) const MAX_MAP_ENTRIES: usize = 2_000_000;

/// Longer lines are skipped (no runtime names code with 4 KiB of text).
pub(crate) const MAX_LINE_BYTES: usize = 4096;

/// How much of a perf map is read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Bytes read at most.
    pub(crate) bytes: u64,
    /// Entries kept at most.
    pub(crate) entries: usize,
    /// Longer lines are skipped.
    pub(crate) line: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            bytes: MAX_MAP_BYTES,
            entries: MAX_MAP_ENTRIES,
            line: MAX_LINE_BYTES,
        }
    }
}

/// Reads an opened map of `size` bytes, within `limits`; the second value
/// is a warning that says what was left out, if anything was.
pub(crate) fn read_map(
    file: impl Read,
    path: &Path,
    size: u64,
    limits: Limits,
) -> Result<(JitMap, Option<String>), MapError> {
    let io = |source| MapError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut input = BufReader::with_capacity(1 << 16, file.take(limits.bytes));
    let mut map = JitMap::default();
    let mut line = Vec::with_capacity(256);
    let mut long_lines = 0u64;
    let mut consumed = 0u64;
    let mut full = false;
    loop {
        line.clear();
        let limit = limits.line as u64 + 1;
        let n = (&mut input)
            .take(limit)
            .read_until(b'\n', &mut line)
            .map_err(io)?;
        if n == 0 {
            break;
        }
        consumed += n as u64;
        if !line.ends_with(b"\n") {
            if line.len() > limits.line {
                long_lines += 1;
                consumed += input.skip_until(b'\n').map_err(io)? as u64;
                continue;
            }
            if input.get_ref().limit() == 0 {
                // Cut by the byte limit: not a whole line.
                break;
            }
        }
        map.add_line(&String::from_utf8_lossy(&line));
        if map.entries.len() >= limits.entries {
            full = true;
            break;
        }
    }
    map.finish();
    let mut left_out = Vec::new();
    if full || input.get_ref().limit() == 0 && consumed < size {
        left_out.push(format!(
            "read only the first {} of {} (at most {} or {} entries are read); \
             JIT frames in the rest read [unknown]",
            amount(consumed),
            amount(size),
            amount(limits.bytes),
            limits.entries,
        ));
    }
    if long_lines > 0 {
        left_out.push(format!(
            "skipped {long_lines} line(s) longer than {} bytes",
            limits.line
        ));
    }
    let warning =
        (!left_out.is_empty()).then(|| format!("{}: {}", path.display(), left_out.join("; ")));
    Ok((map, warning))
}

/// A size for people: whole MiB from 1 MiB on, else bytes.
fn amount(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    start: u64,
    size: u32,
    /// Line number: a later line for the same code wins (re-JITed code).
    order: u32,
    name_start: u32,
    name_len: u32,
}

impl Entry {
    fn end(&self) -> u64 {
        self.start.saturating_add(u64::from(self.size))
    }
}

/// A parsed perf map, sorted by start address.
#[derive(Debug, Default)]
pub(crate) struct JitMap {
    names: String,
    entries: Vec<Entry>,
    /// The largest entry size, bounding the backward scan of a lookup.
    max_size: u64,
    /// Lines seen, for each entry's order.
    lines: u32,
}

/// How many earlier entries a lookup checks for overlaps.
const OVERLAP_LOOKBACK: usize = 64;

impl JitMap {
    /// Parses `START SIZE NAME` lines (hex numbers, `0x` optional; the
    /// name may contain spaces). Malformed lines are skipped.
    #[cfg(test)]
    pub(crate) fn parse(text: &str) -> JitMap {
        let mut map = JitMap::default();
        for line in text.lines() {
            map.add_line(line);
        }
        map.finish();
        map
    }

    /// Adds one `START SIZE NAME` line, if it is one.
    fn add_line(&mut self, line: &str) {
        let order = self.lines;
        self.lines = self.lines.saturating_add(1);
        let Some((start, rest)) = line.trim_start().split_once(char::is_whitespace) else {
            return;
        };
        let Some((size, name)) = rest.trim_start().split_once(char::is_whitespace) else {
            return;
        };
        let name = name.trim();
        let (Some(start), Some(size)) = (parse_hex(start), parse_hex(size)) else {
            return;
        };
        let size = u32::try_from(size).unwrap_or(u32::MAX);
        if size == 0 || name.is_empty() {
            return;
        }
        let (Ok(name_start), Ok(name_len)) =
            (u32::try_from(self.names.len()), u32::try_from(name.len()))
        else {
            return;
        };
        self.names.push_str(name);
        self.max_size = self.max_size.max(u64::from(size));
        self.entries.push(Entry {
            start,
            size,
            order,
            name_start,
            name_len,
        });
    }

    /// Sorts the entries for lookups.
    fn finish(&mut self) {
        self.entries.sort_by_key(|e| (e.start, e.order));
        self.entries.shrink_to_fit();
    }

    /// The name covering `address`; the latest line wins where entries overlap.
    pub(crate) fn lookup(&self, address: u64) -> Option<&str> {
        let i = self.entries.partition_point(|e| e.start <= address);
        let entry = self.entries[..i]
            .iter()
            .rev()
            .take(OVERLAP_LOOKBACK)
            .take_while(|e| address - e.start < self.max_size)
            .filter(|e| address < e.end())
            .max_by_key(|e| e.order)?;
        let start = entry.name_start as usize;
        Some(&self.names[start..start + entry.name_len as usize])
    }
}

fn parse_hex(field: &str) -> Option<u64> {
    let digits = field
        .strip_prefix("0x")
        .or_else(|| field.strip_prefix("0X"))
        .unwrap_or(field);
    u64::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_parse_with_or_without_0x_and_names_with_spaces() {
        let map = JitMap::parse(
            "7f0000001000 40 LazyCompile:~foo bar.js:1\n\
             0x7f0000002000 0x20 Interpreter\n\
             garbage\n\
             7f0000003000 0 empty\n",
        );
        assert_eq!(
            map.lookup(0x7f0000001000),
            Some("LazyCompile:~foo bar.js:1")
        );
        assert_eq!(
            map.lookup(0x7f000000103f),
            Some("LazyCompile:~foo bar.js:1")
        );
        assert_eq!(map.lookup(0x7f0000001040), None);
        assert_eq!(map.lookup(0x7f0000002010), Some("Interpreter"));
        assert_eq!(map.lookup(0x7f0000003000), None);
        assert_eq!(map.lookup(0x10), None);
    }

    #[test]
    fn later_lines_win_where_code_was_rejitted() {
        let map = JitMap::parse("1000 100 old\n1080 10 inner\n1000 100 new\n");
        assert_eq!(map.lookup(0x1010), Some("new"));
        assert_eq!(map.lookup(0x1084), Some("new"));
        let map = JitMap::parse("1000 100 old\n1080 10 inner\n");
        assert_eq!(map.lookup(0x1084), Some("inner"));
        assert_eq!(map.lookup(0x10f0), Some("old"));
    }

    fn read(text: &[u8], limits: Limits) -> (JitMap, Option<String>) {
        read_map(
            text,
            Path::new("/tmp/perf-1.map"),
            text.len() as u64,
            limits,
        )
        .unwrap()
    }

    const SMALL: Limits = Limits {
        bytes: 1 << 20,
        entries: 1000,
        line: 64,
    };

    #[test]
    fn long_lines_are_skipped_and_counted_and_reading_goes_on() {
        let mut text = b"1000 10 before\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', 100_000));
        text.extend_from_slice(b"\n2000 10 after\n3000 10 ");
        text.extend(std::iter::repeat_n(b'y', 65));
        text.extend_from_slice(b"\n4000 10 last, no newline");
        let (map, warning) = read(&text, SMALL);
        assert_eq!(map.lookup(0x1004), Some("before"));
        assert_eq!(map.lookup(0x2004), Some("after"));
        assert_eq!(map.lookup(0x3004), None);
        assert_eq!(map.lookup(0x4004), Some("last, no newline"));
        let warning = warning.unwrap();
        assert!(
            warning.starts_with("/tmp/perf-1.map: skipped 2 line(s) longer than 64 bytes"),
            "{warning}"
        );
        assert!(!warning.contains("read only"), "{warning}");
    }

    #[test]
    fn reading_stops_at_the_byte_limit_and_says_so() {
        let line = b"7f0000001000 40 some_function_name\n";
        let text = line.repeat(100);
        let limits = Limits {
            bytes: (line.len() * 10 + 5) as u64,
            ..SMALL
        };
        let (map, warning) = read(&text, limits);
        assert_eq!(map.entries.len(), 10, "the cut 11th line is not used");
        let warning = warning.unwrap();
        assert!(
            warning.contains(&format!(
                "read only the first {} bytes of {} bytes",
                line.len() * 10 + 5,
                text.len()
            )),
            "{warning}"
        );
    }

    #[test]
    fn reading_stops_at_the_entry_limit_and_says_so() {
        let text: Vec<u8> = (0..100u64)
            .flat_map(|i| format!("{:x} 10 f{i}\n", 0x1000 + i * 0x10).into_bytes())
            .collect();
        let limits = Limits {
            entries: 7,
            ..SMALL
        };
        let (map, warning) = read(&text, limits);
        assert_eq!(map.entries.len(), 7);
        assert_eq!(map.lookup(0x1064), Some("f6"));
        assert!(warning.unwrap().contains("or 7 entries are read"));
    }

    #[test]
    fn a_whole_small_map_gives_no_warning() {
        let (map, warning) = read(b"1000 10 a\n2000 10 b\n", SMALL);
        assert_eq!(map.lookup(0x2000), Some("b"));
        assert_eq!(warning, None);
    }
}
