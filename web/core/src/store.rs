//! IndexedDB (through [`indexed_db`](crate::indexed_db)): database `muxagent`, three object
//! stores with out-of-line string keys ([`record`](crate::record) names them):
//!
//! - `meta`: `identity` (the device key, 64 bytes; made once), `book` (the paired machines)
//!   and `push` (notification settings, [`push::Settings`]);
//! - `sessions`: one record per session (metadata, history, mode);
//! - `events`: each session's newest events, one per key.
//!
//! Loading happens once at start; writes are batched per change into one transaction.

use js_sys::{Array, Uint8Array};
use muxagent_client::book::Book;
use muxagent_client::model::{Changes, Model, Session};
use muxagent_proto::app::Event;
use muxagent_proto::identity::{Fingerprint, Identity};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{IdbDatabase, IdbKeyRange, IdbTransactionMode};

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

/// One batch of writes, prepared synchronously from the model so it can run later.
#[derive(Default)]
pub struct Batch {
    book: Option<JsValue>,
    sessions: Vec<(String, Vec<u8>)>,
    events: Vec<(String, Vec<u8>)>,
    /// Key ranges to delete from `events` (and `sessions`, for removed machines).
    drop_events: Vec<(String, String)>,
    drop_sessions: Vec<(String, String)>,
}

impl Batch {
    /// What `changes` mean for the store, given the model after them.
    pub fn of(model: &Model, changes: &Changes) -> Batch {
        let mut batch = Batch::default();
        if changes.book {
            batch.book = json::try_to_js(&model.book());
        }
        for machine in &changes.removed {
            let prefix = machine.to_hex();
            batch.drop_events.push(record::prefix_range(&prefix));
            batch.drop_sessions.push(record::prefix_range(&prefix));
        }
        for (machine, session) in &changes.reset {
            let prefix = record::session_key(machine, session);
            batch.drop_events.push(record::prefix_range(&prefix));
        }
        for (machine, event, older) in &changes.events {
            let held = model
                .session(machine, &event.session)
                .is_some_and(|session| {
                    let (first, _) = session.held();
                    !older && event.seq >= first
                });
            if held {
                let key = record::event_key(machine, &event.session, event.seq);
                batch.events.push((key, record::encode_event(event)));
            }
        }
        for (machine, id) in &changes.sessions {
            let Some(session) = model.session(machine, id) else {
                continue;
            };
            batch.sessions.push((
                record::session_key(machine, id),
                record::encode_session(machine, session),
            ));
            // Events that fell out of the cache.
            let (first, _) = session.held();
            if first > 1 {
                let prefix = record::session_key(machine, id);
                let (low, _) = record::prefix_range(&prefix);
                let below = record::event_key(machine, id, first - 1);
                batch.drop_events.push((low, below));
            }
        }
        batch
    }

    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.book.is_none()
            && self.sessions.is_empty()
            && self.events.is_empty()
            && self.drop_events.is_empty()
            && self.drop_sessions.is_empty()
    }

    /// Write it in one transaction.
    /// The requests are made at once and run in order; the commit says how they went.
    pub async fn write(self, database: &IdbDatabase) -> Result<(), Error> {
        let names = Array::of3(&META.into(), &SESSIONS.into(), &EVENTS.into());
        let transaction = database
            .transaction_with_str_sequence_and_mode(&names, IdbTransactionMode::Readwrite)?;
        let meta = transaction.object_store(META)?;
        let sessions = transaction.object_store(SESSIONS)?;
        let events = transaction.object_store(EVENTS)?;
        if let Some(book) = &self.book {
            meta.put_with_key(book, &"book".into())?;
        }
        for keys in &self.drop_sessions {
            sessions.delete(&range(keys)?)?;
        }
        for keys in &self.drop_events {
            events.delete(&range(keys)?)?;
        }
        for (key, bytes) in &self.sessions {
            sessions.put_with_key(&Uint8Array::from(&bytes[..]), &key.into())?;
        }
        for (key, bytes) in &self.events {
            events.put_with_key(&Uint8Array::from(&bytes[..]), &key.into())?;
        }
        indexed_db::commit(&transaction).await
    }
}
