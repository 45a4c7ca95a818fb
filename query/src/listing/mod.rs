//! What a list request asks for: the typed query parsed from the query
//! string, and the signed cursors that carry a keyset position between pages.

mod cursor;
mod params;
mod query;

pub use cursor::{CursorKey, Keyset, SortValue};
pub use params::{QueryParams, parse_time};
pub use query::{DEFAULT_LIMIT, ListQuery, MAX_LIMIT, Paging, Sort, SortField};
