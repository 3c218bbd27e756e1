//! The machine side of the protocol, sans-IO: what the daemon runs to answer devices. Feed it
//! what the relay delivered; send the frames it returns.
//!
//! - [`Peers`]: the secure channels to paired devices (answers KK handshakes, decrypts their
//!   messages, encrypts answers).
//! - [`Pairing`]: one pairing attempt under a ticket the machine printed.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use rand_core::CryptoRng;

use crate::app::{DeviceMessage, MachineMessage, PairingConsent};
use crate::envelope::Decoded;
use crate::frame::{self, Frame, Hostname, PairSend, PairingId, RegistryEntry};
use crate::identity::{Fingerprint, Identity, PublicIdentity, SignDomain};
use crate::limits::MAX_CHANNELS_PER_DEVICE;
use crate::noise::packet::{self, Kind};
use crate::noise::pairing::MachinePairing;
use crate::noise::{Channel, ConnectionId, session};
use crate::peer::PeerError;
use crate::ticket::PairingSecret;

/// What [`Peers::receive`] made of a payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A device opened a channel: send this handshake answer.
    Reply(Frame),
    /// A message from a device (on the channel [`Peers::connection`] now names).
    Message(DeviceMessage),
    /// A message kind this build does not know, skipped.
    Skipped,
    /// A packet for no live channel (an old connection, a replayed handshake), ignored.
    Stale,
}

/// One channel and whether the device has used it.
struct Slot {
    channel: Channel,
    /// It decrypted a message: the device holds its keys (a replayed handshake never gets
    /// here).
    proven: bool,
}

/// The machine's channels to its paired devices: one per connection of a device.
///
/// A device may be connected several times at once (tabs of the web app, `ctl watch` beside
/// `ctl approve`), each connection with its own handshake, keys and [`ConnectionId`]; the relay
/// delivers what the machine sends the device to all of them and each drops what is not its
/// own. So every channel stays usable until its connection is known to be gone
/// ([`Peers::close`], [`Peers::forget`]), and what is sent names its connection, so an answer
/// or a live event for one connection never reaches another.
///
/// A device keeps at most [`MAX_CHANNELS_PER_DEVICE`] channels (its relay cap plus one). A new
/// one past that pushes out the oldest channel that has never carried a message (an abandoned
/// or replayed handshake), else the one the device spoke on least recently; a replayed
/// handshake of a live connection is answered but changes nothing.
#[derive(Default)]
pub struct Peers {
    /// Per device, least recently used first (opened or spoken on).
    channels: BTreeMap<Fingerprint, Vec<Slot>>,
}

impl Peers {
    /// No channels.
    pub fn new() -> Self {
        Self::default()
    }

