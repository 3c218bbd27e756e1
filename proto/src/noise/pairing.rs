//! Pairing: the first meeting of a device and a machine, through the relay, authenticated by the
//! ticket the machine printed (`Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s`).
//!
//! ```text
//! device (initiator)                                      machine (responder)
//! DevicePairing::start(ticket) ── pairing-init ─────────► MachinePairing::respond
//!   -> e, es, s, ss          (payload empty)                checks: msg 1 is for its Noise key
//! DevicePairing::finish     ◄── pairing-response ──────────
//!   <- e, ee, se, psk        (payload: machine proof)
//!   checks: PSK, machine Noise key, fingerprint, proof
//!                          ── pairing-confirm ──────────► MachinePairing::confirm
//!   transport message 0      (payload: device proof)        checks: PSK, device proof
//! ```
//!
//! A proof is the signer's Ed25519 public key (32 bytes) followed by its signature (64 bytes) in
//! [`SignDomain::PairingProof`] over a role label and a handshake hash:
//!
//! - machine: `"machine\0" ‖ h₁`, where h₁ is the handshake hash after message 1. It commits to
//!   the prologue (with the connection id), the machine's static key, the device's fresh
//!   ephemeral and its encrypted static, so the signature is good for this handshake only. It
//!   cannot cover message 2, which carries it; message 2's own authentication (keys from
//!   `es`, `ss`, `ee`, `se` and the PSK) binds the rest.
//! - device: `"device\0" ‖ h`, where h is the final handshake hash ([`Channel::handshake_hash`]).
//!
//! The device then requires `PublicIdentity { signing, noise: ticket key }.fingerprint()` to
//! equal the ticket's fingerprint, so a machine holding the ticket's Noise key but another
//! signing key (or the reverse) fails. The machine learns the device's full [`PublicIdentity`]:
//! its Noise key from the handshake, its signing key from the proof. The role labels keep one
//! side's proof from ever passing as the other's.
//!
//! In IKpsk2 the PSK enters at the end of message 2, so message 1 alone proves nothing about
//! the secret: the machine knows the device holds it only when the confirmation decrypts. Until
//! then nothing is paired; the machine's signing key travels only inside message 2, readable only
//! with the secret. Anyone who can reach the machine's pairing id can make it answer; a bad
//! request changes nothing, and a newer request replaces an unconfirmed one.
//!
//! # Errors and waiting
//!
//! [`PairingError::Packet`], [`PairingError::Stale`], [`PairingError::UnexpectedKind`],
//! [`PairingError::NoPendingRequest`] and [`PairingError::Replayed`] mean the packet was not for
//! this step: nothing changed,
//! keep waiting. A packet that fails authentication changes nothing either (WireGuard's rule:
//! whoever can inject packets must not be able to end a handshake): after
//! [`PairingError::ResponseRejected`] the device's attempt still takes the real answer, and
//! after [`PairingError::ConfirmRejected`] the machine's pending request still takes the real
//! confirmation. Any other error from [`DevicePairing::finish`] — the answer authenticated but
//! its contents are wrong — ends that attempt (start a new one with the same ticket while it is
//! valid); from [`MachinePairing::respond`] it refuses that one request; from
//! [`MachinePairing::confirm`] it ends the pending attempt and the machine waits for a new
//! request. After a successful [`MachinePairing::confirm`] the secret is wiped and every further
//! call fails with [`PairingError::AlreadyUsed`].

use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRng;
use snow::HandshakeState;

use super::channel::Channel;
use super::handshake::{self, Failure, PAIRING_PATTERN, PAIRING_PROLOGUE, Setup};
use super::packet::{self, Body, ConnectionId, Kind, Packet, PacketError};
use super::{HANDSHAKE_HASH_LEN, clone_identity};
use crate::Bytes64;
use crate::identity::{Fingerprint, Identity, PublicIdentity, SignDomain, Signature};
use crate::ticket::{PairingSecret, Ticket};

