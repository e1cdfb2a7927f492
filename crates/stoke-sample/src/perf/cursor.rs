//! A bounds-checked reader of native-endian fields in a record.

/// Reads fields front to back; every read returns `None` past the end, so a
/// short or garbage record can never cause a panic.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor { bytes, pos: 0 }
    }

    /// The next `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let b = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(b)
    }

    /// Skips `n` bytes.
    pub(crate) fn skip(&mut self, n: usize) -> Option<()> {
        self.bytes(n).map(|_| ())
    }

    /// The next byte.
    pub(crate) fn u8(&mut self) -> Option<u8> {
        Some(self.bytes(1)?[0])
    }

    /// The next native-endian `u16`.
    pub(crate) fn u16(&mut self) -> Option<u16> {
        Some(u16::from_ne_bytes(self.bytes(2)?.try_into().ok()?))
    }

    /// The next native-endian `u32`.
    pub(crate) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_ne_bytes(self.bytes(4)?.try_into().ok()?))
    }

    /// The next native-endian `u64`.
    pub(crate) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_ne_bytes(self.bytes(8)?.try_into().ok()?))
    }

    /// A NUL-terminated string in the rest of the record (lossily decoded;
    /// the rest is padding and the `sample_id` trailer).
    pub(crate) fn c_string(&mut self) -> Option<String> {
        let rest = self.bytes.get(self.pos..)?;
        let len = rest.iter().position(|&b| b == 0)?;
        self.pos += len + 1;
        Some(String::from_utf8_lossy(&rest[..len]).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_are_none() {
        let mut c = Cursor::new(&[1, 0, 0, 0, 2]);
        assert_eq!(c.u32(), Some(1));
        assert_eq!(c.u32(), None);
        assert_eq!(c.u8(), Some(2));
        assert_eq!(c.u8(), None);
        assert_eq!(c.bytes(usize::MAX), None);
        assert_eq!(Cursor::new(b"abc").c_string(), None);
        assert_eq!(Cursor::new(b"ab\0c").c_string().as_deref(), Some("ab"));
    }
}
