//! Decided disclosure requests past their retention, purged: what was
//! asked, why, by whom and about which identifiers goes (the request's
//! data key destroyed, its log entries emptied); what the request was and
//! how it went stays, for the answer-time statistics and the audit trail.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use prost::Message;

use super::disclosures::{decode_case, record};
use super::{Store, StoreError};
use crate::audit::{Action, Event, NODE};
use crate::proto::v1::{
    DisclosureCase, DisclosureDecision, DisclosureEvent, DisclosureRequest, DisclosureState,
};
use crate::time::system_time_lossy;

/// Whether `case` has had its final decision.
fn decided(case: &DisclosureCase) -> bool {
    matches!(
        DisclosureState::try_from(case.state),
        Ok(DisclosureState::Approved
            | DisclosureState::PartiallyApproved
            | DisclosureState::Refused)
    )
}

/// What a purged request keeps: its id, the alerts it was about, its
/// direction, peer, legal basis, urgency, state and dates, the steps of
/// its history with their times, the decision's outcome and ground.
/// Everything else (identifiers to verify, purpose, citation, case
/// reference, officers, notes, verification results) goes.
pub(super) fn purged_case(case: &DisclosureCase) -> DisclosureCase {
    let r = case.request.clone().unwrap_or_default();
    DisclosureCase {
        request: Some(DisclosureRequest {
            id: r.id,
            holder_alert_id: r.holder_alert_id,
            requester_alert_id: r.requester_alert_id,
            legal_basis: r.legal_basis,
            urgency: r.urgency,
            requested_at: r.requested_at,
            due_at: r.due_at,
            ..Default::default()
        }),
        outgoing: case.outgoing,
        peer: case.peer.clone(),
        state: case.state,
        due_at: case.due_at,
        overdue: false,
        history: case
            .history
            .iter()
            .map(|e| DisclosureEvent {
                step: e.step.clone(),
                at: e.at,
                ..Default::default()
            })
            .collect(),
        verification: Vec::new(),
        sequence: case.sequence,
        delivered_at: case.delivered_at,
        decision: case.decision.as_ref().map(|d| DisclosureDecision {
            request_id: d.request_id.clone(),
            outcome: d.outcome,
            ground: d.ground,
            ..Default::default()
        }),
        answered_at: case.answered_at,
        rule: case.rule.clone(),
        release_maximum: String::new(),
        release_limit: None,
        purged: true,
    }
}

impl Store {
    /// Purges every request decided more than `retention` before `now`
    /// and not purged yet, one transaction each: its data key destroyed,
    /// every earlier entry of it in the request log rewritten as purged,
    /// the purged case recorded as its next entry, `disclosure.purge`
    /// audited. Synced before it returns the ids purged.
    pub async fn purge_requests(
        &self,
        now: SystemTime,
        retention: Duration,
    ) -> Result<Vec<String>, StoreError> {
        let cutoff = now.checked_sub(retention).unwrap_or(SystemTime::UNIX_EPOCH);
        let due: Vec<DisclosureCase> = self
            .disclosure_cases()?
            .into_iter()
            .filter(|c| !c.purged && decided(c))
            .filter(|c| {
                c.answered_at
                    .as_ref()
                    .is_some_and(|a| system_time_lossy(a) <= cutoff)
            })
            .collect();
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let ids: HashSet<String> = due
            .iter()
            .filter_map(|c| Some(c.request.as_ref()?.id.clone()))
            .collect();
        let mut positions = self.log_positions(&ids)?;
        let mut purged = Vec::new();
        for case in due {
            let id = case
                .request
                .as_ref()
                .map(|r| r.id.clone())
                .unwrap_or_default();
            let mut emptied = purged_case(&case);
            let earlier = positions.remove(&id).unwrap_or_default();
            self.write(|w| {
                super::vault::destroy_data_key(w, "disclosures", id.as_bytes())?;
                for position in &earlier {
                    let entry = DisclosureCase {
                        sequence: *position,
                        ..emptied.clone()
                    };
                    w.tx.insert(
                        w.t.disclosure_log,
                        position.to_be_bytes(),
                        entry.encode_to_vec(),
                    )?;
                }
                record(w, &mut emptied, false)?;
                w.append([Event::new(NODE, Action::DisclosurePurge, "OK")
                    .object(id.clone())
                    .detail("log_entries", earlier.len())])?;
                Ok::<_, StoreError>(())
            })?;
            self.publish_disclosure(emptied.sequence);
            purged.push(id);
        }
        self.commit.durable().await?;
        Ok(purged)
    }

