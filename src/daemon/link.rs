//! The relay link: log in (as a pending machine until paired), keep the connection with jittered
//! exponential backoff, pair, answer devices, and catch them up from their cursors.
//!
//! A device may be connected several times at once (tabs of the web app, `ctl watch` beside
//! `ctl approve`), each connection with its own channel ([`Route`]). Answers go to the
//! connection that asked; a subscription (live events after a `Hello` and its replay) belongs
//! to the connection that said `Hello`, so two tabs that both said it both get every event,
//! and a connection never gets what another asked for. The relay's `DevicePresence` says when
//! a connection or the whole device is gone: its channels and subscriptions are dropped at
//! once, and an ask counts as delivered only when it was queued to a connection of a device the
//! relay says is online (an ask raised while every controller is away stays `requested` until
//! one connects and replays it).
//!
//! Push notifications: a device's `SetPush` keys are checked and saved with its record,
//! `TestPush` hands a test notice to the relay before its `Ack`, and `SetForeground` tells the
//! notifier ([`super::notify`]) which channels have the app on screen. The link going up or down
//! lets what waited for it go, or makes news wait.
//!
//! The relay also says which devices may reach this machine ([`frame::AllowedDevices`], at
//! login and when it changes): a paired device it no longer names was revoked, and is
//! forgotten here too.

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use muxagent_client::backoff::{self, Backoff};
use muxagent_proto::app::{
    Ack, AppError, AppErrorCode, Cursor, DeviceMessage, MachineMessage, PushKeys, ReplayComplete,
    ReplayMore, RuntimeInfo, Runtimes, SessionId, SessionList,
};
use muxagent_proto::frame::{
    self, ErrorCode, Frame, OpenPairing, PairingId, RegistryEntry, Role, SignedEntry,
};
use muxagent_proto::identity::Fingerprint;
use muxagent_proto::limits::PAIRING_TTL_SECS;
use muxagent_proto::machine::{Incoming, Pairing, PairingStep};
use muxagent_proto::ticket::{PairingSecret, Ticket};
use muxagent_relay_client::{Client, ClientConfig, ClientError};
use rand_core::Rng;
use smol::channel::Receiver;
use smol::{LocalExecutor, Timer};

use super::control::Notice;
use super::state::PushSettings;
use super::{DeviceSync, Out, PairingOffer, Route, Shared, agent, approvals, runtime, webpush};
use crate::limits::{
    DAEMON_DISPLACED_PAUSE_SECS, DAEMON_OUTGOING_QUEUE, DAEMON_REVOKED_PAUSE_SECS,
    REPLAY_PAGE_EVENTS,
};
use crate::{log, os};

/// The registry request number of an unpair.
const UNPAIR_REQUEST: u32 = 1;

/// Why a relay connection ended, and how long to wait before the next.
enum Ended {
    /// Reconnect after the usual backoff.
    Failed(String),
    /// Reconnect at once (paired: log in again as a machine).
    Again,
    /// The relay asked for a pause.
    After(Duration, String),
}

/// Keep a relay connection until the daemon stops.
pub async fn run(core: Shared, executor: Rc<LocalExecutor<'static>>) {
    let mut backoff = Backoff::new();
    loop {
        let ended = connect_once(&core, &executor, &mut backoff).await;
        let random = os::rng().next_u32();
        let wait = match ended {
            Ended::Again => {
                backoff.reset();
                continue;
            }
            Ended::Failed(reason) => {
                log::warn(&format!("relay: {reason}; retrying"));
                core.borrow_mut().status.last_error = Some(reason);
                Duration::from_millis(backoff.failed(random))
            }
            Ended::After(delay, reason) => {
                log::info(&format!("relay: {reason}"));
                core.borrow_mut().status.last_error = Some(reason);
                backoff.reset();
                // The pause, plus the first failure's jitter so machines do not return in step.
                delay + Duration::from_millis(backoff::delay_ms(1, random))
            }
        };
        // A local reset (new keys) cuts the wait short.
        let relink = core.borrow().relink.1.clone();
        smol::future::or(
            async {
                Timer::after(wait).await;
            },
            async {
                let _ = relink.recv().await;
            },
        )
        .await;
    }
}

/// What a machine the relay refuses for good is told to do.
pub const REVOKED_ADVICE: &str = "its keys cannot be used again: run `muxagent unpair --local` \
     to forget the account and make new keys, then pair it again with `muxagent pair`";

