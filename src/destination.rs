//! Where an output's bytes go, and how they get there safely.
//!
//! The rules (docs/usage.md, "Outputs"):
//! - a regular file (or a new one) is written to a temporary file in the
//!   same folder and renamed over the path, so a reader never sees half a
//!   file; an existing file keeps its owner and mode;
//! - a device, FIFO or socket is written directly (the path stays what it
//!   is), and its write errors (ENOSPC from /dev/full) are reported;
//! - stoke's own descriptors (`/dev/stdout`, `/dev/fd/N`, `/proc/self/fd/N`,
//!   a shell's `>(cmd)`) are written through the descriptor;
//! - symlinks are followed to the file they name, one component at a time,
//!   except a link in a sticky world-writable folder owned by neither the
//!   follower nor the folder's owner (the kernel's `protected_symlinks`
//!   rule), and a FIFO in such a folder owned by neither (`protected_fifos`):
//!   those are refused, since they may have been planted for a root stoke.

use std::ffi::OsStr;
use std::fs::{File, Metadata, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context};

/// How many symlinks one path may pass through (the kernel's limit).
const MAX_LINKS: usize = 40;

/// Mode of a file stoke creates.
const NEW_FILE_MODE: u32 = 0o644;

/// A resolved destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sink {
    /// Stoke's own standard output or error.
    Stream(Stream),
    /// An existing file that is not a regular file (device, FIFO, socket,
    /// another process's pipe): opened and written in place.
    Direct(PathBuf),
    /// A regular file, existing or not (no symlink left in the path):
    /// written through a temporary file and a rename.
    Regular(PathBuf),
}

/// Stoke's standard output or error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Descriptor 1.
    Stdout,
    /// Descriptor 2.
    Stderr,
}

impl Sink {
    /// Whether the bytes end up on stoke's standard output.
    pub fn is_stdout(&self) -> bool {
        *self == Sink::Stream(Stream::Stdout)
    }
}

/// Resolves `path` (following symlinks where safe) into where it writes.
pub fn resolve(path: &Path) -> anyhow::Result<Sink> {
    let mut pending: Vec<PathBuf> = Vec::new();
    let mut current = if path.is_absolute() {
        PathBuf::from("/")
    } else {
        std::env::current_dir().context("finding the current folder")?
    };
    push_components(&mut pending, path);
    let mut links = 0;
    // `pending` holds the components still to walk, last one first.
    while let Some(component) = pending.pop() {
        let name = component.as_os_str();
        if name == "/" {
            current = PathBuf::from("/");
            continue;
        }
        if name == ".." {
            current.pop();
            continue;
        }
        if name == "." {
            continue;
        }
        let next = current.join(name);
        let last = pending.is_empty();
        if last {
            match own_descriptor(&next) {
                Some(1) => return Ok(Sink::Stream(Stream::Stdout)),
                Some(2) => return Ok(Sink::Stream(Stream::Stderr)),
                // Any other descriptor of stoke's (a shell's `>(cmd)`) is
                // opened again through its /proc link.
                _ => {}
            }
        }
        let meta = match std::fs::symlink_metadata(&next) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound && last => {
                return Ok(Sink::Regular(next));
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                bail!("output folder {} does not exist", folder_of(path).display());
            }
            Err(err) => return Err(err).with_context(|| format!("examining {}", next.display())),
        };
        if !meta.file_type().is_symlink() {
            current = next;
            continue;
        }
        refuse_unsafe(&next, &meta, "follow the symlink")?;
        let target = std::fs::read_link(&next)
            .with_context(|| format!("reading the symlink {}", next.display()))?;
        if is_magic(&target) {
            // A /proc descriptor link naming a pipe, socket or anonymous
            // inode: only the kernel can follow it.
            if last {
                return Ok(Sink::Direct(next));
            }
            bail!("{} is not a folder", next.display());
        }
        links += 1;
        if links > MAX_LINKS {
            bail!(
                "{}: more than {MAX_LINKS} symlinks to follow",
                path.display()
            );
        }
        push_components(&mut pending, &target);
    }
    let meta = std::fs::symlink_metadata(&current)
        .with_context(|| format!("examining {}", current.display()))?;
    let kind = meta.file_type();
    if kind.is_dir() {
        bail!("{} is a folder", current.display());
    }
    if kind.is_file() {
        return Ok(Sink::Regular(current));
    }
    if kind.is_fifo() {
        refuse_unsafe(&current, &meta, "write to the FIFO")?;
    }
    Ok(Sink::Direct(current))
}

