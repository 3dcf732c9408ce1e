//! `casebridge keys …` and `casebridge pseudo …`: the matching key ring and a
//! look at what normalization and tokenization do with one identifier.

use std::path::PathBuf;

use anyhow::anyhow;
use base64::Engine as _;
use clap::{Args, Subcommand, ValueEnum};
use time::OffsetDateTime;

use super::exit::{Exit, Failure, failure};
use crate::ids::FederationName;
use crate::proto::v1::{
    AdvertUrl, CryptoWallet, DocumentType, Email, Iban, IdentityDocument, OnlineHandle, PersonName,
    Phone, VehiclePlate, identifier::Kind,
};
use crate::pseudo::{KeyRing, Pseudonymizer, keyring, normalize};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Write a new matching key ring (one key, valid from now). Distribute it
    /// to every node of the federation out of band; it is a shared secret.
    Generate(NewKeyFile),
    /// Add a new key valid from now; current keys stay valid for the overlap,
    /// during which nodes derive tokens under both.
    Rotate {
        /// The key ring file to add a new key to.
        #[arg(long)]
        ring: PathBuf,
        /// Days the old key stays valid beside the new one, so every node
        /// has the new ring before the old key stops matching.
        #[arg(long, default_value_t = 30)]
        overlap_days: u32,
    },
}

/// A key file to create, and the federation it is for: `keys generate` and
/// `keyservice keys generate` take the same two options.
#[derive(Args)]
pub struct NewKeyFile {
    /// The federation the keys are for (as in every node.toml).
    #[arg(long)]
    federation: String,
    /// The file to write (mode 0600; never overwritten).
    #[arg(long)]
    pub out: PathBuf,
}

impl NewKeyFile {
    /// The federation named, checked (a usage error names the option).
    pub fn federation(&self) -> Result<FederationName, Failure> {
        FederationName::new(&self.federation)
            .map_err(|e| failure(Exit::Usage, anyhow!("--federation: {e}")))
    }
}

#[derive(Subcommand)]
pub enum PseudoCommand {
    /// Print the normalized form of one identifier.
    Normalize(IdentifierArgs),
    /// Print the key-ring token(s) of one identifier under the ring's
    /// active keys. With `[key_service]` in node.toml (what `certs init`
    /// writes), a node's exact tokens come from the OPRF key service
    /// instead and differ: the ring then keys person encodings only.
    Token {
        #[command(flatten)]
        id: IdentifierArgs,
        /// The matching key ring (matching-keys.toml).
        #[arg(long)]
        key_ring: PathBuf,
    },
}

/// Identifier types by the names policies, metrics and the audit log use
/// (snake_case); the older kebab-case spellings still work. A policy names
/// passports and national ids together as `document`.
#[derive(Clone, Copy, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum IdType {
    Phone,
    Email,
    Person,
    Passport,
    #[value(alias = "national-id")]
    NationalId,
    Iban,
    #[value(alias = "crypto-wallet")]
    CryptoWallet,
    #[value(alias = "online-handle")]
    OnlineHandle,
    #[value(alias = "vehicle-plate")]
    VehiclePlate,
    #[value(alias = "advert-url")]
    AdvertUrl,
}

#[derive(Args)]
pub struct IdentifierArgs {
    /// The identifier type.
    #[arg(long = "type", value_enum)]
    kind: IdType,
    /// The identifier (number, address, IBAN, handle, plate, URL, document number).
    #[arg(long, default_value = "")]
    value: String,
    /// Phone: region for numbers without country code (e.g. NL).
    #[arg(long, default_value = "")]
    region: String,
    /// Document issuing country or vehicle plate country (ISO 3166-1 alpha-2).
    #[arg(long, default_value = "")]
    country: String,
    /// Crypto wallet chain (e.g. ethereum) or online handle platform (e.g. telegram).
    #[arg(long, default_value = "")]
    on: String,
    /// Person: given names.
    #[arg(long, default_value = "")]
    given: String,
    /// Person: family name.
    #[arg(long, default_value = "")]
    family: String,
    /// Person: date of birth, ISO 8601 (YYYY, YYYY-MM, YYYY-MM-DD or YYYYMMDD).
    #[arg(long, default_value = "")]
    dob: String,
}

