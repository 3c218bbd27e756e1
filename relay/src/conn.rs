//! One WebSocket connection, after the HTTP upgrade: hello, login, then the loop that reads
//! frames, writes the outbox and pings — all in the connection's single task (no separate
//! writer or timer task per connection: an idle connection is one parked future).
//!
//! - **Reading** goes through [`crate::meter`]: every byte is charged to the inbound budget as
//!   it is read (headers and control frames too) and reading pauses while the budget is
//!   overspent, so TCP pushes back (the budget is the key's: a device's connections share one).
//!   Before login only a login-sized message is read, and anything but a `Login` closes the
//!   connection at once.
//! - **Writing** takes what the outbox holds, up to [`RELAY_WRITE_BATCH_BYTES`], feeds it to
//!   the WebSocket and flushes once (one `send` for many small frames), the batch under the
//!   write timeout; a receiver that stalls a write past it is disconnected. Routing only
//!   pushes into this connection's bounded outbox; a sender whose frame does not fit holds it
//!   itself ([`crate::pushback`]).
//! - **Pushing back**: a frame this connection routes to a full queue is held here; until it
//!   goes (or [`Limits::pushback`] passes and it is dropped) the connection reads nothing, but
//!   goes on writing its outbox and answering its timer.
//! - **Fairness**: after [`RELAY_FRAMES_PER_TURN`] frames read or written the task yields to
//!   the executor (smol does not preempt: a socket that always has data would hold a thread),
//!   and reading and writing take turns.
//! - **Liveness**: a ping every interval + jitter; a connection silent for the pong timeout
//!   after a ping is closed.
//! - **Malformed** frames (undecodable, oversized, text) close this connection only, after an
//!   `Error{Malformed}`; unknown kinds are counted and skipped. So do floods the meter stops
//!   (control frames past their rate, a message in too many fragments).
//! - **Registry requests** are limited per connection and per source prefix and minute, and
//!   each is charged the signature verifications it costs before any is made. Push
//!   subscription changes count against the same minutes (both are synced writes); pushes are
//!   handed to [`crate::push`], which only queues them. A device's question about its
//!   account's devices is charged the bytes of its answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::limits::{
    MAX_FRAME_LEN, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, RELAY_FRAMES_PER_TURN,
    RELAY_QUEUE_RESERVE_BYTES, RELAY_REGISTRY_REQUESTS_PER_MIN,
    RELAY_REGISTRY_REQUESTS_PER_PREFIX_PER_MIN, RELAY_SIGNATURE_COST_BYTES,
    RELAY_WRITE_BATCH_BYTES,
};
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::error::ProtocolError;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use async_tungstenite::tungstenite::{Bytes, Error as WsError, Message};
use futures::Sink;
use muxagent_proto::envelope::Decoded;
use muxagent_proto::frame::{
    ErrorCode, Frame, Login, LoginOk, Registry, RegistryAck, RegistryEntry, Role, ServerHello,
};
use smol::Timer;
use smol::stream::StreamExt as _;

use crate::bucket::{Budget, Window};
use crate::config::Limits;
use crate::meter::{Metered, Violation};
use crate::metrics::{ConnKind, Disconnect, DropReason, EntryKind, LoginFailure, Refusal};
use crate::outbox::{Bound, Next, Outbox, PushError, QueueLimits};
use crate::pushback::{Held, Holds};
use crate::router::{Refused, Session, check_version, drop_reason, encode, error_frame};
use crate::server::{Gauge, Shared, Slot};
use crate::time::{unix_now, until};

pub(crate) type Ws = WebSocketStream<Metered>;

/// tungstenite's settings for relay connections: small read buffer, writes gathered up to a
/// batch (each batch is flushed at once: [`write_batch`]), frames and messages capped at one
/// relay frame. (Before login the meter holds messages to a login's size: async-tungstenite
/// cannot change a stream's configuration once it is made.) Over TLS the read buffer is
/// smaller: it is filled from rustls's decrypted bytes, not from the socket.
pub(crate) fn ws_config(limits: &Limits, tls: bool) -> WebSocketConfig {
    let read_buffer_len = if tls {
        limits.tls_read_buffer_len
    } else {
        limits.read_buffer_len
    };
    WebSocketConfig::default()
        .read_buffer_size(read_buffer_len)
        .write_buffer_size(RELAY_WRITE_BATCH_BYTES)
        .max_write_buffer_size(2 * MAX_FRAME_LEN + 64)
        .max_message_size(Some(MAX_FRAME_LEN))
        .max_frame_size(Some(MAX_FRAME_LEN))
}