/// Position of the PSK in `IKpsk2`.
const PSK_POSITION: u8 = 2;
/// Signing public key ‖ signature.
const PROOF_LEN: usize = 32 + 64;
const MACHINE_ROLE: &[u8] = b"machine\0";
const DEVICE_ROLE: &[u8] = b"device\0";

/// The device's side of pairing.
pub struct DevicePairing {
    connection: ConnectionId,
    /// `None` once the attempt ended.
    waiting: Option<DeviceWaiting>,
    #[cfg(test)]
    pub(crate) corrupt_proof: bool,
}

struct DeviceWaiting {
    handshake: HandshakeState,
    identity: Identity,
    machine_fingerprint: Fingerprint,
    machine_noise: [u8; 32],
    request_hash: [u8; HANDSHAKE_HASH_LEN],
}

impl DevicePairing {
    /// Start pairing with the machine named by `ticket` (already decoded and checked for
    /// expiry). Returns the state to keep and the pairing-init packet to send.
    pub fn start<R: CryptoRng + ?Sized>(
        local: &Identity,
        ticket: &Ticket,
        rng: &mut R,
    ) -> Result<(Self, Vec<u8>), PairingError> {
        let connection = ConnectionId::generate(rng);
        let setup = Setup {
            pattern: PAIRING_PATTERN,
            prologue_label: PAIRING_PROLOGUE,
            connection,
            local_static: local.noise_secret(),
            remote_static: Some(&ticket.machine_noise),
            psk: Some((PSK_POSITION, &ticket.secret.0)),
            initiator: true,
        };
        let mut state = handshake::build(&setup, rng).map_err(internal)?;
        let message = handshake::write(&mut state, &[]).map_err(internal)?;
        let request_hash = handshake::hash(&state).map_err(internal)?;
        let packet = Packet {
            connection,
            body: Body::PairingInit(&message),
        }
        .encode()
        .map_err(|_| PairingError::Internal)?;
        let waiting = DeviceWaiting {
            handshake: state,
            identity: clone_identity(local),
            machine_fingerprint: ticket.machine,
            machine_noise: ticket.machine_noise,
            request_hash,
        };
        Ok((
            Self {
                connection,
                waiting: Some(waiting),
                #[cfg(test)]
                corrupt_proof: false,
            },
            packet,
        ))
    }

    /// The connection id of this attempt.
    pub fn connection_id(&self) -> ConnectionId {
        self.connection
    }

    /// Take the machine's pairing-response. On success the machine is authenticated: the
    /// returned channel's [`peer`](Channel::peer) is its [`PublicIdentity`], whose fingerprint
    /// is the ticket's. Send the returned pairing-confirm packet next (before any message on
    /// the channel): the machine accepts the pairing only when it has it.
    pub fn finish(&mut self, response: &[u8]) -> Result<(Channel, Vec<u8>), PairingError> {
        let Some(waiting) = self.waiting.as_mut() else {
            return Err(PairingError::Ended);
        };
        let packet = packet::decode(response)?;
        let message = match packet.body {
            _ if packet.connection != self.connection => {
                return Err(PairingError::Stale {
                    expected: self.connection,
                    received: packet.connection,
                });
            }
            Body::PairingResponse(message) => message,
            other => return Err(PairingError::UnexpectedKind(other.kind())),
        };
        // snow restores the handshake state when a message fails to authenticate: a forged or
        // damaged answer leaves the attempt waiting for the real one.
        let payload =
            handshake::read(&mut waiting.handshake, message).map_err(|failure| match failure {
                Failure::Rejected => PairingError::ResponseRejected,
                Failure::Internal => PairingError::Internal,
            })?;
        // Authentic (it needed the ticket's secret): from here any failure ends the attempt.
        let Some(waiting) = self.waiting.take() else {
            return Err(PairingError::Ended);
        };
        let (signing, signature) = decode_proof(&payload)?;
        let machine = PublicIdentity {
            signing,
            noise: waiting.machine_noise,
        };
        let found = machine.fingerprint();
        if found != waiting.machine_fingerprint {
            return Err(PairingError::FingerprintMismatch {
                expected: waiting.machine_fingerprint,
                found,
            });
        }
        machine
            .verify(
                SignDomain::PairingProof,
                &proof_message(MACHINE_ROLE, &waiting.request_hash),
                &signature,
            )
            .map_err(|_| PairingError::BadProof)?;
        let (hash, transport) = handshake::split(waiting.handshake).map_err(internal)?;
        let mut channel = Channel::new(self.connection, hash, transport, machine);
        #[cfg(test)]
        let corrupt = self.corrupt_proof;
        #[cfg(not(test))]
        let corrupt = false;
        let proof = encode_proof(&waiting.identity, DEVICE_ROLE, &hash, corrupt);
        let confirm = channel
            .seal(Kind::PairingConfirm, &proof)
            .map_err(|_| PairingError::Internal)?;
        Ok((channel, confirm))
    }
}

