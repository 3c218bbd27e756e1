//! Frames between a client (device, machine, pending machine) and the relay: one frame per
//! WebSocket binary message, encoded as [`envelope`](crate::envelope) `kind ‖ postcard body`.
//!
//! The relay sees only these frames. Everything between a device and a machine travels inside
//! `payload` bytes the relay cannot read (the [`noise`](crate::noise) channel).
//!
//! A connection goes: relay → [`ServerHello`] (versions + challenge), client → [`Login`] (signed
//! challenge), relay → [`LoginOk`] or [`Error`]; then any of the routed or registry frames.
//! Devices learn which machines are online from [`Presence`], machines which devices are from
//! [`DevicePresence`]. A receiver skips frame kinds it does not know (an older client sees a
//! newer relay's additions as [`Decoded::Unknown`](crate::envelope::Decoded::Unknown)).
//!
//! Authority within an account (who may reach, revoke or promote whom) is the registry's:
//! [`RegistryEntry`] says what each entry may do. A device asks for its account's devices with
//! [`DevicesQuery`] ([`DeviceList`]); a machine is told which devices may reach it with
//! [`AllowedDevices`].

use core::fmt;

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::envelope::{Body, wire_enum};
use crate::identity::{
    Fingerprint, Identity, PublicIdentity, SignDomain, Signature, SignatureError,
};
use crate::limits::{
    MAX_FRAME_LEN, MAX_HOSTNAME_LEN, MAX_PAYLOAD_LEN, MAX_PUSH_BODY_LEN, MAX_PUSH_ENDPOINT_LEN,
    MAX_REASON_LEN, MAX_REGISTRY_ENTRY_LEN, PROTOCOL_VERSION, PUSH_TOPIC_LEN, PUSH_VAPID_KEY_LEN,
    RELAY_MAX_DEVICES_PER_ACCOUNT, RELAY_MAX_MACHINES_PER_ACCOUNT,
    RELAY_TRACKED_CHANNELS_PER_CONNECTION,
};
use crate::noise::ConnectionId;

/// A machine's hostname as it announces it.
pub type Hostname = heapless::String<MAX_HOSTNAME_LEN>;

/// A human-readable reason in an error frame.
pub type Reason = heapless::String<MAX_REASON_LEN>;

/// The one-time name under which a pending machine waits for a device on the relay.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PairingId(pub [u8; 16]);

impl fmt::Debug for PairingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PairingId(")?;
        for byte in &self.0[..4] {
            write!(f, "{byte:02x}")?;
        }
        f.write_str("…)")
    }
}

/// What a client is to the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// A controller: the phone's web app or `muxagent ctl`.
    Device,
    /// A paired machine running the daemon.
    Machine,
    /// A machine that is not paired yet: it may only open a pairing id and answer on it.
    PendingMachine,
}

/// Relay → client, first frame on every connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerHello {
    /// Oldest protocol version the relay accepts.
    pub min_protocol: u16,
    /// Newest protocol version the relay speaks.
    pub max_protocol: u16,
    /// Random bytes the client signs to log in; fresh per connection.
    pub challenge: [u8; 32],
}
impl Body for ServerHello {
    fn validate(&self) -> Result<(), &'static str> {
        if self.min_protocol > self.max_protocol {
            return Err("min_protocol is above max_protocol");
        }
        Ok(())
    }
}

/// Client → relay: proof of the client's key, answering [`ServerHello::challenge`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    /// The protocol version the client chose from the relay's range.
    pub protocol: u16,
    /// What the client logs in as.
    pub role: Role,
    /// The client's public keys.
    pub identity: PublicIdentity,
    /// A machine's hostname (machines and pending machines only).
    pub hostname: Option<Hostname>,
    /// `identity` signing [`Login::signed_message`] in [`SignDomain::RelayLogin`].
    pub signature: Signature,
}
impl Body for Login {
    fn validate(&self) -> Result<(), &'static str> {
        match (self.role, &self.hostname) {
            (Role::Device, Some(_)) => Err("a device has no hostname"),
            (Role::Machine | Role::PendingMachine, None) => Err("a machine must name its host"),
            (Role::Machine | Role::PendingMachine, Some(host)) => validate_hostname(host),
            (Role::Device, None) => Ok(()),
        }
    }
}

