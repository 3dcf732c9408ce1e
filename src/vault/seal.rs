//! The sealed-value format: AES-256-GCM with the key's id in the clear
//! and the value's place bound as associated data.
//!
//! ```text
//! byte 0        format (1)
//! byte 1        L, the key id's length (1..=64)
//! bytes 2..2+L  the key id (which data key, epoch or KEK sealed it)
//! 12 bytes      the nonce (random; a key seals few values)
//! the rest      ciphertext, then the 16-byte tag
//! ```
//!
//! The associated data is `DOMAIN`, the header (format, length, key id)
//! and the place, each part length-prefixed: a value opens only under its
//! own key id and at its own place. Nothing here decrypts before the tag
//! has verified, and every length is checked before it is used, so any
//! bytes at all give a value or an error, never a panic.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};

use super::error::VaultError;
use super::secret::Secret;

const FORMAT: u8 = 1;
/// The longest key id a header carries.
pub const MAX_KEY_ID: usize = 64;
const TAG_LEN: usize = 16;
const DOMAIN: &[u8] = b"casebridge/vault/v1";

/// Where a sealed value belongs: what its associated data binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place<'a> {
    /// A record of the store: its tree and its key.
    Record { tree: &'a str, key: &'a [u8] },
    /// An epoch key, wrapped under the KEK.
    Epoch(u64),
    /// A data key, wrapped under an epoch key, for what it protects.
    DataKey(&'a [u8]),
    /// A backup's key, wrapped under the KEK.
    Backup(u64),
}

impl Place<'_> {
    fn bind(&self, aad: &mut Vec<u8>) {
        let mut part = |bytes: &[u8]| {
            aad.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            aad.extend_from_slice(bytes);
        };
        match self {
            Place::Record { tree, key } => {
                part(b"record");
                part(tree.as_bytes());
                part(key);
            }
            Place::Epoch(id) => {
                part(b"epoch");
                part(&id.to_be_bytes());
            }
            Place::DataKey(owner) => {
                part(b"data-key");
                part(owner);
            }
            Place::Backup(id) => {
                part(b"backup");
                part(&id.to_be_bytes());
            }
        }
    }
}

/// Names a place in an error without its key's bytes (a record key holds
/// ids and tokens, but an error message is no place for either).
impl std::fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Record { tree, key } => write!(f, "tree {tree}, a key of {} bytes", key.len()),
            Place::Epoch(id) => write!(f, "epoch {id}"),
            Place::DataKey(owner) => write!(f, "a data key of {} bytes' owner", owner.len()),
            Place::Backup(id) => write!(f, "backup key {id}"),
        }
    }
}

fn associated(header: &[u8], place: &Place<'_>) -> Vec<u8> {
    let mut aad = Vec::with_capacity(DOMAIN.len() + header.len() + 64);
    aad.extend_from_slice(DOMAIN);
    aad.extend_from_slice(&(header.len() as u32).to_be_bytes());
    aad.extend_from_slice(header);
    place.bind(&mut aad);
    aad
}

fn aes(key: &Secret) -> RandomizedNonceKey {
    RandomizedNonceKey::new(&AES_256_GCM, key.expose()).expect("a 32-byte key is an AES-256 key")
}

/// `plaintext` sealed under `key`, named `key_id`, for `place`.
///
/// # Panics
/// When `key_id` is empty or longer than [`MAX_KEY_ID`]: ids are made by
/// this module's callers, never read from outside.
pub fn seal(key: &Secret, key_id: &[u8], place: Place<'_>, plaintext: &[u8]) -> Vec<u8> {
    let header = header(key_id);
    let aad = associated(&header, &place);
    let mut body = plaintext.to_vec();
    let nonce = aes(key)
        .seal_in_place_append_tag(Aad::from(aad.as_slice()), &mut body)
        .expect("AES-GCM seals any length a store holds");
    let mut out = header;
    out.reserve(NONCE_LEN + body.len());
    out.extend_from_slice(nonce.as_ref());
    out.extend_from_slice(&body);
    out
}

/// The header of a value sealed under `key_id`.
fn header(key_id: &[u8]) -> Vec<u8> {
    assert!(
        (1..=MAX_KEY_ID).contains(&key_id.len()),
        "a key id of 1 to {MAX_KEY_ID} bytes"
    );
    let mut header = Vec::with_capacity(2 + key_id.len());
    header.push(FORMAT);
    header.push(key_id.len() as u8);
    header.extend_from_slice(key_id);
    header
}

