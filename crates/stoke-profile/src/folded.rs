//! Folded stacks: `root;caller;leaf count`, one line per unique stack.
//! The format is described on [`write_folded`].

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, Read, Write};

use crate::input::{bytes_text, ReadLimits};
use crate::{Frame, FrameKind, Metadata, Profile, Thread, ThreadId};

/// Options of the folded writer.
#[derive(Clone, Debug, Default)]
pub struct FoldedOptions {
    /// Put `thread-name-tid` under the process root frame.
    pub per_thread: bool,
}

/// A folded file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FoldedError {
    /// A line is not `frames count`.
    #[error("{source_name}:{line}: {message}")]
    Malformed {
        /// File name (or `<stdin>`).
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Reading failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

const KERNEL_SUFFIX: &str = "_[k]";
const JIT_SUFFIX: &str = "_[j]";

/// Appends `name` to `out`, with `;` replaced by `:` and line breaks by
/// spaces.
fn push_sanitized(out: &mut String, name: &str) {
    out.extend(name.chars().map(|c| match c {
        ';' => ':',
        '\n' | '\r' => ' ',
        c => c,
    }));
}

/// The folded text of one frame; with `inline`, inlined frames end `_[i]`
/// (as inferno reads them, for flame graphs).
pub(crate) fn frame_text(frame: &Frame, inline: bool) -> String {
    let mut text = String::with_capacity(frame.name.len() + KERNEL_SUFFIX.len());
    push_sanitized(&mut text, &frame.name);
    match frame.kind {
        FrameKind::Kernel => text.push_str(KERNEL_SUFFIX),
        FrameKind::Jit => text.push_str(JIT_SUFFIX),
        FrameKind::Inline if inline => text.push_str("_[i]"),
        FrameKind::User | FrameKind::Inline | FrameKind::Python | FrameKind::Marker => {}
    }
    text
}

/// The frames written above a thread's stacks: the process name, then with
/// `per_thread` the thread label. Each is followed by `;`.
pub(crate) fn thread_prefix(thread: &Thread, per_thread: bool) -> String {
    let mut prefix = String::new();
    if let Some(process) = &thread.process_name {
        push_sanitized(&mut prefix, process);
        prefix.push(';');
    }
    // Nothing is known of the thread itself in profiles read from folded
    // text (tid 0, no thread name): no frame for it.
    let unknown = thread.tid == 0 && thread.thread_name.is_none();
    if per_thread && !unknown {
        let name = thread
            .thread_name
            .as_deref()
            .or(thread.process_name.as_deref())
            .unwrap_or("thread");
        push_sanitized(&mut prefix, name);
        prefix.push_str(&format!("-{};", thread.tid));
    }
    prefix
}

/// Every folded stack (without its count) with its summed count, sorted.
pub(crate) fn folded_stacks(profile: &Profile, per_thread: bool) -> BTreeMap<String, u64> {
    annotated_stacks(profile, per_thread, false)
}

/// [`folded_stacks`], with inlined frames ending `_[i]` when `inline`.
pub(crate) fn annotated_stacks(
    profile: &Profile,
    per_thread: bool,
    inline: bool,
) -> BTreeMap<String, u64> {
    let frames: Vec<String> = profile
        .frames()
        .map(|(_, f)| frame_text(f, inline))
        .collect();
    let prefixes: Vec<String> = profile
        .threads()
        .map(|(_, t)| thread_prefix(t, per_thread))
        .collect();
    let mut lines = BTreeMap::new();
    let mut line = String::new();
    for (thread, stack, count) in profile.samples() {
        line.clear();
        line.push_str(&prefixes[thread.0 as usize]);
        for (i, frame) in profile.stack_frames(stack).into_iter().enumerate() {
            if i > 0 {
                line.push(';');
            }
            line.push_str(&frames[frame.0 as usize]);
        }
        match lines.get_mut(line.as_str()) {
            Some(total) => *total = u64::saturating_add(*total, count),
            None => {
                lines.insert(line.clone(), count);
            }
        }
    }
    lines
}

/// Writes a profile as folded stacks: the process name as the root frame,
/// kernel frames suffixed `_[k]`, lines sorted, counts summed.
///
/// The format (Brendan Gregg's, as read by `flamegraph.pl` and inferno):
/// frames separated by `;`, root first, then one space and a decimal count.
///
/// What is written for each (thread, stack):
/// - the thread's `process_name` as the root frame, when it has one (profiles
///   read from folded text have the root frame of each line as it);
/// - with [`FoldedOptions::per_thread`], a second frame `{thread}-{tid}`,
///   where `{thread}` is the thread name, else the process name, else
///   `thread` (and no such frame for a thread of which nothing is known:
///   tid 0 and no thread name, as in profiles read from folded text);
/// - the stack's frames, root first: kernel frames as `name_[k]`, JIT frames
///   as `name_[j]`, all other kinds (user, inline, markers) as the bare name;
/// - a space and the count.
///
/// Lines whose text is the same are summed, and lines are sorted bytewise,
/// so the same profile always gives the same bytes.
///
/// Names cannot break the format: on write, `;` in a name becomes `:`, and
/// `\n` and `\r` become a space. Names may contain spaces (the count is after
/// the *last* space of a line).
///
/// # Errors
/// When writing to `out` fails.
pub fn write_folded(
    profile: &Profile,
    options: &FoldedOptions,
    out: &mut dyn io::Write,
) -> io::Result<()> {
    let mut out = io::BufWriter::new(out);
    for (stack, count) in folded_stacks(profile, options.per_thread) {
        writeln!(out, "{stack} {count}")?;
    }
    out.flush()
}

/// The frame a folded name stands for: `_[k]` and `_[j]` suffixes give
/// kernel and JIT frames (without the suffix), anything else a user frame.
fn parse_frame(text: &str) -> Frame {
    if let Some(name) = text.strip_suffix(KERNEL_SUFFIX) {
        Frame::new(name, FrameKind::Kernel)
    } else if let Some(name) = text.strip_suffix(JIT_SUFFIX) {
        Frame::new(name, FrameKind::Jit)
    } else {
        Frame::new(text, FrameKind::User)
    }
}

/// At most 80 characters of a line, for error messages.
fn excerpt(line: &str) -> String {
    const MAX: usize = 80;
    match line.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}...", &line[..end]),
        None => line.to_owned(),
    }
}

