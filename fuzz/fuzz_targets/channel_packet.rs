//! E2E channel packets: decoding arbitrary bytes never panics, and whatever decodes re-encodes
//! to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muxagent_proto::noise::packet;

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = packet::decode(data) {
        assert_eq!(decoded.encode().as_deref(), Ok(data));
    }
});