    /// Where in the request log the requests `ids` have entries (one scan).
    pub(super) fn log_positions(
        &self,
        ids: &HashSet<String>,
    ) -> Result<HashMap<String, Vec<u64>>, StoreError> {
        let mut positions: HashMap<String, Vec<u64>> = HashMap::new();
        for item in self.db.range::<&[u8]>(self.t.disclosure_log, ..) {
            let (k, v) = item?;
            let case = decode_case(&k, &v)?;
            if let Some(id) = case.request.map(|r| r.id).filter(|id| ids.contains(id)) {
                let position = super::trees::be_u64("disclosure_log", &k)?;
                positions.entry(id).or_default().push(position);
            }
        }
        Ok(positions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Action;
    use crate::ids::RequestId;
    use crate::proto::v1::DisclosureEvent;

    fn sealed_store(dir: &std::path::Path) -> Store {
        let kek = dir.join("kek.toml");
        crate::vault::FileKek::create(&kek).unwrap();
        let vault = super::super::Vault::open(&kek, &dir.join("keys")).unwrap();
        Store::open_sealed(&dir.join("data"), 8 << 20, None, vault).unwrap()
    }

    fn case(id: &str) -> DisclosureCase {
        DisclosureCase {
            request: Some(DisclosureRequest {
                id: id.into(),
                holder_alert_id: "ngo:1".into(),
                purpose: "locate the victim Ioana Popescu".into(),
                citation: "Art. 12 national law".into(),
                case_reference: "CASE-77".into(),
                officer: "inspector-x".into(),
                ..Default::default()
            }),
            peer: "ngo".into(),
            state: DisclosureState::Open as i32,
            history: vec![DisclosureEvent {
                step: "received".into(),
                note: "urgent: Ioana".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// A decided request past its retention is emptied, in its record and
    /// in every log entry, under a new data key (the old record no longer
    /// opens); an open one, and a purged one, are left alone.
    #[tokio::test]
    async fn a_decided_request_past_its_retention_is_emptied_everywhere() {
        let dir = tempfile::tempdir().unwrap();
        let store = sealed_store(dir.path());
        let event = |_| Event::new(NODE, Action::DisclosureRequestReceive, "OK");
        for id in [
            "police:req:0190f0a2-7c1e-7b3a-9a55-000000000001",
            "police:req:0190f0a2-7c1e-7b3a-9a55-000000000002",
        ] {
            store
                .receive_request(case(id), vec![], event)
                .await
                .unwrap();
        }
        let decided: RequestId = "police:req:0190f0a2-7c1e-7b3a-9a55-000000000001"
            .parse()
            .unwrap();
        store
            .update_request(&decided, |c| {
                c.state = DisclosureState::Refused as i32;
                c.answered_at = Some(crate::time::timestamp(SystemTime::now()));
                true
            })
            .unwrap();
        let raw = store.db.unsealed().unwrap();
        let before = raw
            .get(
                store.t.disclosures,
                b"police:req:0190f0a2-7c1e-7b3a-9a55-000000000001",
            )
            .unwrap()
            .unwrap();

        let purged = store
            .purge_requests(SystemTime::now(), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(purged, ["police:req:0190f0a2-7c1e-7b3a-9a55-000000000001"]);
        let mut cases = store.disclosure_cases().unwrap();
        cases.sort_by_key(|c| c.request.as_ref().unwrap().id.clone());
        let (gone, open) = (&cases[0], &cases[1]);
        assert!(gone.purged && !open.purged);
        assert_eq!(gone.state, DisclosureState::Refused as i32);
        assert_eq!(
            open.request.as_ref().unwrap().purpose,
            case("x").request.unwrap().purpose
        );
        let log = store.disclosure_log_after(0, 100).unwrap();
        let of_gone: Vec<_> = log
            .iter()
            .filter(|c| {
                c.request.as_ref().unwrap().id == "police:req:0190f0a2-7c1e-7b3a-9a55-000000000001"
            })
            .collect();
        assert_eq!(of_gone.len(), 3, "received, decided, purged");
        for entry in of_gone {
            let text = format!("{entry:?}");
            assert!(
                entry.purged && !text.contains("Ioana") && !text.contains("CASE-77"),
                "{text}"
            );
        }
        assert!(
            store
                .purge_requests(SystemTime::now(), Duration::ZERO)
                .await
                .unwrap()
                .is_empty()
        );

        // The record as it was before, put back on disk: its key is gone.
        raw.transaction(|tx| {
            tx.insert(
                store.t.disclosures,
                b"police:req:0190f0a2-7c1e-7b3a-9a55-000000000001",
                &before,
            )
        })
        .unwrap();
        let err = store.disclosure_cases().unwrap_err();
        assert!(err.is_unreadable(), "{err}");
        store.close().await.unwrap();
    }
}
