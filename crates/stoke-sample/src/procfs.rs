//! Reading a process's state from `/proc`: threads, names, mappings.

use std::io;
use std::path::{Path, PathBuf};

use stoke_model::{Avma, Mapping, Pid, Tid};

use crate::perf::record::{makedev, mapping_kind};
use crate::SampleError;

/// A `/proc` read error: a missing process is [`SampleError::NoSuchProcess`].
fn proc_error(pid: Pid, what: &str) -> impl FnOnce(io::Error) -> SampleError + '_ {
    move |source| match source.kind() {
        io::ErrorKind::NotFound => SampleError::NoSuchProcess(pid),
        _ => SampleError::Sys {
            call: crate::error::Call::ReadProc,
            what: format!("reading /proc/{pid}/{what}"),
            source,
        },
    }
}

/// The thread ids of a process (`/proc/PID/task`), in ascending order.
pub fn threads(pid: Pid) -> Result<Vec<Tid>, SampleError> {
    let entries =
        std::fs::read_dir(format!("/proc/{pid}/task")).map_err(proc_error(pid, "task"))?;
    let mut tids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(proc_error(pid, "task"))?;
        if let Some(tid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
            tids.push(Tid(tid));
        }
    }
    tids.sort_unstable();
    Ok(tids)
}

/// Every process id in `/proc`, in no particular order.
pub fn all_pids() -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok().map(Pid))
        .collect()
}

/// Listings of the task list at most in [`for_each_thread_until_stable`].
const MAX_THREAD_SCANS: usize = 32;

/// Hands every thread of a process to `each` once, with the number of the
/// listing that found it (0 for the first), listing `/proc/PID/task` again
/// until no new thread appears: threads born while a sampler attaches are
/// caught too. At most 32 listings; a thread born after the last one was
/// created by a thread already handled, which the caller follows itself.
pub(crate) fn for_each_thread_until_stable(
    pid: Pid,
    mut each: impl FnMut(Tid, usize) -> Result<(), SampleError>,
) -> Result<(), SampleError> {
    let mut seen = std::collections::HashSet::new();
    for scan in 0..MAX_THREAD_SCANS {
        let new: Vec<Tid> = threads(pid)?
            .into_iter()
            .filter(|tid| seen.insert(*tid))
            .collect();
        if new.is_empty() {
            break;
        }
        for tid in new {
            each(tid, scan)?;
        }
    }
    Ok(())
}

/// The CPU time a process used so far, user and kernel, its live and dead
/// threads and the children it waited for (`/proc/PID/stat` fields 14–17),
/// if it can be read.
pub fn process_cpu_time(pid: Pid) -> Option<std::time::Duration> {
    let text = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    cpu_ticks(&text).map(|ticks| {
        let per_second = crate::sys::time::clock_ticks();
        std::time::Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / per_second)
    })
}

/// utime + stime + cutime + cstime of a `/proc/PID/stat` line, in ticks.
fn cpu_ticks(stat: &[u8]) -> Option<u64> {
    // The name may hold spaces and parentheses: fields follow the last ')'.
    let end = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[end + 1..]).ok()?;
    // Field 3 (state) is the first after the name; 14–17 follow.
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    fields
        .get(11..15)?
        .iter()
        .try_fold(0u64, |sum, f| Some(sum.saturating_add(f.parse().ok()?)))
}

/// A thread's name (`/proc/PID/task/TID/comm`), if it still exists.
pub fn thread_name(pid: Pid, tid: Tid) -> Option<String> {
    let name = std::fs::read(format!("/proc/{pid}/task/{tid}/comm")).ok()?;
    let name = name.strip_suffix(b"\n").unwrap_or(&name);
    Some(String::from_utf8_lossy(name).into_owned())
}

/// The executable mappings of a process (`/proc/PID/maps`), with device and inode.
pub fn executable_mappings(pid: Pid) -> Result<Vec<Mapping>, SampleError> {
    let text = std::fs::read(format!("/proc/{pid}/maps")).map_err(proc_error(pid, "maps"))?;
    Ok(parse_maps(&String::from_utf8_lossy(&text)))
}

/// The executable mappings in the text of a `maps` file. Lines that do not
/// parse are skipped.
pub(crate) fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines().filter_map(parse_maps_line).collect()
}

