//! After recording: name every unique address once, in batch per module, and
//! build the profile.

use std::collections::{HashMap, HashSet};

use stoke_model::{FrameAddress, Pid};
use stoke_profile::{Frame, FrameId, FrameKind, Metadata, Profile, Thread};
use stoke_symbolize::{ModuleRequest, SymbolFrame, Symbolized, Symbolizer};

use crate::modules::ModuleTable;
use crate::python::{frame_name, PythonFrame, PYTHON_STALE_FRAME};
use crate::stack::{ModuleIndex, RawFrame, ThreadKey, OFF_CPU_FRAME};
use crate::{TruncationReason, Warning, Warnings};

/// Counted stacks: (thread, frames leaf first, samples).
pub(crate) type Counted<'a> = [(&'a ThreadKey, &'a [RawFrame], u64)];

/// Builds the profile from aggregated stacks, symbolizing each unique frame once.
pub(crate) fn build_profile(
    stacks: &Counted<'_>,
    modules: &ModuleTable,
    python: &[PythonFrame],
    symbolizer: &mut Symbolizer,
    meta: Metadata,
    warnings: &mut Warnings,
) -> Profile {
    let mut profile = Profile::new(meta);
    let names = name_frames(stacks, modules, python, symbolizer, &mut profile, warnings);
    // Path and build-id of each module frames name, for pprof mappings.
    for info in &modules.modules {
        profile.add_module(stoke_profile::Module {
            name: info.short_name.clone(),
            path: info.path.as_ref().map_or_else(
                || info.short_name.clone(),
                |p| p.to_string_lossy().into_owned(),
            ),
            build_id: info.build_id.as_ref().map(|b| b.to_string()),
        });
    }
    let mut thread_ids = HashMap::new();
    let mut ids = Vec::new();
    for &(thread, frames, count) in stacks {
        ids.clear();
        for raw in frames.iter().rev() {
            ids.extend_from_slice(&names[raw]);
        }
        let Some(stack) = profile.intern_stack(&ids) else {
            continue;
        };
        let thread_id = *thread_ids.entry(thread).or_insert_with(|| {
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
    stacks: &Counted<'_>,
    modules: &ModuleTable,
    python: &[PythonFrame],
    symbolizer: &mut Symbolizer,
    profile: &mut Profile,
    warnings: &mut Warnings,
) -> HashMap<RawFrame, Vec<FrameId>> {
    let unique: HashSet<&RawFrame> = stacks.iter().flat_map(|(_, f, _)| f.iter()).collect();
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
                names.insert(*raw, vec![id]);
            }
            RawFrame::Truncated(reason) => {
                let id = profile.intern_frame(Frame::new(
                    format!("[truncated: {reason}]"),
                    FrameKind::Marker,
                ));
                names.insert(*raw, vec![id]);
            }
            RawFrame::Syscall(syscall) => {
                let name = format!("[syscall: {syscall}]");
                let id = profile.intern_frame(Frame::new(name, FrameKind::Marker));
                names.insert(*raw, vec![id]);
            }
            RawFrame::OffCpu => {
                let id = profile.intern_frame(Frame::new(OFF_CPU_FRAME, FrameKind::Marker));
                names.insert(*raw, vec![id]);
            }
            RawFrame::Python(i) => {
                let ids = python.get(*i as usize).map(|f| {
                    profile.intern_frame(Frame {
                        name: frame_name(f),
                        kind: FrameKind::Python,
                        module: None,
                        location: f.line.map(|l| (f.code.file.clone(), l)),
                    })
                });
                names.insert(*raw, ids.into_iter().collect());
            }
            RawFrame::PythonStale => {
                let id = profile.intern_frame(Frame::new(PYTHON_STALE_FRAME, FrameKind::Marker));
                names.insert(*raw, vec![id]);
            }
        }
    }
    let lines = symbolizer.options().lines;
    for (m, addresses) in by_module {
        let info = &modules.modules[m.0 as usize];
        let results = match &info.path {
            // Never another file in place of the one mapped: its addresses
            // stay offsets.
            Some(path) if info.unavailable.is_some() => {
                let reason =
                    stoke_symbolize::UnknownReason::FileUnavailable(path.display().to_string());
                vec![Symbolized::Unknown(reason); addresses.len()]
            }
            Some(path) => symbolizer.symbolize_module(
                &ModuleRequest {
                    path,
                    pid: Some(info.pid),
                    build_id: info.build_id.as_ref(),
                    file: info.file.as_deref(),
                },
                &addresses,
            ),
            None if info.is_vdso => symbolizer.symbolize_vdso(info.build_id.as_ref(), &addresses),
            None => {
                vec![Symbolized::Unknown(stoke_symbolize::UnknownReason::NoSymbol); addresses.len()]
            }
        };
        // A file that could not be opened when sampled and gave no name
        // since is worth a word; one opened later by path is not.
        if let (Some(why), Some(path)) = (info.unavailable, &info.path) {
            if results.iter().all(|r| matches!(r, Symbolized::Unknown(_))) {
                warnings.push(match why.reason {
                    TruncationReason::ModuleMismatch => {
                        Warning::ModuleMismatch { path: path.clone() }
                    }
                    _ => Warning::ModuleUnreadable {
                        path: path.clone(),
                        errno: why.errno,
                    },
                });
            }
        }
        for (a, result) in addresses.iter().zip(results) {
            // Unnamed functions are named by their start, so their samples merge.
            let fallback = |start: Option<u64>| {
                format!("{}+{:#x}", info.short_name, start.unwrap_or(a.address()))
            };
            let ids = intern(
                profile,
                with_lines(result, lines),
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
                location: f.file.zip(f.line),
            })
        })
        .collect()
}

