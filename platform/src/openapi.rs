//! `/openapi.json`: a service's OpenAPI 3.1 document (generated from its
//! handlers' annotations, so it cannot drift from the code) with what every
//! service adds to it: the bearer scheme, and links saying how the id in
//! one operation's answer feeds the next (create → change, list → detail →
//! history), so a stateful fuzzer or a client generator can walk the API
//! with real ids.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr};

/// `/openapi.json`, answering `document()` (built on each call: cheap, and
/// rarely asked for) with the bearer scheme and `links` added.
pub fn router<S: Clone + Send + Sync + 'static>(
    document: fn() -> OpenApi,
    links: &'static [Link],
) -> Router<S> {
    Router::new().route(
        "/openapi.json",
        get(move || async move { Json(to_json(&complete(document(), links))) }),
    )
}

/// The document with the bearer scheme (`security(("bearer" = []))` on the
/// handlers) and `links` added.
fn complete(mut doc: OpenApi, links: &[Link]) -> OpenApi {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
    );
    let missing = add(&mut doc, links);
    debug_assert!(
        missing.is_empty(),
        "links from absent operations: {missing:?}"
    );
    doc
}

/// Which operation of a path.
#[derive(Debug, Clone, Copy)]
pub enum Method {
    Get,
    Post,
    Patch,
    Delete,
}

/// One link: from `path`'s `method` answering `status`, to the operation
/// `target` (its operation id), with its `id` parameter taken from the
/// answer by `id_from` (a runtime expression, e.g. `$response.body#/id`).
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub path: &'static str,
    pub method: Method,
    pub status: &'static str,
    pub target: &'static str,
    pub id_from: &'static str,
}

fn operation<'d>(doc: &'d mut OpenApi, path: &str, method: Method) -> Option<&'d mut Operation> {
    let item = doc.paths.paths.get_mut(path)?;
    match method {
        Method::Get => item.get.as_mut(),
        Method::Post => item.post.as_mut(),
        Method::Patch => item.patch.as_mut(),
        Method::Delete => item.delete.as_mut(),
    }
}

/// Adds each link to the document; a link whose source is not in it, or
/// whose target is not exactly one operation's id (OpenAPI wants them
/// unique, and a fuzzer follows a shared one to the wrong operation), is a
/// bug the services' tests catch (`missing` names them).
pub fn add(doc: &mut OpenApi, links: &[Link]) -> Vec<Link> {
    let ids = operation_ids(doc);
    let mut missing = Vec::new();
    for link in links {
        if ids.iter().filter(|id| *id == link.target).count() != 1 {
            missing.push(*link);
            continue;
        }
        let response = operation(doc, link.path, link.method)
            .and_then(|op| op.responses.responses.get_mut(link.status));
        let Some(RefOr::T(response)) = response else {
            missing.push(*link);
            continue;
        };
        response.links.insert(
            link.target.to_owned(),
            RefOr::T(
                LinkBuilder::new()
                    .operation_id(link.target)
                    .parameter("id", link.id_from)
                    .build(),
            ),
        );
    }
    missing
}

/// Every operation's id, as often as it is given.
fn operation_ids(doc: &OpenApi) -> Vec<String> {
    doc.paths
        .paths
        .values()
        .flat_map(|item| {
            [
                &item.get,
                &item.put,
                &item.post,
                &item.delete,
                &item.options,
                &item.head,
                &item.patch,
                &item.trace,
            ]
        })
        .filter_map(|op| op.as_ref()?.operation_id.clone())
        .collect()
}

/// The document as JSON, with each link's fields in OpenAPI's spelling
/// (which `router` serves):
/// utoipa 5.5 writes a link's `operationId` and `operationRef` in snake
/// case, which no tool reads (schemathesis refuses such links).
pub fn to_json(doc: &OpenApi) -> serde_json::Value {
    let mut json = serde_json::to_value(doc).unwrap_or_default();
    let operations = json
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|item| item.values_mut());
    for operation in operations {
        let responses = operation
            .get_mut("responses")
            .and_then(serde_json::Value::as_object_mut);
        for response in responses.into_iter().flat_map(|r| r.values_mut()) {
            let links = response
                .get_mut("links")
                .and_then(serde_json::Value::as_object_mut);
            for link in links.into_iter().flat_map(|l| l.values_mut()) {
                if let Some(link) = link.as_object_mut() {
                    for (snake, camel) in [
                        ("operation_id", "operationId"),
                        ("operation_ref", "operationRef"),
                        ("request_body", "requestBody"),
                    ] {
                        if let Some(value) = link.remove(snake) {
                            link.insert(camel.to_owned(), value);
                        }
                    }
                }
            }
        }
    }
    json
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
    use utoipa::openapi::{OpenApiBuilder, PathsBuilder, ResponseBuilder};

    fn op(id: &str, status: &str) -> Operation {
        OperationBuilder::new()
            .operation_id(Some(id))
            .response(status, ResponseBuilder::new().description("it"))
            .build()
    }

    fn doc(delete_of_webhooks: &str) -> OpenApi {
        OpenApiBuilder::new()
            .paths(
                PathsBuilder::new()
                    .path(
                        "/tasks",
                        PathItem::new(HttpMethod::Post, op("create", "201")),
                    )
                    .path(
                        "/tasks/{id}",
                        PathItem::new(HttpMethod::Delete, op("delete", "204")),
                    )
                    .path(
                        "/webhooks/{id}",
                        PathItem::new(HttpMethod::Delete, op(delete_of_webhooks, "204")),
                    ),
            )
            .build()
    }

    const LINK: Link = Link {
        path: "/tasks",
        method: Method::Post,
        status: "201",
        target: "delete",
        id_from: "$response.body#/id",
    };

    #[test]
    fn a_link_to_an_operation_id_two_operations_share_is_refused() {
        let mut shared = doc("delete");
        assert_eq!(add(&mut shared, &[LINK]).len(), 1);
        let mut unique = doc("delete_webhook");
        assert!(add(&mut unique, &[LINK]).is_empty());
        let json = to_json(&unique);
        assert_eq!(
            json["paths"]["/tasks"]["post"]["responses"]["201"]["links"]["delete"]["operationId"],
            "delete"
        );
    }
}
