//! The modules seen in samples, interned by key, each with the file held
//! open from its first sample (or why it could not be opened).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use stoke_model::{BuildId, Mapping, MappingKind, ModuleKey, Pid};

use crate::facts::{ModuleUnavailable, ProcessFacts};
use crate::stack::ModuleIndex;

/// A module seen in samples.
#[derive(Clone, Debug)]
pub(crate) struct ModuleInfo {
    /// Its path as the target sees it (None for the vDSO and other
    /// pseudo mappings).
    pub path: Option<PathBuf>,
    /// Whether it is the vDSO (symbolized from stoke's own copy).
    pub is_vdso: bool,
    /// A process that mapped it, to open it through `/proc/PID/root`.
    pub pid: Pid,
    pub build_id: Option<BuildId>,
    pub short_name: String,
    /// The file, held open from when the module was first sampled, so that
    /// a binary deleted or replaced while it runs is still read (through
    /// `/proc/PID/map_files`) after the process is gone.
    pub file: Option<Arc<File>>,
    /// Why the file could not be opened when it was first sampled.
    pub unavailable: Option<ModuleUnavailable>,
}

/// How many module files are held open at most (each costs a descriptor);
/// modules past this are opened by path when recording stops.
const MAX_HELD_FILES: usize = 256;

/// Modules seen in samples, interned by key.
#[derive(Debug, Default)]
pub(crate) struct ModuleTable {
    index: HashMap<ModuleKey, ModuleIndex>,
    pub modules: Vec<ModuleInfo>,
    held_files: usize,
}

impl ModuleTable {
    /// The index of the module behind a mapping.
    pub fn intern(
        &mut self,
        pid: Pid,
        mapping: &Mapping,
        facts: &mut dyn ProcessFacts,
    ) -> ModuleIndex {
        let key = mapping.module_key();
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let i = ModuleIndex(self.modules.len() as u32);
        let path = match &mapping.kind {
            MappingKind::File(p) => Some(p.clone()),
            _ => None,
        };
        let (file, unavailable) = match (&path, self.held_files < MAX_HELD_FILES) {
            (Some(_), true) => match facts.open_module(pid, mapping) {
                Ok(file) => (Some(Arc::new(file)), None),
                Err(why) => (None, Some(why)),
            },
            _ => (None, None),
        };
        self.held_files += usize::from(file.is_some());
        self.modules.push(ModuleInfo {
            file,
            unavailable,
            path,
            is_vdso: mapping.kind == MappingKind::Vdso,
            pid,
            build_id: mapping.build_id.clone(),
            short_name: mapping.short_name(),
        });
        self.index.insert(key, i);
        i
    }

    /// A module's path as the target sees it.
    pub fn path(&self, module: ModuleIndex) -> Option<&Path> {
        self.modules.get(module.0 as usize)?.path.as_deref()
    }

    /// Why a module's file could not be opened, if it could not.
    pub fn unavailable(&self, module: ModuleIndex) -> Option<ModuleUnavailable> {
        self.modules.get(module.0 as usize)?.unavailable
    }
}