/// Why writing failed.
enum WriteError {
    Timeout,
    Io,
}

impl WriteError {
    fn disconnect(self) -> Disconnect {
        match self {
            WriteError::Timeout => Disconnect::WriteTimeout,
            WriteError::Io => Disconnect::Io,
        }
    }
}

async fn write(ws: &mut Ws, message: Message, timeout: Duration) -> Result<(), WriteError> {
    let mut send = std::pin::pin!(ws.send(message));
    let mut timer = Timer::after(timeout);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = send.as_mut().poll(cx) {
            return Poll::Ready(result.map_err(|_| WriteError::Io));
        }
        if Pin::new(&mut timer).poll(cx).is_ready() {
            return Poll::Ready(Err(WriteError::Timeout));
        }
        Poll::Pending
    })
    .await
}

/// The longest header of a frame the relay sends (unmasked, 64-bit length).
const MAX_HEADER_LEN: usize = 10;

/// Write `first` and the frames behind it in `outbox` while they fit one batch
/// ([`RELAY_WRITE_BATCH_BYTES`], at most [`RELAY_FRAMES_PER_TURN`] frames), then flush once:
/// small frames leave in one `send`, and the write buffer never holds more than a batch or one
/// larger frame. The whole batch is under one `timeout`. How many frames were written.
async fn write_batch(
    ws: &mut Ws,
    outbox: &Outbox,
    first: Bytes,
    timeout: Duration,
) -> Result<usize, WriteError> {
    let mut next = Some(first);
    let (mut batched, mut frames) = (0usize, 0usize);
    let mut timer = Timer::after(timeout);
    std::future::poll_fn(|cx| {
        loop {
            if let Some(frame) = next.take() {
                match Pin::new(&mut *ws).poll_ready(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(_)) => return Poll::Ready(Err(WriteError::Io)),
                    Poll::Pending => {
                        next = Some(frame);
                        break;
                    }
                }
                batched += frame.len() + MAX_HEADER_LEN;
                frames += 1;
                if Pin::new(&mut *ws)
                    .start_send(Message::Binary(frame))
                    .is_err()
                {
                    return Poll::Ready(Err(WriteError::Io));
                }
                if frames < RELAY_FRAMES_PER_TURN {
                    let room = RELAY_WRITE_BATCH_BYTES.saturating_sub(batched + MAX_HEADER_LEN);
                    next = outbox.pop_within(room);
                }
                continue;
            }
            match Pin::new(&mut *ws).poll_flush(cx) {
                Poll::Ready(Ok(())) => return Poll::Ready(Ok(frames)),
                Poll::Ready(Err(_)) => return Poll::Ready(Err(WriteError::Io)),
                Poll::Pending => break,
            }
        }
        if Pin::new(&mut timer).poll(cx).is_ready() {
            return Poll::Ready(Err(WriteError::Timeout));
        }
        Poll::Pending
    })
    .await
}

/// Close politely: an optional last frame, the WebSocket close handshake, then read until the
/// client's close arrives (so the kernel does not reset data it still has to deliver). Every
/// step is bounded by `timeout`.
async fn close(ws: &mut Ws, last: Option<Bytes>, timeout: Duration) {
    if let Some(frame) = last
        && write(ws, Message::Binary(frame), timeout).await.is_err()
    {
        return;
    }
    let _ = until(Instant::now() + timeout, ws.close(None)).await;
    let _ = until(Instant::now() + timeout, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

fn random_bytes<const N: usize>() -> Option<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes)
}

/// Ping interval plus a random jitter.
fn next_ping(limits: &Limits, now: Instant) -> Instant {
    let jitter_ms = limits.ping_jitter.as_millis() as u64;
    let jitter = match (jitter_ms, getrandom::u64()) {
        (0, _) | (_, Err(_)) => 0,
        (range, Ok(random)) => random % range,
    };
    now + limits.ping_interval + Duration::from_millis(jitter)
}