/// [`seal`] with the AES-256-GCM done elsewhere (inside a PKCS#11 token):
/// `aead(nonce, associated data, plaintext)` returns the ciphertext and
/// its 16-byte tag. The format and what is bound are this module's.
pub fn seal_by(
    key_id: &[u8],
    place: Place<'_>,
    plaintext: &[u8],
    aead: impl FnOnce(&[u8; NONCE_LEN], &[u8], &[u8]) -> Result<Vec<u8>, VaultError>,
) -> Result<Vec<u8>, VaultError> {
    let header = header(key_id);
    let aad = associated(&header, &place);
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).expect("the system RNG is available");
    let body = aead(&nonce, &aad, plaintext)?;
    if body.len() != plaintext.len() + TAG_LEN {
        return Err(VaultError::Malformed("the token returned no 16-byte tag"));
    }
    let mut out = header;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    Ok(out)
}

/// [`open`] with the AES-256-GCM done elsewhere: `aead(nonce, associated
/// data, ciphertext and tag)` returns the plaintext, or fails when the
/// tag does not verify.
pub fn open_by(
    place: Place<'_>,
    sealed: &[u8],
    aead: impl FnOnce(&[u8], &[u8], &[u8]) -> Option<Vec<u8>>,
) -> Result<Vec<u8>, VaultError> {
    let (header, id, nonce, body) = split(sealed)?;
    let aad = associated(header, &place);
    aead(nonce, &aad, body).ok_or_else(|| VaultError::DoesNotOpen {
        key_id: crate::text::hex(id),
        place: place.to_string(),
    })
}

/// The key id a sealed value names, to fetch its key before [`open`].
pub fn peek_key_id(sealed: &[u8]) -> Result<&[u8], VaultError> {
    split(sealed).map(|(_, id, _, _)| id)
}

/// (header, key id, nonce, ciphertext and tag), every length checked.
#[allow(clippy::type_complexity)]
fn split(sealed: &[u8]) -> Result<(&[u8], &[u8], &[u8], &[u8]), VaultError> {
    let (&format, rest) = sealed.split_first().ok_or(VaultError::Malformed("empty"))?;
    if format != FORMAT {
        return Err(VaultError::Malformed("not a sealed value of format 1"));
    }
    let (&len, rest) = rest
        .split_first()
        .ok_or(VaultError::Malformed("cut short in its header"))?;
    let len = usize::from(len);
    if !(1..=MAX_KEY_ID).contains(&len) {
        return Err(VaultError::Malformed("key id length out of range"));
    }
    if rest.len() < len + NONCE_LEN + TAG_LEN {
        return Err(VaultError::Malformed("cut short"));
    }
    let (id, rest) = rest.split_at(len);
    let (nonce, body) = rest.split_at(NONCE_LEN);
    Ok((&sealed[..2 + len], id, nonce, body))
}

