//! The relay link: log in (as a pending machine until paired), keep the connection with jittered
//! exponential backoff, and dispatch what the relay sends.
//!
//! - [`connections`]: what the link holds ([`Link`]): the queue to the relay, its status, the
//!   device channels and their subscriptions, the pairing in progress.
//! - this module: the connection's life (login, the loop over frames, the outgoing queue and
//!   the pairing timer, the wait before the next login) and the dispatch of relay frames:
//!   channel packets are opened here and their messages handed to [`requests`].
//! - [`pairing`]: the one-time pairing link, the pairing handshake, leaving the account, and
//!   the news control clients wait for ([`pairing::Notice`]).
//! - [`requests`]: what a paired device asks (sessions, prompts, decisions, push keys, replay).
//! - [`replay`]: catching a connection up from its cursors, page by page, then live.
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
//! The link going up or down lets what waited for it (push notifications) go, or makes news
//! wait.
//!
//! The relay also says which devices may reach this machine
//! ([`muxagent_proto::frame::AllowedDevices`], at login and when it changes): a paired device
//! it no longer names was revoked, and is forgotten here too.

pub mod connections;
pub mod pairing;
pub mod replay;
mod requests;

pub use connections::{DeviceSync, Link, PairingOffer};

use std::rc::Rc;
use std::time::Duration;

use muxagent_client::backoff::{self, Backoff};
use muxagent_proto::frame::{ErrorCode, Frame, Role};
use muxagent_proto::machine::Incoming;
use muxagent_relay_client::{Client, ClientConfig, ClientError};
use rand_core::Rng;
use smol::channel::Receiver;
use smol::{LocalExecutor, Timer};

use super::{Out, Route, Shared};
use crate::limits::{
    DAEMON_DISPLACED_PAUSE_SECS, DAEMON_OUTGOING_QUEUE, DAEMON_REVOKED_PAUSE_SECS,
};
use crate::{log, os};

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
                core.borrow_mut().link.status.last_error = Some(reason);
                Duration::from_millis(backoff.failed(random))
            }
            Ended::After(delay, reason) => {
                log::info(&format!("relay: {reason}"));
                core.borrow_mut().link.status.last_error = Some(reason);
                backoff.reset();
                // The pause, plus the first failure's jitter so machines do not return in step.
                delay + Duration::from_millis(backoff::delay_ms(1, random))
            }
        };
        // A local reset (new keys) cuts the wait short.
        let relink = core.borrow().link.relink.1.clone();
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
            core.borrow_mut().link.status.revoked = true;
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
        core.link.up(outgoing, role == Role::PendingMachine);
        core.relay_link(true);
    }
    let ended = serve(core, executor, &mut client, &queue, &url).await;
    {
        let mut core = core.borrow_mut();
        core.link.down();
        core.relay_link(false);
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
        if core.borrow().link.want_pairing && core.borrow().link.pairing.is_none() {
            pairing::open(core, url);
        }
        let expires = core
            .borrow()
            .link
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
        let relink = core.borrow().link.relink.1.clone();
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
                        match c.link.peers.send(route.device, route.connection, &message) {
                            Ok(frame) => frame,
                            Err(_) => {
                                // The connection is gone: so is what it subscribed to (it
                                // resyncs when it connects again).
                                c.link.subscriptions.remove(&route);
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
            Step::Tick => pairing::expired(&mut core.borrow_mut()),
        }
    }
}

/// Handle one frame from the relay; `Some` when it ends the connection.
fn on_frame(core: &Shared, executor: &Rc<LocalExecutor<'static>>, frame: Frame) -> Option<Ended> {
    match frame {
        Frame::Recv(recv) => {
            let incoming = {
                let mut core = core.borrow_mut();
                let identity = core.identity.clone();
                let paired = core.state.device_identities();
                core.link.peers.receive(
                    &identity,
                    &paired,
                    recv.from,
                    &recv.payload,
                    &mut os::rng(),
                )
            };
            match incoming {
                Ok(Incoming::Reply(frame)) => {
                    let mut c = core.borrow_mut();
                    // A new channel may have pushed out an old one, and its subscription.
                    c.prune_routes();
                    c.link.send_frame(frame);
                }
                Ok(Incoming::Message(message)) => {
                    // The connection it came on: answers go there and nowhere else.
                    let connection = core.borrow().link.peers.connection(&recv.from);
                    if let Some(connection) = connection {
                        let route = Route {
                            device: recv.from,
                            connection,
                        };
                        requests::on_message(core, executor, route, message);
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
        Frame::PairRecv(recv) => pairing::on_pair_recv(&mut core.borrow_mut(), recv),
        Frame::RegistryAck(ack) if ack.request == pairing::UNPAIR_REQUEST => {
            Some(pairing::unpaired(&mut core.borrow_mut()))
        }
        Frame::PairingOpened(_) | Frame::RegistryAck(_) | Frame::Presence(_) => None,
        Frame::Error(error) if error.request == Some(pairing::UNPAIR_REQUEST) => {
            pairing::unpair_refused(&mut core.borrow_mut(), &error.reason);
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
                core.borrow_mut().link.status.revoked = true;
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
