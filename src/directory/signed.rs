//! A directory as it travels and is signed: a DSSE envelope
//! (github.com/secure-systems-lab/dsse) holding the exact bytes of one
//! encoded `Directory` and Ed25519 signatures over
//!
//! ```text
//! PAE(type, payload) = "DSSEv1" SP len(type) SP type SP len(payload) SP payload
//! ```
//!
//! (lengths in ASCII decimal, SP one space). That is the canonical
//! encoding signers sign and verifiers check: the bytes as they are, never
//! a re-encoding, so nothing depends on two encoders agreeing, and a newer
//! release may add directory fields an older node skips without breaking a
//! signature. The operator's tooling writes each directory once, with
//! prost (fields in number order, lists sorted by the rules of
//! `document`), and every operator then signs those same bytes.
//!
//! On disk and between operators it is DSSE's JSON form:
//! `{"payloadType": …, "payload": <base64>, "signatures": [{"keyid": …,
//! "sig": <base64>}]}`; a `keyid` is the hex SHA-256 of the raw public key.

use std::collections::BTreeSet;

use base64::Engine;
use prost::Message;
use serde::{Deserialize, Serialize};

use super::document;
use crate::ed25519::{PublicKey, SigningKey};
use crate::proto::v1::{Directory, DirectorySignature, SignedDirectory, SignerSet};
use crate::violation::FieldViolation;

/// The payload type every CaseBridge directory envelope names.
pub const PAYLOAD_TYPE: &str = "application/vnd.casebridge.directory+protobuf";
/// The largest envelope read, from a file or a peer (500 members take
/// about 100 KiB).
pub const MAX_ENVELOPE_BYTES: usize = 8 << 20;
/// Signatures one envelope may carry (every signer of two sets, with room).
pub const MAX_SIGNATURES: usize = 2 * document::MAX_SIGNERS;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the directory is {0} bytes; at most {MAX_ENVELOPE_BYTES}")]
    TooLarge(usize),
    #[error("payloadType: {0:?} is not a CaseBridge directory ({PAYLOAD_TYPE})")]
    PayloadType(String),
    #[error("payload: not an encoded directory ({0})")]
    Payload(String),
    #[error("signatures: at most {MAX_SIGNATURES}")]
    TooManySignatures,
    #[error("signatures[{index}].{field}: {reason}")]
    Signature {
        index: usize,
        field: &'static str,
        reason: &'static str,
    },
    #[error("line {line}, column {column}: {reason}")]
    Json {
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("the directory breaks its rules: {}", list(.0))]
    Invalid(Vec<FieldViolation>),
}

fn list(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

/// DSSE's pre-authentication encoding: what each signature signs.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + payload.len() + 32);
    out.extend_from_slice(
        format!(
            "DSSEv1 {} {payload_type} {} ",
            payload_type.len(),
            payload.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(payload);
    out
}

/// The id a signature names its key by: hex SHA-256 of the raw key.
pub fn key_id(key: &PublicKey) -> String {
    crate::text::hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes()).as_ref())
}

/// An envelope that was read and checked: its bytes as received, and the
/// directory they encode (which follows `document`'s rules).
#[derive(Debug, Clone, PartialEq)]
pub struct Signed {
    envelope: SignedDirectory,
    directory: Directory,
}

impl Signed {
    /// A new, unsigned envelope for `directory`, refused when it breaks a
    /// rule.
    pub fn new(directory: Directory) -> Result<Self, EnvelopeError> {
        let violations = document::check(&directory);
        if !violations.is_empty() {
            return Err(EnvelopeError::Invalid(violations));
        }
        Ok(Self {
            envelope: SignedDirectory {
                payload_type: PAYLOAD_TYPE.into(),
                payload: directory.encode_to_vec(),
                signatures: Vec::new(),
            },
            directory,
        })
    }

