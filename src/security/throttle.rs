//! Slowing password guessing, and keeping the log readable under attack.
//! Pure: the caller passes the time.

use std::collections::HashMap;
use std::net::IpAddr;

/// Failed authentications per client address. Each failure in a row from
/// one address doubles the delay before its failure is answered (and its
/// connection closed), from `base_ms` up to `max_ms`; a success, or
/// `FORGET_AFTER_MS` without failure, forgets the address.
#[derive(Debug)]
pub struct FailedLogins {
    base_ms: u64,
    max_ms: u64,
    by_address: HashMap<IpAddr, (u32, i64)>,
}

/// Addresses remembered at most; past it the quiet ones are forgotten.
const MAX_ADDRESSES: usize = 100_000;
const FORGET_AFTER_MS: i64 = 60_000;

impl FailedLogins {
    pub fn new(base_ms: u64, max_ms: u64) -> Self {
        Self {
            base_ms,
            max_ms: max_ms.max(base_ms),
            by_address: HashMap::new(),
        }
    }

    /// Records a failure; returns how long to wait before answering it.
    pub fn failed(&mut self, address: IpAddr, now_ms: i64) -> u64 {
        if self.by_address.len() >= MAX_ADDRESSES {
            self.by_address.retain(|_, (_, last)| now_ms - *last < FORGET_AFTER_MS);
            if self.by_address.len() >= MAX_ADDRESSES {
                self.by_address.clear();
            }
        }
        let entry = self.by_address.entry(address).or_insert((0, now_ms));
        if now_ms - entry.1 >= FORGET_AFTER_MS {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now_ms;
        let doublings = entry.0.saturating_sub(1).min(20);
        self.base_ms.saturating_mul(1 << doublings).min(self.max_ms)
    }

    pub fn succeeded(&mut self, address: IpAddr) {
        self.by_address.remove(&address);
    }
}

/// At most `per_second` log lines of one kind a second; the rest are
/// counted and reported with the next line that gets through.
#[derive(Debug, Default)]
pub struct LogLimiter {
    second: i64,
    logged: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// `Some(suppressed since the last line)` when this line may be logged.
    pub fn admit(&mut self, now_ms: i64, per_second: u32) -> Option<u64> {
        let second = now_ms.div_euclid(1000);
        if second != self.second {
            self.second = second;
            self.logged = 0;
        }
        if self.logged >= per_second {
            self.suppressed += 1;
            return None;
        }
        self.logged += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_in_a_row_double_the_delay_up_to_the_cap() {
        let mut f = FailedLogins::new(100, 1000);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let delays: Vec<u64> = (0..6).map(|i| f.failed(a, i)).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(f.failed(b, 10), 100, "another address is not slowed");
        f.succeeded(a);
        assert_eq!(f.failed(a, 20), 100);
        assert_eq!(f.failed(a, 20 + FORGET_AFTER_MS), 100, "a quiet minute forgets");
        for i in 0..1000 {
            f.failed(a, i);
        }
        assert_eq!(f.failed(a, 2000), 1000);
    }

    #[test]
    fn the_address_table_stays_bounded() {
        let mut f = FailedLogins::new(1, 2);
        for i in 0..(MAX_ADDRESSES as u32 + 10) {
            f.failed(IpAddr::from(i.to_be_bytes()), 0);
        }
        assert!(f.by_address.len() <= MAX_ADDRESSES);
    }

    #[test]
    fn log_lines_are_limited_per_second_and_report_what_was_dropped() {
        let mut l = LogLimiter::default();
        assert_eq!(l.admit(0, 2), Some(0));
        assert_eq!(l.admit(1, 2), Some(0));
        assert_eq!(l.admit(2, 2), None);
        assert_eq!(l.admit(3, 2), None);
        assert_eq!(l.admit(1000, 2), Some(2));
    }
}
