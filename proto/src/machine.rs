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
    /// A message from a device.
    Message(DeviceMessage),
    /// A message kind this build does not know, skipped.
    Skipped,
    /// A packet for no live channel (an old connection), ignored.
    Stale,
}

/// The machine's channels to its paired devices. A device may hold a new channel and the one
/// it replaces at once: the old one is dropped only when the new one carries a message, so a
/// replayed handshake cannot cut a working connection.
#[derive(Default)]
pub struct Peers {
    channels: BTreeMap<Fingerprint, Vec<Channel>>,
}

impl Peers {
    /// No channels.
    pub fn new() -> Self {
        Self::default()
    }

    /// Take a payload the relay delivered `from` a device. `paired` is the set of devices this
    /// machine accepts; a handshake from any other key fails.
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
                let device = paired
                    .into_iter()
                    .filter(|device| device.fingerprint() == from);
                let (channel, response) = session::respond(local, device, payload, rng)?;
                let channels = self.channels.entry(from).or_default();
                if channels.len() >= MAX_CHANNELS_PER_DEVICE {
                    // Replace the newest unproven channel, never the working one (first).
                    channels.pop();
                }
                channels.push(channel);
                Ok(Incoming::Reply(
                    frame::Send {
                        to: from,
                        payload: response,
                    }
                    .into(),
                ))
            }
            Kind::Transport => {
                let Some(channels) = self.channels.get_mut(&from) else {
                    return Ok(Incoming::Stale);
                };
                let Some(index) = channels
                    .iter()
                    .position(|channel| channel.connection_id() == packet.connection)
                else {
                    return Ok(Incoming::Stale);
                };
                let decrypted = channels[index].decrypt(payload);
                let plaintext = match decrypted {
                    Ok(plaintext) => plaintext,
                    Err(error) => {
                        channels.remove(index);
                        return Err(error.into());
                    }
                };
                // The device uses this channel: the others are history.
                let keep = channels.swap_remove(index);
                channels.clear();
                channels.push(keep);
                Ok(match DeviceMessage::decode(&plaintext)? {
                    Decoded::Known(message) => Incoming::Message(message),
                    Decoded::Unknown { .. } => Incoming::Skipped,
                })
            }
            _ => Err(PeerError::Unexpected("a pairing packet outside pairing")),
        }
    }

    /// The connection the device last spoke on (before it has spoken at all: its oldest open
    /// channel). Answers and subscriptions belong to one connection: a message queued for it
    /// must not reach the device's next connection, which has not asked for anything yet.
    pub fn connection(&self, device: &Fingerprint) -> Option<ConnectionId> {
        self.channels
            .get(device)
            .and_then(|channels| channels.first())
            .map(Channel::connection_id)
    }

    /// Encrypt `message` for device `to` on its `connection`; [`PeerError::NotConnected`] when
    /// that connection is gone (the device reconnected or went away).
    pub fn send(
        &mut self,
        to: Fingerprint,
        connection: ConnectionId,
        message: &MachineMessage,
    ) -> Result<Frame, PeerError> {
        let channels = self.channels.get_mut(&to).ok_or(PeerError::NotConnected)?;
        let index = channels
            .iter()
            .position(|channel| channel.connection_id() == connection)
            .ok_or(PeerError::NotConnected)?;
        match channels[index].encrypt(&message.encode()) {
            Ok(payload) => Ok(frame::Send { to, payload }.into()),
            Err(error) => {
                channels.remove(index);
                Err(error.into())
            }
        }
    }

    /// Devices with a channel that has carried a message or just opened.
    pub fn connected(&self) -> impl Iterator<Item = Fingerprint> + '_ {
        self.channels
            .iter()
            .filter(|(_, channels)| !channels.is_empty())
            .map(|(device, _)| *device)
    }

    /// Drop a device's channels (it went away, or was unpaired).
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
        f.debug_list().entries(self.channels.keys()).finish()
    }
}

/// What [`Pairing::on_pair_recv`] wants done next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PairingStep {
    /// Send this frame and keep waiting.
    Send(Frame),
    /// Nothing to do (a packet of another attempt).
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