/// With `lines` (`--lines`), each frame that has a source location is named
/// `func (file.c:42)` (the file's name only; the whole path stays in the
/// frame's location), so folded stacks and flame graphs show it. Without,
/// locations are dropped, so that a function's samples merge into one frame
/// whatever line they hit.
fn with_lines(result: Symbolized, lines: bool) -> Symbolized {
    let Symbolized::Found(mut frames) = result else {
        return result;
    };
    for frame in &mut frames {
        match (&frame.file, frame.line) {
            (Some(file), Some(line)) if lines => {
                let short = file.rsplit('/').next().unwrap_or(file);
                frame.name = format!("{} ({short}:{line})", frame.name);
            }
            _ => (frame.file, frame.line) = (None, None),
        }
    }
    Symbolized::Found(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(frames: &[(&str, Option<(&str, u32)>)]) -> Symbolized {
        Symbolized::Found(
            frames
                .iter()
                .enumerate()
                .map(|(i, (name, location))| SymbolFrame {
                    name: name.to_string(),
                    file: location.map(|(f, _)| f.to_string()),
                    line: location.map(|(_, l)| l),
                    inlined: i > 0,
                })
                .collect(),
        )
    }

    #[test]
    fn lines_name_frames_with_the_file_name_and_line_only_when_asked() {
        let result = found(&[
            ("outer", Some(("/src/app/main.c", 42))),
            ("inner", Some(("/src/app/mix.h", 7))),
            ("nameonly", None),
        ]);
        let Symbolized::Found(plain) = with_lines(result.clone(), false) else {
            panic!()
        };
        assert_eq!(plain[0].name, "outer");
        assert!(plain.iter().all(|f| f.file.is_none() && f.line.is_none()));
        let Symbolized::Found(lined) = with_lines(result, true) else {
            panic!()
        };
        let names: Vec<&str> = lined.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["outer (main.c:42)", "inner (mix.h:7)", "nameonly"]);
        assert_eq!(lined[0].file.as_deref(), Some("/src/app/main.c"));
    }
}
