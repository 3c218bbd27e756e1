//! The relay's VAPID identity (RFC 8292): a P-256 key pair made on first start and kept in the
//! data folder, and the ES256 JWT that authorizes each push to a push service.
//!
//! The key is what browsers bind a subscription to (`applicationServerKey`): a relay that lost
//! it would have every subscription refused by its push service, so a key file that does not
//! load stops the relay instead of being replaced. It is written once, atomically (a temporary
//! file with mode 0600, synced, renamed into place, the folder synced), and never rewritten.
//!
//! ECDSA comes from `ring`, which the relay already links for TLS: no new crypto in the tree.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use crate::limits::PUSH_VAPID_KEY_LEN;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};

/// File of the key in the push folder: PKCS#8 v1 DER, as `ring` makes it.
const KEY_FILE: &str = "vapid-key.p8";

/// base64url of `{"typ":"JWT","alg":"ES256"}`, the header of every VAPID JWT.
const JWT_HEADER: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9";

/// The relay's VAPID key pair.
pub(crate) struct Vapid {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// The public key, base64url without padding: the `k` of every `Authorization` header.
    public_b64: String,
}

impl Vapid {
    /// Load the key from `dir`, or make one there if there is none.
    pub(crate) fn open(dir: &Path) -> Result<Vapid, String> {
        let path = dir.join(KEY_FILE);
        let rng = SystemRandom::new();
        let pkcs8 = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let document = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| "cannot make a VAPID key: no randomness".to_string())?;
                write_new(dir, &path, document.as_ref())
                    .map_err(|e| format!("cannot store the VAPID key {}: {e}", path.display()))?;
                crate::info(format_args!(
                    "made a new VAPID key for Web Push in {}",
                    path.display()
                ));
                document.as_ref().to_vec()
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .map_err(|e| {
                format!(
                    "the VAPID key {} does not load ({e}); every push subscription is bound to \
                     it, so it is not replaced: restore it, or delete it and have every device \
                     subscribe again",
                    path.display()
                )
            })?;
        Ok(Vapid::from_key(key, rng))
    }

    fn from_key(key: EcdsaKeyPair, rng: SystemRandom) -> Vapid {
        let public_b64 = URL_SAFE_NO_PAD.encode(key.public_key().as_ref());
        Vapid {
            key,
            rng,
            public_b64,
        }
    }

    /// The public key: an uncompressed P-256 point, [`PUSH_VAPID_KEY_LEN`] bytes.
    pub(crate) fn public_key(&self) -> Vec<u8> {
        let point = self.key.public_key().as_ref().to_vec();
        debug_assert_eq!(point.len(), PUSH_VAPID_KEY_LEN);
        point
    }

    /// The value of the `Authorization` header for a push to `audience` (the endpoint's
    /// origin), valid until `expires` (Unix seconds): `vapid t=JWT, k=KEY` (RFC 8292 §3).
    pub(crate) fn authorization(
        &self,
        audience: &str,
        expires: u64,
        contact: &str,
    ) -> Result<String, String> {
        let input = signing_input(audience, expires, contact);
        let signature = self
            .key
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| "signing the VAPID JWT failed".to_string())?;
        Ok(format!(
            "vapid t={input}.{}, k={}",
            URL_SAFE_NO_PAD.encode(signature.as_ref()),
            self.public_b64
        ))
    }
}

/// `header.claims` of a VAPID JWT, both base64url: what the signature covers. The claims are
/// written in RFC 8292's own order and spacing, so its example's input comes out byte for byte.
/// `audience` and `contact` are checked before they get here (printable ASCII without `"` or
/// `\`), so they need no JSON escaping.
pub(crate) fn signing_input(audience: &str, expires: u64, contact: &str) -> String {
    let claims = format!(r#"{{"aud":"{audience}","exp":{expires},"sub":"{contact}"}}"#);
    format!("{JWT_HEADER}.{}", URL_SAFE_NO_PAD.encode(claims))
}

/// Whether `contact` may be a JWT's `sub`: a `mailto:` or `https:` URI (RFC 8292 §2.1) of
/// printable ASCII without quotes or backslashes.
pub(crate) fn check_contact(contact: &str) -> Result<(), String> {
    if !(contact.starts_with("mailto:") || contact.starts_with("https://")) {
        return Err(format!(
            "the push contact {contact:?} must be a mailto: or https: URI"
        ));
    }
    if contact.len() > 200
        || !contact
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        return Err(format!(
            "the push contact {contact:?} must be printable ASCII without quotes or \
             backslashes, at most 200 bytes"
        ));
    }
    Ok(())
}

