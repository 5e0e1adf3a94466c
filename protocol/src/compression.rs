//! Whole-batch compression.
//!
//! The producer picks a codec; the records section of the batch (everything after the header) is
//! compressed as one unit and the codec is recorded in the batch attributes. The broker stores and
//! serves compressed batches as they are — it never decompresses them — so only producers and
//! consumers pay for compression.
//!
//! Codec numbers follow Kafka's so the attributes field reads the same: `0` none, `1` gzip,
//! `2` snappy, `3` lz4 (LZ4 frame format), `4` zstd (zstd frame format). Strata supports none,
//! lz4 and zstd; gzip and snappy are recognised and rejected as unsupported.

use std::io::{Read, Write};

use crate::error::{BuildError, DecodeError};

/// The compression codec of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Compression {
    /// Records are stored as they are.
    #[default]
    None = 0,
    /// LZ4 frame format: fast, modest ratio.
    Lz4 = 3,
    /// Zstandard frame format: better ratio, more CPU.
    Zstd = 4,
}

/// zstd level used by producers: level 1 favours speed, as Kafka's default does.
const ZSTD_LEVEL: i32 = 1;

impl Compression {
    /// Parses the codec number from batch attributes.
    ///
    /// # Errors
    /// [`DecodeError::UnsupportedCodec`] for gzip, snappy and unknown numbers.
    pub fn from_id(id: u8) -> Result<Self, DecodeError> {
        match id {
            0 => Ok(Self::None),
            3 => Ok(Self::Lz4),
            4 => Ok(Self::Zstd),
            other => Err(DecodeError::UnsupportedCodec(other)),
        }
    }

    /// The codec number stored in batch attributes.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// A short lowercase name (`none`, `lz4`, `zstd`), as used in configs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }

