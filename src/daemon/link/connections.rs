//! What the relay link holds ([`Link`]): the queue to the relay while it is up and the link's
//! status, the device channels ([`Peers`]) and each connection's subscription ([`DeviceSync`]),
//! which devices the relay says are online, and the pairing in progress with the control
//! clients waiting for its news.
//!
//! Its fields are the link's own (`pub(super)`: the link's modules); the rest of the daemon
//! goes through the methods here.

use std::collections::{BTreeMap, BTreeSet};

use muxagent_proto::app::{Event, MachineMessage, SessionId};
use muxagent_proto::frame::{DevicePresence, Frame};
use muxagent_proto::identity::Fingerprint;
use muxagent_proto::limits::RELAY_MAX_DEVICES_PER_ACCOUNT;
use muxagent_proto::machine::{Pairing, Peers};
use smol::channel::{Receiver, Sender};

use super::super::{Out, Route};
use super::pairing::Notice;

/// Where one connection is in its resync: a subscription, made by the connection's `Hello` and
/// ended by its next `Hello`, by the relay saying the connection (or the device) is gone, or
/// by its channel being pushed out. Another connection of the same device starts with nothing
/// until it says `Hello` itself.
#[derive(Debug)]
pub struct DeviceSync {
    /// The last seq queued for the connection, per session.
    pub cursors: BTreeMap<SessionId, u64>,
    /// Caught up: new events go to it as they happen.
    pub live: bool,
    /// A replay task runs for it.
    pub replaying: bool,
    /// Bumped by every `Hello`: a replay task of an older generation stops.
    pub generation: u64,
}

/// The pairing link on show, for `daemon status`.
#[derive(Clone, Debug)]
pub struct PairingOffer {
    /// `<relay>/pair#<ticket>`.
    pub link: String,
    /// Unix seconds.
    pub expires_at: u64,
}

/// The relay link as the status command shows it.
#[derive(Clone, Debug, Default)]
pub struct LinkStatus {
    /// Logged in to the relay now.
    pub connected: bool,
    /// The last failure, for people.
    pub last_error: Option<String>,
    /// A pairing link waiting for a device.
    pub pairing: Option<PairingOffer>,
    /// The relay refuses this machine's key for good (it was revoked).
    pub revoked: bool,
    /// Paired devices forgotten since the daemon started because the relay no longer allows
    /// them (revoked), newest last; at most an account's devices.
    pub revoked_devices: Vec<Fingerprint>,
}

/// The relay link's state.
pub struct Link {
    /// What the connection's loop sends, in order; `None` while the link is down.
    pub(super) outgoing: Option<Sender<Out>>,
    pub(super) status: LinkStatus,
    /// Wakes the link to log in again at once (after a local reset made new keys).
    pub(super) relink: (Sender<()>, Receiver<()>),
    /// The Noise channels, one per connection of a paired device.
    pub(super) peers: Peers,
    /// Subscriptions, per connection.
    pub(super) subscriptions: BTreeMap<Route, DeviceSync>,
    /// Paired devices the relay says are online (`DevicePresence`); empty while the relay link
    /// is down. An ask counts as delivered only when queued to one of them.
    pub(super) online: BTreeSet<Fingerprint>,
    /// The last sync generation handed out.
    pub(super) generation: u64,
    /// Connections to catch up (with their sync generation); the replayer task takes them.
    pub(super) replays: Sender<(Route, u64)>,
    /// The pairing handshake of the link on show.
    pub(super) pairing: Option<Pairing>,
    /// A device or `muxagent pair` asked for a pairing link.
    pub(super) want_pairing: bool,
    /// Control clients waiting for pairing or unpairing news.
    pub(super) watchers: Vec<Sender<Notice>>,
}

impl Link {
    /// A link not yet up; replay requests go to `replays`.
    pub fn new(replays: Sender<(Route, u64)>) -> Self {
        Link {
            outgoing: None,
            status: LinkStatus::default(),
            relink: smol::channel::bounded(1),
            peers: Peers::new(),
            subscriptions: BTreeMap::new(),
            online: BTreeSet::new(),
            generation: 0,
            replays,
            pairing: None,
            want_pairing: false,
            watchers: Vec::new(),
        }
    }

    /// Logged in: frames go into `outgoing`; a `pending` machine (no device yet) offers a
    /// pairing link at once.
    pub(super) fn up(&mut self, outgoing: Sender<Out>, pending: bool) {
        self.outgoing = Some(outgoing);
        self.status.connected = true;
        self.status.revoked = false;
        self.status.last_error = None;
        if pending {
            self.want_pairing = true;
        }
    }

    /// The connection ended: its channels, subscriptions and pairing went with it.
    pub(super) fn down(&mut self) {
        self.outgoing = None;
        self.status.connected = false;
        self.status.pairing = None;
        self.pairing = None;
        self.peers.clear();
        self.subscriptions.clear();
        self.online.clear();
    }

