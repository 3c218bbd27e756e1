//! A node's identity: an Ed25519 signing key (relay login, signatures) and an X25519 static key
//! (Noise), the fingerprint that names the pair, and signatures that always carry a domain prefix
//! so a signature made for one purpose can never be replayed as another.

use core::fmt;

use blake2::{Blake2s256, Digest};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use crate::Bytes64;

/// The purposes a node signs for. Each has its own prefix, and the prefix is part of every
/// signed message, so a signature is valid for exactly one purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignDomain {
    /// The answer to a relay's login challenge.
    RelayLogin,
    /// An entry of the relay's registry (register, revoke, unpair).
    RegistryEntry,
    /// A device's decision on an agent's approval request.
    ApprovalDecision,
    /// A machine's proof, inside the pairing channel, that it holds its signing key.
    PairingProof,
}

impl SignDomain {
    /// The bytes prepended to the message before signing.
    pub const fn prefix(self) -> &'static [u8] {
        match self {
            SignDomain::RelayLogin => b"muxagent/v1/relay-login\0",
            SignDomain::RegistryEntry => b"muxagent/v1/registry-entry\0",
            SignDomain::ApprovalDecision => b"muxagent/v1/approval-decision\0",
            SignDomain::PairingProof => b"muxagent/v1/pairing-proof\0",
        }
    }
}

/// An Ed25519 signature as it travels on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Signature(pub Bytes64);

/// The verification failed: the signature was not made by this key for this domain and message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureError {
    /// The public signing key is not a valid Ed25519 point.
    BadPublicKey,
    /// The signature does not match the key, the domain and the message.
    Mismatch,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureError::BadPublicKey => "the signing key is not a valid Ed25519 public key",
            SignatureError::Mismatch => "the signature does not match the key and the message",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for SignatureError {}

/// The secret half of a node: never leaves the node.
pub struct Identity {
    signing: SigningKey,
    noise: StaticSecret,
}

/// Length of [`Identity::to_secret_bytes`].
pub const SECRET_BYTES_LEN: usize = 64;

impl Identity {
    /// Make a new identity from the caller's randomness.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = Zeroizing::new([0u8; SECRET_BYTES_LEN]);
        rng.fill_bytes(&mut bytes[..]);
        Self::from_secret_bytes(&bytes)
    }

    /// Rebuild an identity from [`Identity::to_secret_bytes`]: the Ed25519 seed, then the X25519
    /// secret. Every 64-byte string is a valid identity.
    pub fn from_secret_bytes(bytes: &[u8; SECRET_BYTES_LEN]) -> Self {
        let mut signing = Zeroizing::new([0u8; 32]);
        let mut noise = Zeroizing::new([0u8; 32]);
        signing.copy_from_slice(&bytes[..32]);
        noise.copy_from_slice(&bytes[32..]);
        Self {
            signing: SigningKey::from_bytes(&signing),
            noise: StaticSecret::from(*noise),
        }
    }

    /// The secret keys, for the node's key file (mode 0600).
    pub fn to_secret_bytes(&self) -> Zeroizing<[u8; SECRET_BYTES_LEN]> {
        let mut out = Zeroizing::new([0u8; SECRET_BYTES_LEN]);
        out[..32].copy_from_slice(&self.signing.to_bytes());
        out[32..].copy_from_slice(self.noise.as_bytes());
        out
    }

    /// The public half, safe to share.
    pub fn public(&self) -> PublicIdentity {
        PublicIdentity {
            signing: self.signing.verifying_key().to_bytes(),
            noise: x25519_dalek::PublicKey::from(&self.noise).to_bytes(),
        }
    }

    /// The X25519 static secret, for the Noise handshakes.
    pub fn noise_secret(&self) -> &[u8; 32] {
        self.noise.as_bytes()
    }

    /// Sign `message` for `domain`.
    pub fn sign(&self, domain: SignDomain, message: &[u8]) -> Signature {
        let signed = domain_message(domain, message);
        Signature(Bytes64(self.signing.sign(&signed).to_bytes()))
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.public().fingerprint())
            .finish_non_exhaustive()
    }
}

fn domain_message(domain: SignDomain, message: &[u8]) -> alloc::vec::Vec<u8> {
    let prefix = domain.prefix();
    let mut signed = alloc::vec::Vec::with_capacity(prefix.len() + message.len());
    signed.extend_from_slice(prefix);
    signed.extend_from_slice(message);
    signed
}

