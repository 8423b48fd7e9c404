//! A seeded pseudo-random generator: the property tests seed it so every
//! run walks the same schedules (a failure is reproducible); the fetch
//! session cache seeds it from the composition root's entropy to pick ids.
//! Not for secrets.

pub(crate) struct Seeded(u64);

impl Seeded {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A number in `0..m` (`m` at least 1).
    pub(crate) fn below(&mut self, m: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % m
    }
}
