//! Web Push message encryption (RFC 8291 over RFC 8188 `aes128gcm`): what a machine does to a
//! notice so that only the device's browser can read it. The relay and the push service carry
//! the result and see its length, nothing else.
//!
//! Each push gets a fresh P-256 key pair and salt. The shared secret of that key and the
//! subscription's `p256dh` key, mixed with the subscription's `auth` secret, gives the content
//! key and nonce; the notice goes in one record of [`PUSH_RECORD_SIZE`], padded so the body is
//! a multiple of [`PUSH_PAD_BLOCK`] bytes. The primitives are RustCrypto's (`p256`, `hkdf`,
//! `sha2`, `aes-gcm`), of the same generation as the rest of the tree; this file is only the
//! RFCs' framing, checked against RFC 8291's Appendix A byte for byte.
//!
//! Also here: the check of a device's push keys, and the topic a push is filed under at the
//! push service (a keyed hash of the session, so it says nothing about it).

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use blake2::digest::{Digest, Mac};
use blake2::{Blake2s256, Blake2sMac256};
use hkdf::Hkdf;
use muxagent_proto::app::SessionId;
use muxagent_proto::limits::{
    MAX_PUSH_BODY_LEN, PUSH_AUTH_LEN, PUSH_TOPIC_LEN, PUSH_VAPID_KEY_LEN,
};
use p256::elliptic_curve::Generate;
use p256::elliptic_curve::sec1::ToSec1Point;
use p256::{PublicKey, SecretKey};
use rand_core::CryptoRng;
use sha2::Sha256;

use crate::limits::{PUSH_PAD_BLOCK, PUSH_RECORD_SIZE};

/// Length of the `aes128gcm` header: salt (16), record size (4), key id length (1), key id
/// (the sender's uncompressed P-256 key, 65).
pub const HEADER_LEN: usize = 16 + 4 + 1 + PUSH_VAPID_KEY_LEN;

/// Bytes a push adds to its plaintext before padding: the header, the padding delimiter and
/// the AEAD tag.
pub const OVERHEAD_LEN: usize = HEADER_LEN + 1 + 16;

/// A push could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushError {
    /// The subscription's `p256dh` key is not an uncompressed P-256 point.
    BadKey,
    /// The plaintext does not fit one push.
    TooLong(usize),
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::BadKey => f.write_str(
                "the push subscription's p256dh key is not a point on the P-256 curve; \
                 subscribe again in the app",
            ),
            PushError::TooLong(len) => write!(
                f,
                "a {len}-byte notice does not fit one push ({} bytes at most)",
                MAX_PUSH_BODY_LEN - OVERHEAD_LEN
            ),
        }
    }
}

impl std::error::Error for PushError {}

/// A subscription's `p256dh` key, checked: 65 bytes, `0x04 ‖ x ‖ y`, on the curve.
pub fn parse_key(p256dh: &[u8]) -> Result<PublicKey, PushError> {
    if p256dh.len() != PUSH_VAPID_KEY_LEN || p256dh.first() != Some(&4) {
        return Err(PushError::BadKey);
    }
    PublicKey::from_sec1_bytes(p256dh).map_err(|_| PushError::BadKey)
}

/// Encrypt `plaintext` for the subscription (`ua_public`, `auth`): the body of one push, at
/// most [`MAX_PUSH_BODY_LEN`] bytes.
pub fn encrypt(
    plaintext: &[u8],
    ua_public: &PublicKey,
    auth: &[u8; PUSH_AUTH_LEN],
    rng: &mut impl CryptoRng,
) -> Result<Vec<u8>, PushError> {
    let body_len = padded_len(plaintext.len())?;
    let mut salt = [0u8; 16];
    rng.fill_bytes(&mut salt);
    let sender = SecretKey::generate_from_rng(rng);
    Ok(encrypt_with(
        plaintext,
        body_len - OVERHEAD_LEN - plaintext.len(),
        ua_public,
        auth,
        &sender,
        salt,
    ))
}

/// The body length for a plaintext: rounded up to [`PUSH_PAD_BLOCK`], at most
/// [`MAX_PUSH_BODY_LEN`].
fn padded_len(plaintext: usize) -> Result<usize, PushError> {
    let bare = plaintext + OVERHEAD_LEN;
    if bare > MAX_PUSH_BODY_LEN {
        return Err(PushError::TooLong(plaintext));
    }
    Ok(bare.div_ceil(PUSH_PAD_BLOCK) * PUSH_PAD_BLOCK).map(|len| len.min(MAX_PUSH_BODY_LEN))
}

