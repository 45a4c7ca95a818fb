//! The `{id}` of `/v1/tasks/{id}`. An id that is not a UUID names no task: 404.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use tasklog_platform::ApiError;
use uuid::Uuid;

#[derive(Debug)]
pub struct TaskPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for TaskPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound)?;
        Uuid::parse_str(&raw)
            .map(TaskPath)
            .map_err(|_| ApiError::NotFound)
    }
}