/// One connection to the relay, from its login to its end. A login resets `backoff`: a link
/// that was up starts over from the shortest wait when it drops.
async fn connect_once(
    core: &Shared,
    executor: &Rc<LocalExecutor<'static>>,
    backoff: &mut Backoff,
) -> Ended {
    let (url, identity, hostname, role) = {
        let core = core.borrow();
        let role = if core.state.devices.is_empty() {
            Role::PendingMachine
        } else {
            Role::Machine
        };
        let Some(url) = core.state.relay.clone() else {
            return Ended::Failed("no relay URL".into());
        };
        (url, core.identity.clone(), core.hostname.clone(), role)
    };
    let mut client = match Client::connect(
        &url,
        &identity,
        role,
        Some(hostname),
        &ClientConfig::default(),
    )
    .await
    {
        Ok(client) => client,
        Err(ClientError::Refused {
            code: ErrorCode::Revoked,
            reason,
        }) => {
            core.borrow_mut().status.revoked = true;
            return Ended::After(
                Duration::from_secs(DAEMON_REVOKED_PAUSE_SECS),
                format!("this machine was revoked ({reason}); {REVOKED_ADVICE}"),
            );
        }
        Err(error) => return Ended::Failed(error.to_string()),
    };
    backoff.reset();
    log::info(&format!(
        "relay: connected to {url} as {}",
        if role == Role::Machine {
            "machine"
        } else {
            "pending machine"
        }
    ));
    let (outgoing, queue) = smol::channel::bounded(DAEMON_OUTGOING_QUEUE);
    {
        let mut core = core.borrow_mut();
        core.outgoing = Some(outgoing);
        core.status.connected = true;
        core.status.revoked = false;
        core.status.last_error = None;
        if role == Role::PendingMachine {
            core.want_pairing = true;
        }
        // What waited for the link goes now.
        core.notifier.link(true);
        let _ = core.push_wake.0.try_send(());
    }
    let ended = serve(core, executor, &mut client, &queue, &url).await;
    {
        let mut core = core.borrow_mut();
        core.outgoing = None;
        core.status.connected = false;
        core.status.pairing = None;
        core.pairing = None;
        core.peers.clear();
        core.devices.clear();
        core.online.clear();
        core.notifier.link(false);
    }
    client.close().await;
    ended
}

enum Step {
    Frame(Result<Frame, ClientError>),
    Out(Out),
    Tick,
    /// The keys changed (a local reset): log in again with the new ones.
    Relink,
}

async fn serve(
    core: &Shared,
    executor: &Rc<LocalExecutor<'static>>,
    client: &mut Client,
    queue: &Receiver<Out>,
    url: &str,
) -> Ended {
    loop {
        if core.borrow().want_pairing && core.borrow().pairing.is_none() {
            open_pairing(core, url);
        }
        let expires = core
            .borrow()
            .status
            .pairing
            .as_ref()
            .map(|offer| offer.expires_at);
        let tick = async {
            match expires {
                Some(at) => {
                    Timer::after(Duration::from_secs(at.saturating_sub(os::unix_now()))).await
                }
                None => smol::future::pending::<std::time::Instant>().await,
            };
            Step::Tick
        };
        let relink = core.borrow().relink.1.clone();
        let step = smol::future::or(
            async { Step::Frame(client.recv().await) },
            smol::future::or(
                async {
                    match queue.recv().await {
                        Ok(out) => Step::Out(out),
                        Err(_) => smol::future::pending().await,
                    }
                },
                smol::future::or(tick, async {
                    let _ = relink.recv().await;
                    Step::Relink
                }),
            ),
        )
        .await;
        match step {
            Step::Frame(Ok(frame)) => {
                if let Some(ended) = on_frame(core, executor, frame) {
                    return ended;
                }
            }
            Step::Frame(Err(error)) => return Ended::Failed(error.to_string()),
            Step::Out(out) => {
                let frame = match out {
                    Out::Wake => continue,
                    Out::Frame(frame) => frame,
                    Out::ToDevice(route, message) => {
                        let mut c = core.borrow_mut();
                        match c.peers.send(route.device, route.connection, &message) {
                            Ok(frame) => frame,
                            Err(_) => {
                                // The connection is gone: so is what it subscribed to (it
                                // resyncs when it connects again).
                                c.devices.remove(&route);
                                continue;
                            }
                        }
                    }
                };
                if let Err(error) = client.send(&frame).await {
                    return Ended::Failed(error.to_string());
                }
            }
            Step::Relink => return Ended::Again,
            Step::Tick => {
                let mut core = core.borrow_mut();
                core.pairing = None;
                core.status.pairing = None;
                core.notify(Notice::PairingExpired);
                // An unpaired machine keeps offering a fresh link; a paired one offered one
                // only because `muxagent pair` asked.
                core.want_pairing = core.state.devices.is_empty();
                log::info("the pairing link expired");
            }
        }
    }
}

