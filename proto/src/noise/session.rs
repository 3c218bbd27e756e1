//! Every connection after pairing: `Noise_KK_25519_ChaChaPoly_BLAKE2s`, one round trip.
//!
//! ```text
//! device (initiator)                                   machine (responder)
//! Initiator::start(machine) ── session-init ─────────► session::respond(paired devices)
//!   -> e, es, ss                                         finds which paired device it is
//! Initiator::finish        ◄── session-response ────────
//!   <- e, ee, se
//! ```
//!
//! Both static keys are known from pairing, so nothing about them is sent; the fresh ephemerals
//! (`ee`) give every connection new keys that a later theft of either static key cannot recover
//! (forward secrecy), and `es`/`ss`/`se` authenticate both sides. The responder does not have to
//! trust anyone's word for who is calling: [`respond`] takes the paired devices' identities and
//! accepts the request only if it was made with one of their static keys — there is no path that
//! yields a channel to an unpaired key.
//!
//! The responder's channel is complete when it sends the response, but it has not yet seen the
//! device use it: a replayed session-init (the relay could keep one) makes a channel nobody can
//! talk on. A machine should therefore not tear down a working channel for a device until the
//! new one has decrypted its first message (the device's hello).

use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRng;
use snow::HandshakeState;

use super::channel::Channel;
use super::handshake::{self, Failure, SESSION_PATTERN, SESSION_PROLOGUE, Setup};
use super::packet::{self, Body, ConnectionId, Kind, Packet, PacketError};
use crate::identity::{Identity, PublicIdentity};

/// The device's side of a session handshake.
pub struct Initiator {
    connection: ConnectionId,
    machine: PublicIdentity,
    /// `None` once the handshake ended.
    state: Option<HandshakeState>,
}

impl Initiator {
    /// Start a connection to a paired `machine`. Returns the state to keep and the session-init
    /// packet to send. Every call makes a new connection id and new ephemeral keys.
    pub fn start<R: CryptoRng + ?Sized>(
        local: &Identity,
        machine: &PublicIdentity,
        rng: &mut R,
    ) -> Result<(Self, Vec<u8>), SessionError> {
        let connection = ConnectionId::generate(rng);
        let setup = Setup {
            pattern: SESSION_PATTERN,
            prologue_label: SESSION_PROLOGUE,
            connection,
            local_static: local.noise_secret(),
            remote_static: Some(&machine.noise),
            psk: None,
            initiator: true,
        };
        let mut state = handshake::build(&setup, rng).map_err(internal)?;
        let message = handshake::write(&mut state, &[]).map_err(internal)?;
        let packet = Packet {
            connection,
            body: Body::SessionInit(&message),
        }
        .encode()
        .map_err(|_| SessionError::Internal)?;
        Ok((
            Self {
                connection,
                machine: *machine,
                state: Some(state),
            },
            packet,
        ))
    }

    /// The connection id of this attempt.
    pub fn connection_id(&self) -> ConnectionId {
        self.connection
    }

    /// Take the machine's session-response. [`SessionError::Packet`], [`SessionError::Stale`],
    /// [`SessionError::UnexpectedKind`] and [`SessionError::ResponseRejected`] mean the packet
    /// was not this handshake's answer (or was forged or damaged): nothing changed, keep
    /// waiting — a packet that does not authenticate cannot end the attempt. Any other error
    /// ends it.
    pub fn finish(&mut self, response: &[u8]) -> Result<Channel, SessionError> {
        let Some(state) = self.state.as_mut() else {
            return Err(SessionError::Ended);
        };
        let packet = packet::decode(response)?;
        let message = match packet.body {
            _ if packet.connection != self.connection => {
                return Err(SessionError::Stale {
                    expected: self.connection,
                    received: packet.connection,
                });
            }
            Body::SessionResponse(message) => message,
            other => return Err(SessionError::UnexpectedKind(other.kind())),
        };
        // snow restores the handshake state when a message fails to authenticate, so a forged
        // answer leaves the state ready for the real one.
        let payload = handshake::read(state, message).map_err(|failure| match failure {
            Failure::Rejected => SessionError::ResponseRejected,
            Failure::Internal => SessionError::Internal,
        })?;
        let Some(state) = self.state.take() else {
            return Err(SessionError::Ended);
        };
        if !payload.is_empty() {
            return Err(SessionError::UnexpectedPayload);
        }
        let (hash, transport) = handshake::split(state).map_err(internal)?;
        Ok(Channel::new(self.connection, hash, transport, self.machine))
    }
}

