//! Any bytes as a request frame: decoding returns an error or a request,
//! never panics or aborts.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sediment::protocol::decode_request(bytes::Bytes::copy_from_slice(data));
});
