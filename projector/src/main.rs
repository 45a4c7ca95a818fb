//! `tasklog-projector`: run, rebuild, verify, status, copy-log.

fn main() {}
