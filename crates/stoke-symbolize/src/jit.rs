//! JIT symbols from perf maps (`/tmp/perf-PID.map`), opened safely: stoke
//! often runs as root, and the map lives in a world-writable folder, so a
//! symlink or a file planted by another user is refused.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
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

/// The uids whose maps are trusted for `pid`: root, the process's owner, and
/// the user stoke runs as.
pub(crate) fn trusted_uids(pid: Pid) -> Vec<u32> {
    let mut uids = vec![0];
    for path in [format!("/proc/{pid}"), "/proc/self".to_string()] {
        if let Ok(meta) = std::fs::metadata(path) {
            uids.push(meta.uid());
        }
    }
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

/// Reads an opened map.
pub(crate) fn read_map(mut file: File, path: &Path) -> Result<JitMap, MapError> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|source| MapError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(JitMap::parse(&String::from_utf8_lossy(&bytes)))
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    start: u64,
    end: u64,
    /// Line number: a later line for the same code wins (re-JITed code).
    order: usize,
    name_start: usize,
    name_end: usize,
}

/// A parsed perf map, sorted by start address.
#[derive(Debug, Default)]
pub(crate) struct JitMap {
    names: String,
    entries: Vec<Entry>,
    /// The largest entry size, bounding the backward scan of a lookup.
    max_size: u64,
}

/// How many earlier entries a lookup checks for overlaps.
const OVERLAP_LOOKBACK: usize = 64;

impl JitMap {
    /// Parses `START SIZE NAME` lines (hex numbers, `0x` optional; the
    /// name may contain spaces). Malformed lines are skipped.
    pub(crate) fn parse(text: &str) -> JitMap {
        let mut map = JitMap::default();
        for (order, line) in text.lines().enumerate() {
            let Some((start, rest)) = line.trim_start().split_once(char::is_whitespace) else {
                continue;
            };
            let Some((size, name)) = rest.trim_start().split_once(char::is_whitespace) else {
                continue;
            };
            let name = name.trim();
            let (Some(start), Some(size)) = (parse_hex(start), parse_hex(size)) else {
                continue;
            };
            if size == 0 || name.is_empty() {
                continue;
            }
            let name_start = map.names.len();
            map.names.push_str(name);
            map.max_size = map.max_size.max(size);
            map.entries.push(Entry {
                start,
                end: start.saturating_add(size),
                order,
                name_start,
                name_end: map.names.len(),
            });
        }
        map.entries.sort_by_key(|e| (e.start, e.order));
        map
    }

    /// The name covering `address`; the latest line wins where entries overlap.
    pub(crate) fn lookup(&self, address: u64) -> Option<&str> {
        let i = self.entries.partition_point(|e| e.start <= address);
        let entry = self.entries[..i]
            .iter()
            .rev()
            .take(OVERLAP_LOOKBACK)
            .take_while(|e| address - e.start < self.max_size)
            .filter(|e| address < e.end)
            .max_by_key(|e| e.order)?;
        Some(&self.names[entry.name_start..entry.name_end])
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
}
