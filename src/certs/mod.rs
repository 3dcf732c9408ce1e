//! A development federation PKI, generated with rcgen.
//!
//! One federation CA signs a node certificate per agency; each agency also gets
//! its own local client CA and a few client certificates. A real federation
//! uses its own PKI instead (see `certs/README.md`); the node only relies on
//! the certificate shapes made here: URI SAN SPIFFE ids, server+client EKU.
//!
//! - [`init_federation`]: the whole development federation (CAs,
//!   certificates, configs);
//! - `request`: [`request()`] and [`sign`], for a real federation whose CA
//!   signs what its members ask for;
//! - `crl`: the CRLs `certs init` writes empty and [`revoke`] adds to;
//! - `bundle`: a client certificate with its key and CA as a PKCS#12 file
//!   a browser imports, for the web console;
//! - `keyservice`: the development key service's certificate, keys and
//!   config, and every node's `[key_service]` section ([`node_section`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::config::Role;
use crate::identity::{ClientIdentity, NodeIdentity};
use crate::ids::{AgencyId, ClientName, FederationName};

mod bundle;
mod crl;
mod error;
mod keyservice;
mod request;
pub use bundle::{BrowserBundle, pkcs12, rebundle, write_browser_bundles};
pub use crl::{RevokeTarget, client_crl, federation_crl, revoke};
pub use error::CertsError;
pub use keyservice::{KeyServiceLayout, add_key_service, init_key_service, node_section};
pub use request::{CertRole, default_days, request, sign};

/// The client certificates every development agency gets, with their roles.
pub const DEV_CLIENTS: &[(&str, &[Role])] = &[
    ("cms", &[Role::Submit, Role::Read]),
    ("analyst", &[Role::Read, Role::Review, Role::Request]),
    // Decides on disclosure requests: a different person from the analyst
    // who asks (separation of duties).
    ("legal", &[Role::Read, Role::Disclose]),
    ("admin", &[Role::Admin, Role::Read]),
    // Triages the public intake's reports and makes alerts of them.
    ("caseworker", &[Role::Intake, Role::Submit, Role::Read]),
];

/// Listen addresses written into one agency's `node.toml`.
#[derive(Debug, Clone, Copy)]
pub struct NodeAddrs {
    pub peer: SocketAddr,
    pub client: SocketAddr,
    /// The web console, when the node serves one.
    pub console: Option<SocketAddr>,
    /// The public report intake, when the node serves one (the
    /// development federation's NGO does).
    pub intake: Option<SocketAddr>,
}

/// Where `init_federation` put things.
#[derive(Debug, Clone)]
pub struct FederationLayout {
    pub dir: PathBuf,
    pub federation_ca: PathBuf,
    pub agencies: BTreeMap<AgencyId, AgencyLayout>,
}

#[derive(Debug, Clone)]
pub struct AgencyLayout {
    pub dir: PathBuf,
    pub node_config: PathBuf,
    /// `client.toml` (cms), `client-analyst.toml`, `client-admin.toml`.
    pub client_configs: BTreeMap<ClientName, PathBuf>,
    pub addrs: NodeAddrs,
}

impl AgencyLayout {
    pub fn client_config(&self, name: &str) -> &Path {
        self.client_configs
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, p)| p.as_path())
            .expect("development clients are cms, analyst, legal and admin")
    }
}

/// Picks distinct free loopback ports (three per agency: peer, client,
/// console; a fourth for an NGO's public intake) by binding port 0 and
/// holding every socket until all are chosen.
pub fn free_loopback_addrs(
    agencies: &[AgencyId],
) -> Result<BTreeMap<AgencyId, NodeAddrs>, CertsError> {
    let mut held = Vec::new();
    let mut next = || -> Result<SocketAddr, CertsError> {
        let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(CertsError::Ports)?;
        let a = l.local_addr().map_err(CertsError::Ports)?;
        held.push(l);
        Ok(a)
    };
    let mut out = BTreeMap::new();
    for a in agencies {
        out.insert(
            a.clone(),
            NodeAddrs {
                peer: next()?,
                client: next()?,
                console: Some(next()?),
                intake: match dev_kind(a) {
                    Some("ngo") => Some(next()?),
                    _ => None,
                },
            },
        );
    }
    Ok(out)
}

