//! IndexedDB (through [`indexed_db`](crate::indexed_db)): database `muxagent`, three object
//! stores with out-of-line string keys ([`record`](crate::record) names them):
//!
//! - `meta`: `identity` (the device key, 64 bytes; made once), `book` (the paired machines)
//!   and `push` (notification settings, [`push::Settings`]);
//! - `sessions`: one record per session (metadata, history, mode);
//! - `events`: each session's newest events, one per key.
//!
//! Loading happens once at start. Writes are queued ([`Queue`]) and written together, in order,
//! in one transaction per flush.

use std::collections::BTreeSet;

use js_sys::{Array, Uint8Array};
use muxagent_client::book::Book;
use muxagent_client::model::{Changes, Model, Session};
use muxagent_proto::app::{Event, SessionId};
use muxagent_proto::identity::{Fingerprint, Identity};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{IdbDatabase, IdbKeyRange, IdbTransaction, IdbTransactionMode};

use crate::indexed_db::{self, Error};
use crate::push;
use crate::{json, read, record};

const NAME: &str = "muxagent";
const VERSION: u32 = 1;
const META: &str = "meta";
const SESSIONS: &str = "sessions";
const EVENTS: &str = "events";

/// Open (and on first use create) the database.
pub async fn open() -> Result<IdbDatabase, Error> {
    indexed_db::open(NAME, VERSION, &[META, SESSIONS, EVENTS]).await
}

/// The key range of every key from `low` to `high`.
fn range((low, high): &(String, String)) -> Result<JsValue, JsValue> {
    IdbKeyRange::bound(&low.into(), &high.into()).map(JsValue::from)
}

/// A value stored, or `None` for a key that is not.
fn stored(value: JsValue) -> Option<JsValue> {
    (!value.is_undefined()).then_some(value)
}

/// What the store held at start.
pub struct Loaded {
    /// The device key, if one was made before.
    pub identity: Option<Identity>,
    /// The paired machines.
    pub book: Book,
    /// Sessions with their cached events.
    pub sessions: Vec<(Fingerprint, Session, Vec<Event>)>,
    /// Notification settings.
    pub push: push::Settings,
}

/// Read everything (`with_sessions: false`: only the key, the book and the push settings, as
/// the service worker needs).
pub async fn load(database: &IdbDatabase, with_sessions: bool) -> Result<Loaded, Error> {
    let names = Array::of3(&META.into(), &SESSIONS.into(), &EVENTS.into());
    let transaction =
        database.transaction_with_str_sequence_and_mode(&names, IdbTransactionMode::Readonly)?;
    let meta = transaction.object_store(META)?;
    let identity = stored(indexed_db::result(&meta.get(&"identity".into())?).await?)
        .map(|value| Uint8Array::new(&value).to_vec())
        .and_then(|bytes| record::identity(&bytes));
    let book = stored(indexed_db::result(&meta.get(&"book".into())?).await?)
        .and_then(|value| read::book(&value))
        .unwrap_or_default();
    let push = stored(indexed_db::result(&meta.get(&"push".into())?).await?)
        .and_then(|value| push::Settings::decode(&Uint8Array::new(&value).to_vec()))
        .unwrap_or_default();
    let mut sessions = Vec::new();
    if !with_sessions {
        return Ok(Loaded {
            identity,
            book,
            sessions,
            push,
        });
    }
    let records: Array = indexed_db::result(&transaction.object_store(SESSIONS)?.get_all()?)
        .await?
        .unchecked_into();
    let events = transaction.object_store(EVENTS)?;
    for value in records.iter() {
        let Some((machine, session)) = record::decode_session(&Uint8Array::new(&value).to_vec())
        else {
            continue;
        };
        let prefix = record::session_key(&machine, &session.info.id);
        let keys = range(&record::prefix_range(&prefix))?;
        let cached: Array = indexed_db::result(&events.get_all_with_key(&keys)?)
            .await?
            .unchecked_into();
        let cached: Vec<Event> = cached
            .iter()
            .filter_map(|value| record::decode_event(&Uint8Array::new(&value).to_vec()))
            .collect();
        sessions.push((machine, session, cached));
    }
    Ok(Loaded {
        identity,
        book,
        sessions,
        push,
    })
}

