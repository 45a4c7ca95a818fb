//! One tracing set-up for every binary: `RUST_LOG` filters, `LOG_FORMAT`
//! chooses JSON (for machines) or pretty (for people), and when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set the same spans also go to an OTLP
//! collector over gRPC. With `SENTRY_DSN` set, panics and 5xx answers also
//! go to Sentry (`error_tracking`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, Uri};
use opentelemetry::KeyValue;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{ExporterBuildError, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{ConfigError, Env};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// # Errors
/// When `LOG_FORMAT` is neither `json` nor `pretty`.
pub fn log_format(env: &Env) -> Result<LogFormat, ConfigError> {
    match env.get("LOG_FORMAT").unwrap_or("pretty") {
        "json" => Ok(LogFormat::Json),
        "pretty" => Ok(LogFormat::Pretty),
        other => Err(ConfigError::new(
            "LOG_FORMAT",
            format!("{other:?} is not json or pretty"),
        )),
    }
}

/// One JSON object per line; each event carries the fields of the span it
/// happened in (for a request: method, route, request id, user id, status).
pub fn json_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(writer)
}

/// Where and as whom spans are exported; `None` from `from_env` means no
/// export at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpSettings {
    /// The collector's OTLP/gRPC address, e.g. `http://otel-collector:4317`.
    pub endpoint: String,
    pub service_name: String,
}

impl OtlpSettings {
    /// Reads the standard OpenTelemetry variables. The traces-only endpoint
    /// wins over the general one, as the specification says. Only gRPC is
    /// built in: HTTP would bring a second HTTP client into every binary.
    ///
    /// # Errors
    /// When the endpoint is not an http(s) URL with a host, or a protocol
    /// other than `grpc` is asked for.
    pub fn from_env(env: &Env, default_service_name: &str) -> Result<Option<Self>, ConfigError> {
        let Some((name, raw)) = [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]
        .into_iter()
        .find_map(|name| env.get(name).map(|v| (name, v.trim()))) else {
            return Ok(None);
        };
        let valid = raw.parse::<Uri>().ok().is_some_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.host().is_some_and(|h| !h.is_empty())
        });
        if !valid {
            return Err(ConfigError::new(
                name,
                format!("{raw:?} is not an http:// or https:// URL"),
            ));
        }
        for protocol_name in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(protocol) = env.get(protocol_name) {
                if protocol.trim() != "grpc" {
                    return Err(ConfigError::new(
                        protocol_name,
                        format!("{protocol:?} is not supported; only grpc is built in"),
                    ));
                }
            }
        }
        Ok(Some(Self {
            endpoint: raw.to_owned(),
            service_name: env
                .get("OTEL_SERVICE_NAME")
                .unwrap_or(default_service_name)
                .trim()
                .to_owned(),
        }))
    }
}

/// Longest wait at exit for buffered spans to reach the collector: an
/// unreachable collector must not hold up a rolling deploy.
const EXPORT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Set once an exporter is installed, so request spans name themselves for
/// OpenTelemetry only when someone is listening (and logs stay as they were).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are being exported to an OTLP collector.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// What `init` started: hold it until the end of `main` and call `shutdown`,
/// or the last spans (the ones about stopping) are lost.
#[derive(Default)]
#[must_use = "call shutdown() at exit so buffered spans are sent"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    /// The Sentry client, when `SENTRY_DSN` is set (`error_tracking`).
    error_tracking: Option<sentry::ClientInitGuard>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("provider", &self.provider)
            .field("error_tracking", &self.error_tracking.is_some())
            .finish()
    }
}

impl Telemetry {
    /// Sends the error reports and spans still buffered and stops the
    /// exporters, waiting at most a few seconds. A no-op when nothing is
    /// exported.
    pub async fn shutdown(self) {
        let Self {
            provider,
            error_tracking,
        } = self;
        if let Some(guard) = error_tracking {
            // Dropping the guard flushes (blocking, at most 2 s).
            let _ = tokio::task::spawn_blocking(move || drop(guard)).await;
        }
        let Some(provider) = provider else {
            return;
        };
        // The batch exporter's thread needs a free runtime worker to drive the
        // gRPC connection; blocking a worker here could starve it on a runtime
        // with one worker (a one-CPU pod).
        let result = tokio::task::spawn_blocking(move || {
            provider.shutdown_with_timeout(EXPORT_SHUTDOWN_TIMEOUT)
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "spans were not all exported at shutdown"),
            Err(e) => tracing::warn!(error = %e, "span export shutdown failed"),
        }
    }
}

/// Installs the global subscriber. Call once, first thing in `main`, inside
/// the Tokio runtime, and call `Telemetry::shutdown` on the way out.
/// `service_name` names the service to the collector unless
/// `OTEL_SERVICE_NAME` does.
///
/// # Errors
/// When `LOG_FORMAT`, `RUST_LOG` or an OpenTelemetry variable is invalid.
pub fn init(env: &Env, service_name: &str) -> Result<Telemetry, ConfigError> {
    let format = log_format(env)?;
    let filter = EnvFilter::try_new(env.get("RUST_LOG").unwrap_or("info"))
        .map_err(|e| ConfigError::new("RUST_LOG", e.to_string()))?;
    let provider = match OtlpSettings::from_env(env, service_name)? {
        Some(settings) => Some(tracer_provider(&settings)?),
        None => None,
    };
    let otel_layer = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("tasklog"))
            .with_filter(not_the_exporters_own_spans())
    });
    let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
    let result = match format {
        LogFormat::Json => registry.with(json_layer(std::io::stdout)).try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().compact())
            .try_init(),
    };
    // A second init (tests start several apps in one process) keeps the first.
    if result.is_ok() && provider.is_some() {
        EXPORTING.store(true, Ordering::Relaxed);
    }
    let error_tracking = crate::error_tracking::init(env, service_name)?;
    Ok(Telemetry {
        provider,
        error_tracking,
    })
}

