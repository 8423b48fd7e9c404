//! Any bytes as a segment file on disk: recovery keeps a valid prefix, never
//! panics, and everything it then serves is valid batches.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sediment::log::check_recovery_of(data);
});