/// Pushes the components of `path` so that the first is popped first.
fn push_components(pending: &mut Vec<PathBuf>, path: &Path) {
    let start = pending.len();
    for component in path.components() {
        let text: &OsStr = match component {
            Component::RootDir | Component::Prefix(_) => OsStr::new("/"),
            Component::CurDir => OsStr::new("."),
            Component::ParentDir => OsStr::new(".."),
            Component::Normal(name) => name,
        };
        pending.push(PathBuf::from(text));
    }
    pending[start..].reverse();
}

/// A `/proc` link target that is not a path (`pipe:[123]`, `socket:[4]`,
/// `anon_inode:[eventfd]`).
fn is_magic(target: &Path) -> bool {
    let bytes = target.as_os_str().as_bytes();
    !bytes.starts_with(b"/") && bytes.ends_with(b"]") && bytes.contains(&b':')
}

/// `/proc/<our pid>/fd/N` or `/proc/<our pid>/task/<tid>/fd/N` (what
/// `/dev/stdout`, `/dev/fd/N` and `/proc/self/fd/N` lead to): N.
fn own_descriptor(path: &Path) -> Option<RawFd> {
    let rest = path.strip_prefix("/proc").ok()?;
    let mut parts = rest.iter();
    let pid = parts.next()?;
    let ours =
        pid == "self" || pid == "thread-self" || pid == std::process::id().to_string().as_str();
    if !ours {
        return None;
    }
    let mut part = parts.next()?;
    if part == "task" {
        parts.next()?;
        part = parts.next()?;
    }
    if part != "fd" {
        return None;
    }
    let fd = parts.next()?.to_str()?.parse().ok()?;
    parts.next().is_none().then_some(fd)
}

/// Refuses `path` (a symlink or FIFO with metadata `meta`) when it sits in
/// a sticky world-writable folder and belongs to neither stoke's effective
/// user nor the folder's owner.
fn refuse_unsafe(path: &Path, meta: &Metadata, what: &str) -> anyhow::Result<()> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("/"),
    };
    let Ok(folder_meta) = std::fs::metadata(folder) else {
        return Ok(());
    };
    let mode = folder_meta.mode();
    let sticky_shared = mode & libc::S_ISVTX != 0 && mode & libc::S_IWOTH != 0;
    let follower = nix::unistd::geteuid().as_raw();
    if sticky_shared && meta.uid() != follower && meta.uid() != folder_meta.uid() {
        bail!(
            "refusing to {what} {}: it is in the sticky world-writable folder {} and owned by \
             uid {}, neither uid {follower} nor the folder's owner (the kernel's protected \
             symlink and FIFO rule); name the file it leads to instead",
            path.display(),
            folder.display(),
            meta.uid()
        );
    }
    Ok(())
}

/// Checks, before recording, that `sink` can be written: a descriptor is
/// open for writing, a device or FIFO is writable by the real user, and a
/// regular file's folder lets a file be created there (by creating and
/// removing one).
pub fn check(sink: &Sink) -> anyhow::Result<()> {
    match sink {
        Sink::Stream(stream) => {
            descriptor(*stream)?;
        }
        Sink::Direct(path) => {
            nix::unistd::access(path, nix::unistd::AccessFlags::W_OK).map_err(io::Error::from)?;
        }
        Sink::Regular(path) => {
            let folder = folder_of(path);
            tempfile::Builder::new()
                .prefix(".stoke-check-")
                .tempfile_in(folder)
                .with_context(|| format!("cannot create a file in {}", folder.display()))?;
        }
    }
    Ok(())
}

/// A copy of stoke's standard output or error, when it is open for writing.
fn descriptor(stream: Stream) -> anyhow::Result<OwnedFd> {
    let (stdout, stderr) = (io::stdout(), io::stderr());
    let (name, borrowed) = match stream {
        Stream::Stdout => ("stdout", stdout.as_fd()),
        Stream::Stderr => ("stderr", stderr.as_fd()),
    };
    let flags = nix::fcntl::fcntl(borrowed, nix::fcntl::FcntlArg::F_GETFL)
        .map_err(|_| anyhow!("{name} is closed"))?;
    if flags & libc::O_ACCMODE == libc::O_RDONLY {
        bail!("{name} is open for reading only");
    }
    // Rust's runtime opens /dev/null read-write on a standard descriptor
    // that was closed when the program started; a shell's `>/dev/null`
    // opens it write-only.
    let meta = File::from(borrowed.try_clone_to_owned()?).metadata()?;
    if flags & libc::O_ACCMODE == libc::O_RDWR
        && meta.file_type().is_char_device()
        && meta.rdev() == libc::makedev(1, 3)
    {
        bail!("{name} is closed");
    }
    borrowed
        .try_clone_to_owned()
        .with_context(|| format!("duplicating {name}"))
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `sink` by its rules (see the module doc).
pub fn write(sink: &Sink, bytes: &[u8]) -> anyhow::Result<()> {
    match sink {
        Sink::Stream(stream) => {
            let mut file = File::from(descriptor(*stream)?);
            file.write_all(bytes).and_then(|()| file.flush())?;
            Ok(())
        }
        Sink::Direct(path) => {
            let mut file = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOCTTY)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            file.write_all(bytes).and_then(|()| file.flush())?;
            Ok(())
        }
        Sink::Regular(path) => write_atomically(path, bytes),
    }
}

