//! The pprof writer.

use std::collections::HashMap;
use std::io::{self, Write as _};

use flate2::write::GzEncoder;
use flate2::Compression;
use prost::Message;

use super::proto;
use super::{JIT_MAPPING, KERNEL_MAPPING};
use crate::{FrameId, FrameKind, Profile, StackId, Thread};

/// The comment that marks a profile of user time only (read back by the
/// reader; `pprof -comments` shows it).
pub(crate) const USER_ONLY_COMMENT: &str = "stoke:sampled=user";

/// Interning tables of the message being built.
#[derive(Default)]
struct Builder {
    out: proto::Profile,
    strings: HashMap<String, i64>,
    functions: HashMap<(i64, i64), u64>,
    mappings: HashMap<String, u64>,
    locations: HashMap<Vec<FrameId>, u64>,
}

impl Builder {
    fn string(&mut self, text: &str) -> i64 {
        if let Some(&i) = self.strings.get(text) {
            return i;
        }
        let i = self.out.string_table.len() as i64;
        self.out.string_table.push(text.to_owned());
        self.strings.insert(text.to_owned(), i);
        i
    }

    fn value_type(&mut self, ty: &str, unit: &str) -> proto::ValueType {
        proto::ValueType {
            r#type: self.string(ty),
            unit: self.string(unit),
        }
    }

    /// The mapping of a module (by path, build-id), created on first use.
    fn mapping(&mut self, path: &str, build_id: Option<&str>, lines: bool) -> u64 {
        if let Some(&id) = self.mappings.get(path) {
            if lines {
                let m = &mut self.out.mapping[id as usize - 1];
                m.has_filenames = true;
                m.has_line_numbers = true;
            }
            return id;
        }
        let id = self.out.mapping.len() as u64 + 1;
        let filename = self.string(path);
        let build_id = self.string(build_id.unwrap_or(""));
        self.out.mapping.push(proto::Mapping {
            id,
            filename,
            build_id,
            has_functions: true,
            has_filenames: lines,
            has_line_numbers: lines,
            has_inline_frames: true,
            ..proto::Mapping::default()
        });
        self.mappings.insert(path.to_owned(), id);
        id
    }

    fn function(&mut self, name: &str, file: &str) -> u64 {
        let (name, file) = (self.string(name), self.string(file));
        if let Some(&id) = self.functions.get(&(name, file)) {
            return id;
        }
        let id = self.out.function.len() as u64 + 1;
        self.out.function.push(proto::Function {
            id,
            name,
            system_name: name,
            filename: file,
            start_line: 0,
        });
        self.functions.insert((name, file), id);
        id
    }

    /// The location of a function and the functions inlined into it
    /// (`group`, outermost first).
    fn location(&mut self, profile: &Profile, group: &[FrameId]) -> u64 {
        if let Some(&id) = self.locations.get(group) {
            return id;
        }
        let outer = profile.frame(group[0]);
        let has_lines = group.iter().any(|&f| profile.frame(f).location.is_some());
        let mapping_id = match (&outer.kind, &outer.module) {
            (FrameKind::Kernel, _) => self.mapping(KERNEL_MAPPING, None, false),
            (FrameKind::Jit, _) => self.mapping(JIT_MAPPING, None, false),
            (_, Some(name)) => match profile.module(name) {
                Some(m) => {
                    let (path, build_id) = (m.path.clone(), m.build_id.clone());
                    self.mapping(&path, build_id.as_deref(), has_lines)
                }
                None => self.mapping(name, None, has_lines),
            },
            (_, None) => 0,
        };
        let mut lines = Vec::with_capacity(group.len());
        for &id in group.iter().rev() {
            let frame = profile.frame(id);
            let (file, line) = match &frame.location {
                Some((file, line)) => (file.as_str(), i64::from(*line)),
                None => ("", 0),
            };
            let function_id = self.function(&frame.name, file);
            lines.push(proto::Line {
                function_id,
                line,
                column: 0,
            });
        }
        let id = self.out.location.len() as u64 + 1;
        self.out.location.push(proto::Location {
            id,
            mapping_id,
            address: 0,
            line: lines,
            is_folded: false,
        });
        self.locations.insert(group.to_vec(), id);
        id
    }

    /// Location ids of a stack, leaf first.
    fn stack(&mut self, profile: &Profile, stack: StackId) -> Vec<u64> {
        let frames = profile.stack_frames(stack);
        let mut groups: Vec<&[FrameId]> = Vec::new();
        let mut start = 0;
        for i in 1..=frames.len() {
            if i == frames.len() || profile.frame(frames[i]).kind != FrameKind::Inline {
                groups.push(&frames[start..i]);
                start = i;
            }
        }
        groups
            .iter()
            .rev()
            .map(|group| self.location(profile, group))
            .collect()
    }

