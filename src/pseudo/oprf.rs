//! Exact tokens no member can compute alone: RFC 9497 VOPRF
//! (ristretto255-SHA512) between a node and the federation's key service.
//!
//! With the HMAC key ring every node holds the secret that makes tokens, so
//! one stolen node can hash every phone number of a country offline and read
//! every token it ever received. Here the secret stays in the key service:
//! a node *blinds* each identifier's input (a random multiple of its
//! hash-to-group point, which tells the service nothing), the service
//! multiplies by its key and proves with one batched DLEQ proof that it used
//! the key whose public half the node pinned, and the node unblinds and
//! hashes (RFC 9497 Finalize). Every token costs one online evaluation the
//! service counts against the node's budget.
//!
//! The group arithmetic, hash-to-group and proofs are the `voprf` crate's
//! (checked against the RFC's own test vectors below); this module only
//! frames inputs, checks lengths (the crate's parsers ignore trailing
//! bytes), and turns an OPRF output into a token.

use aws_lc_rs::hmac;
use thiserror::Error;
use voprf::{BlindedElement, EvaluationElement, Group, Proof, VoprfClient, VoprfServer};

use super::Normalized;

/// RFC 9497 suite ristretto255-SHA512 (identifier `ristretto255-SHA512`).
pub type Suite = voprf::Ristretto255;

/// Bytes of a compressed ristretto255 element (blinded, evaluated, public key).
pub const ELEMENT_BYTES: usize = 32;
/// Bytes of a DLEQ proof (two scalars, c ‖ s).
pub const PROOF_BYTES: usize = 64;
/// Most elements one evaluation may carry: a submit of many subjects or an
/// import batch fits; the proof's cost grows linearly with it.
pub const MAX_BATCH: usize = 1024;

/// Domain separation of OPRF inputs: bump when normalization changes
/// incompatibly (inputs of different schemes give unrelated outputs).
pub const TOKEN_SCHEME: &[u8] = b"casebridge/token/v2";
/// Label of the token derived from an OPRF output (room for other
/// derivations from the same output later).
const TOKEN_LABEL: &[u8] = b"casebridge/token/v2/token";

/// OPRF key versions start here so a token's version alone says which
/// scheme made it: key ring (HMAC) versions stay below.
pub const FIRST_VERSION: u32 = 1001;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum OprfError {
    #[error("identifier too long for an OPRF input ({0} bytes framed; the most is 65,535)")]
    InputTooLong(usize),
    #[error("nothing to evaluate")]
    Empty,
    #[error("{0} elements in one evaluation; the most is {MAX_BATCH}")]
    TooMany(usize),
    #[error("element {index}: {reason}")]
    BadElement { index: usize, reason: String },
    #[error("the key service answered {got} evaluated elements for {sent} sent")]
    CountMismatch { sent: usize, got: usize },
    #[error("the key service's proof has {0} bytes, not {PROOF_BYTES}")]
    BadProof(usize),
    #[error(
        "the key service's proof does not verify against the pinned public key of version {0}: \
         it did not use the federation's key (wrong pinned key, or a misbehaving key service)"
    )]
    ProofRefused(u32),
    #[error("not a public key: {0}")]
    BadPublicKey(String),
    #[error("key derivation: {0}")]
    Key(String),
}

/// The system RNG (aws-lc-rs, the one TLS uses) in the shape `voprf` 0.5
/// asks for (rand_core 0.6 traits; the crate's own RNG types are 0.9).
pub struct SystemRng;

