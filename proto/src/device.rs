//! The device side of the protocol, sans-IO: what `muxagent ctl` and the web app run to pair
//! with machines and talk to them. Feed it what the relay delivered; send the frames it returns.
//!
//! - [`MachineLink`]: one secure connection to one paired machine (KK handshake, then messages).
//! - [`Pairing`]: the pairing flow with a machine from its ticket, up to the relay's
//!   acknowledgement of the signed `RegisterMachine` entry.

use alloc::boxed::Box;

use rand_core::CryptoRng;

use crate::app::{DeviceMessage, MachineMessage, PairingComplete};
use crate::envelope::Decoded;
use crate::frame::{self, Frame, Hostname, PairSend, RegistryEntry, SignedEntry};
use crate::identity::{Fingerprint, Identity, PublicIdentity};
use crate::noise::pairing::DevicePairing;
use crate::noise::session::{Initiator, SessionError};
use crate::noise::{Channel, packet};
use crate::peer::PeerError;
use crate::ticket::Ticket;

/// What a [`MachineLink`] made of a payload from its machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// The handshake finished: send [`Hello`](crate::app::Hello) next.
    Opened,
    /// A message from the machine.
    Message(MachineMessage),
    /// A message kind this build does not know, skipped.
    Skipped,
    /// A packet of an earlier connection, a duplicate handshake answer, or one that failed
    /// authentication (forged or damaged: counted in [`MachineLink::dropped`]), ignored. The
    /// link is as it was.
    Stale,
}

enum LinkState {
    Closed,
    // Boxed: a snow handshake state is ~1 KiB, a channel a quarter of that.
    Handshaking(Box<Initiator>),
    Open(Box<Channel>),
}

/// One secure connection from this device to one paired machine.
///
/// Nothing unauthenticated changes the link (WireGuard's rule): junk, a forged handshake answer,
/// a replayed, forged or damaged message is dropped as [`Received::Stale`] and the handshake or
/// channel goes on, so whoever can inject packets cannot make the device reconnect. Only an
/// authentic fault (a message lost from the machine's stream, an answer with contents this
/// version does not expect) is an error, after which [`MachineLink::is_open`] says whether the
/// channel survived.
pub struct MachineLink {
    machine: PublicIdentity,
    fingerprint: Fingerprint,
    state: LinkState,
    dropped: u64,
}

impl MachineLink {
    /// A closed link to `machine`.
    pub fn new(machine: PublicIdentity) -> Self {
        Self {
            fingerprint: machine.fingerprint(),
            machine,
            state: LinkState::Closed,
            dropped: 0,
        }
    }

    /// Packets dropped because they failed authentication or were not packets at all (forged,
    /// damaged, replayed), since the link was made.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The machine's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Whether the handshake finished and the channel works.
    pub fn is_open(&self) -> bool {
        matches!(&self.state, LinkState::Open(channel) if !channel.is_poisoned())
    }

    /// Start a fresh handshake (new ephemeral keys), dropping any previous channel. Returns the
    /// frame to send to the relay.
    pub fn connect<R: CryptoRng + ?Sized>(
        &mut self,
        local: &Identity,
        rng: &mut R,
    ) -> Result<Frame, PeerError> {
        let (initiator, init) = Initiator::start(local, &self.machine, rng)?;
        self.state = LinkState::Handshaking(Box::new(initiator));
        Ok(frame::Send {
            to: self.fingerprint,
            payload: init,
        }
        .into())
    }

