//! Client quotas (Kafka's `producer_byte_rate`, `consumer_byte_rate`,
//! `request_percentage`, `controller_mutation_rate`): what is set
//! (`entity`, kept with the security state in the coordination store),
//! which setting applies to a request (`index`), and how much a client has
//! used (`limiter`). A client over its quota is throttled as in Kafka
//! (KIP-219): its response carries `throttle_time_ms`, and the broker reads
//! nothing more from its connection for that long.

pub mod entity;
pub mod index;
pub mod limiter;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub use entity::{QuotaEntity, QuotaKind, QuotaSetting, QuotaSettings};
pub use index::QuotaIndex;
use limiter::Limiter;

use crate::metrics::{Metrics, QuotaLabels};

/// The broker's quota accounting: one limiter behind a mutex taken only
/// for requests some quota applies to, for a few hash lookups.
pub struct Quotas {
    limiter: Mutex<Limiter>,
}

/// Who a request is from, as quotas see it: the principal's name (`alice`
/// for `User:alice`) and the client id.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    pub user: &'a str,
    pub client_id: &'a str,
}

impl Quotas {
    pub fn new(burst_ms: u64) -> Self {
        Self {
            limiter: Mutex::new(Limiter::new(burst_ms)),
        }
    }

    /// Milliseconds `client` must wait before its `kind` budget allows more
    /// (0 without a quota of that kind, or within it).
    pub fn owed_ms(&self, index: &QuotaIndex, kind: QuotaKind, client: Client<'_>, now_ms: i64) -> i32 {
        let Some(applied) = index.resolve(kind, client.user, client.client_id) else {
            return 0;
        };
        self.limiter.lock().owed_ms(kind, applied, client.user, client.client_id, now_ms) as i32
    }

    /// Draws `amount` from `client`'s `kind` budget; returns how long it
    /// must then wait.
    pub fn record(&self, index: &QuotaIndex, kind: QuotaKind, client: Client<'_>, amount: f64, now_ms: i64, metrics: &Metrics) -> i32 {
        let Some(applied) = index.resolve(kind, client.user, client.client_id) else {
            return 0;
        };
        let mut limiter = self.limiter.lock();
        let throttle = limiter.record(kind, applied, client.user, client.client_id, amount, now_ms) as i32;
        metrics.quota_budgets.set(limiter.len() as i64);
        throttle
    }

    /// The most a fetch may return in one response: one burst of the
    /// client's consumer quota, so a single response never owes more than
    /// that (Kafka caps fetch sizes by its quota window the same way).
    pub fn fetch_cap(&self, index: &QuotaIndex, client: Client<'_>, burst_ms: u64) -> Option<usize> {
        let applied = index.resolve(QuotaKind::ConsumerByteRate, client.user, client.client_id)?;
        Some((applied.limit * burst_ms as f64 / 1000.0).max(1.0) as usize)
    }
}

/// Counts a throttle in the metrics, under the quota that caused it.
pub fn count_throttle(metrics: &Metrics, kind: QuotaKind, throttle_ms: i32) {
    if throttle_ms <= 0 {
        return;
    }
    let labels = QuotaLabels { quota: kind.name() };
    metrics.quota_throttled.get_or_create(&labels).inc();
    metrics
        .quota_throttle_seconds
        .get_or_create(&labels)
        .inc_by(f64::from(throttle_ms) / 1000.0);
}

/// A future that adds up the time spent inside its `poll` calls: the time
/// a request keeps an async worker busy, not the time it waits (a long
/// poll, a rebalance, a fsync), which is what `request_percentage` limits.
pub struct Busy<F> {
    inner: Pin<Box<F>>,
    busy: Duration,
}

impl<F: Future> Busy<F> {
    pub fn new(inner: F) -> Self {
        Self {
            inner: Box::pin(inner),
            busy: Duration::ZERO,
        }
    }
}

impl<F: Future> Future for Busy<F> {
    type Output = (F::Output, Duration);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let started = Instant::now();
        let polled = this.inner.as_mut().poll(cx);
        this.busy += started.elapsed();
        polled.map(|out| (out, this.busy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn busy_time_leaves_out_waiting() {
        let (out, busy) = Busy::new(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            7
        })
        .await;
        assert_eq!(out, 7);
        assert!(busy < Duration::from_secs(1), "{busy:?}");
    }
}
