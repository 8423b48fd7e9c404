//! Prometheus metrics, served as text on the HTTP port's `/metrics`.
//! Names and labels are listed in docs/operations.md.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LagLabels {
    pub group: String,
    pub topic: String,
    pub partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~26 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<ApiLabels, Counter>,
    pub produce_errors: Family<ApiLabels, Counter>,
    pub request_duration: Family<ApiLabels, Histogram, fn() -> Histogram>,
    pub bytes_in: Family<TopicLabels, Counter>,
    pub bytes_out: Family<TopicLabels, Counter>,
    pub records_in: Family<TopicLabels, Counter>,
    pub connections: Gauge,
    pub connections_total: Counter,
    pub protocol_errors: Family<KindLabels, Counter>,
    pub fsync_duration: Histogram,
    pub recovery_truncated_bytes: Counter,
    pub log_end_offset: Family<PartitionLabels, Gauge>,
    pub log_start_offset: Family<PartitionLabels, Gauge>,
    pub high_watermark: Family<PartitionLabels, Gauge>,
    pub log_size_bytes: Family<PartitionLabels, Gauge>,
    pub log_segments: Family<PartitionLabels, Gauge>,
    pub group_lag: Family<LagLabels, Gauge>,
    pub group_members: Family<GroupLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sediment");
        let m = Self {
            requests: Family::default(),
            produce_errors: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            records_in: Family::default(),
            connections: Gauge::default(),
            connections_total: Counter::default(),
            protocol_errors: Family::default(),
            fsync_duration: latency_histogram(),
            recovery_truncated_bytes: Counter::default(),
            log_end_offset: Family::default(),
            log_start_offset: Family::default(),
            high_watermark: Family::default(),
            log_size_bytes: Family::default(),
            log_segments: Family::default(),
            group_lag: Family::default(),
            group_members: Family::default(),
            registry: Registry::default(),
        };
        registry.register("requests", "Kafka requests handled, by API", m.requests.clone());
        registry.register(
            "produce_errors",
            "Produce partitions answered with an error code",
            m.produce_errors.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its response, by API",
            m.request_duration.clone(),
        );
        registry.register("produce_bytes", "Record batch bytes appended, by topic", m.bytes_in.clone());
        registry.register(
            "fetch_bytes",
            "Record batch bytes served to fetchers, by topic",
            m.bytes_out.clone(),
        );
        registry.register("produce_records", "Records appended, by topic", m.records_in.clone());
        registry.register("connections", "Open Kafka connections", m.connections.clone());
        registry.register("connections_opened", "Kafka connections accepted", m.connections_total.clone());
        registry.register(
            "protocol_errors",
            "Connections closed for bad frames, by kind",
            m.protocol_errors.clone(),
        );
        registry.register(
            "fsync_duration_seconds",
            "Duration of log fsyncs (group commits)",
            m.fsync_duration.clone(),
        );
        registry.register(
            "recovery_truncated_bytes",
            "Bytes cut from torn segment tails at startup",
            m.recovery_truncated_bytes.clone(),
        );
        registry.register(
            "log_end_offset",
            "Next offset to be written, per partition",
            m.log_end_offset.clone(),
        );
        registry.register("log_start_offset", "First offset held, per partition", m.log_start_offset.clone());
        registry.register(
            "high_watermark",
            "Offset below which records are durable and readable",
            m.high_watermark.clone(),
        );
        registry.register("log_size_bytes", "Bytes of the local log, per partition", m.log_size_bytes.clone());
        registry.register("log_segments", "Segments of the local log, per partition", m.log_segments.clone());
        registry.register("consumer_group_lag", "High watermark minus committed offset", m.group_lag.clone());
        registry.register("consumer_group_members", "Members of each consumer group", m.group_members.clone());
        Self { registry, ..m }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
