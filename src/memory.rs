//! Broker-wide budgets of bytes. One bounds what Fetch responses may hold
//! between being read from the log and being handed to the socket: a slow
//! reader's unsent responses keep their share until written, so however many
//! readers stall, responses never hold more than the budget (Kafka avoids the
//! problem by sending from the page cache; we hold bytes, so we count them).
//! The other bounds request frames being read and handled (Kafka's
//! queued.max.request.bytes): a connection waits for a share before it reads
//! more of a request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Smallest share worth handing out: less than this, and a reader would
/// fetch a batch only to find it cannot keep it.
const MIN_GRANT: usize = 64 * 1024;

pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
    released: Notify,
}

/// Bytes taken from a budget, given back on drop.
pub struct Reservation {
    budget: Option<Arc<MemoryBudget>>,
    bytes: usize,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
            released: Notify::new(),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// A reservation of nothing yet, to grow.
    pub fn empty(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: Some(self.clone()),
            bytes: 0,
        }
    }

    /// Takes up to `want` bytes, as much as is free now, but nothing if less
    /// than `min(want, 64 KiB)` is free.
    pub fn reserve_up_to(self: &Arc<Self>, want: usize) -> Reservation {
        let mut reservation = Reservation {
            budget: Some(self.clone()),
            bytes: 0,
        };
        let floor = want.min(MIN_GRANT);
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            let grant = want.min(self.limit.saturating_sub(used));
            if grant == 0 || grant < floor {
                return reservation;
            }
            match self
                .used
                .compare_exchange_weak(used, used + grant, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    reservation.bytes = grant;
                    return reservation;
                }
                Err(now) => used = now,
            }
        }
    }

    /// Adds exactly `more` bytes to `reservation`, or nothing.
    pub fn try_grow(&self, reservation: &mut Reservation, more: usize) -> bool {
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            if used.saturating_add(more) > self.limit {
                return false;
            }
            match self
                .used
                .compare_exchange_weak(used, used + more, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    reservation.bytes += more;
                    return true;
                }
                Err(now) => used = now,
            }
        }
    }

    /// Adds exactly `more` bytes to `reservation`, waiting until they are
    /// free. `more` must not exceed the limit.
    pub async fn grow(&self, reservation: &mut Reservation, more: usize) {
        loop {
            let released = self.released();
            tokio::pin!(released);
            released.as_mut().enable();
            if self.try_grow(reservation, more) {
                return;
            }
            released.await;
        }
    }

    /// Adds `more` bytes whether or not they are free: for a single batch
    /// larger than the whole budget, which could otherwise never be served.
    pub fn force_grow(&self, reservation: &mut Reservation, more: usize) {
        self.used.fetch_add(more, Ordering::AcqRel);
        reservation.bytes += more;
    }

    /// Completes when some reservation is given back (register before
    /// checking, as with any `Notify`).
    pub fn released(&self) -> tokio::sync::futures::Notified<'_> {
        self.released.notified()
    }

    fn give_back(&self, bytes: usize) {
        if bytes > 0 {
            self.used.fetch_sub(bytes, Ordering::AcqRel);
            self.released.notify_waiters();
        }
    }
}

impl Reservation {
    /// A reservation of nothing, for responses that hold no counted bytes.
    pub fn none() -> Self {
        Self { budget: None, bytes: 0 }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Gives back all but `bytes`.
    pub fn shrink_to(&mut self, bytes: usize) {
        if bytes < self.bytes {
            if let Some(budget) = &self.budget {
                budget.give_back(self.bytes - bytes);
            }
            self.bytes = bytes;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.shrink_to(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_what_is_free_and_takes_it_back_on_drop() {
        let budget = MemoryBudget::new(1 << 20);
        let a = budget.reserve_up_to(700 << 10);
        assert_eq!(a.bytes(), 700 << 10);
        let b = budget.reserve_up_to(700 << 10);
        assert_eq!(b.bytes(), 324 << 10, "the rest of the budget");
        let c = budget.reserve_up_to(700 << 10);
        assert_eq!(c.bytes(), 0, "nothing left");
        drop(a);
        assert_eq!(budget.used(), 324 << 10);
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn refuses_slivers_below_the_floor() {
        let budget = MemoryBudget::new(100 << 10);
        let _a = budget.reserve_up_to(90 << 10);
        assert_eq!(budget.reserve_up_to(1 << 20).bytes(), 0, "10 KiB free is below the 64 KiB floor");
        assert_eq!(budget.reserve_up_to(4 << 10).bytes(), 4 << 10, "a small want is granted whole");
    }

    #[test]
    fn grow_is_all_or_nothing_and_shrink_gives_back() {
        let budget = MemoryBudget::new(1000);
        let mut r = budget.reserve_up_to(600);
        assert!(!budget.try_grow(&mut r, 500));
        assert!(budget.try_grow(&mut r, 400));
        assert_eq!((r.bytes(), budget.used()), (1000, 1000));
        r.shrink_to(100);
        assert_eq!(budget.used(), 100);
        budget.force_grow(&mut r, 5000);
        assert_eq!(budget.used(), 5100, "an oversized batch is served");
        drop(r);
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn grow_waits_for_a_release() {
        let budget = MemoryBudget::new(1000);
        let held = budget.reserve_up_to(900);
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move {
                let mut r = budget.empty();
                budget.grow(&mut r, 500).await;
                r.bytes()
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "only 100 bytes are free");
        drop(held);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, 500);
    }

    #[tokio::test]
    async fn a_release_wakes_waiters() {
        let budget = MemoryBudget::new(1000);
        let r = budget.reserve_up_to(1000);
        let waiter = budget.released();
        tokio::pin!(waiter);
        waiter.as_mut().enable();
        drop(r);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap();
    }
}