/// Make a new ticket, register its pairing id with the relay, and show the link.
fn open_pairing(core: &Shared, url: &str) {
    let mut rng = os::rng();
    let mut id = [0u8; 16];
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let pairing_id = PairingId(id);
    let expires_at = os::unix_now() + PAIRING_TTL_SECS;
    let mut core = core.borrow_mut();
    let public = core.identity.public();
    let Ok(relay_url) = url.try_into() else {
        log::error("the relay URL is too long for a pairing ticket");
        core.want_pairing = false;
        return;
    };
    let ticket = Ticket {
        relay_url,
        pairing_id,
        machine: public.fingerprint(),
        machine_noise: public.noise,
        secret: PairingSecret(secret),
        hostname: core.hostname.clone(),
        expires_at,
    };
    let link = ticket.link();
    let pairing = Pairing::new(
        &core.identity,
        pairing_id,
        PairingSecret(secret),
        core.hostname.clone(),
    );
    core.pairing = Some(pairing);
    core.send_frame(
        OpenPairing {
            pairing_id,
            expires_at,
        }
        .into(),
    );
    core.status.pairing = Some(PairingOffer {
        link: link.clone(),
        expires_at,
    });
    core.notify(Notice::PairingLink {
        link: link.clone(),
        expires_at,
    });
    // The link holds the pairing secret: it is shown to a person at a terminal, or handed to
    // `muxagent pair` / `daemon status` over the control socket, and never logged.
    log::info(&format!(
        "pairing {} open until {}; `muxagent pair` or `muxagent daemon status` shows the link",
        short_pairing_id(&pairing_id),
        log::timestamp(expires_at)
    ));
    log::show(&format!(
        "pair a device with this link (valid {} min):\n{}\n{link}",
        PAIRING_TTL_SECS / 60,
        crate::qr::render(&link).unwrap_or_default()
    ));
}

/// The first bytes of a pairing id, enough to find it in the relay's log.
fn short_pairing_id(id: &PairingId) -> String {
    let hex: String = id.0[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}…")
}

