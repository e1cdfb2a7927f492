//! The modules seen in samples, interned by key, each with its image from
//! the module store (or why it has none).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use stoke_model::{BuildId, Mapping, MappingKind, ModuleKey, Pid};

use crate::facts::{ModuleUnavailable, ProcessFacts};
use crate::stack::ModuleIndex;
use crate::store::{ModuleImage, ModuleStore, Unloaded};

/// A module seen in samples.
#[derive(Clone, Debug)]
pub(crate) struct ModuleInfo {
    /// Its path as the target sees it (None for the vDSO and other
    /// pseudo mappings).
    pub path: Option<PathBuf>,
    /// Whether it is the vDSO (symbolized from stoke's own copy).
    pub is_vdso: bool,
    pub build_id: Option<BuildId>,
    pub short_name: String,
    /// The file's bytes, read by the store when the module was first met,
    /// so that a binary deleted or replaced while it runs is still named
    /// after the process is gone.
    pub image: Option<Arc<ModuleImage>>,
    /// Why the file could not be read when it was first met.
    pub unavailable: Option<ModuleUnavailable>,
}

/// Modules seen in samples, interned by key.
#[derive(Debug, Default)]
pub(crate) struct ModuleTable {
    index: HashMap<ModuleKey, ModuleIndex>,
    pub modules: Vec<ModuleInfo>,
}

impl ModuleTable {
    /// The index of the module behind a mapping.
    pub fn intern(
        &mut self,
        pid: Pid,
        mapping: &Mapping,
        store: &mut ModuleStore,
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
        let (image, unavailable) = match store.get(pid, mapping, facts) {
            Ok(image) if path.is_some() => (Some(image), None),
            Ok(_) | Err(Unloaded::NoFile) => (None, None),
            Err(Unloaded::Unavailable(why)) => (None, Some(why)),
        };
        self.modules.push(ModuleInfo {
            image,
            unavailable,
            path,
            is_vdso: mapping.kind == MappingKind::Vdso,
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
