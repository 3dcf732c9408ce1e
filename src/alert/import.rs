//! Importing an agency's own register: one record at a time, known by its
//! stable source id, so that importing the same file again updates what
//! changed and duplicates nothing (the store keeps source id → alert id in
//! the alert's own transaction; see `store::imports`).

use std::sync::Mutex;
use std::time::SystemTime;

use super::{AlertError, Ledger, audit_write, invalid};
use crate::audit::CallEntry;
use crate::ids::{AlertId, SourceName};
use crate::paging::PageRequest;
use crate::proto::v1::{
    AlertDraft, ImportAlertResponse, ImportOutcome, ImportedRecord, ListImportedRequest,
    ListImportedResponse,
};
use crate::store::{ImportWrite, LocalWrite};
use crate::time::timestamp;

const MAX_SOURCE_ID: usize = 128;
const DEFAULT_PAGE: u32 = 1000;
const MAX_PAGE: u32 = 10_000;

/// A register's name (see [`SourceName`]).
fn check_source(source: &str) -> Result<(), AlertError> {
    SourceName::new(source)
        .map(drop)
        .map_err(|e| invalid("source", e.to_string()))
}

/// A record's id in its register: what the agency calls the case.
fn check_source_id(source_id: &str) -> Result<(), AlertError> {
    if source_id.trim().is_empty() {
        return Err(invalid("source_id", "is required"));
    }
    if source_id.len() > MAX_SOURCE_ID {
        return Err(invalid(
            "source_id",
            format!("at most {MAX_SOURCE_ID} bytes"),
        ));
    }
    if source_id.chars().any(char::is_control) {
        return Err(invalid("source_id", "holds a control character"));
    }
    Ok(())
}

fn outcome_of(written: &ImportWrite) -> ImportOutcome {
    match written {
        ImportWrite::Created(_) => ImportOutcome::Created,
        ImportWrite::Updated(_) => ImportOutcome::Updated,
        ImportWrite::Unchanged(_) => ImportOutcome::Unchanged,
    }
}

impl Ledger {
    /// Imports one record of `source` (see `ImportAlert` in the API): the
    /// draft is checked exactly as a submit checks it, then the record's
    /// alert is created, given a new version, or left as it is.
    pub async fn import(
        &self,
        source: &str,
        source_id: &str,
        draft: Option<AlertDraft>,
        validate_only: bool,
        call: &CallEntry,
    ) -> Result<ImportAlertResponse, AlertError> {
        check_source(source)?;
        check_source_id(source_id)?;
        call.detail("source", source);
        let now = SystemTime::now();
        // What "unchanged" compares: the draft as the register gave it.
        let digest = super::draft_digest(draft.as_ref());
        let (mut draft, pseudonyms) = self.prepare(draft, now)?;
        // The register's own case number is the alert's reference here,
        // unless the record names another one.
        if draft.case_reference.is_empty() {
            draft.case_reference = source_id.to_owned();
        }
        if validate_only {
            call.detail("validate_only", true);
            return self.would_import((source, source_id, digest.as_ref()), draft, now, call);
        }
        // An unchanged record is not written, so it needs no tokens: do not
        // spend the key service's budget on it. (Should it change before the
        // write after all, the version is stored pending and completed.)
        let pseudonyms = if self.tokens.uses_key_service()
            && matches!(
                self.store.imported(source, source_id, digest.as_ref())?,
                Some((_, true))
            ) {
            super::Pseudonyms {
                subjects: pseudonyms,
                tokens_pending: true,
            }
        } else {
            self.tokenize(&draft.subjects, pseudonyms).await?
        };
        let new_id = AlertId::generate(&self.agency);
        let decided = Mutex::new(Vec::new());
        let written = self
            .store
            .write_import_then(
                (source, source_id, digest.as_ref()),
                &new_id,
                |current| match current {
                    None => Ok(self.first_version(
                        self.new_alert(&new_id, now, draft),
                        pseudonyms,
                        &decided,
                    )),
                    Some(record) => self.next_version(
                        record,
                        0,
                        timestamp(now),
                        |alert, held| {
                            super::replace_with(alert, draft);
                            *held = pseudonyms;
                        },
                        &decided,
                    ),
                },
                |w| {
                    call.detail("outcome", outcome_of(w).as_str_name());
                    match w {
                        ImportWrite::Unchanged(rec) => {
                            if let Some(a) = &rec.alert {
                                call.object(a.id.clone());
                                call.detail("version", a.version);
                            }
                            call.done("OK").into_iter().collect()
                        }
                        ImportWrite::Created(rec) | ImportWrite::Updated(rec) => {
                            let w = LocalWrite::Written(rec.clone());
                            self.count_decisions(&w, &decided);
                            audit_write(call, &w)
                        }
                    }
                },
            )
            .await?;
        Ok(ImportAlertResponse {
            outcome: outcome_of(&written) as i32,
            alert: written.record().alert.clone(),
        })
    }

    /// What an import of `draft` would do (`validate_only`): the record
    /// created, updated or unchanged, and the alert as it would be; nothing
    /// is written.
    fn would_import(
        &self,
        (source, source_id, digest): (&str, &str, &[u8]),
        draft: AlertDraft,
        now: SystemTime,
        call: &CallEntry,
    ) -> Result<ImportAlertResponse, AlertError> {
        let held = self.store.imported(source, source_id, digest)?;
        let outcome = match &held {
            None => ImportOutcome::Created,
            Some((_, true)) => ImportOutcome::Unchanged,
            Some((rec, false)) if rec.alert.as_ref().is_some_and(|a| !a.retracted) => {
                ImportOutcome::Updated
            }
            Some(_) => ImportOutcome::Created,
        };
        call.detail("outcome", outcome.as_str_name());
        Ok(ImportAlertResponse {
            alert: Some(self.unstored(draft, now)),
            outcome: outcome as i32,
        })
    }

    /// The records of one source the node knows (`ListImported`).
    pub fn imported(&self, req: &ListImportedRequest) -> Result<ListImportedResponse, AlertError> {
        check_source(&req.source)?;
        let page =
            PageRequest::<String>::parse(req.page_size, &req.page_token, DEFAULT_PAGE, MAX_PAGE)
                .map_err(|v| AlertError::Invalid(vec![v]))?;
        let (records, more) =
            self.store
                .list_imported(&req.source, page.after.as_deref(), page.size)?;
        let next_page_token = match (more, records.last()) {
            (true, Some(last)) => last.source_id.clone(),
            _ => String::new(),
        };
        Ok(ListImportedResponse {
            records: records
                .into_iter()
                .map(|r| ImportedRecord {
                    source_id: r.source_id,
                    alert_id: r.alert_id,
                    version: r.version,
                    retracted: r.retracted,
                })
                .collect(),
            next_page_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_source_ids_are_checked() {
        assert!(check_source("ngo-register.2024_a").is_ok());
        for bad in ["", "Cases", "a b", "a\0b", &"x".repeat(65)] {
            assert!(check_source(bad).is_err(), "{bad:?}");
        }
        assert!(check_source_id("NGO-2019-0042").is_ok());
        assert!(check_source_id("Ünïcode 7").is_ok());
        for bad in ["", "  ", "a\nb", "a\0b", &"x".repeat(129)] {
            assert!(check_source_id(bad).is_err(), "{bad:?}");
        }
    }
}
