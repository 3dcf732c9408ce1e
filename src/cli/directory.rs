//! `casebridge directory …`: the federation operator's tooling for the
//! signed federation directory (docs/directory.md). Each change writes the
//! next version, unsigned, to a file; each operator signs that file with
//! their own key, on their own machine, one after another; `verify` says
//! whose signatures it carries and whether the threshold is reached.
//! Mistakes are refused with the field named, before anyone signs.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::{Args, Subcommand};

use super::exit::{Exit, Failure, failure};
use crate::directory::{Signed, document, signed::key_id, trust};
use crate::ed25519::{PublicKey, SigningKey};
use crate::proto::v1::{
    Directory, DirectoryKeyService, DirectoryMember, DirectorySigner, GetDirectoryRequest,
    PublishDirectoryRequest, SignerSet,
};

#[derive(Subcommand)]
pub enum DirectoryCommand {
    /// Write a new operator signing key (Ed25519, mode 0600, never
    /// overwritten) and its public key beside it (`KEY.pub`).
    Keygen {
        /// Where to write the private key (refused if it exists).
        #[arg(long)]
        out: PathBuf,
    },
    /// Start a federation's directory: version 1, no members yet, and the
    /// operator keys that sign the next versions.
    New {
        /// The federation's name, as in every node.toml.
        #[arg(long)]
        federation: String,
        #[command(flatten)]
        signers: SignerArgs,
        #[command(flatten)]
        next: Next,
    },
    /// The next version, with an agency added.
    Add {
        /// The directory to start from.
        file: PathBuf,
        #[command(flatten)]
        member: MemberArgs,
        #[command(flatten)]
        next: Next,
    },
    /// The next version, without an agency: its connections are refused.
    Remove {
        /// The directory to start from.
        file: PathBuf,
        /// The member's agency id.
        #[arg(long)]
        agency: String,
        #[command(flatten)]
        next: Next,
    },
    /// The next version, with an agency suspended (or resumed): listed,
    /// but refused as a removed one is.
    Suspend {
        /// The directory to start from.
        file: PathBuf,
        /// The member's agency id.
        #[arg(long)]
        agency: String,
        /// Lift the suspension instead.
        #[arg(long)]
        resume: bool,
        #[command(flatten)]
        next: Next,
    },
    /// The next version, with the key service's endpoints and the OPRF
    /// public keys nodes pin (published once, for every node).
    SetKeyservice {
        /// The directory to start from.
        file: PathBuf,
        /// host:port of a key service instance (repeat).
        #[arg(long = "endpoint", value_name = "HOST:PORT")]
        endpoints: Vec<String>,
        /// The public key file (`casebridge keyservice keys public`).
        #[arg(long)]
        public_keys: PathBuf,
        #[command(flatten)]
        next: Next,
    },
    /// The next version, carrying the federation CA's revocation list:
    /// every node refuses the certificates it lists, on both listeners,
    /// once it adopts the version (beside its own CRL files).
    SetCrl {
        /// The directory to start from.
        file: PathBuf,
        /// The CRL (PEM), as `casebridge certs revoke` writes it.
        #[arg(long, conflicts_with = "none", required_unless_present = "none")]
        crl: Option<PathBuf>,
        /// Carry no list.
        #[arg(long)]
        none: bool,
        #[command(flatten)]
        next: Next,
    },
    /// The next version, with the federation's statistics plan from a TOML
    /// file (docs/statistics.md), checked to the line and column; or none.
    SetStatistics {
        /// The directory to start from.
        file: PathBuf,
        /// The plan (`stats-plan.toml`).
        #[arg(long, conflicts_with = "none", required_unless_present = "none")]
        plan: Option<PathBuf>,
        /// Carry no plan: members stop computing statistics.
        #[arg(long)]
        none: bool,
        #[command(flatten)]
        next: Next,
    },
    /// The next version, with a new signer set: the current set's threshold
    /// and the new set's must both sign it.
    SetSigners {
        /// The directory to start from.
        file: PathBuf,
        #[command(flatten)]
        signers: SignerArgs,
        #[command(flatten)]
        next: Next,
    },
    /// The next version, unchanged but for its times: before the one in
    /// force expires.
    Renew {
        /// The directory to start from.
        file: PathBuf,
        #[command(flatten)]
        next: Next,
    },
    /// Add your signature to FILE (in place).
    Sign {
        /// The directory file to sign (a draft passed around).
        file: PathBuf,
        /// Your operator key (`directory keygen`).
        #[arg(long)]
        key: PathBuf,
    },
    /// Whose signatures FILE carries, whether the threshold is reached and
    /// when it expires; exit 1 unless a node would adopt it.
    Verify {
        /// The directory file to check.
        file: PathBuf,
        /// The directory in force: FILE must be its successor. Without it,
        /// FILE is checked as a first directory (its own signers' threshold).
        #[arg(long)]
        trusted: Option<PathBuf>,
    },
    /// Offer FILE to a running node (`--client-config` of an admin
    /// client): it adopts it if it follows from the version in force, and
    /// its peers fetch it from there.
    Publish {
        /// The signed directory file.
        file: PathBuf,
    },
    /// The directory a running node follows, and the versions it adopted
    /// before (`--client-config` of an admin client).
    Current,
    /// Print FILE: version, expiry, signers, members.
    Show {
        /// The directory file to print.
        file: PathBuf,
        /// The directory as protobuf JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct SignerArgs {
    /// An operator key that may sign: NAME=PATH of its public key (repeat).
    #[arg(long = "signer", value_name = "NAME=KEY.pub", required = true)]
    signers: Vec<String>,
    /// How many of them must sign each next version.
    #[arg(long)]
    threshold: u32,
}

#[derive(Args)]
pub struct MemberArgs {
    /// The agency id (as in its certificate's SPIFFE id).
    #[arg(long)]
    agency: String,
    /// How people call it.
    #[arg(long)]
    name: String,
    /// law_enforcement, labour_inspectorate, ngo or other.
    #[arg(long)]
    kind: String,
    /// A group sharing rules can name as `group:NAME` (repeat).
    #[arg(long = "group", value_name = "NAME")]
    groups: Vec<String>,
    /// host:port of its peer listener (repeat; most preferred first).
    #[arg(long = "endpoint", value_name = "HOST:PORT", required = true)]
    endpoints: Vec<String>,
    /// Pin its node certificate's key: the PEM certificate it will present.
    #[arg(long)]
    certificate: Option<PathBuf>,
}

#[derive(Args)]
pub struct Next {
    /// Where to write the new version (unsigned).
    #[arg(long)]
    out: PathBuf,
    /// Days from now until it expires.
    #[arg(long, default_value_t = 30)]
    valid_days: u32,
    /// Change a draft nobody has adopted yet, keeping its version (its
    /// signatures are dropped: they signed the old content).
    #[arg(long)]
    amend: bool,
}

pub async fn run(command: DirectoryCommand, client_config: Option<&Path>) -> Result<(), Failure> {
    match command {
        DirectoryCommand::Publish { file } => publish(&file, client_config).await,
        DirectoryCommand::Current => current(client_config).await,
        DirectoryCommand::Keygen { out } => keygen(&out),
        DirectoryCommand::New {
            federation,
            signers,
            next,
        } => {
            let start = Directory {
                federation,
                signers: Some(signer_set(&signers)?),
                ..Default::default()
            };
            write_next(start, &next, true)
        }
        DirectoryCommand::Add { file, member, next } => {
            let mut d = read(&file)?.directory().clone();
            add(&mut d, member)?;
            write_next(d, &next, false)
        }
        DirectoryCommand::Remove { file, agency, next } => {
            let mut d = read(&file)?.directory().clone();
            let at = position(&d, &agency)?;
            d.members.remove(at);
            write_next(d, &next, false)
        }
        DirectoryCommand::Suspend {
            file,
            agency,
            resume,
            next,
        } => {
            let mut d = read(&file)?.directory().clone();
            let at = position(&d, &agency)?;
            d.members[at].suspended = !resume;
            write_next(d, &next, false)
        }
        DirectoryCommand::SetKeyservice {
            file,
            endpoints,
            public_keys,
            next,
        } => {
            let mut d = read(&file)?.directory().clone();
            d.key_service = Some(key_service(endpoints, &public_keys, &d.federation)?);
            write_next(d, &next, false)
        }
        DirectoryCommand::SetCrl {
            file,
            crl,
            none: _,
            next,
        } => {
            let mut d = read(&file)?.directory().clone();
            d.federation_crl_pem = match crl {
                Some(path) => crl_pem(&path)?,
                None => String::new(),
            };
            write_next(d, &next, false)
        }
        DirectoryCommand::SetStatistics {
            file,
            plan,
            none: _,
            next,
        } => {
            let mut d = read(&file)?.directory().clone();
            d.statistics = match plan {
                Some(path) => Some(
                    crate::config::load_stats_plan(&path).map_err(|e| failure(Exit::DataErr, e))?,
                ),
                None => None,
            };
            write_next(d, &next, false)
        }
        DirectoryCommand::SetSigners {
            file,
            signers,
            next,
        } => {
            let mut d = read(&file)?.directory().clone();
            d.signers = Some(signer_set(&signers)?);
            write_next(d, &next, false)
        }
        DirectoryCommand::Renew { file, next } => {
            let d = read(&file)?.directory().clone();
            write_next(d, &next, false)
        }
        DirectoryCommand::Sign { file, key } => sign(&file, &key),
        DirectoryCommand::Verify { file, trusted } => verify(&file, trusted.as_deref()),
        DirectoryCommand::Show { file, json } => show(&read(&file)?, json),
    }
}

fn keygen(out: &Path) -> Result<(), Failure> {
    let key = SigningKey::create(out).map_err(|e| failure(Exit::Usage, e))?;
    println!(
        "wrote {} and {}\nkey id {}",
        out.display(),
        crate::ed25519::public_key_path(out).display(),
        key_id(&key.public())
    );
    Ok(())
}

/// Reads a directory file: DSSE JSON, its problems as `FILE:line:column`.
fn read(path: &Path) -> Result<Signed, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| failure(Exit::NotFound, anyhow!("{}: {e}", path.display())))?;
    Signed::from_json(&text).map_err(|e| {
        let at = match &e {
            crate::directory::signed::EnvelopeError::Json { line, column, .. } => {
                format!("{}:{line}:{column}", path.display())
            }
            _ => path.display().to_string(),
        };
        failure(Exit::DataErr, anyhow!("{at}: {e}"))
    })
}