    /// How the link is, for `daemon status`.
    pub fn status(&self) -> &LinkStatus {
        &self.status
    }

    /// Queue an answer for the connection that asked (dropped if the relay link is down: the
    /// device will ask again).
    pub fn reply(&self, route: Route, message: MachineMessage) {
        if let Some(outgoing) = &self.outgoing {
            let _ = outgoing.try_send(Out::ToDevice(route, message));
        }
    }

    /// Queue a frame for the relay; false if the link is down or its queue is full.
    pub fn send_frame(&self, frame: Frame) -> bool {
        self.outgoing
            .as_ref()
            .is_some_and(|outgoing| outgoing.try_send(Out::Frame(frame)).is_ok())
    }

    /// Send a durable `event` to every caught-up connection that does not have it yet; true if
    /// one of a device the relay says is online was sent it.
    pub fn broadcast(&mut self, event: &Event) -> bool {
        let Some(outgoing) = self.outgoing.clone() else {
            return false;
        };
        let mut delivered = false;
        let mut fallen_behind = Vec::new();
        let wants = |sync: &DeviceSync| {
            sync.live
                && sync
                    .cursors
                    .get(&event.session)
                    .is_none_or(|cursor| *cursor < event.seq)
        };
        for (route, sync) in self
            .subscriptions
            .iter_mut()
            .filter(|(_, sync)| wants(sync))
        {
            let message = MachineMessage::Event(event.clone());
            match outgoing.try_send(Out::ToDevice(*route, message)) {
                Ok(()) => {
                    sync.cursors.insert(event.session, event.seq);
                    delivered |= self.online.contains(&route.device);
                }
                Err(_) => {
                    sync.live = false;
                    fallen_behind.push(*route);
                }
            }
        }
        for route in fallen_behind {
            self.request_replay(route);
        }
        delivered
    }

    /// Have the replayer catch `route` up from its cursors (once; later requests while one runs
    /// are folded into it).
    pub fn request_replay(&mut self, route: Route) {
        if let Some(sync) = self.subscriptions.get_mut(&route) {
            sync.live = false;
            if !sync.replaying {
                sync.replaying = true;
                let _ = self.replays.try_send((route, sync.generation));
            }
        }
    }

    /// The relay says paired `device` came online, or which of its connections ended, or that
    /// it went offline: drop the channels and subscriptions that ended with them, at once.
    pub fn device_presence(&mut self, presence: &DevicePresence) {
        let device = presence.device;
        if presence.online {
            self.online.insert(device);
            self.peers.close(&device, &presence.closed);
            self.subscriptions.retain(|route, _| {
                route.device != device || !presence.closed.contains(&route.connection)
            });
        } else {
            self.online.remove(&device);
            self.peers.forget(&device);
            self.subscriptions.retain(|route, _| route.device != device);
        }
    }

    /// The relay no longer allows `device`: drop its channels and subscriptions, and name it
    /// in the status.
    pub fn revoked(&mut self, device: &Fingerprint) {
        if self.status.revoked_devices.len() >= RELAY_MAX_DEVICES_PER_ACCOUNT {
            self.status.revoked_devices.remove(0);
        }
        self.status.revoked_devices.push(*device);
        self.peers.forget(device);
        self.online.remove(device);
        self.subscriptions
            .retain(|route, _| route.device != *device);
    }

    /// Drop subscriptions whose channel is gone (pushed out by newer ones, or broken).
    pub fn prune_routes(&mut self) {
        let peers = &self.peers;
        self.subscriptions
            .retain(|route, _| peers.is_open(&route.device, route.connection));
    }

    /// Whether `route`'s channel is open.
    pub fn is_open(&self, route: &Route) -> bool {
        self.peers.is_open(&route.device, route.connection)
    }

    /// The machine has new keys and no account: drop every channel, subscription and pairing,
    /// and log in again at once, as a pending machine ready to pair.
    pub fn reset(&mut self) {
        self.peers.clear();
        self.subscriptions.clear();
        self.online.clear();
        self.pairing = None;
        self.status.pairing = None;
        self.status.revoked = false;
        self.want_pairing = true;
        let _ = self.relink.0.try_send(());
    }

    /// Up, sending into `outgoing` (tests with no relay).
    #[cfg(test)]
    pub fn attach(&mut self, outgoing: Sender<Out>) {
        self.outgoing = Some(outgoing);
    }

    /// `route` subscribed and caught up (tests with no relay).
    #[cfg(test)]
    pub fn subscribe_live(&mut self, route: Route) {
        self.subscriptions.insert(
            route,
            DeviceSync {
                cursors: BTreeMap::new(),
                live: true,
                replaying: false,
                generation: 1,
            },
        );
    }
}
