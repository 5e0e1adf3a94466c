//! The benchmark payload: every value starts with a 32-byte header (little-endian fields).
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | intended send time, ns since the process's clock base |
//! | 8..16 | run id (random per run, so runs sharing a topic are told apart) |
//! | 16..20 | producer id |
//! | 20..28 | the producer's sequence number |
//! | 28..32 | CRC-32 (crc32fast) of bytes 0..28 and 32.. |
//!
//! The rest is filler. Producers and consumers run in one process, so the monotonic clock is
//! shared and the intended time can be compared with the receipt time directly.

/// Bytes of header at the start of every payload; smaller `--message-size` values are raised to it.
pub const HEADER_LEN: usize = 32;

/// A parsed payload header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub intended_ns: u64,
    pub run: u64,
    pub producer: u32,
    pub seq: u64,
}

fn crc(buf: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&buf[..28]);
    h.update(&buf[HEADER_LEN..]);
    h.finalize()
}

/// Writes the header into `buf` (at least [`HEADER_LEN`] bytes), whose filler is already set.
pub fn write(buf: &mut [u8], header: Header) {
    buf[0..8].copy_from_slice(&header.intended_ns.to_le_bytes());
    buf[8..16].copy_from_slice(&header.run.to_le_bytes());
    buf[16..20].copy_from_slice(&header.producer.to_le_bytes());
    buf[20..28].copy_from_slice(&header.seq.to_le_bytes());
    let c = crc(buf);
    buf[28..32].copy_from_slice(&c.to_le_bytes());
}

/// Reads the header without checking the payload's checksum; `None` if it is too short.
pub fn read_unchecked(buf: &[u8]) -> Option<Header> {
    let b = buf.get(..HEADER_LEN)?;
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
    Some(Header {
        intended_ns: u64_at(0),
        run: u64_at(8),
        producer: u32::from_le_bytes(b[16..20].try_into().unwrap_or_default()),
        seq: u64_at(20),
    })
}

/// Reads the header; `None` if the payload is too short or its checksum is wrong.
pub fn read(buf: &[u8]) -> Option<Header> {
    if buf.len() < HEADER_LEN {
        return None;
    }
    let u64_at = |i: usize| u64::from_le_bytes(buf[i..i + 8].try_into().unwrap_or_default());
    let stored = u32::from_le_bytes(buf[28..32].try_into().unwrap_or_default());
    if stored != crc(buf) {
        return None;
    }
    Some(Header {
        intended_ns: u64_at(0),
        run: u64_at(8),
        producer: u32::from_le_bytes(buf[16..20].try_into().unwrap_or_default()),
        seq: u64_at(20),
    })
}

/// SplitMix64: a tiny, fast pseudo-random generator for keys and filler.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Filler of `len` bytes: lowercase letters from a 16-letter alphabet (about 2:1 compressible).
pub fn filler(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix(seed);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let mut r = rng.next_u64();
        for _ in 0..16 {
            if out.len() == len {
                break;
            }
            out.push(b'a' + (r & 15) as u8);
            r >>= 4;
        }
    }
    out
}

/// A key of exactly `len` bytes naming `n` (hex digits, zero-padded or truncated on the left).
pub fn key(len: usize, n: u64) -> Vec<u8> {
    let s = format!("{n:016x}");
    if len >= s.len() {
        let mut k = vec![b'0'; len - s.len()];
        k.extend_from_slice(s.as_bytes());
        k
    } else {
        s.as_bytes()[s.len() - len..].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let mut buf = filler(100, 7);
        let h = Header {
            intended_ns: 123,
            run: 5,
            producer: 4,
            seq: 99,
        };
        write(&mut buf, h);
        assert_eq!(read(&buf), Some(h));
        for i in [0, 10, 17, 22, 29, 50, 99] {
            let mut bad = buf.clone();
            bad[i] ^= 1;
            assert_eq!(read(&bad), None, "flip at {i}");
        }
        assert_eq!(read(&buf[..10]), None);
        assert_eq!(read_unchecked(&buf), Some(h));
        let mut filler_flipped = buf.clone();
        filler_flipped[50] ^= 1;
        assert_eq!(read_unchecked(&filler_flipped), Some(h), "the filler is not checked");
        assert_eq!(read_unchecked(&buf[..10]), None);
    }

    #[test]
    fn keys_have_the_requested_length() {
        assert_eq!(key(4, 0x1234_5678), b"5678");
        assert_eq!(key(18, 1), b"000000000000000001");
    }
}
