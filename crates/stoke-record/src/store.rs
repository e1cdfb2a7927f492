//! The module store: the one place a target's binaries are opened.
//!
//! A binary is opened once, when a mapping of it is first met, through the
//! [`ProcessFacts`] seam (live: the target's `/proc/PID/root` when the file
//! there is the mapped one, same device and inode, else its
//! `/proc/PID/map_files` link; never blocking, regular files only), mapped
//! read-only, checked against the build-id the mapping reported, and kept by
//! [`ModuleKey`] (build-id, else device and inode) for every process that maps
//! it. The unwinder parses its tables from the mapping and the symbolizer
//! names addresses from the same bytes, so the two always read one file.
//!
//! No descriptor is held: a mapping outlives its descriptor and keeps the
//! inode readable after the file is deleted or replaced, so there is no cap
//! on how many modules stay readable, and nothing is reopened by path later.
//! A file that could not be opened, or was not the mapped one, is remembered
//! as a [`ModuleUnavailable`] value (and its stacks and frames say so).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use memmap2::Mmap;
use object::Object;
use stoke_model::{Mapping, MappingKind, ModuleKey, Pid};
use stoke_unwind::TruncationReason;

use crate::facts::{ModuleUnavailable, ProcessFacts};

/// One module's bytes, read once and shared by the unwinder and the
/// symbolizer.
pub(crate) struct ModuleImage {
    bytes: ImageBytes,
    /// The target's root (`/proc/PID/root`) of the process it was first
    /// met in, where its separate debug files are looked up too.
    pub root: Option<PathBuf>,
}

enum ImageBytes {
    /// A read-only mapping of the file.
    Mapped(Arc<Mmap>),
    /// A copy in stoke's memory (the vDSO).
    Owned(Vec<u8>),
}

impl AsRef<[u8]> for ModuleImage {
    fn as_ref(&self) -> &[u8] {
        match &self.bytes {
            ImageBytes::Mapped(map) => map.as_ref(),
            ImageBytes::Owned(bytes) => bytes,
        }
    }
}

impl ModuleImage {
    /// The file's mapping, shared (None for an image copied into memory).
    pub fn map(&self) -> Option<Arc<Mmap>> {
        match &self.bytes {
            ImageBytes::Mapped(map) => Some(Arc::clone(map)),
            ImageBytes::Owned(_) => None,
        }
    }
}

impl std::fmt::Debug for ModuleImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ModuleImage({} bytes)", self.as_ref().len())
    }
}

/// What the store has for a mapping.
pub(crate) type Loaded = Result<Arc<ModuleImage>, Unloaded>;

/// Why a mapping has no image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unloaded {
    /// Anonymous or pseudo memory: there is no file to read.
    NoFile,
    /// The file could not be read, or is not the one mapped.
    Unavailable(ModuleUnavailable),
}

/// Every module read so far, by key.
#[derive(Debug, Default)]
pub(crate) struct ModuleStore {
    images: HashMap<ModuleKey, Loaded>,
}

impl ModuleStore {
    /// The image behind a mapping of process `pid`, read on first use.
    pub fn get(&mut self, pid: Pid, mapping: &Mapping, facts: &mut dyn ProcessFacts) -> Loaded {
        let key = mapping.module_key();
        if let Some(loaded) = self.images.get(&key) {
            return loaded.clone();
        }
        let loaded = load(pid, mapping, facts);
        self.images.insert(key, loaded.clone());
        loaded
    }
}