/// Writes `d` as the next version (or, amending, as the same version)
/// with fresh times, unsigned, refusing it when it breaks a rule.
fn write_next(mut d: Directory, next: &Next, first: bool) -> Result<(), Failure> {
    if !next.amend {
        d.version = if first { 1 } else { d.version + 1 };
    }
    let now = crate::time::now_ms() / 1000;
    d.issued_at = now;
    d.expires_at = now + i64::from(next.valid_days) * 86_400;
    let signed = Signed::new(d).map_err(|e| failure(Exit::DataErr, e))?;
    write_file(&next.out, &signed.to_json())?;
    let d = signed.directory();
    println!(
        "wrote version {} of {} to {} (unsigned; {} of {} signers must sign it: `casebridge directory sign {} --key …`)",
        d.version,
        d.federation,
        next.out.display(),
        d.signers.as_ref().map_or(0, |s| s.threshold),
        d.signers.as_ref().map_or(0, |s| s.signers.len()),
        next.out.display()
    );
    Ok(())
}

/// Writes `text` to `path` whole or not at all (a new file renamed over
/// it), so a signature is never half-written into a file being passed on.
fn write_file(path: &Path, text: &str) -> Result<(), Failure> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    std::fs::write(&partial, text)
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(|e| failure(Exit::Usage, anyhow!("{}: {e}", path.display())))
}