/// The plaintext of `sealed`, if it was sealed under `key` for `place`.
pub fn open(key: &Secret, place: Place<'_>, sealed: &[u8]) -> Result<Vec<u8>, VaultError> {
    let (header, id, nonce, body) = split(sealed)?;
    let aad = associated(header, &place);
    let nonce = Nonce::try_assume_unique_for_key(nonce)
        .map_err(|_| VaultError::Malformed("nonce length"))?;
    let mut buf = body.to_vec();
    let plain = aes(key)
        .open_in_place(nonce, Aad::from(aad.as_slice()), &mut buf)
        .map_err(|_| VaultError::DoesNotOpen {
            key_id: crate::text::hex(id),
            place: place.to_string(),
        })?;
    Ok(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record<'a>(tree: &'a str, key: &'a [u8]) -> Place<'a> {
        Place::Record { tree, key }
    }

    /// An AES-256-GCM done elsewhere, as a token does it, with aws-lc-rs.
    fn elsewhere(key: &Secret) -> aws_lc_rs::aead::LessSafeKey {
        let unbound = aws_lc_rs::aead::UnboundKey::new(&AES_256_GCM, key.expose()).unwrap();
        aws_lc_rs::aead::LessSafeKey::new(unbound)
    }

    proptest! {
        /// A value sealed by a token (`seal_by`) opens with `open`, and one
        /// sealed here opens in a token (`open_by`): one format, one
        /// binding, whoever does the AES.
        #[test]
        fn sealing_in_a_token_frames_as_sealing_here(
            plain in proptest::collection::vec(any::<u8>(), 0..300),
            tree in "[a-z]{1,12}",
            key_bytes in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let key = Secret::random();
            let place = record(&tree, &key_bytes);
            let by_token = seal_by(b"kek-1", place, &plain, |nonce, aad, p| {
                let mut buf = p.to_vec();
                elsewhere(&key).seal_in_place_append_tag(
                    Nonce::assume_unique_for_key(*nonce), Aad::from(aad), &mut buf).unwrap();
                Ok(buf)
            }).unwrap();
            prop_assert_eq!(open(&key, place, &by_token).unwrap(), plain.clone());
            let here = seal(&key, b"kek-1", place, &plain);
            let opened = open_by(place, &here, |nonce, aad, body| {
                let mut buf = body.to_vec();
                let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
                elsewhere(&key).open_in_place(nonce, Aad::from(aad), &mut buf).ok().map(|p| p.to_vec())
            }).unwrap();
            prop_assert_eq!(opened, plain);
            let elsewhere_place = record("other", &key_bytes);
            prop_assert!(open(&key, elsewhere_place, &by_token).is_err());
        }
    }

    proptest! {
        /// What is sealed opens, at its place, under its key, and nowhere else.
        #[test]
        fn a_value_opens_only_under_its_key_at_its_place(
            plain in prop::collection::vec(any::<u8>(), 0..512),
            key_id in prop::collection::vec(any::<u8>(), 1..=MAX_KEY_ID),
            tree in "[a-z_]{1,12}",
            key in prop::collection::vec(any::<u8>(), 0..40),
            other in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let secret = Secret::random();
            let sealed = seal(&secret, &key_id, record(&tree, &key), &plain);
            prop_assert_eq!(peek_key_id(&sealed).unwrap(), key_id.as_slice());
            prop_assert_eq!(open(&secret, record(&tree, &key), &sealed).unwrap(), plain.clone());
            if other != key {
                prop_assert!(open(&secret, record(&tree, &other), &sealed).is_err(), "moved to another key");
            }
            prop_assert!(open(&secret, record("elsewhere", &key), &sealed).is_err(), "moved to another tree");
            prop_assert!(open(&Secret::random(), record(&tree, &key), &sealed).is_err(), "another key");
            prop_assert!(!sealed.windows(plain.len().max(8)).any(|w| plain.len() >= 8 && w == plain.as_slice()), "no plaintext in the clear");
        }

        /// Any one byte changed, anywhere, and the value does not open.
        #[test]
        fn any_altered_byte_is_refused(
            plain in prop::collection::vec(any::<u8>(), 0..128),
            at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let secret = Secret::random();
            let place = Place::DataKey(b"alert-1");
            let mut sealed = seal(&secret, b"dk", place, &plain);
            let i = at.index(sealed.len());
            sealed[i] ^= flip;
            prop_assert!(open(&secret, place, &sealed).is_err());
        }

        /// Any bytes at all, cut anywhere: an error, never a panic.
        #[test]
        fn arbitrary_and_truncated_bytes_are_errors(
            junk in prop::collection::vec(any::<u8>(), 0..200),
            cut in any::<prop::sample::Index>(),
        ) {
            let secret = Secret::random();
            let place = Place::Epoch(7);
            prop_assert!(open(&secret, place, &junk).is_err());
            let sealed = seal(&secret, b"kek", place, b"an epoch key");
            let short = &sealed[..cut.index(sealed.len())];
            prop_assert!(open(&secret, place, short).is_err());
        }
    }

    #[test]
    fn places_bind_their_kind_and_the_header_its_key_id() {
        let secret = Secret::random();
        let sealed = seal(&secret, b"e1", Place::Epoch(1), b"x");
        assert!(open(&secret, Place::Epoch(2), &sealed).is_err());
        assert!(open(&secret, Place::DataKey(&1u64.to_be_bytes()), &sealed).is_err());
        // The same key under another name does not open either.
        let mut renamed = sealed.clone();
        renamed[2] = b'f';
        assert!(matches!(
            open(&secret, Place::Epoch(1), &renamed),
            Err(VaultError::DoesNotOpen { .. })
        ));
        let message = open(&secret, Place::Epoch(2), &sealed)
            .unwrap_err()
            .to_string();
        assert!(message.contains("under key 6531 at epoch 2"), "{message}");
    }
}
