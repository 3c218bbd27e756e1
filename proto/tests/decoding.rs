//! Decoders refuse bad input with the right error, and skip what a newer peer may send.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

mod samples;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use muxagent_proto::app::{DeviceMessage, MachineMessage};
use muxagent_proto::envelope::{DecodeError, Decoded};
use muxagent_proto::frame::{
    EntryError, ErrorCode, Frame, Login, RegistryEntry, Role, SignedEntry,
};
use muxagent_proto::identity::SignDomain;
use muxagent_proto::limits::{MAX_FRAME_LEN, MAX_TICKET_TEXT_LEN};
use muxagent_proto::ticket::{Ticket, TicketError};

#[test]
fn unknown_kinds_are_skipped_not_fatal() {
    // The next kind a newer relay may add is skipped like any other unknown one.
    let next = Frame::KINDS.iter().max().map_or(1, |kind| kind + 1);
    for kind in [0u8, next, 200, 255] {
        let bytes = [kind, 1, 2, 3];
        assert_eq!(Frame::decode(&bytes), Ok(Decoded::Unknown { kind }));
    }
    assert_eq!(
        DeviceMessage::decode(&[99, 0]),
        Ok(Decoded::Unknown { kind: 99 })
    );
    assert_eq!(
        MachineMessage::decode(&[99]),
        Ok(Decoded::Unknown { kind: 99 })
    );
}

#[test]
fn empty_and_oversized_are_refused_before_parsing() {
    assert_eq!(Frame::decode(&[]), Err(DecodeError::Empty));
    let huge = vec![8u8; MAX_FRAME_LEN + 1];
    assert_eq!(
        Frame::decode(&huge),
        Err(DecodeError::TooLarge {
            len: MAX_FRAME_LEN + 1,
            max: MAX_FRAME_LEN
        })
    );
}

#[test]
fn a_length_prefix_larger_than_the_frame_is_malformed_not_an_allocation() {
    // Send { to: 32 bytes, payload: length 2^32-1 } with nothing behind the length.
    let mut bytes = vec![8u8];
    bytes.extend_from_slice(&[0u8; 32]);
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(matches!(
        Frame::decode(&bytes),
        Err(DecodeError::Malformed { kind: 8, .. })
    ));
}

#[test]
fn field_rules_are_checked_after_decoding() {
    let machine = samples::identity(2);
    let mut login = Login::sign(&machine, &[1; 32], Role::Machine, None);
    let bytes = Frame::Login(login.clone()).encode();
    assert!(matches!(
        Frame::decode(&bytes),
        Err(DecodeError::Invalid { kind: 2, .. })
    ));
    login.role = Role::Device;
    login.hostname = Some(samples::hostname("laptop"));
    let bytes = Frame::Login(login).encode();
    assert!(matches!(
        Frame::decode(&bytes),
        Err(DecodeError::Invalid { kind: 2, .. })
    ));
}

#[test]
fn input_pages_are_refused_when_their_numbers_do_not_add_up() {
    use muxagent_proto::app::{FetchInput, InputChunk, SessionId};
    use muxagent_proto::limits::{APPROVAL_INPUT_MAX_LEN, INPUT_CHUNK_LEN};
    let max = APPROVAL_INPUT_MAX_LEN as u64;
    let page = |offset: u64, total: u64, len: usize| {
        MachineMessage::from(InputChunk {
            request: 1,
            session: SessionId([1; 16]),
            approval: 2,
            offset,
            total,
            bytes: vec![b'x'; len],
        })
        .encode()
    };
    let refused = |bytes: Vec<u8>| {
        matches!(
            MachineMessage::decode(&bytes),
            Err(DecodeError::Invalid { .. })
        )
    };
    // What a machine sends: a page inside the input, its last page, the end of an empty input.
    for (offset, total, len) in [(0, max, INPUT_CHUNK_LEN), (max - 5, max, 5), (0, 0, 0)] {
        assert!(
            matches!(
                MachineMessage::decode(&page(offset, total, len)),
                Ok(Decoded::Known(_))
            ),
            "{offset} {total} {len}"
        );
    }
    // A page past the end, an offset that wraps, an input longer than a device fetches, a page
    // longer than a page, an empty page before the end.
    assert!(refused(page(10, 12, 3)));
    assert!(refused(page(u64::MAX - 1, u64::MAX, 3)));
    assert!(refused(page(0, max + 1, 1)));
    assert!(refused(page(0, max, INPUT_CHUNK_LEN + 1)));
    assert!(refused(page(3, 10, 0)));
    // A device asks for no offset past the longest input.
    let fetch = |offset: u64| {
        DeviceMessage::from(FetchInput {
            request: 1,
            session: SessionId([1; 16]),
            approval: 2,
            offset,
        })
        .encode()
    };
    assert!(matches!(
        DeviceMessage::decode(&fetch(max)),
        Ok(Decoded::Known(_))
    ));
    assert!(matches!(
        DeviceMessage::decode(&fetch(max + 1)),
        Err(DecodeError::Invalid { .. })
    ));
    assert!(matches!(
        DeviceMessage::decode(&fetch(u64::MAX)),
        Err(DecodeError::Invalid { .. })
    ));
}

