//! What goes wrong between a device and a machine, for both sides' protocol cores
//! ([`device`](crate::device), [`machine`](crate::machine)).

use core::fmt;

use crate::envelope::DecodeError;
use crate::frame::EntryError;
use crate::noise::ChannelError;
use crate::noise::packet::PacketError;
use crate::noise::pairing::PairingError;
use crate::noise::session::SessionError;

/// A step of the device ↔ machine protocol failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerError {
    /// The payload is not a channel packet.
    Packet(PacketError),
    /// The session handshake failed.
    Session(SessionError),
    /// The pairing handshake failed.
    Pairing(PairingError),
    /// The channel refused a message (replay, gap, tampering) or is closed.
    Channel(ChannelError),
    /// A message inside the channel does not decode.
    Message(DecodeError),
    /// A registry entry could not be made.
    Entry(EntryError),
    /// Nothing is connected to that peer.
    NotConnected,
    /// The peer sent something this step does not expect.
    Unexpected(&'static str),
    /// The machine could not read the pairing request: the link is damaged or was made by
    /// another machine.
    Refused,
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerError::Packet(error) => write!(f, "bad channel packet: {error}"),
            PeerError::Session(error) => write!(f, "secure connection failed: {error}"),
            PeerError::Pairing(error) => write!(f, "pairing failed: {error}"),
            PeerError::Channel(error) => write!(f, "secure channel: {error}"),
            PeerError::Message(error) => write!(f, "bad message from the peer: {error}"),
            PeerError::Entry(error) => write!(f, "registry entry: {error}"),
            PeerError::NotConnected => f.write_str("no secure channel to that peer yet"),
            PeerError::Unexpected(what) => write!(f, "unexpected message from the peer: {what}"),
            PeerError::Refused => f.write_str(
                "the machine refused the pairing request: the link is damaged or not from this machine",
            ),
        }
    }
}

impl PeerError {
    /// Whether this error ended a channel (see [`ChannelError::poisons`]). Every other error
    /// changed nothing: the payload was dropped.
    pub fn ends_channel(&self) -> bool {
        matches!(self, PeerError::Channel(error) if error.poisons())
    }
}

#[cfg(feature = "std")]
impl std::error::Error for PeerError {}

macro_rules! from_error {
    ($($source:ty => $variant:ident),* $(,)?) => {
        $( impl From<$source> for PeerError {
            fn from(error: $source) -> Self {
                PeerError::$variant(error)
            }
        } )*
    };
}

from_error!(
    PacketError => Packet,
    SessionError => Session,
    PairingError => Pairing,
    ChannelError => Channel,
    DecodeError => Message,
    EntryError => Entry,
);
