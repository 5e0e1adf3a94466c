//! Zigzag varints, the integer encoding used inside records (the same as Kafka's and protobuf's
//! `sint32`/`sint64`): a signed value is zigzag-mapped to unsigned, then written 7 bits per byte,
//! least significant group first, with the high bit set on every byte but the last.

use crate::error::DecodeError;

/// Longest encoding of a 32-bit varint.
pub const MAX_VARINT32_LEN: usize = 5;
/// Longest encoding of a 64-bit varint.
pub const MAX_VARINT64_LEN: usize = 10;

#[inline]
fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn unzigzag64(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Number of bytes [`put_varint`] writes for `v`.
#[inline]
pub fn varint_len(v: i32) -> usize {
    varlong_len(i64::from(v))
}

/// Number of bytes [`put_varlong`] writes for `v`.
#[inline]
pub fn varlong_len(v: i64) -> usize {
    let z = zigzag64(v);
    // 1 byte per 7 significant bits, at least one byte.
    let bits = 64 - (z | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends `v` as a zigzag varint.
#[inline]
pub fn put_varint(out: &mut impl bytes::BufMut, v: i32) {
    put_varlong(out, i64::from(v))
}

/// Appends `v` as a zigzag varlong.
#[inline]
pub fn put_varlong(out: &mut impl bytes::BufMut, v: i64) {
    let mut z = zigzag64(v);
    while z >= 0x80 {
        out.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    out.put_u8(z as u8);
}

/// Reads a zigzag varlong from `buf` at `*pos`, advancing `*pos`.
///
/// # Errors
/// [`DecodeError::Truncated`] if the buffer ends mid-varint, [`DecodeError::VarintOverflow`] if
/// it is longer than 10 bytes.
#[inline]
pub fn get_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, DecodeError> {
    let start = *pos;
    let mut result: u64 = 0;
    let mut shift = 0u32;
    loop {
        let Some(&byte) = buf.get(*pos) else {
            return Err(DecodeError::Truncated {
                what: "varint",
                position: start,
                needed: *pos - start + 1,
                available: buf.len().saturating_sub(start),
            });
        };
        *pos += 1;
        if shift == 63 && byte > 1 {
            return Err(DecodeError::VarintOverflow(start));
        }
        result |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(unzigzag64(result));
        }
        shift += 7;
        if shift > 63 {
            return Err(DecodeError::VarintOverflow(start));
        }
    }
}

/// Reads a zigzag varint (32-bit) from `buf` at `*pos`, advancing `*pos`.
///
/// # Errors
/// As [`get_varlong`], plus [`DecodeError::VarintOverflow`] if the value does not fit in `i32`.
#[inline]
pub fn get_varint(buf: &[u8], pos: &mut usize) -> Result<i32, DecodeError> {
    let start = *pos;
    let v = get_varlong(buf, pos)?;
    i32::try_from(v).map_err(|_| DecodeError::VarintOverflow(start))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varlong_round_trips(v in any::<i64>()) {
            let mut out = Vec::new();
            put_varlong(&mut out, v);
            prop_assert_eq!(out.len(), varlong_len(v));
            let mut pos = 0;
            prop_assert_eq!(get_varlong(&out, &mut pos).unwrap(), v);
            prop_assert_eq!(pos, out.len());
        }

        #[test]
        fn varint_round_trips(v in any::<i32>()) {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            prop_assert_eq!(out.len(), varint_len(v));
            let mut pos = 0;
            prop_assert_eq!(get_varint(&out, &mut pos).unwrap(), v);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let mut pos = 0;
            let _ = get_varlong(&bytes, &mut pos);
            let mut pos = 0;
            let _ = get_varint(&bytes, &mut pos);
        }
    }

    #[test]
    fn known_encodings() {
        let cases: &[(i64, &[u8])] = &[(0, &[0]), (-1, &[1]), (1, &[2]), (63, &[126]), (64, &[0x80, 1])];
        for (v, enc) in cases {
            let mut out = Vec::new();
            put_varlong(&mut out, *v);
            assert_eq!(&out[..], *enc, "encoding of {v}");
        }
    }

    #[test]
    fn overlong_is_rejected() {
        let bytes = [0xffu8; 11];
        let mut pos = 0;
        assert_eq!(get_varlong(&bytes, &mut pos), Err(DecodeError::VarintOverflow(0)));
    }
}
