//! Integration tests of the record-batch format: round trips through [`BatchBuilder`] and
//! [`RecordBatch::validate`], robustness against arbitrary and corrupted bytes, the typed error
//! for each validation rule, the broker-owned header fields and their prefix CRC
//! ([`RecordBatch::verify_stored`]), and golden bytes pinning the layout.

use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use proptest::sample::Index;
use strata_protocol::batch::{
    BROKER_FIELDS_LEN, CONTROL_TYPE_LEN, LENGTH_PREFIX_LEN, compute_crc, compute_prefix_crc, field, peek_total_len,
};
use strata_protocol::varint::{put_varint, put_varlong};
use strata_protocol::{
    Attributes, BatchBuilder, BatchHeader, BatchIter, BatchLimits, BatchOptions, BuildError, Compression, ControlType,
    DecodeError, FORMAT_VERSION, HEADER_LEN, HeaderRef, Offset, RaftIndex, RaftTerm, RecordBatch, TimestampType,
    control_batch,
};

const CODECS: [Compression; 3] = [Compression::None, Compression::Lz4, Compression::Zstd];

// ---------------------------------------------------------------------------------------------
// Model and helpers
// ---------------------------------------------------------------------------------------------

/// A record as the test generates it: owned, so the decoded records can be compared to it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

fn rec(timestamp: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> Rec {
    Rec {
        timestamp,
        key: key.map(<[u8]>::to_vec),
        value: value.map(<[u8]>::to_vec),
        headers: Vec::new(),
    }
}

fn opts(compression: Compression) -> BatchOptions {
    BatchOptions {
        compression,
        ..Default::default()
    }
}

fn append_all(builder: &mut BatchBuilder, recs: &[Rec]) {
    for r in recs {
        let headers: Vec<HeaderRef<'_>> = r
            .headers
            .iter()
            .map(|(k, v)| HeaderRef {
                key: k,
                value: v.as_deref(),
            })
            .collect();
        builder
            .append(r.timestamp, r.key.as_deref(), r.value.as_deref(), &headers)
            .expect("test records are small");
    }
}

fn encode(recs: &[Rec], options: BatchOptions) -> Bytes {
    let mut builder = BatchBuilder::new(options);
    append_all(&mut builder, recs);
    builder.finish().expect("at least one record")
}

fn validate(bytes: &[u8]) -> Result<RecordBatch, DecodeError> {
    RecordBatch::validate(Bytes::copy_from_slice(bytes), &BatchLimits::default())
}

fn verify_stored(bytes: &[u8]) -> Result<RecordBatch, DecodeError> {
    RecordBatch::verify_stored(Bytes::copy_from_slice(bytes), &BatchLimits::default())
}

/// Writes the broker-owned prefix (with its prefix CRC) over the start of `batch`, as the
/// broker does on append.
fn place(batch: &mut [u8], base_offset: u64, term: u64, index: u64) {
    let h = BatchHeader::parse(batch).unwrap();
    let prefix = BatchHeader::broker_fields(h.batch_length, Offset(base_offset), RaftTerm(term), RaftIndex(index));
    batch[..BROKER_FIELDS_LEN].copy_from_slice(&prefix);
}

/// Recomputes and stores the CRC, as a (buggy or malicious) producer that corrupted its own batch
/// before sealing it would.
fn reseal(buf: &mut [u8]) {
    let crc = compute_crc(buf);
    buf[field::CRC..field::CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

fn put_u16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
}
fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

/// Replaces the records section of `batch` (fixing `batch_length` and the CRC), keeping the rest
/// of the header.
fn with_section(batch: &[u8], section: &[u8]) -> Vec<u8> {
    let mut out = batch[..HEADER_LEN].to_vec();
    out.extend_from_slice(section);
    let len = u32::try_from(out.len() - LENGTH_PREFIX_LEN).unwrap();
    put_u32(&mut out, field::BATCH_LENGTH, len);
    reseal(&mut out);
    out
}

/// Encodes one raw record body field by field, so tests can write records the builder never
/// would. Returns the record with its length prefix.
fn raw_record(length: Option<i32>, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, length.unwrap_or(i32::try_from(body.len()).unwrap()));
    out.extend_from_slice(body);
    out
}

/// The body (after the length prefix) of a record with the given fields.
fn record_body(
    ts_delta: i64,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    header_count: i32,
    headers: &[u8],
) -> Vec<u8> {
    let mut b = Vec::new();
    b.push(0u8);
    put_varlong(&mut b, ts_delta);
    put_varint(&mut b, offset_delta);
    for f in [key, value] {
        match f {
            None => put_varint(&mut b, -1),
            Some(f) => {
                put_varint(&mut b, i32::try_from(f.len()).unwrap());
                b.extend_from_slice(f);
            }
        }
    }
    put_varint(&mut b, header_count);
    b.extend_from_slice(headers);
    b
}

/// Checks a validated batch decodes to exactly `recs`.
fn assert_decodes_to(batch: &RecordBatch, recs: &[Rec]) -> Result<(), TestCaseError> {
    let h = batch.header();
    let n = u32::try_from(recs.len()).unwrap();
    prop_assert_eq!(h.record_count, n);
    prop_assert_eq!(h.last_offset_delta, n - 1);
    prop_assert_eq!(h.first_timestamp, recs[0].timestamp);
    prop_assert_eq!(h.max_timestamp, recs.iter().map(|r| r.timestamp).max().unwrap());
    prop_assert_eq!(h.magic, FORMAT_VERSION);
    prop_assert!(!h.is_control());
    prop_assert!(batch.control().is_none());
    prop_assert_eq!(h.next_offset(), Offset(h.base_offset.0 + u64::from(n)));
    prop_assert_eq!(h.last_offset(), Some(Offset(h.base_offset.0 + u64::from(n) - 1)));

    let mut decoded = 0usize;
    for (i, (got, want)) in batch.records().unwrap().zip(recs).enumerate() {
        let got = got.unwrap();
        prop_assert_eq!(got.offset, Offset(h.base_offset.0 + i as u64));
        prop_assert_eq!(got.timestamp, want.timestamp);
        prop_assert_eq!(got.key.as_deref(), want.key.as_deref());
        prop_assert_eq!(got.value.as_deref(), want.value.as_deref());
        prop_assert_eq!(got.headers.len(), want.headers.len());
        prop_assert_eq!(got.headers.is_empty(), want.headers.is_empty());
        let headers: Vec<(Vec<u8>, Option<Vec<u8>>)> = got
            .headers
            .iter()
            .map(|(k, v)| (k.to_vec(), v.map(|v| v.to_vec())))
            .collect();
        prop_assert_eq!(&headers, &want.headers);
        decoded += 1;
    }
    prop_assert_eq!(decoded, recs.len());
    // The iterator is exhausted (and stays so) after the last record.
    let mut it = batch.records().unwrap();
    prop_assert_eq!(it.by_ref().count(), recs.len());
    prop_assert!(it.next().is_none());
    Ok(())
}

/// Drives every read path over `bytes`; none may panic. Returns validate's result.
fn exercise(bytes: &[u8], limits: &BatchLimits) -> Result<(), DecodeError> {
    let _ = BatchHeader::parse(bytes);
    let _ = peek_total_len(bytes);
    let _ = compute_crc(bytes);
    let _ = compute_prefix_crc(bytes);
    if let Ok(h) = BatchHeader::parse(bytes) {
        let _ = h.verify_stored();
    }
    let _ = RecordBatch::verify_stored(Bytes::copy_from_slice(bytes), limits);
    for batch in BatchIter::new(Bytes::copy_from_slice(bytes), *limits) {
        let Ok(batch) = batch else { continue };
        drain(&batch);
    }
    let batch = RecordBatch::validate(Bytes::copy_from_slice(bytes), limits)?;
    drain(&batch);
    Ok(())
}

/// Reads every part of every record; returns whether all records decoded without error.
fn drain(batch: &RecordBatch) -> bool {
    let _ = batch.control();
    let _ = batch.header().last_offset();
    let _ = batch.header().next_offset();
    let Ok(records) = batch.records_with_limit(1 << 20) else {
        return false;
    };
    let mut n = 0u32;
    for r in records {
        let Ok(r) = r else { return false };
        let _ = (r.offset, r.timestamp, r.key, r.value);
        for (k, v) in r.headers.iter() {
            let _ = (k, v);
        }
        n += 1;
    }
    assert!(
        n <= batch.header().record_count.max(1),
        "iterator yielded more records than the header"
    );
    n == batch.header().record_count
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(i64::MAX),
        Just(0i64),
        Just(-1i64),
        1_600_000_000_000i64..1_900_000_000_000,
        any::<i64>(),
    ]
}