#[test]
fn hostnames_with_bidi_or_invisible_characters_are_refused() {
    use muxagent_proto::frame::validate_hostname;
    let machine = samples::identity(2);
    for bad in [
        "al\u{202e}ahp",
        "alpha\u{200b}",
        "\u{2066}alpha",
        "a\u{feff}b",
        "x\u{e0041}",
        "a\tb",
    ] {
        assert!(validate_hostname(bad).is_err(), "{bad:?}");
        let login = Login::sign(
            &machine,
            &[1; 32],
            Role::Machine,
            Some(samples::hostname(bad)),
        );
        assert!(
            matches!(
                Frame::decode(&Frame::Login(login).encode()),
                Err(DecodeError::Invalid { kind: 2, .. })
            ),
            "{bad:?}"
        );
    }
    for good in ["alpha", "büro-pc", "日本", "my box"] {
        assert_eq!(validate_hostname(good), Ok(()), "{good:?}");
    }
}

#[test]
fn login_signature_binds_challenge_role_and_hostname() {
    let machine = samples::identity(2);
    let login = Login::sign(
        &machine,
        &[1; 32],
        Role::Machine,
        Some(samples::hostname("pi")),
    );
    assert_eq!(login.verify(&[1; 32]), Ok(()));
    assert!(login.verify(&[2; 32]).is_err());
    let mut other_role = login.clone();
    other_role.role = Role::PendingMachine;
    assert!(other_role.verify(&[1; 32]).is_err());
    let mut other_host = login;
    other_host.hostname = Some(samples::hostname("p1"));
    assert!(other_host.verify(&[1; 32]).is_err());
}

#[test]
fn unknown_error_codes_survive_as_other() {
    let frame = Frame::Error(muxagent_proto::frame::Error {
        code: ErrorCode::Other(999),
        request: None,
        reason: "from the future".try_into().expect("short"),
    });
    assert_eq!(Frame::decode(&frame.encode()), Ok(Decoded::Known(frame)));
}

fn register_entry(consent_signer: u8) -> RegistryEntry {
    let device = samples::identity(1);
    let machine = samples::identity(2);
    let consent = samples::identity(consent_signer).sign(
        SignDomain::RegistryEntry,
        &RegistryEntry::consent_message(&device.public().fingerprint(), &samples::PAIRING),
    );
    RegistryEntry::RegisterMachine {
        device: device.public(),
        machine: machine.public(),
        hostname: samples::hostname("pi"),
        pairing_id: samples::PAIRING,
        machine_consent: consent,
        at: 1,
    }
}

#[test]
fn registry_entries_verify_author_and_consent() {
    let device = samples::identity(1);
    let signed = SignedEntry::sign(&device, &register_entry(2)).expect("author");
    assert_eq!(signed.verify(), Ok(register_entry(2)));

    // Someone else cannot author the device's entry.
    assert_eq!(
        SignedEntry::sign(&samples::identity(3), &register_entry(2)),
        Err(EntryError::WrongAuthor)
    );
    // A consent by another key than the machine's.
    let forged = SignedEntry::sign(&device, &register_entry(3)).expect("author");
    assert_eq!(forged.verify(), Err(EntryError::BadConsent));
    // A flipped bit anywhere in the entry or the signature.
    let mut tampered = signed.clone();
    let last = tampered.entry.len() - 1;
    tampered.entry[last] ^= 1;
    assert!(tampered.verify().is_err());
    let mut tampered = signed;
    tampered.signature.0.0[0] ^= 1;
    assert_eq!(tampered.verify(), Err(EntryError::BadSignature));
}

