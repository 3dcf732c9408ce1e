//! Lookups: which alerts hold a token or a similar person (answering a
//! federation lookup), and the log of lookups made.

use prost::Message;

use super::engine::Reads;
use super::{Counter, Store, StoreError, index};
use crate::ids::AgencyId;

impl Store {
    /// Alerts holding any of `tokens` (exact) or a person encoding at least
    /// `threshold` similar to one of `encodings`; only alerts of `origin` when
    /// given. Best similarity per (alert, type).
    pub fn lookup(
        &self,
        tokens: &[crate::proto::v1::Token],
        encodings: &[crate::proto::v1::PersonEncoding],
        threshold: f64,
        origin: Option<&AgencyId>,
    ) -> Result<Vec<crate::proto::v1::LookupMatch>, StoreError> {
        use crate::proto::v1::{IdentifierType, LookupMatch};
        let ranges = |prefix: &[u8]| {
            let mut start = prefix.to_vec();
            let mut end = prefix.to_vec();
            match origin {
                Some(o) => {
                    start.extend_from_slice(o.as_str().as_bytes());
                    end.extend_from_slice(o.as_str().as_bytes());
                    start.push(0);
                    end.push(1);
                }
                None => end.push(0xff),
            }
            vec![(start, end)]
        };
        let snapshot = self.db.snapshot();
        let scan = |tree, range| snapshot.range(tree, range);
        let mut out: Vec<LookupMatch> = Vec::new();
        let mut add = |m: LookupMatch| match out
            .iter_mut()
            .find(|o| o.alert_id == m.alert_id && o.r#type == m.r#type)
        {
            // An exact token beats a fuzzy match of the same type; of two
            // fuzzy ones, the better score with its evidence.
            Some(o) if o.fuzzy && !m.fuzzy => *o = m,
            Some(o) if o.fuzzy && m.fuzzy && m.similarity > o.similarity => *o = m,
            Some(_) => {}
            None => out.push(m),
        };
        for t in tokens {
            let prefix = index::token_prefix(&(t.r#type, t.key_version, t.value.clone()));
            for (id, _) in Self::candidates(scan, self.t.tokens, prefix.len(), ranges(&prefix))? {
                add(LookupMatch {
                    r#type: t.r#type,
                    alert_id: id.to_string(),
                    similarity: 1.0,
                    fuzzy: false,
                    evidence: None,
                });
            }
        }
        for e in encodings {
            let Some(probe) = crate::matching::Comparable::of(e) else {
                continue;
            };
            let block = crate::matching::encoding_block(e);
            for (id, value) in Self::candidates(scan, self.t.fuzzy, block.len(), ranges(&block))? {
                let Some(m) = crate::matching::Comparable::from_index_value(&value)
                    .and_then(|stored| probe.compare(&stored))
                else {
                    continue;
                };
                if m.score >= threshold {
                    add(LookupMatch {
                        r#type: IdentifierType::Person as i32,
                        alert_id: id.to_string(),
                        similarity: m.score,
                        fuzzy: true,
                        evidence: m.evidence,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Appends a lookup to the lookup log (read by the audit log) and syncs.
    pub async fn record_lookup(
        &self,
        record: crate::proto::v1::LookupRecord,
    ) -> Result<(), StoreError> {
        self.write(|w| {
            let seq = w.next(Counter::Lookups)?;
            w.tx.insert(w.t.lookups, seq.to_be_bytes(), record.encode_to_vec())?;
            Ok::<_, StoreError>(())
        })?;
        self.commit.durable().await
    }

    /// Number of lookups in the lookup log.
    pub fn lookup_count(&self) -> Result<u64, StoreError> {
        Ok(self.db.len(self.t.lookups)?)
    }
}
