//! Primitive encodings shared by every request and response body.
//!
//! All integers are big-endian. Strings are an `i16` length then UTF-8 bytes (length −1 = null
//! for nullable strings). Byte fields are an `i32` length then the bytes (−1 = null where
//! nullable). Arrays are an `i32` element count then the elements (−1 = null where nullable).
//!
//! [`Reader`] reads from a [`Bytes`] with every access bounds-checked: a short buffer is a
//! [`DecodeError::Truncated`], never a panic, and a peer-supplied element count is checked against
//! the bytes actually present before anything is allocated for it. Byte fields come out as
//! zero-copy slices of the frame.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::DecodeError;

/// A bounds-checked reader over one message body.
#[derive(Debug, Clone)]
pub struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    /// Reads `buf` from its start.
    pub fn new(buf: Bytes) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                what,
                position: self.pos,
                needed: n,
                available: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Reads an `i8`.
    pub fn i8(&mut self, what: &'static str) -> Result<i8, DecodeError> {
        Ok(self.take(1, what)?[0] as i8)
    }

    /// Reads a boolean (one byte, 0 or 1).
    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.i8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Malformed {
                what,
                reason: "boolean is neither 0 nor 1",
            }),
        }
    }

    /// Reads a big-endian `i16`.
    pub fn i16(&mut self, what: &'static str) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.take(2, what)?.try_into().expect("2 bytes")))
    }

    /// Reads a big-endian `i32`.
    pub fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }

    /// Reads a big-endian `i64`.
    pub fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }

    /// Reads a big-endian `u64`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }

    /// Reads a nullable string.
    pub fn nullable_string(&mut self, what: &'static str) -> Result<Option<String>, DecodeError> {
        let len = self.i16(what)?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| DecodeError::Malformed {
            what,
            reason: "negative string length",
        })?;
        let bytes = self.take(len, what)?;
        let s = std::str::from_utf8(bytes).map_err(|_| DecodeError::Malformed {
            what,
            reason: "string is not UTF-8",
        })?;
        Ok(Some(s.to_owned()))
    }

    /// Reads a non-null string.
    pub fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        self.nullable_string(what)?.ok_or(DecodeError::Malformed {
            what,
            reason: "null string",
        })
    }

    /// Reads nullable bytes as a zero-copy slice.
    pub fn nullable_bytes(&mut self, what: &'static str) -> Result<Option<Bytes>, DecodeError> {
        let len = self.i32(what)?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| DecodeError::Malformed {
            what,
            reason: "negative byte length",
        })?;
        self.take(len, what)?;
        Ok(Some(self.buf.slice(self.pos - len..self.pos)))
    }

    /// Reads non-null bytes as a zero-copy slice.
    pub fn bytes(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        self.nullable_bytes(what)?.ok_or(DecodeError::Malformed {
            what,
            reason: "null bytes",
        })
    }

    /// Reads a nullable array's element count. The count is checked against the bytes left,
    /// given the smallest encoding of one element (`min_element_len`, at least 1), so a peer
    /// cannot make us allocate for elements it did not send.
    pub fn nullable_array_len(
        &mut self,
        min_element_len: usize,
        what: &'static str,
    ) -> Result<Option<usize>, DecodeError> {
        let n = self.i32(what)?;
        if n == -1 {
            return Ok(None);
        }
        let n = usize::try_from(n).map_err(|_| DecodeError::Malformed {
            what,
            reason: "negative array length",
        })?;
        if n > self.remaining() / min_element_len.max(1) {
            return Err(DecodeError::Malformed {
                what,
                reason: "array length exceeds the bytes present",
            });
        }
        Ok(Some(n))
    }

    /// Reads a non-null array's element count (see [`Reader::nullable_array_len`]).
    pub fn array_len(&mut self, min_element_len: usize, what: &'static str) -> Result<usize, DecodeError> {
        self.nullable_array_len(min_element_len, what)?
            .ok_or(DecodeError::Malformed {
                what,
                reason: "null array",
            })
    }

    /// Reads a nullable array, decoding each element with `f`.
    pub fn nullable_array<T>(
        &mut self,
        min_element_len: usize,
        what: &'static str,
        mut f: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<Vec<T>>, DecodeError> {
        let Some(n) = self.nullable_array_len(min_element_len, what)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(f(self)?);
        }
        Ok(Some(out))
    }

    /// Reads a non-null array, decoding each element with `f`.
    pub fn array<T>(
        &mut self,
        min_element_len: usize,
        what: &'static str,
        f: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        self.nullable_array(min_element_len, what, f)?
            .ok_or(DecodeError::Malformed {
                what,
                reason: "null array",
            })
    }

    /// The unread rest, as a zero-copy slice; the reader is then empty.
    pub fn rest(&mut self) -> Bytes {
        let rest = self.buf.slice(self.pos..);
        self.pos = self.buf.len();
        rest
    }

    /// Checks the whole body was consumed.
    pub fn finish(self, what: &'static str) -> Result<(), DecodeError> {
        if self.remaining() != 0 {
            return Err(DecodeError::Malformed {
                what,
                reason: "trailing bytes after the body",
            });
        }
        Ok(())
    }
}

