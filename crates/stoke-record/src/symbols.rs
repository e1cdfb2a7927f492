//! After recording: name every unique address once, in batch per module, and
//! build the profile.

use std::collections::{HashMap, HashSet};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use stoke_model::{FrameAddress, Pid};
use stoke_profile::{Frame, FrameId, FrameKind, Metadata, Profile, Thread};
use stoke_symbolize::{ModuleRequest, SymbolFrame, Symbolized, Symbolizer};

use crate::modules::{ModuleInfo, ModuleTable};
use crate::python::{frame_name, PythonFrame, PYTHON_STALE_FRAME};
use crate::stack::{ModuleIndex, RawFrame, ThreadKey, OFF_CPU_FRAME, RUNNABLE_FRAME};
use crate::{Warning, Warnings};

/// Counted stacks: (thread, frames leaf first, samples).
pub(crate) type Counted<'a> = [(&'a ThreadKey, &'a [RawFrame], u64)];

/// Builds the profile from aggregated stacks, symbolizing each unique frame once.
pub(crate) fn build_profile(
    stacks: &Counted<'_>,
    modules: &ModuleTable,
    python: &[PythonFrame],
    symbolizer: Symbolizer,
    meta: Metadata,
    warnings: &mut Warnings,
    interrupted: &dyn Fn() -> bool,
) -> Profile {
    let mut profile = Profile::new(meta);
    let names = name_frames(
        stacks,
        modules,
        python,
        symbolizer,
        &mut profile,
        warnings,
        interrupted,
    );
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
            if *raw == RawFrame::Blocked {
                let name = crate::wait::blocked_name(&profile, &ids);
                ids.push(profile.intern_frame(Frame::new(name, FrameKind::Marker)));
                continue;
            }
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

/// One batch of addresses to name, as the naming thread receives it.
pub(crate) enum Job {
    Module(ModuleIndex, ModuleInfo, Vec<FrameAddress>),
    Kernel(Vec<FrameAddress>),
    Jit(Pid, Vec<FrameAddress>),
}

/// What the naming thread sends back.
enum Named {
    /// The results of the job at this index, one per address.
    Job(usize, Vec<Symbolized>),
    /// Every job is done; the symbolizer's warnings.
    Done(Vec<String>),
}

/// How often the wait for names looks at the interrupt count.
const INTERRUPT_CHECK: Duration = Duration::from_millis(50);

/// Names every unique raw frame: each becomes one or more profile frames
/// (a function and the functions inlined into it), outermost first.
///
/// Naming runs on its own thread; when `interrupted` turns true the wait
/// ends and what is not named yet is named by module and offset.
fn name_frames(
    stacks: &Counted<'_>,
    modules: &ModuleTable,
    python: &[PythonFrame],
    symbolizer: Symbolizer,
    profile: &mut Profile,
    warnings: &mut Warnings,
    interrupted: &dyn Fn() -> bool,
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
            RawFrame::Runnable => {
                let id = profile.intern_frame(Frame::new(RUNNABLE_FRAME, FrameKind::Marker));
                names.insert(*raw, vec![id]);
            }
            // Named per stack, from the frames it follows.
            RawFrame::Blocked => {
                names.insert(*raw, Vec::new());
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
    let mut jobs: Vec<Job> = by_module
        .into_iter()
        .map(|(m, a)| Job::Module(m, modules.modules[m.0 as usize].clone(), a))
        .collect();
    if !kernel.is_empty() {
        jobs.push(Job::Kernel(kernel));
    }
    jobs.extend(jit.into_iter().map(|(pid, a)| Job::Jit(pid, a)));
    let jobs = Arc::new(jobs);
    let (sender, receiver) = mpsc::channel();
    let worker_jobs = Arc::clone(&jobs);
    let spawned = std::thread::Builder::new()
        .name("stoke-naming".into())
        .spawn(move || run_jobs(symbolizer, &worker_jobs, &sender));
    let mut done = vec![false; jobs.len()];
    let mut complete = spawned.is_err();
    while !complete {
        let message = match receiver.recv_timeout(INTERRUPT_CHECK) {
            Ok(message) => message,
            Err(mpsc::RecvTimeoutError::Timeout) if !interrupted() => continue,
            Err(_) => break,
        };
        match message {
            Named::Job(i, results) => {
                done[i] = true;
                name_job(&jobs[i], results, lines, profile, &mut names, warnings);
            }
            Named::Done(messages) => {
                for message in messages {
                    warnings.push(Warning::Symbolize(message));
                }
                complete = true;
            }
        }
        if interrupted() {
            break;
        }
    }
    if !complete {
        // Interrupted (or no thread): the rest by module and offset.
        let mut unnamed = 0;
        for (job, _) in jobs.iter().zip(&done).filter(|(_, d)| !**d) {
            let n = match job {
                Job::Module(_, _, a) | Job::Kernel(a) | Job::Jit(_, a) => a.len(),
            };
            unnamed += n;
            let results = vec![Symbolized::Unknown(stoke_symbolize::UnknownReason::NoSymbol); n];
            name_job(
                job,
                results,
                lines,
                profile,
                &mut names,
                &mut Warnings::default(),
            );
        }
        warnings.push(Warning::NamingInterrupted { unnamed });
    }
    names
}

/// The naming thread: each job in turn, its results sent as they come.
fn run_jobs(mut symbolizer: Symbolizer, jobs: &[Job], sender: &mpsc::Sender<Named>) {
    let slow = slow_naming_for_tests();
    for (i, job) in jobs.iter().enumerate() {
        if let Some(pause) = slow {
            std::thread::sleep(pause);
        }
        let results = run_job(&mut symbolizer, job);
        // Each module is one job: once named, its parsed tables and its
        // file's pages leave stoke's memory, so that naming a whole
        // machine's modules peaks at the largest one, not at their sum.
        if let Job::Module(_, info, _) = job {
            symbolizer.forget_modules();
            if let Some(map) = info.image.as_ref().and_then(|image| image.map()) {
                stoke_symbolize::release_pages(&map);
            }
        }
        if sender.send(Named::Job(i, results)).is_err() {
            return;
        }
    }
    let _ = sender.send(Named::Done(symbolizer.warnings()));
}

/// Names one job's addresses, one result per address.
pub(crate) fn run_job(symbolizer: &mut Symbolizer, job: &Job) -> Vec<Symbolized> {
    match job {
        Job::Module(_, info, addresses) => match &info.path {
            Some(path) => match &info.image {
                Some(image) => symbolizer.symbolize_module(
                    &ModuleRequest {
                        path,
                        build_id: info.build_id.as_ref(),
                        map: image.map(),
                        root: image.root.as_deref(),
                    },
                    addresses,
                ),
                // The store could not read it: never by path instead.
                None => vec![Symbolized::Unknown(unread(path)); addresses.len()],
            },
            None if info.is_vdso => symbolizer.symbolize_vdso(info.build_id.as_ref(), addresses),
            None => {
                vec![Symbolized::Unknown(stoke_symbolize::UnknownReason::NoSymbol); addresses.len()]
            }
        },
        Job::Kernel(addresses) => {
            let lookup: Vec<u64> = addresses.iter().map(|a| a.lookup_address()).collect();
            symbolizer.symbolize_kernel(&lookup)
        }
        Job::Jit(pid, addresses) => {
            let lookup: Vec<u64> = addresses.iter().map(|a| a.lookup_address()).collect();
            symbolizer.symbolize_jit(*pid, &lookup)
        }
    }
}

/// Why a module the store could not read has no names.
fn unread(path: &std::path::Path) -> stoke_symbolize::UnknownReason {
    stoke_symbolize::UnknownReason::FileUnavailable(format!("{}: not read", path.display()))
}

/// `STOKE_TEST_SLOW_NAMING_MS`: a pause before each naming job, so that
/// tests can signal stoke while it names. Not a user setting.
fn slow_naming_for_tests() -> Option<Duration> {
    let ms: u64 = std::env::var("STOKE_TEST_SLOW_NAMING_MS")
        .ok()?
        .parse()
        .ok()?;
    eprintln!("stoke: naming (slowed by {ms} ms per module for a test)");
    Some(Duration::from_millis(ms))
}

/// Interns one job's results into `names`.
fn name_job(
    job: &Job,
    results: Vec<Symbolized>,
    lines: bool,
    profile: &mut Profile,
    names: &mut HashMap<RawFrame, Vec<FrameId>>,
    warnings: &mut Warnings,
) {
    match job {
        Job::Module(m, info, addresses) => {
            // A file that could not be opened when sampled and gave no name
            // since is worth a word; one opened later by path is not.
            if let (Some(why), Some(path)) = (info.unavailable, &info.path) {
                if results.iter().all(|r| matches!(r, Symbolized::Unknown(_))) {
                    warnings.push(Warning::unavailable(path, why));
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
                names.insert(RawFrame::Module(*m, *a), ids);
            }
        }
        Job::Kernel(addresses) => {
            for (a, result) in addresses.iter().zip(results) {
                let ids = intern(profile, result, FrameKind::Kernel, None, |_| {
                    "[unknown]".into()
                });
                names.insert(RawFrame::Kernel(*a), ids);
            }
        }
        Job::Jit(pid, addresses) => {
            for (a, result) in addresses.iter().zip(results) {
                let ids = intern(profile, result, FrameKind::Jit, None, |_| {
                    "[unknown]".into()
                });
                names.insert(RawFrame::Jit(*pid, *a), ids);
            }
        }
    }
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
pub(crate) fn with_lines(result: Symbolized, lines: bool) -> Symbolized {
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