impl rand_core_06::RngCore for SystemRng {
    fn next_u32(&mut self) -> u32 {
        rand_core_06::impls::next_u32_via_fill(self)
    }
    fn next_u64(&mut self) -> u64 {
        rand_core_06::impls::next_u64_via_fill(self)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        aws_lc_rs::rand::fill(dest).expect("the system RNG is available");
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core_06::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core_06::CryptoRng for SystemRng {}

/// The private OPRF input of one normalized identifier: scheme ‖ type ‖
/// value, each length-prefixed (u32 big-endian) so no two (type, value)
/// pairs frame alike. The type is inside the input, so one string under
/// two types gives two unrelated outputs.
pub fn token_input(n: &Normalized) -> Result<Vec<u8>, OprfError> {
    let parts: [&[u8]; 3] = [
        TOKEN_SCHEME,
        n.kind.as_str_name().as_bytes(),
        n.value.as_bytes(),
    ];
    let mut input = Vec::with_capacity(12 + parts.iter().map(|p| p.len()).sum::<usize>());
    for p in parts {
        input.extend_from_slice(&(p.len() as u32).to_be_bytes());
        input.extend_from_slice(p);
    }
    // RFC 9497 Finalize encodes the input's length in two bytes.
    if input.len() > usize::from(u16::MAX) {
        return Err(OprfError::InputTooLong(input.len()));
    }
    Ok(input)
}

/// The 32-byte token of one OPRF output under key `version`: HMAC-SHA256
/// keyed by the output over the label and the version, so the token binds
/// the version it claims and is as long as the key ring's tokens.
pub fn token_from_output(output: &[u8], version: u32) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, output);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(&(TOKEN_LABEL.len() as u32).to_be_bytes());
    ctx.update(TOKEN_LABEL);
    ctx.update(&version.to_be_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

/// A key service's public key, as pinned in a node's `oprf-keys.toml`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(<Suite as Group>::Elem);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublicKey(")?;
        for b in self.to_bytes() {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

impl PublicKey {
    /// Parses 32 bytes: a canonical encoding of a point other than the
    /// identity (the crate refuses the rest).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OprfError> {
        if bytes.len() != ELEMENT_BYTES {
            return Err(OprfError::BadPublicKey(format!(
                "{} bytes, not {ELEMENT_BYTES}",
                bytes.len()
            )));
        }
        <Suite as Group>::deserialize_elem(bytes)
            .map(Self)
            .map_err(|_| OprfError::BadPublicKey("not a valid ristretto255 point".into()))
    }

    pub fn to_bytes(&self) -> [u8; ELEMENT_BYTES] {
        let mut out = [0u8; ELEMENT_BYTES];
        out.copy_from_slice(&<Suite as Group>::serialize_elem(self.0));
        out
    }
}

/// One batch of identifiers blinded by a node: the elements to send and the
/// blinds to unblind the answer with. Blinds live only in memory, for one
/// call; a retry blinds afresh.
pub struct Blinded {
    inputs: Vec<Vec<u8>>,
    clients: Vec<VoprfClient<Suite>>,
    elements: Vec<[u8; ELEMENT_BYTES]>,
}

impl Blinded {
    /// Blinds each input with a fresh random scalar.
    pub fn new(inputs: Vec<Vec<u8>>) -> Result<Self, OprfError> {
        if inputs.is_empty() {
            return Err(OprfError::Empty);
        }
        if inputs.len() > MAX_BATCH {
            return Err(OprfError::TooMany(inputs.len()));
        }
        let mut clients = Vec::with_capacity(inputs.len());
        let mut elements = Vec::with_capacity(inputs.len());
        for (index, input) in inputs.iter().enumerate() {
            let blind = VoprfClient::<Suite>::blind(input, &mut SystemRng).map_err(|e| {
                OprfError::BadElement {
                    index,
                    reason: format!("cannot blind: {e:?}"),
                }
            })?;
            let mut element = [0u8; ELEMENT_BYTES];
            element.copy_from_slice(&blind.message.serialize());
            elements.push(element);
            clients.push(blind.state);
        }
        Ok(Self {
            inputs,
            clients,
            elements,
        })
    }

    /// What goes on the wire: uniformly random-looking group elements.
    pub fn elements(&self) -> &[[u8; ELEMENT_BYTES]] {
        &self.elements
    }

    pub fn len(&self) -> usize {
        self.elements.len()
    }

    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }

    /// Checks the key service's answer (count, lengths, points, and the
    /// batched proof against `pinned`) and derives one token per input, in
    /// order.
    pub fn finish(
        &self,
        version: u32,
        pinned: &PublicKey,
        evaluated: &[Vec<u8>],
        proof: &[u8],
    ) -> Result<Vec<[u8; 32]>, OprfError> {
        if evaluated.len() != self.clients.len() {
            return Err(OprfError::CountMismatch {
                sent: self.clients.len(),
                got: evaluated.len(),
            });
        }
        let messages = evaluated
            .iter()
            .enumerate()
            .map(|(index, e)| parse_element::<EvaluationElement<Suite>>(index, e))
            .collect::<Result<Vec<_>, _>>()?;
        if proof.len() != PROOF_BYTES {
            return Err(OprfError::BadProof(proof.len()));
        }
        let proof = Proof::<Suite>::deserialize(proof).map_err(|_| OprfError::BadProof(64))?;
        let outputs =
            VoprfClient::batch_finalize(&self.inputs, &self.clients, &messages, &proof, pinned.0)
                .map_err(|_| OprfError::ProofRefused(version))?;
        outputs
            .enumerate()
            .map(|(index, out)| {
                out.map(|o| token_from_output(&o, version))
                    .map_err(|e| OprfError::BadElement {
                        index,
                        reason: format!("cannot finalize: {e:?}"),
                    })
            })
            .collect()
    }
}

/// Parses one 32-byte element, refusing other lengths (the crate would
/// read the first 32 bytes of a longer buffer and ignore the rest).
fn parse_element<T>(index: usize, bytes: &[u8]) -> Result<T, OprfError>
where
    T: ParseElement,
{
    if bytes.len() != ELEMENT_BYTES {
        return Err(OprfError::BadElement {
            index,
            reason: format!("{} bytes, not {ELEMENT_BYTES}", bytes.len()),
        });
    }
    T::parse(bytes).ok_or_else(|| OprfError::BadElement {
        index,
        reason: "not a valid ristretto255 point".into(),
    })
}

trait ParseElement: Sized {
    fn parse(bytes: &[u8]) -> Option<Self>;
}

impl ParseElement for EvaluationElement<Suite> {
    fn parse(bytes: &[u8]) -> Option<Self> {
        Self::deserialize(bytes).ok()
    }
}

impl ParseElement for BlindedElement<Suite> {
    fn parse(bytes: &[u8]) -> Option<Self> {
        Self::deserialize(bytes).ok()
    }
}

/// The key service's side of one key version: RFC 9497 DeriveKeyPair from
/// a 32-byte seed with `info` = federation ‖ version, so replicas holding
/// the same seed file serve identical outputs and two versions (or two
/// federations) never share a key.
pub struct ServerKey {
    pub version: u32,
    server: VoprfServer<Suite>,
}

impl ServerKey {
    pub fn derive(seed: &[u8], federation: &str, version: u32) -> Result<Self, OprfError> {
        let mut info = b"casebridge/oprf-key/".to_vec();
        info.extend_from_slice(federation.as_bytes());
        info.push(0);
        info.extend_from_slice(&version.to_be_bytes());
        VoprfServer::new_from_seed(seed, &info)
            .map(|server| Self { version, server })
            .map_err(|e| OprfError::Key(format!("{e:?}")))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.server.get_public_key())
    }

