//! `strata-bench`, the load benchmark tool. Not implemented yet: it needs the broker and client.
//! The storage and codec micro-benchmarks live in `storage/benches` and `protocol/benches`.

fn main() {
    eprintln!(
        "strata-bench: not implemented yet; run the micro-benchmarks with \
         `cargo bench -p strata-protocol` and `cargo bench -p strata-storage`"
    );
    std::process::exit(2);
}