fn write_new(path: &Path, contents: &str, private: bool) -> Result<(), CertsError> {
    write_bytes_new(path, contents.as_bytes(), private)
}

/// Creates `path` with `contents` (mode 0600 when `private`), refusing to
/// overwrite a file.
fn write_bytes_new(path: &Path, contents: &[u8], private: bool) -> Result<(), CertsError> {
    crate::secrets::create_new(path, contents, private).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            CertsError::Exists {
                path: path.to_owned(),
            }
        } else {
            CertsError::Io {
                path: path.to_owned(),
                error: source,
            }
        }
    })
}

fn mkdir(path: &Path) -> Result<(), CertsError> {
    std::fs::create_dir_all(path).map_err(|source| CertsError::Io {
        path: path.to_owned(),
        error: source,
    })
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "CaseBridge development");
    dn.push(DnType::CommonName, common_name);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut p, 3650);
    p
}

fn leaf_params(common_name: &str, sans: Vec<SanType>, server: bool) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    p.distinguished_name = dn;
    p.subject_alt_names = sans;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = if server {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    p.use_authority_key_identifier_extension = true;
    validity(&mut p, 397);
    p
}

fn uri(s: String) -> Result<SanType, CertsError> {
    Ok(SanType::URI(s.try_into()?))
}

/// Writes a complete development federation under `out` (which may exist but
/// must not contain any of the files written): CA, per-agency node and client
/// PKI, and ready-to-use `node.toml` / `client*.toml` with the given addresses.
pub fn init_federation(
    federation: &FederationName,
    addrs: &BTreeMap<AgencyId, NodeAddrs>,
    out: &Path,
) -> Result<FederationLayout, CertsError> {
    mkdir(out)?;
    let ca_key = KeyPair::generate()?;
    let fed_ca_params = ca_params(&format!("{federation} federation CA"));
    let ca_cert = fed_ca_params.self_signed(&ca_key)?;
    let federation_ca = out.join("federation-ca.pem");
    write_new(&federation_ca, &ca_cert.pem(), false)?;
    write_new(
        &out.join("federation-ca.key"),
        &ca_key.serialize_pem(),
        true,
    )?;
    let ca = Issuer::new(fed_ca_params, ca_key);
    write_new(
        &crl::federation_crl(out),
        &crl::sign_crl(&ca, 1, &[])?,
        false,
    )?;
    crate::pseudo::keyring::generate(&out.join("matching-keys.toml"), federation)?;

    let mut agencies = BTreeMap::new();
    for (agency, own) in addrs {
        let dir = out.join(agency.as_str());
        mkdir(&dir.join("clients"))?;
        let node_id = NodeIdentity {
            federation: federation.clone(),
            agency: agency.clone(),
        };
        let node_key = KeyPair::generate()?;
        let node_cert = leaf_params(
            &format!("{agency} node"),
            vec![
                uri(node_id.spiffe_uri())?,
                SanType::DnsName("localhost".try_into()?),
                SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ],
            true,
        )
        .signed_by(&node_key, &ca)?;
        write_new(&dir.join("node.pem"), &node_cert.pem(), false)?;
        write_new(&dir.join("node.key"), &node_key.serialize_pem(), true)?;
        let audit_key = dir.join("audit-signing.key");
        crate::audit::signing::SigningKey::create(&audit_key).map_err(|e| CertsError::Invalid {
            path: audit_key.clone(),
            reason: e.to_string(),
        })?;

        let client_ca = agency_client_ca(agency, &dir)?;
        let mut client_configs = BTreeMap::new();
        for (name, _) in DEV_CLIENTS {
            let name = ClientName::new(*name).expect("static client names are valid");
            let file = dev_client(federation, agency, own, &dir, &client_ca, &name)?;
            client_configs.insert(name, file);
        }
        // The node's case data sealed at rest under a KEK of its own
        // (docs/encryption.md): the file never overwritten, mode 0600.
        let kek = dir.join("kek.toml");
        crate::vault::FileKek::create(&kek).map_err(|e| CertsError::Invalid {
            path: kek.clone(),
            reason: e.to_string(),
        })?;
        let node_config = dir.join("node.toml");
        write_new(
            &node_config,
            &node_toml(federation, agency, own, addrs),
            false,
        )?;
        write_new(&dir.join("policy.toml"), &dev_policy(agency, addrs), false)?;
        agencies.insert(
            agency.clone(),
            AgencyLayout {
                dir,
                node_config,
                client_configs,
                addrs: *own,
            },
        );
    }
    Ok(FederationLayout {
        dir: out.to_owned(),
        federation_ca,
        agencies,
    })
}

