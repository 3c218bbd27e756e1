//! `snow`'s crypto, provided by the crates the rest of the tree already uses: `x25519-dalek`
//! (DH 25519), `chacha20poly1305` (ChaChaPoly), `blake2` (BLAKE2s). snow is built without its
//! default resolver, so each primitive exists once in the dependency tree and no ambient
//! randomness (`getrandom`) is linked.
//!
//! # Randomness
//!
//! snow asks its resolver for a [`Random`] once per handshake state and uses it for exactly one
//! thing: [`Dh::generate`] of the local ephemeral key (`e` token), which *this* module implements
//! as one 32-byte draw. So instead of seeding a CSPRNG we hand snow exactly that much entropy:
//! [`Resolver::new`] takes [`ENTROPY_LEN`] bytes from the caller's `CryptoRng` into a zeroizing
//! pool, [`CryptoResolver::resolve_rng`] gives the pool away once (a second request gets `None`,
//! so two handshake states can never share it), and the pool refuses (`Error::Rng`) to give out
//! more than it holds. The ephemeral secret is therefore the caller's random bytes verbatim, every
//! byte is used at most once and wiped when taken, and should a future snow draw more than one
//! ephemeral, handshakes fail loudly instead of reusing bytes.

use alloc::boxed::Box;
use core::cell::Cell;

use chacha20poly1305::aead::inout::InOutBuf;
use chacha20poly1305::{AeadInOut, ChaCha20Poly1305, KeyInit, Nonce, Tag};
use rand_core::CryptoRng;
use snow::Error;
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::CryptoResolver;
use snow::types::{Cipher, Dh, Hash, Random};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

/// Bytes of entropy one handshake state gets: one X25519 ephemeral secret.
pub(crate) const ENTROPY_LEN: usize = 32;

const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
const BLAKE2S_LEN: usize = 32;
const BLAKE2S_BLOCK_LEN: usize = 64;

/// The resolver for one handshake state: build a new one per [`snow::Builder`].
pub(crate) struct Resolver {
    entropy: Cell<Option<Entropy>>,
}

impl Resolver {
    /// A resolver whose [`Random`] holds [`ENTROPY_LEN`] bytes drawn from `rng` now.
    pub(crate) fn new<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut pool = Zeroizing::new([0u8; ENTROPY_LEN]);
        rng.fill_bytes(&mut pool[..]);
        Self {
            entropy: Cell::new(Some(Entropy { pool, used: 0 })),
        }
    }
}

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        self.entropy
            .take()
            .map(|entropy| Box::new(entropy) as Box<dyn Random>)
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        match choice {
            DHChoice::Curve25519 => Some(Box::new(X25519::default())),
            _ => None,
        }
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        match choice {
            HashChoice::Blake2s => Some(Box::new(Blake2s::default())),
            _ => None,
        }
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        match choice {
            CipherChoice::ChaChaPoly => Some(Box::new(ChaChaPoly::default())),
            _ => None,
        }
    }
}

/// A fixed pool of the caller's random bytes, each handed out once.
struct Entropy {
    pool: Zeroizing<[u8; ENTROPY_LEN]>,
    used: usize,
}

impl Random for Entropy {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Error> {
        let end = self.used.checked_add(dest.len()).ok_or(Error::Rng)?;
        let taken = self.pool.get_mut(self.used..end).ok_or(Error::Rng)?;
        dest.copy_from_slice(taken);
        taken.zeroize();
        self.used = end;
        Ok(())
    }
}

/// X25519 over `x25519-dalek`. The secret is a `StaticSecret`, wiped on drop.
struct X25519 {
    secret: StaticSecret,
    public: [u8; KEY_LEN],
    /// A key was set or generated; until then `dh` refuses to run with the all-zero secret.
    ready: bool,
}

impl Default for X25519 {
    fn default() -> Self {
        Self {
            secret: StaticSecret::from([0u8; KEY_LEN]),
            public: [0u8; KEY_LEN],
            ready: false,
        }
    }
}

impl X25519 {
    fn set_secret(&mut self, secret: &[u8; KEY_LEN]) {
        self.secret = StaticSecret::from(*secret);
        self.public = PublicKey::from(&self.secret).to_bytes();
        self.ready = true;
    }
}

