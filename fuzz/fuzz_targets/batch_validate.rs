//! Any bytes as the records of a produce request: validation accepts only
//! well-formed batches and never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let records = bytes::Bytes::copy_from_slice(data);
    if let Ok(batches) = sediment::log::batch::split_batches(&records) {
        let total: usize = batches.iter().map(|(h, b)| {
            assert_eq!(h.total_len(), b.len());
            b.len()
        }).sum();
        assert_eq!(total, records.len());
    }
});
