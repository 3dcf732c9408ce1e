//! The node's live sharing policy: which version is in force, how a new one
//! is installed (at start, on SIGHUP, by `SetPolicy`), and the decisions the
//! rest of the node asks of it (delivery, hit notices, lookup answers,
//! inbound deliveries).
//!
//! Every installed version is kept in the store with its text, digest,
//! source and author, so an auditor can tell which policy decided a share.
//! A policy that does not validate is never installed: the version in force
//! stays, whatever the source of the broken one.
//!
//! The policy file is read at start and on SIGHUP, and the same rule
//! ([`judge_file`]) decides both times, so a reload never silently
//! replaces the version in force:
//! - the file holds the version in force, or has not changed since it was
//!   last read: the version in force stays (it may be one installed later
//!   by `SetPolicy`; a restart or a SIGHUP sent to reload `[clients]` does
//!   not undo an administrator's live change);
//! - the file changed and the version in force came from the file (read
//!   from it, or the same text installed with `policy set`), or none is
//!   installed: the file is installed as a new version;
//! - the file changed but the version in force was set through the API:
//!   the version in force stays, a warning and an audit entry name the
//!   command that installs the file (`casebridge policy set FILE
//!   --expect-version N`): which of two edits wins is the administrator's
//!   call, not the order of a reload.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use aws_lc_rs::digest;
use thiserror::Error;

use crate::directory::roster::{Members, Roster};
use crate::ids::AgencyId;
use crate::matching::{MatchedBy, NoticeGate};

use crate::policy::shared_view_with;
use crate::policy::{self, Decision, InboundDecision, Policy, PolicyError};
use crate::proto::v1::{
    DiffPolicyResponse, ExplainPolicyResponse, PeerDecision, PeerDiff, PolicyVersion, StoredAlert,
};
use crate::store::{Store, StoreError};
use crate::time::timestamp;

#[derive(Debug, Error)]
pub enum SharingError {
    #[error("sharing policy has {} problem(s):\n{}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<PolicyError>),
    #[error("{path}: cannot read the sharing policy: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("policy version {current} is in force, not {expected}")]
    VersionMismatch { expected: u64, current: u64 },
    #[error("no policy file is configured ([sharing] policy in node.toml)")]
    NoFile,
    #[error(
        "policy version {version} in the store no longer validates against the configured peers; fix node.toml or edit the policy file:\n{}",
        .errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
    )]
    StoredInvalid {
        version: u64,
        errors: Vec<PolicyError>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The version in force. `policy` is `None` only when no policy was ever
/// installed: then nothing is shared and everything is accepted.
pub struct Active {
    pub policy: Option<Policy>,
    pub record: PolicyVersion,
}

/// What a reload of the policy file did.
#[derive(Debug)]
pub enum Reload {
    /// The file holds the version in force, or has not changed since it
    /// was last read: the version in force stays.
    Unchanged(u64),
    Installed(PolicyVersion),
    /// The file changed, but the version in force was set through the API
    /// and stays; `policy set` installs the file.
    Kept {
        version: u64,
        file: PathBuf,
    },
}

/// What the policy file, read at start or on SIGHUP, does to the version
/// in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileVerdict {
    /// The file holds the version in force.
    InForce,
    /// Unchanged since it was last read (another version may be in force).
    UnchangedSinceRead,
    Install,
    /// Changed, but the version in force was set through the API.
    KeepApiVersion,
}

/// The one rule for the policy file (see the module's documentation):
/// `sha` is the file's digest now, `last_read` its digest when it was last
/// read, `in_force` the version in force.
fn judge_file(sha: &str, last_read: Option<&str>, in_force: Option<&PolicyVersion>) -> FileVerdict {
    match in_force {
        None => FileVerdict::Install,
        Some(v) if v.sha256 == sha => FileVerdict::InForce,
        Some(_) if last_read == Some(sha) => FileVerdict::UnchangedSinceRead,
        // The version in force is what the file held (installed from it, or
        // the same text through the API): the edit supersedes it.
        Some(v) if v.source.starts_with("file:") || last_read == Some(v.sha256.as_str()) => {
            FileVerdict::Install
        }
        Some(_) => FileVerdict::KeepApiVersion,
    }
}