fn blob(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn record() -> impl Strategy<Value = Rec> {
    (
        timestamp(),
        proptest::option::of(blob(48)),
        proptest::option::of(blob(200)),
        proptest::collection::vec((blob(12), proptest::option::of(blob(24))), 0..=4),
    )
        .prop_map(|(timestamp, key, value, headers)| Rec {
            timestamp,
            key,
            value,
            headers,
        })
}

fn records() -> impl Strategy<Value = Vec<Rec>> {
    proptest::collection::vec(record(), 1..50)
}

fn codec() -> impl Strategy<Value = Compression> {
    prop_oneof![Just(Compression::None), Just(Compression::Lz4), Just(Compression::Zstd)]
}

fn batch_options() -> impl Strategy<Value = BatchOptions> {
    (
        codec(),
        any::<bool>(),
        prop_oneof![Just(-1i64), any::<i64>()],
        prop_oneof![Just(-1i16), any::<i16>()],
        prop_oneof![Just(-1i32), any::<i32>()],
    )
        .prop_map(
            |(compression, append_time, producer_id, producer_epoch, base_sequence)| BatchOptions {
                compression,
                timestamp_type: if append_time {
                    TimestampType::LogAppendTime
                } else {
                    TimestampType::CreateTime
                },
                producer_id,
                producer_epoch,
                base_sequence,
            },
        )
}

fn control_type() -> impl Strategy<Value = ControlType> {
    prop_oneof![
        Just(ControlType::Noop),
        Just(ControlType::RaftConfChange),
        Just(ControlType::RaftConfChangeV2)
    ]
}

/// A valid batch (data, any codec) together with its records.
fn valid_batch() -> impl Strategy<Value = (Vec<Rec>, Compression, Vec<u8>)> {
    (records(), codec()).prop_map(|(recs, c)| {
        let bytes = encode(&recs, opts(c)).to_vec();
        (recs, c, bytes)
    })
}

/// One batch in a multi-batch buffer.
#[derive(Debug, Clone)]
enum Item {
    Data(Vec<Rec>, BatchOptions),
    Control(ControlType, Vec<u8>, i64),
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        4 => (proptest::collection::vec(record(), 1..12), batch_options())
            .prop_map(|(r, o)| Item::Data(r, o)),
        1 => (control_type(), blob(40), timestamp()).prop_map(|(t, p, ts)| Item::Control(t, p, ts)),
    ]
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trips_with_every_codec(recs in records()) {
        for codec in CODECS {
            let bytes = encode(&recs, opts(codec));
            let batch = RecordBatch::validate(bytes.clone(), &BatchLimits::default()).unwrap();
            prop_assert_eq!(batch.header().attributes.compression().unwrap(), codec);
            prop_assert_eq!(batch.header().attributes.timestamp_type(), TimestampType::CreateTime);
            prop_assert_eq!(batch.header().base_offset, Offset(0));
            prop_assert_eq!(batch.header().raft_term, RaftTerm(0));
            prop_assert_eq!(batch.header().raft_index, RaftIndex(0));
            prop_assert_eq!(batch.len(), bytes.len());
            prop_assert!(!batch.is_empty());
            prop_assert_eq!(batch.header().total_len(), bytes.len());
            prop_assert_eq!(batch.as_bytes(), &bytes);
            prop_assert_eq!(batch.records_section(), bytes.slice(HEADER_LEN..));
            prop_assert_eq!(peek_total_len(&bytes), Some(bytes.len() as u64));
            assert_decodes_to(&batch, &recs)?;
            // The builder writes the prefix CRC of its zero prefix, so the cheaper stored-batch
            // check accepts its batches as they are.
            prop_assert_eq!(batch.header().prefix_crc, compute_prefix_crc(&bytes));
            prop_assert_eq!(batch.header().verify_stored(), Ok(()));
            let verified = RecordBatch::verify_stored(bytes.clone(), &BatchLimits::default()).unwrap();
            prop_assert_eq!(&verified, &batch);
            prop_assert_eq!(batch.into_bytes(), bytes);
        }
    }

    #[test]
    fn producer_fields_and_options_are_preserved(recs in records(), options in batch_options()) {
        let bytes = encode(&recs, options);
        let batch = RecordBatch::validate(bytes, &BatchLimits::default()).unwrap();
        let h = batch.header();
        prop_assert_eq!(h.producer_id, options.producer_id);
        prop_assert_eq!(h.producer_epoch, options.producer_epoch);
        prop_assert_eq!(h.base_sequence, options.base_sequence);
        prop_assert_eq!(h.attributes.compression().unwrap(), options.compression);
        prop_assert_eq!(h.attributes.timestamp_type(), options.timestamp_type);
        prop_assert!(!h.attributes.is_transactional());
        assert_decodes_to(&batch, &recs)?;
    }

    /// One builder, reused for several batches with changing options, produces the same bytes as
    /// a fresh builder for each.
    #[test]
    fn reused_builder_matches_fresh_builder(
        batches in proptest::collection::vec((records(), batch_options()), 1..4),
    ) {
        let mut reused = BatchBuilder::with_buffer(BytesMut::with_capacity(64), BatchOptions::default());
        for (recs, options) in &batches {
            reused.set_options(*options);
            prop_assert!(reused.is_empty());
            append_all(&mut reused, recs);
            prop_assert_eq!(reused.record_count() as usize, recs.len());
            prop_assert!(!reused.is_empty());
            let reused_bytes = reused.finish().unwrap();
            prop_assert_eq!(reused_bytes, encode(recs, *options));
        }
        prop_assert_eq!(reused.finish(), Err(BuildError::Empty));
    }

    /// `size_bytes` tracks the uncompressed batch and `record_size` bounds what `append` adds.
    #[test]
    fn builder_size_accounting(recs in records()) {
        let mut builder = BatchBuilder::new(BatchOptions::default());
        prop_assert_eq!(builder.size_bytes(), HEADER_LEN);
        for r in &recs {
            let headers: Vec<HeaderRef<'_>> =
                r.headers.iter().map(|(k, v)| HeaderRef { key: k, value: v.as_deref() }).collect();
            let before = builder.size_bytes();
            let estimate = BatchBuilder::record_size(r.key.as_deref(), r.value.as_deref(), &headers);
            builder.append(r.timestamp, r.key.as_deref(), r.value.as_deref(), &headers).unwrap();
            prop_assert!(builder.size_bytes() - before <= estimate);
        }
        let size = builder.size_bytes();
        prop_assert_eq!(builder.finish().unwrap().len(), size);
    }

    /// Several batches back to back (as in a produce request, a fetch response or a segment),
    /// with base offsets, terms and indexes filled in as the broker would.
    #[test]
    fn batch_iter_round_trips_concatenated_batches(
        items in proptest::collection::vec(item(), 1..6),
        first_offset in 0u64..1 << 40,
        term in 1u64..100,
    ) {
        let mut buf = Vec::new();
        let mut next_offset = first_offset;
        for (i, item) in items.iter().enumerate() {
            let bytes = match item {
                Item::Data(recs, options) => encode(recs, *options),
                Item::Control(ty, payload, ts) => control_batch(*ty, payload, *ts).unwrap(),
            };
            let mut bytes = bytes.to_vec();
            let header = BatchHeader::parse(&bytes).unwrap();
            let prefix = BatchHeader::broker_fields(
                header.batch_length,
                Offset(next_offset),
                RaftTerm(term),
                RaftIndex(i as u64 + 1),
            );
            bytes[..BROKER_FIELDS_LEN].copy_from_slice(&prefix);
            next_offset += u64::from(header.record_count);
            buf.extend_from_slice(&bytes);
        }

        let mut iter = BatchIter::new(Bytes::from(buf.clone()), BatchLimits::default());
        prop_assert_eq!(iter.remaining(), buf.len());
        let mut expected_offset = first_offset;
        for (i, item) in items.iter().enumerate() {
            let batch = iter.next().expect("one batch per item").unwrap();
            let h = *batch.header();
            prop_assert_eq!(h.base_offset, Offset(expected_offset));
            prop_assert_eq!(h.raft_term, RaftTerm(term));
            prop_assert_eq!(h.raft_index, RaftIndex(i as u64 + 1));
            prop_assert_eq!(h.verify_stored(), Ok(()));
            prop_assert!(RecordBatch::verify_stored(batch.as_bytes().clone(), &BatchLimits::default()).is_ok());
            match item {
                Item::Data(recs, options) => {
                    prop_assert_eq!(h.producer_id, options.producer_id);
                    assert_decodes_to(&batch, recs)?;
                }
                Item::Control(ty, payload, ts) => {
                    prop_assert!(h.is_control());
                    prop_assert_eq!(h.first_timestamp, *ts);
                    prop_assert_eq!(batch.control(), Some((*ty, Bytes::from(payload.clone()))));
                    prop_assert_eq!(batch.records().unwrap().count(), 0);
                    prop_assert_eq!(h.last_offset(), None);
                    prop_assert_eq!(h.next_offset(), h.base_offset);
                }
            }
            expected_offset = h.next_offset().0;
        }
        prop_assert!(iter.next().is_none());
        prop_assert_eq!(iter.remaining(), 0);
    }
}

#[test]
fn empty_builder_is_an_error() {
    for codec in CODECS {
        assert_eq!(BatchBuilder::new(opts(codec)).finish(), Err(BuildError::Empty));
    }
}

#[test]
fn empty_keys_values_and_header_values_are_not_null() {
    let recs = vec![Rec {
        timestamp: 5,
        key: Some(Vec::new()),
        value: Some(Vec::new()),
        headers: vec![(Vec::new(), Some(Vec::new())), (b"k".to_vec(), None)],
    }];
    for codec in CODECS {
        let batch = validate(&encode(&recs, opts(codec))).unwrap();
        assert_decodes_to(&batch, &recs).unwrap();
    }
}

#[test]
fn large_values_round_trip_with_every_codec() {
    let value: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let recs: Vec<Rec> = (0..5).map(|i| rec(i, Some(b"k"), Some(&value))).collect();
    for codec in CODECS {
        let batch = validate(&encode(&recs, opts(codec))).unwrap();
        assert_decodes_to(&batch, &recs).unwrap();
    }
}

#[test]
fn empty_buffer_yields_no_batches() {
    assert!(BatchIter::new(Bytes::new(), BatchLimits::default()).next().is_none());
}

// ---------------------------------------------------------------------------------------------
// Arbitrary and corrupted input never panics
// ---------------------------------------------------------------------------------------------

/// Interesting attribute values: each codec number, with and without control and timestamp bits,
/// plus reserved bits.
fn attributes() -> impl Strategy<Value = u16> {
    prop_oneof![
        (0u16..8, any::<bool>(), any::<bool>())
            .prop_map(|(codec, ts, control)| { codec | if ts { 0x08 } else { 0 } | if control { 0x20 } else { 0 } }),
        any::<u16>(),
    ]
}

