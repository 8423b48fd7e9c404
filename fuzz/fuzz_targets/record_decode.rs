//! Any bytes as the records of a CRC-valid batch, under every codec: the
//! streaming record walker returns records or an error within its decode
//! bound, never panics, never allocates past the bound, and what it accepts
//! is exactly the claimed number of records with offset deltas 0, 1, 2, ...
#![no_main]
use libfuzzer_sys::fuzz_target;
use sediment::log::batch;
use sediment::log::records::{walk, Fields, Limits};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let codec = (data[0] % 5) as i16;
    let count = u16::from_be_bytes([data[1], data[2]]) as i32;
    let payload = &data[3..];
    let mut b = vec![0u8; batch::HEADER_LEN];
    let length = (batch::HEADER_LEN - batch::LOG_OVERHEAD + payload.len()) as i32;
    b[8..12].copy_from_slice(&length.to_be_bytes());
    b[16] = 2; // magic
    b[21..23].copy_from_slice(&codec.to_be_bytes());
    b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
    b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
    b[57..61].copy_from_slice(&count.to_be_bytes());
    b.extend_from_slice(payload);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    let bytes = bytes::Bytes::from(b);
    let Ok(header) = batch::validate(&bytes) else { return };
    let limits = Limits { max_decoded_bytes: 1 << 20 };
    let mut seen = 0;
    let result = walk(&bytes, &header, limits, Fields::Keep, |r| {
        assert_eq!(r.offset_delta, seen);
        seen += 1;
        Ok(true)
    });
    if result.is_ok() {
        assert_eq!(seen, count);
    }
});
