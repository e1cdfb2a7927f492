//! The pprof reader.

use std::collections::HashMap;
use std::io::Read;
use std::time::Duration;

use flate2::read::GzDecoder;
use prost::Message;

use super::proto;
use super::wire::{check_size, fields, Value};
use super::{JIT_MAPPING, KERNEL_MAPPING};
use crate::input::{bytes_text, ReadLimits};
use crate::{Clock, Frame, FrameId, FrameKind, Metadata, Module, Profile, Thread};

/// A pprof profile that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PprofError {
    /// The gzip stream is cut short or damaged.
    #[error("truncated or corrupt gzip data: {0}")]
    Gzip(#[source] std::io::Error),
    /// The bytes are not a pprof protobuf.
    #[error("not a pprof profile (truncated or corrupt protobuf): {0}")]
    Decode(#[source] prost::DecodeError),
    /// The protobuf decodes but refers to things it does not have.
    #[error("invalid pprof profile: {0}")]
    Invalid(String),
    /// The bytes are not a protobuf: a field is cut short or of no known
    /// wire type.
    #[error("not a pprof profile (truncated or corrupt protobuf): {0}")]
    Wire(&'static str),
    /// Reading it would pass a limit of [`ReadLimits`].
    #[error("pprof profile too large: {0}")]
    TooLarge(String),
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Whether `bytes` start like a gzip stream.
pub(crate) fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// Gunzips `input` when it is gzipped, up to `limits.max_decompressed_bytes`.
fn gunzip<'a>(
    bytes: &'a [u8],
    limits: &ReadLimits,
    raw: &'a mut Vec<u8>,
) -> Result<&'a [u8], PprofError> {
    if !is_gzip(bytes) {
        return Ok(bytes);
    }
    *raw = gunzip_stream(bytes, limits)?;
    Ok(&raw[..])
}

/// Gunzips a stream, up to `limits.max_decompressed_bytes`.
pub(crate) fn gunzip_stream(input: impl Read, limits: &ReadLimits) -> Result<Vec<u8>, PprofError> {
    let max = limits.max_decompressed_bytes;
    let mut out = Vec::new();
    GzDecoder::new(input)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(PprofError::Gzip)?;
    if out.len() > max {
        return Err(PprofError::TooLarge(format!(
            "it unpacks to more than the limit of {}",
            bytes_text(max)
        )));
    }
    Ok(out)
}

/// Decodes a pprof protobuf into its raw message, gunzipping it first when
/// it is gzipped, within the default [`ReadLimits`].
///
/// # Errors
/// As [`read_pprof`], for the gzip and protobuf layers.
pub fn decode(bytes: &[u8]) -> Result<proto::Profile, PprofError> {
    let limits = ReadLimits::default();
    let mut raw = Vec::new();
    let bytes = gunzip(bytes, &limits, &mut raw)?;
    check_size(bytes, &limits)?;
    proto::Profile::decode(bytes).map_err(PprofError::Decode)
}

/// Reads a pprof profile (gzipped or not) into a [`Profile`], within the
/// default [`ReadLimits`]; see [`read_pprof_with`].
///
/// # Errors
/// As [`read_pprof_with`].
pub fn read_pprof(bytes: &[u8]) -> Result<Profile, PprofError> {
    read_pprof_with(bytes, &ReadLimits::default())
}

/// Reads a pprof profile (gzipped or not) into a [`Profile`].
///
/// Counts come from the `samples` sample type when there is one; otherwise
/// from the first sample type, divided by the period when both are in
/// nanoseconds (so a `cpu`-only profile gives sample counts). Threads come
/// from the `process`, `thread`, `pid` and `tid` labels stoke writes
/// (samples without them go to one unnamed thread); mappings become modules;
/// a location's lines become a function and the functions inlined into it.
/// The frequency is 1e9 / period for a period in nanoseconds.
///
/// Memory stays bounded on hostile input: the gzip layer unpacks at most
/// [`ReadLimits::max_decompressed_bytes`]; the tables are decoded only when
/// their estimated size is within [`ReadLimits::max_pprof_tables`]; samples
/// are decoded one at a time, each at most [`ReadLimits::max_stack_depth`]
/// deep; the profile built must stay within the frame and stack limits.
///
/// # Errors
/// [`PprofError::Gzip`] for a truncated or damaged gzip stream,
/// [`PprofError::Decode`] for bytes that are not a protobuf of this shape,
/// [`PprofError::Invalid`] for an index or id that points nowhere,
/// [`PprofError::TooLarge`] past a limit.
pub fn read_pprof_with(bytes: &[u8], limits: &ReadLimits) -> Result<Profile, PprofError> {
    let mut raw = Vec::new();
    let bytes = gunzip(bytes, limits, &mut raw)?;
    read_message(bytes, limits)
}

/// Reads an unpacked `Profile` message.
pub(crate) fn read_message(bytes: &[u8], limits: &ReadLimits) -> Result<Profile, PprofError> {
    check_size(bytes, limits)?;
    let tables = proto::Tables::decode(bytes).map_err(PprofError::Decode)?;
    Reader::new(&tables)?.profile(bytes, limits)
}

struct Reader<'a> {
    message: &'a proto::Tables,
    mappings: HashMap<u64, &'a proto::Mapping>,
    functions: HashMap<u64, &'a proto::Function>,
    locations: HashMap<u64, &'a proto::Location>,
}

