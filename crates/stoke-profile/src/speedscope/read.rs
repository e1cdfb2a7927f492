//! Reading speedscope's JSON format: its "sampled" profiles, as stoke (and
//! most exporters of sampled data) write them.

use std::io::{BufRead, Read};

use serde::Deserialize;

use crate::input::{bytes_text, ReadLimits};
use crate::{Frame, FrameKind, Metadata, Profile, StackId, Thread};

use super::{JIT_FILE, KERNEL_FILE};

/// The largest speedscope file read (it is parsed whole, and its samples
/// take about eight times their text in memory at worst).
const MAX_BYTES: usize = 16 << 20;

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    name: Option<String>,
    shared: Shared,
    profiles: Vec<Sampled>,
}

#[derive(Deserialize)]
struct Shared {
    frames: Vec<SharedFrame>,
}

#[derive(Deserialize)]
struct SharedFrame {
    name: String,
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    line: Option<u32>,
}

#[derive(Deserialize)]
struct Sampled {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    unit: String,
    #[serde(default)]
    samples: Vec<Box<[u32]>>,
    #[serde(default)]
    weights: Vec<f64>,
}

/// Reads a speedscope file's sampled profiles into a [`Profile`].
///
/// Each profile becomes a thread: a name `process (thread-tid)`, as stoke
/// writes it, gives the process, thread and tid; any other name is taken
/// as the process. Frames whose `file` is `[kernel.kallsyms]` or `[jit]`
/// (or whose name ends `_[k]` or `_[j]`, as older stoke files have it) are
/// kernel or JIT frames; a `file` with a `line` is a source location, one
/// without is the frame's module. Weights in a time unit become sample
/// counts by dividing by their greatest common divisor (the period: stoke
/// writes samples × period), which also gives the frequency; weights of
/// unit `none` are counts. The file's name becomes the command.
///
/// # Errors
/// A message when the file is larger than 16 MiB, is not speedscope JSON,
/// has an evented profile, refers to a frame it does not have, or passes a
/// limit of `limits`.
pub fn read_speedscope(input: &mut dyn BufRead, limits: &ReadLimits) -> Result<Profile, String> {
    let mut text = Vec::new();
    input
        .take(MAX_BYTES as u64 + 1)
        .read_to_end(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() > MAX_BYTES {
        return Err(format!(
            "speedscope file larger than the limit of {}",
            bytes_text(MAX_BYTES)
        ));
    }
    let file: File =
        serde_json::from_slice(&text).map_err(|e| format!("not a speedscope file: {e}"))?;
    drop(text);
    if file.shared.frames.len() > limits.max_frames {
        return Err(format!(
            "more than the limit of {} distinct frames",
            limits.max_frames
        ));
    }
    let mut profile = Profile::new(Metadata {
        command: file.name.clone().unwrap_or_default(),
        ..Metadata::default()
    });
    let frames: Vec<_> = file
        .shared
        .frames
        .iter()
        .map(|f| profile.intern_frame(frame(f)))
        .collect();
    let timed = file
        .profiles
        .iter()
        .any(|p| p.unit != "none" && !p.unit.is_empty());
    let period = if timed {
        weights_gcd(&file.profiles)
    } else {
        1
    };
    if timed && period > 0 {
        let per_second = match file.profiles[0].unit.as_str() {
            "nanoseconds" => 1e9,
            "microseconds" => 1e6,
            "milliseconds" => 1e3,
            "seconds" => 1.0,
            _ => 0.0,
        };
        profile.meta.frequency = (per_second / period as f64)
            .round()
            .min(f64::from(u32::MAX)) as u32;
    }
    for sampled in &file.profiles {
        if sampled.kind != "sampled" {
            return Err(format!(
                "profile {:?} is {:?}; stoke reads sampled profiles only",
                sampled.name, sampled.kind
            ));
        }
        if sampled.samples.len() != sampled.weights.len() {
            return Err(format!(
                "profile {:?} has {} samples but {} weights",
                sampled.name,
                sampled.samples.len(),
                sampled.weights.len()
            ));
        }
        let thread = profile.intern_thread(thread(&sampled.name));
        for (stack, &weight) in sampled.samples.iter().zip(&sampled.weights) {
            if stack.len() > limits.max_stack_depth {
                return Err(format!(
                    "a sample of {} frames is deeper than the limit of {}",
                    stack.len(),
                    limits.max_stack_depth
                ));
            }
            let mut id: Option<StackId> = None;
            for &index in stack.iter() {
                let frame = *frames.get(index as usize).ok_or_else(|| {
                    format!(
                        "a sample refers to frame {index}, but there are {}",
                        frames.len()
                    )
                })?;
                id = Some(profile.extend_stack(id, frame));
            }
            limits.check_profile(&profile)?;
            let count = (weight.max(0.0) / period.max(1) as f64).round() as u64;
            if let Some(id) = id {
                profile.add_sample(thread, id, count);
            }
        }
    }
    Ok(profile)
}

/// The greatest common divisor of every (integer) weight, 1 when there are
/// fractional weights or none.
fn weights_gcd(profiles: &[Sampled]) -> u64 {
    let mut gcd = 0u64;
    for w in profiles.iter().flat_map(|p| &p.weights) {
        if w.fract() != 0.0 || *w < 0.0 || *w > 1e18 {
            return 1;
        }
        let (mut a, mut b) = (gcd, *w as u64);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        gcd = a;
    }
    gcd.max(1)
}

fn frame(shared: &SharedFrame) -> Frame {
    let file = shared.file.as_deref();
    let (name, kind) = match (file, &shared.name) {
        (Some(KERNEL_FILE), name) => (name.as_str(), FrameKind::Kernel),
        (Some(JIT_FILE), name) => (name.as_str(), FrameKind::Jit),
        (_, name) if name.ends_with("_[k]") => (&name[..name.len() - 4], FrameKind::Kernel),
        (_, name) if name.ends_with("_[j]") => (&name[..name.len() - 4], FrameKind::Jit),
        (_, name) if name.starts_with('[') && file.is_none() => (name.as_str(), FrameKind::Marker),
        (_, name) => (name.as_str(), FrameKind::User),
    };
    let mut frame = Frame::new(name, kind);
    match (file, shared.line) {
        (Some(KERNEL_FILE | JIT_FILE) | None, _) => {}
        (Some(file), Some(line)) => frame.location = Some((file.to_owned(), line)),
        (Some(module), None) => frame.module = Some(module.to_owned()),
    }
    frame
}

/// The thread a profile's name stands for (see [`super::profile_name`]).
fn thread(name: &str) -> Thread {
    let mut thread = Thread {
        pid: 0,
        tid: 0,
        process_name: None,
        thread_name: None,
    };
    if name == "all samples" {
        return thread;
    }
    let (process, label) = match name.strip_suffix(')').and_then(|n| n.rsplit_once(" (")) {
        Some((process, label)) => (Some(process), Some(label)),
        None => (Some(name), None),
    };
    thread.process_name = process.map(str::to_owned);
    if let Some(label) = label {
        if let Some(tid) = label.strip_prefix("tid ").and_then(|t| t.parse().ok()) {
            thread.tid = tid;
        } else if let Some((name, tid)) = label
            .rsplit_once('-')
            .and_then(|(n, t)| Some((n, t.parse().ok()?)))
        {
            thread.thread_name = Some(name.to_owned());
            thread.tid = tid;
        } else {
            thread.thread_name = Some(label.to_owned());
        }
    }
    thread
}
