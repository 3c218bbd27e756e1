//! Machine → device messages: decoding arbitrary bytes never panics, and whatever decodes
//! re-encodes to bytes that decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muxagent_proto::app::MachineMessage;
use muxagent_proto::envelope::Decoded;

fuzz_target!(|data: &[u8]| {
    if let Ok(Decoded::Known(message)) = MachineMessage::decode(data) {
        assert_eq!(MachineMessage::decode(&message.encode()), Ok(Decoded::Known(message)));
    }
});