impl<'a> Reader<'a> {
    fn new(message: &'a proto::Tables) -> Result<Reader<'a>, PprofError> {
        Ok(Reader {
            message,
            mappings: message.mapping.iter().map(|m| (m.id, m)).collect(),
            functions: message.function.iter().map(|f| (f.id, f)).collect(),
            locations: message.location.iter().map(|l| (l.id, l)).collect(),
        })
    }

    fn string(&self, index: i64) -> Result<&'a str, PprofError> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.message.string_table.get(i))
            .map(String::as_str)
            .ok_or_else(|| PprofError::Invalid(format!("string index {index} out of range")))
    }

    /// Which value to count and by what to divide it.
    fn value_index(&self) -> Result<(usize, i64), PprofError> {
        let types = &self.message.sample_type;
        for (i, t) in types.iter().enumerate() {
            if self.string(t.r#type)? == "samples" {
                return Ok((i, 1));
            }
        }
        if types.is_empty() {
            return Err(PprofError::Invalid("no sample types".into()));
        }
        let unit = self.string(types[0].unit)?;
        let period_unit = match &self.message.period_type {
            Some(p) => self.string(p.unit)?,
            None => "",
        };
        let divisor = if unit == "nanoseconds" && period_unit == unit && self.message.period > 0 {
            self.message.period
        } else {
            1
        };
        Ok((0, divisor))
    }