fn on_frame(core: &Shared, executor: &Rc<LocalExecutor<'static>>, frame: Frame) -> Option<Ended> {
    match frame {
        Frame::Recv(recv) => {
            let incoming = {
                let mut core = core.borrow_mut();
                let identity = core.identity.clone();
                let paired = core.state.device_identities();
                core.peers
                    .receive(&identity, &paired, recv.from, &recv.payload, &mut os::rng())
            };
            match incoming {
                Ok(Incoming::Reply(frame)) => {
                    let mut c = core.borrow_mut();
                    // A new channel may have pushed out an old one, and its subscription.
                    c.prune_routes();
                    c.send_frame(frame);
                }
                Ok(Incoming::Message(message)) => {
                    // The connection it came on: answers go there and nowhere else.
                    let connection = core.borrow().peers.connection(&recv.from);
                    if let Some(connection) = connection {
                        let route = Route {
                            device: recv.from,
                            connection,
                        };
                        on_message(core, executor, route, message);
                    }
                }
                Ok(Incoming::Skipped | Incoming::Stale) => {}
                Err(error) => {
                    let mut c = core.borrow_mut();
                    // Any account member can send junk: its warnings are budgeted per sender.
                    let peer = format!("device {}", recv.from);
                    c.warnings.warn(&peer, &format!("{peer}: {error}"));
                    if error.ends_channel() {
                        // A channel that failed is dropped, and what it subscribed to.
                        c.prune_routes();
                    }
                }
            }
            None
        }
        Frame::DevicePresence(presence) => {
            core.borrow_mut().device_presence(&presence);
            None
        }
        Frame::AllowedDevices(allowed) => {
            core.borrow_mut().allowed_devices(&allowed.devices);
            None
        }
        Frame::PairRecv(recv) => on_pair_recv(core, recv),
        Frame::RegistryAck(ack) if ack.request == UNPAIR_REQUEST => {
            let mut core = core.borrow_mut();
            core.state.devices.clear();
            let home = core.home.clone();
            if let Err(error) = core.state.save(&home) {
                log::error(&format!(
                    "unpaired on the relay, but could not save it: {error}"
                ));
            }
            core.notify(Notice::Unpaired);
            log::info("unpaired: this machine left its account");
            Some(Ended::Again)
        }
        Frame::PairingOpened(_) | Frame::RegistryAck(_) | Frame::Presence(_) => None,
        Frame::Error(error) if error.request == Some(UNPAIR_REQUEST) => {
            core.borrow_mut().notify(Notice::Failed {
                reason: format!("the relay refused: {}", error.reason),
            });
            None
        }
        Frame::Error(error) => match error.code {
            ErrorCode::Displaced => Some(Ended::After(
                Duration::from_secs(DAEMON_DISPLACED_PAUSE_SECS),
                format!(
                    "another daemon logged in with this machine's key: {}",
                    error.reason
                ),
            )),
            ErrorCode::Revoked => {
                core.borrow_mut().status.revoked = true;
                Some(Ended::After(
                    Duration::from_secs(DAEMON_REVOKED_PAUSE_SECS),
                    format!(
                        "this machine was revoked ({}); {REVOKED_ADVICE}",
                        error.reason
                    ),
                ))
            }
            ErrorCode::PeerOffline | ErrorCode::Dropped => None,
            _ => {
                let message = format!("relay: {:?}: {}", error.code, error.reason);
                core.borrow_mut()
                    .warnings
                    .warn(&"the relay".to_string(), &message);
                None
            }
        },
        Frame::Restarting(restarting) => Some(Ended::After(
            Duration::from_millis(u64::from(restarting.reconnect_in_ms)),
            "the relay is restarting".into(),
        )),
        _ => None,
    }
}

fn on_pair_recv(core: &Shared, recv: frame::PairRecv) -> Option<Ended> {
    let mut core = core.borrow_mut();
    let identity = core.identity.clone();
    let pairing = core
        .pairing
        .as_mut()
        .filter(|p| p.pairing_id() == recv.pairing_id)?;
    match pairing.on_pair_recv(&identity, recv.from, &recv.payload, &mut os::rng()) {
        Ok(PairingStep::Send(frame)) => core.send_frame(frame),
        Ok(PairingStep::Ignored) => {}
        Ok(PairingStep::Paired(device)) => {
            core.state.add_device(&device, os::unix_now());
            let saved = core.state.save(&core.home);
            core.pairing = None;
            core.status.pairing = None;
            core.want_pairing = false;
            match saved {
                Ok(()) => log::info(&format!("paired with device {}", device.fingerprint())),
                Err(error) => log::error(&format!("paired, but could not save it: {error}")),
            }
            core.notify(Notice::Paired {
                device: device.fingerprint().to_string(),
            });
            // Log in again: a pending machine becomes a machine.
            return Some(Ended::Again);
        }
        Err(error) => {
            let peer = format!("device {}", recv.from);
            core.warnings
                .warn(&peer, &format!("pairing with {}: {error}", recv.from));
        }
    }
    None
}

