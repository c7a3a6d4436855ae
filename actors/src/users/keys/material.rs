//! Key material: a new Ed25519 or P-256 key pair (`ring`), its public half
//! as an RFC 7517 JWK with an RFC 7638 thumbprint for its `kid`, and its
//! private half sealed at rest (ChaCha20-Poly1305 under a key derived from
//! `auth.key_encryption_secret` with HKDF-SHA-256).
//!
//! Nothing here is hand-rolled: generation, signing and the AEAD are
//! `ring`'s; only the framing (nonce ‖ ciphertext ‖ tag) is ours.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{KeysError, SigningAlg};

/// A freshly generated key pair: the private half as PKCS#8 DER (what
/// jsonwebtoken signs with; zeroed on drop), the public half raw (Ed25519:
/// 32 bytes; P-256: the 65-byte uncompressed point).
pub struct Generated {
    pub private: SecretSlice<u8>,
    pub public: Vec<u8>,
}

/// A new key pair for `alg` (EdDSA or ES256).
pub fn generate(alg: SigningAlg) -> Result<Generated, KeysError> {
    let rng = SystemRandom::new();
    let (private, public) = match alg {
        SigningAlg::EdDSA => {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeysError::Crypto)?;
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| KeysError::Crypto)?;
            (pkcs8.as_ref().to_vec(), pair.public_key().as_ref().to_vec())
        }
        SigningAlg::ES256 => {
            let fixed = &ECDSA_P256_SHA256_FIXED_SIGNING;
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(fixed, &rng).map_err(|_| KeysError::Crypto)?;
            let pair = EcdsaKeyPair::from_pkcs8(fixed, pkcs8.as_ref(), &rng)
                .map_err(|_| KeysError::Crypto)?;
            (pkcs8.as_ref().to_vec(), pair.public_key().as_ref().to_vec())
        }
        SigningAlg::HS256 => return Err(KeysError::Crypto),
    };
    Ok(Generated {
        private: private.into(),
        public,
    })
}

/// A public key as published in the JWKS (RFC 7517 §4, RFC 8037 for OKP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Jwk {
    pub kty: &'static str,
    pub crv: &'static str,
    pub x: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    pub kid: String,
    pub alg: &'static str,
    #[serde(rename = "use")]
    pub use_: &'static str,
}

impl Jwk {
    /// The JWK of the raw public key `public` of `alg`, its `kid` the
    /// RFC 7638 thumbprint (so the same key always has the same `kid`, and
    /// a `kid` names exactly one key). `None`: not a key of that shape.
    pub fn new(alg: SigningAlg, public: &[u8]) -> Option<Self> {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let (kty, crv, x, y) = match alg {
            SigningAlg::EdDSA if public.len() == 32 => ("OKP", "Ed25519", b64(public), None),
            SigningAlg::ES256 if public.len() == 65 && public[0] == 0x04 => {
                ("EC", "P-256", b64(&public[1..33]), Some(b64(&public[33..])))
            }
            _ => return None,
        };
        // RFC 7638 §3.2: the required members only, lexicographic, no spaces.
        let canonical = match &y {
            None => format!(r#"{{"crv":"{crv}","kty":"{kty}","x":"{x}"}}"#),
            Some(y) => format!(r#"{{"crv":"{crv}","kty":"{kty}","x":"{x}","y":"{y}"}}"#),
        };
        Some(Self {
            kty,
            crv,
            kid: b64(&Sha256::digest(canonical.as_bytes())),
            x,
            y,
            alg: alg.as_str(),
            use_: "sig",
        })
    }
}

/// The key-encryption key: ChaCha20-Poly1305 under HKDF-SHA-256 of
/// `auth.key_encryption_secret`. Its Debug shows nothing.
pub struct Kek(LessSafeKey);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek([REDACTED])")
    }
}

/// Fixed salt and info: the derivation is per purpose, not per key (each
/// sealing draws a fresh random nonce, and binds its key's `kid`).
const HKDF_SALT: &[u8] = b"troupe/signing-keys/salt/v1";
const HKDF_INFO: &[u8] = b"troupe/signing-keys/kek/v1";