impl Login {
    /// Build a signed login for `challenge`.
    pub fn sign(
        identity: &Identity,
        challenge: &[u8; 32],
        role: Role,
        hostname: Option<Hostname>,
    ) -> Self {
        let public = identity.public();
        let message = Self::signed_message(challenge, PROTOCOL_VERSION, role, &public, &hostname);
        Login {
            protocol: PROTOCOL_VERSION,
            role,
            identity: public,
            hostname,
            signature: identity.sign(SignDomain::RelayLogin, &message),
        }
    }

    /// Check the signature against the challenge this connection was sent.
    pub fn verify(&self, challenge: &[u8; 32]) -> Result<(), SignatureError> {
        let message = Self::signed_message(
            challenge,
            self.protocol,
            self.role,
            &self.identity,
            &self.hostname,
        );
        self.identity
            .verify(SignDomain::RelayLogin, &message, &self.signature)
    }

    /// What a login signs: the challenge, then every other field in a fixed layout.
    fn signed_message(
        challenge: &[u8; 32],
        protocol: u16,
        role: Role,
        identity: &PublicIdentity,
        hostname: &Option<Hostname>,
    ) -> Vec<u8> {
        let host = hostname.as_ref().map_or("", |host| host.as_str());
        let mut message = Vec::with_capacity(32 + 2 + 1 + 64 + 1 + host.len());
        message.extend_from_slice(challenge);
        message.extend_from_slice(&protocol.to_be_bytes());
        message.push(match role {
            Role::Device => 0,
            Role::Machine => 1,
            Role::PendingMachine => 2,
        });
        message.extend_from_slice(&identity.signing);
        message.extend_from_slice(&identity.noise);
        // Hostnames are at most MAX_HOSTNAME_LEN (< 256) bytes: one length byte suffices.
        message.push(host.len() as u8);
        message.extend_from_slice(host.as_bytes());
        message
    }
}

/// Relay → client: the login was accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginOk {
    /// The protocol version in use on this connection.
    pub protocol: u16,
    /// The account this key belongs to, if any (a new device, a pending machine: none).
    pub account: Option<Fingerprint>,
}
impl Body for LoginOk {}

/// Pending machine → relay: wait for a device under this one-time id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenPairing {
    /// Random id, also carried in the pairing ticket.
    pub pairing_id: PairingId,
    /// Unix seconds after which the id is void; the relay caps it at its own TTL.
    pub expires_at: u64,
}
impl Body for OpenPairing {}

/// Relay → pending machine: the pairing id is registered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairingOpened {
    /// The id now registered.
    pub pairing_id: PairingId,
    /// When the relay will forget it (Unix seconds).
    pub expires_at: u64,
}
impl Body for PairingOpened {}

/// Device ↔ pending machine, through the relay, by pairing id only. The first device to send on
/// an id claims it; the relay then forwards the machine's answers to that device alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairSend {
    /// The pairing id from the ticket.
    pub pairing_id: PairingId,
    /// An opaque channel packet.
    #[serde(with = "crate::byte_vec")]
    pub payload: Vec<u8>,
}
impl Body for PairSend {
    fn validate(&self) -> Result<(), &'static str> {
        validate_payload(&self.payload)
    }
    fn size_hint(&self) -> usize {
        self.payload.len()
    }
}

