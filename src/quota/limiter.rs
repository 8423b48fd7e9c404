//! Measures what each client uses against its quota and says how long it
//! must be throttled. A token bucket per (kind, user, client id) budget:
//! it fills at the quota's rate up to one burst's worth and each request
//! draws on it; a budget in debt is throttled until the debt is paid back,
//! so a client that waits as told gets exactly its quota over time. Pure:
//! the time comes in.

use std::collections::HashMap;

use super::entity::QuotaKind;
use super::index::Applied;

/// Longest throttle one response asks for: an hour. Below it a throttle is
/// exactly the time the debt takes to pay back, as in Kafka (which does not
/// cap byte-rate throttles); only a quota far below one request's size
/// gets here.
pub const MAX_THROTTLE_MS: i64 = 3_600_000;

/// Budgets kept at most. Idle ones (full again) are dropped first; past
/// the bound, new budgets share one, which can only throttle more.
pub const MAX_BUDGETS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BudgetKey {
    kind: QuotaKind,
    user: String,
    client: String,
}

#[derive(Debug, Clone)]
struct Bucket {
    /// Units that may still be used now; negative in debt.
    balance: f64,
    updated_ms: i64,
    /// The limit last applied, to tell when an idle bucket is full.
    limit_per_second: f64,
}

impl Bucket {
    fn refill(&mut self, now_ms: i64, per_second: f64, burst_ms: i64) {
        let capacity = per_second * burst_ms as f64 / 1000.0;
        let elapsed = (now_ms - self.updated_ms).max(0) as f64;
        self.balance = (self.balance + per_second * elapsed / 1000.0).min(capacity);
        self.updated_ms = self.updated_ms.max(now_ms);
        self.limit_per_second = per_second;
    }

    fn throttle_ms(&self) -> i64 {
        if self.balance >= 0.0 || self.limit_per_second <= 0.0 {
            return 0;
        }
        let ms = (-self.balance / self.limit_per_second * 1000.0).ceil();
        (ms as i64).clamp(0, MAX_THROTTLE_MS)
    }

    fn is_full(&self, now_ms: i64, burst_ms: i64) -> bool {
        let elapsed = (now_ms - self.updated_ms).max(0) as f64;
        self.balance + self.limit_per_second * elapsed / 1000.0 >= self.limit_per_second * burst_ms as f64 / 1000.0
    }
}

/// Every budget in use, bounded by `MAX_BUDGETS`.
#[derive(Debug)]
pub struct Limiter {
    buckets: HashMap<BudgetKey, Bucket>,
    /// How much a budget may save up: this many milliseconds of its rate.
    burst_ms: i64,
    max_budgets: usize,
    /// Next size at which idle budgets are swept.
    sweep_at: usize,
}

impl Limiter {
    pub fn new(burst_ms: u64) -> Self {
        Self::with_bound(burst_ms, MAX_BUDGETS)
    }