    /// Take a payload the relay delivered from this machine.
    pub fn receive(&mut self, payload: &[u8]) -> Result<Received, PeerError> {
        let Ok(packet) = packet::decode(payload) else {
            return Ok(self.drop_packet());
        };
        match &mut self.state {
            LinkState::Closed => Ok(Received::Stale),
            LinkState::Handshaking(initiator) => {
                if packet.connection != initiator.connection_id() {
                    return Ok(Received::Stale);
                }
                match initiator.finish(payload) {
                    Ok(channel) => {
                        self.state = LinkState::Open(Box::new(channel));
                        Ok(Received::Opened)
                    }
                    // Not this handshake's answer, or a forged one: the attempt goes on.
                    Err(
                        SessionError::ResponseRejected
                        | SessionError::UnexpectedKind(_)
                        | SessionError::Packet(_),
                    ) => Ok(self.drop_packet()),
                    Err(SessionError::Stale { .. }) => Ok(Received::Stale),
                    Err(error) => Err(error.into()),
                }
            }
            LinkState::Open(channel) => {
                if packet.connection != channel.connection_id() {
                    return Ok(Received::Stale);
                }
                let plaintext = match channel.decrypt(payload) {
                    Ok(plaintext) => plaintext,
                    Err(error) if !error.poisons() => return Ok(self.drop_packet()),
                    Err(error) => return Err(error.into()),
                };
                Ok(match MachineMessage::decode(&plaintext)? {
                    Decoded::Known(message) => Received::Message(message),
                    Decoded::Unknown { .. } => Received::Skipped,
                })
            }
        }
    }

    fn drop_packet(&mut self) -> Received {
        self.dropped += 1;
        Received::Stale
    }

    /// Encrypt `message` for the machine. Returns the frame to send to the relay.
    pub fn send(&mut self, message: &DeviceMessage) -> Result<Frame, PeerError> {
        let LinkState::Open(channel) = &mut self.state else {
            return Err(PeerError::NotConnected);
        };
        let payload = channel.encrypt(&message.encode())?;
        Ok(frame::Send {
            to: self.fingerprint,
            payload,
        }
        .into())
    }

    /// Forget the channel (the relay connection dropped, or the machine went offline).
    pub fn close(&mut self) {
        self.state = LinkState::Closed;
    }
}

/// A machine this device has paired with, to keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairedMachine {
    /// Its keys, checked against the ticket's fingerprint.
    pub identity: PublicIdentity,
    /// Its hostname at pairing time.
    pub hostname: Hostname,
}

enum PairingState {
    AwaitResponse(Box<DevicePairing>),
    AwaitConsent(Channel),
    AwaitAck {
        channel: Channel,
        machine: PairedMachine,
    },
    Done,
}

/// What [`Pairing`] wants done next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PairingStep {
    /// Send this frame and keep feeding the flow.
    Send(Frame),
    /// Ignore: the payload belonged to another attempt, or failed authentication (forged or
    /// damaged); the flow is as it was.
    Ignored,
    /// Paired: send the frame (it tells the machine) and keep the machine.
    Paired(Frame, PairedMachine),
}

/// The device's pairing flow:
///
/// 1. `start`: pairing-init to the pairing id (relay `PairSend`);
/// 2. pairing-response → verify the machine's fingerprint and proof, send pairing-confirm;
/// 3. the machine's [`PairingConsent`](crate::app::PairingConsent) → send the signed
///    `RegisterMachine` entry to the relay;
/// 4. the relay's `RegistryAck` → tell the machine ([`PairingComplete`]) and keep it.
pub struct Pairing {
    ticket: Ticket,
    request: u32,
    state: PairingState,
}

impl Pairing {
    /// Start pairing from a decoded, unexpired ticket. `request` numbers the registry request.
    pub fn start<R: CryptoRng + ?Sized>(
        local: &Identity,
        ticket: Ticket,
        request: u32,
        rng: &mut R,
    ) -> Result<(Self, Frame), PeerError> {
        let (noise, init) = DevicePairing::start(local, &ticket, rng)?;
        let frame = PairSend {
            pairing_id: ticket.pairing_id,
            payload: init,
        }
        .into();
        Ok((
            Self {
                ticket,
                request,
                state: PairingState::AwaitResponse(Box::new(noise)),
            },
            frame,
        ))
    }

    /// The ticket being used.
    pub fn ticket(&self) -> &Ticket {
        &self.ticket
    }

