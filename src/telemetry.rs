//! Where traces go: the text log on stderr, filtered by `RUST_LOG`, and,
//! when `otlp_endpoint` is set, request spans exported over OTLP/HTTP.
//! The composition root (main) installs it once, before the runtime.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::Level;
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::{Config, OtlpProtocol};
use crate::protocol::REQUEST_TARGET;

/// How long an export may take before it is given up (and its spans dropped).
const EXPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The installed exporter, if any: shut it down after the runtime has
/// stopped, so the spans still queued are sent.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown() {
                eprintln!("sediment: exporting the last spans failed: {e}");
            }
        }
    }
}

/// Installs the text log at `default_level` (unless `RUST_LOG` says
/// otherwise) and, for a broker with `otlp_endpoint`, the span exporter.
pub fn init(default_level: &str, broker: Option<&Config>) -> Result<Telemetry, String> {
    let log_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| default_level.into());
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colours only on a terminal: log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(log_filter);
    let provider = match broker.and_then(|c| c.otlp_endpoint.as_deref().map(|e| (c, e))) {
        Some((config, endpoint)) => Some(provider(config, endpoint)?),
        None => None,
    };
    let export = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("sediment"))
            // Each request is a trace of its own; the events inside it at
            // INFO and above (the slow-request line among them) are its span
            // events. Connection spans, which live for hours, are not sent.
            .with_filter(filter_fn(|meta| {
                if meta.is_span() {
                    meta.target() == REQUEST_TARGET
                } else {
                    *meta.level() <= Level::INFO
                }
            }))
    });
    tracing_subscriber::registry()
        .with(log)
        .with(export)
        .try_init()
        .map_err(|e| format!("cannot install the log: {e}"))?;
    Ok(Telemetry { provider })
}

fn provider(config: &Config, endpoint: &str) -> Result<SdkTracerProvider, String> {
    let protocol = match config.otlp_protocol {
        OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
        OtlpProtocol::HttpJson => Protocol::HttpJson,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot export spans to {endpoint}: {e}"))?;
    let resource = Resource::builder()
        .with_service_name("sediment")
        .with_attribute(KeyValue::new("service.instance.id", config.broker_id.to_string()))
        .with_attribute(KeyValue::new("sediment.cluster", config.cluster.clone()))
        .build();
    // The batch processor holds at most 2,048 spans (OTEL_BSP_MAX_QUEUE_SIZE)
    // and drops the rest while the collector is slow or away.
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::TraceIdRatioBased(config.otlp_sample_ratio))
        .with_resource(resource)
        .build())
}