/// Keep the notification settings.
pub async fn save_push(database: &IdbDatabase, settings: &push::Settings) -> Result<(), Error> {
    let transaction =
        database.transaction_with_str_and_mode(META, IdbTransactionMode::Readwrite)?;
    let value = Uint8Array::from(&settings.encode()[..]);
    let put = transaction
        .object_store(META)?
        .put_with_key(&value, &"push".into())?;
    indexed_db::result(&put).await?;
    indexed_db::commit(&transaction).await
}

/// Keep the device key.
pub async fn save_identity(database: &IdbDatabase, identity: &Identity) -> Result<(), Error> {
    let transaction =
        database.transaction_with_str_and_mode(META, IdbTransactionMode::Readwrite)?;
    let secret = identity.to_secret_bytes();
    let value = Uint8Array::from(&secret[..]);
    let put = transaction
        .object_store(META)?
        .put_with_key(&value, &"identity".into())?;
    indexed_db::result(&put).await?;
    indexed_db::commit(&transaction).await
}

/// One write, as IndexedDB runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// `meta/book`.
    Book(Book),
    /// Delete `sessions` in a key range (a removed machine's).
    DropSessions(String, String),
    /// Delete `events` in a key range (a removed machine's, a reset session's, or what fell out
    /// of a session's cache).
    DropEvents(String, String),
    /// Put one session record.
    PutSession(String, Vec<u8>),
    /// Put one event.
    PutEvent(String, Vec<u8>),
}

/// An event waiting to be stored: its place, so that it is skipped if it fell out of the cache
/// before the flush.
struct QueuedEvent {
    machine: Fingerprint,
    session: SessionId,
    seq: u64,
    key: String,
    bytes: Vec<u8>,
}

/// A deletion or an event put, in the order the changes made them.
enum Step {
    DropSessions((String, String)),
    DropEvents((String, String)),
    PutEvent(QueuedEvent),
}

/// What the changes since the last flush mean for the store, kept until the flush
/// ([`STORE_FLUSH_MS`](crate::limits::STORE_FLUSH_MS)). Deletions and event puts keep their
/// order; the book and session records are written as the model has them at the flush (the
/// last put of a key is the one that stays), so a session that changed with each of a hundred
/// events is encoded once, not a hundred times.
#[derive(Default)]
pub struct Queue {
    book: bool,
    steps: Vec<Step>,
    sessions: BTreeSet<(Fingerprint, SessionId)>,
}

impl Queue {
    /// Add what `changes` mean for the store, given the model after them.
    pub fn add(&mut self, model: &Model, changes: &Changes) {
        self.book |= changes.book;
        for machine in &changes.removed {
            let prefix = machine.to_hex();
            self.steps
                .push(Step::DropEvents(record::prefix_range(&prefix)));
            self.steps
                .push(Step::DropSessions(record::prefix_range(&prefix)));
        }
        for (machine, session) in &changes.reset {
            let prefix = record::session_key(machine, session);
            self.steps
                .push(Step::DropEvents(record::prefix_range(&prefix)));
        }
        for (machine, event, older) in &changes.events {
            let held = model
                .session(machine, &event.session)
                .is_some_and(|session| {
                    let (first, _) = session.held();
                    !older && event.seq >= first
                });
            if held {
                self.steps.push(Step::PutEvent(QueuedEvent {
                    machine: *machine,
                    session: event.session,
                    seq: event.seq,
                    key: record::event_key(machine, &event.session, event.seq),
                    bytes: record::encode_event(event),
                }));
            }
        }
        self.sessions.extend(changes.sessions.iter().copied());
    }

    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        !self.book && self.steps.is_empty() && self.sessions.is_empty()
    }

    /// The writes, in order, with the book and the session records as `model` has them now:
    /// the same store as writing each change's part one by one would leave.
    pub fn seal(self, model: &Model) -> Vec<Write> {
        let mut writes = Vec::with_capacity(self.steps.len() + 2 * self.sessions.len() + 1);
        if self.book {
            writes.push(Write::Book(model.book()));
        }
        for step in self.steps {
            writes.push(match step {
                Step::DropSessions((low, high)) => Write::DropSessions(low, high),
                Step::DropEvents((low, high)) => Write::DropEvents(low, high),
                Step::PutEvent(event) => {
                    // Fell out of the cache (or its machine went) since: the trim below would
                    // delete it again.
                    let kept = model
                        .session(&event.machine, &event.session)
                        .is_some_and(|session| event.seq >= session.held().0);
                    if !kept {
                        continue;
                    }
                    Write::PutEvent(event.key, event.bytes)
                }
            });
        }
        for (machine, id) in &self.sessions {
            let Some(session) = model.session(machine, id) else {
                continue;
            };
            writes.push(Write::PutSession(
                record::session_key(machine, id),
                record::encode_session(machine, session),
            ));
            // Events that fell out of the cache.
            let (first, _) = session.held();
            if first > 1 {
                let prefix = record::session_key(machine, id);
                let (low, _) = record::prefix_range(&prefix);
                let below = record::event_key(machine, id, first - 1);
                writes.push(Write::DropEvents(low, below));
            }
        }
        writes
    }
}