/// Serve one upgraded connection until it ends.
pub(crate) async fn serve(
    shared: &Arc<Shared>,
    ws: &mut Ws,
    deadline: Instant,
    gauge: &mut Gauge,
    slot: &Slot,
) {
    // The login phase is boxed: its state is large and short-lived, and must not size the
    // future that an idle connection keeps for hours.
    let Some(session) = Box::pin(log_in(shared, ws, deadline, gauge, slot)).await else {
        return;
    };
    let reason = run(shared, ws, &session).await;
    // Nothing more is written here: refuse further frames and wake the senders holding one
    // for this queue (they would otherwise wait out their push-back time).
    session.outbox.close_with(None, reason);
    shared.router.logout(&session);
    shared.metrics.disconnect(reason);
}

/// Hello, login, `LoginOk` (and the presence that follows it). `None` when the connection
/// ended (counted already).
async fn log_in(
    shared: &Arc<Shared>,
    ws: &mut Ws,
    deadline: Instant,
    gauge: &mut Gauge,
    slot: &Slot,
) -> Option<Session> {
    let limits = &shared.limits;
    let metrics = &shared.metrics;
    let Some(challenge) = random_bytes::<32>() else {
        crate::warn(format_args!("no randomness for a login challenge"));
        let frame = error_frame(ErrorCode::Internal, None, "no randomness");
        close(ws, Some(frame), limits.write_timeout).await;
        return None;
    };
    let hello = encode(Frame::ServerHello(ServerHello {
        min_protocol: MIN_PROTOCOL_VERSION,
        max_protocol: PROTOCOL_VERSION,
        challenge,
    }));
    if let Err(e) = write(ws, Message::Binary(hello), limits.write_timeout).await {
        metrics.disconnect(e.disconnect());
        return None;
    }
    let login = match until(deadline, read_login(ws, shared)).await {
        None => {
            let frame = error_frame(
                ErrorCode::LoginTimeout,
                None,
                "no login within the deadline",
            );
            return refuse(
                shared,
                ws,
                LoginFailure::Deadline,
                Disconnect::LoginTimeout,
                Some(frame),
            )
            .await;
        }
        Some(Err(failure)) => {
            return refuse(
                shared,
                ws,
                failure.counter,
                failure.disconnect,
                failure.frame,
            )
            .await;
        }
        Some(Ok(login)) => login,
    };
    if !check_version(&login, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION) {
        let frame = error_frame(
            ErrorCode::UnsupportedVersion,
            None,
            "no protocol version in common with this relay",
        );
        return refuse(
            shared,
            ws,
            LoginFailure::Version,
            Disconnect::LoginFailed,
            Some(frame),
        )
        .await;
    }
    if login.verify(&challenge).is_err() {
        let frame = error_frame(
            ErrorCode::LoginFailed,
            None,
            "the login signature does not verify",
        );
        return refuse(
            shared,
            ws,
            LoginFailure::BadSignature,
            Disconnect::LoginFailed,
            Some(frame),
        )
        .await;
    }
    if shared.is_shutting_down() {
        metrics.disconnect(Disconnect::Shutdown);
        close(ws, Some(shared.restarting_frame()), limits.write_timeout).await;
        return None;
    }
    let mut session = Session {
        conn: shared.next_conn_id(),
        fingerprint: login.identity.fingerprint(),
        role: login.role,
        outbox: Arc::new(Outbox::new(
            QueueLimits {
                depth: limits.queue_depth,
                bytes: limits.queue_bytes_per_connection,
                reserve: RELAY_QUEUE_RESERVE_BYTES,
                cut_after: limits.slow_reader_cut,
            },
            shared.queued.clone(),
        )),
        budget: Arc::new(Budget::new(
            limits.inbound_bytes_per_sec,
            limits.inbound_burst_bytes,
            Instant::now(),
        )),
        prefix: slot.prefix,
        registry_requests: Mutex::new(Window::new(Instant::now())),
    };
    let admitted = match shared.router.login(&session, login.hostname) {
        Ok(admitted) => admitted,
        Err(refused) => {
            let disconnect = if refused.code == ErrorCode::Revoked {
                Disconnect::Revoked
            } else {
                Disconnect::LoginFailed
            };
            let frame = error_frame(refused.code, None, refused.reason);
            return refuse(shared, ws, refused.counter, disconnect, Some(frame)).await;
        }
    };
    // A device's further connections draw on the budget its first one has; from here on
    // every byte read is charged to it, and the connection no longer counts as one that has
    // not logged in.
    session.budget = admitted.budget;
    ws.get_mut().open(session.budget.clone());
    slot.authenticated();
    let (account, initial) = (admitted.account, admitted.initial);
    metrics.login_ok();
    gauge.set(match session.role {
        Role::Device => ConnKind::Device,
        Role::Machine => ConnKind::Machine,
        Role::PendingMachine => ConnKind::PendingMachine,
    });
    let ok = encode(Frame::LoginOk(LoginOk {
        protocol: login.protocol,
        account,
    }));
    let mut result = write(ws, Message::Binary(ok), limits.write_timeout).await;
    for frame in initial {
        if result.is_err() {
            break;
        }
        result = write(ws, Message::Binary(frame), limits.write_timeout).await;
    }
    if let Err(e) = result {
        shared.router.logout(&session);
        metrics.disconnect(e.disconnect());
        return None;
    }
    Some(session)
}

