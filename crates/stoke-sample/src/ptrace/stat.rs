//! A thread's scheduler state from `/proc/PID/task/TID/stat`, read through
//! a descriptor kept open (one `pread` per look).

use std::fs::File;
use std::os::unix::fs::FileExt;

use stoke_model::{Pid, Tid};

/// What one read of a thread's `stat` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ThreadStat {
    /// The state letter: `R` running or runnable, `S` sleeping, `D` in
    /// uninterruptible sleep, `T`/`t` stopped, `Z`/`X` dead.
    pub(crate) state: u8,
    /// The thread's name.
    pub(crate) comm: String,
    /// The CPU it last ran on.
    pub(crate) cpu: u32,
    /// The number of threads of its process.
    pub(crate) num_threads: u32,
}

impl ThreadStat {
    /// Whether it is on a CPU or waiting for one.
    pub(crate) fn running(&self) -> bool {
        self.state == b'R'
    }

    /// Whether it is stopped (job control or a tracer) or dead.
    pub(crate) fn stopped_or_dead(&self) -> bool {
        matches!(self.state, b'T' | b't' | b'Z' | b'X' | b'x')
    }
}

/// Parses `pid (comm) state ppid … processor …`; the name may hold spaces
/// and parentheses, so it ends at the last `)`.
pub(crate) fn parse(text: &[u8]) -> Option<ThreadStat> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    let comm = String::from_utf8_lossy(text.get(open + 1..close)?).into_owned();
    let rest = std::str::from_utf8(text.get(close + 1..)?).ok()?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let state = *fields.first()?.as_bytes().first()?;
    // Field N of the line (1-based) is `fields[N - 3]`: the state is field 3,
    // `num_threads` field 20, `processor` field 39.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse().ok());
    let cpu = field(39).unwrap_or(0);
    let num_threads = field(20).unwrap_or(0);
    Some(ThreadStat {
        state,
        comm,
        cpu,
        num_threads,
    })
}

/// Where a blocked thread waits, from `/proc/PID/task/TID/syscall`: the
/// system call number (-1: blocked outside one, e.g. in a page fault), its
/// stack pointer and instruction pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BlockedIn {
    /// The system call number, -1 if none.
    pub(crate) nr: i64,
    /// The user stack pointer.
    pub(crate) sp: u64,
    /// The user instruction pointer.
    pub(crate) pc: u64,
}

/// Parses `NR ARG1 … ARG6 SP PC` (or `-1 SP PC`); `None` for `running`.
pub(crate) fn parse_syscall(text: &[u8]) -> Option<BlockedIn> {
    let text = std::str::from_utf8(text).ok()?;
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    let nr: i64 = fields.first()?.parse().ok()?;
    let hex = |f: &str| u64::from_str_radix(f.strip_prefix("0x")?, 16).ok();
    let (sp, pc) = match fields.len() {
        3 | 9 => (
            hex(fields[fields.len() - 2])?,
            hex(fields[fields.len() - 1])?,
        ),
        _ => return None,
    };
    Some(BlockedIn { nr, sp, pc })
}

/// An open `stat` file of one thread.
#[derive(Debug)]
pub(crate) struct StatFile {
    file: Option<File>,
    buf: Vec<u8>,
}

impl StatFile {
    /// Opens the `stat` file of `tid` in process `pid` (a thread that is
    /// gone gives a file that always reads `None`).
    pub(crate) fn open(pid: Pid, tid: Tid) -> StatFile {
        StatFile {
            file: File::open(format!("/proc/{pid}/task/{tid}/stat")).ok(),
            buf: vec![0; 1024],
        }
    }

    /// Reads the thread's current state; `None` once it is gone.
    pub(crate) fn read(&mut self) -> Option<ThreadStat> {
        let n = self.file.as_ref()?.read_at(&mut self.buf, 0).ok()?;
        parse(&self.buf[..n])
    }
}

/// Reads where the blocked thread `tid` of `pid` waits; `None` if it runs
/// or is gone. Asks nothing of the thread (it is not interrupted).
pub(crate) fn blocked_in(pid: Pid, tid: Tid) -> Option<BlockedIn> {
    let text = std::fs::read(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
    parse_syscall(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_lines_parse() {
        let line = b"232 0x3 0x7ffc 0x1 0xffffffffffffffff 0x0 0x0 0x7ffd1000 0x7f00aa\n";
        assert_eq!(
            parse_syscall(line),
            Some(BlockedIn {
                nr: 232,
                sp: 0x7ffd1000,
                pc: 0x7f00aa
            })
        );
        assert_eq!(parse_syscall(b"-1 0x10 0x20\n").map(|b| b.nr), Some(-1));
        assert_eq!(parse_syscall(b"running\n"), None);
    }

    #[test]
    fn names_with_parentheses_and_spaces_parse() {
        let line = b"42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 3 0 \
                     100 1000 50 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 7 0 0 0 0 0\n";
        let stat = parse(line).unwrap();
        assert_eq!(stat.comm, "my (odd) name");
        assert_eq!(stat.state, b'S');
        assert_eq!(stat.cpu, 7);
        assert_eq!(stat.num_threads, 3);
        assert!(!stat.running());
    }

    #[test]
    fn own_thread_is_running() {
        let me = Pid(std::process::id());
        let link = std::fs::read_link("/proc/thread-self").unwrap();
        let tid = link.file_name().unwrap().to_str().unwrap().parse().unwrap();
        let stat = StatFile::open(me, Tid(tid)).read().unwrap();
        assert!(stat.running(), "{stat:?}");
    }
}