/// A batch with a well-formed frame and a correct CRC but otherwise arbitrary contents, to get
/// past the CRC into attribute, control and record checks.
fn sealed_arbitrary_batch() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<[u8; HEADER_LEN]>(),
        attributes(),
        0u32..6,
        any::<bool>(),
        prop_oneof![
            blob(200),
            valid_batch().prop_map(|(_, _, b)| b[HEADER_LEN..].to_vec()),
            (valid_batch(), any::<Index>(), any::<u8>()).prop_map(|((_, _, b), at, byte)| {
                let mut s = b[HEADER_LEN..].to_vec();
                if !s.is_empty() {
                    let i = at.index(s.len());
                    s[i] = byte;
                }
                s
            }),
        ],
    )
        .prop_map(|(mut header, attrs, count, consistent_delta, section)| {
            header[field::MAGIC] = FORMAT_VERSION;
            put_u16(&mut header, field::ATTRIBUTES, attrs);
            put_u32(&mut header, field::RECORD_COUNT, count);
            if consistent_delta {
                put_u32(&mut header, field::LAST_OFFSET_DELTA, count.saturating_sub(1));
            }
            with_section(&header, &section)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in blob(600)) {
        let _ = exercise(&bytes, &BatchLimits::default());
    }

    /// Arbitrary bytes behind a plausible prefix (right magic, a length that frames the buffer),
    /// so the parser gets past the first checks.
    #[test]
    fn arbitrary_framed_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), HEADER_LEN..600)) {
        let len = u32::try_from(bytes.len() - LENGTH_PREFIX_LEN).unwrap();
        put_u32(&mut bytes, field::BATCH_LENGTH, len);
        bytes[field::MAGIC] = FORMAT_VERSION;
        let r = exercise(&bytes, &BatchLimits::default());
        prop_assert!(matches!(r, Err(DecodeError::CrcMismatch { .. })) || r.is_ok(), "{:?}", r);
    }

    #[test]
    fn sealed_arbitrary_batches_never_panic(bytes in sealed_arbitrary_batch()) {
        let limits = BatchLimits { max_records: 5, ..BatchLimits::default() };
        if exercise(&bytes, &limits).is_ok() {
            let batch = validate(&bytes).unwrap();
            let uncompressed = batch.header().attributes.compression() == Ok(Compression::None);
            // validate walks uncompressed records, so reading them cannot fail afterwards.
            if uncompressed && !batch.header().is_control() {
                prop_assert!(drain(&batch));
            }
        }
    }

    /// Several arbitrary and valid batches concatenated: BatchIter yields the valid prefix, then
    /// at most one error, then stops.
    #[test]
    fn batch_iter_stops_after_first_error(
        parts in proptest::collection::vec(prop_oneof![
            valid_batch().prop_map(|(_, _, b)| b),
            sealed_arbitrary_batch(),
            blob(100),
        ], 1..5),
    ) {
        let buf: Vec<u8> = parts.concat();
        let mut errors = 0;
        let mut consumed = 0;
        for r in BatchIter::new(Bytes::from(buf.clone()), BatchLimits::default()) {
            match r {
                Ok(b) => {
                    prop_assert_eq!(errors, 0, "a batch after an error");
                    prop_assert_eq!(b.as_bytes().as_ref(), &buf[consumed..consumed + b.len()]);
                    consumed += b.len();
                }
                Err(_) => errors += 1,
            }
        }
        prop_assert!(errors <= 1);
        prop_assert!(errors == 1 || consumed == buf.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every proper prefix of a batch is `Truncated` (more bytes would help), never anything else.
    #[test]
    fn every_truncation_is_truncated((_, _, bytes) in valid_batch()) {
        for n in 0..bytes.len() {
            let prefix = &bytes[..n];
            match validate(prefix) {
                Err(DecodeError::Truncated { needed, available, .. }) => {
                    prop_assert_eq!(available, n);
                    prop_assert!(needed > n);
                }
                other => prop_assert!(false, "prefix of {} bytes: {:?}", n, other),
            }
            let mut iter = BatchIter::new(Bytes::copy_from_slice(prefix), BatchLimits::default());
            if n == 0 {
                prop_assert!(iter.next().is_none());
            } else {
                let first = iter.next();
                prop_assert!(matches!(first, Some(Err(DecodeError::Truncated { .. }))), "{:?}", first);
                prop_assert!(iter.next().is_none());
            }
        }
        // The full batch is valid, one byte more is not.
        prop_assert!(validate(&bytes).is_ok());
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert_eq!(validate(&longer).unwrap_err(), DecodeError::TrailingBytes { extra: 1 });
    }

    /// Cutting the records section short and re-framing and re-sealing the batch (so it looks
    /// intact) is caught by the record walk for uncompressed batches, and by decompression or the
    /// record count for compressed ones — and is never reported as `Truncated`.
    #[test]
    fn truncated_records_sections_are_invalid((recs, codec, bytes) in valid_batch(), cut in any::<Index>()) {
        let section = &bytes[HEADER_LEN..];
        let keep = cut.index(section.len());
        let corrupt = with_section(&bytes, &section[..keep]);
        match validate(&corrupt) {
            Ok(batch) => {
                prop_assert_ne!(codec, Compression::None, "uncompressed records are walked");
                if drain(&batch) {
                    // Only possible if the codec ignored a missing end marker: then every record
                    // is there and must be the original.
                    assert_decodes_to(&batch, &recs)?;
                }
            }
            Err(e) => {
                prop_assert!(!matches!(e, DecodeError::Truncated { .. }), "{:?}", e);
            }
        }
    }

    /// Flipping one or two bits anywhere is always detected by `verify_stored` (the batch CRC
    /// covers bytes 37.., the prefix CRC bytes 0..28 and itself, framing and magic the rest).
    /// `validate` does not check the prefix CRC, so it accepts flips in the broker-owned fields
    /// (base offset, term, index, prefix CRC) and reads them back as flipped — the broker
    /// overwrites them on append. (CRC-32 detects every one- and two-bit error at any batch
    /// length, and every error of up to three bits in the 32 bytes of prefix and prefix CRC.)
    #[test]
    fn bit_flips_are_detected_outside_broker_fields(
        (recs, _, bytes) in valid_batch(),
        flips in proptest::collection::vec(any::<Index>(), 1..=2),
        (base, term, index) in (any::<u64>(), any::<u64>(), any::<u64>()),
    ) {
        // As stored: a prefix placed by the broker, or the builder's own zero prefix.
        let mut stored = bytes.clone();
        if base % 2 == 0 {
            place(&mut stored, base, term, index);
        }
        prop_assert!(verify_stored(&stored).is_ok());
        let bits: BTreeSet<usize> = flips.iter().map(|i| i.index(stored.len() * 8)).collect();
        let mut corrupt = stored.clone();
        for &bit in &bits {
            corrupt[bit / 8] ^= 0x80 >> (bit % 8);
        }
        let ignored_by_validate = |byte: usize| {
            byte < BROKER_FIELDS_LEN && !(field::BATCH_LENGTH..field::BATCH_LENGTH + 4).contains(&byte)
        };
        let result = exercise(&corrupt, &BatchLimits::default());
        let stored_result = verify_stored(&corrupt);
        if bits.iter().all(|&bit| ignored_by_validate(bit / 8)) {
            prop_assert!(result.is_ok(), "{:?}", result);
            let batch = validate(&corrupt).unwrap();
            let h = batch.header();
            prop_assert_eq!(h.base_offset.0.to_be_bytes(), &corrupt[0..8]);
            prop_assert_eq!(h.raft_term.0.to_be_bytes(), &corrupt[12..20]);
            prop_assert_eq!(h.raft_index.0.to_be_bytes(), &corrupt[20..28]);
            prop_assert_eq!(h.prefix_crc.to_be_bytes(), &corrupt[28..32]);
            assert_decodes_to(&batch, &recs)?;
            let want = DecodeError::PrefixCrcMismatch {
                base_offset: h.base_offset.0,
                stored: h.prefix_crc,
                computed: compute_prefix_crc(&corrupt),
            };
            prop_assert_eq!(stored_result.unwrap_err(), want.clone());
            prop_assert_eq!(h.verify_stored().unwrap_err(), want);
        } else {
            prop_assert!(result.is_err());
            prop_assert!(stored_result.is_err());
        }
    }

    /// Overwriting a header field with a different value is rejected — by the CRC for the covered
    /// fields, by framing for `batch_length`, by the version check for `magic` — unless it is a
    /// broker-owned field, which the broker is allowed to rewrite: `validate` accepts that, and
    /// only `verify_stored` rejects it, by the prefix CRC.
    #[test]
    fn overwritten_header_fields_are_rejected(
        (recs, _, bytes) in valid_batch(),
        which in 0usize..15,
        noise in any::<u64>(),
    ) {
        const FIELDS: [(usize, usize); 15] = [
            (field::BASE_OFFSET, 8),
            (field::BATCH_LENGTH, 4),
            (field::RAFT_TERM, 8),
            (field::RAFT_INDEX, 8),
            (field::PREFIX_CRC, 4),
            (field::MAGIC, 1),
            (field::CRC, 4),
            (field::ATTRIBUTES, 2),
            (field::LAST_OFFSET_DELTA, 4),
            (field::FIRST_TIMESTAMP, 8),
            (field::MAX_TIMESTAMP, 8),
            (field::PRODUCER_ID, 8),
            (field::PRODUCER_EPOCH, 2),
            (field::BASE_SEQUENCE, 4),
            (field::RECORD_COUNT, 4),
        ];
        let (at, size) = FIELDS[which];
        let mut corrupt = bytes.clone();
        let old = corrupt[at..at + size].to_vec();
        let mut new = noise.to_be_bytes()[8 - size..].to_vec();
        if new == old {
            new[size - 1] ^= 1;
        }
        corrupt[at..at + size].copy_from_slice(&new);
        let result = exercise(&corrupt, &BatchLimits::default());
        let stored_result = verify_stored(&corrupt);
        match at {
            field::BASE_OFFSET | field::RAFT_TERM | field::RAFT_INDEX | field::PREFIX_CRC => {
                prop_assert!(result.is_ok(), "{:?}", result);
                assert_decodes_to(&validate(&corrupt).unwrap(), &recs)?;
                prop_assert!(matches!(stored_result, Err(DecodeError::PrefixCrcMismatch { .. })), "{:?}", stored_result);
            }
            field::BATCH_LENGTH => prop_assert!(matches!(
                result,
                Err(DecodeError::Truncated { .. }
                    | DecodeError::TrailingBytes { .. }
                    | DecodeError::InvalidBatchLength { .. })
            ), "{:?}", result),
            field::MAGIC => {
                prop_assert_eq!(result, Err(DecodeError::UnsupportedVersion(new[0])));
                prop_assert_eq!(stored_result.unwrap_err(), DecodeError::UnsupportedVersion(new[0]));
            }
            _ => {
                prop_assert!(matches!(result, Err(DecodeError::CrcMismatch { .. })), "{:?}", result);
                prop_assert!(matches!(stored_result, Err(DecodeError::CrcMismatch { .. })), "{:?}", stored_result);
            }
        }
    }

    /// A producer that seals a wrong header (CRC recomputed) is caught by the consistency checks.
    #[test]
    fn resealed_header_inconsistencies_are_rejected(
        (recs, codec, bytes) in valid_batch(),
        delta in 1u32..,
        ts_shift in prop_oneof![Just(1i64), Just(-1i64), any::<i64>().prop_filter("non-zero", |v| *v != 0)],
    ) {
        let n = u32::try_from(recs.len()).unwrap();

        let mut b = bytes.clone();
        put_u32(&mut b, field::LAST_OFFSET_DELTA, (n - 1).wrapping_add(delta));
        reseal(&mut b);
        prop_assert_eq!(validate(&b).unwrap_err(), DecodeError::LastOffsetDeltaMismatch {
            last_offset_delta: (n - 1).wrapping_add(delta),
            record_count: n,
        });

        // Count and delta agree with each other but not with the records.
        let count = n.wrapping_add(delta);
        let mut b = bytes.clone();
        put_u32(&mut b, field::RECORD_COUNT, count);
        put_u32(&mut b, field::LAST_OFFSET_DELTA, count.wrapping_sub(1));
        reseal(&mut b);
        let result = validate(&b);
        if count == 0 || count > BatchLimits::default().max_records {
            prop_assert_eq!(result.unwrap_err(), DecodeError::InvalidRecordCount {
                count,
                max: BatchLimits::default().max_records,
            });
        } else if codec == Compression::None {
            prop_assert!(matches!(result, Err(DecodeError::RecordCountMismatch { expected, .. }) if expected == count), "{:?}", result);
        } else {
            // Compressed records are only checked when read.
            let batch = result.unwrap();
            prop_assert!(!drain(&batch));
        }

        let max = recs.iter().map(|r| r.timestamp).max().unwrap();
        let mut b = bytes.clone();
        put_u64(&mut b, field::MAX_TIMESTAMP, max.wrapping_add(ts_shift) as u64);
        reseal(&mut b);
        if codec == Compression::None {
            prop_assert_eq!(validate(&b).unwrap_err(), DecodeError::MaxTimestampMismatch {
                header: max.wrapping_add(ts_shift),
                records: max,
            });
        }

        // Moving first_timestamp moves every record's timestamp (wrapping, as deltas are applied),
        // so the max no longer agrees — unless the shift wraps the largest timestamp around.
        let mut b = bytes.clone();
        put_u64(&mut b, field::FIRST_TIMESTAMP, recs[0].timestamp.wrapping_add(ts_shift) as u64);
        reseal(&mut b);
        if codec == Compression::None {
            let shifted_max = recs.iter().map(|r| r.timestamp.wrapping_add(ts_shift)).max().unwrap();
            let r = validate(&b);
            if shifted_max == max {
                prop_assert!(r.is_ok(), "{:?}", r);
            } else {
                prop_assert_eq!(r.unwrap_err(), DecodeError::MaxTimestampMismatch {
                    header: max,
                    records: shifted_max,
                });
            }
        }
    }

    /// A compressed batch whose payload is garbage but whose CRC is right (the producer sealed
    /// garbage) validates — the broker does not decompress — but reading its records fails.
    #[test]
    fn compressed_garbage_with_valid_crc_fails_on_read(
        (_, _, bytes) in (records(), prop_oneof![Just(Compression::Lz4), Just(Compression::Zstd)])
            .prop_map(|(r, c)| { let b = encode(&r, opts(c)).to_vec(); (r, c, b) }),
        garbage in blob(300),
    ) {
        let corrupt = with_section(&bytes, &garbage);
        if garbage.is_empty() {
            // An empty payload cannot hold a record; validate says so without decompressing.
            let r = validate(&corrupt);
            prop_assert!(matches!(r, Err(DecodeError::RecordCountMismatch { actual: 0, .. })), "{:?}", r);
            return Ok(());
        }
        let batch = validate(&corrupt).unwrap();
        prop_assert!(!drain(&batch));
        let read = batch.records().map(|rs| rs.collect::<Result<Vec<_>, _>>());
        prop_assert!(matches!(read, Err(_) | Ok(Err(_))));
    }

    /// Bytes flipped inside a compressed payload (CRC recomputed): reading never panics and
    /// either fails or yields exactly `record_count` records.
    #[test]
    fn corrupted_compressed_payload_never_panics(
        (recs, _, bytes) in (records(), prop_oneof![Just(Compression::Lz4), Just(Compression::Zstd)])
            .prop_map(|(r, c)| { let b = encode(&r, opts(c)).to_vec(); (r, c, b) }),
        edits in proptest::collection::vec((any::<Index>(), any::<u8>()), 1..4),
    ) {
        let mut section = bytes[HEADER_LEN..].to_vec();
        for (at, byte) in edits {
            let i = at.index(section.len());
            section[i] ^= byte | 1;
        }
        let corrupt = with_section(&bytes, &section);
        let batch = validate(&corrupt).unwrap();
        if let Ok(records) = batch.records() {
            let mut n = 0;
            for r in records {
                if r.is_err() {
                    break;
                }
                n += 1;
            }
            prop_assert!(n <= recs.len());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Typed errors
// ---------------------------------------------------------------------------------------------

fn sample_records() -> Vec<Rec> {
    vec![rec(1_000, Some(b"a"), Some(b"one")), rec(1_005, None, Some(b"two"))]
}

fn sample(codec: Compression) -> Vec<u8> {
    encode(&sample_records(), opts(codec)).to_vec()
}

#[test]
fn bad_crc_is_crc_mismatch() {
    for codec in CODECS {
        let good = sample(codec);
        let mut bad = good.clone();
        place(&mut bad, 77, 0, 0);
        let stored = BatchHeader::parse(&good).unwrap().crc;
        bad[field::CRC] ^= 0x01;
        let wrong = stored ^ 0x0100_0000;
        assert_eq!(
            validate(&bad).unwrap_err(),
            DecodeError::CrcMismatch {
                base_offset: 77,
                stored: wrong,
                computed: stored,
            }
        );
        // Also through the read path's cheaper check (the prefix is intact: placed with its CRC).
        assert_eq!(
            verify_stored(&bad).unwrap_err(),
            DecodeError::CrcMismatch {
                base_offset: 77,
                stored: wrong,
                computed: stored,
            }
        );
        // A corrupted value byte: stored CRC stays, computed changes.
        let mut bad = good.clone();
        *bad.last_mut().unwrap() ^= 0xff;
        assert!(matches!(
            validate(&bad).unwrap_err(),
            DecodeError::CrcMismatch { stored: s, computed: c, base_offset: 0 } if s == stored && c != stored
        ));
    }
}

#[test]
fn unknown_magic_is_unsupported_version() {
    for magic in [0u8, 2, 0x7f, 0xff] {
        let mut b = sample(Compression::None);
        b[field::MAGIC] = magic;
        assert_eq!(validate(&b).unwrap_err(), DecodeError::UnsupportedVersion(magic));
        b[field::MAGIC] = FORMAT_VERSION;
        assert!(validate(&b).is_ok());
    }
}

#[test]
fn gzip_snappy_and_unknown_codecs_are_unsupported() {
    for codec in [1u16, 2, 5, 6, 7] {
        let mut b = sample(Compression::None);
        put_u16(&mut b, field::ATTRIBUTES, codec);
        reseal(&mut b);
        assert_eq!(
            validate(&b).unwrap_err(),
            DecodeError::UnsupportedCodec(codec as u8),
            "codec {codec}"
        );
        assert_eq!(
            Attributes(codec).compression(),
            Err(DecodeError::UnsupportedCodec(codec as u8))
        );
    }
}

#[test]
fn reserved_attribute_bits_are_invalid() {
    for bits in [0x0010u16, 0x0040, 0x0080, 0x0100, 0x8000] {
        let mut b = sample(Compression::None);
        put_u16(&mut b, field::ATTRIBUTES, bits);
        reseal(&mut b);
        assert_eq!(validate(&b).unwrap_err(), DecodeError::InvalidAttributes(bits));
    }
    assert!(Attributes(0x0010).is_transactional());
}

#[test]
fn length_beyond_buffer_is_truncated() {
    let b = sample(Compression::None);
    let mut longer = b.clone();
    put_u32(
        &mut longer,
        field::BATCH_LENGTH,
        u32::try_from(b.len() - LENGTH_PREFIX_LEN + 10).unwrap(),
    );
    assert_eq!(
        validate(&longer).unwrap_err(),
        DecodeError::Truncated {
            what: "batch",
            position: 0,
            needed: b.len() + 10,
            available: b.len(),
        }
    );
    // Shorter than a header, with a plausible length: also Truncated.
    assert_eq!(
        validate(&b[..HEADER_LEN - 1]).unwrap_err(),
        DecodeError::Truncated {
            what: "batch header",
            position: 0,
            needed: HEADER_LEN,
            available: HEADER_LEN - 1,
        }
    );
    let mut iter = BatchIter::new(Bytes::copy_from_slice(&b[..5]), BatchLimits::default());
    assert_eq!(
        iter.next(),
        Some(Err(DecodeError::Truncated {
            what: "batch",
            position: 0,
            needed: LENGTH_PREFIX_LEN,
            available: 5,
        }))
    );
    assert_eq!(iter.next(), None);
}

#[test]
fn length_outside_limits_is_invalid_batch_length() {
    let b = sample(Compression::None);
    let limits = BatchLimits::default();
    // Too small: smaller than a header.
    for batch_length in [0u32, 1, (HEADER_LEN - LENGTH_PREFIX_LEN - 1) as u32] {
        let mut small = b.clone();
        put_u32(&mut small, field::BATCH_LENGTH, batch_length);
        let expected = DecodeError::InvalidBatchLength {
            length: u64::from(batch_length) + LENGTH_PREFIX_LEN as u64,
            min: HEADER_LEN,
            max: limits.max_batch_bytes,
        };
        assert_eq!(validate(&small).unwrap_err(), expected);
        // Also when fewer than a header's worth of bytes are present: more bytes cannot help.
        assert_eq!(validate(&small[..LENGTH_PREFIX_LEN]).unwrap_err(), expected);
    }
    // Too large for the configured limit, whether or not the bytes are present.
    let tight = BatchLimits {
        max_batch_bytes: b.len() - 1,
        ..limits
    };
    let expected = DecodeError::InvalidBatchLength {
        length: b.len() as u64,
        min: HEADER_LEN,
        max: b.len() - 1,
    };
    assert_eq!(
        RecordBatch::validate(Bytes::from(b.clone()), &tight).unwrap_err(),
        expected
    );
    assert_eq!(
        RecordBatch::validate(Bytes::copy_from_slice(&b[..20]), &tight).unwrap_err(),
        expected
    );
    let mut iter = BatchIter::new(Bytes::from(b.clone()), tight);
    assert_eq!(iter.next(), Some(Err(expected)));
    assert_eq!(iter.next(), None);
    // The maximum u32 length against the default 16 MiB limit.
    let mut huge = b.clone();
    put_u32(&mut huge, field::BATCH_LENGTH, u32::MAX);
    assert_eq!(
        validate(&huge).unwrap_err(),
        DecodeError::InvalidBatchLength {
            length: u64::from(u32::MAX) + LENGTH_PREFIX_LEN as u64,
            min: HEADER_LEN,
            max: limits.max_batch_bytes,
        }
    );
}

/// Regression: a buffer holding an undersized batch followed by enough bytes used to come back
/// from `BatchIter` as `Truncated` (the undersized slice was handed to `validate`), telling a
/// stream reader to wait for bytes that could never make it valid.
#[test]
fn batch_iter_reports_undersized_length_as_invalid_not_truncated() {
    let mut buf = sample(Compression::None);
    put_u32(&mut buf, field::BATCH_LENGTH, 0);
    let mut iter = BatchIter::new(Bytes::from(buf), BatchLimits::default());
    assert_eq!(
        iter.next(),
        Some(Err(DecodeError::InvalidBatchLength {
            length: LENGTH_PREFIX_LEN as u64,
            min: HEADER_LEN,
            max: BatchLimits::default().max_batch_bytes,
        }))
    );
    assert_eq!(iter.next(), None);
}

#[test]
fn trailing_bytes_are_rejected() {
    for codec in CODECS {
        let mut b = sample(codec);
        b.extend_from_slice(&[0; 7]);
        assert_eq!(validate(&b).unwrap_err(), DecodeError::TrailingBytes { extra: 7 });
        assert!(matches!(
            RecordBatch::verify_stored(Bytes::from(b), &BatchLimits::default()),
            Err(DecodeError::TrailingBytes { extra: 7 })
        ));
    }
}

#[test]
fn record_count_disagreeing_with_records_is_a_mismatch() {
    let b = sample(Compression::None); // two records
    let mut more = b.clone();
    put_u32(&mut more, field::RECORD_COUNT, 3);
    put_u32(&mut more, field::LAST_OFFSET_DELTA, 2);
    reseal(&mut more);
    assert_eq!(
        validate(&more).unwrap_err(),
        DecodeError::RecordCountMismatch { expected: 3, actual: 2 }
    );
    let mut fewer = b.clone();
    put_u32(&mut fewer, field::RECORD_COUNT, 1);
    put_u32(&mut fewer, field::LAST_OFFSET_DELTA, 0);
    reseal(&mut fewer);
    assert_eq!(
        validate(&fewer).unwrap_err(),
        DecodeError::RecordCountMismatch { expected: 1, actual: 2 }
    );
    // Compressed: validate does not open the payload; reading the records reports it.
    for codec in [Compression::Lz4, Compression::Zstd] {
        let b = sample(codec);
        for (count, expected) in [
            (3, DecodeError::RecordCountMismatch { expected: 3, actual: 2 }),
            (1, DecodeError::RecordCountMismatch { expected: 1, actual: 2 }),
        ] {
            let mut c = b.clone();
            put_u32(&mut c, field::RECORD_COUNT, count);
            put_u32(&mut c, field::LAST_OFFSET_DELTA, count - 1);
            reseal(&mut c);
            let batch = validate(&c).unwrap();
            let errors: Vec<_> = batch.records().unwrap().filter_map(Result::err).collect();
            assert_eq!(errors, [expected], "{codec:?}");
        }
        // A compressed data batch with an empty payload cannot hold its records.
        let empty = with_section(&b, &[]);
        assert_eq!(
            validate(&empty).unwrap_err(),
            DecodeError::RecordCountMismatch { expected: 2, actual: 0 }
        );
    }
}

#[test]
fn last_offset_delta_disagreeing_with_count_is_rejected() {
    for codec in CODECS {
        let mut b = sample(codec);
        put_u32(&mut b, field::LAST_OFFSET_DELTA, 5);
        reseal(&mut b);
        assert_eq!(
            validate(&b).unwrap_err(),
            DecodeError::LastOffsetDeltaMismatch {
                last_offset_delta: 5,
                record_count: 2,
            }
        );
    }
}

#[test]
fn zero_or_too_many_records_is_an_invalid_count() {
    let limits = BatchLimits::default();
    let mut b = sample(Compression::None);
    put_u32(&mut b, field::RECORD_COUNT, 0);
    put_u32(&mut b, field::LAST_OFFSET_DELTA, 0);
    reseal(&mut b);
    assert_eq!(
        validate(&b).unwrap_err(),
        DecodeError::InvalidRecordCount {
            count: 0,
            max: limits.max_records,
        }
    );
    // Zero records and no records section at all.
    let empty = with_section(&b, &[]);
    assert_eq!(
        validate(&empty).unwrap_err(),
        DecodeError::InvalidRecordCount {
            count: 0,
            max: limits.max_records,
        }
    );
    // Over the configured limit.
    let b = sample(Compression::None);
    let tight = BatchLimits {
        max_records: 1,
        ..limits
    };
    assert_eq!(
        RecordBatch::validate(Bytes::from(b), &tight).unwrap_err(),
        DecodeError::InvalidRecordCount { count: 2, max: 1 }
    );
}

#[test]
fn negative_record_length_is_invalid() {
    let b = sample(Compression::None);
    let mut section = raw_record(Some(-1), &[]);
    section.extend_from_slice(&raw_record(None, &record_body(0, 1, None, None, 0, &[])));
    assert_eq!(
        validate(&with_section(&b, &section)).unwrap_err(),
        DecodeError::InvalidRecord {
            index: 0,
            reason: "negative record length",
        }
    );
}

#[test]
fn header_count_beyond_record_is_invalid() {
    let b = sample(Compression::None);
    // Says 1000 headers but the record holds one byte after the count.
    let mut section = raw_record(None, &record_body(0, 0, None, Some(b"x"), 1000, &[0]));
    section.extend_from_slice(&raw_record(None, &record_body(5, 1, None, None, 0, &[])));
    assert_eq!(
        validate(&with_section(&b, &section)).unwrap_err(),
        DecodeError::InvalidRecord {
            index: 0,
            reason: "header count exceeds record length",
        }
    );
    // Negative header count.
    let mut section = raw_record(None, &record_body(0, 0, None, None, -2, &[]));
    section.extend_from_slice(&raw_record(None, &record_body(5, 1, None, None, 0, &[])));
    assert_eq!(
        validate(&with_section(&b, &section)).unwrap_err(),
        DecodeError::InvalidRecord {
            index: 0,
            reason: "negative header count",
        }
    );
}

#[test]
fn malformed_records_are_invalid() {
    let b = sample(Compression::None); // header: 2 records, first ts 1000, max 1005
    let second = raw_record(None, &record_body(5, 1, None, None, 0, &[]));
    let check = |first: Vec<u8>, index: u32, reason: &'static str| {
        let mut section = first;
        section.extend_from_slice(&second);
        assert_eq!(
            validate(&with_section(&b, &section)).unwrap_err(),
            DecodeError::InvalidRecord { index, reason },
            "{reason}"
        );
    };
    // The declared length is longer than the fields.
    let mut body = record_body(0, 0, None, None, 0, &[]);
    let len = i32::try_from(body.len()).unwrap() + 1;
    body.push(0);
    check(
        raw_record(Some(len), &body),
        0,
        "record length does not match its fields",
    );
    // Offset delta is not the record's position.
    check(
        raw_record(None, &record_body(0, 7, None, None, 0, &[])),
        0,
        "offset delta is not the record's position",
    );
    // Null header key.
    let mut header = Vec::new();
    put_varint(&mut header, -1);
    put_varint(&mut header, -1);
    check(
        raw_record(None, &record_body(0, 0, None, None, 1, &header)),
        0,
        "null header key",
    );
    // Key longer than the record.
    let mut body = record_body(0, 0, Some(b"abc"), None, 0, &[]);
    body.truncate(4); // attributes, ts delta, offset delta, key length: key bytes missing
    check(raw_record(None, &body), 0, "bad key length");
    // Record with no room for attributes.
    check(raw_record(Some(0), &[]), 0, "record too short for attributes");
    // A record length that is not a valid varint.
    check(vec![0xff; 11], 0, "bad record length");
}

/// Regression: a record running past the end of its (complete) records section used to be
/// reported as `Truncated`, which tells a stream reader to wait for more bytes.
#[test]
fn record_overrunning_its_batch_is_invalid_not_truncated() {
    let b = sample(Compression::None);
    let mut section = raw_record(None, &record_body(0, 0, None, None, 0, &[]));
    // Second record claims 100 bytes but only 3 follow.
    section.extend_from_slice(&raw_record(Some(100), &[0, 10, 2]));
    assert_eq!(
        validate(&with_section(&b, &section)).unwrap_err(),
        DecodeError::InvalidRecord {
            index: 1,
            reason: "record extends past the end of the records section",
        }
    );
    // A record length cut off mid-varint.
    let mut section = raw_record(None, &record_body(0, 0, None, None, 0, &[]));
    section.push(0x80);
    assert_eq!(
        validate(&with_section(&b, &section)).unwrap_err(),
        DecodeError::InvalidRecord {
            index: 1,
            reason: "bad record length",
        }
    );
}

#[test]
fn max_timestamp_must_match_for_create_time_only() {
    let b = sample(Compression::None);
    let mut wrong = b.clone();
    put_u64(&mut wrong, field::MAX_TIMESTAMP, 999);
    reseal(&mut wrong);
    assert_eq!(
        validate(&wrong).unwrap_err(),
        DecodeError::MaxTimestampMismatch {
            header: 999,
            records: 1_005,
        }
    );
    // With log-append time the broker owns max_timestamp; records' timestamps are not checked
    // against it.
    put_u16(&mut wrong, field::ATTRIBUTES, 0x0008);
    reseal(&mut wrong);
    let batch = validate(&wrong).unwrap();
    assert_eq!(batch.header().attributes.timestamp_type(), TimestampType::LogAppendTime);
}

#[test]
fn decompression_is_capped() {
    let value = vec![0u8; 100_000];
    let recs: Vec<Rec> = (0..10).map(|i| rec(i, None, Some(&value))).collect();
    for codec in [Compression::Lz4, Compression::Zstd] {
        let batch = validate(&encode(&recs, opts(codec))).unwrap();
        assert!(batch.len() < 100_000, "{codec:?} compresses zeros");
        assert_eq!(
            batch.records_with_limit(50_000).unwrap_err(),
            DecodeError::DecompressedTooLarge { max: 50_000 }
        );
        assert_eq!(batch.records().unwrap().count(), 10);
    }
}

// ---------------------------------------------------------------------------------------------
// Control batches
// ---------------------------------------------------------------------------------------------

#[test]
fn control_batches_round_trip() {
    for ty in [
        ControlType::Noop,
        ControlType::RaftConfChange,
        ControlType::RaftConfChangeV2,
    ] {
        for payload in [&b""[..], b"conf-change-bytes"] {
            let bytes = control_batch(ty, payload, 1_234).unwrap();
            assert_eq!(bytes.len(), HEADER_LEN + CONTROL_TYPE_LEN + payload.len());
            let batch = RecordBatch::validate(bytes, &BatchLimits::default()).unwrap();
            let h = batch.header();
            assert!(h.is_control());
            assert!(h.attributes.is_control());
            assert_eq!(h.attributes.compression(), Ok(Compression::None));
            assert_eq!(h.record_count, 0);
            assert_eq!(h.last_offset_delta, 0);
            assert_eq!(h.first_timestamp, 1_234);
            assert_eq!(h.max_timestamp, 1_234);
            assert_eq!(h.producer_id, -1);
            assert_eq!(h.last_offset(), None);
            assert_eq!(h.next_offset(), h.base_offset);
            assert_eq!(batch.control(), Some((ty, Bytes::copy_from_slice(payload))));
            assert_eq!(batch.records().unwrap().count(), 0);
            assert_eq!(ControlType::from_u16(ty as u16), Some(ty));
        }
    }
    assert_eq!(ControlType::from_u16(3), None);
    assert_eq!(ControlType::Noop as u16, 0);
    assert_eq!(ControlType::RaftConfChange as u16, 1);
    assert_eq!(ControlType::RaftConfChangeV2 as u16, 2);
}

#[test]
fn malformed_control_batches_are_rejected() {
    let good = control_batch(ControlType::RaftConfChange, b"payload", 0)
        .unwrap()
        .to_vec();
    let invalid = |b: &[u8], reason: &'static str| {
        assert_eq!(
            validate(b).unwrap_err(),
            DecodeError::InvalidControlBatch(reason),
            "{reason}"
        );
    };
    // Compressed.
    for codec in [3u16, 4] {
        let mut b = good.clone();
        put_u16(&mut b, field::ATTRIBUTES, 0x20 | codec);
        reseal(&mut b);
        invalid(&b, "control batches are never compressed");
    }
    // Carrying records.
    let mut b = good.clone();
    put_u32(&mut b, field::RECORD_COUNT, 1);
    reseal(&mut b);
    invalid(&b, "control batches carry no records");
    let mut b = good.clone();
    put_u32(&mut b, field::LAST_OFFSET_DELTA, 1);
    reseal(&mut b);
    invalid(&b, "control batches carry no records");
    // Too short for the control type.
    invalid(&with_section(&good, &[]), "missing control type");
    invalid(&with_section(&good, &[0]), "missing control type");
    // Unknown control type.
    invalid(&with_section(&good, &[0, 3]), "unknown control type");
    invalid(&with_section(&good, &[0xff, 0xff, 1, 2]), "unknown control type");
    // A data batch's records under a control header are not a control batch either.
    let data = sample(Compression::None);
    let mut b = data.clone();
    put_u16(&mut b, field::ATTRIBUTES, 0x20);
    put_u32(&mut b, field::RECORD_COUNT, 0);
    put_u32(&mut b, field::LAST_OFFSET_DELTA, 0);
    reseal(&mut b);
    assert!(matches!(validate(&b), Err(DecodeError::InvalidControlBatch(_))));
    // Unsupported codec on a control batch is reported as such.
    let mut b = good.clone();
    put_u16(&mut b, field::ATTRIBUTES, 0x20 | 1);
    reseal(&mut b);
    assert_eq!(validate(&b).unwrap_err(), DecodeError::UnsupportedCodec(1));
}

// ---------------------------------------------------------------------------------------------
// Broker-owned fields
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn broker_fields_keep_the_batch_valid(
        (recs, _, bytes) in valid_batch(),
        base in 0u64..u64::MAX / 2,
        term in any::<u64>(),
        index in any::<u64>(),
    ) {
        let before = BatchHeader::parse(&bytes).unwrap();
        let mut b = bytes.clone();
        let prefix = BatchHeader::broker_fields(before.batch_length, Offset(base), RaftTerm(term), RaftIndex(index));
        b[..BROKER_FIELDS_LEN].copy_from_slice(&prefix);
        // Only the prefix changed, and the batch CRC with it did not.
        prop_assert_eq!(&b[BROKER_FIELDS_LEN..], &bytes[BROKER_FIELDS_LEN..]);

        let batch = validate(&b).unwrap();
        let h = *batch.header();
        prop_assert_eq!(h.base_offset, Offset(base));
        prop_assert_eq!(h.raft_term, RaftTerm(term));
        prop_assert_eq!(h.raft_index, RaftIndex(index));
        prop_assert_eq!(h.batch_length, before.batch_length);
        prop_assert_eq!(h.crc, before.crc);
        // The prefix carries the CRC of its new values, so the stored form verifies.
        prop_assert_eq!(h.prefix_crc, compute_prefix_crc(&b));
        prop_assert_eq!(h.prefix_crc, h.computed_prefix_crc());
        prop_assert_eq!(h.verify_stored(), Ok(()));
        prop_assert_eq!(&verify_stored(&b).unwrap(), &batch);
        prop_assert_eq!(
            BatchHeader {
                base_offset: before.base_offset,
                raft_term: before.raft_term,
                raft_index: before.raft_index,
                prefix_crc: before.prefix_crc,
                ..h
            },
            before
        );
        prop_assert_eq!(h.next_offset(), Offset(base + recs.len() as u64));
        assert_decodes_to(&batch, &recs)?;
        for (i, r) in batch.records().unwrap().enumerate() {
            prop_assert_eq!(r.unwrap().offset, Offset(base + i as u64));
        }
    }
}

#[test]
fn broker_fields_work_on_control_batches() {
    let mut b = control_batch(ControlType::Noop, b"", 9).unwrap().to_vec();
    let h = BatchHeader::parse(&b).unwrap();
    assert_eq!(h.verify_stored(), Ok(()), "the builder's zero prefix carries its CRC");
    let prefix = BatchHeader::broker_fields(h.batch_length, Offset(500), RaftTerm(4), RaftIndex(77));
    b[..BROKER_FIELDS_LEN].copy_from_slice(&prefix);
    let batch = validate(&b).unwrap();
    assert_eq!(batch.header().base_offset, Offset(500));
    assert_eq!(batch.header().next_offset(), Offset(500));
    assert_eq!(batch.header().raft_term, RaftTerm(4));
    assert_eq!(batch.header().raft_index, RaftIndex(77));
    assert_eq!(verify_stored(&b).unwrap(), batch);
}

/// The prefix CRC is checked on stored batches only. A producer's batch is accepted by
/// `validate` whatever its prefix holds (the broker overwrites it, and a client need not compute
/// the CRC); `verify_stored` and `BatchHeader::verify_stored` reject a prefix that does not
/// match its CRC with a typed error naming both CRCs.
#[test]
fn prefix_crc_mismatch_is_reported_for_stored_batches_only() {
    let data = sample(Compression::None);
    let control = control_batch(ControlType::Noop, b"", 9).unwrap().to_vec();
    for good in [data, control] {
        let h = BatchHeader::parse(&good).unwrap();
        assert_eq!(h.prefix_crc, compute_prefix_crc(&good));
        assert_eq!(verify_stored(&good).unwrap(), validate(&good).unwrap());

        // A raised term, as a bit flip on disk would leave it.
        let mut bad = good.clone();
        place(&mut bad, 40, 7, 12);
        let placed = BatchHeader::parse(&bad).unwrap().prefix_crc;
        put_u64(&mut bad, field::RAFT_TERM, 7 | 1 << 40);
        let computed = compute_prefix_crc(&bad);
        assert_ne!(computed, placed);
        let want = DecodeError::PrefixCrcMismatch {
            base_offset: 40,
            stored: placed,
            computed,
        };
        let batch = validate(&bad).expect("validate ignores the prefix CRC");
        assert_eq!(batch.header().raft_term, RaftTerm(7 | 1 << 40));
        assert_eq!(verify_stored(&bad).unwrap_err(), want);
        assert_eq!(BatchHeader::parse(&bad).unwrap().verify_stored().unwrap_err(), want);
        assert_eq!(batch.header().computed_prefix_crc(), computed);
        assert_eq!(
            want.to_string(),
            format!("prefix crc mismatch in batch at base offset 40: stored {placed:#010x}, computed {computed:#010x}")
        );

        // A damaged prefix CRC with intact fields.
        let mut bad = good.clone();
        bad[field::PREFIX_CRC + 3] ^= 0x10;
        assert_eq!(
            verify_stored(&bad).unwrap_err(),
            DecodeError::PrefixCrcMismatch {
                base_offset: 0,
                stored: h.prefix_crc ^ 0x10,
                computed: h.prefix_crc,
            }
        );

        // A client that leaves the prefix CRC zero: accepted on produce, and the broker's prefix
        // makes it verify.
        let mut lazy = good.clone();
        put_u32(&mut lazy, field::PREFIX_CRC, 0);
        assert!(validate(&lazy).is_ok());
        assert!(matches!(
            verify_stored(&lazy),
            Err(DecodeError::PrefixCrcMismatch { stored: 0, .. })
        ));
        place(&mut lazy, 1, 1, 1);
        assert!(verify_stored(&lazy).is_ok());
    }
}

/// `verify_stored` checks, in order: framing, magic, prefix CRC, batch CRC — so a damaged prefix
/// is reported as such even when the batch CRC fails too, and an unknown version before either.
#[test]
fn verify_stored_checks_magic_then_prefix_crc_then_crc() {
    let good = sample(Compression::Lz4);
    let mut bad = good.clone();
    put_u64(&mut bad, field::RAFT_INDEX, 9);
    *bad.last_mut().unwrap() ^= 1;
    assert!(matches!(validate(&bad), Err(DecodeError::CrcMismatch { .. })));
    assert!(matches!(
        verify_stored(&bad),
        Err(DecodeError::PrefixCrcMismatch { .. })
    ));
    bad[field::MAGIC] = 2;
    assert_eq!(validate(&bad).unwrap_err(), DecodeError::UnsupportedVersion(2));
    assert_eq!(verify_stored(&bad).unwrap_err(), DecodeError::UnsupportedVersion(2));
    assert_eq!(
        BatchHeader::parse(&bad).unwrap().verify_stored(),
        Err(DecodeError::UnsupportedVersion(2))
    );
    // Framing comes first: a stored batch cut short is `Truncated`, not a CRC error.
    assert!(matches!(
        verify_stored(&good[..good.len() - 1]),
        Err(DecodeError::Truncated { .. })
    ));
}

/// `compute_prefix_crc` hashes the first 28 bytes and never panics on a short buffer.
#[test]
fn compute_prefix_crc_covers_bytes_0_to_28() {
    // Cross-checked with Python's `zlib.crc32(bytes(28))`.
    assert_eq!(compute_prefix_crc(&[0u8; 28]), 0x8070_77e9);
    assert_eq!(compute_prefix_crc(&[0u8; HEADER_LEN]), 0x8070_77e9);
    let mut b = [0u8; HEADER_LEN];
    b[field::PREFIX_CRC..].fill(0xa5);
    assert_eq!(compute_prefix_crc(&b), 0x8070_77e9, "bytes from 28 on are not covered");
    assert_eq!(compute_prefix_crc(&[]), 0);
    let _ = compute_prefix_crc(&[1, 2, 3]);
}

/// Regression: `last_offset` and record offsets added to the base offset without overflow
/// checks; the base offset is neither CRC-covered nor validated, so a batch carrying a huge one
/// panicked in debug builds.
#[test]
fn base_offset_near_u64_max_does_not_overflow() {
    let mut b = sample(Compression::None);
    put_u64(&mut b, field::BASE_OFFSET, u64::MAX);
    let batch = validate(&b).unwrap();
    assert_eq!(batch.header().last_offset(), Some(Offset(u64::MAX)));
    assert_eq!(batch.header().next_offset(), Offset(u64::MAX));
    let offsets: Vec<Offset> = batch.records().unwrap().map(|r| r.unwrap().offset).collect();
    assert_eq!(offsets, [Offset(u64::MAX), Offset(u64::MAX)]);
}

// ---------------------------------------------------------------------------------------------
// Layout pins and golden bytes
// ---------------------------------------------------------------------------------------------

#[test]
fn header_layout_is_pinned() {
    assert_eq!(HEADER_LEN, 77);
    assert_eq!(LENGTH_PREFIX_LEN, 12);
    assert_eq!(BROKER_FIELDS_LEN, 32);
    assert_eq!(CONTROL_TYPE_LEN, 2);
    assert_eq!(FORMAT_VERSION, 1);
    let offsets = [
        (field::BASE_OFFSET, 0),
        (field::BATCH_LENGTH, 8),
        (field::RAFT_TERM, 12),
        (field::RAFT_INDEX, 20),
        (field::PREFIX_CRC, 28),
        (field::MAGIC, 32),
        (field::CRC, 33),
        (field::ATTRIBUTES, 37),
        (field::LAST_OFFSET_DELTA, 39),
        (field::FIRST_TIMESTAMP, 43),
        (field::MAX_TIMESTAMP, 51),
        (field::PRODUCER_ID, 59),
        (field::PRODUCER_EPOCH, 67),
        (field::BASE_SEQUENCE, 69),
        (field::RECORD_COUNT, 73),
    ];
    for (got, want) in offsets {
        assert_eq!(got, want);
    }

    // Every field written big-endian at its offset, read back identically.
    let header = BatchHeader {
        base_offset: Offset(0x0102_0304_0506_0708),
        batch_length: 0x1112_1314,
        raft_term: RaftTerm(0x2122_2324_2526_2728),
        raft_index: RaftIndex(0x3132_3334_3536_3738),
        prefix_crc: 0x393a_3b3c,
        magic: 0x41,
        crc: 0x5152_5354,
        attributes: Attributes(0x6162),
        last_offset_delta: 0x7172_7374,
        first_timestamp: 0x0a0b_0c0d_0e0f_1a1b,
        max_timestamp: -2,
        producer_id: 0x1c1d_1e1f_2a2b_2c2d,
        producer_epoch: 0x3a3b,
        base_sequence: 0x4a4b_4c4d,
        record_count: 0x5a5b_5c5d,
    };
    let mut buf = [0u8; HEADER_LEN + 3];
    header.write(&mut buf);
    let expected = "\
        0102030405060708 11121314 2122232425262728 3132333435363738 393a3b3c 41 51525354 6162 71727374 \
        0a0b0c0d0e0f1a1b fffffffffffffffe 1c1d1e1f2a2b2c2d 3a3b 4a4b4c4d 5a5b5c5d 000000";
    assert_eq!(hex(&buf), expected.replace(' ', ""));
    assert_eq!(BatchHeader::parse(&buf), Ok(header));
    assert_eq!(header.total_len(), 0x1112_1314 + 12);
    // `write` writes the prefix CRC as given; `broker_fields` computes it, over bytes 0..28.
    let prefix = BatchHeader::broker_fields(
        header.batch_length,
        header.base_offset,
        header.raft_term,
        header.raft_index,
    );
    assert_eq!(prefix[..field::PREFIX_CRC], buf[..field::PREFIX_CRC]);
    // Cross-checked with Python's `zlib.crc32` over bytes 0..28 above.
    assert_eq!(hex(&prefix[field::PREFIX_CRC..]), "8cd9fa3a");
    assert_eq!(prefix[field::PREFIX_CRC..], compute_prefix_crc(&buf).to_be_bytes());
    assert_eq!(header.computed_prefix_crc(), 0x8cd9_fa3a);
    assert_eq!(header.verify_stored(), Err(DecodeError::UnsupportedVersion(0x41)));
    let fixed = BatchHeader {
        magic: FORMAT_VERSION,
        ..header
    };
    assert_eq!(
        fixed.verify_stored(),
        Err(DecodeError::PrefixCrcMismatch {
            base_offset: 0x0102_0304_0506_0708,
            stored: 0x393a_3b3c,
            computed: 0x8cd9_fa3a,
        })
    );
    assert_eq!(
        BatchHeader {
            prefix_crc: 0x8cd9_fa3a,
            ..fixed
        }
        .verify_stored(),
        Ok(())
    );
    assert_eq!(peek_total_len(&buf), Some(0x1112_1314 + 12));
    assert_eq!(peek_total_len(&buf[..11]), None);
    assert!(matches!(
        BatchHeader::parse(&buf[..HEADER_LEN - 1]),
        Err(DecodeError::Truncated { needed: HEADER_LEN, .. })
    ));

    // Attribute bits.
    assert_eq!(
        Attributes::new(Compression::None, TimestampType::CreateTime, false).0,
        0
    );
    assert_eq!(Attributes::new(Compression::Lz4, TimestampType::CreateTime, false).0, 3);
    assert_eq!(
        Attributes::new(Compression::Zstd, TimestampType::LogAppendTime, false).0,
        0x0c
    );
    assert_eq!(
        Attributes::new(Compression::None, TimestampType::CreateTime, true).0,
        0x20
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The exact bytes of one small batch. If this fails, the format changed: that breaks every
/// stored segment and every client, so bump `FORMAT_VERSION` and update FORMAT.md, don't just
/// update the hex.
#[test]
fn golden_data_batch() {
    let mut builder = BatchBuilder::new(BatchOptions {
        compression: Compression::None,
        timestamp_type: TimestampType::CreateTime,
        producer_id: 7,
        producer_epoch: 2,
        base_sequence: 5,
    });
    builder
        .append(
            1_700_000_000_000,
            Some(b"k1"),
            Some(b"v1"),
            &[HeaderRef {
                key: b"h",
                value: Some(b"x"),
            }],
        )
        .unwrap();
    builder.append(1_700_000_000_005, None, Some(b"hello"), &[]).unwrap();
    builder
        .append(
            1_699_999_999_997,
            Some(b"k"),
            None,
            &[HeaderRef { key: b"n", value: None }],
        )
        .unwrap();
    let mut bytes = builder.finish().unwrap().to_vec();
    // As produced: a zero prefix with its prefix CRC.
    assert_eq!(
        hex(&bytes[..BROKER_FIELDS_LEN]),
        [
            "0000000000000000",
            "00000067",
            "0000000000000000",
            "0000000000000000",
            GOLDEN_DATA_ZERO_PREFIX_CRC
        ]
        .concat()
    );
    let h = BatchHeader::parse(&bytes).unwrap();
    let prefix = BatchHeader::broker_fields(h.batch_length, Offset(100), RaftTerm(3), RaftIndex(42));
    bytes[..BROKER_FIELDS_LEN].copy_from_slice(&prefix);

    let expected = [
        // header
        "0000000000000064",     // base_offset 100
        "00000067",             // batch_length 103 (total 115)
        "0000000000000003",     // raft_term 3
        "000000000000002a",     // raft_index 42
        GOLDEN_DATA_PREFIX_CRC, // prefix_crc over bytes 0..28
        "01",                   // magic
        GOLDEN_DATA_CRC,        // crc over bytes 37..115
        "0000",                 // attributes: no codec, create time, data
        "00000002",             // last_offset_delta 2
        "0000018bcfe56800",     // first_timestamp 1_700_000_000_000
        "0000018bcfe56805",     // max_timestamp 1_700_000_000_005
        "0000000000000007",     // producer_id 7
        "0002",                 // producer_epoch 2
        "00000005",             // base_sequence 5
        "00000003",             // record_count 3
        // record 0: length 14 (zigzag 0x1c), attrs, ts delta 0, offset delta 0, key "k1", value "v1",
        //           1 header ("h" = "x")
        "1c",
        "00",
        "00",
        "00",
        "04",
        "6b31",
        "04",
        "7631",
        "02",
        "02",
        "68",
        "02",
        "78",
        // record 1: length 11 (zigzag 0x16), attrs, ts delta +5, offset delta 1, null key, value "hello", 0 headers
        "16",
        "00",
        "0a",
        "02",
        "01",
        "0a",
        "68656c6c6f",
        "00",
        // record 2: length 10 (zigzag 0x14), attrs, ts delta -3, offset delta 2, key "k", null value,
        //           1 header ("n" = null)
        "14",
        "00",
        "05",
        "04",
        "02",
        "6b",
        "01",
        "02",
        "02",
        "6e",
        "01",
    ]
    .concat();
    assert_eq!(hex(&bytes), expected);

    let batch = verify_stored(&bytes).unwrap();
    assert_eq!(batch, validate(&bytes).unwrap());
    let recs: Vec<_> = batch.records().unwrap().map(Result::unwrap).collect();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[2].offset, Offset(102));
    assert_eq!(recs[2].timestamp, 1_699_999_999_997);
}

/// Cross-checked with Python's `zlib.crc32` (CRC-32/IEEE) over bytes 37..115.
const GOLDEN_DATA_CRC: &str = "9486f157";
/// Cross-checked with Python's `zlib.crc32` over bytes 0..28 of the placed batch.
const GOLDEN_DATA_PREFIX_CRC: &str = "40e1c52d";
/// Cross-checked with Python's `zlib.crc32` over bytes 0..28 as produced (all zero but
/// `batch_length`).
const GOLDEN_DATA_ZERO_PREFIX_CRC: &str = "d3075cac";

#[test]
fn golden_control_batch() {
    let mut bytes = control_batch(ControlType::RaftConfChange, b"\xca\xfe", 1_700_000_000_000)
        .unwrap()
        .to_vec();
    // As produced: a zero prefix with its prefix CRC.
    assert_eq!(
        hex(&bytes[..BROKER_FIELDS_LEN]),
        [
            "0000000000000000",
            "00000045",
            "0000000000000000",
            "0000000000000000",
            GOLDEN_CONTROL_ZERO_PREFIX_CRC
        ]
        .concat()
    );
    let h = BatchHeader::parse(&bytes).unwrap();
    let prefix = BatchHeader::broker_fields(h.batch_length, Offset(103), RaftTerm(3), RaftIndex(43));
    bytes[..BROKER_FIELDS_LEN].copy_from_slice(&prefix);
    let expected = [
        "0000000000000067",        // base_offset 103 (the next data offset)
        "00000045",                // batch_length 69 (total 81)
        "0000000000000003",        // raft_term 3
        "000000000000002b",        // raft_index 43
        GOLDEN_CONTROL_PREFIX_CRC, // prefix_crc over bytes 0..28
        "01",                      // magic
        GOLDEN_CONTROL_CRC,        // crc over bytes 37..81
        "0020",                    // attributes: control
        "00000000",                // last_offset_delta 0
        "0000018bcfe56800",        // first_timestamp
        "0000018bcfe56800",        // max_timestamp
        "ffffffffffffffff",        // producer_id -1
        "ffff",                    // producer_epoch -1
        "ffffffff",                // base_sequence -1
        "00000000",                // record_count 0
        "0001",                    // control type: RaftConfChange
        "cafe",                    // payload
    ]
    .concat();
    assert_eq!(hex(&bytes), expected);
    assert!(validate(&bytes).is_ok());
    assert!(verify_stored(&bytes).is_ok());
}

/// Cross-checked with Python's `zlib.crc32` (CRC-32/IEEE) over bytes 37..81.
const GOLDEN_CONTROL_CRC: &str = "0edee293";
/// Cross-checked with Python's `zlib.crc32` over bytes 0..28 of the placed batch.
const GOLDEN_CONTROL_PREFIX_CRC: &str = "b667d565";
/// Cross-checked with Python's `zlib.crc32` over bytes 0..28 as produced (all zero but
/// `batch_length`).
const GOLDEN_CONTROL_ZERO_PREFIX_CRC: &str = "2998fe91";

// ---------------------------------------------------------------------------------------------
// The lighter checks for batches validated before
// ---------------------------------------------------------------------------------------------

#[test]
fn revalidate_checks_the_crc_and_rewrap_only_the_framing() {
    let limits = BatchLimits::default();
    let good = encode(
        &[rec(1, Some(b"k"), Some(b"v")), rec(2, None, Some(b"w"))],
        opts(Compression::None),
    );
    for check in [RecordBatch::revalidate, RecordBatch::rewrap] {
        let batch = check(good.clone(), &limits).unwrap();
        assert_eq!(batch.header().record_count, 2);
        assert_eq!(batch.as_bytes(), &good);
        // Framing: truncated, trailing bytes, not a batch.
        assert!(check(good.slice(..good.len() - 1), &limits).is_err());
        let mut longer = good.to_vec();
        longer.push(0);
        assert!(matches!(
            check(Bytes::from(longer), &limits),
            Err(DecodeError::TrailingBytes { extra: 1 })
        ));
        assert!(check(Bytes::from_static(b"not a batch"), &limits).is_err());
    }
    // A flipped record byte: the CRC catches it when the batch was received, not when this
    // process validated it before (rewrap trusts its own memory).
    let mut flipped = good.to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x55;
    let flipped = Bytes::from(flipped);
    assert!(matches!(
        RecordBatch::revalidate(flipped.clone(), &limits),
        Err(DecodeError::CrcMismatch { .. })
    ));
    assert!(RecordBatch::rewrap(flipped, &limits).is_ok());
    // Neither walks the records: a resealed batch whose first record's length is −1 fails
    // validate only.
    let mut garbled = good.to_vec();
    garbled[HEADER_LEN] = 0x01;
    reseal(&mut garbled);
    assert!(validate(&garbled).is_err());
    let garbled = Bytes::from(garbled);
    assert!(RecordBatch::revalidate(garbled.clone(), &limits).is_ok());
    assert!(RecordBatch::rewrap(garbled, &limits).is_ok());
}