const NOW: u64 = 1_800_000_000;

#[test]
fn ticket_link_round_trips() {
    let ticket = samples::ticket();
    let link = ticket.link();
    assert!(link.starts_with("https://relay.example.net/pair#"));
    assert_eq!(Ticket::from_link(&link, NOW), Ok(ticket.clone()));
    assert_eq!(
        Ticket::from_link(&format!("  {link}\n"), NOW),
        Ok(ticket.clone())
    );
    assert_eq!(Ticket::from_link(&ticket.encode(), NOW), Ok(ticket));
}

#[test]
fn expired_tickets_are_refused() {
    let ticket = samples::ticket();
    assert_eq!(
        Ticket::from_link(&ticket.link(), ticket.expires_at),
        Err(TicketError::Expired {
            expires_at: ticket.expires_at,
            now: ticket.expires_at
        })
    );
}

#[test]
fn every_truncation_of_a_ticket_is_refused() {
    let text = samples::ticket().encode();
    for cut in 0..text.len() {
        let error = Ticket::decode(&text[..cut], NOW).expect_err("a cut ticket must not decode");
        assert!(
            matches!(
                error,
                TicketError::Empty
                    | TicketError::Truncated
                    | TicketError::NotBase64
                    | TicketError::Malformed
            ),
            "cut at {cut}: {error:?}"
        );
    }
}

#[test]
fn tampered_tickets_are_refused_or_differ() {
    let ticket = samples::ticket();
    let bytes = URL_SAFE_NO_PAD.decode(ticket.encode()).expect("base64");
    for index in 0..bytes.len() {
        let mut tampered = bytes.clone();
        tampered[index] ^= 0x40;
        match Ticket::decode(&URL_SAFE_NO_PAD.encode(&tampered), NOW) {
            Ok(decoded) => assert_ne!(decoded, ticket, "byte {index} flipped, same ticket"),
            Err(error) => assert!(!error.to_string().is_empty()),
        }
    }
}

#[test]
fn malformed_tickets_get_clear_errors() {
    let ticket = samples::ticket();
    let bytes = URL_SAFE_NO_PAD.decode(ticket.encode()).expect("base64");

    assert_eq!(Ticket::from_link("", NOW), Err(TicketError::Empty));
    assert_eq!(
        Ticket::from_link("https://relay/pair", NOW),
        Err(TicketError::NoFragment)
    );
    assert_eq!(
        Ticket::decode("not*base64", NOW),
        Err(TicketError::NotBase64)
    );
    let long = "A".repeat(MAX_TICKET_TEXT_LEN + 1);
    assert_eq!(
        Ticket::decode(&long, NOW),
        Err(TicketError::TooLong {
            len: MAX_TICKET_TEXT_LEN + 1
        })
    );

    let mut newer = bytes.clone();
    newer[0] = 2;
    assert_eq!(
        Ticket::decode(&URL_SAFE_NO_PAD.encode(&newer), NOW),
        Err(TicketError::UnsupportedVersion(2))
    );
    let mut longer = bytes;
    longer.push(0);
    assert_eq!(
        Ticket::decode(&URL_SAFE_NO_PAD.encode(&longer), NOW),
        Err(TicketError::TrailingBytes)
    );

    let mut ftp = ticket.clone();
    ftp.relay_url = "ftp://relay".try_into().expect("short");
    assert_eq!(
        Ticket::decode(&ftp.encode(), NOW),
        Err(TicketError::BadRelayUrl)
    );
    let mut control = ticket;
    control.hostname = "pi\n".try_into().expect("short");
    assert_eq!(
        Ticket::decode(&control.encode(), NOW),
        Err(TicketError::BadHostname)
    );

    // Messages are one line, for people.
    let message = TicketError::Expired {
        expires_at: 10,
        now: 70,
    }
    .to_string();
    assert_eq!(
        message,
        "the pairing link expired 60 s ago; run `muxagent pair` for a new one"
    );
}