    /// Evaluates a batch of blinded elements with one batched DLEQ proof.
    /// Every element is checked (length, valid non-identity point) before
    /// any is evaluated.
    pub fn evaluate(
        &self,
        blinded: &[Vec<u8>],
    ) -> Result<(Vec<[u8; ELEMENT_BYTES]>, [u8; PROOF_BYTES]), OprfError> {
        if blinded.is_empty() {
            return Err(OprfError::Empty);
        }
        if blinded.len() > MAX_BATCH {
            return Err(OprfError::TooMany(blinded.len()));
        }
        let elements = blinded
            .iter()
            .enumerate()
            .map(|(index, b)| parse_element::<BlindedElement<Suite>>(index, b))
            .collect::<Result<Vec<_>, _>>()?;
        let result = self
            .server
            .batch_blind_evaluate(&mut SystemRng, &elements)
            .map_err(|e| OprfError::Key(format!("{e:?}")))?;
        let evaluated = result
            .messages
            .iter()
            .map(|m| {
                let mut out = [0u8; ELEMENT_BYTES];
                out.copy_from_slice(&m.serialize());
                out
            })
            .collect();
        let mut proof = [0u8; PROOF_BYTES];
        proof.copy_from_slice(&result.proof.serialize());
        Ok((evaluated, proof))
    }