    /// Parses a name as produced by [`Compression::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "none" => Some(Self::None),
            "lz4" => Some(Self::Lz4),
            "zstd" => Some(Self::Zstd),
            _ => None,
        }
    }

    /// Compresses `input`, appending to `out`.
    ///
    /// # Errors
    /// [`BuildError::Compression`] if the codec fails.
    pub fn compress_into(self, input: &[u8], out: &mut Vec<u8>) -> Result<(), BuildError> {
        let err = |e: std::io::Error| BuildError::Compression {
            codec: self.name(),
            reason: e.to_string(),
        };
        match self {
            Self::None => {
                out.extend_from_slice(input);
                Ok(())
            }
            Self::Lz4 => {
                // 64 KiB independent blocks, as the reference lz4 tool and Kafka write. Left on
                // `Auto`, lz4_flex picks 4 MiB blocks for a large batch, and every decoder —
                // ours included — then allocates 4–8 MiB of block buffers per batch, which costs
                // far more than the decompression itself. LZ4 matches reach back only 64 KiB, so
                // bigger blocks barely help the ratio.
                let info = lz4_flex::frame::FrameInfo::new()
                    .block_size(lz4_flex::frame::BlockSize::Max64KB)
                    .block_mode(lz4_flex::frame::BlockMode::Independent);
                let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, out);
                enc.write_all(input).map_err(err)?;
                enc.finish().map_err(|e| BuildError::Compression {
                    codec: self.name(),
                    reason: e.to_string(),
                })?;
                Ok(())
            }
            Self::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL).map_err(err)?;
                // Declaring the size lets zstd shrink the frame's window to fit the input, which
                // keeps consumers' decoder memory small.
                enc.set_pledged_src_size(Some(input.len() as u64)).map_err(err)?;
                enc.include_contentsize(true).map_err(err)?;
                enc.write_all(input).map_err(err)?;
                enc.finish().map_err(err)?;
                Ok(())
            }
        }
    }

    /// Decompresses `input` into `out`, refusing to produce more than `max_bytes`.
    ///
    /// # Errors
    /// [`DecodeError::Decompression`] for corrupt input and [`DecodeError::DecompressedTooLarge`]
    /// when the output would exceed `max_bytes` (a decompression bomb is stopped at the limit,
    /// not after allocating it all).
    pub fn decompress_into(self, input: &[u8], out: &mut Vec<u8>, max_bytes: usize) -> Result<(), DecodeError> {
        let err = |e: std::io::Error| DecodeError::Decompression {
            codec: self.name(),
            reason: e.to_string(),
        };
        let limit = u64::try_from(max_bytes).unwrap_or(u64::MAX).saturating_add(1);
        let start = out.len();
        match self {
            Self::None => {
                if input.len() > max_bytes {
                    return Err(DecodeError::DecompressedTooLarge { max: max_bytes });
                }
                out.extend_from_slice(input);
            }
            Self::Lz4 => {
                lz4_flex::frame::FrameDecoder::new(input)
                    .take(limit)
                    .read_to_end(out)
                    .map_err(err)?;
            }
            Self::Zstd => {
                let mut dec = zstd::stream::read::Decoder::with_buffer(input).map_err(err)?;
                // A frame may ask for a window (decoder memory) far larger than its output; cap
                // it at what the output limit could ever need so a crafted frame cannot make us
                // allocate more. The floor (4 MiB) admits the windows other producers' encoders
                // commonly declare; zstd accepts window logs up to 31.
                let window_log = usize::BITS - max_bytes.next_power_of_two().leading_zeros() - 1;
                dec.window_log_max(window_log.clamp(22, 31)).map_err(err)?;
                dec.take(limit).read_to_end(out).map_err(err)?;
            }
        }
        if out.len() - start > max_bytes {
            out.truncate(start);
            return Err(DecodeError::DecompressedTooLarge { max: max_bytes });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_round_trip() {
        let input: Vec<u8> = (0..10_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let mut compressed = Vec::new();
            codec.compress_into(&input, &mut compressed).unwrap();
            let mut out = Vec::new();
            codec.decompress_into(&compressed, &mut out, input.len()).unwrap();
            assert_eq!(out, input, "{codec:?}");
        }
    }

    #[test]
    fn decompression_stops_at_limit() {
        let input = vec![0u8; 1 << 20];
        for codec in [Compression::Lz4, Compression::Zstd] {
            let mut compressed = Vec::new();
            codec.compress_into(&input, &mut compressed).unwrap();
            let mut out = Vec::new();
            let e = codec.decompress_into(&compressed, &mut out, 1000).unwrap_err();
            assert_eq!(e, DecodeError::DecompressedTooLarge { max: 1000 });
            assert!(out.is_empty());
        }
    }

    #[test]
    fn zstd_frames_declaring_huge_windows_are_refused() {
        // A frame produced with a 1 GiB window (long-distance mode) must not make a consumer
        // with a 1 MiB limit allocate that window.
        let input = vec![7u8; 1 << 16];
        let mut enc = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
        enc.window_log(30).unwrap();
        enc.long_distance_matching(true).unwrap();
        enc.write_all(&input).unwrap();
        let compressed = enc.finish().unwrap();
        let mut out = Vec::new();
        let e = Compression::Zstd
            .decompress_into(&compressed, &mut out, 1 << 20)
            .unwrap_err();
        assert!(matches!(e, DecodeError::Decompression { .. }), "{e:?}");
    }

    #[test]
    fn garbage_is_an_error() {
        for codec in [Compression::Lz4, Compression::Zstd] {
            let mut out = Vec::new();
            assert!(
                codec
                    .decompress_into(b"definitely not compressed", &mut out, 1 << 20)
                    .is_err()
            );
        }
    }

    #[test]
    fn ids_are_pinned() {
        assert_eq!(Compression::None.id(), 0);
        assert_eq!(Compression::Lz4.id(), 3);
        assert_eq!(Compression::Zstd.id(), 4);
        assert_eq!(Compression::from_id(1), Err(DecodeError::UnsupportedCodec(1)));
        assert_eq!(Compression::from_id(2), Err(DecodeError::UnsupportedCodec(2)));
        assert_eq!(Compression::from_id(7), Err(DecodeError::UnsupportedCodec(7)));
    }
}