/// Count a refused login and close with `frame`.
async fn refuse(
    shared: &Shared,
    ws: &mut Ws,
    counter: LoginFailure,
    disconnect: Disconnect,
    frame: Option<Bytes>,
) -> Option<Session> {
    shared.metrics.login_failed(counter);
    shared.metrics.disconnect(disconnect);
    close(ws, frame, shared.limits.write_timeout).await;
    None
}

struct LoginFailed {
    counter: LoginFailure,
    disconnect: Disconnect,
    frame: Option<Bytes>,
}

/// Read the client's `Login`: the first message, one binary frame of a login's size (the
/// meter refuses anything else before it reaches tungstenite).
async fn read_login(ws: &mut Ws, shared: &Shared) -> Result<Login, LoginFailed> {
    let metrics = &shared.metrics;
    let not_a_login = |reason: &str| LoginFailed {
        counter: LoginFailure::NotALogin,
        disconnect: Disconnect::Malformed,
        frame: Some(error_frame(ErrorCode::Malformed, None, reason)),
    };
    let closed = LoginFailed {
        counter: LoginFailure::Closed,
        disconnect: Disconnect::Closed,
        frame: None,
    };
    let message = match ws.next().await {
        None | Some(Ok(Message::Close(_))) => return Err(closed),
        Some(Err(e)) => {
            let (disconnect, reason) = read_error(ws, &e);
            if matches!(
                disconnect,
                Disconnect::Closed | Disconnect::Io | Disconnect::Reset
            ) {
                return Err(LoginFailed {
                    disconnect,
                    ..closed
                });
            }
            metrics.malformed_frame();
            return Err(LoginFailed {
                disconnect,
                ..not_a_login(&reason)
            });
        }
        Some(Ok(message)) => message,
    };
    let Message::Binary(data) = message else {
        metrics.malformed_frame();
        return Err(not_a_login(Violation::NotALogin.reason()));
    };
    metrics.frame_in(data.len());
    match Frame::decode(&data) {
        Ok(Decoded::Known(Frame::Login(login))) => Ok(login),
        Ok(Decoded::Known(_)) => Err(LoginFailed {
            counter: LoginFailure::NotALogin,
            disconnect: Disconnect::LoginFailed,
            frame: Some(error_frame(ErrorCode::NotAllowed, None, "log in first")),
        }),
        Ok(Decoded::Unknown { .. }) => {
            metrics.unknown_frame();
            Err(not_a_login(
                "log in first: the first message must be a Login",
            ))
        }
        Err(e) => {
            metrics.malformed_frame();
            Err(not_a_login(&e.to_string()))
        }
    }
}

/// Why reading failed: the disconnect reason, and what to tell the client.
fn read_error(ws: &Ws, error: &WsError) -> (Disconnect, String) {
    if let Some(violation) = ws.get_ref().violation() {
        let disconnect = match violation {
            Violation::NotALogin => Disconnect::Malformed,
            Violation::TooLong => Disconnect::Oversized,
            Violation::Fragments | Violation::ControlFlood => Disconnect::Flood,
        };
        return (disconnect, violation.reason().to_string());
    }
    let disconnect = match error {
        WsError::Capacity(_) => Disconnect::Oversized,
        // The peer's TCP ended mid-stream: an abrupt close, nothing it sent was malformed.
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Disconnect::Reset,
        WsError::Protocol(_) | WsError::Utf8(_) => Disconnect::Malformed,
        WsError::ConnectionClosed | WsError::AlreadyClosed => Disconnect::Closed,
        _ => Disconnect::Io,
    };
    (disconnect, error.to_string())
}