/// An agency's local client CA (certificate, key and an empty CRL in
/// `dir`), which issues its clients' certificates.
fn agency_client_ca(agency: &AgencyId, dir: &Path) -> Result<Issuer<'static, KeyPair>, CertsError> {
    let client_ca_key = KeyPair::generate()?;
    let client_ca_params = ca_params(&format!("{agency} local client CA"));
    let client_ca_cert = client_ca_params.self_signed(&client_ca_key)?;
    write_new(&dir.join("client-ca.pem"), &client_ca_cert.pem(), false)?;
    write_new(
        &dir.join("client-ca.key"),
        &client_ca_key.serialize_pem(),
        true,
    )?;
    let client_ca = Issuer::new(client_ca_params, client_ca_key);
    write_new(
        &crl::client_crl(dir),
        &crl::sign_crl(&client_ca, 1, &[])?,
        false,
    )?;
    Ok(client_ca)
}

/// One development client of an agency: its certificate and key under
/// `clients/`, and its client config (`client.toml` for `cms`). Returns
/// the config's path.
fn dev_client(
    federation: &FederationName,
    agency: &AgencyId,
    own: &NodeAddrs,
    dir: &Path,
    client_ca: &Issuer<'static, KeyPair>,
    name: &ClientName,
) -> Result<PathBuf, CertsError> {
    let id = ClientIdentity {
        federation: federation.clone(),
        agency: agency.clone(),
        name: name.clone(),
    };
    let key = KeyPair::generate()?;
    let cert = leaf_params(
        &format!("{agency} client {name}"),
        vec![uri(id.spiffe_uri())?],
        false,
    )
    .signed_by(&key, client_ca)?;
    write_new(&dir.join(format!("clients/{name}.pem")), &cert.pem(), false)?;
    write_new(
        &dir.join(format!("clients/{name}.key")),
        &key.serialize_pem(),
        true,
    )?;
    let file = if name.as_str() == "cms" {
        dir.join("client.toml")
    } else {
        dir.join(format!("client-{name}.toml"))
    };
    write_new(&file, &client_toml(federation, agency, own, name), false)?;
    Ok(file)
}

/// The kind the development federation gives an agency by its name
/// (`police` and `border` law enforcement, `labour` an inspectorate, `ngo`
/// an NGO); other names are left for the operator to set.
fn dev_kind(agency: &AgencyId) -> Option<&'static str> {
    match agency.as_str() {
        "police" | "border" => Some("law_enforcement"),
        "labour" => Some("labour_inspectorate"),
        "ngo" => Some("ngo"),
        _ => None,
    }
}