/// Writes a regular file through a temporary file in the same folder and a
/// rename, so a reader never sees half a file and an old file is never half
/// replaced. A file that existed keeps its owner, group and permission bits
/// (set-id bits dropped); a new one gets mode 0644.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let folder = folder_of(path);
    let old = std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.file_type().is_file());
    let mut file = tempfile::Builder::new()
        .prefix(".stoke-")
        .tempfile_in(folder)
        .with_context(|| format!("creating a file in {}", folder.display()))?;
    file.write_all(bytes)?;
    let mode = old.as_ref().map_or(NEW_FILE_MODE, |m| m.mode() & 0o1777);
    file.as_file()
        .set_permissions(Permissions::from_mode(mode))?;
    if let Some(old) = &old {
        keep_owner(file.as_file().as_fd(), old);
    }
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Gives the new file the old one's owner and group, as far as stoke may:
/// root may give any; a user only a group of theirs (an error here leaves
/// stoke's own, as a shell's `>` into a new file would).
fn keep_owner(file: BorrowedFd<'_>, old: &Metadata) {
    let (uid, gid) = (old.uid(), old.gid());
    if std::os::unix::fs::fchown(file, Some(uid), Some(gid)).is_err() {
        let _ = std::os::unix::fs::fchown(file, None, Some(gid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_lead_to_the_file_they_name() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.svg");
        std::fs::write(&real, "old").unwrap();
        symlink("real.svg", dir.path().join("link.svg")).unwrap();
        symlink(dir.path().join("link.svg"), dir.path().join("link2.svg")).unwrap();
        let canonical = real.canonicalize().unwrap();
        assert_eq!(
            resolve(&dir.path().join("link2.svg")).unwrap(),
            Sink::Regular(canonical.clone())
        );
        symlink(".", dir.path().join("here")).unwrap();
        assert_eq!(
            resolve(&dir.path().join("here/here/link.svg")).unwrap(),
            Sink::Regular(canonical)
        );
        symlink("loop", dir.path().join("loop")).unwrap();
        let err = resolve(&dir.path().join("loop")).unwrap_err().to_string();
        assert!(err.contains("more than 40 symlinks"), "{err}");
    }

    #[test]
    fn own_descriptors_are_recognised() {
        let stdout = Sink::Stream(Stream::Stdout);
        assert_eq!(resolve(Path::new("/dev/stdout")).unwrap(), stdout);
        assert_eq!(
            resolve(Path::new("/dev/fd/2")).unwrap(),
            Sink::Stream(Stream::Stderr)
        );
        assert_eq!(resolve(Path::new("/proc/self/fd/1")).unwrap(), stdout);
        assert_eq!(own_descriptor(Path::new("/proc/1/fd/1")), None);
        assert!(is_magic(Path::new("pipe:[1234]")));
        assert!(!is_magic(Path::new("/tmp/x:[1]")));
    }

    #[test]
    fn devices_are_written_in_place_and_report_errors() {
        assert_eq!(
            resolve(Path::new("/dev/null")).unwrap(),
            Sink::Direct("/dev/null".into())
        );
        write(&Sink::Direct("/dev/null".into()), b"x").unwrap();
        let err = write(&Sink::Direct("/dev/full".into()), b"x").unwrap_err();
        assert!(format!("{err:#}").contains("No space left"), "{err:#}");
    }

    #[test]
    fn missing_folders_and_folders_are_refused() {
        let err = resolve(Path::new("/no/such/dir/a.svg"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("output folder /no/such/dir does not exist"),
            "{err}"
        );
        let err = resolve(Path::new("/tmp")).unwrap_err().to_string();
        assert!(err.contains("/tmp is a folder"), "{err}");
    }
}
