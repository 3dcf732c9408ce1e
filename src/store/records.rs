//! Small logs and settings kept next to the alerts: sharing policy versions
//! and refused deliveries. Each write is synced before it returns, like
//! every other acknowledged change.
//!
//! Keys in `policies`: `v` ‖ version (u64 BE) → `PolicyVersion`; `active` →
//! version in force; `file_sha256` → digest of the policy file as last read,
//! so a restart can tell an edited file from one already installed.

use prost::Message;

use super::engine::Reads;
use super::{Counter, Store, StoreError};
use crate::proto::v1::{PolicyVersion, RefusalRecord};

const ACTIVE: &[u8] = b"active";
const FILE_SHA: &[u8] = b"file_sha256";

fn version_key(v: u64) -> Vec<u8> {
    let mut k = b"v".to_vec();
    k.extend_from_slice(&v.to_be_bytes());
    k
}

impl Store {
    /// The policy version in force, if one was ever installed.
    pub fn active_policy(&self) -> Result<Option<PolicyVersion>, StoreError> {
        let Some(v) = self.db.get(self.t.policies, ACTIVE)? else {
            return Ok(None);
        };
        let version = u64::from_be_bytes(
            v.as_slice()
                .try_into()
                .map_err(|_| StoreError::corrupt("policies/active", "not a version number"))?,
        );
        let Some(bytes) = self.db.get(self.t.policies, version_key(version))? else {
            return Err(StoreError::corrupt(
                format!("policies/v{version}"),
                "the version in force is missing",
            ));
        };
        PolicyVersion::decode(bytes.as_slice())
            .map(Some)
            .map_err(|e| StoreError::corrupt(format!("policies/v{version}"), e))
    }

    /// Every installed policy version, newest first.
    pub fn policy_versions(&self) -> Result<Vec<PolicyVersion>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.prefix(self.t.policies, b"v") {
            let (k, v) = item?;
            out.push(PolicyVersion::decode(v.as_slice()).map_err(|e| {
                StoreError::corrupt(format!("policies/{}", String::from_utf8_lossy(&k)), e)
            })?);
        }
        out.reverse();
        Ok(out)
    }

    /// The digest of the policy file when it was last installed from the file.
    pub fn policy_file_sha256(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .db
            .get(self.t.policies, FILE_SHA)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Remembers the policy file's digest without installing anything (the
    /// file holds the policy already in force).
    pub async fn note_policy_file(&self, sha256: &str) -> Result<(), StoreError> {
        self.write(|w| w.tx.insert(w.t.policies, FILE_SHA, sha256))?;
        self.commit.durable().await
    }

    /// Installs `record` as the next version and puts it in force, in one
    /// transaction; `from_file` also records the file digest. Returns the
    /// record with its version number.
    pub async fn install_policy(
        &self,
        record: PolicyVersion,
        from_file: bool,
    ) -> Result<PolicyVersion, StoreError> {
        let installed = self.write(|w| {
            let p = w.t.policies;
            let next = match w.tx.get(p, ACTIVE)? {
                Some(v) => u64::from_be_bytes(v.as_slice().try_into().unwrap_or([0; 8])) + 1,
                None => 1,
            };
            let record = PolicyVersion {
                version: next,
                ..record
            };
            w.tx.insert(p, version_key(next), record.encode_to_vec())?;
            w.tx.insert(p, ACTIVE, next.to_be_bytes())?;
            if from_file {
                w.tx.insert(p, FILE_SHA, record.sha256.as_bytes())?;
            }
            Ok::<_, StoreError>(record)
        })?;
        self.commit.durable().await?;
        Ok(installed)
    }

    /// Appends refused deliveries to the refusal log; one flush for all.
    pub async fn record_refusals(&self, records: &[RefusalRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        self.write(|w| {
            for r in records {
                let seq = w.next(Counter::Refusals)?;
                w.tx.insert(w.t.refusals, seq.to_be_bytes(), r.encode_to_vec())?;
            }
            Ok::<_, StoreError>(())
        })?;
        self.commit.durable().await
    }

    /// The refusal log, oldest first, at most `limit` entries.
    pub fn refusals(&self, limit: usize) -> Result<Vec<RefusalRecord>, StoreError> {
        self.db
            .range::<&[u8]>(self.t.refusals, ..)
            .take(limit)
            .map(|item| {
                let (k, v) = item?;
                RefusalRecord::decode(v.as_slice())
                    .map_err(|e| StoreError::corrupt(format!("refusals/{k:?}"), e))
            })
            .collect()
    }

    pub fn refusal_count(&self) -> Result<u64, StoreError> {
        Ok(self.db.len(self.t.refusals)?)
    }
}

/// The `settings` entry holding the federation directory chain
/// (`DirectoryChain`, protobuf): written only by [`Store::put_directory_chain`].
const DIRECTORY_CHAIN: &[u8] = b"directory";

impl Store {
    /// The directories this node adopted (`DirectoryChain`, protobuf), if any.
    pub fn directory_chain(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(self.t.settings, DIRECTORY_CHAIN)?)
    }

    /// Puts a new directory chain in force with the audit entries that say
    /// so, in one transaction, durably: a directory is in force exactly
    /// when its adoption is in the log.
    pub async fn put_directory_chain(
        &self,
        chain: &[u8],
        events: impl IntoIterator<Item = crate::audit::Event>,
    ) -> Result<(), StoreError> {
        self.write(|w| {
            w.tx.insert(w.t.settings, DIRECTORY_CHAIN, chain)?;
            w.append(events)?;
            Ok::<_, StoreError>(())
        })?;
        self.durable().await
    }
}