/// Relay → device or pending machine: a [`PairSend`] from the other side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairRecv {
    /// The pairing id it was sent on.
    pub pairing_id: PairingId,
    /// The sender's fingerprint as authenticated by its login.
    pub from: Fingerprint,
    /// The opaque channel packet.
    #[serde(with = "crate::byte_vec")]
    pub payload: Vec<u8>,
}
impl Body for PairRecv {
    fn validate(&self) -> Result<(), &'static str> {
        validate_payload(&self.payload)
    }
    fn size_hint(&self) -> usize {
        self.payload.len()
    }
}

/// Client → relay: deliver `payload` to `to`: from a device, a machine it may reach (one it
/// paired with, or any of its account's if it is an owner); from a machine, a device that may
/// reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Send {
    /// The receiver.
    pub to: Fingerprint,
    /// An opaque channel packet.
    #[serde(with = "crate::byte_vec")]
    pub payload: Vec<u8>,
}
impl Body for Send {
    fn validate(&self) -> Result<(), &'static str> {
        validate_payload(&self.payload)
    }
    fn size_hint(&self) -> usize {
        self.payload.len()
    }
}

/// Relay → client: a [`Send`] from `from`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recv {
    /// The sender as authenticated by its login.
    pub from: Fingerprint,
    /// The opaque channel packet.
    #[serde(with = "crate::byte_vec")]
    pub payload: Vec<u8>,
}
impl Body for Recv {
    fn validate(&self) -> Result<(), &'static str> {
        validate_payload(&self.payload)
    }
    fn size_hint(&self) -> usize {
        self.payload.len()
    }
}

/// Client → relay: append a signed entry to the registry (register or revoke a machine, revoke
/// a device or make it an owner, from a device; unpair from a machine).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    /// Echoed in the [`RegistryAck`] or [`Error`].
    pub request: u32,
    /// The signed entry.
    pub entry: SignedEntry,
}
impl Body for Registry {
    fn validate(&self) -> Result<(), &'static str> {
        self.entry.validate_shape()
    }
}

/// Relay → client: the registry entry is durable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryAck {
    /// The [`Registry::request`] this answers.
    pub request: u32,
}
impl Body for RegistryAck {}

/// Relay → device: a machine the device may reach came online or went offline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// The machine.
    pub machine: Fingerprint,
    /// Its hostname as it announced it at login.
    pub hostname: Hostname,
    /// Whether it is connected now.
    pub online: bool,
}
impl Body for Presence {
    fn validate(&self) -> Result<(), &'static str> {
        validate_hostname(&self.hostname)
    }
}

/// The channels a [`DevicePresence`] says ended: at most
/// [`RELAY_TRACKED_CHANNELS_PER_CONNECTION`] (checked when decoded). A `Vec` rather than a
/// fixed array so the frame enum stays small for every other kind.
pub type ClosedChannels = Vec<ConnectionId>;

/// Relay → machine: a device that may reach the machine came online (its first live
/// connection) or went offline (its last one closed), or one of its connections closed while
/// others stay.
///
/// A device may hold several relay connections at once (tabs, `ctl watch` beside `ctl
/// approve`), each with its own end-to-end channel to the machine, and the relay fans what the
/// machine sends the device out to all of them. `closed` names the machine's channels that
/// ended with a connection, by the connection id the device put in their handshakes (the relay
/// reads only that routing label), so the machine can drop them and what they subscribed to.
/// Sent when the first connection comes up (`online`, nothing closed), when a connection that
/// opened channels to this machine closes while others stay (`online`, `closed`), when the last
/// one closes (`!online`: every channel of the device is gone), and after a machine's
/// [`LoginOk`] for each device that may reach it and is online.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePresence {
    /// The device.
    pub device: Fingerprint,
    /// Whether it has a live connection now.
    pub online: bool,
    /// The machine's channels with the device that ended with a connection.
    pub closed: ClosedChannels,
}
impl Body for DevicePresence {
    fn validate(&self) -> Result<(), &'static str> {
        if self.closed.len() > RELAY_TRACKED_CHANNELS_PER_CONNECTION {
            return Err("more closed channels than a relay tracks per connection");
        }
        Ok(())
    }
}

