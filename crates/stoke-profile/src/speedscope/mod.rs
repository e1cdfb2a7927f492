//! speedscope's JSON file format, "sampled" profiles
//! (<https://www.speedscope.app/file-format-schema.json>).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;

use crate::{Frame, FrameId, FrameKind, Profile, Thread, ThreadId};

mod read;

pub use read::read_speedscope;

/// The `file` of kernel frames.
const KERNEL_FILE: &str = "[kernel.kallsyms]";
/// The `file` of JIT frames.
const JIT_FILE: &str = "[jit]";

/// A thread's stacks (frames root first) and their counts.
type ThreadStacks = Vec<(Vec<FrameId>, u64)>;

/// Options of the speedscope writer.
#[derive(Clone, Debug, Default)]
pub struct SpeedscopeOptions {
    /// The file's name shown by speedscope (default: the profile's command,
    /// or `stoke`).
    pub title: Option<String>,
    /// One profile per process (its threads' samples together) rather than
    /// one per thread: for recordings of many processes.
    pub per_process: bool,
}

/// Appends `text` as a JSON string. Besides what JSON requires, `<`, `>`
/// and `&` are written as `\u00XX`, so the text stays inert if the file is
/// ever embedded in HTML.
pub(crate) fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&') => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The name of a thread's profile: `process (thread-tid)`, or as much of it
/// as is known, or `all samples` for a thread of which nothing is known.
fn profile_name(thread: &Thread) -> String {
    let label = match (&thread.thread_name, thread.tid) {
        (Some(name), 0) => Some(name.clone()),
        (Some(name), tid) => Some(format!("{name}-{tid}")),
        (None, 0) => None,
        (None, tid) => Some(format!("tid {tid}")),
    };
    match (&thread.process_name, label) {
        (Some(p), Some(l)) => format!("{p} ({l})"),
        (Some(p), None) => p.clone(),
        (None, Some(l)) => l,
        (None, None) => "all samples".to_owned(),
    }
}

/// What speedscope is shown of a frame: its name, and a `file` (the
/// source file, else the module, else `[kernel.kallsyms]` or `[jit]` for
/// those kinds) and line. Frames that show the same are one speedscope
/// frame, so a function is one frame even when stoke tells apart an inlined
/// and a called copy of it.
fn shown(frame: &Frame) -> (&str, Option<&str>, Option<u32>) {
    match (&frame.kind, &frame.location, &frame.module) {
        (FrameKind::Kernel, _, _) => (&frame.name, Some(KERNEL_FILE), None),
        (FrameKind::Jit, _, _) => (&frame.name, Some(JIT_FILE), None),
        (_, Some((file, line)), _) => (&frame.name, Some(file), Some(*line)),
        (_, None, Some(module)) => (&frame.name, Some(module), None),
        (_, None, None) => (&frame.name, None, None),
    }
}

