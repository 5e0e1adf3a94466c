//! The `strata-broker` binary. The server itself is not implemented yet; this binary says so and
//! exits with a non-zero status rather than pretending to serve.

fn main() {
    if std::env::args().any(|a| a == "--version" || a == "-V") {
        println!("strata-broker {}", strata_broker::VERSION);
        return;
    }
    eprintln!(
        "strata-broker {}: the network server is not implemented yet; this release contains the \
         storage engine (crates strata-protocol and strata-storage) only",
        strata_broker::VERSION
    );
    std::process::exit(2);
}
