//! Micro-benchmarks of the record-batch codec: encoding with [`BatchBuilder`], validation
//! (CRC + record walk), iteration, the CRC alone, and lz4/zstd encode and decode.
//!
//! Every benchmark works on the same ~1 MiB batch: 1000 records with a 16-byte key and a 1 KiB
//! value. Throughput is reported in bytes of the *uncompressed* batch, so encode and decode
//! numbers of different codecs compare directly (GB/s of record data, not of compressed bytes).
//!
//! Run with `cargo bench -p strata-protocol --bench codec`.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strata_protocol::batch::compute_crc;
use strata_protocol::{BatchBuilder, BatchLimits, BatchOptions, Compression, RecordBatch};

const RECORDS: usize = 1000;
const VALUE_LEN: usize = 1024;
const KEY_LEN: usize = 16;
const FIRST_TIMESTAMP: i64 = 1_700_000_000_000;

/// Keys and values for the benchmark batch. Values are text-like — words drawn from a small
/// vocabulary by a fixed-seed generator, with numbers mixed in — so they compress like real
/// payloads (roughly 2–3x) rather than like zeros or random noise.
fn payloads() -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const WORDS: &[&str] = &[
        "order",
        "user",
        "id",
        "status",
        "created",
        "shipped",
        "pending",
        "amount",
        "currency",
        "EUR",
        "USD",
        "item",
        "sku",
        "quantity",
        "price",
        "warehouse",
        "region",
        "eu-west",
        "us-east",
        "customer",
        "email",
        "address",
        "street",
        "city",
        "country",
        "true",
        "false",
        "null",
        "payment",
        "card",
        "refund",
        "event",
        "timestamp",
        "session",
        "device",
        "mobile",
    ];
    (0..RECORDS)
        .map(|i| {
            let key = format!("user-{i:011}").into_bytes();
            assert_eq!(key.len(), KEY_LEN);
            let mut value = Vec::with_capacity(VALUE_LEN + 32);
            while value.len() < VALUE_LEN {
                let r = next();
                value.extend_from_slice(WORDS[(r % WORDS.len() as u64) as usize].as_bytes());
                value.push(if r & 0x100 == 0 { b' ' } else { b':' });
                if r & 0x600 == 0 {
                    value.extend_from_slice(format!("{}", (r >> 16) % 1_000_000).as_bytes());
                    value.push(b',');
                }
            }
            value.truncate(VALUE_LEN);
            (key, value)
        })
        .collect()
}

fn options(compression: Compression) -> BatchOptions {
    BatchOptions {
        compression,
        producer_id: 42,
        producer_epoch: 1,
        base_sequence: 0,
        ..Default::default()
    }
}

fn encode(builder: &mut BatchBuilder, payloads: &[(Vec<u8>, Vec<u8>)]) -> Bytes {
    for (i, (key, value)) in payloads.iter().enumerate() {
        builder
            .append(FIRST_TIMESTAMP + i as i64, Some(key), Some(value), &[])
            .expect("benchmark records fit");
    }
    builder.finish().expect("non-empty batch")
}

/// Validates and reads every record, touching key and value lengths, as a consumer would.
fn decode(bytes: &Bytes, limits: &BatchLimits) -> usize {
    let batch = RecordBatch::validate(bytes.clone(), limits).expect("valid batch");
    let mut total = 0;
    for record in batch.records().expect("decompresses") {
        let record = record.expect("valid record");
        total += record.key.map_or(0, |k| k.len()) + record.value.map_or(0, |v| v.len());
    }
    total
}

fn codec(c: &mut Criterion) {
    let payloads = payloads();
    let limits = BatchLimits::default();
    let mut builder = BatchBuilder::with_buffer(BytesMut::with_capacity(2 << 20), options(Compression::None));
    let batch = encode(&mut builder, &payloads);
    let uncompressed = batch.len() as u64;
    let expected_bytes = RECORDS * (KEY_LEN + VALUE_LEN);
    assert_eq!(decode(&batch, &limits), expected_bytes);

    let mut group = c.benchmark_group("batch");
    group.throughput(Throughput::Bytes(uncompressed));

    group.bench_function("encode/none", |b| {
        b.iter(|| black_box(encode(&mut builder, black_box(&payloads))))
    });
    group.bench_function("crc", |b| b.iter(|| black_box(compute_crc(black_box(&batch)))));
    group.bench_function("validate", |b| {
        b.iter(|| black_box(RecordBatch::validate(black_box(batch.clone()), &limits).expect("valid")))
    });
    group.bench_function("verify_stored", |b| {
        b.iter(|| black_box(RecordBatch::verify_stored(black_box(batch.clone()), &limits).expect("valid")))
    });
    group.bench_function("decode/none", |b| {
        b.iter(|| black_box(decode(black_box(&batch), &limits)))
    });

    for compression in [Compression::Lz4, Compression::Zstd] {
        let mut builder = BatchBuilder::with_buffer(BytesMut::with_capacity(2 << 20), options(compression));
        let compressed = encode(&mut builder, &payloads);
        assert_eq!(decode(&compressed, &limits), expected_bytes);
        eprintln!(
            "{}: {} -> {} bytes (ratio {:.2})",
            compression.name(),
            uncompressed,
            compressed.len(),
            uncompressed as f64 / compressed.len() as f64
        );
        let name = compression.name();
        group.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| black_box(encode(&mut builder, black_box(&payloads))))
        });
        group.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| black_box(decode(black_box(&compressed), &limits)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = codec
}
criterion_main!(benches);