impl fmt::Debug for DevicePairing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevicePairing")
            .field("connection", &self.connection)
            .field("waiting", &self.waiting.is_some())
            .finish_non_exhaustive()
    }
}

/// The machine's side of pairing: one ticket's secret, accepted once.
pub struct MachinePairing {
    identity: Identity,
    /// `None` once a device paired: the ticket is spent.
    secret: Option<PairingSecret>,
    /// The latest request answered but not yet confirmed: a channel whose peer signing key is
    /// not known yet.
    pending: Option<Channel>,
    #[cfg(test)]
    pub(crate) corrupt_proof: bool,
}

impl MachinePairing {
    /// Wait for a device holding the ticket made with `secret` (and this machine's keys).
    pub fn new(local: &Identity, secret: PairingSecret) -> Self {
        Self {
            identity: clone_identity(local),
            secret: Some(secret),
            pending: None,
            #[cfg(test)]
            corrupt_proof: false,
        }
    }

    /// Answer a device's pairing-init; returns the pairing-response packet to send back. The
    /// answer carries this machine's proof, readable only with the ticket's secret. A newer
    /// request replaces an unconfirmed older one; a refused request changes nothing.
    pub fn respond<R: CryptoRng + ?Sized>(
        &mut self,
        init: &[u8],
        rng: &mut R,
    ) -> Result<Vec<u8>, PairingError> {
        let secret = self.secret.as_ref().ok_or(PairingError::AlreadyUsed)?;
        let packet = packet::decode(init)?;
        let Body::PairingInit(message) = packet.body else {
            return Err(PairingError::UnexpectedKind(packet.kind()));
        };
        // A device picks a fresh connection id for every attempt: the pending request's id
        // again is a replay. Answering it would replace the pending request with one the device
        // cannot confirm (the answer has new ephemeral keys), so it is ignored.
        if let Some(pending) = &self.pending
            && pending.connection_id() == packet.connection
        {
            return Err(PairingError::Replayed);
        }
        let setup = Setup {
            pattern: PAIRING_PATTERN,
            prologue_label: PAIRING_PROLOGUE,
            connection: packet.connection,
            local_static: self.identity.noise_secret(),
            remote_static: None,
            psk: Some((PSK_POSITION, &secret.0)),
            initiator: false,
        };
        let mut state = handshake::build(&setup, rng).map_err(internal)?;
        let payload = handshake::read(&mut state, message).map_err(|failure| match failure {
            Failure::Rejected => PairingError::RequestRejected,
            Failure::Internal => PairingError::Internal,
        })?;
        if !payload.is_empty() {
            return Err(PairingError::MalformedPayload);
        }
        let device_noise = handshake::remote_static(&state).map_err(internal)?;
        let request_hash = handshake::hash(&state).map_err(internal)?;
        #[cfg(test)]
        let corrupt = self.corrupt_proof;
        #[cfg(not(test))]
        let corrupt = false;
        let proof = encode_proof(&self.identity, MACHINE_ROLE, &request_hash, corrupt);
        let message = handshake::write(&mut state, &proof).map_err(internal)?;
        let (hash, transport) = handshake::split(state).map_err(internal)?;
        let response = Packet {
            connection: packet.connection,
            body: Body::PairingResponse(&message),
        }
        .encode()
        .map_err(|_| PairingError::Internal)?;
        // The device's signing key is learned from its confirmation.
        let device = PublicIdentity {
            signing: [0u8; 32],
            noise: device_noise,
        };
        self.pending = Some(Channel::new(packet.connection, hash, transport, device));
        Ok(response)
    }

