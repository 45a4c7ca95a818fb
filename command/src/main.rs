//! The command service (built in its own issue).

fn main() {}
