//! Trace export: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, every service sends
//! its request spans to an OTLP/gRPC collector, and what is still buffered
//! at SIGTERM is sent before the process exits.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tasklog_systest::System;
use tokio_stream::wrappers::TcpListenerStream;
use uuid::Uuid;

use crate::binaries;

/// Keeps every export request it is sent.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    /// Serves on a free loopback port until the test ends; returns its URL.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(self.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener));
        tokio::spawn(server);
        format!("http://{addr}")
    }

    /// Every span received, with the `service.name` of its resource.
    fn spans(&self) -> Vec<(String, Span)> {
        let requests = self.0.lock().unwrap();
        let mut spans = Vec::new();
        for resource_spans in requests.iter().flat_map(|r| &r.resource_spans) {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| attr(&r.attributes, "service.name"))
                .unwrap_or_default();
            for scope in &resource_spans.scope_spans {
                for span in &scope.spans {
                    spans.push((service.clone(), span.clone()));
                }
            }
        }
        spans
    }

    /// The span of the request with this `X-Request-Id`.
    fn request(&self, request_id: &str) -> (String, Span) {
        let spans = self.spans();
        spans
            .iter()
            .find(|(_, s)| attr(&s.attributes, "request_id").as_deref() == Some(request_id))
            .cloned()
            .unwrap_or_else(|| {
                let names: Vec<_> = spans.iter().map(|(svc, s)| (svc, &s.name)).collect();
                panic!("no span for request {request_id}; received {names:?}")
            })
    }
}

/// An attribute's value as text (integers too), if present.
fn attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match value.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn every_service_exports_its_request_spans_and_flushes_them_on_sigterm() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    // A batch delay longer than the test: the spans can only arrive through
    // the flush at shutdown.
    let mut system = System::start_with(
        binaries(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ],
    )
    .await
    .expect("the system starts");
    let api = system.api();
    let alice = api.register().await.unwrap();

    // A caller's trace, continued by the query service.
    let trace_id = Uuid::new_v4().simple().to_string();
    let parent_span_id = &Uuid::new_v4().simple().to_string()[..16];
    let traceparent = format!("00-{trace_id}-{parent_span_id}-01");
    let missing = api
        .send(
            Method::GET,
            &format!("/v1/tasks/{}", Uuid::now_v7()),
            Some(&alice),
            None,
            &[
                ("x-request-id", "otel-query-1"),
                ("traceparent", &traceparent),
            ],
        )
        .await
        .unwrap();
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{missing:?}");
    let created = api
        .send(
            Method::POST,
            "/v1/tasks",
            Some(&alice),
            Some(json!({"title": "Traced"})),
            &[("x-request-id", "otel-command-1")],
        )
        .await
        .unwrap();
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let live = reqwest::Client::new()
        .get(system.projector.url("/health/live"))
        .header("x-request-id", "otel-projector-1")
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);

    for service in [
        &mut system.query,
        &mut system.command,
        &mut system.projector,
    ] {
        let name = service.name();
        assert!(
            service.terminate(Duration::from_secs(60)).await.unwrap(),
            "{name} did not stop cleanly"
        );
    }

    let (service, span) = collector.request("otel-query-1");
    assert_eq!(service, "tasklog-query");
    assert_eq!(span.name, "GET /v1/tasks/{id}");
    assert_eq!(span.kind, SpanKind::Server as i32);
    let field = |key| attr(&span.attributes, key);
    assert_eq!(field("route").as_deref(), Some("/v1/tasks/{id}"));
    assert_eq!(field("method").as_deref(), Some("GET"));
    assert_eq!(field("status").as_deref(), Some("404"));
    assert_eq!(field("user_id").as_deref(), Some(alice.user_id.as_str()));
    assert_eq!(hex(&span.trace_id), trace_id);
    assert_eq!(hex(&span.parent_span_id), parent_span_id);

    let (service, span) = collector.request("otel-command-1");
    assert_eq!(service, "tasklog-command");
    assert_eq!(span.name, "POST /v1/tasks");
    let field = |key| attr(&span.attributes, key);
    assert_eq!(field("route").as_deref(), Some("/v1/tasks"));
    assert_eq!(field("status").as_deref(), Some("201"));
    assert_eq!(field("user_id").as_deref(), Some(alice.user_id.as_str()));
    // No traceparent: a trace of its own.
    assert!(span.parent_span_id.is_empty(), "{span:?}");

    let (service, span) = collector.request("otel-projector-1");
    assert_eq!(service, "tasklog-projector");
    assert_eq!(
        attr(&span.attributes, "route").as_deref(),
        Some("/health/live")
    );
}