/// Waits for the first of: an outbound frame (or close), an inbound message (the meter holds
/// reading back while the byte budget is overspent; reading also waits while the frames held
/// for full queues are too many, [`Holds::may_read`]), a held frame going, and the timer. Reading and writing take
/// turns when both are ready. A plain struct rather than combined `async` blocks, so the state
/// an idle connection parks in is a few pointers.
struct Wait<'a> {
    ws: &'a mut Ws,
    outbox: &'a Outbox,
    holds: &'a mut Holds,
    timer: &'a mut Timer,
    read_first: bool,
}

impl Wait<'_> {
    fn poll_in(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        if let Poll::Ready(settled) = self.holds.poll(cx) {
            return Poll::Ready(Event::Sent(settled));
        }
        if self.holds.may_read() {
            return self.ws.poll_next(cx).map(Event::Read);
        }
        // Reading waits: give up on receivers that hold up the others (`Holds::give_up_due`).
        let settled = self.holds.give_up_due(Instant::now());
        if settled.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(Event::Sent(settled))
        }
    }
}

impl Future for Wait<'_> {
    type Output = Event;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Event> {
        let this = self.get_mut();
        if this.read_first
            && let Poll::Ready(event) = this.poll_in(cx)
        {
            return Poll::Ready(event);
        }
        if let Poll::Ready(next) = this.outbox.poll_next(cx) {
            return Poll::Ready(Event::Out(next));
        }
        if !this.read_first
            && let Poll::Ready(event) = this.poll_in(cx)
        {
            return Poll::Ready(event);
        }
        if Pin::new(&mut *this.timer).poll(cx).is_ready() {
            return Poll::Ready(Event::Timer);
        }
        Poll::Pending
    }
}

enum Event {
    Read(Option<Result<Message, WsError>>),
    Out(Next),
    /// Held frames went (or were refused for good) everywhere: what their senders are told.
    Sent(Vec<Option<Refused>>),
    Timer,
}

/// What handling one inbound frame asks for.
enum Flow {
    Continue,
    /// A routed frame went to its receivers at once (for [`Holds::went_elsewhere`]).
    Routed,
    /// Hold this frame for a full queue (reading on while few are held).
    Hold(Box<Held>),
    /// A request that waits on a durable write (boxed: the loop's state stays small).
    Registry(Box<Registry>),
    PushSubscribe(Box<muxagent_proto::frame::PushSubscribe>),
    Close(Disconnect, Option<Bytes>),
}

/// Tell the sender what became of a held frame.
fn settled(shared: &Shared, session: &Session, refused: Option<Refused>) {
    if let Some(refused) = refused {
        reply(
            shared,
            session,
            error_frame(refused.code, None, refused.reason),
        );
    }
}

