//! The query service (built in its own issue).

fn main() {}