/// A Web Push subscription endpoint (RFC 8030): the `https` URL the browser's push service gave
/// the device. Only the relay sees it; the keys that decrypt what is pushed to it travel to the
/// device's machines inside the end-to-end channel ([`SetPush`](crate::app::SetPush)).
pub type PushEndpoint = String;

fn validate_push_endpoint(endpoint: &str) -> Result<(), &'static str> {
    if endpoint.len() > MAX_PUSH_ENDPOINT_LEN {
        return Err("push endpoint too long");
    }
    if endpoint.chars().any(|c| c.is_control() || c == ' ') {
        return Err("push endpoint holds spaces or control characters");
    }
    Ok(())
}

/// Device → relay: set (`Some`) or remove (`None`) this device's push subscription. A device
/// has at most one; a new one replaces the old. Authenticated by the connection's login, as
/// every frame is. The relay answers with [`PushState`]. Which origins the relay will POST to
/// is the relay's policy (it refuses the rest with `Error{NotAllowed}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushSubscribe {
    /// Request number, echoed in the answer.
    pub request: u32,
    /// The subscription's endpoint, or none to unsubscribe.
    pub endpoint: Option<PushEndpoint>,
}
impl Body for PushSubscribe {
    fn validate(&self) -> Result<(), &'static str> {
        match &self.endpoint {
            Some(endpoint) => validate_push_endpoint(endpoint),
            None => Ok(()),
        }
    }
}

/// Device → relay: what push key does the relay sign with, and what subscription does it hold
/// for this device? Answered with [`PushState`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushQuery {
    /// Request number, echoed in the answer.
    pub request: u32,
}
impl Body for PushQuery {}

/// Relay → device: the answer to [`PushSubscribe`] and [`PushQuery`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushState {
    /// The request this answers.
    pub request: u32,
    /// The relay's VAPID public key (RFC 8292): an uncompressed P-256 point,
    /// [`PUSH_VAPID_KEY_LEN`] bytes. The browser subscribes with it as `applicationServerKey`.
    pub vapid_public_key: Vec<u8>,
    /// The subscription the relay holds for this device now.
    pub endpoint: Option<PushEndpoint>,
}
impl Body for PushState {
    fn validate(&self) -> Result<(), &'static str> {
        if self.vapid_public_key.len() != PUSH_VAPID_KEY_LEN {
            return Err("a VAPID public key is an uncompressed P-256 point");
        }
        match &self.endpoint {
            Some(endpoint) => validate_push_endpoint(endpoint),
            None => Ok(()),
        }
    }
}

/// How soon the push service should deliver (RFC 8030 `Urgency`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PushUrgency {
    /// `normal`.
    Normal,
    /// `high`: someone is waiting on it (an approval).
    High,
}

/// Machine → relay: push `body` to `device`'s subscription. The body is already encrypted by
/// the machine for the device's subscription keys (RFC 8291 `aes128gcm`); the relay adds only
/// its VAPID authorization and the headers below, and POSTs it. Nothing comes back on success:
/// a device without a subscription, or one that may not reach the machine, gets
/// `Error{NotAllowed}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Push {
    /// The device whose subscription receives it.
    pub device: Fingerprint,
    /// RFC 8030 `Urgency`.
    pub urgency: PushUrgency,
    /// RFC 8030 `Topic`: a newer push with the same topic replaces an undelivered older one at
    /// the push service. Opaque bytes (the relay sends them base64url-encoded, 22 characters);
    /// a machine derives them so they reveal nothing (a keyed hash of the session).
    pub topic: Option<[u8; PUSH_TOPIC_LEN]>,
    /// RFC 8030 `TTL`, seconds: how long the push service keeps it for an offline device.
    pub ttl_secs: u32,
    /// The RFC 8291 `aes128gcm` body, at most [`MAX_PUSH_BODY_LEN`] bytes.
    #[serde(with = "crate::byte_vec")]
    pub body: Vec<u8>,
}
impl Body for Push {
    fn validate(&self) -> Result<(), &'static str> {
        if self.body.len() > MAX_PUSH_BODY_LEN {
            return Err("push body longer than a push service accepts");
        }
        Ok(())
    }
    fn size_hint(&self) -> usize {
        self.body.len()
    }
}

