//! Placeholder; the real benchmark lands in the next commit.
fn main() {}
