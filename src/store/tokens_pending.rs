//! Own alerts whose exact tokens wait for the OPRF key service: the
//! `tokens_pending` tree (alert id → ()), kept in the transaction of every
//! local write from the record's own `tokens_pending` flag, so the tree and
//! the alerts never disagree, even across a crash.

use super::{Store, StoreError, Write};
use crate::ids::AlertId;
use crate::proto::v1::StoredAlert;

/// Inside a local write: lists `record` when its tokens are pending (and
/// it is not retracted), unlists it otherwise.
pub(super) fn track(
    w: &mut Write<'_, '_>,
    key: &str,
    record: &StoredAlert,
) -> Result<(), StoreError> {
    let retracted = record.alert.as_ref().is_some_and(|a| a.retracted);
    if record.tokens_pending && !retracted {
        w.tx.insert(w.t.tokens_pending, key, [])?;
    } else {
        w.tx.remove(w.t.tokens_pending, key)?;
    }
    Ok(())
}

impl Store {
    /// Up to `limit` own alerts whose tokens are pending, oldest id first
    /// (alert ids are time-ordered).
    pub fn tokens_pending(&self, limit: usize) -> Result<Vec<AlertId>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .db
            .range::<&[u8]>(self.t.tokens_pending, ..)
            .take(limit)
        {
            let (k, _) = item?;
            let text = String::from_utf8_lossy(&k).into_owned();
            let id = text
                .parse::<AlertId>()
                .map_err(|e| StoreError::corrupt(format!("tokens_pending/{text}"), e))?;
            out.push(id);
        }
        Ok(out)
    }

    /// How many own alerts wait for their tokens.
    pub fn tokens_pending_count(&self) -> Result<u64, StoreError> {
        Ok(self.db.len(self.t.tokens_pending)?)
    }

    /// Unlists `id` without writing the alert (it was purged by retention
    /// meanwhile, or is gone): nothing is left to derive.
    pub async fn drop_tokens_pending(&self, id: &AlertId) -> Result<(), StoreError> {
        let key = id.to_string();
        self.write(|w| w.tx.remove(w.t.tokens_pending, &key))?;
        self.commit.durable().await
    }
}