/// Device → relay: which devices does my account have, and who may do what? Answered with
/// [`DeviceList`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicesQuery {
    /// Request number, echoed in the answer.
    pub request: u32,
}
impl Body for DevicesQuery {}

/// A machine of the account as a [`DeviceList`] names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountMachine {
    /// The machine.
    pub machine: Fingerprint,
    /// Its hostname: from its login when online, else from its registration.
    pub hostname: Hostname,
    /// Whether it is connected now.
    pub online: bool,
}

/// A device of the account as a [`DeviceList`] names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountDevice {
    /// The device.
    pub device: Fingerprint,
    /// An owner reaches every machine of the account, may revoke any device or machine of it
    /// and make other devices owners.
    pub owner: bool,
    /// Whether it has a live connection now.
    pub online: bool,
    /// The machines it paired with, as indices into [`DeviceList::machines`] (in the list's
    /// order; at most one per machine).
    pub paired: Vec<u16>,
}

/// Relay → device: the answer to [`DevicesQuery`]. An owner is shown every machine and device
/// of its account; any other device is shown itself and the machines it paired with. A device
/// in no account gets empty lists. At most [`RELAY_MAX_MACHINES_PER_ACCOUNT`] machines and
/// [`RELAY_MAX_DEVICES_PER_ACCOUNT`] devices (one frame holds both at their caps).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceList {
    /// The request this answers.
    pub request: u32,
    /// The machines the asking device may see.
    pub machines: Vec<AccountMachine>,
    /// The devices it may see.
    pub devices: Vec<AccountDevice>,
}
impl Body for DeviceList {
    fn validate(&self) -> Result<(), &'static str> {
        if self.machines.len() > RELAY_MAX_MACHINES_PER_ACCOUNT {
            return Err("more machines than an account holds");
        }
        if self.devices.len() > RELAY_MAX_DEVICES_PER_ACCOUNT {
            return Err("more devices than an account holds");
        }
        for machine in &self.machines {
            validate_hostname(&machine.hostname)?;
        }
        for device in &self.devices {
            if device.paired.len() > self.machines.len() {
                return Err("a device paired with more machines than are listed");
            }
            if device
                .paired
                .iter()
                .any(|index| usize::from(*index) >= self.machines.len())
            {
                return Err("a paired machine index is outside the list");
            }
        }
        Ok(())
    }
}

/// Relay → machine: the devices of its account that may reach it now (those that paired with
/// it, and the account's owners). State, not events: sent after [`LoginOk`] and again whenever
/// it changes, so a machine that was offline when a device was revoked still learns it. A
/// machine forgets any paired device not listed (it only lowers what the machine accepts).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowedDevices {
    /// At most [`RELAY_MAX_DEVICES_PER_ACCOUNT`].
    pub devices: Vec<Fingerprint>,
}
impl Body for AllowedDevices {
    fn validate(&self) -> Result<(), &'static str> {
        if self.devices.len() > RELAY_MAX_DEVICES_PER_ACCOUNT {
            return Err("more devices than an account holds");
        }
        Ok(())
    }
}

/// Relay → client: something was refused, or the connection is about to close.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    /// What went wrong, for programs.
    pub code: ErrorCode,
    /// The request this answers, when there is one ([`Registry::request`]).
    pub request: Option<u32>,
    /// What went wrong, for people.
    pub reason: Reason,
}
impl Body for Error {}