fn signer_set(args: &SignerArgs) -> Result<SignerSet, Failure> {
    let mut signers = Vec::new();
    for (i, spec) in args.signers.iter().enumerate() {
        let Some((name, path)) = spec.split_once('=') else {
            return Err(usage(format!(
                "--signer #{}: NAME=PATH of a public key",
                i + 1
            )));
        };
        let key = PublicKey::load(Path::new(path)).map_err(|e| failure(Exit::Usage, e))?;
        signers.push(DirectorySigner {
            name: name.to_owned(),
            public_key: key.as_bytes().to_vec(),
        });
    }
    signers.sort_by(|a, b| a.public_key.cmp(&b.public_key));
    if let Some(w) = signers
        .windows(2)
        .find(|w| w[0].public_key == w[1].public_key)
    {
        return Err(usage(format!(
            "--signer: {} and {} are the same key",
            w[0].name, w[1].name
        )));
    }
    Ok(SignerSet {
        signers,
        threshold: args.threshold,
    })
}

fn usage(message: String) -> Failure {
    failure(Exit::Usage, anyhow!(message))
}

fn position(d: &Directory, agency: &str) -> Result<usize, Failure> {
    d.members
        .iter()
        .position(|m| m.agency_id == agency)
        .ok_or_else(|| {
            failure(
                Exit::DataErr,
                anyhow!(
                    "--agency: {} is not a member of version {}",
                    crate::text::quote(agency, 80),
                    d.version
                ),
            )
        })
}