fn load(pid: Pid, mapping: &Mapping, facts: &mut dyn ProcessFacts) -> Loaded {
    let unreadable = |errno| {
        Unloaded::Unavailable(ModuleUnavailable {
            reason: TruncationReason::ModuleUnreadable,
            errno,
        })
    };
    match &mapping.kind {
        MappingKind::File(_) => {}
        // The kernel maps the same image into every process: stoke's own.
        MappingKind::Vdso => {
            return stoke_symbolize::own_vdso_image()
                .map(|bytes| {
                    Arc::new(ModuleImage {
                        bytes: ImageBytes::Owned(bytes),
                        root: None,
                    })
                })
                .map_err(|_| Unloaded::NoFile)
        }
        _ => return Err(Unloaded::NoFile),
    }
    let file = facts
        .open_module(pid, mapping)
        .map_err(Unloaded::Unavailable)?;
    let map = stoke_symbolize::map_file(&file).map_err(|e| unreadable(e.raw_os_error()))?;
    // A mapping known by its build-id (perf's MMAP2 records give it in
    // place of the inode) is checked by it.
    if let Some(wanted) = &mapping.build_id {
        let found = object::File::parse(&map[..])
            .ok()
            .and_then(|elf| elf.build_id().ok().flatten().map(<[u8]>::to_vec));
        if found.is_some_and(|found| found != wanted.0) {
            return Err(Unloaded::Unavailable(ModuleUnavailable {
                reason: TruncationReason::ModuleMismatch,
                errno: None,
            }));
        }
    }
    Ok(Arc::new(ModuleImage {
        bytes: ImageBytes::Mapped(map),
        root: facts.root_of(pid),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::ReplayFacts;
    use stoke_model::{Avma, BuildId};

    fn mapping_of(path: &str, inode: u64) -> Mapping {
        Mapping {
            start: Avma(0x1000),
            end: Avma(0x2000),
            file_offset: 0,
            kind: MappingKind::File(path.into()),
            dev: 1,
            inode,
            build_id: None,
            executable: true,
        }
    }

    #[test]
    fn a_module_is_opened_once_for_every_process() {
        let me = std::env::current_exe().unwrap();
        let mut facts = ReplayFacts::new().module_file("/bin/app", &me);
        let mut store = ModuleStore::default();
        let mapping = mapping_of("/bin/app", 7);
        let first = store.get(Pid(1), &mapping, &mut facts).unwrap();
        // Another process mapping the same file gets the same bytes, even
        // once the file can no longer be opened.
        let mut gone = ReplayFacts::new();
        let second = store.get(Pid(2), &mapping, &mut gone).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        let bytes: &[u8] = (*first).as_ref();
        assert!(bytes.starts_with(b"\x7fELF"));
    }

    #[test]
    fn another_build_id_is_a_mismatch_and_no_file_is_a_typed_reason() {
        let me = std::env::current_exe().unwrap();
        let mut facts = ReplayFacts::new().module_file("/bin/app", &me);
        let mut store = ModuleStore::default();
        let mapping = Mapping {
            build_id: Some(BuildId(vec![1, 2, 3])),
            ..mapping_of("/bin/app", 7)
        };
        let own_has_build_id = object::File::parse(&*std::fs::read(&me).unwrap())
            .is_ok_and(|elf| elf.build_id().ok().flatten().is_some());
        let loaded = store.get(Pid(1), &mapping, &mut facts);
        if own_has_build_id {
            assert_eq!(
                loaded.unwrap_err(),
                Unloaded::Unavailable(ModuleUnavailable {
                    reason: TruncationReason::ModuleMismatch,
                    errno: None,
                })
            );
        } else {
            eprintln!("the test binary has no build-id: the mismatch is not checked");
        }
        let missing = store.get(Pid(1), &mapping_of("/lib/gone.so", 8), &mut facts);
        assert!(matches!(
            missing,
            Err(Unloaded::Unavailable(ModuleUnavailable {
                reason: TruncationReason::ModuleUnreadable,
                errno: Some(libc::ENOENT),
            }))
        ));
        let anonymous = Mapping {
            kind: MappingKind::Anonymous,
            ..mapping_of("", 0)
        };
        assert_eq!(
            store.get(Pid(1), &anonymous, &mut facts).unwrap_err(),
            Unloaded::NoFile
        );
    }
}