    /// Take a payload the relay delivered `from` a device. `paired` is the set of devices this
    /// machine accepts; a handshake from any other key fails.
    ///
    /// An error says what was wrong with the payload; unless it [ended a
    /// channel](PeerError::ends_channel) (an authentic message after a hole), every channel is
    /// as it was: junk, forged or replayed packets cost nothing but the attempt to read them.
    pub fn receive<'a, R: CryptoRng + ?Sized>(
        &mut self,
        local: &Identity,
        paired: impl IntoIterator<Item = &'a PublicIdentity>,
        from: Fingerprint,
        payload: &[u8],
        rng: &mut R,
    ) -> Result<Incoming, PeerError> {
        let packet = packet::decode(payload)?;
        match packet.kind() {
            Kind::SessionInit => {
                // A device picks a fresh connection id for every handshake: one it already
                // used is a replay. Before the first message it is ignored (the device is
                // waiting for the answer it was sent); after, it is answered, and the working
                // channel keeps working.
                let known = self.channels.get(&from).and_then(|slots| {
                    slots
                        .iter()
                        .find(|slot| slot.channel.connection_id() == packet.connection)
                        .map(|slot| slot.proven)
                });
                if known == Some(false) {
                    return Ok(Incoming::Stale);
                }
                let device = paired
                    .into_iter()
                    .filter(|device| device.fingerprint() == from);
                let (channel, response) = session::respond(local, device, payload, rng)?;
                let reply = Ok(Incoming::Reply(
                    frame::Send {
                        to: from,
                        payload: response,
                    }
                    .into(),
                ));
                if known.is_some() {
                    return reply;
                }
                let slots = self.channels.entry(from).or_default();
                if slots.len() >= MAX_CHANNELS_PER_DEVICE {
                    let unproven = slots.iter().position(|slot| !slot.proven);
                    slots.remove(unproven.unwrap_or(0));
                }
                slots.push(Slot {
                    channel,
                    proven: false,
                });
                reply
            }
            Kind::Transport => {
                let Some(slots) = self.channels.get_mut(&from) else {
                    return Ok(Incoming::Stale);
                };
                let Some(index) = slots
                    .iter()
                    .position(|slot| slot.channel.connection_id() == packet.connection)
                else {
                    return Ok(Incoming::Stale);
                };
                let plaintext = match slots[index].channel.decrypt(payload) {
                    Ok(plaintext) => plaintext,
                    Err(error) => {
                        // A packet that did not authenticate changed nothing; only a channel
                        // that really broke (a hole in the device's stream) goes.
                        if error.poisons() {
                            slots.remove(index);
                        }
                        return Err(error.into());
                    }
                };
                // Most recently used last: this is the connection answers go to.
                let mut slot = slots.remove(index);
                slot.proven = true;
                slots.push(slot);
                Ok(match DeviceMessage::decode(&plaintext)? {
                    Decoded::Known(message) => Incoming::Message(message),
                    Decoded::Unknown { .. } => Incoming::Skipped,
                })
            }
            _ => Err(PeerError::Unexpected("a pairing packet outside pairing")),
        }
    }

    /// The connection the device last spoke on (right after [`Peers::receive`] returned a
    /// message: the one it came on), or before it has spoken at all, its oldest channel.
    pub fn connection(&self, device: &Fingerprint) -> Option<ConnectionId> {
        let slots = self.channels.get(device)?;
        slots
            .iter()
            .rev()
            .find(|slot| slot.proven)
            .or_else(|| slots.first())
            .map(|slot| slot.channel.connection_id())
    }

    /// Whether the device's channel on `connection` is open.
    pub fn is_open(&self, device: &Fingerprint, connection: ConnectionId) -> bool {
        self.channels.get(device).is_some_and(|slots| {
            slots
                .iter()
                .any(|slot| slot.channel.connection_id() == connection)
        })
    }

    /// Encrypt `message` for device `to` on its `connection`; [`PeerError::NotConnected`] when
    /// that connection is gone (it closed, or was pushed out by newer ones).
    pub fn send(
        &mut self,
        to: Fingerprint,
        connection: ConnectionId,
        message: &MachineMessage,
    ) -> Result<Frame, PeerError> {
        let slots = self.channels.get_mut(&to).ok_or(PeerError::NotConnected)?;
        let index = slots
            .iter()
            .position(|slot| slot.channel.connection_id() == connection)
            .ok_or(PeerError::NotConnected)?;
        match slots[index].channel.encrypt(&message.encode()) {
            Ok(payload) => Ok(frame::Send { to, payload }.into()),
            Err(error) => {
                slots.remove(index);
                Err(error.into())
            }
        }
    }

    /// Devices with at least one channel.
    pub fn connected(&self) -> impl Iterator<Item = Fingerprint> + '_ {
        self.channels
            .iter()
            .filter(|(_, slots)| !slots.is_empty())
            .map(|(device, _)| *device)
    }

    /// The device's channels, least recently used first.
    pub fn connections(&self, device: &Fingerprint) -> impl Iterator<Item = ConnectionId> + '_ {
        self.channels
            .get(device)
            .into_iter()
            .flatten()
            .map(|slot| slot.channel.connection_id())
    }

    /// Drop the device's channels on `connections` (the relay said they ended).
    pub fn close(&mut self, device: &Fingerprint, connections: &[ConnectionId]) {
        if let Some(slots) = self.channels.get_mut(device) {
            slots.retain(|slot| !connections.contains(&slot.channel.connection_id()));
            if slots.is_empty() {
                self.channels.remove(device);
            }
        }
    }

    /// Drop a device's channels (it went offline, or was unpaired).
    pub fn forget(&mut self, device: &Fingerprint) {
        self.channels.remove(device);
    }

    /// Drop every channel (the relay connection was lost).
    pub fn clear(&mut self) {
        self.channels.clear();
    }
}