impl fmt::Debug for Initiator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Initiator")
            .field("connection", &self.connection)
            .field("machine", &self.machine.fingerprint())
            .field("waiting", &self.state.is_some())
            .finish_non_exhaustive()
    }
}

/// The machine's side: answer a session-init from one of `paired_devices`.
///
/// Returns the channel (its [`peer`](Channel::peer) is the device that called) and the
/// session-response packet to send back. The request is tried against each paired device's
/// Noise key (two X25519 operations each), so when the relay tells who sent it, pass just that
/// device; passing all of them is equally safe. A request from any other key is
/// [`SessionError::UnknownDevice`].
pub fn respond<'a, R, I>(
    local: &Identity,
    paired_devices: I,
    init: &[u8],
    rng: &mut R,
) -> Result<(Channel, Vec<u8>), SessionError>
where
    R: CryptoRng + ?Sized,
    I: IntoIterator<Item = &'a PublicIdentity>,
{
    let packet = packet::decode(init)?;
    let Body::SessionInit(message) = packet.body else {
        return Err(SessionError::UnexpectedKind(packet.kind()));
    };
    for device in paired_devices {
        let setup = Setup {
            pattern: SESSION_PATTERN,
            prologue_label: SESSION_PROLOGUE,
            connection: packet.connection,
            local_static: local.noise_secret(),
            remote_static: Some(&device.noise),
            psk: None,
            initiator: false,
        };
        let mut state = handshake::build(&setup, rng).map_err(internal)?;
        let payload = match handshake::read(&mut state, message) {
            Ok(payload) => payload,
            Err(Failure::Rejected) => continue,
            Err(Failure::Internal) => return Err(SessionError::Internal),
        };
        if !payload.is_empty() {
            return Err(SessionError::UnexpectedPayload);
        }
        let message = handshake::write(&mut state, &[]).map_err(internal)?;
        let (hash, transport) = handshake::split(state).map_err(internal)?;
        let response = Packet {
            connection: packet.connection,
            body: Body::SessionResponse(&message),
        }
        .encode()
        .map_err(|_| SessionError::Internal)?;
        return Ok((
            Channel::new(packet.connection, hash, transport, *device),
            response,
        ));
    }
    Err(SessionError::UnknownDevice)
}

fn internal(_: Failure) -> SessionError {
    SessionError::Internal
}

/// Why a session handshake step failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// The bytes are not a valid packet; ignored.
    Packet(PacketError),
    /// The packet belongs to another connection; ignored.
    Stale {
        /// This attempt's connection.
        expected: ConnectionId,
        /// The packet's connection.
        received: ConnectionId,
    },
    /// The packet is not the kind this step takes; ignored.
    UnexpectedKind(Kind),
    /// Machine: the request was not made by any of the paired devices (or was damaged).
    UnknownDevice,
    /// Device: the answer failed authentication (not made by the paired machine's key for this
    /// request: forged or damaged); ignored, the attempt goes on.
    ResponseRejected,
    /// The handshake carried a payload this version does not send.
    UnexpectedPayload,
    /// Device: this attempt already ended; start a new one.
    Ended,
    /// The Noise library failed in a way that indicates a bug here.
    Internal,
}

impl From<PacketError> for SessionError {
    fn from(error: PacketError) -> Self {
        SessionError::Packet(error)
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Packet(error) => write!(f, "malformed session packet: {error}"),
            SessionError::Stale { expected, received } => write!(
                f,
                "packet of connection {received} arrived for connection {expected}; ignored"
            ),
            SessionError::UnexpectedKind(kind) => {
                write!(
                    f,
                    "a {kind} packet is not expected at this step of the handshake"
                )
            }
            SessionError::UnknownDevice => {
                f.write_str("the connection request is not from a paired device")
            }
            SessionError::ResponseRejected => f.write_str(
                "an answer to the connection request failed authentication (forged or damaged, \
                 not from the paired machine); ignored",
            ),
            SessionError::UnexpectedPayload => {
                f.write_str("the session handshake carried an unexpected payload")
            }
            SessionError::Ended => {
                f.write_str("this connection attempt already ended; start a new one")
            }
            SessionError::Internal => f.write_str("internal error in the session handshake"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for SessionError {}
