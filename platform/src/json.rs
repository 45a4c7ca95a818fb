//! `ApiJson<T>`: a JSON body extractor whose every failure is the contract's
//! 4xx problem, naming the field at fault.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::problem::{ApiError, FieldError};

/// The largest body any endpoint accepts (API.md: 413 above 64 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub struct ApiJson<T>(pub T);

fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(mime) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
                _ => ApiError::bad_request(format!("could not read the body: {rejection}")),
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body: syntax errors are 400, well-formed JSON of the wrong
/// shape (wrong type, missing or unknown field, invalid value) is 422.
///
/// # Errors
/// As above, with the path of the field at fault.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(value) => value,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            return Err(classify(&path, &inner));
        }
    };
    de.end()
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    Ok(value)
}

fn classify(path: &str, e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::bad_request(format!("malformed JSON: {e}"))
        }
        Category::Data => {
            let message = strip_position(&e.to_string());
            let field = field_name(path, &message);
            ApiError::Unprocessable {
                detail: format!("{field}: {message}"),
                errors: vec![FieldError::new(field, message)],
            }
        }
    }
}

/// serde appends "at line 1 column 9" to messages; clients need the field, not that.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// The field a data error is about: the path serde reached, or for missing and
/// unknown fields (reported on their parent) the name quoted in the message.
fn field_name(path: &str, message: &str) -> String {
    let quoted = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    let parent = if path == "." { "" } else { path };
    match quoted {
        // serde_path_to_error already ends the path with an unknown field's name.
        Some(name) if parent == name || parent.ends_with(&format!(".{name}")) => parent.to_owned(),
        Some(name) if parent.is_empty() => name.to_owned(),
        Some(name) => format!("{parent}.{name}"),
        None if parent.is_empty() => "body".to_owned(),
        None => parent.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        title: String,
        tags: Option<Vec<String>>,
    }

    fn status(r: Result<Body, ApiError>) -> (u16, Vec<String>) {
        match r {
            Ok(_) => (200, vec![]),
            Err(e) => {
                let fields = match &e {
                    ApiError::Unprocessable { errors, .. }
                    | ApiError::BadRequest { errors, .. } => {
                        errors.iter().map(|f| f.field.clone()).collect()
                    }
                    _ => vec![],
                };
                (e.status_code().as_u16(), fields)
            }
        }
    }

    #[test]
    fn each_kind_of_bad_body_gets_its_status_and_field() {
        let cases: &[(&str, u16, &[&str])] = &[
            (r#"{"title":"x"}"#, 200, &[]),
            (r#"{"title":"x""#, 400, &[]),
            ("", 400, &[]),
            (r#"{"title":"x"} trailing"#, 400, &[]),
            (r#"{"title":5}"#, 422, &["title"]),
            (r#"{}"#, 422, &["title"]),
            (r#"{"title":"x","colour":"red"}"#, 422, &["colour"]),
            (r#"{"title":"x","tags":[1]}"#, 422, &["tags[0]"]),
            (r#"[]"#, 422, &["body"]),
        ];
        for (body, want_status, want_fields) in cases {
            let (got, fields) = status(parse::<Body>(body.as_bytes()));
            assert_eq!(got, *want_status, "body {body:?}");
            assert_eq!(fields, *want_fields, "body {body:?}");
        }
    }

    #[test]
    fn json_content_types_are_recognised() {
        let v = |s: &'static str| header::HeaderValue::from_static(s);
        assert!(is_json(Some(&v("application/json"))));
        assert!(is_json(Some(&v("Application/JSON; charset=utf-8"))));
        assert!(is_json(Some(&v("application/merge-patch+json"))));
        assert!(!is_json(Some(&v("text/plain"))));
        assert!(!is_json(None));
    }
}
