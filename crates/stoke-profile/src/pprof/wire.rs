//! The protobuf wire format at the level the reader needs to stay within
//! its limits: walking a message's fields without decoding them, and
//! estimating what decoding would allocate.

use std::mem::size_of;

use prost::encoding::decode_varint;

use super::proto;
use super::read::PprofError;
use crate::input::{bytes_text, ReadLimits};

/// One field's value, undecoded.
pub(super) enum Value<'a> {
    /// A varint (wire type 0).
    Varint,
    /// Length-delimited bytes (wire type 2): a message, string or packed
    /// repeated scalars.
    Bytes(&'a [u8]),
    /// A fixed 32- or 64-bit value.
    Fixed,
}

/// The fields of a message: (field number, value), in order.
pub(super) fn fields(mut buf: &[u8]) -> impl Iterator<Item = Result<(u32, Value<'_>), PprofError>> {
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        Some(next_field(&mut buf).inspect_err(|_| buf = &[]))
    })
}

fn next_field<'a>(buf: &mut &'a [u8]) -> Result<(u32, Value<'a>), PprofError> {
    let key = decode_varint(buf).map_err(PprofError::Decode)?;
    let number = u32::try_from(key >> 3).map_err(|_| PprofError::Wire("invalid field number"))?;
    let value = match key & 7 {
        0 => {
            decode_varint(buf).map_err(PprofError::Decode)?;
            Value::Varint
        }
        1 => skip(buf, 8).map(|_| Value::Fixed)?,
        2 => {
            let len = decode_varint(buf).map_err(PprofError::Decode)?;
            let len = usize::try_from(len).map_err(|_| PprofError::Wire("invalid length"))?;
            Value::Bytes(skip(buf, len)?)
        }
        5 => skip(buf, 4).map(|_| Value::Fixed)?,
        _ => return Err(PprofError::Wire("unsupported wire type")),
    };
    Ok((number, value))
}

fn skip<'a>(buf: &mut &'a [u8], len: usize) -> Result<&'a [u8], PprofError> {
    if buf.len() < len {
        return Err(PprofError::Wire("a field runs past the end"));
    }
    let (head, rest) = buf.split_at(len);
    *buf = rest;
    Ok(head)
}

/// How many values a repeated scalar field contributes: a packed run holds
/// one varint per byte without the high bit, an unpacked entry one.
fn scalars(value: &Value<'_>) -> usize {
    match value {
        Value::Bytes(bytes) => bytes.iter().filter(|&&b| b & 0x80 == 0).count(),
        _ => 1,
    }
}

/// The memory one entry of a `HashMap` keyed by id takes, about.
const MAP_ENTRY: usize = 24;
/// The allocator's overhead of one allocation, about.
const ALLOCATION: usize = 16;

/// Checks that decoding `buf` (a whole `Profile` message) stays within
/// `limits`: what its tables (strings, mappings, locations, functions,
/// sample types, comments) would take in memory, and each sample's depth.
/// Samples themselves are decoded one at a time, so only one counts.
pub(super) fn check_size(buf: &[u8], limits: &ReadLimits) -> Result<(), PprofError> {
    let mut tables = 0usize;
    for field in fields(buf) {
        let (number, value) = field?;
        tables = tables.saturating_add(match (number, &value) {
            (1 | 11, _) => size_of::<proto::ValueType>(),
            (2, Value::Bytes(sample)) => {
                check_sample(sample, limits)?;
                0
            }
            (3, _) => size_of::<proto::Mapping>() + MAP_ENTRY,
            (4, Value::Bytes(location)) => {
                let mut lines = 0usize;
                for field in fields(location) {
                    if field?.0 == 4 {
                        lines += 1;
                    }
                }
                size_of::<proto::Location>()
                    + MAP_ENTRY
                    + ALLOCATION
                    + lines.saturating_mul(size_of::<proto::Line>())
            }
            (5, _) => size_of::<proto::Function>() + MAP_ENTRY,
            (6, Value::Bytes(text)) => size_of::<String>() + ALLOCATION + text.len(),
            (13, value) => scalars(value).saturating_mul(size_of::<i64>()),
            _ => 0,
        });
        if tables > limits.max_pprof_tables {
            return Err(PprofError::TooLarge(format!(
                "its string, function, location and mapping tables would take more than the \
                 limit of {} in memory",
                bytes_text(limits.max_pprof_tables)
            )));
        }
    }
    Ok(())
}

/// Checks one sample: its stack depth and what decoding it would allocate.
fn check_sample(sample: &[u8], limits: &ReadLimits) -> Result<(), PprofError> {
    let (mut locations, mut values, mut labels) = (0usize, 0usize, 0usize);
    for field in fields(sample) {
        let (number, value) = field?;
        match number {
            1 => locations += scalars(&value),
            2 => values += scalars(&value),
            3 => labels += 1,
            _ => {}
        }
    }
    if locations > limits.max_stack_depth {
        return Err(PprofError::TooLarge(format!(
            "a sample of {locations} locations is deeper than the limit of {} frames",
            limits.max_stack_depth
        )));
    }
    if values > limits.max_stack_depth || labels > limits.max_stack_depth {
        return Err(PprofError::TooLarge(format!(
            "a sample has {values} values and {labels} labels, more than the limit of {}",
            limits.max_stack_depth
        )));
    }
    Ok(())
}
