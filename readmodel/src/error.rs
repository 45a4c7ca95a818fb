//! What reading or writing the read model's contract tables can fail with.

#[derive(Debug, thiserror::Error)]
pub enum ReadModelError {
    #[error("postgres: {0}")]
    Database(#[from] sqlx::Error),
    /// The tables hold something the contract does not allow (or the schema
    /// is not migrated).
    #[error("the read model holds data it cannot read: {0}")]
    Corrupt(String),
}
