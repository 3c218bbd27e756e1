//! IndexedDB through the `idb` crate: database `muxagent`, three object stores with out-of-line
//! string keys ([`record`](crate::record) names them):
//!
//! - `meta`: `identity` (the device key, 64 bytes; made once) and `book` (the paired machines);
//! - `sessions`: one record per session (metadata, history, mode);
//! - `events`: each session's newest events, one per key.
//!
//! Loading happens once at start; writes are batched per change into one transaction.

use idb::{Database, DatabaseEvent, Factory, KeyRange, ObjectStoreParams, Query, TransactionMode};
use js_sys::Uint8Array;
use muxagent_client::book::Book;
use muxagent_client::model::{Changes, Model, Session};
use muxagent_proto::app::Event;
use muxagent_proto::identity::{Fingerprint, Identity};
use wasm_bindgen::JsValue;

use crate::{json, read, record};

const NAME: &str = "muxagent";
const VERSION: u32 = 1;
const META: &str = "meta";
const SESSIONS: &str = "sessions";
const EVENTS: &str = "events";

/// Open (and on first use create) the database.
pub async fn open() -> Result<Database, idb::Error> {
    let factory = Factory::new()?;
    let mut request = factory.open(NAME, Some(VERSION))?;
    request.on_upgrade_needed(|event| {
        let Ok(database) = event.database() else {
            return;
        };
        for name in [META, SESSIONS, EVENTS] {
            if !database.store_names().iter().any(|known| known == name) {
                let _ = database.create_object_store(name, ObjectStoreParams::new());
            }
        }
    });
    request.await
}

/// What the store held at start.
pub struct Loaded {
    /// The device key, if one was made before.
    pub identity: Option<Identity>,
    /// The paired machines.
    pub book: Book,
    /// Sessions with their cached events.
    pub sessions: Vec<(Fingerprint, Session, Vec<Event>)>,
}

/// Read everything.
pub async fn load(database: &Database) -> Result<Loaded, idb::Error> {
    let transaction = database.transaction(&[META, SESSIONS, EVENTS], TransactionMode::ReadOnly)?;
    let meta = transaction.object_store(META)?;
    let identity = meta
        .get(JsValue::from_str("identity"))?
        .await?
        .map(|value| Uint8Array::new(&value).to_vec())
        .and_then(|bytes| record::identity(&bytes));
    let book = meta
        .get(JsValue::from_str("book"))?
        .await?
        .and_then(|value| read::book(&value))
        .unwrap_or_default();
    let mut sessions = Vec::new();
    let stored = transaction
        .object_store(SESSIONS)?
        .get_all(None, None)?
        .await?;
    let events = transaction.object_store(EVENTS)?;
    for value in stored {
        let Some((machine, session)) = record::decode_session(&Uint8Array::new(&value).to_vec())
        else {
            continue;
        };
        let prefix = record::session_key(&machine, &session.info.id);
        let (low, high) = record::prefix_range(&prefix);
        let range = KeyRange::bound(&low.into(), &high.into(), None, None)?;
        let cached: Vec<Event> = events
            .get_all(Some(Query::KeyRange(range)), None)?
            .await?
            .iter()
            .filter_map(|value| record::decode_event(&Uint8Array::new(value).to_vec()))
            .collect();
        sessions.push((machine, session, cached));
    }
    Ok(Loaded {
        identity,
        book,
        sessions,
    })
}

/// Keep the device key.
pub async fn save_identity(database: &Database, identity: &Identity) -> Result<(), idb::Error> {
    let transaction = database.transaction(&[META], TransactionMode::ReadWrite)?;
    let secret = identity.to_secret_bytes();
    let value = Uint8Array::from(&secret[..]);
    transaction
        .object_store(META)?
        .put(&value.into(), Some(&JsValue::from_str("identity")))?
        .await?;
    transaction.commit()?.await?;
    Ok(())
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
    pub async fn write(self, database: &Database) -> Result<(), idb::Error> {
        let transaction =
            database.transaction(&[META, SESSIONS, EVENTS], TransactionMode::ReadWrite)?;
        let meta = transaction.object_store(META)?;
        let sessions = transaction.object_store(SESSIONS)?;
        let events = transaction.object_store(EVENTS)?;
        if let Some(book) = &self.book {
            meta.put(book, Some(&JsValue::from_str("book")))?;
        }
        for (low, high) in &self.drop_sessions {
            let range = KeyRange::bound(&low.into(), &high.into(), None, None)?;
            sessions.delete(Query::KeyRange(range))?;
        }
        for (low, high) in &self.drop_events {
            let range = KeyRange::bound(&low.into(), &high.into(), None, None)?;
            events.delete(Query::KeyRange(range))?;
        }
        for (key, bytes) in &self.sessions {
            sessions.put(&Uint8Array::from(&bytes[..]).into(), Some(&key.into()))?;
        }
        for (key, bytes) in &self.events {
            events.put(&Uint8Array::from(&bytes[..]).into(), Some(&key.into()))?;
        }
        transaction.commit()?.await?;
        Ok(())
    }
}