    /// Checks an envelope as it arrived: its size and payload type, that
    /// its payload decodes and follows the rules, and the shape of each
    /// signature (not yet whose it is: that depends on who is trusted).
    pub fn open(envelope: SignedDirectory) -> Result<Self, EnvelopeError> {
        let size = envelope.encoded_len();
        if size > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge(size));
        }
        if envelope.payload_type != PAYLOAD_TYPE {
            return Err(EnvelopeError::PayloadType(crate::text::quote(
                &envelope.payload_type,
                80,
            )));
        }
        if envelope.signatures.len() > MAX_SIGNATURES {
            return Err(EnvelopeError::TooManySignatures);
        }
        for (index, s) in envelope.signatures.iter().enumerate() {
            let bad = |field, reason| EnvelopeError::Signature {
                index,
                field,
                reason,
            };
            if s.keyid.len() != 64 || crate::text::unhex(&s.keyid).is_none() {
                return Err(bad(
                    "keyid",
                    "64 hex digits (the SHA-256 of the signer's key)",
                ));
            }
            if s.sig.len() != 64 {
                return Err(bad("sig", "an Ed25519 signature: 64 bytes"));
            }
        }
        let directory = Directory::decode(envelope.payload.as_slice())
            .map_err(|e| EnvelopeError::Payload(e.to_string()))?;
        let violations = document::check(&directory);
        if !violations.is_empty() {
            return Err(EnvelopeError::Invalid(violations));
        }
        Ok(Self {
            envelope,
            directory,
        })
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    pub fn envelope(&self) -> &SignedDirectory {
        &self.envelope
    }

    pub fn into_envelope(self) -> SignedDirectory {
        self.envelope
    }

    /// Adds `key`'s signature over the payload (replacing an earlier one of
    /// the same key, so signing twice changes nothing).
    pub fn sign(&mut self, key: &SigningKey) {
        let keyid = key_id(&key.public());
        let sig = key
            .sign(&pae(&self.envelope.payload_type, &self.envelope.payload))
            .to_vec();
        self.envelope.signatures.retain(|s| s.keyid != keyid);
        self.envelope
            .signatures
            .push(DirectorySignature { keyid, sig });
    }

    /// The keys of `set` with a signature over these exact bytes, each once
    /// however often it signed.
    pub fn signed_by(&self, set: &SignerSet) -> BTreeSet<PublicKey> {
        let message = pae(&self.envelope.payload_type, &self.envelope.payload);
        let keys: Vec<PublicKey> = set
            .signers
            .iter()
            .filter_map(|s| PublicKey::from_raw(&s.public_key))
            .collect();
        let mut out = BTreeSet::new();
        for s in &self.envelope.signatures {
            let Some(key) = keys.iter().find(|k| key_id(k) == s.keyid) else {
                continue;
            };
            if key.verify(&message, &s.sig) {
                out.insert(*key);
            }
        }
        out
    }

    /// The envelope in DSSE's JSON form, as operators pass it around.
    pub fn to_json(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let json = JsonEnvelope {
            payload_type: self.envelope.payload_type.clone(),
            payload: b64.encode(&self.envelope.payload),
            signatures: self
                .envelope
                .signatures
                .iter()
                .map(|s| JsonSignature {
                    keyid: s.keyid.clone(),
                    sig: b64.encode(&s.sig),
                })
                .collect(),
        };
        let mut text = serde_json::to_string_pretty(&json).expect("strings serialize");
        text.push('\n');
        text
    }

    /// Reads DSSE's JSON form (bounded before parsing), then as [`Self::open`].
    pub fn from_json(text: &str) -> Result<Self, EnvelopeError> {
        if text.len() > MAX_ENVELOPE_BYTES * 2 {
            return Err(EnvelopeError::TooLarge(text.len()));
        }
        let json: JsonEnvelope = serde_json::from_str(text).map_err(|e| EnvelopeError::Json {
            line: e.line(),
            column: e.column(),
            reason: e.to_string(),
        })?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let payload = b64
            .decode(&json.payload)
            .map_err(|e| EnvelopeError::Payload(format!("not base64: {e}")))?;
        let mut signatures = Vec::with_capacity(json.signatures.len().min(MAX_SIGNATURES + 1));
        for (index, s) in json
            .signatures
            .into_iter()
            .enumerate()
            .take(MAX_SIGNATURES + 1)
        {
            let sig = b64.decode(&s.sig).map_err(|_| EnvelopeError::Signature {
                index,
                field: "sig",
                reason: "not base64",
            })?;
            signatures.push(DirectorySignature {
                keyid: s.keyid,
                sig,
            });
        }
        Self::open(SignedDirectory {
            payload_type: json.payload_type,
            payload,
            signatures,
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct JsonEnvelope {
    payload_type: String,
    payload: String,
    signatures: Vec<JsonSignature>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSignature {
    keyid: String,
    sig: String,
}