fn add(d: &mut Directory, m: MemberArgs) -> Result<(), Failure> {
    if document::member(d, &m.agency).is_some() {
        return Err(failure(
            Exit::DataErr,
            anyhow!("--agency: {} is already a member", m.agency),
        ));
    }
    let key_sha256 = match &m.certificate {
        Some(path) => certificate_key_sha256(path)?,
        None => String::new(),
    };
    let mut groups = m.groups;
    groups.sort();
    groups.dedup();
    d.members.push(DirectoryMember {
        agency_id: m.agency,
        display_name: m.name,
        kind: m.kind,
        groups,
        endpoints: m.endpoints,
        key_sha256,
        suspended: false,
    });
    d.members.sort_by(|a, b| a.agency_id.cmp(&b.agency_id));
    Ok(())
}

/// The CRL file's text, once it holds at least one revocation list.
fn crl_pem(path: &Path) -> Result<String, Failure> {
    crate::identity::load_crls(path).map_err(|e| failure(Exit::DataErr, e))?;
    std::fs::read_to_string(path)
        .map_err(|e| failure(Exit::NotFound, anyhow!("{}: {e}", path.display())))
}

/// SHA-256 (hex) of the SubjectPublicKeyInfo of the PEM certificate at `path`.
fn certificate_key_sha256(path: &Path) -> Result<String, Failure> {
    let bad = |e: String| failure(Exit::Usage, anyhow!("{}: {e}", path.display()));
    let cert = crate::identity::load_certs(path).map_err(|e| bad(e.to_string()))?;
    let first = cert.first().ok_or_else(|| bad("no certificate".into()))?;
    let key = crate::identity::key_sha256(first).ok_or_else(|| bad("not a certificate".into()))?;
    Ok(crate::text::hex(&key))
}

fn key_service(
    endpoints: Vec<String>,
    public_keys: &Path,
    federation: &str,
) -> Result<DirectoryKeyService, Failure> {
    let pinned = crate::pseudo::oprf_keys::PinnedKeys::load(public_keys)
        .map_err(|e| failure(Exit::Usage, e))?;
    if pinned.federation.as_str() != federation {
        return Err(usage(format!(
            "{}: keys of federation {}, not {federation}",
            public_keys.display(),
            pinned.federation
        )));
    }
    let keys = pinned.to_directory();
    Ok(DirectoryKeyService { endpoints, keys })
}

fn sign(file: &Path, key: &Path) -> Result<(), Failure> {
    let mut signed = read(file)?;
    let key = SigningKey::load(key).map_err(|e| failure(Exit::Usage, e))?;
    let id = key_id(&key.public());
    signed.sign(&key);
    write_file(file, &signed.to_json())?;
    let d = signed.directory();
    let own = d.signers.clone().unwrap_or_default();
    let named = own
        .signers
        .iter()
        .any(|s| PublicKey::from_raw(&s.public_key).is_some_and(|k| key_id(&k) == id));
    println!(
        "signed version {} with key {id}{}",
        d.version,
        if named {
            ""
        } else {
            " (not one of this version's signers: it counts only if the directory in force names it)"
        }
    );
    Ok(())
}

