//! Memory mappings of a process and the modules (files) behind them.

use std::fmt;
use std::path::PathBuf;

use crate::{Avma, FileOffset};

/// A GNU build-id note: the identity of a binary, independent of its path.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BuildId(pub Vec<u8>);

impl fmt::Display for BuildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for BuildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BuildId({self})")
    }
}

/// What identifies a module for caching parsed unwind and debug info:
/// its build-id where it has one, else the device and inode of the file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ModuleKey {
    /// The module's GNU build-id.
    BuildId(BuildId),
    /// Device number and inode of the mapped file.
    DevInode {
        /// `st_dev` of the file (as `makedev(major, minor)`).
        dev: u64,
        /// `st_ino` of the file.
        inode: u64,
    },
    /// Neither is known (e.g. a pseudo file); the path is all there is.
    Path(PathBuf),
}

/// What a mapping is backed by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MappingKind {
    /// A regular file (an executable or shared library), by the path the
    /// target sees (inside its mount namespace).
    File(PathBuf),
    /// The kernel's virtual dynamic shared object.
    Vdso,
    /// Anonymous memory (heap, stacks, JIT code).
    Anonymous,
    /// Another pseudo mapping (`[stack]`, `[heap]`, `[vsyscall]`, `//anon`, …), by name.
    Special(String),
}

/// One executable mapping in a process's address space.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mapping {
    /// First address of the mapping.
    pub start: Avma,
    /// One past the last address of the mapping.
    pub end: Avma,
    /// Offset in the file of the byte mapped at `start` (`pgoff`).
    pub file_offset: u64,
    /// What the mapping is backed by.
    pub kind: MappingKind,
    /// Device number of the backing file, 0 if unknown.
    pub dev: u64,
    /// Inode of the backing file, 0 if unknown.
    pub inode: u64,
    /// The file's build-id, when the sampler got it from the kernel.
    pub build_id: Option<BuildId>,
    /// Whether the mapping is executable (only those hold code).
    pub executable: bool,
}

impl Mapping {
    /// Whether `addr` falls inside this mapping.
    pub fn contains(&self, addr: u64) -> bool {
        self.start.0 <= addr && addr < self.end.0
    }

    /// The file offset of an address inside this mapping.
    pub fn file_offset_of(&self, addr: u64) -> FileOffset {
        FileOffset(
            addr.wrapping_sub(self.start.0)
                .wrapping_add(self.file_offset),
        )
    }

    /// The cache key of the module behind this mapping.
    pub fn module_key(&self) -> ModuleKey {
        if let Some(id) = &self.build_id {
            return ModuleKey::BuildId(id.clone());
        }
        if self.inode != 0 {
            return ModuleKey::DevInode {
                dev: self.dev,
                inode: self.inode,
            };
        }
        match &self.kind {
            MappingKind::File(p) => ModuleKey::Path(p.clone()),
            MappingKind::Vdso => ModuleKey::Path("[vdso]".into()),
            MappingKind::Anonymous => ModuleKey::Path("[anon]".into()),
            MappingKind::Special(s) => ModuleKey::Path(s.into()),
        }
    }

    /// A short display name: the file name, or the pseudo name.
    pub fn short_name(&self) -> String {
        match &self.kind {
            MappingKind::File(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string()),
            MappingKind::Vdso => "[vdso]".to_string(),
            MappingKind::Anonymous => "[anon]".to_string(),
            MappingKind::Special(s) => s.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn libc_map() -> Mapping {
        Mapping {
            start: Avma(0x7f00_0000_1000),
            end: Avma(0x7f00_0000_9000),
            file_offset: 0x1000,
            kind: MappingKind::File("/usr/lib/x86_64-linux-gnu/libc.so.6".into()),
            dev: 0x801,
            inode: 42,
            build_id: None,
            executable: true,
        }
    }

    #[test]
    fn file_offsets_add_the_page_offset() {
        let m = libc_map();
        assert!(m.contains(0x7f00_0000_1000));
        assert!(!m.contains(0x7f00_0000_9000));
        assert_eq!(
            m.file_offset_of(0x7f00_0000_1234),
            FileOffset(0x1234 + 0x1000 - 0x1000)
        );
        assert_eq!(m.short_name(), "libc.so.6");
    }

    #[test]
    fn build_id_wins_over_inode() {
        let mut m = libc_map();
        assert_eq!(
            m.module_key(),
            ModuleKey::DevInode {
                dev: 0x801,
                inode: 42
            }
        );
        m.build_id = Some(BuildId(vec![0xab, 0x01]));
        assert_eq!(
            m.module_key(),
            ModuleKey::BuildId(BuildId(vec![0xab, 0x01]))
        );
        assert_eq!(m.build_id.unwrap().to_string(), "ab01");
    }
}
