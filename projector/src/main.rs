//! The projector service (built in its own issue).

fn main() {}
