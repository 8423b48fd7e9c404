//! Any bytes as a compacted partition's segment: a cleaning pass never
//! panics, a failed pass changes nothing, and a pass keeps each key's latest
//! record at its offset while serving nothing that was not there before.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sediment::log::compaction::check_cleaning_of(data);
});