/// A node's public keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct PublicIdentity {
    /// Ed25519 public key.
    pub signing: [u8; 32],
    /// X25519 public key used as the Noise static key.
    pub noise: [u8; 32],
}

impl PublicIdentity {
    /// The fingerprint naming this pair of keys.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut hasher = Blake2s256::new();
        hasher.update(b"muxagent/v1/fingerprint\0");
        hasher.update(self.signing);
        hasher.update(self.noise);
        Fingerprint(hasher.finalize().into())
    }

    /// Check that `signature` was made by this node for `domain` over `message`. Uses strict
    /// verification (no malleable or small-order signatures).
    pub fn verify(
        &self,
        domain: SignDomain,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        let key =
            VerifyingKey::from_bytes(&self.signing).map_err(|_| SignatureError::BadPublicKey)?;
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0.0);
        key.verify_strict(&domain_message(domain, message), &signature)
            .map_err(|_| SignatureError::Mismatch)
    }
}

/// BLAKE2s-256 of a node's two public keys: its stable name on the relay and for people.
///
/// `Display` gives the short human form (`3f2a-91c0-7be4-0d15`, the first 64 bits); `{:#}` gives
/// all 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Fingerprint(pub [u8; 32]);

/// A fingerprint given as text was not 64 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FingerprintParseError;

impl fmt::Display for FingerprintParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a fingerprint is 64 hexadecimal digits")
    }
}

#[cfg(feature = "std")]
impl std::error::Error for FingerprintParseError {}

impl Fingerprint {
    /// The 64-hex-digit form.
    pub fn to_hex(&self) -> alloc::string::String {
        alloc::format!("{self:#}")
    }

    /// Parse the 64-hex-digit form (`{:#}`); dashes are ignored.
    pub fn parse_hex(text: &str) -> Result<Self, FingerprintParseError> {
        let mut out = [0u8; 32];
        let mut digits = text.bytes().filter(|b| *b != b'-');
        for byte in &mut out {
            let high = digits
                .next()
                .and_then(hex_value)
                .ok_or(FingerprintParseError)?;
            let low = digits
                .next()
                .and_then(hex_value)
                .ok_or(FingerprintParseError)?;
            *byte = high << 4 | low;
        }
        match digits.next() {
            None => Ok(Self(out)),
            Some(_) => Err(FingerprintParseError),
        }
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            for byte in &self.0 {
                write!(f, "{byte:02x}")?;
            }
            return Ok(());
        }
        for (index, pair) in self.0[..8].chunks(2).enumerate() {
            if index > 0 {
                f.write_str("-")?;
            }
            write!(f, "{:02x}{:02x}", pair[0], pair[1])?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(seed: u8) -> Identity {
        Identity::from_secret_bytes(&[seed; SECRET_BYTES_LEN])
    }

    #[test]
    fn signatures_are_bound_to_their_domain() {
        let node = identity(7);
        let signature = node.sign(SignDomain::RelayLogin, b"challenge");
        let public = node.public();
        assert_eq!(
            public.verify(SignDomain::RelayLogin, b"challenge", &signature),
            Ok(())
        );
        assert_eq!(
            public.verify(SignDomain::RegistryEntry, b"challenge", &signature),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            public.verify(SignDomain::RelayLogin, b"challengf", &signature),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            identity(8)
                .public()
                .verify(SignDomain::RelayLogin, b"challenge", &signature),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn secret_bytes_round_trip() {
        let node = identity(3);
        let again = Identity::from_secret_bytes(&node.to_secret_bytes());
        assert_eq!(node.public(), again.public());
    }

    #[test]
    fn fingerprint_covers_both_keys_and_prints_two_ways() {
        let public = identity(1).public();
        let mut other = public;
        other.noise[0] ^= 1;
        assert_ne!(public.fingerprint(), other.fingerprint());

        let fingerprint = public.fingerprint();
        let short = alloc::format!("{fingerprint}");
        let long = alloc::format!("{fingerprint:#}");
        assert_eq!(short.len(), 19);
        assert!(long.starts_with(&short.replace('-', "")));
        assert_eq!(Fingerprint::parse_hex(&long), Ok(fingerprint));
        assert_eq!(Fingerprint::parse_hex(&short), Err(FingerprintParseError));
        assert_eq!(
            Fingerprint::parse_hex(&alloc::format!("{long}0")),
            Err(FingerprintParseError)
        );
    }
}