    fn with_bound(burst_ms: u64, max_budgets: usize) -> Self {
        Self {
            buckets: HashMap::new(),
            burst_ms: burst_ms.clamp(1, i64::MAX as u64) as i64,
            max_budgets,
            sweep_at: 1024.min(max_budgets),
        }
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// How long the budget `applied` names must wait now, before using any
    /// more (0 when it is not in debt).
    pub fn owed_ms(&mut self, kind: QuotaKind, applied: Applied, user: &str, client: &str, now_ms: i64) -> i64 {
        self.bucket(kind, applied, user, client, now_ms).throttle_ms()
    }

    /// Draws `amount` units from the budget and returns how long it must
    /// then wait (0 while it stays within its quota).
    pub fn record(&mut self, kind: QuotaKind, applied: Applied, user: &str, client: &str, amount: f64, now_ms: i64) -> i64 {
        let bucket = self.bucket(kind, applied, user, client, now_ms);
        bucket.balance -= amount.max(0.0);
        bucket.throttle_ms()
    }

    fn bucket(&mut self, kind: QuotaKind, applied: Applied, user: &str, client: &str, now_ms: i64) -> &mut Bucket {
        let key = BudgetKey {
            kind,
            user: if applied.by_user { user.to_string() } else { String::new() },
            client: if applied.by_client { client.to_string() } else { String::new() },
        };
        let per_second = kind.units_per_second(applied.limit);
        let key = if self.buckets.contains_key(&key) {
            key
        } else {
            self.make_room(now_ms);
            if self.buckets.len() >= self.max_budgets {
                overflow_key(kind)
            } else {
                key
            }
        };
        let burst_ms = self.burst_ms;
        let bucket = self.buckets.entry(key).or_insert_with(|| Bucket {
            balance: per_second * burst_ms as f64 / 1000.0,
            updated_ms: now_ms,
            limit_per_second: per_second,
        });
        bucket.refill(now_ms, per_second, burst_ms);
        bucket
    }

    /// Drops the budgets that are full again (a new one starts full too)
    /// once the map has grown to `sweep_at`.
    fn make_room(&mut self, now_ms: i64) {
        if self.buckets.len() < self.sweep_at {
            return;
        }
        let burst_ms = self.burst_ms;
        self.buckets.retain(|_, b| !b.is_full(now_ms, burst_ms));
        self.sweep_at = (self.buckets.len() * 2).clamp(1024.min(self.max_budgets), self.max_budgets);
    }
}

/// The one budget new clients share once `MAX_BUDGETS` are in use. No user
/// or client id is empty and contains a NUL, so no real budget has this key.
fn overflow_key(kind: QuotaKind) -> BudgetKey {
    BudgetKey {
        kind,
        user: "\0".into(),
        client: "\0".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BYTES: QuotaKind = QuotaKind::ProducerByteRate;

    fn per_client(limit: f64) -> Applied {
        Applied {
            limit,
            by_user: false,
            by_client: true,
        }
    }

    #[test]
    fn a_client_within_its_quota_is_not_throttled() {
        let mut limiter = Limiter::new(1000);
        // 1000 B/s with 1 s of burst: 100 B every 100 ms never owes.
        for step in 0..100 {
            assert_eq!(limiter.record(BYTES, per_client(1000.0), "u", "c", 100.0, step * 100), 0);
        }
    }

    #[test]
    fn debt_is_throttled_until_paid_back() {
        let mut limiter = Limiter::new(1000);
        // The full burst (1000 B) and 500 B more: 0.5 s of debt.
        assert_eq!(limiter.record(BYTES, per_client(1000.0), "u", "c", 1500.0, 0), 500);
        assert_eq!(limiter.owed_ms(BYTES, per_client(1000.0), "u", "c", 200), 300);
        assert_eq!(limiter.owed_ms(BYTES, per_client(1000.0), "u", "c", 500), 0);
        // Another client id has its own budget; the same one with another
        // user shares it (the quota is per client id).
        assert_eq!(limiter.record(BYTES, per_client(1000.0), "u", "other", 1000.0, 500), 0);
        assert_eq!(limiter.record(BYTES, per_client(1000.0), "v", "c", 1000.0, 500), 1000);
    }

    #[test]
    fn one_response_is_throttled_at_most_max_throttle_ms() {
        let mut limiter = Limiter::new(1000);
        assert_eq!(limiter.record(BYTES, per_client(1.0), "u", "c", 1e9, 0), MAX_THROTTLE_MS);
        assert_eq!(limiter.owed_ms(BYTES, per_client(1.0), "u", "c", 7_200_000), MAX_THROTTLE_MS);
    }

    #[test]
    fn request_percentage_counts_microseconds() {
        let mut limiter = Limiter::new(1000);
        let quarter = per_client(25.0);
        // 25 % of a thread: 250 ms of handling per second, 250 ms of burst.
        let kind = QuotaKind::RequestPercentage;
        assert_eq!(limiter.record(kind, quarter, "u", "c", 250_000.0, 0), 0);
        assert_eq!(limiter.record(kind, quarter, "u", "c", 25_000.0, 0), 100);
    }

    #[test]
    fn budgets_are_bounded_and_idle_ones_swept() {
        let mut limiter = Limiter::with_bound(1000, 4);
        for c in 0..4 {
            limiter.record(BYTES, per_client(10.0), "u", &c.to_string(), 100.0, 0);
        }
        assert_eq!(limiter.len(), 4);
        // All four are in debt: the fifth client shares the overflow budget.
        assert!(limiter.record(BYTES, per_client(10.0), "u", "new", 5.0, 0) == 0);
        assert!(limiter.record(BYTES, per_client(10.0), "u", "newer", 10.0, 0) > 0);
        assert_eq!(limiter.len(), 5);
        // Much later every budget is full again and is dropped.
        limiter.record(BYTES, per_client(10.0), "u", "late", 1.0, 1_000_000);
        assert_eq!(limiter.len(), 1);
    }

    /// A client that sends whenever it is not throttled, and waits as
    /// told when it is, gets its quota over time: what it sent by the end
    /// is at most the rate times the time plus one burst and one request,
    /// and (sending more than its quota would allow) within 10 % of it.
    #[test]
    fn an_obedient_client_gets_its_quota() {
        let mut rng = crate::seeded::Seeded::new(3);
        for _ in 0..200 {
            let rate = 1_000.0 + rng.below(10_000_000) as f64;
            // Each request is a share of one second's quota: sent every
            // millisecond, that is more than the quota.
            let request = (rate * (1 + rng.below(100)) as f64 / 100.0).max(1.0);
            let end = 1000 * (5 + rng.below(55)) as i64;
            let mut limiter = Limiter::new(1000);
            let (mut now, mut sent) = (0i64, 0f64);
            while now < end {
                sent += request;
                let wait = limiter.record(BYTES, per_client(rate), "u", "c", request, now);
                now += wait.max(1);
            }
            let allowed = rate * end as f64 / 1000.0;
            assert!(
                sent <= allowed + rate + request,
                "rate {rate}, request {request}: sent {sent}, allowed {allowed}"
            );
            assert!(
                sent >= allowed * 0.9,
                "rate {rate}, request {request}: sent {sent}, allowed {allowed}"
            );
        }
    }
}