fn on_message(
    core: &Shared,
    executor: &Rc<LocalExecutor<'static>>,
    route: Route,
    message: DeviceMessage,
) {
    let device = route.device;
    match message {
        DeviceMessage::Hello(hello) => {
            let mut c = core.borrow_mut();
            // What the device is told (the list, its new cursors) is what is durable.
            c.commit();
            c.generation += 1;
            let mut sync = DeviceSync {
                cursors: BTreeMap::new(),
                live: false,
                replaying: false,
                generation: c.generation,
            };
            // Sessions the device has no cursor for: only what happens from now on.
            for info in c.sessions.list() {
                sync.cursors.insert(info.id, info.last_seq);
            }
            for cursor in hello.cursors {
                if c.sessions.info(&cursor.session).is_some() {
                    sync.cursors.insert(cursor.session, cursor.last_seq);
                }
            }
            c.devices.insert(route, sync);
            let list = SessionList {
                request: None,
                hostname: c.hostname.clone(),
                sessions: c.sessions.list(),
            };
            c.reply(route, MachineMessage::SessionList(list));
            c.request_replay(route);
        }
        DeviceMessage::ListSessions(request) => {
            let mut c = core.borrow_mut();
            c.commit();
            let list = SessionList {
                request: Some(request.request),
                hostname: c.hostname.clone(),
                sessions: c.sessions.list(),
            };
            c.reply(route, MachineMessage::SessionList(list));
        }
        DeviceMessage::ListRuntimes(request) => {
            let runtimes = runtime_list();
            core.borrow().reply(
                route,
                MachineMessage::Runtimes(Runtimes {
                    request: request.request,
                    runtimes,
                }),
            );
        }
        DeviceMessage::StartSession(start) => {
            let request = start.request;
            let result = agent::start(core, executor, device, start);
            answer(core, route, request, result);
        }
        DeviceMessage::SendPrompt(prompt) => {
            let result =
                agent::prompt(core, executor, prompt.session, prompt.text).map(|()| prompt.session);
            answer(core, route, prompt.request, result);
        }
        DeviceMessage::Interrupt(interrupt) => {
            let result = agent::interrupt(core, interrupt.session).map(|()| interrupt.session);
            answer(core, route, interrupt.request, result);
        }
        DeviceMessage::Stop(stop) => {
            let result = agent::stop(core, executor, stop.session).map(|()| stop.session);
            answer(core, route, stop.request, result);
        }
        DeviceMessage::Decide(decide) => {
            let result = approvals::decide(core, device, decide.decision);
            answer(core, route, decide.request, result);
        }
        DeviceMessage::SetMode(set) => {
            let result =
                agent::set_mode(core, set.session, set.mode.as_str()).map(|()| set.session);
            answer(core, route, set.request, result);
        }
        DeviceMessage::Replay(replay) => {
            let mut c = core.borrow_mut();
            if c.sessions.info(&replay.session).is_none() {
                c.reply(
                    route,
                    refuse(
                        replay.request,
                        AppErrorCode::UnknownSession,
                        format!("no session {}", replay.session),
                    ),
                );
                return;
            }
            if let Some(sync) = c.devices.get_mut(&route) {
                sync.cursors.insert(replay.session, replay.after_seq);
            }
            c.request_replay(route);
        }
        DeviceMessage::ForgetDevice(forget) => {
            let mut c = core.borrow_mut();
            c.reply(route, ack(forget.request, None));
            let signing = c
                .state
                .devices
                .iter()
                .position(|d| d.identity().map(|i| i.fingerprint()) == Some(device));
            if let Some(index) = signing {
                c.state.devices.remove(index);
                c.notifier.forget_device(&device);
                let home = c.home.clone();
                if let Err(error) = c.state.save(&home) {
                    log::error(&format!("could not forget device {device}: {error}"));
                }
                log::info(&format!("device {device} unpaired itself"));
            }
        }
        DeviceMessage::SetPush(set) => {
            let reply = match set_push(core, device, set.push) {
                Ok(()) => ack(set.request, None),
                Err((code, message)) => refuse(set.request, code, message),
            };
            core.borrow().reply(route, reply);
        }
        DeviceMessage::TestPush(test) => {
            let reply = match test_push(core, device) {
                Ok(()) => ack(test.request, None),
                Err((code, message)) => refuse(test.request, code, message),
            };
            core.borrow().reply(route, reply);
        }
        DeviceMessage::SetForeground(foreground) => {
            core.borrow_mut()
                .notifier
                .set_foreground(route, foreground.visible);
        }
        DeviceMessage::FetchInput(fetch) => {
            let reply = match approvals::input_page(core, &fetch) {
                Ok(page) => MachineMessage::InputChunk(page),
                Err((code, message)) => refuse(fetch.request, code, message),
            };
            core.borrow().reply(route, reply);
        }
        DeviceMessage::PairingComplete(_) => {}
    }
}