fn node_toml(
    federation: &FederationName,
    agency: &AgencyId,
    own: &NodeAddrs,
    all: &BTreeMap<AgencyId, NodeAddrs>,
) -> String {
    let mut s = format!(
        r#"# CaseBridge node configuration for agency `{agency}` (generated by `casebridge certs init`).
# Relative paths are relative to this file. Reference: docs/configuration.md.

agency_id = "{agency}"
federation = "{federation}"

[listen]
# Peer API: other agencies' nodes, authenticated by the federation CA.
peer = "{peer}"
# Client and admin API: this agency's own systems, authenticated by the local client CA.
client = "{client}"

[tls]
federation_ca = "../federation-ca.pem"
node_cert = "node.pem"
node_key = "node.key"
client_ca = "client-ca.pem"
# Revocation lists (`casebridge certs revoke`), re-read every minute.
federation_crl = "../federation-ca.crl.pem"
client_crl = "client-ca.crl.pem"

[store]
dir = "data"

[audit]
# Signs the audit log's checkpoints; give auditors `audit-signing.key.pub`.
signing_key = "audit-signing.key"

[matching]
# The federation's shared matching key ring (same file on every node).
key_ring = "../matching-keys.toml"

[sharing]
# Development policy: everything to every peer. Replace it (docs/policy.md).
policy = "policy.toml"

[encryption]
# Case data sealed at rest (docs/encryption.md) under this key-encryption
# key (mode 0600): keep a copy apart from the node's backups.
kek_file = "kek.toml"

"#,
        peer = own.peer,
        client = own.client,
    );
    if let Some(console) = own.console {
        s.push_str(&format!(
            "[console]\n# The web console (docs/console.md): open https://{console}/ with a\n\
             # client certificate imported from clients/<name>.p12.\nlisten = \"{console}\"\n\n"
        ));
    }
    if let Some(intake) = own.intake {
        s.push_str(&format!(
            "[intake]\n# The public report intake (docs/intake.md): victims and bystanders\n\
             # report at https://{intake}/ without a certificate. In production, use a\n\
             # certificate from a public CA for the address people type.\n\
             listen = \"{intake}\"\ncert = \"node.pem\"\nkey = \"node.key\"\n\n"
        ));
    }
    s.push_str("[clients]\n");
    for (name, roles) in DEV_CLIENTS {
        let roles: Vec<String> = roles.iter().map(|r| format!("\"{r}\"")).collect();
        s.push_str(&format!("{name} = [{}]\n", roles.join(", ")));
    }
    for (peer, addrs) in all.iter().filter(|(p, _)| *p != agency) {
        s.push_str(&format!(
            "\n[[peers]]\nagency_id = \"{peer}\"\naddress = \"{}\"\n",
            addrs.peer
        ));
        match dev_kind(peer) {
            Some(kind) => s.push_str(&format!("kind = \"{kind}\"\n")),
            None => s.push_str(
                "# kind = \"law_enforcement\" | \"labour_inspectorate\" | \"ngo\" | \"other\"\n\
                 # (unset: not taken for law enforcement, so H1 alerts are withheld)\n",
            ),
        }
    }
    s
}

/// A development policy sharing every alert with every peer at full detail,
/// and letting every peer request releases (at most content, phones,
/// e-mail addresses and persons).
fn dev_policy(agency: &AgencyId, all: &BTreeMap<AgencyId, NodeAddrs>) -> String {
    let peers: Vec<String> = all
        .keys()
        .filter(|p| *p != agency)
        .map(|p| format!("\"{p}\""))
        .collect();
    let mut s = format!(
        "# Sharing policy of `{agency}` written by `casebridge certs init`: FOR DEVELOPMENT.\n\
         # It shares every alert with every peer at full detail. Write a real one\n\
         # before production (docs/policy.md), check it with `casebridge policy validate`.\n"
    );
    if !peers.is_empty() {
        s.push_str(&format!(
            "\n[[rules]]\nname = \"dev-share-everything\"\neffect = \"share\"\npeers = [{}]\n[rules.share]\nlocation = \"city\"\ntime = \"day\"\nnarrative = \"full\"\nindicators = \"full\"\nidentifiers = {{ phone = \"exact\", email = \"exact\", person = \"fuzzy_wide\", document = \"exact\", iban = \"exact\", crypto_wallet = \"exact\", online_handle = \"exact\", vehicle_plate = \"exact\", advert_url = \"exact\" }}\n",
            peers.join(", ")
        ));
        s.push_str(&format!(
            "\n# Every peer may request any alert under any legal basis; an officer may\n\
             # release content and phone numbers, e-mail addresses and persons in clear.\n\
             [[disclosure]]\nname = \"dev-disclose\"\npeers = [{}]\n\
             legal_bases = [\"directive_2023_977\", \"prum_ii\", \"mutual_legal_assistance\", \"victim_referral_consent\", \"national_law\"]\n\
             [disclosure.release]\nlocation = \"city\"\ntime = \"day\"\nnarrative = \"full\"\nindicators = \"full\"\n\
             identifiers = [\"phone\", \"email\", \"person\"]\n",
            peers.join(", ")
        ));
    }
    s
}

