//! Fuzz target for the store's record decoder (`muxagent_store::decode_record`): arbitrary bytes
//! must decode or be refused without panicking, and anything accepted must re-encode to exactly
//! the bytes it was decoded from. Decodes records back to back, as a segment scan does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muxagent_store::{decode_record, encode_record};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut again = Vec::new();
    while let Ok((record, used)) = decode_record(rest) {
        assert!(used > 0 && used <= rest.len());
        again.clear();
        encode_record(record.seq, record.payload, &mut again).expect("a decoded record re-encodes");
        assert_eq!(&again[..], &rest[..used]);
        rest = &rest[used..];
    }
});
