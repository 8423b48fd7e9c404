//! Any bytes as the Iceberg files a commit reads back from the bucket (the
//! first byte picks which): table metadata JSON, a manifest list, or a
//! manifest (Avro). A damaged file must give an error, which makes the
//! commit rebuild the table; never a panic or an abort.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sediment::iceberg::table::{parse_live_entries, parse_manifest_list, parse_metadata};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => drop(parse_metadata(bytes)),
        1 => drop(parse_manifest_list(bytes)),
        _ => drop(parse_live_entries(bytes)),
    }
});