/// Keep (or clear) `device`'s push keys, checked, in the saved state.
fn set_push(
    core: &Shared,
    device: Fingerprint,
    push: Option<PushKeys>,
) -> Result<(), agent::Refusal> {
    if let Some(keys) = &push
        && let Err(error) = webpush::parse_key(&keys.p256dh)
    {
        return Err((AppErrorCode::BadRequest, error.to_string()));
    }
    let mut c = core.borrow_mut();
    let Some(record) = c.state.device_mut(&device) else {
        return Err((
            AppErrorCode::InvalidState,
            format!("device {device} is not paired with this machine"),
        ));
    };
    record.push = push.as_ref().map(PushSettings::new);
    let home = c.home.clone();
    c.state.save(&home).map_err(|error| {
        (
            AppErrorCode::Internal,
            format!("this machine could not save the push keys: {error}"),
        )
    })?;
    log::info(&format!(
        "device {device} {} push notifications",
        if push.is_some() {
            "turned on"
        } else {
            "turned off"
        }
    ));
    Ok(())
}

/// Send `device` a test notification now (even while its app is on screen).
fn test_push(core: &Shared, device: Fingerprint) -> Result<(), agent::Refusal> {
    let mut c = core.borrow_mut();
    if c.state.push_keys(&device).is_none() {
        return Err((
            AppErrorCode::InvalidState,
            "this device has no push keys on this machine: turn notifications on first".into(),
        ));
    }
    let push = c.notifier.test(device, os::unix_now()).map_err(|limited| {
        (
            AppErrorCode::InvalidState,
            format!(
                "this device had too many notifications from this machine in the last minute; \
                 try again in {} s",
                limited.retry_in_secs
            ),
        )
    })?;
    if !c.send_push(push) {
        return Err((
            AppErrorCode::Internal,
            "this machine could not hand the notification to the relay; try again".into(),
        ));
    }
    Ok(())
}

/// Answer a request with an ack naming its session, or with the refusal. An ack says what the
/// request logged (a prompt, a decision) is kept: what it logged is committed (fsynced) first,
/// and if the session's log could not be written the device hears that instead.
fn answer(core: &Shared, route: Route, request: u32, result: Result<SessionId, agent::Refusal>) {
    let mut core = core.borrow_mut();
    let reply = match result {
        Ok(session) => {
            core.commit();
            if core.sessions.is_suspended(&session) {
                refuse(
                    request,
                    AppErrorCode::Internal,
                    format!(
                        "session {session}'s history cannot be written on this machine (see its \
                         daemon's log); try again"
                    ),
                )
            } else {
                ack(request, Some(session))
            }
        }
        Err((code, message)) => refuse(request, code, message),
    };
    core.reply(route, reply);
}

/// The runtimes and whether their programs are installed.
fn runtime_list() -> Vec<RuntimeInfo> {
    runtime::NAMES
        .iter()
        .filter_map(|name| runtime::by_name(name))
        .map(|runtime| {
            let (available, detail) = match runtime.program() {
                None if runtime.name() == "command" => (true, "any shell command".to_string()),
                None => (true, "an ACP agent: give its command line".to_string()),
                Some(program) => match find_program(&program) {
                    Some(path) => (true, path.display().to_string()),
                    None => (false, format!("{program} is not installed (not on PATH)")),
                },
            };
            RuntimeInfo {
                name: runtime.name().try_into().unwrap_or_default(),
                available,
                detail,
            }
        })
        .collect()
}