#[test]
fn a_device_presence_names_at_most_the_tracked_channels() {
    use muxagent_proto::frame::DevicePresence;
    use muxagent_proto::limits::RELAY_TRACKED_CHANNELS_PER_CONNECTION;
    use muxagent_proto::noise::ConnectionId;
    let presence = DevicePresence {
        device: samples::fingerprint(1),
        online: false,
        closed: (0..RELAY_TRACKED_CHANNELS_PER_CONNECTION)
            .map(|n| ConnectionId([n as u8; 8]))
            .collect(),
    };
    let bytes = Frame::DevicePresence(presence.clone()).encode();
    assert_eq!(
        Frame::decode(&bytes),
        Ok(Decoded::Known(Frame::DevicePresence(presence)))
    );
    // One id more than the relay ever sends: the count (after the kind, the 32-byte
    // fingerprint and the flag) says 33, and 33 ids follow.
    let count = 1 + 32 + 1;
    let mut longer = bytes.clone();
    assert_eq!(
        longer[count] as usize,
        RELAY_TRACKED_CHANNELS_PER_CONNECTION
    );
    longer[count] += 1;
    longer.extend_from_slice(&[0xee; 8]);
    assert!(matches!(
        Frame::decode(&longer),
        Err(DecodeError::Invalid { kind: 15, .. })
    ));
}

#[test]
fn the_largest_login_fits_what_the_relay_reads_before_login() {
    use muxagent_proto::frame::Hostname;
    use muxagent_proto::limits::{MAX_HOSTNAME_LEN, RELAY_MAX_LOGIN_MESSAGE_LEN};
    // A hostname of the most bytes it can hold.
    let mut host = Hostname::new();
    while host.push('x').is_ok() {}
    assert_eq!(host.len(), MAX_HOSTNAME_LEN);
    let login = Login::sign(
        &samples::identity(7),
        &[1; 32],
        Role::PendingMachine,
        Some(host),
    );
    let len = Frame::Login(login).encode().len();
    assert!(len <= 210, "a Login is {len} bytes");
    assert!(len <= RELAY_MAX_LOGIN_MESSAGE_LEN);
}

#[test]
fn the_largest_device_list_fits_one_frame_and_indices_stay_in_it() {
    use muxagent_proto::frame::{AccountDevice, AccountMachine, DeviceList, Hostname};
    use muxagent_proto::identity::Fingerprint;
    use muxagent_proto::limits::{
        DEVICE_LIST_MAX_LEN, RELAY_MAX_DEVICES_PER_ACCOUNT, RELAY_MAX_MACHINES_PER_ACCOUNT,
    };
    let mut host = Hostname::new();
    while host.push('x').is_ok() {}
    // Every machine and device at its cap, every device paired with every machine.
    let list = DeviceList {
        request: u32::MAX,
        machines: (0..RELAY_MAX_MACHINES_PER_ACCOUNT)
            .map(|n| AccountMachine {
                machine: Fingerprint([n as u8; 32]),
                hostname: host.clone(),
                online: true,
            })
            .collect(),
        devices: (0..RELAY_MAX_DEVICES_PER_ACCOUNT)
            .map(|n| AccountDevice {
                device: Fingerprint([n as u8; 32]),
                owner: true,
                online: true,
                paired: (0..RELAY_MAX_MACHINES_PER_ACCOUNT as u16).collect(),
            })
            .collect(),
    };
    let bytes = Frame::DeviceList(list.clone()).encode();
    assert!(
        bytes.len() <= DEVICE_LIST_MAX_LEN,
        "a full device list is {} bytes",
        bytes.len()
    );
    assert_eq!(
        Frame::decode(&bytes),
        Ok(Decoded::Known(Frame::DeviceList(list.clone())))
    );
    // An index past the machines listed is refused.
    let mut wrong = list;
    wrong.machines.truncate(3);
    wrong.devices.truncate(1);
    wrong.devices[0].paired = vec![0, 3];
    assert!(matches!(
        Frame::decode(&Frame::DeviceList(wrong).encode()),
        Err(DecodeError::Invalid { kind: 21, .. })
    ));
}

#[test]
fn new_registry_entries_name_their_author_and_verify() {
    let entries = samples::registry_entries();
    for (name, signed) in &entries {
        let entry = signed.verify().unwrap_or_else(|e| panic!("{name}: {e}"));
        // Signed by another key than the one it names as its author: refused.
        assert_eq!(
            SignedEntry::sign(&samples::identity(9), &entry),
            Err(EntryError::WrongAuthor),
            "{name}"
        );
        let mut forged = signed.clone();
        forged.signature = samples::identity(9).sign(SignDomain::RegistryEntry, &signed.entry);
        assert_eq!(forged.verify(), Err(EntryError::BadSignature), "{name}");
    }
}
