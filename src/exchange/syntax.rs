//! The syntax of every id a peer names in an envelope, checked on arrival,
//! before anything is stored, logged or audited.
//!
//! An id is printed in `audit query`, written as an audit object and put
//! in log lines; a peer that could send `labour:x\n 9999 … FORGED` as an
//! alert id could write whole fake lines there. So each id must parse as
//! what it is (`<agency>:<uuid>`, `<agency>:req:<uuid>`,
//! `<agency>:rel:<uuid>`), and an id the sender made must name the sender
//! as its origin. What fails is refused (acked REJECTED) with a reason
//! that quotes the value escaped. Free text (notes, reasons, names) is
//! checked by the step that takes it and escaped wherever it is printed
//! (`crate::text`).

use std::str::FromStr;

use crate::ids::{AgencyId, AlertId, ReleaseId, RequestId};
use crate::proto::v1::envelope::Payload;

/// A field holding an id of type `T`; `from` set when the sender must be
/// its origin (it made the id). Empty is allowed only when `optional`.
fn id<T>(
    field: &str,
    value: &str,
    optional: bool,
    origin: impl Fn(&T) -> &AgencyId,
    from: Option<&AgencyId>,
) -> Result<(), String>
where
    T: FromStr<Err = crate::ids::IdError>,
{
    if value.is_empty() {
        return if optional {
            Ok(())
        } else {
            Err(format!("{field}: is required"))
        };
    }
    let parsed = T::from_str(value).map_err(|e| format!("{field}: {e}"))?;
    match from {
        Some(from) if origin(&parsed) != from => Err(format!(
            "{field}: {} was not made by the sender `{from}`",
            crate::text::quote(value, 120)
        )),
        _ => Ok(()),
    }
}

fn alert(field: &str, value: &str, from: Option<&AgencyId>) -> Result<(), String> {
    id::<AlertId>(field, value, false, AlertId::origin, from)
}

fn request(field: &str, value: &str, from: Option<&AgencyId>) -> Result<(), String> {
    id::<RequestId>(field, value, false, RequestId::origin, from)
}

fn release(
    field: &str,
    value: &str,
    optional: bool,
    from: Option<&AgencyId>,
) -> Result<(), String> {
    id::<ReleaseId>(field, value, optional, ReleaseId::origin, from)
}

/// Checks the ids of one payload from `from`. Alerts are checked (with
/// their content) by `Inbound::check`; this covers every other kind.
pub fn check(from: &AgencyId, payload: &Payload) -> Result<(), String> {
    let sender = Some(from);
    match payload {
        Payload::Alert(_) => Ok(()),
        Payload::HitNotice(n) => {
            alert("hit_notice.your_alert_id", &n.your_alert_id, None)?;
            alert("hit_notice.our_alert_id", &n.our_alert_id, sender)
        }
        Payload::HitReview(r) => {
            alert("hit_review.your_alert_id", &r.your_alert_id, None)?;
            alert("hit_review.our_alert_id", &r.our_alert_id, sender)
        }
        Payload::DisclosureRequest(r) => {
            request("disclosure_request.id", &r.id, sender)?;
            alert(
                "disclosure_request.holder_alert_id",
                &r.holder_alert_id,
                None,
            )?;
            if r.requester_alert_id.is_empty() {
                Ok(())
            } else {
                alert(
                    "disclosure_request.requester_alert_id",
                    &r.requester_alert_id,
                    sender,
                )
            }
        }
        Payload::DisclosureDecision(d) => {
            request("disclosure_decision.request_id", &d.request_id, None)?;
            release(
                "disclosure_decision.release_id",
                &d.release_id,
                true,
                sender,
            )
        }
        Payload::ClarificationAnswer(a) => {
            request("clarification_answer.request_id", &a.request_id, sender)
        }
        Payload::Release(r) => {
            release("release.id", &r.id, false, sender)?;
            request("release.request_id", &r.request_id, None)?;
            alert("release.alert_id", &r.alert_id, sender)
        }
        Payload::ReleaseWithdrawal(w) => {
            release(
                "release_withdrawal.release_id",
                &w.release_id,
                false,
                sender,
            )?;
            request("release_withdrawal.request_id", &w.request_id, None)
        }
        // Statistics name no ids: `analytics` checks them whole, to the byte.
        Payload::StatsReports(_) | Payload::StatsAggregate(_) | Payload::StatsCall(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::HitNotice;

    #[test]
    fn a_forged_id_is_refused_and_quoted_escaped() {
        let ngo = AgencyId::new("ngo").unwrap();
        let police = AgencyId::new("police").unwrap();
        let good = HitNotice {
            your_alert_id: AlertId::generate(&police).to_string(),
            our_alert_id: AlertId::generate(&ngo).to_string(),
            ..Default::default()
        };
        assert_eq!(check(&ngo, &Payload::HitNotice(good.clone())), Ok(()));
        let forged = HitNotice {
            our_alert_id: "ngo:x\n 9999 node store.restore OK FORGED\u{1b}[31m".into(),
            ..good.clone()
        };
        let why = check(&ngo, &Payload::HitNotice(forged)).unwrap_err();
        assert!(why.starts_with("hit_notice.our_alert_id: "), "{why}");
        assert!(!why.contains('\n') && !why.contains('\u{1b}'), "{why}");
        let not_theirs = HitNotice {
            our_alert_id: AlertId::generate(&police).to_string(),
            ..good
        };
        let why = check(&ngo, &Payload::HitNotice(not_theirs)).unwrap_err();
        assert!(why.contains("not made by the sender"), "{why}");
    }
}
