//! Line numbers from a code object's line table, in each format CPython used.

/// The format of `co_lnotab` / `co_linetable`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineFormat {
    /// 3.8, 3.9: `co_lnotab`, (byte increment, signed line increment) pairs.
    Lnotab,
    /// 3.10: `co_linetable`, (byte length, signed line delta) pairs, -128
    /// for no line.
    Linetable310,
    /// 3.11 and later: the location table, in code units.
    Locations,
}

impl LineFormat {
    /// The format of a minor version of CPython 3.
    pub fn for_minor(minor: u8) -> LineFormat {
        match minor {
            0..=9 => LineFormat::Lnotab,
            10 => LineFormat::Linetable310,
            _ => LineFormat::Locations,
        }
    }
}

/// The line of the instruction at byte offset `offset` of a code object
/// whose first line is `first`, or `None` where the table names none.
pub fn line_of(format: LineFormat, table: &[u8], first: u32, offset: u64) -> Option<u32> {
    match format {
        LineFormat::Lnotab => lnotab(table, first, offset),
        LineFormat::Linetable310 => linetable310(table, first, offset),
        LineFormat::Locations => locations(table, first, offset / 2),
    }
}

fn lnotab(table: &[u8], first: u32, offset: u64) -> Option<u32> {
    let mut line = i64::from(first);
    let mut addr = 0u64;
    for pair in table.chunks_exact(2) {
        addr += u64::from(pair[0]);
        if addr > offset {
            break;
        }
        line += i64::from(pair[1] as i8);
    }
    u32::try_from(line).ok()
}

fn linetable310(table: &[u8], first: u32, offset: u64) -> Option<u32> {
    let mut line = i64::from(first);
    let mut start = 0u64;
    for pair in table.chunks_exact(2) {
        let end = start + u64::from(pair[0]);
        let delta = pair[1] as i8;
        let current = if delta == -128 {
            None
        } else {
            line += i64::from(delta);
            Some(line)
        };
        if start <= offset && offset < end {
            return current.and_then(|l| u32::try_from(l).ok());
        }
        start = end;
    }
    None
}

fn locations(table: &[u8], first: u32, unit: u64) -> Option<u32> {
    let mut line = i64::from(first);
    let mut start = 0u64;
    let mut i = 0;
    while i < table.len() {
        let b = table[i];
        i += 1;
        if b & 0x80 == 0 {
            return None;
        }
        let code = (b >> 3) & 15;
        let end = start + u64::from(b & 7) + 1;
        let current = match code {
            15 => None,
            14 => {
                line += svarint(table, &mut i)?;
                varint(table, &mut i)?;
                varint(table, &mut i)?;
                varint(table, &mut i)?;
                Some(line)
            }
            13 => {
                line += svarint(table, &mut i)?;
                Some(line)
            }
            10..=12 => {
                line += i64::from(code - 10);
                i += 2;
                Some(line)
            }
            _ => {
                i += 1;
                Some(line)
            }
        };
        if start <= unit && unit < end {
            return current.and_then(|l| u32::try_from(l).ok());
        }
        start = end;
    }
    None
}

fn varint(table: &[u8], i: &mut usize) -> Option<i64> {
    let mut value = 0i64;
    let mut shift = 0;
    loop {
        let b = *table.get(*i)?;
        *i += 1;
        value |= i64::from(b & 63) << shift;
        shift += 6;
        if b & 64 == 0 || shift > 60 {
            return Some(value);
        }
    }
}

fn svarint(table: &[u8], i: &mut usize) -> Option<i64> {
    let v = varint(table, i)?;
    Some(if v & 1 != 0 { -(v >> 1) } else { v >> 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lnotab_adds_increments_up_to_the_offset() {
        // offsets 0..6 line 10, 6..20 line 11, 20.. line 13.
        let t = [6, 1, 14, 2];
        assert_eq!(line_of(LineFormat::Lnotab, &t, 10, 0), Some(10));
        assert_eq!(line_of(LineFormat::Lnotab, &t, 10, 8), Some(11));
        assert_eq!(line_of(LineFormat::Lnotab, &t, 10, 30), Some(13));
    }

    #[test]
    fn linetable_310_has_ranges_and_no_line() {
        let t = [4, 0, 6, 1, 2, 0x80, 8, 2];
        assert_eq!(line_of(LineFormat::Linetable310, &t, 5, 2), Some(5));
        assert_eq!(line_of(LineFormat::Linetable310, &t, 5, 4), Some(6));
        assert_eq!(line_of(LineFormat::Linetable310, &t, 5, 10), None);
        assert_eq!(line_of(LineFormat::Linetable310, &t, 5, 12), Some(8));
        assert_eq!(line_of(LineFormat::Linetable310, &t, 5, 99), None);
    }

    #[test]
    fn location_table_forms() {
        let t = [
            0x80 | (13 << 3) | 1, // no column, 2 units, line +1 (svarint 2)
            2,
            0x80 | (11 << 3), // one-line form, line +1, 1 unit
            4,
            9,
            0x80 | (15 << 3),     // no location, 1 unit
            0x80 | (14 << 3) | 2, // long form, 3 units, line -2 (svarint 5)
            5,
            0,
            1,
            1,
            0x80 | (3 << 3), // short form, same line
            0x44,
        ];
        let f = LineFormat::Locations;
        assert_eq!(line_of(f, &t, 20, 0), Some(21));
        assert_eq!(line_of(f, &t, 20, 2), Some(21));
        assert_eq!(line_of(f, &t, 20, 4), Some(22));
        assert_eq!(line_of(f, &t, 20, 6), None);
        assert_eq!(line_of(f, &t, 20, 8), Some(20));
        assert_eq!(line_of(f, &t, 20, 14), Some(20));
        assert_eq!(line_of(f, &t, 20, 16), None);
    }
}