fn verify(file: &Path, trusted: Option<&Path>) -> Result<(), Failure> {
    let offered = read(file)?;
    let now = crate::time::now_ms() / 1000;
    let (verdict, sets) = match trusted {
        Some(path) => {
            let current = read(path)?.directory().clone();
            let verdict = trust::admit(&current, &offered, now);
            let mut sets = vec![("trusted", current.signers.unwrap_or_default())];
            let new = offered.directory().signers.clone().unwrap_or_default();
            if new != sets[0].1 {
                sets.push(("new", new));
            }
            (verdict, sets)
        }
        None => {
            let d = offered.directory();
            let verdict = trust::anchor(&offered, &d.federation);
            (
                verdict,
                vec![("own", d.signers.clone().unwrap_or_default())],
            )
        }
    };
    print_summary(&offered, now);
    for (role, set) in &sets {
        let valid = offered.signed_by(set);
        println!(
            "{role} signers: {} of {} needed",
            valid.len(),
            set.threshold
        );
        for s in &set.signers {
            let signed = PublicKey::from_raw(&s.public_key).is_some_and(|k| valid.contains(&k));
            println!(
                "  [{}] {}",
                if signed { "x" } else { " " },
                crate::text::escape(&s.name)
            );
        }
    }
    match verdict {
        Ok(()) => {
            println!("a node would adopt it");
            Ok(())
        }
        Err(e) => Err(failure(
            Exit::Failure,
            anyhow!("a node would refuse it: {e}"),
        )),
    }
}

fn print_summary(s: &Signed, now: i64) {
    let d = s.directory();
    let left = d.expires_at - now;
    println!(
        "federation {}, version {}, issued {}, expires {} ({})",
        d.federation,
        d.version,
        crate::time::format_ms(d.issued_at * 1000),
        crate::time::format_ms(d.expires_at * 1000),
        if left > 0 {
            format!("in {} days {} hours", left / 86_400, left % 86_400 / 3600)
        } else {
            "expired".to_owned()
        }
    );
    println!("{} signature(s) attached", s.envelope().signatures.len());
}

async fn publish(file: &Path, client_config: Option<&Path>) -> Result<(), Failure> {
    let signed = read(file)?;
    let version = signed.directory().version;
    let mut client = super::session::connect(client_config).await?;
    let state = client
        .admin
        .publish_directory(PublishDirectoryRequest {
            directory: Some(signed.into_envelope()),
        })
        .await?
        .into_inner();
    let in_force = state
        .current
        .and_then(|c| Signed::open(c).ok())
        .map_or(0, |c| c.directory().version);
    println!("version {version} adopted; version {in_force} is in force at the node");
    Ok(())
}

async fn current(client_config: Option<&Path>) -> Result<(), Failure> {
    let mut client = super::session::connect(client_config).await?;
    let state = client
        .admin
        .get_directory(GetDirectoryRequest {})
        .await?
        .into_inner();
    let Some(current) = state.current else {
        println!("this node follows no directory: its peers are [[peers]] in node.toml");
        return Ok(());
    };
    let signed = Signed::open(current).map_err(|e| failure(Exit::Failure, anyhow!(e)))?;
    show(&signed, false)?;
    for a in &state.adopted {
        let at = a
            .adopted_at
            .as_ref()
            .map(|t| crate::time::format_ms(t.seconds * 1000 + i64::from(t.nanos) / 1_000_000))
            .unwrap_or_default();
        println!(
            "adopted version {} at {at} from {}",
            a.version,
            crate::text::escape(&a.source)
        );
    }
    Ok(())
}

fn show(s: &Signed, json: bool) -> Result<(), Failure> {
    let d = s.directory();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(d).map_err(|e| failure(Exit::Failure, e))?
        );
        return Ok(());
    }
    print_summary(s, crate::time::now_ms() / 1000);
    for m in &d.members {
        println!(
            "member {} ({}), {}{}: groups {}; endpoints {}{}",
            m.agency_id,
            crate::text::escape(&m.display_name),
            m.kind,
            if m.suspended { ", SUSPENDED" } else { "" },
            if m.groups.is_empty() {
                "none".to_owned()
            } else {
                m.groups.join(", ")
            },
            m.endpoints.join(", "),
            if m.key_sha256.is_empty() {
                String::new()
            } else {
                format!("; key sha256 {}", m.key_sha256)
            }
        );
    }
    if let Some(ks) = &d.key_service {
        let versions: Vec<String> = ks.keys.iter().map(|k| k.version.to_string()).collect();
        println!(
            "key service {}; OPRF key versions {}",
            ks.endpoints.join(", "),
            versions.join(", ")
        );
    }
    if !d.federation_crl_pem.is_empty() {
        println!("federation CRL: {} bytes (PEM)", d.federation_crl_pem.len());
    }
    Ok(())
}
