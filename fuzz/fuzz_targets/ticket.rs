//! Pairing links: parsing arbitrary text never panics, and a ticket that parses re-encodes to a
//! link that parses to the same ticket.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muxagent_proto::ticket::Ticket;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ticket) = Ticket::from_link(text, 0) {
        assert_eq!(Ticket::from_link(&ticket.link(), 0), Ok(ticket));
    }
});