/// Longest policy text accepted through the API.
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;

/// Examples kept per peer and kind of change in a diff.
const DIFF_EXAMPLES: usize = 5;

pub fn sha256_hex(text: &str) -> String {
    digest::digest(&digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `text` as a node whose membership is `members` holds it: checked
/// against its `[[peers]]`, or under a directory against its groups (any
/// agency id may be named), with every peer's kind.
///
/// `strict`: a group the directory does not define is an error (a text
/// being installed or checked) rather than a group of no one (the policy
/// in force, kept across directory changes).
pub fn parse_for(
    members: &Members,
    text: &str,
    name: &Path,
    strict: bool,
) -> Result<Policy, Vec<PolicyError>> {
    Ok(match members.version {
        Some(_) => policy::parse_in_directory(name, text, &members.groups(), strict)?,
        None => policy::parse(name, text, &members.known_ids())?,
    }
    .with_peer_kinds(members.kinds()))
}

pub struct Sharing {
    store: Arc<Store>,
    own: AgencyId,
    /// The membership in force: whom rules can reach, and the kind of each
    /// (every policy parsed here carries the kinds, for the handling
    /// codes' promises; [`Sharing::follow`] renews them).
    roster: Roster,
    file: Option<PathBuf>,
    current: RwLock<Arc<Active>>,
    /// Serializes installs, so version numbers and `expected_version` checks
    /// see one order.
    install: tokio::sync::Mutex<()>,
}

impl Sharing {
    /// Puts in force the policy the node starts with (see the module doc).
    pub async fn open(
        store: Arc<Store>,
        own: AgencyId,
        roster: Roster,
        file: Option<PathBuf>,
    ) -> Result<Self, SharingError> {
        let sharing = Self {
            store,
            own,
            roster,
            file,
            current: RwLock::new(Arc::new(Active {
                policy: None,
                record: PolicyVersion::default(),
            })),
            install: tokio::sync::Mutex::new(()),
        };
        let stored = sharing.store.active_policy()?;
        let stored_policy = stored
            .as_ref()
            .map(|v| sharing.parse_kept(&v.text, Path::new("<stored policy>")));
        let mut installed_file = false;
        if let Some(path) = sharing.file.clone() {
            let text = read(&path)?;
            let sha = sha256_hex(&text);
            let known = sharing.store.policy_file_sha256()?;
            match judge_file(&sha, known.as_deref(), stored.as_ref()) {
                FileVerdict::Install => {
                    // A new or edited file: it must validate, or the node does not start.
                    let policy = sharing.parse(&text, &path).map_err(SharingError::Invalid)?;
                    sharing
                        .install_parsed(policy, text, file_source(&path), "node", "", true)
                        .await?;
                    installed_file = true;
                }
                FileVerdict::InForce => sharing.store.note_policy_file(&sha).await?,
                FileVerdict::UnchangedSinceRead => {}
                FileVerdict::KeepApiVersion => {
                    let version = stored.as_ref().map_or(0, |v| v.version);
                    sharing.keep_api_version(version, &path).await?;
                }
            }
        }
        if !installed_file && let (Some(record), Some(parsed)) = (stored, stored_policy) {
            let policy = parsed.map_err(|errors| SharingError::StoredInvalid {
                version: record.version,
                errors,
            })?;
            sharing.put(policy, record);
        }
        let active = sharing.current();
        if active.policy.is_none() {
            tracing::warn!("no sharing policy installed: this node shares nothing (default deny)");
        } else {
            tracing::info!(version = active.record.version, source = %active.record.source, "sharing policy in force");
        }
        Ok(sharing)
    }

    pub fn current(&self) -> Arc<Active> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn version(&self) -> u64 {
        self.current().record.version
    }

    /// The kind the membership in force gives `peer`, if known.
    pub fn kind(&self, peer: &AgencyId) -> Option<crate::handling::PeerKind> {
        self.roster.now().get(peer).and_then(|m| m.kind)
    }

    /// The peers now (suspended members left out).
    pub fn peers(&self) -> Vec<AgencyId> {
        self.roster.now().peer_ids()
    }

    /// After a new membership: the policy in force is compiled again, so
    /// `group:NAME` means the group's members now and every peer has its
    /// kind now (a member that left reaches nothing: decisions are made
    /// for the peers now only). A policy that no longer compiles (it names
    /// a group the directory dropped) stays in force as it was, with the
    /// new kinds, and the node says so.
    pub fn follow(&self) {
        let active = self.current();
        let Some(policy) = &active.policy else {
            return;
        };
        let label = Path::new("<policy in force>");
        let next = match self.parse_kept(&active.record.text, label) {
            Ok(p) => p,
            Err(errors) => {
                for e in &errors {
                    tracing::warn!(version = active.record.version, problem = %e, "the policy in force does not fit the new directory; it stays as it was");
                }
                policy.clone().with_peer_kinds(self.roster.now().kinds())
            }
        };
        self.put(next, active.record.clone());
    }

    /// Validates `text` against the membership in force; `name` labels
    /// errors. Under a directory any well-formed agency id may be named:
    /// membership changes under the policy (an agency may join later, or
    /// leave), and a rule naming a non-member reaches nobody.
    pub fn parse(&self, text: &str, name: &Path) -> Result<Policy, Vec<PolicyError>> {
        self.parse_as(text, name, true)
    }

    /// The policy in force, compiled again (at start from the store, after
    /// a directory change): a group the directory dropped reaches no one.
    fn parse_kept(&self, text: &str, name: &Path) -> Result<Policy, Vec<PolicyError>> {
        self.parse_as(text, name, false)
    }

    fn parse_as(&self, text: &str, name: &Path, strict: bool) -> Result<Policy, Vec<PolicyError>> {
        let policy = parse_for(&self.roster.now(), text, name, strict)?;
        for (line, warning) in policy.handling_warnings() {
            tracing::warn!(policy = %name.display(), line, "{warning}");
        }
        Ok(policy)
    }

    fn put(&self, policy: Policy, record: PolicyVersion) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Active {
            policy: Some(policy),
            record,
        });
    }

    async fn install_parsed(
        &self,
        policy: Policy,
        text: String,
        source: String,
        set_by: &str,
        comment: &str,
        from_file: bool,
    ) -> Result<PolicyVersion, SharingError> {
        let record = PolicyVersion {
            version: 0,
            sha256: sha256_hex(&text),
            share_rules: policy.rules.len() as u32,
            inbound_rules: policy.inbound.len() as u32,
            text,
            source,
            set_by: set_by.to_owned(),
            set_at: Some(timestamp(SystemTime::now())),
            comment: comment.to_owned(),
        };
        let installed = self.store.install_policy(record, from_file).await?;
        if from_file {
            // An API change is logged by its call (`policy.set`); a file
            // installed at start or on SIGHUP has no call, so it is logged here.
            self.store
                .audit([crate::audit::Event::new(
                    crate::audit::NODE,
                    crate::audit::Action::PolicyInstall,
                    "OK",
                )
                .detail("version", installed.version)
                .detail("sha256", &installed.sha256)
                .detail("source", &installed.source)
                .detail("set_by", &installed.set_by)])
                .await?;
        }
        tracing::info!(version = installed.version, source = %installed.source, set_by = %installed.set_by, "sharing policy installed");
        self.put(policy, installed.clone());
        Ok(installed)
    }

    /// Installs a policy given through the API. Nothing changes unless it
    /// validates and `expected_version` (when non-zero) is the one in force.
    pub async fn set(
        &self,
        text: String,
        expected_version: u64,
        set_by: &str,
        comment: &str,
    ) -> Result<PolicyVersion, SharingError> {
        let _guard = self.install.lock().await;
        let current = self.version();
        if expected_version != 0 && expected_version != current {
            return Err(SharingError::VersionMismatch {
                expected: expected_version,
                current,
            });
        }
        let policy = self
            .parse(&text, Path::new("policy_text"))
            .map_err(SharingError::Invalid)?;
        let installed = self
            .install_parsed(policy, text, "api".into(), set_by, comment, false)
            .await?;
        // `policy set FILE` with the node's own file: the version in force
        // is now the file's, so the file's next edit supersedes it.
        if let Some(path) = &self.file
            && read(path).is_ok_and(|t| sha256_hex(&t) == installed.sha256)
        {
            self.store.note_policy_file(&installed.sha256).await?;
        }
        Ok(installed)
    }

    /// Re-reads the policy file (SIGHUP) and applies [`judge_file`]. A file
    /// that cannot be read or does not validate leaves the version in force.
    pub async fn reload_file(&self) -> Result<Reload, SharingError> {
        let _guard = self.install.lock().await;
        let path = self.file.clone().ok_or(SharingError::NoFile)?;
        let text = read(&path)?;
        let policy = self.parse(&text, &path).map_err(SharingError::Invalid)?;
        let sha = sha256_hex(&text);
        let current = self.current();
        let in_force = current.policy.is_some().then_some(&current.record);
        let known = self.store.policy_file_sha256()?;
        match judge_file(&sha, known.as_deref(), in_force) {
            FileVerdict::InForce => {
                self.store.note_policy_file(&sha).await?;
                Ok(Reload::Unchanged(current.record.version))
            }
            FileVerdict::UnchangedSinceRead => Ok(Reload::Unchanged(current.record.version)),
            FileVerdict::Install => self
                .install_parsed(policy, text, file_source(&path), "node (SIGHUP)", "", true)
                .await
                .map(Reload::Installed),
            FileVerdict::KeepApiVersion => {
                let version = current.record.version;
                self.keep_api_version(version, &path).await?;
                Ok(Reload::Kept {
                    version,
                    file: path,
                })
            }
        }
    }

    /// The file changed but `version`, set through the API, stays in force:
    /// said in the log and the audit log, with the command that installs
    /// the file. The file's digest is not noted, so the next start or
    /// reload says it again until the administrator decides.
    async fn keep_api_version(&self, version: u64, path: &Path) -> Result<(), SharingError> {
        let command = format!(
            "casebridge policy set {} --expect-version {version}",
            path.display()
        );
        tracing::warn!(
            version,
            file = %path.display(),
            install_with = %command,
            "the policy file changed, but the version in force was set through the API and stays"
        );
        self.store
            .audit([crate::audit::Event::new(
                crate::audit::NODE,
                crate::audit::Action::PolicyInstall,
                "KEPT",
            )
            .detail("version", version)
            .detail("source", file_source(path))
            .detail(
                "reason",
                "the file changed but the version in force was set through the API",
            )
            .detail("install_with", command)])
            .await?;
        Ok(())
    }

    /// The decision for every configured peer under the policy in force.
    pub fn decide_all(&self, record: &StoredAlert, now: SystemTime) -> Vec<(AgencyId, Decision)> {
        decide_all(
            self.current().policy.as_ref(),
            record,
            &self.own,
            &self.peers(),
            now,
        )
    }

    pub fn decide(&self, record: &StoredAlert, peer: &AgencyId, now: SystemTime) -> Decision {
        decide_all(
            self.current().policy.as_ref(),
            record,
            &self.own,
            std::slice::from_ref(peer),
            now,
        )
        .pop()
        .map(|(_, d)| d)
        .expect("one decision per peer")
    }

    /// Whether a delivery from `from` (as it would be stored here) is kept.
    pub fn inbound(&self, received: &StoredAlert, from: &AgencyId) -> InboundDecision {
        match &self.current().policy {
            Some(p) => policy::evaluate_inbound(p, received, from, SystemTime::now()),
            None => InboundDecision {
                accepted: true,
                rule: None,
                reason: "no policy installed (default accept)".into(),
            },
        }
    }

    /// What the disclosure rules in force say of a request by `peer` under
    /// `legal_basis` about our alert `own`. No policy: every request is
    /// refused (nothing is released that an administrator has not allowed).
    pub fn disclosure(
        &self,
        own: &StoredAlert,
        peer: &AgencyId,
        legal_basis: i32,
    ) -> policy::DisclosureVerdict {
        match &self.current().policy {
            Some(p) => {
                policy::evaluate_disclosure(p, own, &self.own, peer, legal_basis, SystemTime::now())
            }
            None => policy::DisclosureVerdict::Refused {
                ground: crate::proto::v1::RefusalGround::NotAuthorised,
                rule: None,
                reason: "no sharing policy is installed, so nothing is released (default deny)"
                    .into(),
            },
        }
    }

    /// Whether telling `peer` that our alert `own` holds an identifier of
    /// type `kind` discloses nothing the policy would not send it anyway:
    /// the deciding rule must share that type at the level the match
    /// needed (see [`policy::level_needed`]).
    pub fn may_disclose(
        &self,
        own: &StoredAlert,
        peer: &AgencyId,
        kind: i32,
        by: MatchedBy,
    ) -> bool {
        let need = policy::level_needed(kind, by);
        self.decide(own, peer, SystemTime::now())
            .grant
            .is_some_and(|g| g.identifier(kind) >= need)
    }

    /// ExplainPolicy: the decisions for one stored alert, under the policy in
    /// force or a candidate.
    pub fn explain(
        &self,
        record: &StoredAlert,
        peers: &[AgencyId],
        candidate: Option<&Policy>,
    ) -> ExplainPolicyResponse {
        let active = self.current();
        let (policy, version) = match candidate {
            Some(p) => (Some(p), 0),
            None => (active.policy.as_ref(), active.record.version),
        };
        let all = self.peers();
        let peers = if peers.is_empty() { &all } else { peers };
        let now = SystemTime::now();
        let deny_all = Policy::deny_all();
        let decisions = decide_all(policy, record, &self.own, peers, now)
            .into_iter()
            .map(|(peer, d)| {
                let disclosure = policy::disclosure::summarize(
                    policy.unwrap_or(&deny_all),
                    record,
                    &self.own,
                    &peer,
                    now,
                );
                PeerDecision {
                    peer: peer.to_string(),
                    shared: d.grant.is_some(),
                    rule: d.rule.clone().unwrap_or_default(),
                    reason: d.reason.clone(),
                    envelope: d.grant.as_ref().map(|g| shared_view_with(record, g)),
                    disclosure_rule: disclosure.rule.unwrap_or_default(),
                    disclosure_legal_bases: disclosure
                        .legal_bases
                        .iter()
                        .map(|b| policy::disclosure::basis_name(*b))
                        .collect(),
                    disclosure_maximum: disclosure
                        .maximum
                        .map(|m| m.describe())
                        .unwrap_or_default(),
                    disclosure_refusal: if policy.is_none() {
                        "no sharing policy is installed, so nothing is released (default deny)"
                            .into()
                    } else {
                        disclosure.refusal
                    },
                }
            })
            .collect();
        ExplainPolicyResponse {
            policy_version: version,
            decisions,
        }
    }

    /// DiffPolicy: compares what `old` and `new` would send each peer for
    /// every own live alert in the store, field by field.
    pub fn diff(
        &self,
        old: Option<&Policy>,
        new: &Policy,
    ) -> Result<DiffPolicyResponse, StoreError> {
        let active = self.current();
        let old = old.or(active.policy.as_ref());
        let now = SystemTime::now();
        let peers = self.peers();
        let mut out = DiffPolicyResponse {
            alerts: 0,
            peers: peers
                .iter()
                .map(|p| PeerDiff {
                    peer: p.to_string(),
                    ..Default::default()
                })
                .collect(),
        };
        self.store.for_each_own(&self.own, |record| {
            let live = record.alert.as_ref().is_some_and(|a| !a.retracted);
            if !live {
                return;
            }
            out.alerts += 1;
            let id = record
                .alert
                .as_ref()
                .map(|a| a.id.clone())
                .unwrap_or_default();
            let before = decide_all(old, record, &self.own, &peers, now);
            let after = decide_all(Some(new), record, &self.own, &peers, now);
            for ((b, a), d) in before.iter().zip(&after).zip(out.peers.iter_mut()) {
                let view = |dec: &Decision| dec.grant.as_ref().map(|g| shared_view_with(record, g));
                let push = |v: &mut Vec<String>| {
                    if v.len() < DIFF_EXAMPLES {
                        v.push(id.clone());
                    }
                };
                match (view(&b.1), view(&a.1)) {
                    (None, None) => {}
                    (None, Some(_)) => {
                        d.newly_shared += 1;
                        push(&mut d.examples_newly_shared);
                    }
                    (Some(_), None) => {
                        d.no_longer_shared += 1;
                        push(&mut d.examples_no_longer_shared);
                    }
                    (Some(x), Some(y)) if x != y => {
                        d.changed_fields += 1;
                        push(&mut d.examples_changed_fields);
                    }
                    (Some(_), Some(_)) => d.unchanged += 1,
                }
            }
        })?;
        Ok(out)
    }
}