    fn metadata(&self) -> Result<Metadata, PprofError> {
        let mut meta = Metadata::default();
        for (i, &c) in self.message.comment.iter().enumerate() {
            let text = self.string(c)?;
            if let Some(event) = text.strip_prefix("stoke:event=") {
                meta.event = event.to_owned();
            } else if let Some(lost) = text.strip_prefix("stoke:lost=") {
                meta.lost = lost.parse().unwrap_or(0);
            } else if let Some(n) = text.strip_prefix("stoke:truncated=") {
                meta.truncated = n.parse().unwrap_or(0);
            } else if text.starts_with(super::write::USER_ONLY_COMMENT) {
                meta.sampled = crate::SampledTime::UserOnly;
            } else if i == 0 {
                meta.command = text.to_owned();
            }
        }
        if let Some(p) = &self.message.period_type {
            if let Some(clock) = Clock::from_name(self.string(p.r#type)?) {
                meta.clock = clock;
            }
            if self.string(p.unit)? == "nanoseconds" && self.message.period > 0 {
                let hz = (1e9 / self.message.period as f64).round();
                meta.frequency = hz.min(f64::from(u32::MAX)) as u32;
            }
        }
        meta.duration = Duration::from_nanos(self.message.duration_nanos.max(0) as u64);
        Ok(meta)
    }

    fn thread(&self, labels: &[proto::Label]) -> Result<Thread, PprofError> {
        let mut thread = Thread {
            pid: 0,
            tid: 0,
            process_name: None,
            thread_name: None,
        };
        for label in labels {
            match self.string(label.key)? {
                "process" => thread.process_name = Some(self.string(label.str)?.to_owned()),
                "thread" => thread.thread_name = Some(self.string(label.str)?.to_owned()),
                "pid" => thread.pid = u32::try_from(label.num).unwrap_or(0),
                "tid" => thread.tid = u32::try_from(label.num).unwrap_or(0),
                _ => {}
            }
        }
        Ok(thread)
    }

    /// The `cgroup` label of a sample, if it has one.
    fn cgroup(&self, labels: &[proto::Label]) -> Result<Option<String>, PprofError> {
        for label in labels {
            if self.string(label.key)? == "cgroup" {
                return Ok(Some(self.string(label.str)?.to_owned()));
            }
        }
        Ok(None)
    }

    /// The frames of a location, outermost first.
    fn location_frames(
        &self,
        profile: &mut Profile,
        id: u64,
        out: &mut Vec<FrameId>,
    ) -> Result<(), PprofError> {
        let location = self.locations.get(&id).ok_or_else(|| {
            PprofError::Invalid(format!("sample refers to missing location {id}"))
        })?;
        let mapping = match location.mapping_id {
            0 => None,
            m => Some(self.mappings.get(&m).ok_or_else(|| {
                PprofError::Invalid(format!("location {id} refers to missing mapping {m}"))
            })?),
        };
        let mut kind = FrameKind::User;
        let mut module = None;
        if let Some(m) = mapping {
            let path = self.string(m.filename)?;
            match path {
                KERNEL_MAPPING => kind = FrameKind::Kernel,
                JIT_MAPPING => kind = FrameKind::Jit,
                "" => {}
                path => {
                    let name = path.rsplit('/').next().unwrap_or(path).to_owned();
                    let build_id = self.string(m.build_id)?;
                    profile.add_module(Module {
                        name: name.clone(),
                        path: path.to_owned(),
                        build_id: (!build_id.is_empty()).then(|| build_id.to_owned()),
                    });
                    module = Some(name);
                }
            }
        }
        if location.line.is_empty() {
            let name = match &module {
                Some(m) => format!("{m}+{:#x}", location.address),
                None => "[unknown]".to_owned(),
            };
            let mut frame = Frame::new(name, kind);
            frame.module = module;
            out.push(profile.intern_frame(frame));
            return Ok(());
        }
        for (i, line) in location.line.iter().rev().enumerate() {
            let function = self.functions.get(&line.function_id).ok_or_else(|| {
                PprofError::Invalid(format!(
                    "location {id} refers to missing function {}",
                    line.function_id
                ))
            })?;
            let name = self.string(function.name)?;
            let file = self.string(function.filename)?;
            let frame_kind = match kind {
                FrameKind::User if i > 0 => FrameKind::Inline,
                FrameKind::User if mapping.is_none() && name.starts_with('[') => FrameKind::Marker,
                k => k,
            };
            out.push(
                profile.intern_frame(Frame {
                    name: name.to_owned(),
                    kind: frame_kind,
                    module: module.clone(),
                    location: (!file.is_empty() && line.line > 0)
                        .then(|| (file.to_owned(), u32::try_from(line.line).unwrap_or(0))),
                }),
            );
        }
        Ok(())
    }

    fn profile(&self, bytes: &[u8], limits: &ReadLimits) -> Result<Profile, PprofError> {
        let mut profile = Profile::new(self.metadata()?);
        let (value, divisor) = self.value_index()?;
        let mut frames = Vec::new();
        let mut locations: HashMap<u64, Vec<FrameId>> = HashMap::new();
        let mut total: u64 = 0;
        for field in fields(bytes) {
            let (number, field) = field?;
            let (2, Value::Bytes(encoded)) = (number, field) else {
                continue;
            };
            let sample = proto::Sample::decode(encoded).map_err(PprofError::Decode)?;
            let raw = *sample.value.get(value).ok_or_else(|| {
                PprofError::Invalid(format!(
                    "a sample has {} values for {} sample types",
                    sample.value.len(),
                    self.message.sample_type.len()
                ))
            })?;
            let divisor = divisor as u64;
            let count = (raw.max(0) as u64).saturating_add(divisor / 2) / divisor;
            if count == 0 {
                continue;
            }
            total = total.checked_add(count).ok_or_else(|| {
                PprofError::Invalid(format!(
                    "the sample counts add up to more than {}",
                    u64::MAX
                ))
            })?;
            // Frames of each location are found once; stacks are interned
            // afresh for each sample (a cache keyed by location lists could
            // take far more memory than the profile).
            let mut stack = None;
            for &id in sample.location_id.iter().rev() {
                if let std::collections::hash_map::Entry::Vacant(entry) = locations.entry(id) {
                    frames.clear();
                    self.location_frames(&mut profile, id, &mut frames)?;
                    entry.insert(frames.clone());
                }
                for &frame in &locations[&id] {
                    stack = Some(profile.extend_stack(stack, frame));
                }
            }
            limits
                .check_profile(&profile)
                .map_err(PprofError::TooLarge)?;
            let Some(stack) = stack else { continue };
            let thread = self.thread(&sample.label)?;
            if let Some(cgroup) = self.cgroup(&sample.label)? {
                profile.meta.cgroups.insert(thread.pid, cgroup);
            }
            let thread = profile.intern_thread(thread);
            profile.add_sample(thread, stack, count);
        }
        Ok(profile)
    }
}
