//! The rules a directory's content follows, each breach named by its field
//! (`members[2].endpoints[0]`), all at once: what the operator's tooling
//! refuses before anyone signs, and what a node refuses before it adopts.
//!
//! Bounds come first: a directory may arrive from any peer, so counts and
//! lengths are limited before anything is compared.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{AgencyId, FederationName};
use crate::proto::v1::{
    Directory, DirectoryKeyService, DirectoryMember, SignerSet, StatisticsPlan,
};
use crate::violation::FieldViolation;

/// Members a directory may list (a federation of national agencies and
/// NGOs is tens; a directory of 10,000 is still a few megabytes).
pub const MAX_MEMBERS: usize = 10_000;
/// Peer endpoints of one member, and key service endpoints.
pub const MAX_ENDPOINTS: usize = 8;
/// Groups one member is in.
pub const MAX_GROUPS: usize = 32;
/// Operator keys in a signer set.
pub const MAX_SIGNERS: usize = 32;
/// OPRF public keys pinned at once (a rotation overlaps two or three).
pub const MAX_OPRF_KEYS: usize = 16;
/// A display name or a signer's name.
pub const MAX_NAME_BYTES: usize = 200;
/// The federation CRL, in PEM.
pub const MAX_CRL_BYTES: usize = 1 << 20;

/// What a member's kind may be: the handling codes' kinds of recipient.
pub const KINDS: [&str; 4] = ["law_enforcement", "labour_inspectorate", "ngo", "other"];

/// Every rule `d` breaks; empty when it follows them all.
pub fn check(d: &Directory) -> Vec<FieldViolation> {
    let mut out = Vec::new();
    if FederationName::new(d.federation.as_str()).is_err() {
        out.push(FieldViolation::new(
            "federation",
            "a federation name (lower-case letters, digits, dots and dashes)",
        ));
    }
    if d.version == 0 {
        out.push(FieldViolation::new("version", "versions start at 1"));
    }
    if d.expires_at <= d.issued_at {
        out.push(FieldViolation::new("expires_at", "must be after issued_at"));
    }
    check_members(&d.members, &mut out);
    if let Some(ks) = &d.key_service {
        check_key_service(ks, &mut out);
    }
    if d.federation_crl_pem.len() > MAX_CRL_BYTES {
        out.push(FieldViolation::new(
            "federation_crl_pem",
            format!("at most {MAX_CRL_BYTES} bytes"),
        ));
    } else if !d.federation_crl_pem.is_empty()
        && !d.federation_crl_pem.contains("-----BEGIN X509 CRL-----")
    {
        out.push(FieldViolation::new(
            "federation_crl_pem",
            "a CRL in PEM (BEGIN X509 CRL)",
        ));
    }
    if let Some(plan) = &d.statistics {
        check_statistics(d, plan, &mut out);
    }
    match &d.signers {
        Some(s) => check_signers(s, "signers", &mut out),
        None => out.push(FieldViolation::new(
            "signers",
            "a directory names who may sign the next version",
        )),
    }
    out
}

fn check_members(members: &[DirectoryMember], out: &mut Vec<FieldViolation>) {
    if members.len() > MAX_MEMBERS {
        out.push(FieldViolation::new(
            "members",
            format!("at most {MAX_MEMBERS} members"),
        ));
        return;
    }
    let mut endpoints: BTreeMap<&str, &str> = BTreeMap::new();
    let mut previous: Option<&str> = None;
    for (i, m) in members.iter().enumerate() {
        let at = |field: &str| format!("members[{i}].{field}");
        if AgencyId::new(m.agency_id.as_str()).is_err() {
            out.push(FieldViolation::new(at("agency_id"), "an agency id"));
        }
        match previous {
            Some(p) if p == m.agency_id => out.push(FieldViolation::new(
                at("agency_id"),
                format!("agency {} is listed twice", m.agency_id),
            )),
            Some(p) if p > m.agency_id.as_str() => out.push(FieldViolation::new(
                at("agency_id"),
                "members are sorted by agency id",
            )),
            _ => {}
        }
        previous = Some(&m.agency_id);
        if !one_line(&m.display_name) {
            out.push(FieldViolation::new(
                at("display_name"),
                format!("one printable line of 1 to {MAX_NAME_BYTES} bytes"),
            ));
        }
        if !KINDS.contains(&m.kind.as_str()) {
            out.push(FieldViolation::new(
                at("kind"),
                format!("one of {}", KINDS.join(", ")),
            ));
        }
        check_groups(&m.groups, &at("groups"), out);
        check_endpoints(&m.endpoints, &at("endpoints"), true, out);
        for (j, e) in m.endpoints.iter().enumerate() {
            if let Some(other) = endpoints.insert(e, &m.agency_id)
                && other != m.agency_id
            {
                out.push(FieldViolation::new(
                    at(&format!("endpoints[{j}]")),
                    format!("{e} is also {other}'s endpoint"),
                ));
            }
        }
        let pin = m.key_sha256.as_str();
        if !pin.is_empty() && (pin.len() != 64 || crate::text::unhex(pin).is_none()) {
            out.push(FieldViolation::new(
                at("key_sha256"),
                "empty, or 64 hex digits (the SHA-256 of the certificate's public key info)",
            ));
        }
    }
}