    /// Take the device's pairing-confirm. On success the device proved it holds the ticket's
    /// secret, its Noise key and the signing key it names: the returned channel's
    /// [`peer`](Channel::peer) is its [`PublicIdentity`]. The ticket is spent.
    pub fn confirm(&mut self, confirm: &[u8]) -> Result<Channel, PairingError> {
        if self.secret.is_none() {
            return Err(PairingError::AlreadyUsed);
        }
        let packet = packet::decode(confirm)?;
        let pending = self
            .pending
            .as_mut()
            .ok_or(PairingError::NoPendingRequest)?;
        if packet.connection != pending.connection_id() {
            return Err(PairingError::Stale {
                expected: pending.connection_id(),
                received: packet.connection,
            });
        }
        if packet.kind() != Kind::PairingConfirm {
            return Err(PairingError::UnexpectedKind(packet.kind()));
        }
        // A confirmation that does not authenticate changes nothing: the request stays pending
        // for the real one.
        let proof = match pending.open(&packet, Kind::PairingConfirm) {
            Ok(proof) => proof,
            Err(error) => {
                if error.poisons() {
                    self.pending = None;
                }
                return Err(PairingError::ConfirmRejected);
            }
        };
        // Authentic: from here any failure ends the pending request.
        let Some(mut channel) = self.pending.take() else {
            return Err(PairingError::NoPendingRequest);
        };
        let (signing, signature) = decode_proof(&proof)?;
        let device = PublicIdentity {
            signing,
            noise: channel.peer().noise,
        };
        device
            .verify(
                SignDomain::PairingProof,
                &proof_message(DEVICE_ROLE, channel.handshake_hash()),
                &signature,
            )
            .map_err(|_| PairingError::BadProof)?;
        channel.set_peer(device);
        self.secret = None;
        Ok(channel)
    }

    /// Whether a device has paired with this ticket.
    pub fn is_used(&self) -> bool {
        self.secret.is_none()
    }
}

impl fmt::Debug for MachinePairing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MachinePairing")
            .field("used", &self.secret.is_none())
            .field(
                "pending",
                &self.pending.as_ref().map(Channel::connection_id),
            )
            .finish_non_exhaustive()
    }
}

fn internal(_: Failure) -> PairingError {
    PairingError::Internal
}

fn proof_message(role: &[u8], hash: &[u8; HANDSHAKE_HASH_LEN]) -> Vec<u8> {
    let mut message = Vec::with_capacity(role.len() + hash.len());
    message.extend_from_slice(role);
    message.extend_from_slice(hash);
    message
}

fn encode_proof(
    identity: &Identity,
    role: &[u8],
    hash: &[u8; HANDSHAKE_HASH_LEN],
    corrupt: bool,
) -> [u8; PROOF_LEN] {
    let Signature(Bytes64(mut signature)) =
        identity.sign(SignDomain::PairingProof, &proof_message(role, hash));
    if corrupt {
        signature[0] ^= 1;
    }
    let mut proof = [0u8; PROOF_LEN];
    proof[..32].copy_from_slice(&identity.public().signing);
    proof[32..].copy_from_slice(&signature);
    proof
}

