//! Where a request's time went: its phases from the length prefix to the
//! last byte of its response, for the slow-request log. Pure: the
//! connection and the handlers take the instants and hand them in.

use std::time::Duration;

use tokio::time::Instant;

/// What a handler waited for, reported with its response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Waits {
    /// Produce: the local fsync of the appended batches.
    pub fsync: Duration,
    /// Produce with acks=all: the in-sync replicas, beyond the local fsync.
    pub replication: Duration,
    /// Waiting the client asked for: a Fetch's long poll for data, a
    /// JoinGroup or SyncGroup held until its rebalance completes. Not slow.
    pub by_design: Duration,
}

/// The instants a request passed, in order, as the connection saw them.
#[derive(Clone, Copy, Debug)]
pub struct Timeline {
    /// Its length prefix was read.
    pub arrived: Instant,
    /// Waiting for a share of `max_request_memory_bytes`, between `arrived`
    /// and `read`.
    pub memory_wait: Duration,
    /// Its whole frame was read.
    pub read: Instant,
    /// Its handler's first step returned (the append, for Produce; the
    /// whole answer for most APIs).
    pub handled: Instant,
    /// The writer began to wait for its response: responses to earlier
    /// requests on the connection were out.
    pub dequeued: Instant,
    /// Its response was complete.
    pub completed: Instant,
    /// Its response was written to the socket.
    pub written: Instant,
}

/// A request's time by phase; the phases add up to `total`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timings {
    pub memory_wait: Duration,
    /// Receiving the frame's body.
    pub read: Duration,
    /// Handling: decoding, validating, appending, reading, encoding.
    pub local: Duration,
    pub fsync: Duration,
    pub replication: Duration,
    pub by_design: Duration,
    /// Waiting behind earlier responses on the connection.
    pub response_queue: Duration,
    pub response_write: Duration,
}

impl Timings {
    /// Splits a request's timeline. The handler's waits fall inside its
    /// handling and completion; what is left of those two is local work.
    pub fn of(timeline: &Timeline, waits: Waits) -> Self {
        let span = |from: Instant, to: Instant| to.saturating_duration_since(from);
        let handling = span(timeline.read, timeline.handled) + span(timeline.dequeued, timeline.completed);
        let read = span(timeline.arrived, timeline.read);
        Self {
            memory_wait: timeline.memory_wait.min(read),
            read: read.saturating_sub(timeline.memory_wait),
            local: handling.saturating_sub(waits.fsync + waits.replication + waits.by_design),
            fsync: waits.fsync,
            replication: waits.replication,
            by_design: waits.by_design,
            response_queue: span(timeline.handled, timeline.dequeued),
            response_write: span(timeline.completed, timeline.written),
        }
    }

    pub fn total(&self) -> Duration {
        self.memory_wait
            + self.read
            + self.local
            + self.fsync
            + self.replication
            + self.by_design
            + self.response_queue
            + self.response_write
    }

    /// The time `slow_request_threshold_ms` is compared with: all of it
    /// but the waiting the client asked for.
    pub fn counted(&self) -> Duration {
        self.total().saturating_sub(self.by_design)
    }

    /// Over the threshold (a threshold of 0 takes every request).
    pub fn is_slow(&self, threshold: Duration) -> bool {
        threshold.is_zero() || self.counted() > threshold
    }
}

/// Milliseconds with microsecond precision, for log fields.
pub fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn timeline(steps: [u64; 5], memory_wait: u64) -> Timeline {
        let t0 = Instant::now();
        let mut at = t0;
        let mut next = |d: u64| {
            at += ms(d);
            at
        };
        Timeline {
            arrived: t0,
            memory_wait: ms(memory_wait),
            read: next(steps[0]),
            handled: next(steps[1]),
            dequeued: next(steps[2]),
            completed: next(steps[3]),
            written: next(steps[4]),
        }
    }

    #[test]
    fn phases_add_up_to_the_whole_request() {
        // read 7 (2 of them for memory), handle 10, queue 3, complete 40, write 5
        let waits = Waits {
            fsync: ms(15),
            replication: ms(20),
            by_design: ms(0),
        };
        let t = Timings::of(&timeline([7, 10, 3, 40, 5], 2), waits);
        assert_eq!(t.memory_wait, ms(2));
        assert_eq!(t.read, ms(5));
        assert_eq!(t.local, ms(15), "10 handling + 40 completing - 35 waiting");
        assert_eq!(t.response_queue, ms(3));
        assert_eq!(t.response_write, ms(5));
        assert_eq!(t.total(), ms(65));
        assert_eq!(t.counted(), ms(65));
    }

    #[test]
    fn a_long_poll_is_not_slow_but_its_work_is() {
        let poll = Waits {
            by_design: ms(500),
            ..Waits::default()
        };
        let idle = Timings::of(&timeline([0, 501, 0, 0, 0], 0), poll);
        assert_eq!(idle.total(), ms(501));
        assert_eq!(idle.counted(), ms(1));
        assert!(!idle.is_slow(ms(100)));
        let busy = Timings::of(&timeline([0, 700, 0, 0, 0], 0), poll);
        assert!(busy.is_slow(ms(100)), "200 ms of reading beside the poll");
    }

    #[test]
    fn zero_takes_every_request_and_the_threshold_is_exclusive() {
        let t = Timings::of(&timeline([0, 100, 0, 0, 0], 0), Waits::default());
        assert!(t.is_slow(Duration::ZERO));
        assert!(!t.is_slow(ms(100)));
        assert!(t.is_slow(ms(99)));
    }

    #[test]
    fn waits_larger_than_the_handling_they_were_measured_in_never_underflow() {
        let odd = Waits {
            fsync: ms(1_000),
            ..Waits::default()
        };
        let t = Timings::of(&timeline([1, 1, 1, 1, 1], 50), odd);
        assert_eq!(t.local, Duration::ZERO);
        assert_eq!(t.memory_wait, ms(1));
        assert_eq!(t.read, Duration::ZERO);
    }

    #[test]
    fn millis_keep_microseconds() {
        assert_eq!(millis(Duration::from_micros(1_234_567)), 1234.567);
    }
}