fn client_toml(
    federation: &FederationName,
    agency: &AgencyId,
    own: &NodeAddrs,
    name: &ClientName,
) -> String {
    format!(
        r#"# CaseBridge client configuration: client `{name}` of agency `{agency}`.
node_address = "{addr}"
node_agency = "{agency}"
federation = "{federation}"
federation_ca = "../federation-ca.pem"
cert = "clients/{name}.pem"
key = "clients/{name}.key"
"#,
        addr = own.client,
    )
}

/// Signs a throw-away client certificate for `identity` with a fresh CA, for
/// tests and demonstrations of a certificate from the wrong CA.
pub fn write_foreign_client(
    identity: &ClientIdentity,
    dir: &Path,
) -> Result<(PathBuf, PathBuf), CertsError> {
    mkdir(dir)?;
    let ca_key = KeyPair::generate()?;
    let ca = Issuer::new(ca_params("foreign CA"), ca_key);
    let key = KeyPair::generate()?;
    let cert =
        leaf_params("foreign", vec![uri(identity.spiffe_uri())?], false).signed_by(&key, &ca)?;
    let (c, k) = (dir.join("foreign.pem"), dir.join("foreign.key"));
    write_new(&c, &cert.pem(), false)?;
    write_new(&k, &key.serialize_pem(), true)?;
    Ok((c, k))
}

/// A client certificate that is wrong in one way, for tests showing the
/// node refuses it.
#[derive(Debug, Clone, Copy)]
pub enum FaultyClient {
    /// Extended key usage serverAuth only: right CA, wrong purpose.
    ServerAuthOnly,
    /// Validity ended yesterday.
    Expired,
}

/// Signs, with the agency's own client CA (from `certs init` files in
/// `agency_dir`), a client certificate for `identity` that is `fault`.
pub fn write_faulty_client(
    identity: &ClientIdentity,
    agency_dir: &Path,
    out: &Path,
    fault: FaultyClient,
) -> Result<(PathBuf, PathBuf), CertsError> {
    mkdir(out)?;
    let read = |p: PathBuf| {
        std::fs::read_to_string(&p).map_err(|source| CertsError::Io {
            path: p,
            error: source,
        })
    };
    let ca_key = KeyPair::from_pem(&read(agency_dir.join("client-ca.key"))?)?;
    let ca = Issuer::from_ca_cert_pem(&read(agency_dir.join("client-ca.pem"))?, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = leaf_params("faulty client", vec![uri(identity.spiffe_uri())?], false);
    let name = match fault {
        FaultyClient::ServerAuthOnly => {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            "server-only"
        }
        FaultyClient::Expired => {
            let now = OffsetDateTime::now_utc();
            params.not_before = now - Duration::days(30);
            params.not_after = now - Duration::days(1);
            "expired"
        }
    };
    let cert = params.signed_by(&key, &ca)?;
    let (c, k) = (
        out.join(format!("{name}.pem")),
        out.join(format!("{name}.key")),
    );
    write_new(&c, &cert.pem(), false)?;
    write_new(&k, &key.serialize_pem(), true)?;
    Ok((c, k))
}