/// Write `bytes` to `path`, which must not exist, so that a crash leaves either no file or the
/// whole one: a temporary file (mode 0600) written and synced, renamed, and the folder synced.
fn write_new(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let temp = path.with_extension("tmp");
    let _ = fs::remove_file(&temp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    /// RFC 8292 §2.4's example: its claims give its JWT's signing input byte for byte, and its
    /// signature verifies over our input under its key, read the way ours are (an uncompressed
    /// point, `r ‖ s`).
    #[test]
    fn rfc_8292_example() {
        let header = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9";
        let claims = "eyJhdWQiOiJodHRwczovL3B1c2guZXhhbXBsZS5uZXQiLCJleHAiOjE0NTM1MjM3NjgsInN1YiI6\
                      Im1haWx0bzpwdXNoQGV4YW1wbGUuY29tIn0";
        let signature = "i3CYb7t4xfxCDquptFOepC9GAu_HLGkMlMuCGSK2rpiUfnK9ojFwDXb1JrErtmysazNjjvW2L9\
                         OkSSHzvoD1oA";
        let key = "BA1Hxzyi1RUM1b5wjxsn7nGxAszw2u61m164i3MrAIxHF6YK5h4SDYic-dRuU_RCPCfA5aq9ojSwk5\
                   Y2EmClBPs";
        let input = signing_input(
            "https://push.example.net",
            1_453_523_768,
            "mailto:push@example.com",
        );
        assert_eq!(input, format!("{header}.{claims}"));
        let key = URL_SAFE_NO_PAD.decode(key).expect("the RFC's key");
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .expect("the RFC's signature");
        assert_eq!((key.len(), signature.len()), (PUSH_VAPID_KEY_LEN, 64));
        let verifier = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key);
        verifier
            .verify(input.as_bytes(), &signature)
            .expect("the RFC's signature verifies over our input");
        let other = signing_input(
            "https://push.example.net",
            1_453_523_769,
            "mailto:push@example.com",
        );
        assert!(verifier.verify(other.as_bytes(), &signature).is_err());
    }

    #[test]
    fn our_jwt_verifies_with_our_public_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let vapid = Vapid::open(dir.path()).expect("a new key");
        let header = vapid
            .authorization("https://fcm.googleapis.com", 1_700_000_000, "mailto:a@b.c")
            .expect("signed");
        let rest = header.strip_prefix("vapid t=").expect("the scheme");
        let (jwt, k) = rest.split_once(", k=").expect("t and k");
        assert_eq!(
            URL_SAFE_NO_PAD.decode(k).expect("base64url"),
            vapid.public_key()
        );
        let (input, signature) = jwt.rsplit_once('.').expect("three parts");
        let signature = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, vapid.public_key())
            .verify(input.as_bytes(), &signature)
            .expect("verifies");
        let (_, claims) = input.split_once('.').expect("header and claims");
        let claims = URL_SAFE_NO_PAD.decode(claims).expect("base64url");
        assert_eq!(
            String::from_utf8(claims).expect("utf-8"),
            r#"{"aud":"https://fcm.googleapis.com","exp":1700000000,"sub":"mailto:a@b.c"}"#
        );
        // The same key comes back, and the file is the owner's alone.
        let again = Vapid::open(dir.path()).expect("reloads");
        assert_eq!(again.public_key(), vapid.public_key());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_damaged_key_stops_the_relay_rather_than_being_replaced() {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(dir.path().join(KEY_FILE), b"not a key").expect("write");
        let error = Vapid::open(dir.path()).err().expect("refused");
        assert!(error.contains("does not load"), "{error}");
        assert_eq!(
            fs::read(dir.path().join(KEY_FILE)).expect("kept"),
            b"not a key"
        );
    }

    #[test]
    fn contacts() {
        assert!(check_contact("mailto:ops@example.com").is_ok());
        assert!(check_contact("https://relay.example.com").is_ok());
        assert!(check_contact("ops@example.com").is_err());
        assert!(check_contact("mailto:a\"b").is_err());
        assert!(check_contact("mailto:a b").is_err());
    }
}
