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

#[cfg(test)]
mod tests {
    use muxagent_proto::app::EventKind;
    use muxagent_proto::noise::ConnectionId;

    use super::*;

    const SESSION: SessionId = SessionId([7; 16]);

    fn route(device: u8, connection: u8) -> Route {
        Route {
            device: Fingerprint([device; 32]),
            connection: ConnectionId([connection; 8]),
        }
    }

    fn event(seq: u64) -> Event {
        Event {
            session: SESSION,
            seq,
            at: 0,
            kind: EventKind::TextDelta { text: "x".into() },
        }
    }

    fn online(device: Fingerprint, closed: Vec<ConnectionId>) -> DevicePresence {
        DevicePresence {
            device,
            online: true,
            closed,
        }
    }

    /// The routes of what was queued, in order.
    fn sent(queue: &Receiver<Out>) -> Vec<Route> {
        std::iter::from_fn(|| queue.try_recv().ok())
            .filter_map(|out| match out {
                Out::ToDevice(route, MachineMessage::Event(_)) => Some(route),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_connection_whose_queue_is_full_falls_back_to_replay() {
        let (replays, requested) = smol::channel::unbounded();
        let mut link = Link::new(replays);
        let (outgoing, queue) = smol::channel::bounded(1);
        link.attach(outgoing);
        let (a, b) = (route(1, 1), route(1, 2));
        link.subscribe_live(a);
        link.subscribe_live(b);
        link.device_presence(&online(a.device, Vec::new()));

        assert!(link.broadcast(&event(1)), "queued to an online device");
        assert_eq!(sent(&queue), [a]);
        assert_eq!(requested.try_recv().ok(), Some((b, 1)), "b fell behind");
        // Only live connections get new events; what a connection has is not sent again.
        assert!(link.broadcast(&event(2)));
        assert!(!link.broadcast(&event(2)));
        assert_eq!(sent(&queue), [a]);
        // A second request while b's replay runs is folded into it.
        link.request_replay(b);
        assert!(requested.is_empty());
    }

    #[test]
    fn presence_drops_the_subscriptions_that_ended() {
        let (replays, _requested) = smol::channel::unbounded();
        let mut link = Link::new(replays);
        let (outgoing, queue) = smol::channel::bounded(8);
        link.attach(outgoing);
        let (a1, a2, b) = (route(1, 1), route(1, 2), route(2, 1));
        for route in [a1, a2, b] {
            link.subscribe_live(route);
        }
        // Not online as far as the relay said: sent, but not delivered.
        assert!(!link.broadcast(&event(1)));
        assert_eq!(sent(&queue), [a1, a2, b]);

        link.device_presence(&online(a1.device, vec![a1.connection]));
        link.device_presence(&online(b.device, Vec::new()));
        assert!(link.broadcast(&event(2)));
        assert_eq!(sent(&queue), [a2, b]);

        link.device_presence(&DevicePresence {
            device: b.device,
            online: false,
            closed: Vec::new(),
        });
        assert!(link.broadcast(&event(3)));
        assert_eq!(sent(&queue), [a2]);
    }

    #[test]
    fn a_revoked_device_is_named_and_a_reset_starts_over() {
        let (replays, _requested) = smol::channel::unbounded();
        let mut link = Link::new(replays);
        let (outgoing, queue) = smol::channel::bounded(8);
        link.attach(outgoing);
        let (a, b) = (route(1, 1), route(2, 1));
        link.subscribe_live(a);
        link.subscribe_live(b);

        link.revoked(&a.device);
        assert_eq!(link.status().revoked_devices, [a.device]);
        link.broadcast(&event(1));
        assert_eq!(sent(&queue), [b]);

        link.reset();
        link.broadcast(&event(2));
        assert!(sent(&queue).is_empty());
        assert!(link.want_pairing);
        assert!(
            link.relink.1.try_recv().is_ok(),
            "the link logs in again at once"
        );
    }
}