/// Relay → client: the relay is going down; reconnect after `reconnect_in_ms` (jittered by the
/// client) and keep trying for `try_for_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restarting {
    /// Wait this long before the first reconnect attempt.
    pub reconnect_in_ms: u32,
    /// Keep retrying at least this long.
    pub try_for_ms: u32,
}
impl Body for Restarting {}

wire_enum! {
    /// Every frame between a client and the relay.
    pub enum Frame (max_len = MAX_FRAME_LEN) {
        /// See [`ServerHello`].
        1 => ServerHello(ServerHello),
        /// See [`Login`].
        2 => Login(Login),
        /// See [`LoginOk`].
        3 => LoginOk(LoginOk),
        /// See [`OpenPairing`].
        4 => OpenPairing(OpenPairing),
        /// See [`PairingOpened`].
        5 => PairingOpened(PairingOpened),
        /// See [`PairSend`].
        6 => PairSend(PairSend),
        /// See [`PairRecv`].
        7 => PairRecv(PairRecv),
        /// See [`Send`].
        8 => Send(Send),
        /// See [`Recv`].
        9 => Recv(Recv),
        /// See [`Registry`].
        10 => Registry(Registry),
        /// See [`RegistryAck`].
        11 => RegistryAck(RegistryAck),
        /// See [`Presence`].
        12 => Presence(Presence),
        /// See [`Error`].
        13 => Error(Error),
        /// See [`Restarting`].
        14 => Restarting(Restarting),
        /// See [`DevicePresence`].
        15 => DevicePresence(DevicePresence),
        /// See [`PushSubscribe`].
        16 => PushSubscribe(PushSubscribe),
        /// See [`PushQuery`].
        17 => PushQuery(PushQuery),
        /// See [`PushState`].
        18 => PushState(PushState),
        /// See [`Push`].
        19 => Push(Push),
        /// See [`DevicesQuery`].
        20 => DevicesQuery(DevicesQuery),
        /// See [`DeviceList`].
        21 => DeviceList(DeviceList),
        /// See [`AllowedDevices`].
        22 => AllowedDevices(AllowedDevices),
    }
}

/// Why the relay refused something. Encoded as a `u16`; codes this build does not know decode
/// as [`ErrorCode::Other`] so a newer relay's errors still reach the person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "u16", into = "u16")]
pub enum ErrorCode {
    /// No protocol version in common.
    UnsupportedVersion,
    /// The login signature or identity was refused.
    LoginFailed,
    /// No login within the deadline.
    LoginTimeout,
    /// The key is revoked.
    Revoked,
    /// A frame this role may not send, or a receiver outside the account.
    NotAllowed,
    /// The receiver is not connected.
    PeerOffline,
    /// The pairing id is unknown or has expired.
    PairingUnknown,
    /// Another device already claimed the pairing id.
    PairingTaken,
    /// A registry entry was refused (bad signature, wrong account, stale).
    EntryRefused,
    /// A newer login for the same key took over this connection.
    Displaced,
    /// The frame could not be decoded; the connection closes.
    Malformed,
    /// Too many connections (in total or from this address).
    TooManyConnections,
    /// The connection sent more than its byte budget allows.
    RateLimited,
    /// The receiver's queue is full; the frame was dropped.
    Dropped,
    /// The relay failed (its disk, most likely); try again later.
    Internal,
    /// A code this build does not know.
    Other(u16),
}

impl From<u16> for ErrorCode {
    fn from(code: u16) -> Self {
        match code {
            1 => ErrorCode::UnsupportedVersion,
            2 => ErrorCode::LoginFailed,
            3 => ErrorCode::LoginTimeout,
            4 => ErrorCode::Revoked,
            5 => ErrorCode::NotAllowed,
            6 => ErrorCode::PeerOffline,
            7 => ErrorCode::PairingUnknown,
            8 => ErrorCode::PairingTaken,
            9 => ErrorCode::EntryRefused,
            10 => ErrorCode::Displaced,
            11 => ErrorCode::Malformed,
            12 => ErrorCode::TooManyConnections,
            13 => ErrorCode::RateLimited,
            14 => ErrorCode::Dropped,
            15 => ErrorCode::Internal,
            other => ErrorCode::Other(other),
        }
    }
}

