//! Relay frames: decoding arbitrary bytes never panics, and whatever decodes re-encodes to bytes
//! that decode to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muxagent_proto::envelope::Decoded;
use muxagent_proto::frame::Frame;

fuzz_target!(|data: &[u8]| {
    if let Ok(Decoded::Known(frame)) = Frame::decode(data) {
        assert_eq!(Frame::decode(&frame.encode()), Ok(Decoded::Known(frame)));
    }
});