fn decode_proof(payload: &[u8]) -> Result<([u8; 32], Signature), PairingError> {
    let proof: &[u8; PROOF_LEN] = payload
        .try_into()
        .map_err(|_| PairingError::MalformedPayload)?;
    let (signing, signature) = proof.split_at(32);
    let signing = signing
        .try_into()
        .map_err(|_| PairingError::MalformedPayload)?;
    let signature = signature
        .try_into()
        .map_err(|_| PairingError::MalformedPayload)?;
    Ok((signing, Signature(Bytes64(signature))))
}

/// Why a pairing step failed. See the [module docs](self) for which errors end an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairingError {
    /// The bytes are not a valid packet; ignored.
    Packet(PacketError),
    /// The packet belongs to another pairing attempt; ignored.
    Stale {
        /// This attempt's connection.
        expected: ConnectionId,
        /// The packet's connection.
        received: ConnectionId,
    },
    /// The packet is not the kind this step takes; ignored.
    UnexpectedKind(Kind),
    /// Machine: a confirmation arrived before any request was answered; ignored.
    NoPendingRequest,
    /// Machine: the request is not a pairing handshake for this machine's Noise key.
    RequestRejected,
    /// Device: the machine's answer failed authentication (a wrong or damaged ticket, or a
    /// forged answer); the attempt still takes a genuine one.
    ResponseRejected,
    /// Machine: the confirmation failed authentication; the pending request still takes a
    /// genuine one.
    ConfirmRejected,
    /// A handshake payload is not what this version sends.
    MalformedPayload,
    /// Device: the machine's keys do not match the ticket's fingerprint.
    FingerprintMismatch {
        /// The fingerprint in the ticket.
        expected: Fingerprint,
        /// The fingerprint of the keys the machine showed.
        found: Fingerprint,
    },
    /// The peer's signature over the handshake does not verify.
    BadProof,
    /// Machine: a request with the pending request's connection id, a replay; ignored.
    Replayed,
    /// Machine: a device already paired with this ticket.
    AlreadyUsed,
    /// Device: this attempt already ended; start a new one.
    Ended,
    /// The Noise library failed in a way that indicates a bug here.
    Internal,
}

impl From<PacketError> for PairingError {
    fn from(error: PacketError) -> Self {
        PairingError::Packet(error)
    }
}

impl fmt::Display for PairingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PairingError::Packet(error) => write!(f, "malformed pairing packet: {error}"),
            PairingError::Stale { expected, received } => write!(
                f,
                "packet of pairing attempt {received} arrived for attempt {expected}; ignored"
            ),
            PairingError::UnexpectedKind(kind) => {
                write!(f, "a {kind} packet is not expected at this step of pairing")
            }
            PairingError::NoPendingRequest => {
                f.write_str("pairing confirmation without a pairing request; ignored")
            }
            PairingError::RequestRejected => f.write_str(
                "the pairing request was not made for this machine's key \
                 (a ticket from another machine, or a damaged request)",
            ),
            PairingError::ResponseRejected => f.write_str(
                "the machine's answer failed authentication: the pairing secret is wrong, or \
                 the machine does not hold the key in the ticket",
            ),
            PairingError::ConfirmRejected => f.write_str(
                "the device's confirmation failed authentication: it does not hold the \
                 pairing secret",
            ),
            PairingError::MalformedPayload => {
                f.write_str("the pairing handshake carried an unexpected payload")
            }
            PairingError::FingerprintMismatch { expected, found } => write!(
                f,
                "the machine's keys (fingerprint {found}) do not match the pairing ticket \
                 (fingerprint {expected}): this is not the machine that printed the ticket"
            ),
            PairingError::BadProof => f.write_str(
                "the peer's signature over the pairing handshake does not verify: it does not \
                 hold the signing key it names",
            ),
            PairingError::Replayed => {
                f.write_str("a replayed pairing request (its attempt is pending); ignored")
            }
            PairingError::AlreadyUsed => {
                f.write_str("this pairing ticket was already used; make a new one")
            }
            PairingError::Ended => {
                f.write_str("this pairing attempt already ended; start a new one")
            }
            PairingError::Internal => f.write_str("internal error in the pairing handshake"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for PairingError {}