impl Kek {
    pub fn derive(secret: &SecretString) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT)
            .extract(secret.expose_secret().as_bytes());
        let okm = prk
            .expand(&[HKDF_INFO], &CHACHA20_POLY1305)
            .expect("32 bytes is within HKDF-SHA-256's output");
        Self(LessSafeKey::new(UnboundKey::from(okm)))
    }

    /// `private` sealed for the key `kid`: nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, kid: &str, private: &SecretSlice<u8>) -> Result<Vec<u8>, KeysError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| KeysError::Crypto)?;
        let mut sealed = private.expose_secret().to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| KeysError::Crypto)?;
        let mut framed = nonce.to_vec();
        framed.append(&mut sealed);
        Ok(framed)
    }

    /// The private key sealed for `kid`. [`KeysError::Sealed`] when it does
    /// not open: another key-encryption secret, or another key's blob.
    pub fn open(&self, kid: &str, framed: &[u8]) -> Result<SecretSlice<u8>, KeysError> {
        if framed.len() < NONCE_LEN + aead::MAX_TAG_LEN {
            return Err(KeysError::Sealed);
        }
        let (nonce, sealed) = framed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeysError::Sealed)?;
        let mut buffer = sealed.to_vec();
        let opened = self
            .0
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buffer)
            .map_err(|_| KeysError::Sealed)?;
        let private = opened.to_vec();
        // The buffer held the plaintext too: zero it before it is freed.
        drop(SecretSlice::from(buffer));
        Ok(private.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek(secret: &str) -> Kek {
        Kek::derive(&SecretString::from(secret))
    }

    #[test]
    fn an_ed25519_jwk_has_its_shape_and_a_thumbprint_kid() {
        let key = generate(SigningAlg::EdDSA).unwrap();
        let jwk = Jwk::new(SigningAlg::EdDSA, &key.public).unwrap();
        assert_eq!(
            (jwk.kty, jwk.crv, jwk.alg, jwk.use_),
            ("OKP", "Ed25519", "EdDSA", "sig")
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(&jwk.x).unwrap(), key.public);
        assert_eq!(jwk.y, None);
        assert_eq!(jwk.kid.len(), 43, "base64url of 32 bytes");
        assert_eq!(
            Jwk::new(SigningAlg::EdDSA, &key.public).unwrap().kid,
            jwk.kid
        );
        let other = generate(SigningAlg::EdDSA).unwrap();
        assert_ne!(
            Jwk::new(SigningAlg::EdDSA, &other.public).unwrap().kid,
            jwk.kid
        );
    }

    #[test]
    fn rfc_7638_s_example_thumbprint() {
        // RFC 8037 appendix A.3: the thumbprint of its Ed25519 example key.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let jwk = Jwk::new(SigningAlg::EdDSA, &x).unwrap();
        assert_eq!(jwk.kid, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn a_p256_jwk_has_x_and_y() {
        let key = generate(SigningAlg::ES256).unwrap();
        let jwk = Jwk::new(SigningAlg::ES256, &key.public).unwrap();
        assert_eq!((jwk.kty, jwk.crv, jwk.alg), ("EC", "P-256", "ES256"));
        assert_eq!(URL_SAFE_NO_PAD.decode(&jwk.x).unwrap(), key.public[1..33]);
        assert_eq!(
            URL_SAFE_NO_PAD.decode(jwk.y.unwrap()).unwrap(),
            key.public[33..]
        );
        assert!(Jwk::new(SigningAlg::EdDSA, &key.public).is_none());
        assert!(Jwk::new(SigningAlg::HS256, &key.public).is_none());
    }

    #[test]
    fn a_sealed_key_opens_with_its_secret_and_kid_only() {
        let key = generate(SigningAlg::EdDSA).unwrap();
        let sealed = kek("one-secret").seal("kid-1", &key.private).unwrap();
        assert!(!sealed
            .windows(key.private.expose_secret().len())
            .any(|w| w == key.private.expose_secret()));
        let opened = kek("one-secret").open("kid-1", &sealed).unwrap();
        assert_eq!(opened.expose_secret(), key.private.expose_secret());
        for (secret, kid) in [("another-secret", "kid-1"), ("one-secret", "kid-2")] {
            assert!(matches!(
                kek(secret).open(kid, &sealed),
                Err(KeysError::Sealed)
            ));
        }
        assert!(matches!(
            kek("one-secret").open("kid-1", &sealed[..20]),
            Err(KeysError::Sealed)
        ));
        // Two sealings of one key differ (a fresh nonce each).
        assert_ne!(
            kek("one-secret").seal("kid-1", &key.private).unwrap(),
            sealed
        );
        assert_eq!(format!("{:?}", kek("one-secret")), "Kek([REDACTED])");
    }
}
