//! The phone web app's protocol core, compiled to wasm32 with wasm-bindgen: it implements the
//! `Core` interface of `web/src/contract.ts`.
//!
//! It owns the relay WebSocket, drives the sans-IO [`Controller`] with it and with
//! `setTimeout`, folds what the controller reports into the [`Model`], keeps the model in
//! IndexedDB ([`store`]), and hands the UI plain values ([`view`]). The device key, the Noise
//! channels and every ciphertext stay in here: the UI sees only the view.
//!
//! Store writes wait up to [`STORE_FLUSH_MS`] to be written together in one transaction
//! ([`store::Queue`]); the account's devices are asked of the relay and managed through signed
//! entries ([`devices`]); a revoked device can erase what this browser keeps of it.
//!
//! It also keeps the notification settings ([`push`]) and tells every machine of them, and the
//! service worker calls [`act_on_notice`] to decide an approval from a notification's action:
//! the same core, started without a page (`open`, headless), connects, signs, sends, and
//! closes.
//!
//! All protocol logic is in `muxagent-client`; this crate is glue, and its pure parts
//! ([`view`], [`record`], [`push`], [`notice`]) are tested natively. It builds for the host too
//! (the exports exist there but need a browser to run).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod devices;
pub mod global;
pub mod indexed_db;
pub mod json;
pub mod limits;
pub mod notice;
pub mod push;
pub mod read;
pub mod record;
pub mod store;
pub mod view;

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use muxagent_client::controller::{
    Answer, Channel, ClientError, Config, Connection, Controller, Note, Output,
};
use muxagent_client::decide;
use muxagent_client::history::PlanError;
use muxagent_client::limits::CACHED_EVENTS_PER_SESSION;
use muxagent_client::model::{Changes, Model, WholeInput};
use muxagent_proto::app::{
    ApprovalState, Decide, Decision, DeviceMessage, EventKind, ForgetDevice, Interrupt,
    ListRuntimes, Mode, PushKinds, RuntimeName, SendPrompt, SessionId, SetMode, StartSession, Stop,
    TestPush,
};
use muxagent_proto::identity::{Fingerprint, Identity};
use muxagent_proto::limits::{PUSH_AUTH_LEN, PUSH_VAPID_KEY_LEN, RELAY_WS_PATH};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{BinaryType, MessageEvent, WebSocket};

use crate::global::{clear_timeout, set_timeout};
use crate::limits::{APPLIED_WAIT_MS, STORE_FLUSH_MS};

type Rng = rand_core::UnwrapErr<getrandom::SysRng>;

fn rng() -> Rng {
    rand_core::UnwrapErr(getrandom::SysRng)
}

fn now() -> u64 {
    js_sys::Date::now() as u64
}

fn error(message: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&message.to_string()).into()
}

fn rejected(message: impl std::fmt::Display) -> Promise {
    Promise::reject(&error(message))
}

/// What a resolved request gives the UI.
enum Then {
    /// `undefined`.
    Nothing,
    /// The new session's id; remember the mode it started in.
    Started(Fingerprint, Option<String>),
    /// `RuntimeView[]`.
    Runtimes,
    /// Whether older events came.
    Older,
    /// The new machine's `MachineView`.
    Paired,
    /// Remember the session's new mode.
    ModeSet(Fingerprint, SessionId, String),
    /// Forget the machine here, then `undefined`.
    Unpaired(Fingerprint),
    /// `{ vapidPublicKey, endpoint? }`.
    PushState,
    /// The relay holds this subscription: keep it and tell every machine.
    PushEnabled(push::Subscription),
    /// The relay dropped the subscription: forget it and tell every machine.
    PushDisabled,
    /// Keep the answer in [`Inner::kept`] (the service worker's decision).
    Keep,
    /// After each login with notifications on: does the relay still hold the subscription?
    /// (It forgets one whose push service it no longer allows, and may lose its data.)
    PushCheck,
    /// The subscription handed to the relay again after [`Then::PushCheck`].
    PushRestored,
    /// `AccountDeviceView[]`.
    Devices,
}

struct Waiter {
    /// The request it waits on.
    request: u32,
    resolve: Function,
    reject: Function,
    then: Then,
}

/// One relay WebSocket and its handlers (dropping them detaches them).
struct Socket {
    ws: WebSocket,
    _handlers: Vec<Closure<dyn FnMut(JsValue)>>,
}

struct Inner {
    controller: Controller,
    model: Model,
    device: Fingerprint,
    relay: String,
    ws_url: String,
    database: Option<web_sys::IdbDatabase>,
    socket: Option<Socket>,
    /// The last closed socket, its handlers not yet dropped.
    retired: Option<Socket>,
    /// Numbers each socket so events of a replaced one are ignored.
    generation: u32,
    timer: Option<i32>,
    on_timer: Option<Closure<dyn FnMut()>>,
    /// Store writes waiting for the next flush, and its timer.
    queued: store::Queue,
    flush_timer: Option<i32>,
    on_flush: Option<Closure<dyn FnMut()>>,
    // These are a handful each (a view or two, one open session, the requests in flight), so
    // they are plain lists in the order made: a BTreeMap per value type costs the download ~10 KB
    // of wasm each.
    /// By subscription id.
    watchers: Vec<(u32, Function)>,
    /// By subscription id.
    followers: Vec<(u32, Fingerprint, SessionId, Function)>,
    next_subscription: u32,
    waiting: Vec<Waiter>,
    /// Notification settings, as stored.
    push: push::Settings,
    /// What each machine answered to the push keys last sent.
    push_status: Vec<(Fingerprint, push::Status)>,
    /// Started by the service worker: nothing is stored, and no view is watched.
    headless: bool,
    /// Shut down: no timer, no reconnect.
    stopped: bool,
    /// Called after anything changed (the service worker's waits).
    wake: Option<Function>,
    /// An answer kept for [`Then::Keep`].
    kept: Option<(u32, Result<(), ClientError>)>,
    /// The approval whose outcome the service worker waits for, and the state it reached.
    watched: Option<(Fingerprint, SessionId, u64)>,
    seen_state: Option<ApprovalState>,
    /// Something shown changed outside the controller's notes: render again.
    dirty: bool,
}