/// Start `writes` in one transaction: every request is made now, before this returns (so a
/// page going away has them queued), and they run in order. Await [`indexed_db::commit`] on
/// the transaction to learn how it went.
pub fn start(database: &IdbDatabase, writes: &[Write]) -> Result<IdbTransaction, Error> {
    let names = Array::of3(&META.into(), &SESSIONS.into(), &EVENTS.into());
    let transaction =
        database.transaction_with_str_sequence_and_mode(&names, IdbTransactionMode::Readwrite)?;
    let meta = transaction.object_store(META)?;
    let sessions = transaction.object_store(SESSIONS)?;
    let events = transaction.object_store(EVENTS)?;
    for write in writes {
        match write {
            Write::Book(book) => {
                if let Some(book) = json::try_to_js(book) {
                    meta.put_with_key(&book, &"book".into())?;
                }
            }
            Write::DropSessions(low, high) => {
                sessions.delete(&range(&(low.clone(), high.clone()))?)?;
            }
            Write::DropEvents(low, high) => {
                events.delete(&range(&(low.clone(), high.clone()))?)?;
            }
            Write::PutSession(key, bytes) => {
                sessions.put_with_key(&Uint8Array::from(&bytes[..]), &key.into())?;
            }
            Write::PutEvent(key, bytes) => {
                events.put_with_key(&Uint8Array::from(&bytes[..]), &key.into())?;
            }
        }
    }
    Ok(transaction)
}