/// Splits off the next space-separated field.
fn next_field<'a>(rest: &mut &'a str) -> Option<&'a str> {
    let text = rest.trim_start_matches(' ');
    let end = text.find(' ').unwrap_or(text.len());
    let (field, tail) = text.split_at(end);
    *rest = tail;
    (!field.is_empty()).then_some(field)
}

/// `start-end perms offset major:minor inode   path`, executable lines only.
fn parse_maps_line(line: &str) -> Option<Mapping> {
    let mut rest = line;
    let (start, end) = next_field(&mut rest)?.split_once('-')?;
    let perms = next_field(&mut rest)?;
    if perms.as_bytes().get(2) != Some(&b'x') {
        return None;
    }
    let offset = u64::from_str_radix(next_field(&mut rest)?, 16).ok()?;
    let (major, minor) = next_field(&mut rest)?.split_once(':')?;
    let inode = next_field(&mut rest)?.parse().ok()?;
    let name = rest.trim_start_matches(' ');
    Some(Mapping {
        start: Avma(u64::from_str_radix(start, 16).ok()?),
        end: Avma(u64::from_str_radix(end, 16).ok()?),
        file_offset: offset,
        kind: mapping_kind(name),
        dev: makedev(
            u32::from_str_radix(major, 16).ok()?,
            u32::from_str_radix(minor, 16).ok()?,
        ),
        inode,
        build_id: None,
        executable: true,
    })
}

/// The path through which stoke can open a file the target names, even
/// inside another mount namespace: `/proc/PID/root/<path>`.
pub fn path_in_root(pid: Pid, path: &Path) -> PathBuf {
    let relative = path.strip_prefix("/").unwrap_or(path);
    PathBuf::from(format!("/proc/{pid}/root")).join(relative)
}

pub use stoke_model::file::{open_regular, Follow};

/// Why the file behind a mapping was not opened.
#[derive(Debug, thiserror::Error)]
pub enum ModuleOpenError {
    /// Neither the path (through the target's root) nor the mapping's
    /// `map_files` link could be opened; the path's error, errno kept.
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        /// The file, as the target names it.
        path: PathBuf,
        /// The OS error of opening the path.
        source: io::Error,
    },
    /// The file at the path is not the one mapped (another device or inode:
    /// replaced since), and the mapped one is out of reach (`map_files`
    /// needs root or CAP_SYS_ADMIN, and the process alive).
    #[error("{} is not the file that was mapped", path.display())]
    Mismatch {
        /// The file, as the target names it.
        path: PathBuf,
    },
    /// The mapping is not of a file (anonymous memory, the vDSO...).
    #[error("not a file mapping")]
    NotAFile,
}