/// Calls to make into JS once the core is no longer borrowed (a callback may call back in).
type Calls = Vec<(Function, JsValue)>;

impl Inner {
    /// Carry out what the controller wants, fold its notes, and say what JS must hear.
    fn drive(&mut self, core: &Rc<RefCell<Inner>>) -> Calls {
        let mut calls = Calls::new();
        let mut changes = Changes {
            view: std::mem::take(&mut self.dirty),
            ..Changes::default()
        };
        loop {
            let Some(output) = self.controller.poll_output() else {
                // Approvals whose input came cut: fetch it whole (it adds outputs).
                if self.headless || !self.fetch_inputs() {
                    break;
                }
                changes.view = true;
                continue;
            };
            match output {
                Output::Connect => self.open_socket(core),
                Output::Send(bytes) => {
                    if let Some(socket) = &self.socket {
                        // A failed send shows up as the socket's close event.
                        let _ = socket.ws.send_with_u8_array(&bytes);
                    }
                }
                Output::Close => self.close_socket(),
                Output::Note(note) => {
                    self.model.apply(&note, &mut changes);
                    match note {
                        Note::Answer { request, result } => {
                            // A new machine hears the keys (it has none to remove).
                            if let Ok(Answer::Paired(record)) = &result
                                && let Some(identity) = record.identity()
                                && self.push.subscription.is_some()
                            {
                                self.push_to(identity.fingerprint());
                            }
                            self.settle(request, result, &mut changes, &mut calls);
                        }
                        Note::Push {
                            machine, result, ..
                        } => {
                            self.set_push_status(machine, push::Status::of(&result));
                            changes.view = true;
                        }
                        Note::Removed { machine } => {
                            self.push.forget(&machine);
                            self.push_status.retain(|(m, _)| *m != machine);
                            self.save_push();
                        }
                        Note::Connection(Connection::Online)
                            if !self.headless && self.push.subscription.is_some() =>
                        {
                            if let Ok(request) = self.controller.push_query(now()) {
                                let _ = self.wait(request, Then::PushCheck);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        self.schedule(core);
        self.persist(&changes, core);
        if let Some((machine, session, approval)) = self.watched {
            for (m, event, _) in &changes.events {
                if let EventKind::ApprovalState {
                    approval: number,
                    state,
                } = &event.kind
                    && *m == machine
                    && event.session == session
                    && *number == approval
                    && matches!(
                        state,
                        ApprovalState::Applied | ApprovalState::Withdrawn | ApprovalState::Expired
                    )
                {
                    self.seen_state = Some(*state);
                }
            }
        }
        if changes.view && !self.watchers.is_empty() {
            let view = self.view_js();
            for (_, watcher) in &self.watchers {
                calls.push((watcher.clone(), view.clone()));
            }
        }
        if let Some(wake) = self.wake.take() {
            calls.push((wake, JsValue::UNDEFINED));
        }
        for (_, machine, session, follower) in &self.followers {
            let batch: Vec<view::TranscriptEvent> = changes
                .events
                .iter()
                .filter(|(m, event, _)| m == machine && event.session == *session)
                .map(|(_, event, _)| view::event(event))
                .collect();
            if !batch.is_empty() {
                calls.push((follower.clone(), json::to_js(&batch)));
            }
        }
        calls
    }

    /// Resolve or reject the promises waiting on `request`.
    /// Start fetching the whole input of every pending approval whose input came cut; whether
    /// any began (or failed at once).
    fn fetch_inputs(&mut self) -> bool {
        let wanted = self.model.inputs_to_fetch();
        for (machine, session, approval) in &wanted {
            let request = self
                .controller
                .fetch_input(now(), machine, *session, *approval)
                .map_err(|failure| failure.to_string());
            self.model
                .fetching_input((*machine, *session, *approval), request);
        }
        !wanted.is_empty()
    }

    fn settle(
        &mut self,
        request: u32,
        result: Result<Answer, ClientError>,
        changes: &mut Changes,
        calls: &mut Calls,
    ) {
        let (waiters, others) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|waiter| waiter.request == request);
        self.waiting = others;
        for waiter in waiters {
            let outcome = match (&result, &waiter.then) {
                (result, Then::Keep) => {
                    self.kept = Some((request, result.clone().map(|_| ())));
                    Ok(JsValue::UNDEFINED)
                }
                (Ok(Answer::Push(state)), Then::PushCheck) => {
                    let held = self.push.subscription.as_ref().map(|s| s.endpoint.clone());
                    if held.is_some() && state.endpoint != held {
                        match self.controller.push_subscribe(now(), held) {
                            Ok(request) => {
                                let _ = self.wait(request, Then::PushRestored);
                            }
                            Err(failure) => self.push.problem = Some(failure.to_string()),
                        }
                    } else {
                        self.push.problem = None;
                    }
                    changes.view = true;
                    Ok(JsValue::UNDEFINED)
                }
                (Ok(Answer::Push(_)), Then::PushRestored) => {
                    self.push.problem = None;
                    changes.view = true;
                    Ok(JsValue::UNDEFINED)
                }
                (Err(failure), Then::PushCheck | Then::PushRestored) => {
                    self.push.problem = Some(format!(
                        "the relay no longer holds this device's subscription: {failure}"
                    ));
                    changes.view = true;
                    Ok(JsValue::UNDEFINED)
                }
                (Err(failure), _) => Err(error(failure)),
                (Ok(Answer::Ack(ack)), Then::Started(machine, mode)) => match ack.session {
                    Some(session) => {
                        if let Some(mode) = mode
                            && self.model.set_mode(machine, session, mode)
                        {
                            changes.sessions.insert((*machine, session));
                            changes.view = true;
                        }
                        Ok(JsValue::from_str(&view::session_hex(&session)))
                    }
                    None => Err(error("the machine did not name the new session")),
                },
                (Ok(Answer::Ack(_)), Then::ModeSet(machine, session, mode)) => {
                    if self.model.set_mode(machine, *session, mode) {
                        changes.sessions.insert((*machine, *session));
                        changes.view = true;
                    }
                    Ok(JsValue::UNDEFINED)
                }
                (Ok(Answer::Ack(_)), Then::Unpaired(machine)) => {
                    // The Removed note this makes is folded by the drive loop.
                    self.controller.forget(machine);
                    Ok(JsValue::UNDEFINED)
                }
                (Ok(Answer::Devices(list)), Then::Devices) => Ok(json::to_js(&devices::rows(
                    list,
                    &self.device,
                    &self.model.book(),
                ))),
                (Ok(Answer::Runtimes(list)), Then::Runtimes) => {
                    let runtimes: Vec<view::RuntimeView> =
                        list.runtimes.iter().map(view::RuntimeView::from).collect();
                    Ok(json::to_js(&runtimes))
                }
                (Ok(Answer::Older { found }), Then::Older) => Ok(JsValue::from_bool(*found)),
                (Ok(Answer::Push(state)), Then::PushState) => {
                    let answer = Object::new();
                    let key = Uint8Array::from(&state.vapid_public_key[..]);
                    let _ = Reflect::set(&answer, &"vapidPublicKey".into(), &key);
                    if let Some(endpoint) = &state.endpoint {
                        let _ = Reflect::set(&answer, &"endpoint".into(), &endpoint.into());
                    }
                    Ok(answer.into())
                }
                (Ok(Answer::Push(state)), Then::PushEnabled(subscription)) => {
                    if state.endpoint.as_ref() == Some(&subscription.endpoint) {
                        self.push.subscription = Some(subscription.clone());
                        self.push.problem = None;
                        self.push_everywhere();
                        changes.view = true;
                        Ok(JsValue::UNDEFINED)
                    } else {
                        Err(error(
                            "the relay did not keep this device's push subscription",
                        ))
                    }
                }
                (Ok(Answer::Push(_)), Then::PushDisabled) => {
                    self.push.subscription = None;
                    self.push.problem = None;
                    self.push_everywhere();
                    changes.view = true;
                    Ok(JsValue::UNDEFINED)
                }
                (Ok(Answer::Paired(record)), Then::Paired) => {
                    let machine = record
                        .identity()
                        .map(|identity| identity.fingerprint())
                        .and_then(|fingerprint| {
                            let known = self.model.machines.get(&fingerprint)?;
                            Some(view::machine(&fingerprint, known))
                        });
                    match machine {
                        Some(machine) => Ok(json::to_js(&machine)),
                        None => Err(error("the paired machine's record is damaged")),
                    }
                }
                (Ok(_), _) => Ok(JsValue::UNDEFINED),
            };
            match outcome {
                Ok(value) => calls.push((waiter.resolve, value)),
                Err(value) => calls.push((waiter.reject, value)),
            }
        }
    }

    /// Queue what changed for the store: written within [`STORE_FLUSH_MS`], or at once when
    /// the paired machines changed (they are what the device cannot get back).
    fn persist(&mut self, changes: &Changes, core: &Rc<RefCell<Inner>>) {
        if self.database.is_none() {
            return;
        }
        if self.controller.is_revoked() {
            // Nothing more is kept of a revoked device; what waits is dropped.
            self.queued = store::Queue::default();
            return;
        }
        self.queued.add(&self.model, changes);
        if changes.book {
            self.flush();
        } else if !self.queued.is_empty() && self.flush_timer.is_none() {
            if self.on_flush.is_none() {
                let core = core.clone();
                self.on_flush = Some(Closure::new(move || {
                    with(&core, |inner| {
                        inner.flush_timer = None;
                        inner.flush();
                    });
                }));
            }
            if let Some(callback) = &self.on_flush {
                self.flush_timer = Some(set_timeout(
                    callback.as_ref().unchecked_ref(),
                    STORE_FLUSH_MS,
                ));
            }
        }
    }

    /// Write what is queued now, in one transaction (in the background; transactions run in
    /// the order they were made).
    fn flush(&mut self) {
        if let Some(handle) = self.flush_timer.take() {
            clear_timeout(handle);
        }
        if self.queued.is_empty() {
            return;
        }
        let writes = std::mem::take(&mut self.queued).seal(&self.model);
        let Some(database) = &self.database else {
            return;
        };
        // A failed write loses only cache: the machines resend it.
        if let Ok(transaction) = store::start(database, &writes) {
            wasm_bindgen_futures::spawn_local(async move {
                let _ = indexed_db::commit(&transaction).await;
            });
        }
    }

    /// One timer for the controller's next deadline.
    fn schedule(&mut self, core: &Rc<RefCell<Inner>>) {
        if let Some(handle) = self.timer.take() {
            clear_timeout(handle);
        }
        if self.stopped {
            return;
        }
        let Some(at) = self.controller.poll_timeout() else {
            return;
        };
        if self.on_timer.is_none() {
            let core = core.clone();
            self.on_timer = Some(Closure::new(move || {
                let inner = core.clone();
                with(&inner, |inner| {
                    inner.timer = None;
                    let mut rng = rng();
                    inner.controller.tick(now(), &mut rng);
                });
            }));
        }
        if let Some(callback) = &self.on_timer {
            let delay = at.saturating_sub(now()).min(i32::MAX as u64) as i32;
            self.timer = Some(set_timeout(callback.as_ref().unchecked_ref(), delay));
        }
    }

    /// Close the socket, detaching its handlers first: the browser may still fire them, and a
    /// dropped handler must not be called. The handlers are kept until the next close, since
    /// this may run inside one of them.
    fn close_socket(&mut self) {
        if let Some(socket) = self.socket.take() {
            socket.ws.set_onopen(None);
            socket.ws.set_onmessage(None);
            socket.ws.set_onclose(None);
            let _ = socket.ws.close();
            self.retired = Some(socket);
        }
    }

    fn open_socket(&mut self, core: &Rc<RefCell<Inner>>) {
        self.close_socket();
        if self.stopped {
            return;
        }
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        let ws = match WebSocket::new(&self.ws_url) {
            Ok(ws) => ws,
            Err(_) => {
                let mut rng = rng();
                self.controller.closed(now(), &mut rng);
                return;
            }
        };
        ws.set_binary_type(BinaryType::Arraybuffer);
        let handler = |core: &Rc<RefCell<Inner>>,
                       act: fn(&mut Inner, JsValue)|
         -> Closure<dyn FnMut(JsValue)> {
            let core = core.clone();
            Closure::new(move |event: JsValue| {
                let inner = core.clone();
                with(&inner, |inner| {
                    if inner.generation == generation {
                        act(inner, event);
                    }
                });
            })
        };
        let on_open = handler(core, |inner, _| inner.controller.opened(now()));
        let on_message = handler(core, |inner, event| {
            let Ok(message) = event.dyn_into::<MessageEvent>() else {
                return;
            };
            let bytes = Uint8Array::new(&message.data()).to_vec();
            let mut rng = rng();
            inner.controller.received(now(), &bytes, &mut rng);
        });
        let on_close = handler(core, |inner, _| {
            inner.close_socket();
            let mut rng = rng();
            inner.controller.closed(now(), &mut rng);
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        // An error is always followed by a close event; the close is what counts.
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        self.socket = Some(Socket {
            ws,
            _handlers: vec![on_open, on_message, on_close],
        });
    }

    /// A promise for `request`, answered by [`Inner::settle`].
    fn wait(&mut self, request: u32, then: Then) -> Promise {
        let mut slot = None;
        let promise = Promise::new(&mut |resolve, reject| slot = Some((resolve, reject)));
        if let Some((resolve, reject)) = slot {
            self.waiting.push(Waiter {
                request,
                resolve,
                reject,
                then,
            });
        }
        promise
    }

    /// The view as the UI gets it, with the notification settings.
    fn view_js(&self) -> JsValue {
        let mut shown = view::view(&self.model, &self.device, &self.relay, true);
        shown.push = push::view(&self.push, self.model.machines.keys(), &self.push_status);
        json::to_js(&shown)
    }

    fn set_push_status(&mut self, machine: Fingerprint, status: push::Status) {
        match self.push_status.iter_mut().find(|(m, _)| *m == machine) {
            Some(slot) => slot.1 = status,
            None => self.push_status.push((machine, status)),
        }
    }

    /// Tell `machine` what it should hold of the push keys now (sent when its channel is open,
    /// else after its next `Hello`).
    fn push_to(&mut self, machine: Fingerprint) {
        let keys = self.push.keys_for(&machine);
        let open = self.controller.is_online()
            && matches!(
                self.controller.channel(&machine),
                Channel::Syncing | Channel::Live
            );
        if self.controller.set_push(now(), &machine, keys).is_ok() {
            let status = if open {
                push::Status::Sending
            } else {
                push::Status::Waiting
            };
            self.set_push_status(machine, status);
        }
    }

    /// Store the settings and tell every machine.
    fn push_everywhere(&mut self) {
        let machines: Vec<Fingerprint> = self.model.machines.keys().copied().collect();
        for machine in machines {
            self.push_to(machine);
        }
        self.save_push();
    }

    /// Store the notification settings, in the background.
    fn save_push(&self) {
        let Some(database) = self.database.clone() else {
            return;
        };
        let settings = self.push.clone();
        wasm_bindgen_futures::spawn_local(async move {
            // A failed write shows as notifications off after a reload; turning them on again
            // repairs it.
            let _ = store::save_push(&database, &settings).await;
        });
    }

    /// Stop: no timer, no socket, nothing waiting (the service worker is done).
    fn shut_down(&mut self) {
        self.stopped = true;
        if let Some(handle) = self.timer.take() {
            clear_timeout(handle);
        }
        if let Some(handle) = self.flush_timer.take() {
            clear_timeout(handle);
        }
        self.on_flush = None;
        self.close_socket();
        self.retired = None;
        self.on_timer = None;
        self.waiting.clear();
        self.wake = None;
    }
}

/// Run `act` on the core, then carry out what it made the controller want and call JS.
fn with<T>(core: &Rc<RefCell<Inner>>, act: impl FnOnce(&mut Inner) -> T) -> T {
    let (value, calls) = {
        let mut inner = core.borrow_mut();
        let value = act(&mut inner);
        let calls = inner.drive(core);
        (value, calls)
    };
    for (function, argument) in calls {
        let _ = function.call1(&JsValue::NULL, &argument);
    }
    value
}

/// The protocol core the UI talks to (`Core` in `web/src/contract.ts`). Made by [`start`].
#[wasm_bindgen]
pub struct Core {
    inner: Rc<RefCell<Inner>>,
}

/// Open the store, paint from it, and start connecting: resolves to the [`Core`] with the
/// cached state loaded (`loaded: true` in the first view).
#[wasm_bindgen]
pub async fn start() -> Result<Core, JsValue> {
    // Ask the browser not to evict the device key and cache under storage pressure.
    if let Some(window) = web_sys::window()
        && let Ok(storage) = js_sys::Reflect::get(&window.navigator(), &"storage".into())
        && !storage.is_undefined()
    {
        let _ = window.navigator().storage().persist();
    }
    Ok(Core {
        inner: open(false).await?,
    })
}

/// Load the store and start connecting to the relay of this page's (or worker's) origin.
/// `headless` (the service worker): only the key and the book are loaded, nothing is stored,
/// no session is resynced (each starts at its newest event), and the device must have a key.
async fn open(headless: bool) -> Result<Rc<RefCell<Inner>>, JsValue> {
    let (relay, protocol, host) =
        global::location().ok_or_else(|| error("muxagent needs a page or a service worker"))?;
    let scheme = if protocol == "https:" { "wss:" } else { "ws:" };
    let ws_url = format!("{scheme}//{host}{RELAY_WS_PATH}");
    // Without IndexedDB (a private window) the app still works, for this visit only.
    let database = store::open().await.ok();
    let loaded = match &database {
        Some(database) => store::load(database, !headless).await.ok(),
        None => None,
    };
    let (identity, book, sessions, settings) = match loaded {
        Some(loaded) => (loaded.identity, loaded.book, loaded.sessions, loaded.push),
        None => Default::default(),
    };
    let identity = match identity {
        Some(identity) => identity,
        None if headless => {
            return Err(error(
                "this device has no key here; open the app to pair a machine",
            ));
        }
        None => {
            let identity = Identity::generate(&mut rng());
            if let Some(database) = &database {
                store::save_identity(database, &identity)
                    .await
                    .map_err(|failure| {
                        error(format!("could not keep this device's key: {failure}"))
                    })?;
            }
            identity
        }
    };
    let device = identity.public().fingerprint();
    let mut model = Model::new(&book);
    let config = Config {
        relay: relay.clone(),
        resync_events: Some(if headless {
            0
        } else {
            CACHED_EVENTS_PER_SESSION
        }),
    };
    let mut controller = Controller::new(identity, &book, config);
    for (machine, session, events) in sessions {
        let id = session.info.id;
        let complete = session.complete;
        model.restore(&machine, session);
        for event in events {
            model.restore_event(&machine, event);
        }
        if let Some(restored) = model.session(&machine, &id) {
            let (first, last) = restored.held();
            controller.hold(&machine, id, first, last, complete && first > 0);
        }
    }
    let inner = Rc::new(RefCell::new(Inner {
        controller,
        model,
        device,
        relay,
        ws_url,
        database: if headless { None } else { database },
        socket: None,
        retired: None,
        generation: 0,
        timer: None,
        on_timer: None,
        queued: store::Queue::default(),
        flush_timer: None,
        on_flush: None,
        watchers: Vec::new(),
        followers: Vec::new(),
        next_subscription: 1,
        waiting: Vec::new(),
        push: settings,
        push_status: Vec::new(),
        headless,
        stopped: false,
        wake: None,
        kept: None,
        watched: None,
        seen_state: None,
        dirty: false,
    }));
    with(&inner, |inner| {
        if !inner.headless && inner.push.subscription.is_some() {
            // Told after each machine's first hello.
            let machines: Vec<Fingerprint> = inner.model.machines.keys().copied().collect();
            for machine in machines {
                inner.push_to(machine);
            }
        }
        let mut rng = rng();
        inner.controller.tick(now(), &mut rng);
    });
    Ok(inner)
}

/// A promise resolved after `ms` milliseconds.
fn sleep(ms: u64) -> Promise {
    let ms = ms.min(i32::MAX as u64) as i32;
    Promise::new(&mut |resolve, _| {
        set_timeout(&resolve, ms);
    })
}

/// Wait until `ready` holds or `deadline` (Unix ms) passes; whether it holds.
async fn until(core: &Rc<RefCell<Inner>>, deadline: u64, ready: impl Fn(&Inner) -> bool) -> bool {
    loop {
        if ready(&core.borrow()) {
            return true;
        }
        let left = deadline.saturating_sub(now());
        if left == 0 {
            return false;
        }
        let changed = Promise::new(&mut |resolve, _| core.borrow_mut().wake = Some(resolve));
        let _ = JsFuture::from(Promise::race(&Array::of2(&changed, &sleep(left)))).await;
    }
}

/// Decide the approval of a notification (`notice`, as `web/src/notice.ts` parsed it): allow
/// once (`allow`) or deny. Connects to the relay as this device, opens the channel to the
/// notice's machine, sends the decision signed over the hash recomputed from the notice's exact
/// input, waits for the machine's answer and (up to [`APPLIED_WAIT_MS`]) for the approval to be
/// applied, then closes. Everything within `timeout_ms`. Resolves to a [`notice::Outcome`]; a
/// failure is an outcome too, with its reason.
#[wasm_bindgen(js_name = actOnNotice)]
pub async fn act_on_notice(notice: JsValue, allow: bool, timeout_ms: u32) -> JsValue {
    let deadline = now() + u64::from(timeout_ms);
    let host = read::Object::get(&notice, "host")
        .and_then(|host| host.as_string())
        .unwrap_or_else(|| "the machine".into());
    let outcome = match notice::read(&notice) {
        Err(why) => notice::Outcome::failed(&host, why),
        Ok(action) => match open(true).await {
            Err(failure) => notice::Outcome::failed(&host, message_of(&failure)),
            Ok(core) => {
                let outcome = act(&core, &action, allow, deadline).await;
                core.borrow_mut().shut_down();
                outcome
            }
        },
    };
    json::to_js(&outcome)
}

fn message_of(value: &JsValue) -> String {
    value
        .dyn_ref::<js_sys::Error>()
        .map(|error| String::from(error.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| "something went wrong".into())
}

async fn act(
    core: &Rc<RefCell<Inner>>,
    action: &notice::Action,
    allow: bool,
    deadline: u64,
) -> notice::Outcome {
    let host = action.host.as_str();
    let machine = action.machine;
    let signed = {
        let inner = core.borrow();
        if !inner.model.machines.contains_key(&machine) {
            let why = format!("this device is not paired with {host}");
            return notice::Outcome::failed(host, why);
        }
        match notice::sign(inner.controller.identity(), action, allow, now() / 1000) {
            Ok(signed) => signed,
            Err(failure) => return notice::Outcome::failed(host, failure),
        }
    };
    if !until(core, deadline, |inner| {
        inner.controller.machine_online(&machine)
    })
    .await
    {
        let inner = core.borrow();
        let why = if inner.controller.is_online() {
            format!("{host} is offline (its daemon is not connected to the relay)")
        } else {
            match view::connection(&inner.model.connection).detail {
                Some(detail) => format!("could not reach the relay: {detail}"),
                None => "could not reach the relay in time".into(),
            }
        };
        return notice::Outcome::failed(host, why);
    }
    core.borrow_mut().watched = Some((machine, action.session, action.request.approval));
    let asked = with(core, |inner| {
        let asked = inner.controller.request(now(), &machine, |request| {
            Decide {
                request,
                decision: signed,
            }
            .into()
        });
        if let Ok(request) = asked {
            // Answered into `kept`; nothing awaits the promise itself.
            let _ = inner.wait(request, Then::Keep);
        }
        asked
    });
    let request = match asked {
        Ok(request) => request,
        Err(failure) => return notice::Outcome::failed(host, failure),
    };
    let answered = |inner: &Inner| inner.kept.as_ref().is_some_and(|(r, _)| *r == request);
    if !until(core, deadline, answered).await {
        return notice::Outcome::failed(host, format!("{host} did not answer in time"));
    }
    let answer = core
        .borrow_mut()
        .kept
        .take()
        .map_or(Ok(()), |(_, answer)| answer);
    if answer.is_ok() {
        let applied_by = deadline.min(now() + APPLIED_WAIT_MS);
        until(core, applied_by, |inner| inner.seen_state.is_some()).await;
    }
    let state = core.borrow().seen_state;
    notice::Outcome::of(host, &answer, state)
}

/// The unsubscribe function for subscription `id` of `core`.
fn unsubscribe(core: &Rc<RefCell<Inner>>, id: u32) -> Function {
    let core = Rc::downgrade(core);
    Closure::once_into_js(move || {
        if let Some(core) = core.upgrade() {
            let mut inner = core.borrow_mut();
            inner.watchers.retain(|(watcher, _)| *watcher != id);
            inner.followers.retain(|(follower, ..)| *follower != id);
        }
    })
    .unchecked_into()
}

fn machine_arg(machine: &str) -> Result<Fingerprint, Promise> {
    record::parse_fingerprint(machine).ok_or_else(|| rejected("not a machine fingerprint"))
}

fn session_arg(session: &str) -> Result<SessionId, Promise> {
    record::parse_session(session).ok_or_else(|| rejected("not a session id"))
}

#[wasm_bindgen]
impl Core {
    /// Subscribe to the view; called at once with the current one. Returns an unsubscribe.
    pub fn watch(&self, on_view: Function) -> Function {
        let (id, view) = {
            let mut inner = self.inner.borrow_mut();
            let id = inner.next_subscription;
            inner.next_subscription += 1;
            inner.watchers.push((id, on_view.clone()));
            (id, inner.view_js())
        };
        let _ = on_view.call1(&JsValue::NULL, &view);
        unsubscribe(&self.inner, id)
    }

    /// Follow one session: the cached events at once, then each batch of new ones.
    pub fn follow(&self, machine: &str, session: &str, on_events: Function) -> Function {
        let parsed = record::parse_fingerprint(machine).zip(record::parse_session(session));
        let (id, cached) = {
            let mut inner = self.inner.borrow_mut();
            let id = inner.next_subscription;
            inner.next_subscription += 1;
            let mut cached = Vec::new();
            if let Some((machine, session)) = parsed {
                inner
                    .followers
                    .push((id, machine, session, on_events.clone()));
                if let Some(known) = inner.model.session(&machine, &session) {
                    cached = known.events.iter().map(view::event).collect();
                }
            }
            (id, json::to_js(&cached))
        };
        let _ = on_events.call1(&JsValue::NULL, &cached);
        unsubscribe(&self.inner, id)
    }

    /// Fetch events older than the oldest cached one; `false` when the first is held.
    #[wasm_bindgen(js_name = loadOlder)]
    pub fn load_older(&self, machine: &str, session: &str) -> Promise {
        let (machine, session) = match (machine_arg(machine), session_arg(session)) {
            (Ok(machine), Ok(session)) => (machine, session),
            (Err(rejected), _) | (_, Err(rejected)) => return rejected,
        };
        with(&self.inner, |inner| {
            match inner.controller.load_older(now(), &machine, session) {
                Ok(Some(request)) => inner.wait(request, Then::Older),
                Ok(None) => Promise::resolve(&JsValue::FALSE),
                Err(failure) => rejected(failure),
            }
        })
    }

    /// Pair with the machine of a `/pair#…` link (or the bare ticket).
    pub fn pair(&self, link: &str) -> Promise {
        with(&self.inner, |inner| {
            let mut rng = rng();
            match inner.controller.pair(now(), link, &mut rng) {
                Ok(request) => inner.wait(request, Then::Paired),
                Err(failure) => rejected(failure),
            }
        })
    }

    /// The runtimes a machine offers.
    pub fn runtimes(&self, machine: &str) -> Promise {
        let machine = match machine_arg(machine) {
            Ok(machine) => machine,
            Err(rejected) => return rejected,
        };
        self.ask(machine, Then::Runtimes, |request| {
            ListRuntimes { request }.into()
        })
    }

    /// Start a session; resolves to its id.
    pub fn start(&self, machine: &str, request: JsValue) -> Promise {
        let machine = match machine_arg(machine) {
            Ok(machine) => machine,
            Err(rejected) => return rejected,
        };
        let start = match read::start_request(&request) {
            Ok(start) => start,
            Err(failure) => return rejected(format!("not a start request: {failure}")),
        };
        self.start_session(machine, start, None)
    }

    /// Start on `machine` with the plan approved in another session.
    #[wasm_bindgen(js_name = startFromPlan)]
    pub fn start_from_plan(
        &self,
        machine: &str,
        from_machine: &str,
        from_session: &str,
        request: JsValue,
    ) -> Promise {
        let (machine, from_machine, from_session) = match (
            machine_arg(machine),
            machine_arg(from_machine),
            session_arg(from_session),
        ) {
            (Ok(a), Ok(b), Ok(c)) => (a, b, c),
            (Err(rejected), _, _) | (_, Err(rejected), _) | (_, _, Err(rejected)) => {
                return rejected;
            }
        };
        let start = match read::start_request(&request) {
            Ok(start) => start,
            Err(failure) => return rejected(format!("not a start request: {failure}")),
        };
        let plan = {
            let inner = self.inner.borrow();
            let host = inner
                .model
                .machines
                .get(&from_machine)
                .map(|known| known.hostname.clone())
                .unwrap_or_default();
            let short = format!("{from_session}");
            match inner.model.session(&from_machine, &from_session) {
                None => Err(format!("{host} has no session {short}")),
                Some(session) => match session.history.approved_plan() {
                    Ok((_, plan)) => Ok((
                        plan.trim_end().to_string(),
                        format!("plan from {host}:{short}"),
                    )),
                    Err(PlanError::NoPlan) => {
                        Err(format!("session {short} on {host} has not proposed a plan"))
                    }
                    Err(PlanError::NotApproved { approval, state }) => Err(format!(
                        "the plan of session {short} on {host} is not approved (approval {short}/{approval}: {state})"
                    )),
                },
            }
        };
        match plan {
            Ok((plan, title)) => self.start_session(machine, start, Some((plan, title))),
            Err(message) => rejected(message),
        }
    }

    /// Send a prompt to a session.
    pub fn send(&self, machine: &str, session: &str, text: String) -> Promise {
        self.session_request(machine, session, Then::Nothing, move |request, session| {
            SendPrompt {
                request,
                session,
                text,
            }
            .into()
        })
    }

    /// Stop the agent's current turn.
    pub fn interrupt(&self, machine: &str, session: &str) -> Promise {
        self.session_request(machine, session, Then::Nothing, |request, session| {
            Interrupt { request, session }.into()
        })
    }

    /// End a session.
    pub fn stop(&self, machine: &str, session: &str) -> Promise {
        self.session_request(machine, session, Then::Nothing, |request, session| {
            Stop { request, session }.into()
        })
    }

    /// Switch a session's permission mode.
    #[wasm_bindgen(js_name = setMode)]
    pub fn set_mode(&self, machine: &str, session: &str, mode: String) -> Promise {
        let Ok(wire) = Mode::try_from(mode.as_str()) else {
            return rejected(format!("mode `{mode}` is too long"));
        };
        let (Some(fingerprint), Some(id)) = (
            record::parse_fingerprint(machine),
            record::parse_session(session),
        ) else {
            return rejected("not a machine fingerprint and session id");
        };
        let then = Then::ModeSet(fingerprint, id, mode);
        self.session_request(machine, session, then, move |request, session| {
            SetMode {
                request,
                session,
                mode: wire,
            }
            .into()
        })
    }

    /// Sign and send a decision, if `shown_input` is exactly what the agent asked about.
    pub fn decide(
        &self,
        machine: &str,
        session: &str,
        approval: f64,
        shown_input: &str,
        decision: JsValue,
    ) -> Promise {
        let (machine, session) = match (machine_arg(machine), session_arg(session)) {
            (Ok(machine), Ok(session)) => (machine, session),
            (Err(rejected), _) | (_, Err(rejected)) => return rejected,
        };
        let decision = match read::decision(&decision) {
            Ok(decision) => decision,
            Err(failure) => return rejected(format!("not a decision: {failure}")),
        };
        let number = approval as u64;
        with(&self.inner, |inner| {
            let Some(known) = inner.model.session(&machine, &session) else {
                return rejected("this device does not know that session");
            };
            let Some(entry) = known.history.approvals.get(&number) else {
                return rejected(format!("session {session} has no approval {number}"));
            };
            let Some(mut request) = entry.request.clone().filter(|_| entry.pending()) else {
                return rejected(format!(
                    "approval {session}/{number} is no longer pending ({})",
                    entry.describe()
                ));
            };
            // An input that came cut is allowed over the whole fetched since (checked against
            // the hash when it came); a deny needs no look at it (`decide::deny`).
            if let Some(WholeInput::Whole(whole)) =
                inner.model.whole_input(&(machine, session, number))
            {
                request = whole.clone();
            }
            let decision: Decision = decision.into();
            let signed = match decision {
                Decision::Deny { message } => decide::deny(
                    inner.controller.identity(),
                    session,
                    &request,
                    message,
                    now() / 1000,
                ),
                decision => match decide::sign(
                    inner.controller.identity(),
                    session,
                    &request,
                    shown_input,
                    decision,
                    now() / 1000,
                ) {
                    Ok(signed) => signed,
                    Err(failure) => return rejected(failure),
                },
            };
            let asked = inner.controller.request(now(), &machine, |request| {
                muxagent_proto::app::Decide {
                    request,
                    decision: signed,
                }
                .into()
            });
            match asked {
                Ok(request) => {
                    inner.model.deciding(request, (machine, session, number));
                    inner.wait(request, Then::Nothing)
                }
                Err(failure) => rejected(failure),
            }
        })
    }

    /// Remove the machine from the account (the relay refuses it from then on) and forget it.
    pub fn revoke(&self, machine: &str) -> Promise {
        let machine = match machine_arg(machine) {
            Ok(machine) => machine,
            Err(rejected) => return rejected,
        };
        with(&self.inner, |inner| {
            match inner.controller.revoke(now(), &machine) {
                Ok(request) => inner.wait(request, Then::Nothing),
                Err(failure) => rejected(failure),
            }
        })
    }

    /// Ask the machine to forget this device, then forget it here.
    pub fn unpair(&self, machine: &str) -> Promise {
        let fingerprint = match machine_arg(machine) {
            Ok(machine) => machine,
            Err(rejected) => return rejected,
        };
        self.ask(fingerprint, Then::Unpaired(fingerprint), |request| {
            ForgetDevice { request }.into()
        })
    }

    /// Reconnect now (the page became visible, the browser came online).
    pub fn wake(&self) {
        with(&self.inner, |inner| inner.controller.wake(now()));
    }

    /// Whether the app is on screen: every machine hears it (and does not push meanwhile).
    #[wasm_bindgen(js_name = setForeground)]
    pub fn set_foreground(&self, visible: bool) {
        with(&self.inner, |inner| {
            inner.controller.set_foreground(now(), visible)
        });
    }

    /// The relay's push key and the subscription it holds for this device.
    #[wasm_bindgen(js_name = pushState)]
    pub fn push_state(&self) -> Promise {
        with(&self.inner, |inner| {
            match inner.controller.push_query(now()) {
                Ok(request) => inner.wait(request, Then::PushState),
                Err(failure) => rejected(failure),
            }
        })
    }

    /// Notifications on with this browser subscription: the relay gets the endpoint, every
    /// machine the keys (now, or after it connects).
    #[wasm_bindgen(js_name = enablePush)]
    pub fn enable_push(&self, endpoint: String, p256dh: Vec<u8>, auth: Vec<u8>) -> Promise {
        let Ok(auth) = <[u8; PUSH_AUTH_LEN]>::try_from(auth.as_slice()) else {
            return rejected("the browser's push subscription has no 16-byte auth secret");
        };
        if p256dh.len() != PUSH_VAPID_KEY_LEN {
            return rejected("the browser's push subscription has no P-256 key");
        }
        let subscription = push::Subscription {
            endpoint: endpoint.clone(),
            p256dh,
            auth,
        };
        with(&self.inner, |inner| {
            match inner.controller.push_subscribe(now(), Some(endpoint)) {
                Ok(request) => inner.wait(request, Then::PushEnabled(subscription)),
                Err(failure) => rejected(failure),
            }
        })
    }

    /// Notifications off: the relay drops the endpoint, every machine the keys.
    #[wasm_bindgen(js_name = disablePush)]
    pub fn disable_push(&self) -> Promise {
        with(&self.inner, |inner| {
            match inner.controller.push_subscribe(now(), None) {
                Ok(request) => inner.wait(request, Then::PushDisabled),
                Err(failure) => rejected(failure),
            }
        })
    }

    /// Which kinds of notification `machine` sends this device.
    #[wasm_bindgen(js_name = setPushKinds)]
    pub fn set_push_kinds(
        &self,
        machine: &str,
        approvals: bool,
        ended: bool,
        plans: bool,
    ) -> Promise {
        let machine = match machine_arg(machine) {
            Ok(machine) => machine,
            Err(rejected) => return rejected,
        };
        let kinds = [
            (approvals, PushKinds::APPROVALS),
            (ended, PushKinds::ENDED),
            (plans, PushKinds::PLANS),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |kinds, (_, bit)| kinds | bit);
        with(&self.inner, |inner| {
            if !inner.model.machines.contains_key(&machine) {
                return rejected(ClientError::UnknownMachine);
            }
            inner.push.set_kinds(&machine, kinds);
            if inner.push.subscription.is_some() {
                inner.push_to(machine);
            }
            inner.save_push();
            // The view shows the change (and, as it comes, the machine's answer).
            inner.dirty = true;
            Promise::resolve(&JsValue::UNDEFINED)
        })
    }

    /// Write the store changes that wait now (the page is hidden or going away).
    pub fn flush(&self) {
        self.inner.borrow_mut().flush();
    }

    /// The account's devices as the relay shows them to this device.
    pub fn devices(&self) -> Promise {
        with(&self.inner, |inner| match inner.controller.devices(now()) {
            Ok(request) => inner.wait(request, Then::Devices),
            Err(failure) => rejected(failure),
        })
    }

    /// Revoke a device of the account (this one, or as an owner any): the relay closes its
    /// connections and bars its key for good, and every machine forgets it.
    #[wasm_bindgen(js_name = revokeDevice)]
    pub fn revoke_device(&self, device: &str) -> Promise {
        let Some(device) = record::parse_fingerprint(device) else {
            return rejected("not a device fingerprint");
        };
        with(&self.inner, |inner| {
            match inner.controller.revoke_device(now(), &device) {
                Ok(request) => inner.wait(request, Then::Nothing),
                Err(failure) => rejected(failure),
            }
        })
    }

    /// Make a device of the account an owner (this device must be one).
    #[wasm_bindgen(js_name = grantOwner)]
    pub fn grant_owner(&self, device: &str) -> Promise {
        let Some(device) = record::parse_fingerprint(device) else {
            return rejected("not a device fingerprint");
        };
        with(&self.inner, |inner| {
            match inner.controller.grant_owner(now(), &device) {
                Ok(request) => inner.wait(request, Then::Nothing),
                Err(failure) => rejected(failure),
            }
        })
    }

    /// Once revoked: stop, and erase what this browser keeps of the device (its key, machines,
    /// sessions, events, notification settings). Load the page again to start over as a new
    /// device.
    pub fn forget(&self) -> Promise {
        let (database, device) = {
            let mut inner = self.inner.borrow_mut();
            if !inner.controller.is_revoked() {
                return rejected(
                    "this device is not revoked; revoke it in Settings → Devices first",
                );
            }
            inner.queued = store::Queue::default();
            inner.shut_down();
            (inner.database.take(), inner.device)
        };
        wasm_bindgen_futures::future_to_promise(async move {
            if let Some(database) = database {
                store::erase(&database, &device).await.map_err(|failure| {
                    error(format!("could not erase this browser's data: {failure}"))
                })?;
                database.close();
            }
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Ask `machine` to send this device a test notification now.
    #[wasm_bindgen(js_name = testPush)]
    pub fn test_push(&self, machine: &str) -> Promise {
        let machine = match machine_arg(machine) {
            Ok(machine) => machine,
            Err(rejected) => return rejected,
        };
        self.ask(machine, Then::Nothing, |request| {
            TestPush { request }.into()
        })
    }
}

impl Core {
    /// Send a request built by `build` to `machine`; the promise follows its answer.
    fn ask(
        &self,
        machine: Fingerprint,
        then: Then,
        build: impl FnOnce(u32) -> DeviceMessage,
    ) -> Promise {
        with(&self.inner, |inner| {
            match inner.controller.request(now(), &machine, build) {
                Ok(request) => inner.wait(request, then),
                Err(failure) => rejected(failure),
            }
        })
    }

    fn session_request(
        &self,
        machine: &str,
        session: &str,
        then: Then,
        build: impl FnOnce(u32, SessionId) -> DeviceMessage,
    ) -> Promise {
        let (machine, session) = match (machine_arg(machine), session_arg(session)) {
            (Ok(machine), Ok(session)) => (machine, session),
            (Err(rejected), _) | (_, Err(rejected)) => return rejected,
        };
        self.ask(machine, then, move |request| build(request, session))
    }

    fn start_session(
        &self,
        machine: Fingerprint,
        start: read::StartRequest,
        plan: Option<(String, String)>,
    ) -> Promise {
        let Ok(runtime) = RuntimeName::try_from(start.runtime.as_str()) else {
            return rejected(format!("runtime name `{}` is too long", start.runtime));
        };
        let mode = match start.mode.as_deref().map(Mode::try_from) {
            None => None,
            Some(Ok(mode)) => Some(mode),
            Some(Err(_)) => return rejected("the mode name is too long"),
        };
        let (prompt, title) = match plan {
            Some((plan, title)) => (plan, start.title.or(Some(title))),
            None => (start.prompt, start.title),
        };
        let then = Then::Started(machine, start.mode.clone());
        let args = start.args.unwrap_or_default();
        let cwd = start.cwd;
        self.ask(machine, then, move |request| {
            StartSession {
                request,
                runtime,
                args,
                cwd,
                prompt,
                title,
                mode,
            }
            .into()
        })
    }
}