impl From<ErrorCode> for u16 {
    fn from(code: ErrorCode) -> u16 {
        match code {
            ErrorCode::UnsupportedVersion => 1,
            ErrorCode::LoginFailed => 2,
            ErrorCode::LoginTimeout => 3,
            ErrorCode::Revoked => 4,
            ErrorCode::NotAllowed => 5,
            ErrorCode::PeerOffline => 6,
            ErrorCode::PairingUnknown => 7,
            ErrorCode::PairingTaken => 8,
            ErrorCode::EntryRefused => 9,
            ErrorCode::Displaced => 10,
            ErrorCode::Malformed => 11,
            ErrorCode::TooManyConnections => 12,
            ErrorCode::RateLimited => 13,
            ErrorCode::Dropped => 14,
            ErrorCode::Internal => 15,
            ErrorCode::Other(other) => other,
        }
    }
}

/// An entry of the relay's registry with its author's signature over the exact encoded bytes.
/// The relay stores these as they came, so its state can be re-verified from its log alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedEntry {
    /// postcard of [`RegistryEntry`].
    pub entry: Vec<u8>,
    /// By the entry's author ([`RegistryEntry::author`]), in [`SignDomain::RegistryEntry`].
    pub signature: Signature,
}

/// A change to the relay's registry. Variants are only ever appended: the relay's log holds
/// them by their postcard index.
///
/// Who may author what (the relay's registry enforces it; "paired" means the device registered
/// that machine):
///
/// | entry             | author                                                         |
/// | ----------------- | -------------------------------------------------------------- |
/// | `RegisterMachine` | any device not in another account, with the machine's consent  |
/// | `RevokeMachine`   | an owner of the machine's account, or a device paired with it  |
/// | `UnpairMachine`   | the machine itself                                             |
/// | `GrantOwner`      | an owner of the device's account                               |
/// | `RevokeDevice`    | an owner of the device's account, or the device itself         |
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegistryEntry {
    /// A device adds a machine to its account, after pairing with it.
    RegisterMachine {
        /// The device (the author).
        device: PublicIdentity,
        /// The machine it paired with.
        machine: PublicIdentity,
        /// The machine's hostname at pairing time.
        hostname: Hostname,
        /// The pairing id the machine opened; the relay accepts it once, while it is live.
        pairing_id: PairingId,
        /// The machine's consent: its signature over [`RegistryEntry::consent_message`] in
        /// [`SignDomain::RegistryEntry`], sent to the device inside the pairing channel.
        machine_consent: Signature,
        /// Unix seconds on the device's clock.
        at: u64,
    },
    /// A device removes a machine from its account and bars its key.
    RevokeMachine {
        /// The device (the author).
        device: PublicIdentity,
        /// The machine.
        machine: Fingerprint,
        /// Unix seconds on the device's clock.
        at: u64,
    },
    /// A machine removes its own record.
    UnpairMachine {
        /// The machine (the author).
        machine: PublicIdentity,
        /// Unix seconds on the machine's clock.
        at: u64,
    },
    /// An owner of an account makes another device of it an owner.
    GrantOwner {
        /// The owner (the author).
        owner: PublicIdentity,
        /// The device that becomes an owner.
        device: Fingerprint,
        /// Unix seconds on the owner's clock.
        at: u64,
    },
    /// An owner revokes a device of its account, or a device revokes itself: the device leaves
    /// the account and its key is barred for good.
    RevokeDevice {
        /// An owner of the device's account, or the device itself.
        author: PublicIdentity,
        /// The device.
        device: Fingerprint,
        /// Unix seconds on the author's clock.
        at: u64,
    },
}