impl IdentifierArgs {
    pub(super) fn kind(&self) -> Kind {
        let v = self.value.clone();
        match self.kind {
            IdType::Phone => Kind::Phone(Phone {
                number: v,
                region: self.region.clone(),
            }),
            IdType::Email => Kind::Email(Email { address: v }),
            IdType::Person => Kind::Person(PersonName {
                given_names: self.given.clone(),
                family_name: self.family.clone(),
                date_of_birth: self.dob.clone(),
            }),
            IdType::Passport | IdType::NationalId => Kind::Document(IdentityDocument {
                r#type: if matches!(self.kind, IdType::Passport) {
                    DocumentType::Passport
                } else {
                    DocumentType::NationalId
                } as i32,
                number: v,
                issuing_country: self.country.clone(),
            }),
            IdType::Iban => Kind::Iban(Iban { iban: v }),
            IdType::CryptoWallet => Kind::CryptoWallet(CryptoWallet {
                chain: self.on.clone(),
                address: v,
            }),
            IdType::OnlineHandle => Kind::OnlineHandle(OnlineHandle {
                platform: self.on.clone(),
                handle: v,
            }),
            IdType::VehiclePlate => Kind::VehiclePlate(VehiclePlate {
                country: self.country.clone(),
                plate: v,
            }),
            IdType::AdvertUrl => Kind::AdvertUrl(AdvertUrl { url: v }),
        }
    }

    /// Which flags the identifier type needs, said before anything is
    /// normalized: `--type person` takes names, every other type `--value`.
    pub(super) fn check_flags(&self) -> Result<(), Failure> {
        let missing = match self.kind {
            IdType::Person if self.given.trim().is_empty() && self.family.trim().is_empty() => {
                Some("--type person needs --given and/or --family (and --dob for an exact token)")
            }
            IdType::Person => None,
            _ if self.value.trim().is_empty() => Some("this --type needs --value"),
            _ => None,
        };
        match missing {
            Some(m) => Err(failure(Exit::Usage, anyhow!("{m}"))),
            None => Ok(()),
        }
    }

    fn normalized(&self) -> Result<normalize::Normalized, Failure> {
        self.check_flags()?;
        match normalize::normalize(&self.kind(), None) {
            Ok(Some(n)) => Ok(n),
            Ok(None) => Err(failure(
                Exit::DataErr,
                anyhow!(
                    "a person without date of birth has no exact token (it is only matched fuzzily)"
                ),
            )),
            Err(e) => Err(failure(Exit::DataErr, anyhow!(e))),
        }
    }
}

pub fn keys(command: KeysCommand) -> Result<(), Failure> {
    match command {
        KeysCommand::Generate(new) => {
            let (federation, out) = (new.federation()?, &new.out);
            keyring::generate(out, &federation)?;
            println!(
                "matching key ring for `{federation}` written to {} (mode 0600)",
                out.display()
            );
            println!(
                "copy it to every node of the federation and set matching.key_ring in node.toml"
            );
        }
        KeysCommand::Rotate { ring, overlap_days } => {
            let version = keyring::rotate(&ring, time::Duration::days(overlap_days.into()))?;
            println!(
                "added key version {version}; older keys stay valid for {overlap_days} days. Distribute {} to every node.",
                ring.display()
            );
        }
    }
    Ok(())
}

pub fn pseudo(command: PseudoCommand, json: bool) -> Result<(), Failure> {
    match command {
        PseudoCommand::Normalize(id) => {
            let n = id.normalized()?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"type": n.kind.as_str_name(), "normalized": n.value})
                );
            } else {
                println!("{}", n.value);
            }
        }
        PseudoCommand::Token { id, key_ring } => {
            let n = id.normalized()?;
            let ring = KeyRing::load(&key_ring)?;
            let tokens = Pseudonymizer::new(Some(ring), None).tokens(&n, OffsetDateTime::now_utc());
            if tokens.is_empty() {
                return Err(failure(
                    Exit::Usage,
                    anyhow!("{}: no key is valid now", key_ring.display()),
                ));
            }
            if n.kind != crate::proto::v1::IdentifierType::Person {
                eprintln!(
                    "note: key-ring tokens. A node with [key_service] in its node.toml (what \
                     `certs init` writes) sends the OPRF key service's tokens for {} instead, \
                     which no offline command can compute.",
                    crate::proto::identifier_type_name(n.kind as i32)
                );
            }
            for t in tokens {
                let value = base64::engine::general_purpose::STANDARD.encode(&t.value);
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"type": n.kind.as_str_name(), "keyVersion": t.key_version, "value": value})
                    );
                } else {
                    println!("v{} {value}", t.key_version);
                }
            }
        }
    }
    Ok(())
}
