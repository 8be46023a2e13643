//! RFC 8291 message encryption with the RFC 8188 `aes128gcm` content coding.
//!
//! ```text
//! ecdh_secret = ECDH(as_private, ua_public)
//! IKM   = HKDF(salt = auth_secret, ikm = ecdh_secret,
//!              info = "WebPush: info" 0x00 ua_public as_public, 32)
//! CEK   = HKDF(salt, IKM, "Content-Encoding: aes128gcm" 0x00, 16)
//! NONCE = HKDF(salt, IKM, "Content-Encoding: nonce" 0x00, 12)
//! body  = salt(16) rs(4, BE) idlen(1)=65 as_public(65) AES-128-GCM(plaintext 0x02)
//! ```
//! One record, padding delimiter 0x02, `rs` = 4096. [`encrypt`] takes the
//! application server's key and the salt so a test can reproduce RFC 8291
//! Appendix A byte for byte; [`encrypt_random`] draws both fresh per message.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use hkdf::Hkdf;
use p256::{PublicKey, SecretKey};
use rand::Rng;
use sha2::Sha256;

/// Record size written in the header.
pub const RECORD_SIZE: u32 = 4096;
/// Header bytes: salt 16 + rs 4 + idlen 1 + keyid 65.
pub const HEADER_LEN: usize = 86;
/// Largest plaintext that fits one 4096-byte record: 4096 − 86 − 1 − 16.
pub const MAX_PLAINTEXT: usize = 3993;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("p256dh is not an uncompressed P-256 public key")]
    BadPublicKey,
    #[error("auth secret must be 16 bytes")]
    BadAuthSecret,
    #[error("plaintext of {0} bytes does not fit one record")]
    TooLong(usize),
}

/// Encrypt `plaintext` for the user agent key `ua_public` (65 bytes) and `auth` (16
/// bytes) with the given application-server key and salt.
pub fn encrypt(
    plaintext: &[u8],
    ua_public: &[u8],
    auth: &[u8],
    as_private: &SecretKey,
    salt: &[u8; 16],
) -> Result<Vec<u8>, Error> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(Error::TooLong(plaintext.len()));
    }
    if auth.len() != 16 {
        return Err(Error::BadAuthSecret);
    }
    if ua_public.len() != 65 || ua_public[0] != 4 {
        return Err(Error::BadPublicKey);
    }
    let ua = PublicKey::from_sec1_bytes(ua_public).map_err(|_| Error::BadPublicKey)?;
    let as_public = as_private.public_key().to_sec1_bytes();
    debug_assert_eq!(
        as_public.len(),
        65,
        "sec1 bytes of a P-256 key are uncompressed"
    );
    let shared = p256::ecdh::diffie_hellman(as_private.to_nonzero_scalar(), ua.as_affine());

    let mut key_info = Vec::with_capacity(144);
    key_info.extend_from_slice(b"WebPush: info\0");
    key_info.extend_from_slice(ua_public);
    key_info.extend_from_slice(&as_public);
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(auth), shared.raw_secret_bytes())
        .expand(&key_info, &mut ikm)
        .expect("32 bytes is a valid HKDF-SHA256 length");
    let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let mut cek = [0u8; 16];
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
        .expect("16 bytes is a valid HKDF-SHA256 length");
    let mut nonce = [0u8; 12];
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce)
        .expect("12 bytes is a valid HKDF-SHA256 length");

    let mut record = Vec::with_capacity(plaintext.len() + 1);
    record.extend_from_slice(plaintext);
    record.push(0x02);
    let cipher = Aes128Gcm::new_from_slice(&cek).expect("16-byte key");
    let sealed = cipher
        .encrypt(&Nonce::from(nonce), record.as_slice())
        .expect("AES-GCM encryption of a bounded buffer cannot fail");

    let mut body = Vec::with_capacity(HEADER_LEN + sealed.len());
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(65);
    body.extend_from_slice(&as_public);
    body.extend_from_slice(&sealed);
    Ok(body)
}

/// [`encrypt`] with a fresh ephemeral key pair and a random salt.
pub fn encrypt_random(plaintext: &[u8], ua_public: &[u8], auth: &[u8]) -> Result<Vec<u8>, Error> {
    let mut rng = rand::thread_rng();
    let as_private = SecretKey::random(&mut rng);
    let salt: [u8; 16] = rng.gen();
    encrypt(plaintext, ua_public, auth, &as_private, &salt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// RFC 8291 Appendix A, values as recomputed in VENDORS.md §4.2.
    #[test]
    fn rfc8291_appendix_a_byte_for_byte() {
        let plaintext = b"When I grow up, I want to be a watermelon";
        let as_private = SecretKey::from_slice(&h(
            "c9f58f89813e9f8e872e71f42aa64e1757c9254dcc62b72ddc010bb4043ea11c",
        ))
        .unwrap();
        assert_eq!(
            hex::encode(as_private.public_key().to_sec1_bytes()),
            "04fe33f4ab0dea71914db55823f73b54948f41306d920732dbb9a59a53286482200e597a7b7bc260ba1c227998580992e93973002f3012a28ae8f06bbb78e5ec0f"
        );
        let ua_public = h("042571b2becdfde360551aaf1ed0f4cd366c11cebe555f89bcb7b186a53339173168ece2ebe018597bd30479b86e3c8f8eced577ca59187e9246990db682008b0e");
        let auth = h("05305932a1c7eabe13b6cec9fda48882");
        let salt: [u8; 16] = h("0c6bfaadad67958803092d454676f397").try_into().unwrap();
        let body = encrypt(plaintext, &ua_public, &auth, &as_private, &salt).unwrap();
        assert_eq!(
            hex::encode(&body),
            "0c6bfaadad67958803092d454676f397000010004104fe33f4ab0dea71914db55823f73b54948f41306d920732dbb9a59a53286482200e597a7b7bc260ba1c227998580992e93973002f3012a28ae8f06bbb78e5ec0ff297de5b429bba7153d3a4ae0caa091fd425f3b4b5414add8ab37a19c1bbb05cf5cb5b2a2e0562d558635641ec52812c6c8ff42e95ccb86be7cd"
        );
        assert_eq!(body.len(), 144);
    }

    #[test]
    fn limits_are_enforced() {
        let ua = SecretKey::random(&mut rand::thread_rng())
            .public_key()
            .to_sec1_bytes();
        assert!(encrypt_random(&[0; MAX_PLAINTEXT], &ua, &[1; 16]).is_ok());
        assert_eq!(
            encrypt_random(&[0; MAX_PLAINTEXT + 1], &ua, &[1; 16]),
            Err(Error::TooLong(MAX_PLAINTEXT + 1))
        );
        assert_eq!(
            encrypt_random(b"x", &ua, &[1; 15]),
            Err(Error::BadAuthSecret)
        );
        assert_eq!(
            encrypt_random(b"x", &[4; 65], &[1; 16]),
            Err(Error::BadPublicKey)
        );
    }
}