/// `program` as a path, or looked up on `PATH`.
fn find_program(program: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |path: &Path| {
        path.metadata()
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = Path::new(program);
        return executable(path).then(|| path.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| executable(path))
}

fn ack(request: u32, session: Option<SessionId>) -> MachineMessage {
    MachineMessage::Ack(Ack { request, session })
}

fn refuse(request: u32, code: AppErrorCode, message: String) -> MachineMessage {
    MachineMessage::Error(AppError {
        request: Some(request),
        code,
        message,
    })
}

/// Take replay requests and run one catch-up task per connection.
pub async fn replayer(
    core: Shared,
    executor: Rc<LocalExecutor<'static>>,
    requests: Receiver<(Route, u64)>,
) {
    while let Ok((route, generation)) = requests.recv().await {
        executor
            .spawn(replay(core.clone(), route, generation))
            .detach();
    }
}

/// The cursors of a device as a message field.
fn cursor_list(sync: &DeviceSync) -> Vec<Cursor> {
    sync.cursors
        .iter()
        .map(|(session, last_seq)| Cursor {
            session: *session,
            last_seq: *last_seq,
        })
        .collect()
}

/// One page of events after the device's cursors (across sessions, oldest session first),
/// advancing the cursors past it.
fn next_page(core: &mut super::Core, route: &Route) -> Vec<muxagent_proto::app::Event> {
    let ids = core.sessions.ids();
    let mut page = Vec::new();
    for id in ids {
        let Some(sync) = core.devices.get(route) else {
            return page;
        };
        let after = sync.cursors.get(&id).copied().unwrap_or(0);
        match core.sessions.page_after(id, after) {
            Ok(events) => {
                let room = REPLAY_PAGE_EVENTS - page.len();
                page.extend(events.into_iter().take(room));
            }
            Err(error) => log::error(&format!("replay for {}: {error}", route.device)),
        }
        if let (Some(sync), Some(last)) = (core.devices.get_mut(route), page.last())
            && last.session == id
        {
            sync.cursors.insert(id, last.seq);
        }
        if page.len() >= REPLAY_PAGE_EVENTS {
            break;
        }
    }
    page
}

/// Whether any session holds durable events after the device's cursors (those not durable yet
/// are sent by the commit that makes them so, once the device is live).
fn behind(core: &mut super::Core, route: &Route) -> bool {
    let Some(sync) = core.devices.get(route) else {
        return false;
    };
    let cursors = sync.cursors.clone();
    core.sessions
        .ids()
        .iter()
        .any(|id| core.sessions.durable_seq(id) > cursors.get(id).copied().unwrap_or(0))
}

/// Catch `device` up by one page: send the events after its cursors, then `ReplayMore` (it asks
/// again) or, when nothing is left, `ReplayComplete` and switch it to live events — with no
/// await between the last look at the logs and the switch, so no event falls in between.
async fn replay(core: Shared, route: Route, generation: u64) {
    let current = |core: &super::Core| {
        core.devices
            .get(&route)
            .is_some_and(|sync| sync.generation == generation)
    };
    let (page, outgoing) = {
        let mut c = core.borrow_mut();
        let Some(outgoing) = c.outgoing.clone() else {
            return;
        };
        if !current(&c) {
            return;
        }
        (next_page(&mut c, &route), outgoing)
    };
    for event in page {
        let asked = match &event.kind {
            muxagent_proto::app::EventKind::ApprovalRequested(request) => {
                Some((event.session, request.approval))
            }
            _ => None,
        };
        if outgoing
            .send(Out::ToDevice(route, MachineMessage::Event(event)))
            .await
            .is_err()
        {
            return;
        }
        // A connection of a device the relay says is online now has the request: if it
        // still waits, it is delivered.
        if let Some((session, approval)) = asked {
            let mut c = core.borrow_mut();
            if c.online.contains(&route.device) {
                c.mark_delivered(session, approval);
                // Durable now, so this replay sends it too (in its next page) before it ends.
                c.commit();
            }
        }
    }
    loop {
        let waiting = {
            let mut c = core.borrow_mut();
            if !current(&c) {
                return;
            }
            let more = behind(&mut c, &route);
            let Some(sync) = c.devices.get_mut(&route) else {
                return;
            };
            let cursors = cursor_list(sync);
            let message = if more {
                MachineMessage::ReplayMore(ReplayMore { cursors })
            } else {
                MachineMessage::ReplayComplete(ReplayComplete {
                    request: None,
                    cursors,
                })
            };
            match outgoing.try_send(Out::ToDevice(route, message)) {
                Ok(()) => {
                    sync.replaying = false;
                    sync.live = !more;
                    return;
                }
                Err(error) => error.into_inner(),
            }
        };
        // The queue is full: wait for room, then look again (events may have come meanwhile).
        if let Out::ToDevice(_, MachineMessage::ReplayComplete(_)) = &waiting {
            if outgoing.send(Out::Wake).await.is_err() {
                return;
            }
            continue;
        }
        if outgoing.send(waiting).await.is_err() {
            return;
        }
        if let Some(sync) = core
            .borrow_mut()
            .devices
            .get_mut(&route)
            .filter(|sync| sync.generation == generation)
        {
            sync.replaying = false;
        }
        return;
    }
}

/// A device-signed or machine-signed registry entry for this machine leaving its account.
pub fn unpair_entry(core: &super::Core) -> Option<Frame> {
    let identity = &core.identity;
    let entry = RegistryEntry::UnpairMachine {
        machine: identity.public(),
        at: os::unix_now(),
    };
    let signed = SignedEntry::sign(identity, &entry).ok()?;
    Some(
        frame::Registry {
            request: UNPAIR_REQUEST,
            entry: signed,
        }
        .into(),
    )
}