/// Erase everything stored for this device (`device`): its key, its machines, sessions, events
/// and notification settings, after it was revoked. Only if the key stored is still its own: a
/// page of the same browser that started over already made a new device, and that one stays.
/// Whether anything was erased.
pub async fn erase(database: &IdbDatabase, device: &Fingerprint) -> Result<bool, Error> {
    let names = Array::of3(&META.into(), &SESSIONS.into(), &EVENTS.into());
    let transaction =
        database.transaction_with_str_sequence_and_mode(&names, IdbTransactionMode::Readwrite)?;
    let meta = transaction.object_store(META)?;
    let stored = stored(indexed_db::result(&meta.get(&"identity".into())?).await?)
        .map(|value| Uint8Array::new(&value).to_vec())
        .and_then(|bytes| record::identity(&bytes));
    let ours = stored.is_none_or(|identity| identity.public().fingerprint() == *device);
    if ours {
        meta.clear()?;
        transaction.object_store(SESSIONS)?.clear()?;
        transaction.object_store(EVENTS)?.clear()?;
    }
    indexed_db::commit(&transaction).await?;
    Ok(ours)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use muxagent_client::book::{self, Book};
    use muxagent_client::controller::Note;
    use muxagent_client::model::{Changes, Model};
    use muxagent_proto::app::{Event, EventKind, SessionId};
    use muxagent_proto::identity::{Identity, SECRET_BYTES_LEN};

    use super::*;

    /// IndexedDB played by maps: what the writes leave.
    #[derive(Debug, Default, PartialEq, Eq)]
    struct Stored {
        book: Option<Book>,
        sessions: BTreeMap<String, Vec<u8>>,
        events: BTreeMap<String, Vec<u8>>,
    }

    impl Stored {
        fn apply(&mut self, writes: Vec<Write>) {
            let drop = |map: &mut BTreeMap<String, Vec<u8>>, low: &str, high: &str| {
                map.retain(|key, _| !(low <= key.as_str() && key.as_str() <= high));
            };
            for write in writes {
                match write {
                    Write::Book(book) => self.book = Some(book),
                    Write::DropSessions(low, high) => drop(&mut self.sessions, &low, &high),
                    Write::DropEvents(low, high) => drop(&mut self.events, &low, &high),
                    Write::PutSession(key, bytes) => {
                        self.sessions.insert(key, bytes);
                    }
                    Write::PutEvent(key, bytes) => {
                        self.events.insert(key, bytes);
                    }
                }
            }
        }
    }

    fn text(session: SessionId, seq: u64) -> Note {
        Note::Event {
            machine: machine(),
            event: Event {
                session,
                seq,
                at: seq,
                kind: EventKind::Text {
                    text: format!("line {seq}"),
                },
            },
            older: false,
        }
    }

    fn machine() -> Fingerprint {
        // Deriving the key takes a scalar multiplication: once per test thread.
        thread_local! {
            static MACHINE: Fingerprint = Identity::from_secret_bytes(&[2; SECRET_BYTES_LEN])
                .public()
                .fingerprint();
        }
        MACHINE.with(|machine| *machine)
    }

    /// The notes a streaming session makes: events, a reset (the device fell behind) and new
    /// events after it, more than the cache holds, and a second session.
    fn notes() -> Vec<Note> {
        let one = SessionId([1; 16]);
        let two = SessionId([2; 16]);
        let mut notes: Vec<Note> = (1..=30).map(|seq| text(one, seq)).collect();
        notes.push(Note::Reset {
            machine: machine(),
            session: one,
        });
        notes.extend((100..=2_200).map(|seq| text(one, seq)));
        notes.extend((1..=5).map(|seq| text(two, seq)));
        notes
    }

    fn model() -> Model {
        let key = Identity::from_secret_bytes(&[2; SECRET_BYTES_LEN]).public();
        Model::new(&Book {
            machines: vec![book::Machine::new(&key, "alpha", "https://r.example", 7)],
        })
    }

    #[test]
    fn queued_writes_leave_the_store_as_writing_each_change_would() {
        // One transaction per note, as the store was written before.
        let mut one_by_one = Stored::default();
        let mut model_a = model();
        // Everything queued, flushed every 100 notes (a streaming burst per flush), in order.
        let mut batched = Stored::default();
        let mut model_b = model();
        let mut queue = Queue::default();
        let mut transactions = 0;
        for (index, note) in notes().iter().enumerate() {
            let mut changes = Changes::default();
            model_a.apply(note, &mut changes);
            let mut single = Queue::default();
            single.add(&model_a, &changes);
            one_by_one.apply(single.seal(&model_a));

            let mut changes = Changes::default();
            model_b.apply(note, &mut changes);
            queue.add(&model_b, &changes);
            if index % 100 == 99 {
                batched.apply(std::mem::take(&mut queue).seal(&model_b));
                transactions += 1;
            }
        }
        batched.apply(queue.seal(&model_b));
        transactions += 1;
        assert_eq!(batched, one_by_one);
        assert_eq!(transactions, 22);
        // The reset dropped what came before it; the cache holds the newest events only.
        let one = record::session_key(&machine(), &SessionId([1; 16]));
        let kept: Vec<&String> = batched
            .events
            .keys()
            .filter(|k| k.starts_with(&one))
            .collect();
        assert_eq!(
            kept.len() as u64,
            muxagent_client::limits::CACHED_EVENTS_PER_SESSION
        );
        assert!(kept[0].ends_with(&format!("{:020}", 2_200 - 2_000 + 1)));
        assert_eq!(batched.sessions.len(), 2);
    }

    #[test]
    fn a_reset_in_the_same_flush_keeps_the_events_after_it() {
        let one = SessionId([1; 16]);
        let mut model = model();
        let mut queue = Queue::default();
        let mut stored = Stored::default();
        for note in [text(one, 1), text(one, 2)] {
            let mut changes = Changes::default();
            model.apply(&note, &mut changes);
            queue.add(&model, &changes);
        }
        stored.apply(std::mem::take(&mut queue).seal(&model));
        for note in [
            Note::Reset {
                machine: machine(),
                session: one,
            },
            text(one, 50),
            text(one, 51),
        ] {
            let mut changes = Changes::default();
            model.apply(&note, &mut changes);
            queue.add(&model, &changes);
        }
        let writes = queue.seal(&model);
        // One session record for the whole flush, written as the model has it now.
        assert_eq!(
            writes
                .iter()
                .filter(|w| matches!(w, Write::PutSession(..)))
                .count(),
            1
        );
        stored.apply(writes);
        let seqs: Vec<&str> = stored.events.keys().map(|k| &k[k.len() - 2..]).collect();
        assert_eq!(seqs, ["50", "51"]);
    }
}