impl ModuleOpenError {
    /// The errno of a failed open, when there was one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            ModuleOpenError::Unreadable { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Whether an open file is the one a mapping maps: same inode and device
/// (an inode or device of 0 is unknown, and not checked).
pub fn is_mapped_file(file: &std::fs::File, mapping: &Mapping) -> bool {
    use std::os::unix::fs::MetadataExt;
    file.metadata().is_ok_and(|m| {
        (mapping.inode == 0 || m.ino() == mapping.inode)
            && (mapping.dev == 0 || m.dev() == mapping.dev)
    })
}

/// Opens the file behind a mapping of a live process: through
/// `/proc/PID/root` when the file found there is the one mapped (same device
/// and inode), else through `/proc/PID/map_files/START-END`, which reaches
/// the mapped file itself even when it was deleted or replaced since (this
/// needs root, or CAP_SYS_ADMIN, and the process alive). Never substitutes
/// another file: the host's file of the same name, or a file renamed over
/// the path, is [`ModuleOpenError::Mismatch`]. Every open is
/// [`open_regular`]: a FIFO or device planted at the path is never opened.
pub fn open_mapped_file(pid: Pid, mapping: &Mapping) -> Result<std::fs::File, ModuleOpenError> {
    let stoke_model::MappingKind::File(path) = &mapping.kind else {
        return Err(ModuleOpenError::NotAFile);
    };
    let by_path = match open_regular(&path_in_root(pid, path), Follow::No) {
        Ok(file) if is_mapped_file(&file, mapping) => return Ok(file),
        Ok(_another) => Ok(()),
        Err(e) => Err(e),
    };
    if let Ok(file) = open_regular(&map_files_path(pid, mapping), Follow::Yes) {
        return Ok(file);
    }
    if let Some(file) = open_after_exit(pid, path, mapping) {
        return Ok(file);
    }
    Err(match by_path {
        Ok(_) => ModuleOpenError::Mismatch { path: path.clone() },
        Err(source) => ModuleOpenError::Unreadable {
            path: path.clone(),
            source,
        },
    })
}

/// A short-lived process (seen under per-CPU events) may be gone before
/// its first sample is read: its binary is then opened by path in stoke's
/// own root, and only when that file is provably the one mapped (its
/// device and inode, or the build-id the caller checks, from the mapping
/// record). Never for a process that still exists.
fn open_after_exit(pid: Pid, path: &Path, mapping: &Mapping) -> Option<std::fs::File> {
    let known = (mapping.inode != 0 && mapping.dev != 0) || mapping.build_id.is_some();
    if !known || Path::new(&format!("/proc/{pid}")).exists() {
        return None;
    }
    let file = open_regular(path, Follow::No).ok()?;
    is_mapped_file(&file, mapping).then_some(file)
}

/// `/proc/PID/map_files/START-END` of a mapping.
pub fn map_files_path(pid: Pid, mapping: &Mapping) -> PathBuf {
    PathBuf::from(format!(
        "/proc/{pid}/map_files/{:x}-{:x}",
        mapping.start.0, mapping.end.0
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_ticks_sum_user_kernel_and_children() {
        let line = b"42 (a) b) c) R 1 42 42 0 -1 4194304 10 0 0 0 7 3 2 1 20 0 1 0 5 0 0\n";
        assert_eq!(super::cpu_ticks(line), Some(13));
        assert_eq!(super::cpu_ticks(b"42 (short) R 1"), None);
    }

    use super::*;
    use stoke_model::MappingKind;

    const MAPS: &str = "\
55d0c1a00000-55d0c1a04000 r--p 00000000 08:01 1311 /usr/bin/dash
55d0c1a04000-55d0c1a18000 r-xp 00004000 08:01 1311 /usr/bin/dash
7f0000001000-7f0000002000 r-xp 00001000 fd:02 77   /tmp/my lib.so (deleted)
7f0000003000-7f0000004000 rwxp 00000000 00:00 0 
7ffd1e5f0000-7ffd1e5f2000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
garbage line
";

    #[test]
    fn maps_keep_executable_lines_with_device_and_inode() {
        let maps = parse_maps(MAPS);
        assert_eq!(maps.len(), 5, "{maps:#?}");
        let dash = &maps[0];
        assert_eq!(
            (dash.start, dash.end),
            (Avma(0x55d0c1a04000), Avma(0x55d0c1a18000))
        );
        assert_eq!(dash.file_offset, 0x4000);
        assert_eq!(dash.kind, MappingKind::File("/usr/bin/dash".into()));
        assert_eq!((dash.dev, dash.inode), (makedev(8, 1), 1311));
        assert_eq!(maps[1].kind, MappingKind::File("/tmp/my lib.so".into()));
        assert_eq!(maps[1].dev, makedev(0xfd, 2));
        assert_eq!(maps[2].kind, MappingKind::Anonymous);
        assert_eq!(maps[3].kind, MappingKind::Vdso);
        assert_eq!(maps[4].kind, MappingKind::Special("[vsyscall]".into()));
    }

    #[test]
    fn mapped_files_open_even_after_they_are_deleted() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("stoke-mapfiles-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let copy = dir.join("sleep-copy");
        std::fs::copy("/bin/sleep", &copy).unwrap();
        // Another test's fork may still hold the copy open for writing for
        // a moment (ETXTBSY): try again until its exec closed it.
        let mut child = loop {
            match std::process::Command::new(&copy).arg("30").spawn() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => std::thread::yield_now(),
                spawned => break spawned.unwrap(),
            }
        };
        let pid = Pid(child.id());
        // The exec is done once /proc shows the copy as the executable.
        let exe = loop {
            let maps = executable_mappings(pid).unwrap();
            if let Some(m) = maps
                .into_iter()
                .find(|m| m.kind == MappingKind::File(copy.clone()))
            {
                break m;
            }
            std::thread::yield_now();
        };
        let inode = std::fs::metadata(&copy).unwrap().ino();
        assert_eq!(exe.inode, inode);
        assert!(open_mapped_file(pid, &exe).is_ok());
        std::fs::remove_file(&copy).unwrap();
        std::fs::remove_dir(&dir).unwrap();
        let is_root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        let reopened = open_mapped_file(pid, &exe);
        child.kill().unwrap();
        child.wait().unwrap();
        // map_files needs root (CAP_SYS_ADMIN); then the deleted file is
        // reached, else the path's error is kept.
        if is_root {
            assert_eq!(reopened.unwrap().metadata().unwrap().ino(), inode);
        } else {
            let error = reopened.unwrap_err();
            assert_eq!(error.errno(), Some(libc::ENOENT), "{error}");
        }
    }

    #[test]
    fn only_regular_files_open_and_fifos_never_block() {
        let dir = std::env::temp_dir().join(format!("stoke-regular-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        let file = dir.join("file");
        std::fs::write(&file, b"bytes").unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(open_regular(&file, Follow::No).is_ok());
        assert!(open_regular(&link, Follow::Yes).is_ok());
        let refused = open_regular(&link, Follow::No).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::InvalidInput, "{refused}");
        if made.is_ok_and(|s| s.success()) {
            // No writer: a blocking open would wait here forever.
            let refused = open_regular(&fifo, Follow::Yes).unwrap_err();
            assert!(refused.to_string().contains("FIFO"), "{refused}");
        }
        let refused = open_regular(Path::new("/dev/null"), Follow::Yes).unwrap_err();
        assert!(refused.to_string().contains("device"), "{refused}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn another_file_at_the_path_is_a_mismatch_never_a_substitute() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("stoke-mismatch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("lib.so");
        std::fs::write(&file, b"not the mapped bytes").unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        // A mapping of this path that no map_files entry backs.
        let mapping = Mapping {
            start: Avma(0x1000),
            end: Avma(0x2000),
            file_offset: 0,
            kind: MappingKind::File(file.clone()),
            dev: meta.dev(),
            inode: meta.ino() + 1,
            build_id: None,
            executable: true,
        };
        let me = Pid(std::process::id());
        let error = open_mapped_file(me, &mapping).unwrap_err();
        assert!(matches!(error, ModuleOpenError::Mismatch { .. }), "{error}");
        let same = Mapping {
            inode: meta.ino(),
            ..mapping.clone()
        };
        assert!(open_mapped_file(me, &same).is_ok());
        let other_device = Mapping {
            dev: meta.dev() + 1,
            ..same.clone()
        };
        let error = open_mapped_file(me, &other_device).unwrap_err();
        assert!(matches!(error, ModuleOpenError::Mismatch { .. }), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
        let error = open_mapped_file(me, &same).unwrap_err();
        assert_eq!(error.errno(), Some(libc::ENOENT), "{error}");
        assert!(error.to_string().starts_with("cannot read "), "{error}");
    }

    #[test]
    fn own_process_is_readable() {
        let me = Pid(std::process::id());
        let tids = threads(me).unwrap();
        assert!(tids.contains(&Tid(me.0)));
        assert!(thread_name(me, Tid(me.0)).is_some());
        let maps = executable_mappings(me).unwrap();
        assert!(maps.iter().any(|m| m.kind == MappingKind::Vdso));
        assert!(maps.iter().any(|m| m.inode != 0));
    }

    #[test]
    fn missing_processes_are_reported_as_such() {
        let pid = Pid(u32::MAX / 2);
        assert!(matches!(threads(pid), Err(SampleError::NoSuchProcess(p)) if p == pid));
        assert!(matches!(
            executable_mappings(pid),
            Err(SampleError::NoSuchProcess(_))
        ));
        assert_eq!(thread_name(pid, Tid(1)), None);
    }

    #[test]
    fn paths_go_through_the_target_root() {
        let p = path_in_root(Pid(42), Path::new("/usr/lib/libc.so.6"));
        assert_eq!(p, PathBuf::from("/proc/42/root/usr/lib/libc.so.6"));
        let p = path_in_root(Pid(42), Path::new("relative"));
        assert_eq!(p, PathBuf::from("/proc/42/root/relative"));
    }
}