/// A group name as a rule writes it after `group:`.
pub fn valid_group(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn check_groups(groups: &[String], field: &str, out: &mut Vec<FieldViolation>) {
    if groups.len() > MAX_GROUPS {
        out.push(FieldViolation::new(
            field,
            format!("at most {MAX_GROUPS} groups"),
        ));
        return;
    }
    for (j, g) in groups.iter().enumerate() {
        if !valid_group(g) {
            out.push(FieldViolation::new(
                format!("{field}[{j}]"),
                "1 to 64 of a-z, 0-9 and -",
            ));
        } else if j > 0 && groups[j - 1] >= *g {
            out.push(FieldViolation::new(
                format!("{field}[{j}]"),
                "groups are sorted, each once",
            ));
        }
    }
}

/// `host:port` with a port, each once; at least one where `required`.
fn check_endpoints(list: &[String], field: &str, required: bool, out: &mut Vec<FieldViolation>) {
    if list.len() > MAX_ENDPOINTS || (required && list.is_empty()) {
        out.push(FieldViolation::new(
            field,
            format!(
                "{} to {MAX_ENDPOINTS} endpoints",
                if required { 1 } else { 0 }
            ),
        ));
        return;
    }
    let mut seen = BTreeSet::new();
    for (j, e) in list.iter().enumerate() {
        if !valid_endpoint(e) {
            out.push(FieldViolation::new(
                format!("{field}[{j}]"),
                "host:port (a DNS name, an IPv4 address or [IPv6], and a port)",
            ));
        } else if !seen.insert(e.as_str()) {
            out.push(FieldViolation::new(
                format!("{field}[{j}]"),
                format!("{e} is listed twice"),
            ));
        }
    }
}

/// `host:port`: a DNS name or an IP address (IPv6 in brackets), and a port
/// other than 0.
pub fn valid_endpoint(e: &str) -> bool {
    if e.len() > 260 {
        return false;
    }
    let Some((host, port)) = e.rsplit_once(':') else {
        return false;
    };
    if !port.parse::<u16>().is_ok_and(|p| p != 0) {
        return false;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    host.parse::<std::net::Ipv4Addr>().is_ok()
        || (!host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                (1..=63).contains(&label.len())
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }))
}

/// The plan's own rules (`stats::plan`), and that its aggregators are
/// members in good standing: a suspended or unknown aggregator could take
/// no shares, and every release would wait for it.
fn check_statistics(d: &Directory, plan: &StatisticsPlan, out: &mut Vec<FieldViolation>) {
    out.extend(crate::stats::plan::check(plan, "statistics"));
    for (i, a) in plan.aggregators.iter().enumerate().take(2) {
        match member(d, a) {
            None => out.push(FieldViolation::new(
                format!("statistics.aggregators[{i}]"),
                format!("{a} is not a member"),
            )),
            Some(m) if m.suspended => out.push(FieldViolation::new(
                format!("statistics.aggregators[{i}]"),
                format!("{a} is suspended"),
            )),
            Some(_) => {}
        }
    }
}

fn check_key_service(ks: &DirectoryKeyService, out: &mut Vec<FieldViolation>) {
    check_endpoints(&ks.endpoints, "key_service.endpoints", false, out);
    if ks.keys.len() > MAX_OPRF_KEYS {
        out.push(FieldViolation::new(
            "key_service.keys",
            format!("at most {MAX_OPRF_KEYS} keys"),
        ));
        return;
    }
    let mut versions = BTreeSet::new();
    for (j, k) in ks.keys.iter().enumerate() {
        if k.public_key.len() != 32 {
            out.push(FieldViolation::new(
                format!("key_service.keys[{j}].public_key"),
                "a compressed Ristretto255 point: 32 bytes",
            ));
        }
        if !versions.insert(k.version) {
            out.push(FieldViolation::new(
                format!("key_service.keys[{j}].version"),
                format!("version {} is listed twice", k.version),
            ));
        }
    }
}

/// The signer set's rules: 1 to [`MAX_SIGNERS`] distinct 32-byte keys,
/// sorted, named, and a threshold between 1 and their number.
pub fn check_signers(s: &SignerSet, field: &str, out: &mut Vec<FieldViolation>) {
    if s.signers.is_empty() || s.signers.len() > MAX_SIGNERS {
        out.push(FieldViolation::new(
            format!("{field}.signers"),
            format!("1 to {MAX_SIGNERS} keys"),
        ));
        return;
    }
    for (j, k) in s.signers.iter().enumerate() {
        if k.public_key.len() != 32 {
            out.push(FieldViolation::new(
                format!("{field}.signers[{j}].public_key"),
                "a raw Ed25519 public key: 32 bytes",
            ));
        } else if j > 0 && s.signers[j - 1].public_key >= k.public_key {
            out.push(FieldViolation::new(
                format!("{field}.signers[{j}].public_key"),
                "keys are sorted, each once",
            ));
        }
        if !one_line(&k.name) {
            out.push(FieldViolation::new(
                format!("{field}.signers[{j}].name"),
                format!("one printable line of 1 to {MAX_NAME_BYTES} bytes"),
            ));
        }
    }
    if s.threshold == 0 || s.threshold as usize > s.signers.len() {
        out.push(FieldViolation::new(
            format!("{field}.threshold"),
            format!("between 1 and the {} signers", s.signers.len()),
        ));
    }
}

fn one_line(s: &str) -> bool {
    (1..=MAX_NAME_BYTES).contains(&s.len()) && !s.chars().any(char::is_control)
}

/// The member `agency`, if listed.
pub fn member<'d>(d: &'d Directory, agency: &str) -> Option<&'d DirectoryMember> {
    d.members
        .binary_search_by(|m| m.agency_id.as_str().cmp(agency))
        .ok()
        .map(|i| &d.members[i])
}