/// The logged-in loop. Returns why the connection ended.
async fn run(shared: &Shared, ws: &mut Ws, session: &Session) -> Disconnect {
    let limits = &shared.limits;
    let metrics = &shared.metrics;
    let mut ping_due = next_ping(limits, Instant::now());
    let mut pong_due: Option<Instant> = None;
    // One timer for the connection's life, re-armed in place: no timer churn per event.
    let mut timer = Timer::at(ping_due);
    let mut armed = ping_due;
    let mut holds = Holds::default();
    // Frames read or written since the task last yielded, and which side goes first next.
    let mut work = 0u32;
    let mut read_first = false;
    loop {
        if work as usize >= RELAY_FRAMES_PER_TURN {
            work = 0;
            smol::future::yield_now().await;
        }
        let mut due = pong_due.map_or(ping_due, |pong| pong.min(ping_due));
        if let Some(held) = holds.deadline() {
            due = due.min(held);
        }
        if due != armed {
            timer.set_at(due);
            armed = due;
        }
        let event = Wait {
            ws: &mut *ws,
            outbox: &session.outbox,
            holds: &mut holds,
            timer: &mut timer,
            read_first,
        }
        .await;
        read_first = matches!(event, Event::Out(Next::Frame(_)));
        match event {
            Event::Timer => {
                let now = Instant::now();
                for refused in holds.give_up_due(now) {
                    settled(shared, session, refused);
                }
                if pong_due.is_some_and(|pong| now >= pong) {
                    return Disconnect::PongTimeout;
                }
                if now >= ping_due {
                    let ping = Message::Ping(Bytes::new());
                    if let Err(e) = Box::pin(write(ws, ping, limits.write_timeout)).await {
                        return e.disconnect();
                    }
                    // The deadline runs from the first unanswered ping.
                    pong_due.get_or_insert(now + limits.pong_timeout);
                    ping_due = next_ping(limits, now);
                }
            }
            Event::Sent(refusals) => {
                for refused in refusals {
                    settled(shared, session, refused);
                }
            }
            Event::Out(Next::Frame(frame)) => {
                // Boxed, like every rare or short-lived state here: the future an idle
                // connection parks in holds only what waiting needs.
                let written = Box::pin(write_batch(
                    ws,
                    &session.outbox,
                    frame,
                    limits.write_timeout,
                ));
                match written.await {
                    Ok(frames) => work += frames as u32,
                    Err(e) => return e.disconnect(),
                }
            }
            Event::Out(Next::Close(_, Disconnect::SlowReader)) => {
                // Anything written now would wait behind what it is not reading: just go.
                return Disconnect::SlowReader;
            }
            Event::Out(Next::Close(last, reason)) => {
                Box::pin(close(ws, last, limits.write_timeout)).await;
                return reason;
            }
            Event::Read(None) => return Disconnect::Closed,
            Event::Read(Some(Err(e))) => {
                let (reason, text) = read_error(ws, &e);
                if matches!(
                    reason,
                    Disconnect::Oversized | Disconnect::Malformed | Disconnect::Flood
                ) {
                    metrics.malformed_frame();
                    let frame = error_frame(ErrorCode::Malformed, None, &text);
                    // The stream is unusable for reading; try to say why, briefly.
                    let _ = Box::pin(write(ws, Message::Binary(frame), limits.write_timeout)).await;
                }
                return reason;
            }
            Event::Read(Some(Ok(message))) => {
                pong_due = None;
                work += 1;
                let flow = match message {
                    Message::Binary(data) => {
                        metrics.frame_in(data.len());
                        handle(shared, session, &data, &holds)
                    }
                    Message::Text(_) => {
                        metrics.malformed_frame();
                        Flow::Close(
                            Disconnect::Malformed,
                            Some(error_frame(
                                ErrorCode::Malformed,
                                None,
                                "text messages are not part of the protocol",
                            )),
                        )
                    }
                    Message::Close(_) => Flow::Close(Disconnect::Closed, None),
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Flow::Continue,
                };
                match flow {
                    Flow::Continue => {}
                    Flow::Routed => holds.went_elsewhere(),
                    Flow::Hold(frame) => holds.push(*frame),
                    // Boxed: a registry write needs far more state than waiting does.
                    Flow::Registry(request) => {
                        // A device that revoked itself is closed once acknowledged.
                        let after = Box::pin(registry(shared, session, *request)).await;
                        if let Flow::Close(reason, last) = after {
                            Box::pin(close(ws, last, limits.write_timeout)).await;
                            return reason;
                        }
                    }
                    Flow::PushSubscribe(subscribe) => {
                        Box::pin(crate::push::subscribe(shared, session, *subscribe)).await;
                    }
                    Flow::Close(reason, last) => {
                        Box::pin(close(ws, last, limits.write_timeout)).await;
                        return reason;
                    }
                }
            }
        }
    }
}

/// Queue a reply to the session's own connection (dropped, and counted, if its queue is full).
pub(crate) fn reply(shared: &Shared, session: &Session, frame: Bytes) {
    match session.outbox.push(frame) {
        Ok(()) | Err(PushError::Closing) => {}
        Err(PushError::Full(Bound::Connection)) => {
            shared.metrics.dropped(DropReason::ReplyQueueFull)
        }
        Err(error) => shared.metrics.dropped(drop_reason(error)),
    }
}

