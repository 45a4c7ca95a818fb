//! One tracing set-up for every binary: `RUST_LOG` filters, `LOG_FORMAT`
//! chooses JSON (for machines) or pretty (for people).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
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

/// Installs the global subscriber. Call once, first thing in `main`.
///
/// # Errors
/// When `LOG_FORMAT` or `RUST_LOG` is invalid.
pub fn init(env: &Env) -> Result<(), ConfigError> {
    let format = log_format(env)?;
    let filter = EnvFilter::try_new(env.get("RUST_LOG").unwrap_or("info"))
        .map_err(|e| ConfigError::new("RUST_LOG", e.to_string()))?;
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry.with(json_layer(std::io::stdout)).try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().compact())
            .try_init(),
    };
    // A second init (tests start several apps in one process) keeps the first.
    let _ = result;
    Ok(())
}

/// Logs an error with its whole cause chain, for the top of a binary.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
