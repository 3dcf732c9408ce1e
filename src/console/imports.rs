//! The import jobs the console keeps (see `pages::import`, the page that
//! makes and shows them): each uploaded register with its check or run,
//! the last [`KEEP`] of them, and each visible to the certificate that
//! uploaded it only.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use super::view::{PageError, Viewer};
use crate::tabular::Loaded;
use crate::tabular::job::Summary;

/// Jobs kept, newest first; older finished ones are dropped with their files.
pub(super) const KEEP: usize = 20;
/// Rows a report lists one by one (the counts cover them all).
pub(super) const REPORTED: usize = 1000;

/// One row in a report.
pub struct RowReport {
    pub row: u32,
    pub case_id: String,
    pub outcome: String,
    pub alert: String,
    pub problems: Vec<String>,
}

/// How a job stands.
#[derive(Default)]
pub struct JobState {
    pub running: bool,
    pub position: u64,
    pub summary: Summary,
    pub rows: Vec<RowReport>,
    /// Rows beyond [`REPORTED`], counted only.
    pub more: u64,
    /// The rejected rows as CSV: the file's header, the row, the reasons.
    pub rejected: Vec<u8>,
    pub error: Option<String>,
}

/// An uploaded register and what was done with it.
pub struct Job {
    pub(super) id: u64,
    /// The certificate that uploaded it (its SPIFFE id).
    pub(super) owner: String,
    pub(super) file_name: String,
    pub(super) mapping_name: String,
    pub(super) source: String,
    pub(super) dry_run: bool,
    pub(super) retract_missing: bool,
    /// The upload, sealed, in a private directory removed with the job.
    pub(super) dir: Arc<tempfile::TempDir>,
    pub(super) path: PathBuf,
    /// The key it is sealed under: only here, gone with the job.
    pub(super) key: crate::vault::Secret,
    pub(super) loaded: Arc<Loaded>,
    pub(super) total: Mutex<Option<u64>>,
    pub(super) sheet: Mutex<Option<String>>,
    pub(super) state: Mutex<JobState>,
}

impl Job {
    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The node's import jobs (for its console).
#[derive(Default)]
pub struct Imports {
    pub(super) next: AtomicU64,
    jobs: Mutex<BTreeMap<u64, Arc<Job>>>,
}

impl Imports {
    pub(super) fn add(&self, job: Job) -> Arc<Job> {
        let job = Arc::new(job);
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.insert(job.id, job.clone());
        while jobs.len() > KEEP {
            let oldest_done = jobs
                .iter()
                .find(|(_, j)| !j.state().running)
                .map(|(id, _)| *id);
            match oldest_done {
                Some(id) => jobs.remove(&id),
                None => break,
            };
        }
        job
    }

    /// A job of `viewer`'s (another certificate's job does not exist for them).
    pub(super) fn get(&self, id: u64, viewer: &Viewer) -> Result<Arc<Job>, PageError> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .filter(|j| j.owner == viewer.client.spiffe_uri())
            .cloned()
            .ok_or_else(|| PageError::NotFound(format!("there is no import {id} of yours")))
    }

    pub(super) fn of(&self, viewer: &Viewer) -> Vec<Arc<Job>> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .rev()
            .filter(|j| j.owner == viewer.client.spiffe_uri())
            .cloned()
            .collect()
    }
}