/// Writes a nullable string.
///
/// # Panics
/// If the string is longer than `i16::MAX` bytes; callers validate lengths (topic names are
/// limited to 249 bytes, client ids and messages are truncated by [`put_string_lossy`]).
pub fn put_nullable_string(out: &mut BytesMut, s: Option<&str>) {
    match s {
        None => out.put_i16(-1),
        Some(s) => {
            let len = i16::try_from(s.len()).expect("string length checked by the caller");
            out.put_i16(len);
            out.put_slice(s.as_bytes());
        }
    }
}

/// Writes a non-null string. See [`put_nullable_string`] for the length limit.
pub fn put_string(out: &mut BytesMut, s: &str) {
    put_nullable_string(out, Some(s));
}

/// Writes a string, cutting it (at a character boundary) to fit `i16::MAX` bytes. For free
/// text such as error messages.
pub fn put_string_lossy(out: &mut BytesMut, s: &str) {
    let mut end = s.len().min(i16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    put_string(out, &s[..end]);
}

/// As [`put_string_lossy`] for a nullable string: free text such as error messages, which may
/// quote client-supplied names of any length.
pub fn put_nullable_string_lossy(out: &mut BytesMut, s: Option<&str>) {
    match s {
        None => put_nullable_string(out, None),
        Some(s) => put_string_lossy(out, s),
    }
}

/// Writes nullable bytes.
///
/// # Panics
/// If longer than `i32::MAX` bytes (frames are far smaller).
pub fn put_nullable_bytes(out: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        None => out.put_i32(-1),
        Some(b) => {
            out.put_i32(i32::try_from(b.len()).expect("byte field fits a frame"));
            out.put_slice(b);
        }
    }
}

/// Writes non-null bytes.
pub fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    put_nullable_bytes(out, Some(b));
}

/// Writes an array: its length then each element with `f`.
///
/// # Panics
/// If the array has more than `i32::MAX` elements.
pub fn put_array<T>(out: &mut BytesMut, items: &[T], mut f: impl FnMut(&mut BytesMut, &T)) {
    out.put_i32(i32::try_from(items.len()).expect("array fits a frame"));
    for item in items {
        f(out, item);
    }
}

/// Writes a nullable array: −1 for `None`, else as [`put_array`].
///
/// # Panics
/// If the array has more than `i32::MAX` elements.
pub fn put_nullable_array<T>(out: &mut BytesMut, items: Option<&[T]>, f: impl FnMut(&mut BytesMut, &T)) {
    match items {
        None => out.put_i32(-1),
        Some(items) => put_array(out, items, f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_hostile_input_is_an_error() {
        let mut r = Reader::new(Bytes::from_static(&[0, 5, b'a']));
        assert!(matches!(r.string("s"), Err(DecodeError::Truncated { .. })));
        let mut r = Reader::new(Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff]));
        assert!(matches!(r.array_len(1, "a"), Err(DecodeError::Malformed { .. })));
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xfe]));
        assert!(matches!(r.nullable_bytes("b"), Err(DecodeError::Malformed { .. })));
        let mut r = Reader::new(Bytes::from_static(&[0, 2, 0xff, 0xfe]));
        assert!(matches!(r.string("s"), Err(DecodeError::Malformed { .. })));
        let mut r = Reader::new(Bytes::from_static(&[2]));
        assert!(r.bool("b").is_err());
    }

    #[test]
    fn nullable_arrays_tell_null_from_empty() {
        for items in [None, Some(&[][..]), Some(&[1i32, -2][..])] {
            let mut out = BytesMut::new();
            put_nullable_array(&mut out, items, |o, v| o.put_i32(*v));
            let mut r = Reader::new(out.freeze());
            let got = r.nullable_array(4, "a", |r| r.i32("v")).unwrap();
            assert_eq!(got.as_deref(), items);
            r.finish("a").unwrap();
        }
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]));
        assert!(matches!(
            r.array(4, "a", |r| r.i32("v")),
            Err(DecodeError::Malformed { .. })
        ));
    }

    #[test]
    fn lossy_strings_cut_at_char_boundaries() {
        let s = "é".repeat(20_000);
        let mut out = BytesMut::new();
        put_string_lossy(&mut out, &s);
        let got = Reader::new(out.freeze()).string("s").unwrap();
        assert!(got.len() <= i16::MAX as usize && s.starts_with(&got));
    }
}