/// RFC 8291 §3.4 and RFC 8188 §2 with the sender's key and salt given, and `padding` zero
/// bytes after the delimiter. One record, so the nonce is used as derived (sequence 0).
fn encrypt_with(
    plaintext: &[u8],
    padding: usize,
    ua_public: &PublicKey,
    auth: &[u8; PUSH_AUTH_LEN],
    sender: &SecretKey,
    salt: [u8; 16],
) -> Vec<u8> {
    let ua_point = ua_public.to_sec1_point(false);
    let as_point = sender.public_key().to_sec1_point(false);
    let shared = sender.diffie_hellman(ua_public);

    // RFC 8291 §3.3: IKM = HKDF(auth, ecdh, "WebPush: info" ‖ 0 ‖ ua_public ‖ as_public, 32).
    let mut key_info = Vec::with_capacity(14 + 2 * PUSH_VAPID_KEY_LEN);
    key_info.extend_from_slice(b"WebPush: info\0");
    key_info.extend_from_slice(ua_point.as_bytes());
    key_info.extend_from_slice(as_point.as_bytes());
    let mut ikm = [0u8; 32];
    expand(
        &Hkdf::<Sha256>::new(Some(auth), shared.raw_secret_bytes()),
        &key_info,
        &mut ikm,
    );

    // RFC 8188 §2.2, §2.3: the content key and the nonce from the salt and the IKM.
    let prk = Hkdf::<Sha256>::new(Some(&salt), &ikm);
    let mut cek = [0u8; 16];
    let mut nonce = [0u8; 12];
    expand(&prk, b"Content-Encoding: aes128gcm\0", &mut cek);
    expand(&prk, b"Content-Encoding: nonce\0", &mut nonce);

    // The last (only) record: the plaintext, delimiter 2, then zeros.
    let mut record = Vec::with_capacity(plaintext.len() + 1 + padding);
    record.extend_from_slice(plaintext);
    record.push(2);
    record.resize(plaintext.len() + 1 + padding, 0);
    let cipher = Aes128Gcm::new(&cek.into());
    let sealed = cipher
        .encrypt(&Nonce::from(nonce), record.as_slice())
        .unwrap_or_default(); // AES-GCM fails only past 64 GiB

    let mut body = Vec::with_capacity(HEADER_LEN + sealed.len());
    body.extend_from_slice(&salt);
    body.extend_from_slice(&PUSH_RECORD_SIZE.to_be_bytes());
    body.push(PUSH_VAPID_KEY_LEN as u8);
    body.extend_from_slice(as_point.as_bytes());
    body.extend_from_slice(&sealed);
    body
}

fn expand(hkdf: &Hkdf<Sha256>, info: &[u8], out: &mut [u8]) {
    // Lengths of 12, 16 and 32 are far under HKDF-SHA-256's 8160-byte limit.
    let _ = hkdf.expand(info, out);
}

/// The key of [`topic`], derived from the machine's secret keys (a different one per machine,
/// and a new one with new keys).
pub fn topic_key(machine_secret: &[u8]) -> [u8; 32] {
    Blake2s256::new()
        .chain_update(b"muxagent/v1/push-topic-key\0")
        .chain_update(machine_secret)
        .finalize()
        .into()
}