/// A registry entry failed verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryError {
    /// The entry bytes do not decode.
    Malformed,
    /// The author's signature does not verify.
    BadSignature,
    /// The machine's consent signature does not verify.
    BadConsent,
    /// The entry was signed by one node and names another as its author.
    WrongAuthor,
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntryError::Malformed => "the registry entry does not decode",
            EntryError::BadSignature => "the registry entry's signature does not verify",
            EntryError::BadConsent => "the machine's consent signature does not verify",
            EntryError::WrongAuthor => "the registry entry is not signed by its author",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for EntryError {}

impl RegistryEntry {
    /// The node whose signature makes the entry valid.
    pub fn author(&self) -> &PublicIdentity {
        match self {
            RegistryEntry::RegisterMachine { device, .. }
            | RegistryEntry::RevokeMachine { device, .. } => device,
            RegistryEntry::UnpairMachine { machine, .. } => machine,
            RegistryEntry::GrantOwner { owner, .. } => owner,
            RegistryEntry::RevokeDevice { author, .. } => author,
        }
    }

    /// What a machine signs to consent to joining `device`'s account through `pairing_id`.
    pub fn consent_message(device: &Fingerprint, pairing_id: &PairingId) -> Vec<u8> {
        let mut message = Vec::with_capacity(16 + 32 + 16);
        message.extend_from_slice(b"register-machine");
        message.extend_from_slice(&device.0);
        message.extend_from_slice(&pairing_id.0);
        message
    }
}

impl SignedEntry {
    /// Encode and sign `entry`; `author` must be [`RegistryEntry::author`].
    pub fn sign(author: &Identity, entry: &RegistryEntry) -> Result<Self, EntryError> {
        if author.public() != *entry.author() {
            return Err(EntryError::WrongAuthor);
        }
        let bytes = postcard::to_allocvec(entry).map_err(|_| EntryError::Malformed)?;
        let signature = author.sign(SignDomain::RegistryEntry, &bytes);
        Ok(SignedEntry {
            entry: bytes,
            signature,
        })
    }

    /// Decode the entry and check every signature it carries.
    pub fn verify(&self) -> Result<RegistryEntry, EntryError> {
        let entry: RegistryEntry =
            postcard::from_bytes(&self.entry).map_err(|_| EntryError::Malformed)?;
        entry
            .author()
            .verify(SignDomain::RegistryEntry, &self.entry, &self.signature)
            .map_err(|_| EntryError::BadSignature)?;
        if let RegistryEntry::RegisterMachine {
            device,
            machine,
            pairing_id,
            machine_consent,
            ..
        } = &entry
        {
            let consent = RegistryEntry::consent_message(&device.fingerprint(), pairing_id);
            machine
                .verify(SignDomain::RegistryEntry, &consent, machine_consent)
                .map_err(|_| EntryError::BadConsent)?;
        }
        Ok(entry)
    }

    fn validate_shape(&self) -> Result<(), &'static str> {
        if self.entry.len() > MAX_REGISTRY_ENTRY_LEN {
            return Err("registry entry is too long");
        }
        Ok(())
    }
}

fn validate_payload(payload: &[u8]) -> Result<(), &'static str> {
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err("payload is over the limit");
    }
    Ok(())
}

/// A hostname is non-empty printable text without control, bidi or invisible characters
/// ([`crate::text::is_hidden`], newlines and tabs included): people tell machines apart by it,
/// so nothing in it may reorder or hide what they read.
pub fn validate_hostname(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("hostname is empty");
    }
    if host
        .chars()
        .any(|c| c.is_control() || crate::text::is_hidden(c))
    {
        return Err(
            "hostname contains control, bidi or invisible characters (such as U+202E or U+200B)",
        );
    }
    Ok(())
}
