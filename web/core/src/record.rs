//! What the web app stores in IndexedDB, as bytes: a version byte, then postcard. The store is a
//! cache the machines can always refill, so a record this build cannot read (an older format,
//! damage) is skipped, never an error. The device's key and its book are the exceptions that
//! matter; they are small and have their own forms ([`identity`], the book as a JS object).
//!
//! Keys are strings that sort as the data does: `MACHINE/SESSION` for a session record and
//! `MACHINE/SESSION/SEQ` (SEQ zero-padded to 20 digits) for an event, so a session's events are
//! one key range and a machine's records one prefix.

use muxagent_client::model::Session;
use muxagent_proto::app::{Event, MachineMessage, SessionId};
use muxagent_proto::envelope::Decoded;
use muxagent_proto::identity::{Fingerprint, Identity, SECRET_BYTES_LEN};
use serde::{Deserialize, Serialize};

use crate::view::session_hex;

/// The format of every record this build writes.
const RECORD_VERSION: u8 = 1;

/// A session record: the session (without its events) and the machine it belongs to.
#[derive(Deserialize)]
struct SessionRecord {
    machine: Fingerprint,
    session: Session,
}

/// `MACHINE/SESSION`.
pub fn session_key(machine: &Fingerprint, session: &SessionId) -> String {
    format!("{}/{}", machine.to_hex(), session_hex(session))
}

/// `MACHINE/SESSION/SEQ`.
pub fn event_key(machine: &Fingerprint, session: &SessionId, seq: u64) -> String {
    format!("{}/{seq:020}", session_key(machine, session))
}

/// The first and last possible key under `prefix/` (for a key range over it).
pub fn prefix_range(prefix: &str) -> (String, String) {
    (format!("{prefix}/"), format!("{prefix}/\u{ffff}"))
}

/// [`SessionRecord`] borrowed, to write one without copying the session (its cached events
/// too, which the record leaves out).
#[derive(Serialize)]
struct SessionRecordRef<'a> {
    machine: &'a Fingerprint,
    session: &'a Session,
}

/// A session record's bytes.
pub fn encode_session(machine: &Fingerprint, session: &Session) -> Vec<u8> {
    let record = SessionRecordRef { machine, session };
    // Writing to a Vec does not fail for these types; store nothing rather than garbage.
    postcard::to_extend(&record, vec![RECORD_VERSION]).unwrap_or_default()
}

/// A session record back, if this build can read it.
pub fn decode_session(bytes: &[u8]) -> Option<(Fingerprint, Session)> {
    let (version, body) = bytes.split_first()?;
    if *version != RECORD_VERSION {
        return None;
    }
    let record: SessionRecord = postcard::from_bytes(body).ok()?;
    Some((record.machine, record.session))
}

/// An event's bytes: the app message the machine sent, so the wire's own validation reads it.
pub fn encode_event(event: &Event) -> Vec<u8> {
    let mut bytes = vec![RECORD_VERSION];
    bytes.extend(MachineMessage::Event(event.clone()).encode());
    bytes
}

/// An event back, if this build can read it.
pub fn decode_event(bytes: &[u8]) -> Option<Event> {
    let (version, body) = bytes.split_first()?;
    if *version != RECORD_VERSION {
        return None;
    }
    match MachineMessage::decode(body).ok()? {
        Decoded::Known(MachineMessage::Event(event)) => Some(event),
        _ => None,
    }
}

/// The device key from its stored bytes.
pub fn identity(bytes: &[u8]) -> Option<Identity> {
    let secret: &[u8; SECRET_BYTES_LEN] = bytes.try_into().ok()?;
    Some(Identity::from_secret_bytes(secret))
}

/// A fingerprint as the UI gives it (64 hex digits).
pub fn parse_fingerprint(text: &str) -> Option<Fingerprint> {
    Fingerprint::parse_hex(text).ok()
}

/// A session id as the UI gives it (32 hex digits).
pub fn parse_session(text: &str) -> Option<SessionId> {
    let text = text.as_bytes();
    if text.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (byte, pair) in id.iter_mut().zip(text.chunks(2)) {
        let digits = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(digits, 16).ok()?;
    }
    Some(SessionId(id))
}

#[cfg(test)]
mod tests {
    use muxagent_client::book::{self, Book};
    use muxagent_client::controller::Note;
    use muxagent_client::model::{Changes, Model};
    use muxagent_proto::app::EventKind;

    use super::*;

    #[test]
    fn keys_sort_as_the_data() {
        let machine = Fingerprint([0xaa; 32]);
        let session = SessionId([0x0b; 16]);
        let nine = event_key(&machine, &session, 9);
        let ten = event_key(&machine, &session, 10);
        assert!(nine < ten);
        assert!(nine.starts_with(&session_key(&machine, &session)));
        let (low, high) = prefix_range(&session_key(&machine, &session));
        assert!(low < nine && ten < high && event_key(&machine, &session, u64::MAX) < high);
        assert_eq!(parse_session(&session_hex(&session)), Some(session));
        assert_eq!(parse_session("0b"), None);
        assert_eq!(parse_session(&"zz".repeat(16)), None);
        assert_eq!(parse_fingerprint(&machine.to_hex()), Some(machine));
    }

    #[test]
    fn records_round_trip_and_foreign_ones_are_skipped() {
        let machine_key = Identity::from_secret_bytes(&[2; SECRET_BYTES_LEN]).public();
        let record = book::Machine::new(&machine_key, "alpha", "https://r.example", 7);
        let machine = machine_key.fingerprint();
        let mut model = Model::new(&Book {
            machines: vec![record],
        });
        let event = Event {
            session: SessionId([1; 16]),
            seq: 3,
            at: 4,
            kind: EventKind::Text { text: "hi".into() },
        };
        model.apply(
            &Note::Event {
                machine,
                event: event.clone(),
                older: false,
            },
            &mut Changes::default(),
        );
        let session = model.session(&machine, &event.session).unwrap();
        let bytes = encode_session(&machine, session);
        let (back_machine, back) = decode_session(&bytes).unwrap();
        assert_eq!(back_machine, machine);
        assert_eq!(back.info, session.info);
        assert_eq!(back.history, session.history);
        assert!(back.events.is_empty(), "events are stored on their own");
        assert_eq!(decode_event(&encode_event(&event)), Some(event));
        let mut future = bytes.clone();
        future[0] = 99;
        assert!(decode_session(&future).is_none());
        assert!(decode_session(&bytes[..bytes.len() / 2]).is_none());
        assert!(decode_event(&[1, 200, 0]).is_none());
        assert!(identity(&[7; 64]).is_some());
        assert!(identity(&[7; 63]).is_none());
    }
}