impl core::fmt::Debug for Peers {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_map()
            .entries(
                self.channels
                    .iter()
                    .map(|(device, slots)| (device, slots.len())),
            )
            .finish()
    }
}

/// What [`Pairing::on_pair_recv`] wants done next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PairingStep {
    /// Send this frame and keep waiting.
    Send(Frame),
    /// Nothing to do (a packet of another attempt, a replayed request).
    Ignored,
    /// The device registered this machine with the relay: keep it as paired.
    Paired(PublicIdentity),
}

/// One pairing attempt under the ticket this machine printed.
pub struct Pairing {
    pairing_id: PairingId,
    hostname: Hostname,
    noise: MachinePairing,
    device: Option<(Fingerprint, Channel)>,
}

impl Pairing {
    /// Wait for a device on `pairing_id` with the ticket's `secret`.
    pub fn new(
        local: &Identity,
        pairing_id: PairingId,
        secret: PairingSecret,
        hostname: Hostname,
    ) -> Self {
        Self {
            pairing_id,
            hostname,
            noise: MachinePairing::new(local, secret),
            device: None,
        }
    }

    /// The pairing id.
    pub fn pairing_id(&self) -> PairingId {
        self.pairing_id
    }

    /// Take a `PairRecv` payload `from` a device.
    pub fn on_pair_recv<R: CryptoRng + ?Sized>(
        &mut self,
        local: &Identity,
        from: Fingerprint,
        payload: &[u8],
        rng: &mut R,
    ) -> Result<PairingStep, PeerError> {
        let pairing_id = self.pairing_id;
        match packet::decode(payload)?.kind() {
            Kind::PairingInit => match self.noise.respond(payload, rng) {
                Ok(response) => Ok(PairingStep::Send(
                    PairSend {
                        pairing_id,
                        payload: response,
                    }
                    .into(),
                )),
                // Tell the device at once instead of letting it time out: an empty payload is
                // "refused" (unauthenticated, so it can only make a pairing fail sooner, which
                // the relay could do anyway by dropping frames).
                // The pending attempt's request again (the relay can replay): nothing to do.
                Err(crate::noise::pairing::PairingError::Replayed) => Ok(PairingStep::Ignored),
                Err(crate::noise::pairing::PairingError::RequestRejected) => Ok(PairingStep::Send(
                    PairSend {
                        pairing_id,
                        payload: Vec::new(),
                    }
                    .into(),
                )),
                Err(error) => Err(error.into()),
            },
            Kind::PairingConfirm => {
                let mut channel = self.noise.confirm(payload)?;
                let device = *channel.peer();
                if device.fingerprint() != from {
                    return Err(PeerError::Unexpected(
                        "the pairing device is not the sender",
                    ));
                }
                let consent = local.sign(
                    SignDomain::RegistryEntry,
                    &RegistryEntry::consent_message(&from, &pairing_id),
                );
                let message = MachineMessage::PairingConsent(PairingConsent {
                    hostname: self.hostname.clone(),
                    consent,
                });
                let payload = channel.encrypt(&message.encode())?;
                self.device = Some((from, channel));
                Ok(PairingStep::Send(
                    PairSend {
                        pairing_id,
                        payload,
                    }
                    .into(),
                ))
            }
            Kind::Transport => {
                let Some((device, channel)) = &mut self.device else {
                    return Ok(PairingStep::Ignored);
                };
                if *device != from {
                    return Ok(PairingStep::Ignored);
                }
                let plaintext = channel.decrypt(payload)?;
                match DeviceMessage::decode(&plaintext)? {
                    Decoded::Known(DeviceMessage::PairingComplete(_)) => {
                        Ok(PairingStep::Paired(*channel.peer()))
                    }
                    _ => Err(PeerError::Unexpected("expected the pairing to complete")),
                }
            }
            _ => Err(PeerError::Unexpected("a session packet during pairing")),
        }
    }
}

impl core::fmt::Debug for Pairing {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pairing")
            .field("pairing_id", &self.pairing_id)
            .finish_non_exhaustive()
    }
}