impl NoticeGate for Sharing {
    fn may_disclose(&self, own: &StoredAlert, peer: &AgencyId, kind: i32, by: MatchedBy) -> bool {
        Sharing::may_disclose(self, own, peer, kind, by)
    }
}

fn decide_all(
    policy: Option<&Policy>,
    record: &StoredAlert,
    own: &AgencyId,
    peers: &[AgencyId],
    now: SystemTime,
) -> Vec<(AgencyId, Decision)> {
    match policy {
        Some(p) => policy::evaluate_all(p, record, own, peers, now)
            .into_iter()
            .map(|(peer, d)| (peer.clone(), d))
            .collect(),
        None => peers
            .iter()
            .map(|p| {
                (
                    p.clone(),
                    Decision {
                        grant: None,
                        rule: None,
                        reason: "no sharing policy installed (default deny)".into(),
                    },
                )
            })
            .collect(),
    }
}

fn file_source(path: &Path) -> String {
    format!("file:{}", path.display())
}

fn read(path: &Path) -> Result<String, SharingError> {
    std::fs::read_to_string(path).map_err(|e| SharingError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod file_rule_tests {
    use super::*;

    fn version(sha: &str, source: &str) -> PolicyVersion {
        PolicyVersion {
            sha256: sha.into(),
            source: source.into(),
            ..Default::default()
        }
    }

    /// The reload rule, case by case: only an edit over the file's own
    /// version installs; a version set through the API is never replaced.
    #[test]
    fn only_an_edit_over_the_files_own_version_installs() {
        use FileVerdict::*;
        let api = version("B", "api");
        let file = version("A", "file:policy.toml");
        assert_eq!(judge_file("A", None, None), Install);
        assert_eq!(judge_file("A", Some("A"), Some(&file)), InForce);
        // SIGHUP for [clients], file untouched, API version in force.
        assert_eq!(judge_file("A", Some("A"), Some(&api)), UnchangedSinceRead);
        // The file edited over the file's version.
        assert_eq!(judge_file("C", Some("A"), Some(&file)), Install);
        // The file edited while an API version is in force.
        assert_eq!(judge_file("C", Some("A"), Some(&api)), KeepApiVersion);
        // `policy set` of the file's own text, then the file edited.
        assert_eq!(judge_file("C", Some("B"), Some(&api)), Install);
    }
}
