//! Problems the user should hear about, each once.

use std::fmt;
use std::path::{Path, PathBuf};

use stoke_unwind::TruncationReason;

use crate::facts::ModuleUnavailable;

/// A problem met while recording or naming, told once at the end.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Warning {
    /// A mapped file could not be read: its addresses stay unnamed and
    /// stacks through it are cut (`[truncated: module unreadable]`).
    ModuleUnreadable {
        /// The file, as the target sees it.
        path: PathBuf,
        /// The errno of the failed open or read, when there was one.
        errno: Option<i32>,
    },
    /// The file at a mapping's path is not the one mapped (replaced, or
    /// another inode or build-id): it was not used.
    ModuleMismatch {
        /// The file, as the target sees it.
        path: PathBuf,
    },
    /// A signal cut naming short: these addresses are named by module and
    /// offset (`libfoo.so+0x1234`).
    NamingInterrupted {
        /// How many addresses were left unnamed.
        unnamed: usize,
    },
    /// The symbolizer's own account (a refused perf map, broken debug info).
    Symbolize(String),
}

impl Warning {
    /// The warning for a module file the store could not use.
    pub(crate) fn unavailable(path: &Path, why: ModuleUnavailable) -> Warning {
        match why.reason {
            TruncationReason::ModuleMismatch => Warning::ModuleMismatch {
                path: path.to_path_buf(),
            },
            _ => Warning::ModuleUnreadable {
                path: path.to_path_buf(),
                errno: why.errno,
            },
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::ModuleUnreadable { path, errno } => {
                write!(f, "cannot read {}", path.display())?;
                match errno {
                    // Through /proc/PID/root: the process is gone, or the
                    // file was removed, before it was read.
                    Some(libc::ENOENT) => f.write_str(
                        ": gone from its process's view (the process exited or the \
                         file was removed before it could be read)",
                    )?,
                    Some(errno) => write!(f, ": {}", std::io::Error::from_raw_os_error(*errno))?,
                    None => {}
                }
                f.write_str("; its frames are unnamed")
            }
            Warning::ModuleMismatch { path } => write!(
                f,
                "{} is not the file that was mapped (replaced while running?); \
                 its frames are unnamed",
                path.display()
            ),
            Warning::NamingInterrupted { unnamed } => write!(
                f,
                "naming interrupted: {unnamed} addresses are named by module and offset"
            ),
            Warning::Symbolize(message) => f.write_str(message),
        }
    }
}

/// Warnings in the order first met, each kept once.
#[derive(Clone, Debug, Default)]
pub struct Warnings {
    list: Vec<Warning>,
}

impl Warnings {
    /// Adds a warning unless it was already given.
    pub fn push(&mut self, warning: Warning) {
        if !self.list.contains(&warning) {
            self.list.push(warning);
        }
    }

    /// The warnings, in the order first met.
    pub fn iter(&self) -> impl Iterator<Item = &Warning> {
        self.list.iter()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_is_kept_once() {
        let mut w = Warnings::default();
        let gone = Warning::ModuleUnreadable {
            path: "/lib/x.so".into(),
            errno: Some(libc::ENOENT),
        };
        w.push(gone.clone());
        w.push(Warning::Symbolize("a".into()));
        w.push(gone);
        assert_eq!(w.iter().count(), 2);
        assert_eq!(
            w.iter().next().unwrap().to_string(),
            "cannot read /lib/x.so: gone from its process's view (the process exited or \
             the file was removed before it could be read); its frames are unnamed"
        );
    }
}
