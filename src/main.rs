//! The `stoke` command line.

fn main() {}
