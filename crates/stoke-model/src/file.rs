//! The one way stoke opens a file a target names: its binaries, debug
//! files beside them, its perf maps. Never blocks, never opens anything but
//! a regular file.

use std::io;
use std::path::Path;

/// Whether [`open_regular`] follows a symlink in the last component.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// Follow it (kernel magic links such as `/proc/PID/map_files/…`).
    Yes,
    /// Refuse it (a path the target, or its owner, chooses).
    No,
}

/// Opens a file in a target's namespace for reading without ever blocking
/// or touching anything but a regular file: the path is first opened with
/// `O_PATH` (which opens no device and waits for no FIFO writer), checked to
/// be a regular file, and only then opened for reading through
/// `/proc/self/fd`, the same inode, with `O_NONBLOCK | O_NOCTTY`. A FIFO,
/// device, socket or folder planted at the path is an error
/// (`InvalidInput`), and so is a symlink in the last component with
/// [`Follow::No`].
pub fn open_regular(path: &Path, follow: Follow) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let nofollow = match follow {
        Follow::Yes => 0,
        Follow::No => libc::O_NOFOLLOW,
    };
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC | nofollow)
        .open(path)?;
    let kind = handle.metadata()?.file_type();
    if !kind.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file (a {})", file_kind_name(kind)),
        ));
    }
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{}", handle.as_raw_fd()))
}

/// What a file that is not a regular one is, for messages.
fn file_kind_name(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() {
        "FIFO"
    } else if kind.is_dir() {
        "folder"
    } else if kind.is_symlink() {
        "symlink"
    } else if kind.is_char_device() || kind.is_block_device() {
        "device"
    } else if kind.is_socket() {
        "socket"
    } else {
        "special file"
    }
}