impl Dh for X25519 {
    fn name(&self) -> &'static str {
        "25519"
    }

    fn pub_len(&self) -> usize {
        KEY_LEN
    }

    fn priv_len(&self) -> usize {
        KEY_LEN
    }

    fn set(&mut self, privkey: &[u8]) {
        match <&[u8; KEY_LEN]>::try_from(privkey) {
            Ok(secret) => self.set_secret(secret),
            // The trait cannot report it; a key of the wrong length leaves the key unusable, and
            // the next `dh` fails. (Every caller in this crate passes 32 bytes.)
            Err(_) => *self = Self::default(),
        }
    }

    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), Error> {
        let mut secret = Zeroizing::new([0u8; KEY_LEN]);
        rng.try_fill_bytes(&mut secret[..])?;
        self.set_secret(&secret);
        Ok(())
    }

    fn pubkey(&self) -> &[u8] {
        &self.public
    }

    fn privkey(&self) -> &[u8] {
        self.secret.as_bytes()
    }

    /// `pubkey` may be longer than 32 bytes (snow passes its whole key buffer): the key is the
    /// first 32. A peer key of small order gives an all-zero ("non-contributory") secret that the
    /// peer could predict without our key; it is refused as a failed DH.
    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), Error> {
        if !self.ready {
            return Err(Error::Dh);
        }
        let peer: [u8; KEY_LEN] = pubkey
            .get(..KEY_LEN)
            .and_then(|key| key.try_into().ok())
            .ok_or(Error::Dh)?;
        let shared = self.secret.diffie_hellman(&PublicKey::from(peer));
        if !shared.was_contributory() {
            return Err(Error::Dh);
        }
        out.get_mut(..KEY_LEN)
            .ok_or(Error::Dh)?
            .copy_from_slice(shared.as_bytes());
        Ok(())
    }
}

/// ChaCha20-Poly1305 as the Noise spec defines it: the 96-bit nonce is 32 zero bits followed by
/// the 64-bit counter in little-endian. The key is wiped on drop.
#[derive(Default)]
struct ChaChaPoly {
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl ChaChaPoly {
    fn aead(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(&(*self.key).into())
    }
}

fn noise_nonce(counter: u64) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter.to_le_bytes());
    nonce.into()
}

impl Cipher for ChaChaPoly {
    fn name(&self) -> &'static str {
        "ChaChaPoly"
    }

    fn set(&mut self, key: &[u8; KEY_LEN]) {
        self.key.copy_from_slice(key);
    }

    /// Returns the ciphertext length, plaintext + 16. snow sizes `out` before calling; should it
    /// ever not, or should the AEAD refuse (only for inputs of gigabytes), nothing is written and
    /// 0 is returned, which every caller treats as a failed message — never a panic, and never
    /// plaintext left in `out`.
    fn encrypt(&self, nonce: u64, authtext: &[u8], plaintext: &[u8], out: &mut [u8]) -> usize {
        let len = plaintext.len();
        let Some(total) = len.checked_add(TAG_LEN) else {
            return 0;
        };
        let Some(out) = out.get_mut(..total) else {
            return 0;
        };
        let (body, tag_out) = out.split_at_mut(len);
        let sealed = InOutBuf::new(plaintext, body).ok().and_then(|buffer| {
            self.aead()
                .encrypt_inout_detached(&noise_nonce(nonce), authtext, buffer)
                .ok()
        });
        match sealed {
            Some(tag) => {
                tag_out.copy_from_slice(&tag);
                total
            }
            None => {
                out.zeroize();
                0
            }
        }
    }

    fn decrypt(
        &self,
        nonce: u64,
        authtext: &[u8],
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, Error> {
        let len = ciphertext
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(Error::Decrypt)?;
        let (body, tag) = ciphertext.split_at(len);
        let tag = Tag::try_from(tag).map_err(|_| Error::Decrypt)?;
        let out = out.get_mut(..len).ok_or(Error::Decrypt)?;
        let opened = match InOutBuf::new(body, out) {
            Ok(buffer) => {
                self.aead()
                    .decrypt_inout_detached(&noise_nonce(nonce), authtext, buffer, &tag)
            }
            Err(_) => return Err(Error::Decrypt),
        };
        match opened {
            Ok(()) => Ok(len),
            Err(_) => {
                out.zeroize();
                Err(Error::Decrypt)
            }
        }
    }
}

/// BLAKE2s-256. snow builds HMAC and HKDF on top of this (its default methods).
#[derive(Default)]
struct Blake2s {
    hasher: blake2::Blake2s256,
}

