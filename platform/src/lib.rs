//! What every Tasklog service shares.

#[cfg(feature = "testing")]
pub mod testing;