    /// The token of `n` computed directly with the secret key (no blinding):
    /// what only the key service's holder can do. Tests use it to show which
    /// secrets reproduce a token.
    pub fn token_of(&self, n: &Normalized) -> Result<[u8; 32], OprfError> {
        let input = token_input(n)?;
        let out = self
            .server
            .evaluate(&input)
            .map_err(|e| OprfError::Key(format!("{e:?}")))?;
        Ok(token_from_output(&out, self.version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::IdentifierType;
    use proptest::prelude::*;

    fn unhex(s: &str) -> Vec<u8> {
        crate::audit::unhex(s).expect("hex")
    }

    /// RFC 9497 Appendix A.1.2 (ristretto255-SHA512, VOPRF mode), test
    /// vectors 1–3: the key from the seed, each evaluation element from its
    /// blinded element, and the client's verification of the RFC's proof
    /// and its output, through the public API we use.
    #[test]
    fn rfc9497_voprf_ristretto255_vectors() {
        let seed = [0xa3u8; 32];
        let server = VoprfServer::<Suite>::new_from_seed(&seed, b"test key").unwrap();
        let pk = PublicKey(server.get_public_key());
        assert_eq!(
            crate::audit::hex(&pk.to_bytes()),
            "c803e2cc6b05fc15064549b5920659ca4a77b2cca6f04f6b357009335476ad4e"
        );
        struct Vector {
            inputs: &'static [&'static str],
            blinds: &'static [&'static str],
            blinded: &'static [&'static str],
            evaluated: &'static [&'static str],
            proof: &'static str,
            outputs: &'static [&'static str],
        }
        let vectors = [
            Vector {
                inputs: &["00"],
                blinds: &["64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706"],
                blinded: &["863f330cc1a1259ed5a5998a23acfd37fb4351a793a5b3c090b642ddc439b945"],
                evaluated: &["aa8fa048764d5623868679402ff6108d2521884fa138cd7f9c7669a9a014267e"],
                proof: "ddef93772692e535d1a53903db24367355cc2cc78de93b3be5a8ffcc6985dd066d4346421d17bf5117a2a1ff0fcb2a759f58a539dfbe857a40bce4cf49ec600d",
                outputs: &[
                    "b58cfbe118e0cb94d79b5fd6a6dafb98764dff49c14e1770b566e42402da1a7da4d8527693914139caee5bd03903af43a491351d23b430948dd50cde10d32b3c",
                ],
            },
            Vector {
                inputs: &["5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"],
                blinds: &["64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706"],
                blinded: &["cc0b2a350101881d8a4cba4c80241d74fb7dcbfde4a61fde2f91443c2bf9ef0c"],
                evaluated: &["60a59a57208d48aca71e9e850d22674b611f752bed48b36f7a91b372bd7ad468"],
                proof: "401a0da6264f8cf45bb2f5264bc31e109155600babb3cd4e5af7d181a2c9dc0a67154fabf031fd936051dec80b0b6ae29c9503493dde7393b722eafdf5a50b02",
                outputs: &[
                    "8a9a2f3c7f085b65933594309041fc1898d42d0858e59f90814ae90571a6df60356f4610bf816f27afdd84f47719e480906d27ecd994985890e5f539e7ea74b6",
                ],
            },
            Vector {
                inputs: &["00", "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"],
                blinds: &[
                    "64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706",
                    "222a5e897cf59db8145db8d16e597e8facb80ae7d4e26d9881aa6f61d645fc0e",
                ],
                blinded: &[
                    "863f330cc1a1259ed5a5998a23acfd37fb4351a793a5b3c090b642ddc439b945",
                    "90a0145ea9da29254c3a56be4fe185465ebb3bf2a1801f7124bbbadac751e654",
                ],
                evaluated: &[
                    "aa8fa048764d5623868679402ff6108d2521884fa138cd7f9c7669a9a014267e",
                    "cc5ac221950a49ceaa73c8db41b82c20372a4c8d63e5dded2db920b7eee36a2a",
                ],
                proof: "cc203910175d786927eeb44ea847328047892ddf8590e723c37205cb74600b0a5ab5337c8eb4ceae0494c2cf89529dcf94572ed267473d567aeed6ab873dee08",
                outputs: &[
                    "b58cfbe118e0cb94d79b5fd6a6dafb98764dff49c14e1770b566e42402da1a7da4d8527693914139caee5bd03903af43a491351d23b430948dd50cde10d32b3c",
                    "8a9a2f3c7f085b65933594309041fc1898d42d0858e59f90814ae90571a6df60356f4610bf816f27afdd84f47719e480906d27ecd994985890e5f539e7ea74b6",
                ],
            },
        ];
        for v in vectors {
            let inputs: Vec<Vec<u8>> = v.inputs.iter().map(|i| unhex(i)).collect();
            let clients: Vec<VoprfClient<Suite>> = v
                .blinds
                .iter()
                .zip(v.blinded)
                .map(|(b, e)| {
                    VoprfClient::deserialize(&[unhex(b), unhex(e)].concat()).expect("client state")
                })
                .collect();
            // The server's evaluation of each blinded element is the RFC's.
            let blinded: Vec<Vec<u8>> = v.blinded.iter().map(|b| unhex(b)).collect();
            let key = ServerKey {
                version: 0,
                server: server.clone(),
            };
            let (ours, _) = key.evaluate(&blinded).unwrap();
            for (e, want) in ours.iter().zip(v.evaluated) {
                assert_eq!(crate::audit::hex(e), *want);
            }
            // The RFC's proof verifies and the outputs are the RFC's.
            let messages: Vec<EvaluationElement<Suite>> = v
                .evaluated
                .iter()
                .map(|e| EvaluationElement::deserialize(&unhex(e)).unwrap())
                .collect();
            let proof = Proof::<Suite>::deserialize(&unhex(v.proof)).unwrap();
            let outputs: Vec<String> =
                VoprfClient::batch_finalize(&inputs, &clients, &messages, &proof, pk.0)
                    .unwrap()
                    .map(|o| crate::audit::hex(&o.unwrap()))
                    .collect();
            assert_eq!(outputs, v.outputs);
        }
    }

    fn normalized(kind: IdentifierType, value: &str) -> Normalized {
        Normalized {
            kind,
            value: value.into(),
        }
    }

    fn key(version: u32) -> ServerKey {
        ServerKey::derive(&[7u8; 32], "t.cb", version).unwrap()
    }

    #[test]
    fn a_blinded_round_trip_gives_the_direct_token_and_a_wrong_key_is_refused() {
        let k = key(FIRST_VERSION);
        let ids = [
            normalized(IdentifierType::Phone, "+31612345678"),
            normalized(IdentifierType::Email, "a@example.org"),
        ];
        let blinded = Blinded::new(ids.iter().map(|n| token_input(n).unwrap()).collect()).unwrap();
        let (evaluated, proof) = k
            .evaluate(
                &blinded
                    .elements()
                    .iter()
                    .map(|e| e.to_vec())
                    .collect::<Vec<_>>(),
            )
            .unwrap();
        let evaluated: Vec<Vec<u8>> = evaluated.iter().map(|e| e.to_vec()).collect();
        let tokens = blinded
            .finish(FIRST_VERSION, &k.public_key(), &evaluated, &proof)
            .unwrap();
        for (n, t) in ids.iter().zip(&tokens) {
            assert_eq!(*t, k.token_of(n).unwrap());
        }
        // Another key (another version, same seed) does not verify.
        let other = key(FIRST_VERSION + 1);
        assert_eq!(
            blinded.finish(FIRST_VERSION, &other.public_key(), &evaluated, &proof),
            Err(OprfError::ProofRefused(FIRST_VERSION))
        );
        // Elements swapped: the proof no longer covers them.
        let swapped = vec![evaluated[1].clone(), evaluated[0].clone()];
        assert!(
            blinded
                .finish(FIRST_VERSION, &k.public_key(), &swapped, &proof)
                .is_err()
        );
        // Trailing bytes are not ignored.
        let mut long = evaluated.clone();
        long[0].push(0);
        assert!(matches!(
            blinded.finish(FIRST_VERSION, &k.public_key(), &long, &proof),
            Err(OprfError::BadElement { index: 0, .. })
        ));
        assert_eq!(
            blinded.finish(FIRST_VERSION, &k.public_key(), &evaluated[..1], &proof),
            Err(OprfError::CountMismatch { sent: 2, got: 1 })
        );
    }

    #[test]
    fn the_service_refuses_what_is_not_a_blinded_element() {
        let k = key(FIRST_VERSION);
        assert_eq!(k.evaluate(&[]).unwrap_err(), OprfError::Empty);
        assert!(matches!(
            k.evaluate(&[vec![0u8; 32]]),
            Err(OprfError::BadElement { index: 0, .. })
        ));
        assert!(matches!(
            k.evaluate(&[vec![1u8; 31]]),
            Err(OprfError::BadElement { index: 0, .. })
        ));
        assert_eq!(
            k.evaluate(&vec![vec![0u8; 32]; MAX_BATCH + 1]).unwrap_err(),
            OprfError::TooMany(MAX_BATCH + 1)
        );
    }

    #[test]
    fn versions_and_federations_derive_different_keys() {
        let a = ServerKey::derive(&[7u8; 32], "t.cb", 1001).unwrap();
        let b = ServerKey::derive(&[7u8; 32], "t.cb", 1002).unwrap();
        let c = ServerKey::derive(&[7u8; 32], "u.cb", 1001).unwrap();
        assert_ne!(a.public_key(), b.public_key());
        assert_ne!(a.public_key(), c.public_key());
        assert_eq!(
            a.public_key(),
            ServerKey::derive(&[7u8; 32], "t.cb", 1001)
                .unwrap()
                .public_key(),
            "a replica with the same seed serves the same key"
        );
    }

    proptest! {
        /// Distinct (type, value) pairs never share an input (so never a
        /// token), including pairs built to collide under concatenation.
        #[test]
        fn inputs_never_collide(a in "[a-z|0-9]{0,8}", b in "[a-z|0-9]{0,8}") {
            let types = [IdentifierType::Phone, IdentifierType::Email, IdentifierType::OnlineHandle];
            for (i, t1) in types.iter().enumerate() {
                for (j, t2) in types.iter().enumerate() {
                    let x = token_input(&normalized(*t1, &a)).unwrap();
                    let y = token_input(&normalized(*t2, &b)).unwrap();
                    prop_assert_eq!(x == y, i == j && a == b);
                }
            }
        }
    }

    #[test]
    fn over_long_inputs_are_refused_before_blinding() {
        let n = normalized(IdentifierType::Phone, &"9".repeat(70_000));
        assert!(matches!(token_input(&n), Err(OprfError::InputTooLong(_))));
    }
}