fn tracer_provider(settings: &OtlpSettings) -> Result<SdkTracerProvider, ConfigError> {
    // The gRPC channel spawns its connection task on the current runtime.
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(ConfigError::new(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "trace export must be set up inside the Tokio runtime",
        ));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(settings.endpoint.clone())
        .build()
        .map_err(|e| match e {
            ExporterBuildError::UnsupportedCompressionAlgorithm(_)
            | ExporterBuildError::FeatureRequiredForCompressionAlgorithm(..) => {
                ConfigError::new("OTEL_EXPORTER_OTLP_COMPRESSION", e.to_string())
            }
            other => ConfigError::new("OTEL_EXPORTER_OTLP_ENDPOINT", other.to_string()),
        })?;
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Spans of the gRPC stack the exporter itself uses would be exported by the
/// exporter, making more of them, without end (with `RUST_LOG=debug`).
/// Targets match by prefix: `hyper` covers `hyper_util`, `opentelemetry`
/// the SDK and exporter, and `tower::` spares `tower_http`.
fn not_the_exporters_own_spans() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target("h2", LevelFilter::OFF)
        .with_target("hyper", LevelFilter::OFF)
        .with_target("tonic", LevelFilter::OFF)
        .with_target("tower::", LevelFilter::OFF)
        .with_target("opentelemetry", LevelFilter::OFF)
}

/// Makes a caller's W3C `traceparent` the parent of `span`, so a trace begun
/// in a gateway or client continues here. Without an exporter it does
/// nothing.
pub fn continue_remote_trace(span: &Span, headers: &HeaderMap) {
    if !exporting() || !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    span.set_parent(parent);
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(axum::http::HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Option<OtlpSettings>, ConfigError> {
        OtlpSettings::from_env(&Env::from_pairs(pairs.iter().copied()), "tasklog-query")
    }

    #[test]
    fn nothing_is_exported_unless_an_endpoint_is_set() {
        assert_eq!(settings(&[]), Ok(None));
        assert_eq!(settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]), Ok(None));
        // A service name alone turns nothing on.
        assert_eq!(settings(&[("OTEL_SERVICE_NAME", "x")]), Ok(None));
    }

    #[test]
    fn the_service_is_named_by_the_binary_unless_otel_service_name_says() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317");
        assert_eq!(
            settings(&[endpoint]),
            Ok(Some(OtlpSettings {
                endpoint: "http://collector:4317".into(),
                service_name: "tasklog-query".into(),
            }))
        );
        let named = settings(&[endpoint, ("OTEL_SERVICE_NAME", "reads-eu")]);
        assert_eq!(
            named.map(|s| s.map(|s| s.service_name)),
            Ok(Some("reads-eu".into()))
        );
    }

    #[test]
    fn the_traces_endpoint_wins_over_the_general_one() {
        let chosen = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://traces:4317"),
        ]);
        assert_eq!(
            chosen.map(|s| s.map(|s| s.endpoint)),
            Ok(Some("https://traces:4317".into()))
        );
    }

    #[test]
    fn an_endpoint_that_is_not_an_http_url_is_a_config_error() {
        for bad in [
            "collector:4317",
            "grpc://collector:4317",
            "http://",
            "not a url",
        ] {
            let err = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", bad)])
                .expect_err(&format!("{bad:?} was accepted"));
            assert_eq!(err.name, "OTEL_EXPORTER_OTLP_ENDPOINT", "{bad:?}");
            assert!(!err.to_string().contains('\n'), "one line: {err}");
        }
        let err = settings(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "localhost")]);
        assert_eq!(
            err.map_err(|e| e.name),
            Err("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT".to_owned())
        );
    }

    #[test]
    fn only_the_grpc_protocol_is_accepted() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317");
        assert!(matches!(
            settings(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]),
            Ok(Some(_))
        ));
        for name in [
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        ] {
            let err = settings(&[endpoint, (name, "http/protobuf")]);
            assert_eq!(err.map_err(|e| e.name), Err(name.to_owned()));
        }
    }

    #[test]
    fn init_reports_a_bad_endpoint_instead_of_starting() {
        let env = Env::from_pairs([("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")]);
        let err = init(&env, "tasklog-query").map(|_| ()).map_err(|e| e.name);
        assert_eq!(err, Err("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned()));
    }

    #[test]
    fn a_traceparent_is_read_from_the_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            axum::http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        let cx = TraceContextPropagator::new().extract(&HeaderExtractor(&headers));
        use opentelemetry::trace::TraceContextExt as _;
        let remote = cx.span().span_context().clone();
        assert!(remote.is_remote() && remote.is_valid());
        assert_eq!(
            remote.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(remote.span_id().to_string(), "00f067aa0ba902b7");
    }
}