    fn labels(&mut self, thread: &Thread, cgroup: Option<&String>) -> Vec<proto::Label> {
        let mut labels = Vec::new();
        let mut text = |b: &mut Builder, key: &str, value: &Option<String>| {
            if let Some(value) = value {
                labels.push(proto::Label {
                    key: b.string(key),
                    str: b.string(value),
                    ..proto::Label::default()
                });
            }
        };
        text(self, "process", &thread.process_name);
        text(self, "thread", &thread.thread_name);
        text(self, "cgroup", &cgroup.cloned());
        for (key, num) in [("pid", thread.pid), ("tid", thread.tid)] {
            if num != 0 {
                labels.push(proto::Label {
                    key: self.string(key),
                    num: i64::from(num),
                    ..proto::Label::default()
                });
            }
        }
        labels
    }
}

/// Writes a profile as a gzipped pprof protobuf (see the [module
/// doc](super) for how it maps). The same profile gives the same bytes.
///
/// # Errors
/// When writing to `out` fails.
pub fn write_pprof(profile: &Profile, out: &mut dyn io::Write) -> io::Result<()> {
    let message = to_proto(profile);
    let mut gz = GzEncoder::new(out, Compression::default());
    gz.write_all(&message.encode_to_vec())?;
    gz.finish()?.flush()
}

/// The main program's module: the one holding the outermost named frame
/// (`_start`, `main`) of the most samples on processes' main threads (tid
/// = pid, or unknown), so a driver with one sample does not win over the
/// compiler it runs, nor a library over the executable that loads it.
fn main_module(profile: &Profile) -> Option<&crate::Module> {
    let mut weight: HashMap<&str, u64> = HashMap::new();
    for (thread, stack, count) in profile.samples() {
        let thread = profile.thread(thread);
        if thread.tid != thread.pid && thread.tid != 0 {
            continue;
        }
        let outer = profile
            .stack_frames(stack)
            .into_iter()
            .find_map(|f| profile.frame(f).module.as_deref());
        if let Some(module) = outer {
            *weight.entry(module).or_default() += count;
        }
    }
    let mut ranked: Vec<(&str, u64)> = weight.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    ranked
        .into_iter()
        .find_map(|(name, _)| profile.module(name))
}

/// The pprof message of a profile.
pub(crate) fn to_proto(profile: &Profile) -> proto::Profile {
    let mut b = Builder::default();
    b.string("");
    let period = profile.meta.period_ns();
    let samples = b.value_type("samples", "count");
    b.out.sample_type.push(samples);
    if let Some(period) = period {
        let cpu = b.value_type(profile.meta.clock.name(), "nanoseconds");
        b.out.sample_type.push(cpu.clone());
        b.out.default_sample_type = cpu.r#type;
        b.out.period_type = Some(cpu);
        b.out.period = period as i64;
    }
    b.out.duration_nanos = profile.meta.duration.as_nanos().min(i64::MAX as u128) as i64;
    let mut comments = vec![profile.meta.command.clone()];
    if !profile.meta.event.is_empty() {
        comments.push(format!("stoke:event={}", profile.meta.event));
    }
    comments.push(format!("stoke:lost={}", profile.meta.lost));
    comments.push(format!("stoke:truncated={}", profile.meta.truncated));
    if let Some(note) = profile.meta.sampled.note() {
        comments.push(format!("{USER_ONLY_COMMENT} ({note})"));
    }
    b.out.comment = comments.iter().map(|c| b.string(c)).collect();
    // pprof takes the first mapping for the main program (`File:` in its
    // reports, the binary it symbolizes against).
    if let Some(main) = main_module(profile) {
        let (path, build_id) = (main.path.clone(), main.build_id.clone());
        b.mapping(&path, build_id.as_deref(), false);
    }

    let mut stacks: HashMap<StackId, Vec<u64>> = HashMap::new();
    let mut labels = HashMap::new();
    for (thread, stack, count) in profile.samples() {
        let location_id = match stacks.get(&stack) {
            Some(ids) => ids.clone(),
            None => {
                let ids = b.stack(profile, stack);
                stacks.insert(stack, ids.clone());
                ids
            }
        };
        let label = match labels.get(&thread) {
            Some(l) => Vec::clone(l),
            None => {
                let t = profile.thread(thread);
                let l = b.labels(t, profile.meta.cgroups.get(&t.pid).filter(|_| t.pid != 0));
                labels.insert(thread, l.clone());
                l
            }
        };
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        let mut value = vec![count];
        if let Some(period) = period {
            value.push(count.saturating_mul(period as i64));
        }
        b.out.sample.push(proto::Sample {
            location_id,
            value,
            label,
        });
    }
    b.out
}
