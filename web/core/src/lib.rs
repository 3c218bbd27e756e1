//! The phone web app's protocol core, compiled to wasm32 with wasm-bindgen: it implements the
//! `Core` interface of `web/src/contract.ts`.
//!
//! It owns the relay WebSocket, drives the sans-IO [`Controller`] with it and with
//! `setTimeout`, folds what the controller reports into the [`Model`], keeps the model in
//! IndexedDB ([`store`]), and hands the UI plain values ([`view`]). The device key, the Noise
//! channels and every ciphertext stay in here: the UI sees only the view.
//!
//! All protocol logic is in `muxagent-client`; this crate is glue, and its pure parts
//! ([`view`], [`record`]) are tested natively. It builds for the host too (the exports exist
//! there but need a browser to run).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod indexed_db;
pub mod json;
pub mod read;
pub mod record;
pub mod store;
pub mod view;

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Function, Promise, Uint8Array};
use muxagent_client::book::Book;
use muxagent_client::controller::{Answer, ClientError, Config, Controller, Note, Output};
use muxagent_client::decide;
use muxagent_client::history::PlanError;
use muxagent_client::limits::CACHED_EVENTS_PER_SESSION;
use muxagent_client::model::{Changes, Model};
use muxagent_proto::app::{
    DeviceMessage, ForgetDevice, Interrupt, ListRuntimes, Mode, RuntimeName, SendPrompt, SessionId,
    SetMode, StartSession, Stop,
};
use muxagent_proto::identity::{Fingerprint, Identity};
use muxagent_proto::limits::RELAY_WS_PATH;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, MessageEvent, WebSocket};

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
    // These are a handful each (a view or two, one open session, the requests in flight), so
    // they are plain lists in the order made: a BTreeMap per value type costs the download ~10 KB
    // of wasm each.
    /// By subscription id.
    watchers: Vec<(u32, Function)>,
    /// By subscription id.
    followers: Vec<(u32, Fingerprint, SessionId, Function)>,
    next_subscription: u32,
    waiting: Vec<Waiter>,
}

/// Calls to make into JS once the core is no longer borrowed (a callback may call back in).
type Calls = Vec<(Function, JsValue)>;

impl Inner {
    /// Carry out what the controller wants, fold its notes, and say what JS must hear.
    fn drive(&mut self, core: &Rc<RefCell<Inner>>) -> Calls {
        let mut calls = Calls::new();
        let mut changes = Changes::default();
        while let Some(output) = self.controller.poll_output() {
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
                    if let Note::Answer { request, result } = note {
                        self.settle(request, result, &mut changes, &mut calls);
                    }
                }
            }
        }
        self.schedule(core);
        self.persist(&changes);
        if changes.view {
            let view = json::to_js(&view::view(&self.model, &self.device, &self.relay, true));
            for (_, watcher) in &self.watchers {
                calls.push((watcher.clone(), view.clone()));
            }
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
                (Ok(Answer::Runtimes(list)), Then::Runtimes) => {
                    let runtimes: Vec<view::RuntimeView> =
                        list.runtimes.iter().map(view::RuntimeView::from).collect();
                    Ok(json::to_js(&runtimes))
                }
                (Ok(Answer::Older { found }), Then::Older) => Ok(JsValue::from_bool(*found)),
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

    /// Store what changed, in the background (writes run in the order they were made).
    fn persist(&self, changes: &Changes) {
        let Some(database) = self.database.clone() else {
            return;
        };
        let batch = store::Batch::of(&self.model, changes);
        if batch.is_empty() {
            return;
        }
        wasm_bindgen_futures::spawn_local(async move {
            // A failed write loses only cache: the machines resend it.
            let _ = batch.write(&database).await;
        });
    }

    /// One timer for the controller's next deadline.
    fn schedule(&mut self, core: &Rc<RefCell<Inner>>) {
        let Some(window) = web_sys::window() else {
            return;
        };
        if let Some(handle) = self.timer.take() {
            window.clear_timeout_with_handle(handle);
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
            self.timer = window
                .set_timeout_with_callback_and_timeout_and_arguments_0(
                    callback.as_ref().unchecked_ref(),
                    delay,
                )
                .ok();
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
    let window = web_sys::window().ok_or_else(|| error("muxagent needs a browser window"))?;
    let location = window.location();
    let relay = location.origin()?;
    let scheme = if location.protocol()? == "https:" {
        "wss:"
    } else {
        "ws:"
    };
    let ws_url = format!("{scheme}//{}{RELAY_WS_PATH}", location.host()?);
    // Ask the browser not to evict the device key and cache under storage pressure.
    if let Ok(storage) = js_sys::Reflect::get(&window.navigator(), &"storage".into())
        && !storage.is_undefined()
    {
        let _ = window.navigator().storage().persist();
    }
    // Without IndexedDB (a private window) the app still works, for this visit only.
    let database = store::open().await.ok();
    let loaded = match &database {
        Some(database) => store::load(database).await.ok(),
        None => None,
    };
    let (identity, book, sessions) = match loaded {
        Some(loaded) => (loaded.identity, loaded.book, loaded.sessions),
        None => (None, Book::default(), Vec::new()),
    };
    let identity = match identity {
        Some(identity) => identity,
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
        resync_events: Some(CACHED_EVENTS_PER_SESSION),
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
        database,
        socket: None,
        retired: None,
        generation: 0,
        timer: None,
        on_timer: None,
        watchers: Vec::new(),
        followers: Vec::new(),
        next_subscription: 1,
        waiting: Vec::new(),
    }));
    with(&inner, |inner| {
        let mut rng = rng();
        inner.controller.tick(now(), &mut rng);
    });
    Ok(Core { inner })
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
            let view = view::view(&inner.model, &inner.device, &inner.relay, true);
            (id, json::to_js(&view))
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
            let Some(request) = entry.request.clone().filter(|_| entry.pending()) else {
                return rejected(format!(
                    "approval {session}/{number} is no longer pending ({})",
                    entry.describe()
                ));
            };
            let signed = match decide::sign(
                inner.controller.identity(),
                session,
                &request,
                shown_input,
                decision.into(),
                now() / 1000,
            ) {
                Ok(signed) => signed,
                Err(failure) => return rejected(failure),
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