impl Hash for Blake2s {
    fn name(&self) -> &'static str {
        "BLAKE2s"
    }

    fn block_len(&self) -> usize {
        BLAKE2S_BLOCK_LEN
    }

    fn hash_len(&self) -> usize {
        BLAKE2S_LEN
    }

    fn reset(&mut self) {
        self.hasher = blake2::Blake2s256::default();
    }

    fn input(&mut self, data: &[u8]) {
        blake2::Digest::update(&mut self.hasher, data);
    }

    /// Writes the 32-byte digest to the front of `out` (snow passes a 64-byte buffer) and starts
    /// over.
    fn result(&mut self, out: &mut [u8]) {
        let digest = blake2::Digest::finalize(core::mem::take(&mut self.hasher));
        let len = out.len().min(BLAKE2S_LEN);
        out[..len].copy_from_slice(&digest[..len]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_is_given_once_and_never_more_than_drawn() {
        let resolver = Resolver::new(&mut crate::noise::tests::TestRng::new(1));
        let mut random = resolver.resolve_rng().expect("first request gets the pool");
        assert!(
            resolver.resolve_rng().is_none(),
            "a second handshake must not share the pool"
        );
        let mut first = [0u8; 20];
        let mut second = [0u8; 12];
        random.try_fill_bytes(&mut first).expect("within the pool");
        random.try_fill_bytes(&mut second).expect("within the pool");
        assert_ne!(first, [0u8; 20]);
        assert_eq!(random.try_fill_bytes(&mut [0u8; 1]), Err(Error::Rng));
    }

    #[test]
    fn x25519_agrees_and_refuses_small_order_points() {
        let mut rng = crate::noise::tests::TestRng::new(2);
        let mut alice = X25519::default();
        let mut bob = X25519::default();
        assert_eq!(
            alice.dh(&[9u8; 32], &mut [0u8; 56]),
            Err(Error::Dh),
            "no key set yet"
        );
        alice
            .generate(&mut *Resolver::new(&mut rng).resolve_rng().expect("pool"))
            .expect("gen");
        bob.set(&[7u8; 32]);
        let (mut ab, mut ba) = ([0u8; 56], [0u8; 56]);
        alice.dh(bob.pubkey(), &mut ab).expect("dh");
        bob.dh(alice.pubkey(), &mut ba).expect("dh");
        assert_eq!(ab, ba);
        assert_eq!(
            alice.dh(&[0u8; 32], &mut ab),
            Err(Error::Dh),
            "identity point"
        );
        assert_eq!(alice.dh(&[1u8; 31], &mut ab), Err(Error::Dh), "short key");
    }

    #[test]
    fn chachapoly_matches_the_noise_nonce_layout_and_detects_tampering() {
        let mut cipher = ChaChaPoly::default();
        cipher.set(&[3u8; 32]);
        let mut sealed = [0u8; 5 + TAG_LEN];
        assert_eq!(cipher.encrypt(7, b"ad", b"hello", &mut sealed), 21);
        // Same result as the AEAD called with the Noise nonce directly.
        let mut nonce = [0u8; 12];
        nonce[4] = 7;
        let mut expected = *b"hello";
        let tag = ChaCha20Poly1305::new(&[3u8; 32].into())
            .encrypt_inout_detached(&nonce.into(), b"ad", (&mut expected[..]).into())
            .expect("encrypt");
        assert_eq!(&sealed[..5], &expected);
        assert_eq!(&sealed[5..], tag.as_slice());

        let mut opened = [0u8; 5];
        assert_eq!(cipher.decrypt(7, b"ad", &sealed, &mut opened), Ok(5));
        assert_eq!(&opened, b"hello");
        assert_eq!(
            cipher.decrypt(8, b"ad", &sealed, &mut opened),
            Err(Error::Decrypt)
        );
        sealed[0] ^= 1;
        assert_eq!(
            cipher.decrypt(7, b"ad", &sealed, &mut opened),
            Err(Error::Decrypt)
        );
        assert_eq!(
            opened, [0u8; 5],
            "nothing of a failed message is left behind"
        );
        assert_eq!(
            cipher.decrypt(7, b"ad", &sealed[..15], &mut opened),
            Err(Error::Decrypt)
        );
        assert_eq!(
            cipher.encrypt(7, b"", b"hello", &mut [0u8; 20]),
            0,
            "out too small"
        );
    }

    #[test]
    fn blake2s_is_plain_blake2s_256() {
        let mut hash = Blake2s::default();
        hash.input(b"ab");
        hash.input(b"c");
        let mut out = [0u8; 64];
        hash.result(&mut out);
        let expected = <blake2::Blake2s256 as blake2::Digest>::digest(b"abc");
        assert_eq!(&out[..32], expected.as_slice());
        // `result` starts over.
        hash.input(b"abc");
        let mut again = [0u8; 64];
        hash.result(&mut again);
        assert_eq!(out, again);
    }
}
