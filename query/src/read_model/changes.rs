//! The change feed's reads are the read model's contract (`tasklog-readmodel`
//! owns `readmodel.changes` and its SQL; the projector's webhook deliveries
//! read it too): re-exported here beside the service's other reads.

pub use tasklog_readmodel::changes::{
    After, Change, ChangeFilter, changes_after, changes_position, explain_changes, rest_of_commit,
};