/// Writes speedscope's sampled format: one profile per thread (named
/// `process (thread-tid)`), its samples as stacks of indexes into shared
/// frames (root first) with weights.
///
/// Weights are nanoseconds (samples × [`crate::Metadata::period_ns`]) when
/// the frequency is known, else sample counts (unit `none`). A frame is
/// written as its name with a `file`: the source file and `line` when
/// known, else its module; kernel frames have `file` `[kernel.kallsyms]`
/// and JIT frames `[jit]` (names carry no `_[k]` marker). Frames that would
/// look the same are written once. Profiles are ordered by weight, the
/// heaviest first (speedscope opens on it: `activeProfileIndex` 0), then by
/// pid, tid and names; a thread's stacks by their frame names, and frames
/// by first use, so the same profile gives the same bytes whatever its ids.
///
/// # Errors
/// When writing to `out` fails.
pub fn write_speedscope(
    profile: &Profile,
    options: &SpeedscopeOptions,
    out: &mut dyn io::Write,
) -> io::Result<()> {
    // Each frame id's speedscope frame: the first frame id showing the same.
    let mut canonical: HashMap<(&str, Option<&str>, Option<u32>), FrameId> = HashMap::new();
    let same: Vec<FrameId> = profile
        .frames()
        .map(|(id, f)| *canonical.entry(shown(f)).or_insert(id))
        .collect();
    let mut per_thread: HashMap<ThreadId, ThreadStacks> = HashMap::new();
    for (thread, stack, count) in profile.samples() {
        let frames = profile
            .stack_frames(stack)
            .into_iter()
            .map(|f| same[f.0 as usize])
            .collect();
        per_thread.entry(thread).or_default().push((frames, count));
    }
    // With `per_process`, the threads of a process are one entry, named
    // after the process.
    let mut grouped: HashMap<Thread, ThreadStacks> = HashMap::new();
    for (id, stacks) in per_thread {
        let thread = profile.thread(id);
        let key = if options.per_process {
            Thread {
                pid: thread.pid,
                tid: 0,
                process_name: thread.process_name.clone(),
                thread_name: None,
            }
        } else {
            thread.clone()
        };
        grouped.entry(key).or_default().extend(stacks);
    }
    let mut threads: Vec<(Thread, u64, ThreadStacks)> = grouped
        .into_iter()
        .map(|(thread, stacks)| {
            let weight = stacks.iter().fold(0u64, |sum, s| sum.saturating_add(s.1));
            (thread, weight, stacks)
        })
        .collect();
    threads.sort_by(|a, b| {
        let key = |t: &Thread| (t.pid, t.tid, t.process_name.clone(), t.thread_name.clone());
        b.1.cmp(&a.1).then_with(|| key(&a.0).cmp(&key(&b.0)))
    });
    let name = |f: &FrameId| shown(profile.frame(*f)).0;
    let period = profile.meta.period_ns();
    let mut frame_index: HashMap<FrameId, usize> = HashMap::new();
    let mut frame_order: Vec<FrameId> = Vec::new();
    let mut profiles = String::new();
    for (i, (thread, _, mut stacks)) in threads.into_iter().enumerate() {
        stacks.sort_by(|a, b| {
            let path = |s: &[FrameId]| s.iter().map(name).collect::<Vec<_>>();
            path(&a.0).cmp(&path(&b.0))
        });
        let mut samples = String::new();
        let mut weights = String::new();
        let mut total: u64 = 0;
        for (j, (frames, count)) in stacks.iter().enumerate() {
            if j > 0 {
                samples.push(',');
                weights.push(',');
            }
            samples.push('[');
            for (k, frame) in frames.iter().enumerate() {
                let index = *frame_index.entry(*frame).or_insert_with(|| {
                    frame_order.push(*frame);
                    frame_order.len() - 1
                });
                if k > 0 {
                    samples.push(',');
                }
                let _ = write!(samples, "{index}");
            }
            samples.push(']');
            let weight = count.saturating_mul(period.unwrap_or(1));
            total = total.saturating_add(weight);
            let _ = write!(weights, "{weight}");
        }
        if i > 0 {
            profiles.push(',');
        }
        profiles.push_str("\n{\"type\":\"sampled\",\"name\":");
        let name = match (options.per_process, &thread.process_name) {
            (true, Some(process)) if thread.pid != 0 => format!("{process} (pid {})", thread.pid),
            _ => profile_name(&thread),
        };
        push_json_string(&mut profiles, &name);
        let unit = if period.is_some() {
            "nanoseconds"
        } else {
            "none"
        };
        let _ = write!(
            profiles,
            ",\"unit\":\"{unit}\",\"startValue\":0,\"endValue\":{total},\"samples\":[{samples}],\"weights\":[{weights}]}}"
        );
    }
    let mut json = String::from(
        "{\"$schema\":\"https://www.speedscope.app/file-format-schema.json\",\"exporter\":\"stoke\",\"name\":",
    );
    let mut title = match &options.title {
        Some(t) => t.clone(),
        None if profile.meta.command.is_empty() => "stoke".to_string(),
        None => profile.meta.command.clone(),
    };
    if let Some(note) = profile.meta.sampled.note() {
        title.push_str(&format!(" ({note})"));
    }
    push_json_string(&mut json, &title);
    json.push_str(",\"activeProfileIndex\":0,\"shared\":{\"frames\":[");
    for (i, id) in frame_order.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        let (name, file, line) = shown(profile.frame(*id));
        json.push_str("\n{\"name\":");
        push_json_string(&mut json, name);
        if let Some(file) = file {
            json.push_str(",\"file\":");
            push_json_string(&mut json, file);
        }
        if let Some(line) = line {
            let _ = write!(json, ",\"line\":{line}");
        }
        json.push('}');
    }
    json.push_str("]},\"profiles\":[");
    json.push_str(&profiles);
    json.push_str("]}\n");
    out.write_all(json.as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        let mut out = String::new();
        push_json_string(&mut out, "a\"b\\c\n<&>\u{1}é");
        assert_eq!(out, r#""a\"b\\c\n\u003c\u0026\u003e\u0001é""#);
    }
}