/// The RFC 8030 topic of a session's pushes: the first [`PUSH_TOPIC_LEN`] bytes of a keyed
/// BLAKE2s of its id. A newer push of the session replaces an undelivered older one at the push
/// service; without the key the topic says nothing about the session.
pub fn topic(key: &[u8; 32], session: &SessionId) -> [u8; PUSH_TOPIC_LEN] {
    let hash = <Blake2sMac256 as KeyInit>::new(&(*key).into())
        .chain_update(session.0)
        .finalize()
        .into_bytes();
    let mut out = [0u8; PUSH_TOPIC_LEN];
    out.copy_from_slice(&hash[..PUSH_TOPIC_LEN]);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use rand_core::Rng;

    use super::*;

    fn b64(text: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(text).expect("base64url")
    }

    /// RFC 8291 Appendix A.
    mod rfc8291 {
        pub const PLAINTEXT: &[u8] = b"When I grow up, I want to be a watermelon";
        pub const BODY: &str = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN";
        pub const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";
        pub const UA_PRIVATE: &str = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";
        pub const UA_PUBLIC: &str = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
        pub const AS_PRIVATE: &str = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
        pub const SALT: &str = "DGv6ra1nlYgDCS1FRnbzlw";
    }

    fn auth(text: &str) -> [u8; PUSH_AUTH_LEN] {
        b64(text).try_into().expect("16 bytes")
    }

    /// What a browser does with a push (RFC 8291 §3.4 from the receiving side), written from the
    /// RFCs independently of [`encrypt_with`]: the plaintext, or `None` if anything is off.
    pub(crate) fn decrypt(body: &[u8], ua_private: &SecretKey, auth: &[u8; 16]) -> Option<Vec<u8>> {
        let (salt, rest) = body.split_at_checked(16)?;
        let (rs, rest) = rest.split_at_checked(4)?;
        let (&idlen, rest) = rest.split_first()?;
        let (keyid, sealed) = rest.split_at_checked(usize::from(idlen))?;
        let rs = u32::from_be_bytes(rs.try_into().ok()?) as usize;
        if sealed.len() > rs {
            return None; // one record only
        }
        let as_public = PublicKey::from_sec1_bytes(keyid).ok()?;
        let shared =
            p256::ecdh::diffie_hellman(ua_private.to_nonzero_scalar(), as_public.as_affine());
        let mut info = b"WebPush: info\0".to_vec();
        info.extend_from_slice(ua_private.public_key().to_sec1_point(false).as_bytes());
        info.extend_from_slice(keyid);
        let mut ikm = [0u8; 32];
        Hkdf::<Sha256>::new(Some(auth), shared.raw_secret_bytes())
            .expand(&info, &mut ikm)
            .ok()?;
        let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
        let (mut cek, mut nonce) = ([0u8; 16], [0u8; 12]);
        prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
            .ok()?;
        prk.expand(b"Content-Encoding: nonce\0", &mut nonce).ok()?;
        let mut record = Aes128Gcm::new(&cek.into())
            .decrypt(&Nonce::from(nonce), sealed)
            .ok()?;
        let end = record.iter().rposition(|&byte| byte != 0)?;
        (record[end] == 2).then_some(())?;
        record.truncate(end);
        Some(record)
    }

    #[test]
    fn rfc8291_appendix_a_byte_for_byte() {
        use rfc8291::*;
        let ua_public = parse_key(&b64(UA_PUBLIC)).expect("the RFC's key");
        let sender = SecretKey::from_slice(&b64(AS_PRIVATE)).expect("the RFC's key");
        let salt: [u8; 16] = b64(SALT).try_into().expect("16 bytes");
        let body = encrypt_with(PLAINTEXT, 0, &ua_public, &auth(AUTH), &sender, salt);
        assert_eq!(body, b64(BODY));
        assert_eq!(body.len(), PLAINTEXT.len() + OVERHEAD_LEN);
    }

    #[test]
    fn the_rfc_example_decrypts_with_the_subscription_key() {
        use rfc8291::*;
        let ua_private = SecretKey::from_slice(&b64(UA_PRIVATE)).expect("the RFC's key");
        assert_eq!(
            decrypt(&b64(BODY), &ua_private, &auth(AUTH)).as_deref(),
            Some(PLAINTEXT)
        );
        let mut damaged = b64(BODY);
        damaged[100] ^= 1;
        assert_eq!(decrypt(&damaged, &ua_private, &auth(AUTH)), None);
    }

    #[test]
    fn a_push_round_trips_padded_to_the_block_and_never_past_the_limit() {
        let mut rng = crate::os::rng();
        let ua_private = SecretKey::generate_from_rng(&mut rng);
        let p256dh = ua_private.public_key().to_sec1_point(false);
        let ua_public = parse_key(p256dh.as_bytes()).expect("a fresh key");
        let mut secret = [0u8; PUSH_AUTH_LEN];
        rng.fill_bytes(&mut secret);
        let most = MAX_PUSH_BODY_LEN - OVERHEAD_LEN;
        for len in [0, 1, 41, 153, 154, 500, most - 1, most] {
            let plaintext: Vec<u8> = (0..len).map(|n| n as u8).collect();
            let body = encrypt(&plaintext, &ua_public, &secret, &mut rng).expect("fits");
            assert!(body.len() <= MAX_PUSH_BODY_LEN, "{len}: {}", body.len());
            assert_eq!(body.len() % PUSH_PAD_BLOCK, 0, "{len}: {}", body.len());
            assert_eq!(body[16..20], PUSH_RECORD_SIZE.to_be_bytes());
            assert_eq!(
                decrypt(&body, &ua_private, &secret).as_deref(),
                Some(plaintext.as_slice()),
                "{len}"
            );
            // Another device's auth secret reads nothing.
            assert_eq!(decrypt(&body, &ua_private, &[0; 16]), None);
        }
        assert_eq!(
            encrypt(&vec![0; most + 1], &ua_public, &secret, &mut rng),
            Err(PushError::TooLong(most + 1))
        );
    }

    #[test]
    fn only_uncompressed_points_on_the_curve_are_keys() {
        let good = b64(rfc8291::UA_PUBLIC);
        assert!(parse_key(&good).is_ok());
        let mut off_curve = good.clone();
        off_curve[64] ^= 1;
        assert_eq!(parse_key(&off_curve), Err(PushError::BadKey));
        let mut compressed = good[..33].to_vec();
        compressed[0] = 2;
        assert_eq!(parse_key(&compressed), Err(PushError::BadKey));
        assert_eq!(parse_key(&[4; 65]), Err(PushError::BadKey));
        assert_eq!(parse_key(&[0; 65]), Err(PushError::BadKey));
    }

    #[test]
    fn topics_are_per_session_and_per_machine() {
        let key = topic_key(&[1; 64]);
        let a = topic(&key, &SessionId([1; 16]));
        assert_eq!(a, topic(&key, &SessionId([1; 16])));
        assert_ne!(a, topic(&key, &SessionId([2; 16])));
        assert_ne!(a, topic(&topic_key(&[2; 64]), &SessionId([1; 16])));
        assert_ne!(a[..], SessionId([1; 16]).0[..]);
    }
}
