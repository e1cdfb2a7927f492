//! After recording: name every unique address once, in batch per module, and
//! build the profile.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use stoke_model::{BuildId, FrameAddress, Mapping, MappingKind, ModuleKey, Pid};
use stoke_profile::{Frame, FrameId, FrameKind, Metadata, Profile, Thread};
use stoke_symbolize::{ModuleRequest, SymbolFrame, Symbolized, Symbolizer};

use crate::aggregate::ThreadKey;
use crate::stack::{ModuleIndex, RawFrame};

/// A module seen in samples.
#[derive(Clone, Debug)]
pub(crate) struct ModuleInfo {
    /// Its path as the target sees it (None for the vDSO and other
    /// pseudo mappings).
    path: Option<PathBuf>,
    /// Whether it is the vDSO (symbolized from stoke's own copy).
    is_vdso: bool,
    /// A process that mapped it, to open it through `/proc/PID/root`.
    pid: Pid,
    build_id: Option<BuildId>,
    short_name: String,
}

/// Modules seen in samples, interned by key.
#[derive(Debug, Default)]
pub(crate) struct ModuleTable {
    index: HashMap<ModuleKey, ModuleIndex>,
    modules: Vec<ModuleInfo>,
}

impl ModuleTable {
    /// The index of the module behind a mapping.
    pub fn intern(&mut self, pid: Pid, mapping: &Mapping) -> ModuleIndex {
        let key = mapping.module_key();
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let i = ModuleIndex(self.modules.len() as u32);
        self.modules.push(ModuleInfo {
            path: match &mapping.kind {
                MappingKind::File(p) => Some(p.clone()),
                _ => None,
            },
            is_vdso: mapping.kind == MappingKind::Vdso,
            pid,
            build_id: mapping.build_id.clone(),
            short_name: mapping.short_name(),
        });
        self.index.insert(key, i);
        i
    }
}

/// Builds the profile from aggregated stacks, symbolizing each unique frame once.
pub(crate) fn build_profile(
    stacks: &HashMap<(ThreadKey, Box<[RawFrame]>), u64>,
    modules: &ModuleTable,
    symbolizer: &mut Symbolizer,
    meta: Metadata,
) -> Profile {
    let mut profile = Profile::new(meta);
    let names = name_frames(stacks, modules, symbolizer, &mut profile);
    let mut thread_ids = HashMap::new();
    let mut ids = Vec::new();
    for ((thread, frames), &count) in stacks {
        ids.clear();
        for raw in frames.iter().rev() {
            ids.extend_from_slice(&names[raw]);
        }
        let Some(stack) = profile.intern_stack(&ids) else {
            continue;
        };
        let thread_id = *thread_ids.entry(thread.clone()).or_insert_with(|| {
            profile.intern_thread(Thread {
                pid: thread.pid.0,
                tid: thread.tid.0,
                process_name: thread.process_name.clone(),
                thread_name: thread.thread_name.clone(),
            })
        });
        profile.add_sample(thread_id, stack, count);
    }
    profile
}

/// Names every unique raw frame: each becomes one or more profile frames
/// (a function and the functions inlined into it), outermost first.
fn name_frames(
    stacks: &HashMap<(ThreadKey, Box<[RawFrame]>), u64>,
    modules: &ModuleTable,
    symbolizer: &mut Symbolizer,
    profile: &mut Profile,
) -> HashMap<RawFrame, Vec<FrameId>> {
    let unique: HashSet<&RawFrame> = stacks.keys().flat_map(|(_, f)| f.iter()).collect();
    let mut by_module: HashMap<ModuleIndex, Vec<FrameAddress>> = HashMap::new();
    let mut kernel = Vec::new();
    let mut jit: HashMap<Pid, Vec<FrameAddress>> = HashMap::new();
    let mut names = HashMap::new();
    for raw in unique {
        match raw {
            RawFrame::Module(m, a) => by_module.entry(*m).or_default().push(*a),
            RawFrame::Kernel(a) => kernel.push(*a),
            RawFrame::Jit(pid, a) => jit.entry(*pid).or_default().push(*a),
            RawFrame::Unmapped(_) => {
                let id = profile.intern_frame(Frame::new("[unknown]", FrameKind::User));
                names.insert(raw.clone(), vec![id]);
            }
            RawFrame::Truncated(reason) => {
                let id = profile.intern_frame(Frame::new(
                    format!("[truncated: {reason}]"),
                    FrameKind::Marker,
                ));
                names.insert(raw.clone(), vec![id]);
            }
        }
    }
    for (m, addresses) in by_module {
        let info = &modules.modules[m.0 as usize];
        let results = match &info.path {
            Some(path) => symbolizer.symbolize_module(
                &ModuleRequest {
                    path,
                    pid: Some(info.pid),
                    build_id: info.build_id.as_ref(),
                },
                &addresses,
            ),
            None if info.is_vdso => symbolizer.symbolize_vdso(info.build_id.as_ref(), &addresses),
            None => {
                vec![Symbolized::Unknown(stoke_symbolize::UnknownReason::NoSymbol); addresses.len()]
            }
        };
        for (a, result) in addresses.iter().zip(results) {
            // Unnamed functions are named by their start, so their samples merge.
            let fallback = |start: Option<u64>| {
                format!("{}+{:#x}", info.short_name, start.unwrap_or(a.address()))
            };
            let ids = intern(
                profile,
                result,
                FrameKind::User,
                Some(&info.short_name),
                fallback,
            );
            names.insert(RawFrame::Module(m, *a), ids);
        }
    }
    let kernel_addrs: Vec<u64> = kernel.iter().map(|a| a.lookup_address()).collect();
    let results = symbolizer.symbolize_kernel(&kernel_addrs);
    for (a, result) in kernel.iter().zip(results) {
        let ids = intern(profile, result, FrameKind::Kernel, None, |_| {
            "[unknown]".into()
        });
        names.insert(RawFrame::Kernel(*a), ids);
    }
    for (pid, addresses) in jit {
        let lookup: Vec<u64> = addresses.iter().map(|a| a.lookup_address()).collect();
        let results = symbolizer.symbolize_jit(pid, &lookup);
        for (a, result) in addresses.iter().zip(results) {
            let ids = intern(profile, result, FrameKind::Jit, None, |_| {
                "[unknown]".into()
            });
            names.insert(RawFrame::Jit(pid, *a), ids);
        }
    }
    names
}

/// Interns the frames of one result. `fallback` names what has no name:
/// it gets the function's start (a file offset) for
/// [`Symbolized::Unnamed`], else `None`.
fn intern(
    profile: &mut Profile,
    result: Symbolized,
    kind: FrameKind,
    module: Option<&str>,
    fallback: impl FnOnce(Option<u64>) -> String,
) -> Vec<FrameId> {
    let unnamed = |name| {
        vec![SymbolFrame {
            name,
            file: None,
            line: None,
            inlined: false,
        }]
    };
    let frames = match result {
        Symbolized::Found(frames) if !frames.is_empty() => frames,
        Symbolized::Unnamed { function_offset } => unnamed(fallback(Some(function_offset))),
        _ => unnamed(fallback(None)),
    };
    frames
        .into_iter()
        .map(|f| {
            let kind = if f.inlined && kind == FrameKind::User {
                FrameKind::Inline
            } else {
                kind
            };
            profile.intern_frame(Frame {
                name: f.name,
                kind,
                module: module.map(str::to_string),
                location: None,
            })
        })
        .collect()
}