/// Splits `frames count` at the last space.
fn parse_line(line: &str) -> Result<(&str, u64), String> {
    let expected = || format!("expected \"frame;frame count\", found {:?}", excerpt(line));
    let (stack, count) = line.rsplit_once(' ').ok_or_else(expected)?;
    if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
        return Err(expected());
    }
    let count = count
        .parse()
        .map_err(|_| format!("count {count:?} is too large (more than {})", u64::MAX))?;
    if stack.is_empty() {
        return Err(format!(
            "empty stack before the count in {:?}",
            excerpt(line)
        ));
    }
    Ok((stack, count))
}

/// Reads folded stacks with the default [`ReadLimits`]; see
/// [`read_folded_with`].
///
/// # Errors
/// As [`read_folded_with`].
pub fn read_folded(input: &mut dyn io::BufRead, source_name: &str) -> Result<Profile, FoldedError> {
    read_folded_with(input, source_name, &ReadLimits::default())
}

/// Reads folded stacks, one line at a time (the input is never held
/// whole): `_[k]` frames become kernel frames, `_[j]` JIT frames, all others
/// user frames.
///
/// The root frame of a line of two or more frames is the process, as stoke,
/// `perf script | stackcollapse-perf.pl` and inferno's collapsers write it:
/// it becomes the [`Thread::process_name`] of the line's thread (pid 0, tid
/// 0, no thread name), not a frame, so a report lists functions only.
/// Writing the profile back gives the same lines. A line of one frame is
/// that frame, under no process.
///
/// Empty (or blank) lines are skipped; a line's trailing whitespace (and
/// `\r`) is ignored; frames are kept as written otherwise, spaces included.
/// Input with no stacks at all gives an empty profile (check
/// [`Profile::is_empty`]), not an error.
///
/// # Errors
/// [`FoldedError::Malformed`], naming `source_name` and the 1-based line, for
/// a line without a count, with a non-numeric count, with nothing before the
/// count, that is not UTF-8, or that passes a limit of `limits` (line
/// length, stack depth, distinct frames or stacks), and when the counts add
/// up to more than `u64::MAX`; [`FoldedError::Io`] when reading fails.
pub fn read_folded_with(
    input: &mut dyn io::BufRead,
    source_name: &str,
    limits: &ReadLimits,
) -> Result<Profile, FoldedError> {
    let mut profile = Profile::new(Metadata::default());
    let malformed = |line, message| FoldedError::Malformed {
        source_name: source_name.to_owned(),
        line,
        message,
    };
    let mut bytes = Vec::new();
    let mut line_number = 0;
    let mut total: u64 = 0;
    let mut threads: HashMap<String, ThreadId> = HashMap::new();
    loop {
        bytes.clear();
        let max = limits.max_line_bytes;
        if (&mut *input)
            .take(max as u64 + 1)
            .read_until(b'\n', &mut bytes)?
            == 0
        {
            break;
        }
        line_number += 1;
        if bytes.len() > max {
            return Err(malformed(
                line_number,
                format!("the line is longer than the limit of {}", bytes_text(max)),
            ));
        }
        let line = std::str::from_utf8(&bytes)
            .map_err(|e| malformed(line_number, format!("not UTF-8: {e}")))?
            .trim_end();
        if line.trim_start().is_empty() {
            continue;
        }
        let (stack, count) = parse_line(line).map_err(|m| malformed(line_number, m))?;
        total = total.checked_add(count).ok_or_else(|| {
            malformed(
                line_number,
                format!("the counts add up to more than {}", u64::MAX),
            )
        })?;
        let depth = stack.split(';').count();
        if depth > limits.max_stack_depth {
            return Err(malformed(
                line_number,
                format!(
                    "a stack of {depth} frames is deeper than the limit of {}",
                    limits.max_stack_depth
                ),
            ));
        }
        let (process, frames) = match stack.split_once(';') {
            Some((root, rest)) => (Some(root), rest),
            None => (None, stack),
        };
        let mut parent = None;
        for text in frames.split(';') {
            let frame = profile.intern_frame(parse_frame(text));
            parent = Some(profile.extend_stack(parent, frame));
        }
        limits
            .check_profile(&profile)
            .map_err(|m| malformed(line_number, m))?;
        let thread = match threads.get(process.unwrap_or("")) {
            Some(&id) => id,
            None => {
                let id = profile.intern_thread(Thread {
                    pid: 0,
                    tid: 0,
                    process_name: process.map(str::to_owned),
                    thread_name: None,
                });
                threads.insert(process.unwrap_or("").to_owned(), id);
                id
            }
        };
        if let Some(stack) = parent {
            profile.add_sample(thread, stack, count);
        }
    }
    Ok(profile)
}