    /// Take a `PairRecv` payload from the machine.
    pub fn on_pair_recv(
        &mut self,
        local: &Identity,
        payload: &[u8],
        now: u64,
    ) -> Result<PairingStep, PeerError> {
        let pairing_id = self.ticket.pairing_id;
        match &mut self.state {
            PairingState::AwaitResponse(noise) => {
                if payload.is_empty() {
                    return Err(PeerError::Refused);
                }
                match packet::decode(payload) {
                    Ok(packet) if packet.connection == noise.connection_id() => {}
                    _ => return Ok(PairingStep::Ignored),
                }
                // An answer that fails authentication is an error (most likely the ticket is
                // wrong, and waiting would not help), but it leaves the attempt waiting: a
                // caller may keep feeding it.
                let (channel, confirm) = noise.finish(payload)?;
                self.state = PairingState::AwaitConsent(channel);
                Ok(PairingStep::Send(
                    PairSend {
                        pairing_id,
                        payload: confirm,
                    }
                    .into(),
                ))
            }
            PairingState::AwaitConsent(channel) => {
                match packet::decode(payload) {
                    Ok(packet) if packet.connection == channel.connection_id() => {}
                    _ => return Ok(PairingStep::Ignored),
                }
                let plaintext = match channel.decrypt(payload) {
                    Ok(plaintext) => plaintext,
                    Err(error) if !error.poisons() => return Ok(PairingStep::Ignored),
                    Err(error) => return Err(error.into()),
                };
                let Decoded::Known(MachineMessage::PairingConsent(consent)) =
                    MachineMessage::decode(&plaintext)?
                else {
                    return Err(PeerError::Unexpected(
                        "expected the machine's pairing consent",
                    ));
                };
                // People tell machines apart by this name: nothing in it may hide or reorder.
                crate::frame::validate_hostname(&consent.hostname)
                    .map_err(PeerError::Unexpected)?;
                let machine = PairedMachine {
                    identity: *channel.peer(),
                    hostname: consent.hostname,
                };
                let entry = RegistryEntry::RegisterMachine {
                    device: local.public(),
                    machine: machine.identity,
                    hostname: machine.hostname.clone(),
                    pairing_id,
                    machine_consent: consent.consent,
                    at: now,
                };
                let signed = SignedEntry::sign(local, &entry)?;
                // The relay checks the consent too; checking here gives a clear error early.
                signed.verify()?;
                let frame = frame::Registry {
                    request: self.request,
                    entry: signed,
                }
                .into();
                let channel = core::mem::replace(&mut self.state, PairingState::Done);
                if let PairingState::AwaitConsent(channel) = channel {
                    self.state = PairingState::AwaitAck { channel, machine };
                }
                Ok(PairingStep::Send(frame))
            }
            PairingState::AwaitAck { .. } | PairingState::Done => {
                Err(PeerError::Unexpected("pairing message after the consent"))
            }
        }
    }

    /// Take the relay's `RegistryAck` for `request`.
    pub fn on_registry_ack(&mut self, request: u32) -> Result<PairingStep, PeerError> {
        if request != self.request {
            return Ok(PairingStep::Ignored);
        }
        match core::mem::replace(&mut self.state, PairingState::Done) {
            PairingState::AwaitAck {
                mut channel,
                machine,
            } => {
                let complete = DeviceMessage::PairingComplete(PairingComplete {});
                let payload = channel.encrypt(&complete.encode())?;
                let frame = PairSend {
                    pairing_id: self.ticket.pairing_id,
                    payload,
                }
                .into();
                Ok(PairingStep::Paired(frame, machine))
            }
            other => {
                self.state = other;
                Err(PeerError::Unexpected(
                    "registry acknowledgement before the consent",
                ))
            }
        }
    }
}

impl core::fmt::Debug for Pairing {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Pairing")
            .field("machine", &self.ticket.machine)
            .finish_non_exhaustive()
    }
}