/// Handle one binary frame from a logged-in client (what waits on a durable write is handed
/// back to the loop: most frames need no future of their own).
fn handle(shared: &Shared, session: &Session, data: &[u8], holds: &Holds) -> Flow {
    let metrics = &shared.metrics;
    let frame = match Frame::decode(data) {
        Ok(Decoded::Known(frame)) => frame,
        Ok(Decoded::Unknown { .. }) => {
            metrics.unknown_frame();
            return Flow::Continue;
        }
        Err(e) => {
            metrics.malformed_frame();
            return Flow::Close(
                Disconnect::Malformed,
                Some(error_frame(ErrorCode::Malformed, None, &e.to_string())),
            );
        }
    };
    let pushback = shared.limits.pushback;
    // A frame for a receiver this connection already holds one for goes behind it.
    let behind = &|outbox: &Outbox| holds.holds_for(outbox);
    let refused = match frame {
        Frame::Send(send) => match shared.router.send(session, send, pushback, behind) {
            Ok(Some(held)) => return Flow::Hold(Box::new(held)),
            Ok(None) => return Flow::Routed,
            Err(refused) => Some(refused),
        },
        Frame::PairSend(send) => {
            match shared
                .router
                .pair_send(session, send, unix_now(), pushback, behind)
            {
                Ok(Some(held)) => return Flow::Hold(Box::new(held)),
                Ok(None) => return Flow::Routed,
                Err(refused) => Some(refused),
            }
        }
        Frame::OpenPairing(open) => match shared.router.open_pairing(session, &open, unix_now()) {
            Ok(opened) => {
                reply(shared, session, encode(Frame::PairingOpened(opened)));
                None
            }
            Err(refused) => Some(refused),
        },
        Frame::Registry(request) => return Flow::Registry(Box::new(request)),
        Frame::PushSubscribe(subscribe) => return Flow::PushSubscribe(Box::new(subscribe)),
        Frame::DevicesQuery(query) => {
            match shared.router.device_list(session, query.request) {
                Ok(list) => {
                    let answer = encode(Frame::DeviceList(list));
                    // The answer is up to a frame for a few bytes asked: its size is charged
                    // to the asker's inbound budget, so asking again and again is paced like
                    // sending.
                    session.budget.spend(answer.len(), Instant::now());
                    reply(shared, session, answer);
                }
                Err(refused) => {
                    if let Some(counter) = refused.counter {
                        metrics.refused(counter);
                    }
                    let error = error_frame(refused.code, Some(query.request), refused.reason);
                    reply(shared, session, error);
                }
            }
            None
        }
        Frame::PushQuery(query) => {
            crate::push::query(shared, session, query);
            None
        }
        Frame::Push(push) => {
            crate::push::push(shared, session, push);
            None
        }
        Frame::Login(_) => {
            reply(
                shared,
                session,
                error_frame(ErrorCode::NotAllowed, None, "already logged in"),
            );
            None
        }
        Frame::ServerHello(_)
        | Frame::LoginOk(_)
        | Frame::PairingOpened(_)
        | Frame::PairRecv(_)
        | Frame::Recv(_)
        | Frame::RegistryAck(_)
        | Frame::Presence(_)
        | Frame::DevicePresence(_)
        | Frame::PushState(_)
        | Frame::DeviceList(_)
        | Frame::AllowedDevices(_)
        | Frame::Error(_)
        | Frame::Restarting(_) => {
            reply(
                shared,
                session,
                error_frame(
                    ErrorCode::NotAllowed,
                    None,
                    "a relay-to-client frame was sent to the relay",
                ),
            );
            None
        }
    };
    if let Some(refused) = refused {
        if let Some(counter) = refused.counter {
            metrics.refused(counter);
        }
        reply(
            shared,
            session,
            error_frame(refused.code, None, refused.reason),
        );
    }
    Flow::Continue
}

/// Count one request for a durable write (a registry entry, a push subscription change)
/// against the connection's and its source prefix's minute; the refusal, for people, when
/// either is spent.
pub(crate) fn write_rate(
    shared: &Shared,
    session: &Session,
    now: Instant,
) -> Result<(), &'static str> {
    let allowed = session
        .registry_requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .allow(
            now,
            RELAY_REGISTRY_REQUESTS_PER_MIN as u32,
            Duration::from_secs(60),
        );
    // The connection's count first, so one over its own limit spends nothing of its network's.
    if !allowed {
        return Err(
            "too many registry or push subscription requests on this connection; try \
                    again in a minute",
        );
    }
    let allowed = shared
        .registry_rate
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .allow(
            session.prefix,
            now,
            RELAY_REGISTRY_REQUESTS_PER_PREFIX_PER_MIN as u32,
            Duration::from_secs(60),
        );
    if !allowed {
        return Err(
            "too many registry or push subscription requests from this network; try \
                    again in a minute",
        );
    }
    Ok(())
}

/// Return `keys` to the relay's bucket of new keys.
fn give_back(shared: &Shared, keys: usize, now: Instant) {
    if keys > 0 {
        shared
            .admission
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .give_back(keys, now);
    }
}

