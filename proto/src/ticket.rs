//! The pairing ticket: everything a device needs to pair with a machine, carried in the URL
//! fragment of `<relay url>/pair#<ticket>` (never sent to a server) and in the QR code.
//!
//! Text form: base64url without padding of `version u8 ‖ postcard(TicketBody)`. The version
//! byte is read first so a ticket from a newer daemon gets a clear "update" error instead of a
//! parse failure.

use core::fmt;

use alloc::string::String;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::frame::{Hostname, PairingId, validate_hostname};
use crate::identity::Fingerprint;
use crate::limits::{MAX_RELAY_URL_LEN, MAX_TICKET_TEXT_LEN};

/// The ticket format this build writes and reads.
pub const TICKET_VERSION: u8 = 1;

/// The path before the `#` in a pairing link.
pub const PAIR_PATH: &str = "/pair";

/// A relay URL as stored in a ticket.
pub type RelayUrl = heapless::String<MAX_RELAY_URL_LEN>;

/// The one-time secret shared through the ticket; the Noise PSK of the pairing handshake.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairingSecret(pub [u8; 32]);

impl Drop for PairingSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for PairingSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PairingSecret(…)")
    }
}

/// A pairing ticket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// The relay's public base URL (`https://…`, or `http://` for a local relay).
    pub relay_url: RelayUrl,
    /// The id under which the machine waits on the relay.
    pub pairing_id: PairingId,
    /// The machine's fingerprint: the device's root of trust for this machine.
    pub machine: Fingerprint,
    /// The machine's X25519 static key for the Noise handshake.
    pub machine_noise: [u8; 32],
    /// The one-time PSK.
    pub secret: PairingSecret,
    /// The machine's hostname, to show the person what they are pairing.
    pub hostname: Hostname,
    /// Unix seconds after which the ticket is refused.
    pub expires_at: u64,
}

/// Why a ticket or link was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TicketError {
    /// The text is empty.
    Empty,
    /// The text is longer than any valid ticket.
    TooLong {
        /// Characters given.
        len: usize,
    },
    /// The text is not base64url.
    NotBase64,
    /// The ticket was written by a newer (or unknown) format.
    UnsupportedVersion(u8),
    /// The bytes end before the ticket does (a cut-off link).
    Truncated,
    /// The bytes are not a ticket.
    Malformed,
    /// Bytes follow the ticket.
    TrailingBytes,
    /// The relay URL is not an `http(s)` URL.
    BadRelayUrl,
    /// The hostname is empty or has control, bidi or invisible characters.
    BadHostname,
    /// The ticket's time is up.
    Expired {
        /// When it expired (Unix seconds).
        expires_at: u64,
        /// The time it was checked at.
        now: u64,
    },
    /// The link has no `#ticket` fragment.
    NoFragment,
}

impl fmt::Display for TicketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TicketError::Empty => f.write_str("the pairing link is empty"),
            TicketError::TooLong { len } => write!(
                f,
                "the pairing ticket is {len} characters, longer than any valid ticket ({MAX_TICKET_TEXT_LEN})"
            ),
            TicketError::NotBase64 => {
                f.write_str("the pairing ticket is damaged (not base64url); copy the whole link")
            }
            TicketError::UnsupportedVersion(version) => write!(
                f,
                "the pairing ticket has format {version}; this build reads format {TICKET_VERSION} — update muxagent"
            ),
            TicketError::Truncated => {
                f.write_str("the pairing ticket is cut off; copy the whole link")
            }
            TicketError::Malformed | TicketError::TrailingBytes => {
                f.write_str("the pairing ticket is damaged; copy the whole link or pair again")
            }
            TicketError::BadRelayUrl => {
                f.write_str("the pairing ticket's relay URL is not an http(s) URL")
            }
            TicketError::BadHostname => f.write_str(
                "the pairing ticket's hostname is empty or has control, bidi or invisible characters",
            ),
            TicketError::Expired { expires_at, now } => write!(
                f,
                "the pairing link expired {} s ago; run `muxagent pair` for a new one",
                now.saturating_sub(*expires_at)
            ),
            TicketError::NoFragment => {
                f.write_str("the pairing link has no ticket after '#'; copy the whole link")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TicketError {}

impl Ticket {
    /// The base64url text form.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(crate::envelope::encode(TICKET_VERSION, self))
    }

    /// The pairing link: `<relay url>/pair#<ticket>`.
    pub fn link(&self) -> String {
        let base = self.relay_url.trim_end_matches('/');
        alloc::format!("{base}{PAIR_PATH}#{}", self.encode())
    }

    /// Parse the text form and check it has not expired at `now` (Unix seconds).
    pub fn decode(text: &str, now: u64) -> Result<Self, TicketError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(TicketError::Empty);
        }
        if text.len() > MAX_TICKET_TEXT_LEN {
            return Err(TicketError::TooLong { len: text.len() });
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| TicketError::NotBase64)?;
        let (version, body) = bytes.split_first().ok_or(TicketError::Truncated)?;
        if *version != TICKET_VERSION {
            return Err(TicketError::UnsupportedVersion(*version));
        }
        let (ticket, rest) =
            postcard::take_from_bytes::<Ticket>(body).map_err(|error| match error {
                postcard::Error::DeserializeUnexpectedEnd => TicketError::Truncated,
                _ => TicketError::Malformed,
            })?;
        if !rest.is_empty() {
            return Err(TicketError::TrailingBytes);
        }
        ticket.validate(now)?;
        Ok(ticket)
    }

    /// Parse a pairing link (or a bare ticket) and check it at `now`.
    pub fn from_link(link: &str, now: u64) -> Result<Self, TicketError> {
        let link = link.trim();
        if link.is_empty() {
            return Err(TicketError::Empty);
        }
        let ticket = match link.split_once('#') {
            Some((_, fragment)) => fragment,
            None if link.contains("://") => return Err(TicketError::NoFragment),
            None => link,
        };
        Self::decode(ticket, now)
    }

    fn validate(&self, now: u64) -> Result<(), TicketError> {
        let url = self.relay_url.as_str();
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or(TicketError::BadRelayUrl)?;
        if rest.is_empty()
            || url
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == '#')
        {
            return Err(TicketError::BadRelayUrl);
        }
        validate_hostname(&self.hostname).map_err(|_| TicketError::BadHostname)?;
        if now >= self.expires_at {
            return Err(TicketError::Expired {
                expires_at: self.expires_at,
                now,
            });
        }
        Ok(())
    }
}
