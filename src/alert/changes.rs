//! The alert log as a watcher follows it (`WatchAlerts`): every alert at
//! its latest change, in log order, and one audit entry naming the alerts
//! each page sent, as a list names every alert it shows.

use crate::audit::{Action, Event};
use crate::proto::v1::AlertChange;
use crate::store::StoreError;

use super::Ledger;

impl Ledger {
    /// Told the alert log's latest position each time it moves.
    pub fn watch_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.store.watch_alerts()
    }

    /// Up to `limit` alert log entries after position `after`. Those
    /// `wanted` are the ones `actor` is sent: they are named in one
    /// `alerts.watch` entry, written before the page is handed out.
    pub fn changes_sent(
        &self,
        actor: &str,
        after: u64,
        limit: usize,
        wanted: impl Fn(&AlertChange) -> bool,
    ) -> Result<Vec<AlertChange>, StoreError> {
        let page = self.store.alert_changes_after(after, limit)?;
        let sent: Vec<String> = page
            .iter()
            .filter(|c| wanted(c))
            .filter_map(|c| c.alert.as_ref().map(|a| a.id.clone()))
            .collect();
        if !sent.is_empty() {
            let mut e = Event::new(actor, Action::AlertsWatch, "OK");
            e.detail.insert("sent".into(), sent.len().to_string());
            e.detail.insert("after_sequence".into(), after.to_string());
            e.objects = sent;
            self.store.audit_append([e])?;
        }
        Ok(page)
    }
}