/// A registry request: rate, charge, verify, check, count against its account, admit new keys,
/// make durable, apply, acknowledge, compact the log if due. A device that revoked itself is
/// closed after the acknowledgement.
async fn registry(shared: &Shared, session: &Session, request: Registry) -> Flow {
    let metrics = &shared.metrics;
    let id = Some(request.request);
    let refuse = |code: ErrorCode, reason: &str| {
        metrics.entry_refused();
        reply(shared, session, error_frame(code, id, reason));
        Flow::Continue
    };
    let now = Instant::now();
    if let Err(reason) = write_rate(shared, session, now) {
        metrics.refused(Refusal::RegistryRate);
        reply(
            shared,
            session,
            error_frame(ErrorCode::RateLimited, id, reason),
        );
        return Flow::Continue;
    }
    // Up to two signatures (a registration's consent besides the entry's own), charged before
    // either is checked: the next read waits until the budget has paid for them.
    session
        .budget
        .spend(2 * RELAY_SIGNATURE_COST_BYTES as usize, now);
    let entry = match request.entry.verify() {
        Ok(entry) => entry,
        Err(e) => return refuse(ErrorCode::EntryRefused, &e.to_string()),
    };
    // One registry change at a time: check, admit, append + sync, apply.
    let _writer = shared.registry_writes.lock().await;
    if let Err(reason) = shared.router.check_entry(session, &entry, unix_now()) {
        return refuse(ErrorCode::EntryRefused, reason);
    }
    // Counted once checked, so nobody spends another account's requests, and a member cannot
    // spend its account's hour with entries the rules refuse. Revocations are never counted:
    // each follows a counted registration, and nothing may keep an owner from revoking.
    let revocation = matches!(
        entry,
        RegistryEntry::RevokeMachine { .. } | RegistryEntry::RevokeDevice { .. }
    );
    if !revocation {
        let account = shared.router.rate_account(&entry);
        let allowed = shared
            .account_rate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(
                account,
                now,
                u32::try_from(shared.limits.registry_requests_per_account_per_hour)
                    .unwrap_or(u32::MAX),
                Duration::from_secs(3600),
            );
        if !allowed {
            metrics.refused(Refusal::RegistryRate);
            let reason = "too many registry requests for this account in the last hour; try \
                          again in an hour";
            reply(
                shared,
                session,
                error_frame(ErrorCode::RateLimited, id, reason),
            );
            return Flow::Continue;
        }
    }
    let new_keys = shared.router.new_keys(&entry);
    let admitted = shared
        .admission
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take(session.prefix, new_keys, now);
    if let Err(reason) = admitted {
        metrics.refused(Refusal::RegistryRate);
        reply(
            shared,
            session,
            error_frame(ErrorCode::RateLimited, id, reason),
        );
        return Flow::Continue;
    }
    if let Err(reason) = shared.append_durable(request.entry).await {
        crate::warn(format_args!("registry log write failed: {reason}"));
        give_back(shared, new_keys, now);
        return refuse(
            ErrorCode::Internal,
            "the relay could not store the entry; try again later",
        );
    }
    let keys_before = shared.router.registry_keys();
    let applied = shared.router.apply_entry(&entry, session);
    // Keys that left (an unpaired machine, a removed account) make room for new ones.
    give_back(
        shared,
        keys_before.saturating_sub(shared.router.registry_keys()),
        now,
    );
    metrics.entry_accepted(match entry {
        RegistryEntry::RegisterMachine { .. } => EntryKind::Register,
        RegistryEntry::RevokeMachine { .. } => EntryKind::Revoke,
        RegistryEntry::UnpairMachine { .. } => EntryKind::Unpair,
        RegistryEntry::GrantOwner { .. } => EntryKind::GrantOwner,
        RegistryEntry::RevokeDevice { .. } => EntryKind::RevokeDevice,
    });
    if let Some(device) = applied.revoked_device {
        // Nothing is pushed to a revoked device any more.
        shared.push.forget_device(device).await;
    }
    let ack = encode(Frame::RegistryAck(RegistryAck {
        request: request.request,
    }));
    if applied.close_author {
        shared.compact_if_due().await;
        return Flow::Close(Disconnect::Revoked, Some(ack));
    }
    reply(shared, session, ack);
    for frame in applied.frames {
        reply(shared, session, frame);
    }
    // After the answer, so no client waits for the rewrite (the writer lock is still held).
    shared.compact_if_due().await;
    Flow::Continue
}
