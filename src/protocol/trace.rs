//! A request's trace: its span, and the instants the connection and the
//! handler saw it pass. The writer finishes it once the response is out:
//! a request over `slow_request_threshold_ms` is logged and counted.

use std::time::Duration;

use tokio::time::Instant;

use super::timing::{millis, Timeline, Timings, Waits};
use super::ResponseFuture;
use crate::broker::Broker;
use crate::metrics::ApiLabels;

/// The target of request spans and of the slow-request log.
pub const REQUEST_TARGET: &str = "sediment::request";

/// How a request frame arrived, as the connection read it.
#[derive(Clone, Copy, Debug)]
pub struct Arrival {
    /// Its length prefix was read.
    pub at: Instant,
    /// Waiting for a share of `max_request_memory_bytes`.
    pub memory_wait: Duration,
    /// Its whole frame was read.
    pub read: Instant,
}

/// A request handed to the connection's writer: its response to come,
/// and its trace.
pub struct Queued {
    pub response: ResponseFuture,
    pub trace: RequestTrace,
}

/// One request's span and the instants it passed, finished by the writer
/// once the response is out: a request over `slow_request_threshold_ms`
/// is logged and counted there.
pub struct RequestTrace {
    span: tracing::Span,
    api: &'static str,
    request_bytes: usize,
    arrival: Arrival,
    handled: Instant,
}

/// The writer's side of a request: when it began to wait for the
/// response, when the response was complete, and when it was written.
#[derive(Clone, Copy, Debug)]
pub struct Written {
    pub dequeued: Instant,
    pub completed: Instant,
    pub written: Instant,
    pub response_bytes: usize,
    pub waits: Waits,
    pub throttle_ms: i32,
}

impl RequestTrace {
    pub(super) fn new(span: tracing::Span, api: &'static str, request_bytes: usize, arrival: Arrival, handled: Instant) -> Self {
        Self {
            span,
            api,
            request_bytes,
            arrival,
            handled,
        }
    }

    /// Logs the request at INFO with its timings if it was slow.
    pub fn finish(self, broker: &Broker, out: Written) {
        let timeline = Timeline {
            arrived: self.arrival.at,
            memory_wait: self.arrival.memory_wait,
            read: self.arrival.read,
            handled: self.handled,
            dequeued: out.dequeued,
            completed: out.completed,
            written: out.written,
        };
        let t = Timings::of(&timeline, out.waits);
        if !t.is_slow(Duration::from_millis(broker.config.slow_request_threshold_ms)) {
            return;
        }
        broker.metrics.slow_requests.get_or_create(&ApiLabels { api: self.api }).inc();
        tracing::info!(
            target: REQUEST_TARGET,
            parent: &self.span,
            total_ms = millis(t.total()),
            memory_wait_ms = millis(t.memory_wait),
            read_ms = millis(t.read),
            local_ms = millis(t.local),
            fsync_ms = millis(t.fsync),
            replication_ms = millis(t.replication),
            wait_ms = millis(t.by_design),
            response_queue_ms = millis(t.response_queue),
            response_write_ms = millis(t.response_write),
            request_bytes = self.request_bytes,
            response_bytes = out.response_bytes,
            throttle_ms = out.throttle_ms,
            "slow request"
        );
    }
}
