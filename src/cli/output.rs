//! Human-readable and JSON rendering for the CLI.

use crate::text::escape as esc;
use pbjson_types::Timestamp;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::proto::v1::{
    Alert, BackfillResponse, Category, DiffPolicyResponse, ExplainPolicyResponse, HandlingCode,
    Hit, HitChange, HitSource, IdentifierType, Indicator, InformationAccuracy, ListPeersResponse,
    LookupResponse, NodeStatus, PolicyVersion, Severity, SourceReliability, Tlp, identifier::Kind,
};

/// Writes `bytes` to stdout; a reader that has gone (`| head`) ends the
/// output quietly, as for every other command.
pub fn raw(bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn json<T: serde::Serialize>(v: &T) {
    match to_json(v, true) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot render JSON: {e}"),
    }
}

/// Canonical protobuf JSON of `v`, pretty or on one line. pbjson writes
/// timestamps as `2026-12-02T05:49:21.770018238+00:00`; the canonical
/// mapping wants `Z` and 0, 3, 6 or 9 fractional digits, which is what
/// other protobuf tools parse and what scripts compare.
pub fn to_json<T: serde::Serialize>(v: &T, pretty: bool) -> serde_json::Result<String> {
    let mut value = serde_json::to_value(v)?;
    canonical_times(&mut value);
    if pretty {
        serde_json::to_string_pretty(&value)
    } else {
        serde_json::to_string(&value)
    }
}

fn canonical_times(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) => {
            if let Some(c) = canonical_time(s) {
                *s = c;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(canonical_times),
        Value::Object(fields) => fields.values_mut().for_each(canonical_times),
        _ => {}
    }
}

/// `s` in canonical form if it is a UTC time as pbjson writes one.
fn canonical_time(s: &str) -> Option<String> {
    s.strip_suffix("+00:00")?;
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    let base = t
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]"
        ))
        .ok()?;
    let nanos = t.nanosecond();
    let fraction = match nanos {
        0 => String::new(),
        n if n % 1_000_000 == 0 => format!(".{:03}", n / 1_000_000),
        n if n % 1_000 == 0 => format!(".{:06}", n / 1_000),
        n => format!(".{n:09}"),
    };
    Some(format!("{base}{fraction}Z"))
}

/// `n` things in words: "1 checkpoint", "3 checkpoints", "0 entries".
/// A value of someone's text, escaped, or "-" when empty.
fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        crate::text::escape(s).to_string()
    }
}

pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub fn time(ts: Option<&Timestamp>) -> String {
    ts.and_then(|t| OffsetDateTime::from_unix_timestamp(t.seconds).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "-".into())
}

/// `CATEGORY_LABOUR_EXPLOITATION` → `labour exploitation`.
fn enum_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix)
        .unwrap_or(full)
        .to_ascii_lowercase()
        .replace('_', " ")
}

fn category(v: i32) -> String {
    Category::try_from(v).map_or("?".into(), |c| enum_name(c.as_str_name(), "CATEGORY_"))
}
fn severity(v: i32) -> String {
    Severity::try_from(v).map_or("?".into(), |c| enum_name(c.as_str_name(), "SEVERITY_"))
}
fn tlp(v: i32) -> String {
    Tlp::try_from(v).map_or("?".into(), |t| {
        t.as_str_name()
            .replace("TLP_", "TLP:")
            .replace("AMBER_STRICT", "AMBER+STRICT")
    })
}

fn kind_name(k: &Kind) -> &'static str {
    match k {
        Kind::Phone(_) => "phone",
        Kind::Email(_) => "email",
        Kind::Person(_) => "person",
        Kind::Document(_) => "document",
        Kind::Iban(_) => "iban",
        Kind::CryptoWallet(_) => "crypto wallet",
        Kind::OnlineHandle(_) => "online handle",
        Kind::VehiclePlate(_) => "vehicle plate",
        Kind::AdvertUrl(_) => "advert url",
    }
}

/// Who got what of an alert: per peer, each version or retraction, its
/// answer, when, under which rule and at which levels.
pub fn sharing(s: &crate::proto::v1::AlertSharing, as_json: bool) {
    if as_json {
        return json(s);
    }
    let list = |l: &[String]| {
        if l.is_empty() {
            "-".to_string()
        } else {
            l.join(", ")
        }
    };
    println!(
        "shared with: {}   withdrawn from: {}",
        list(&s.shared_with),
        list(&s.withdrawn_from)
    );
    if s.shares.is_empty() {
        println!("  nothing acknowledged by a peer yet");
    }
    for r in &s.shares {
        let what = if r.retraction {
            format!("v{} retraction", r.version)
        } else {
            format!("v{}", r.version)
        };
        let when = if r.acked_at.is_some() {
            format!("acknowledged {}", time(r.acked_at.as_ref()))
        } else {
            format!("queued {}, never sent", time(r.queued_at.as_ref()))
        };
        let rule = if r.rule.is_empty() {
            String::new()
        } else {
            format!("  rule {}", r.rule)
        };
        let levels = if r.disclosed.is_empty() {
            String::new()
        } else {
            format!("  disclosed: {}", r.disclosed)
        };
        println!(
            "  {:<12} {what:<16} {:<9} {when}{rule}{levels}",
            r.peer, r.status
        );
    }
}

pub fn alert(a: &Alert, as_json: bool) {
    if as_json {
        return json(a);
    }
    println!("alert {}  version {}  origin {}", a.id, a.version, a.origin);
    if !a.case_reference.is_empty() || !a.title.is_empty() {
        println!(
            "  case {}  {}  (kept here, never shared)",
            or_dash(&a.case_reference),
            crate::text::escape(&a.title)
        );
    }
    println!(
        "  created {}  updated {}",
        time(a.created_at.as_ref()),
        time(a.updated_at.as_ref())
    );
    if a.retracted {
        println!(
            "  RETRACTED: {}",
            if a.retraction_reason.is_empty() {
                "-"
            } else {
                &a.retraction_reason
            }
        );
        return;
    }
    if let Some(c) = &a.content {
        println!(
            "  {}  severity {}  {}  retain until {}",
            category(c.category),
            severity(c.severity),
            tlp(c.tlp),
            time(c.retention_until.as_ref())
        );
        // Who may see it, how the originator requires it to be handled, and
        // how it rates the source and the information (Admiralty code), in
        // words (crate::handling holds the one text).
        println!("  {}: {}", tlp(c.tlp), crate::handling::tlp_meaning(c.tlp));
        let handling = HandlingCode::try_from(c.handling_code)
            .ok()
            .filter(|h| *h != HandlingCode::Unspecified)
            .map(|h| enum_name(h.as_str_name(), "HANDLING_CODE_").to_ascii_uppercase());
        println!(
            "  handling {}: {}",
            handling.as_deref().unwrap_or("-"),
            crate::handling::handling_meaning(c.handling_code)
        );
        if c.source_reliability != SourceReliability::Unspecified as i32
            || c.information_accuracy != InformationAccuracy::Unspecified as i32
        {
            println!(
                "  evaluation: source {}; information {}",
                crate::handling::reliability_meaning(c.source_reliability),
                crate::handling::accuracy_meaning(c.information_accuracy)
            );
        }
        if let Some(l) = &c.location {
            let parts: Vec<&str> = [l.country.as_str(), &l.region, &l.city]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect();
            println!("  location {}", parts.join(" / "));
        }
        if !c.indicators.is_empty() {
            let names: Vec<String> = c
                .indicators
                .iter()
                .map(|i| {
                    Indicator::try_from(*i)
                        .map_or("?".into(), |i| enum_name(i.as_str_name(), "INDICATOR_"))
                })
                .collect();
            println!("  indicators: {}", names.join(", "));
        }
        if !c.narrative.is_empty() {
            println!("  narrative: {}", c.narrative);
        }
    }
    if a.subjects.is_empty() {
        println!("  subjects: none held here");
    } else {
        for (i, s) in a.subjects.iter().enumerate() {
            let kinds: Vec<&str> = s
                .identifiers
                .iter()
                .filter_map(|id| id.kind.as_ref())
                .map(kind_name)
                .collect();
            println!("  subject {}: {}", i + 1, kinds.join(", "));
        }
    }
}

pub fn alerts(list: &[Alert], as_json: bool) {
    if as_json {
        return json(&list);
    }
    if list.is_empty() {
        println!("no alerts");
        return;
    }
    println!(
        "{:<50} {:>3}  {:<10} {:<16} {:<26} {:<9} {:<14} {:<20}  title",
        "id", "ver", "origin", "case", "category", "severity", "tlp", "updated"
    );
    for a in list {
        let (cat, sev, t) = match (&a.content, a.retracted) {
            (_, true) => ("(retracted)".to_string(), String::new(), String::new()),
            (Some(c), _) => (category(c.category), severity(c.severity), tlp(c.tlp)),
            (None, _) => ("-".into(), String::new(), String::new()),
        };
        println!(
            "{:<50} {:>3}  {:<10} {:<16} {:<26} {:<9} {:<14} {:<20}  {}",
            a.id,
            a.version,
            a.origin,
            or_dash(&a.case_reference),
            cat,
            sev,
            t,
            time(a.updated_at.as_ref()),
            crate::text::escape(&a.title)
        );
    }
}

/// One hit log entry, as `hits watch` prints it: a hit found, or a review
/// of one (here or at the other agency).
pub fn hit(h: &Hit, as_json: bool) {
    if as_json {
        return match to_json(h, false) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("error: cannot render JSON: {e}"),
        };
    }
    match HitChange::try_from(h.change) {
        Ok(HitChange::Reviewed) => println!("{}", review_line(h, h.our_review.as_ref(), "here")),
        Ok(HitChange::ReviewReceived) => println!(
            "{}",
            review_line(
                h,
                h.their_review.as_ref(),
                &format!("at {}", h.other_agency)
            )
        ),
        _ => println!("{}", found_line(h)),
    }
}

/// One alert change as `alert watch` prints it: one JSON line, or one
/// line of text (position, state, id, version, category).
pub fn alert_change(c: &crate::proto::v1::AlertChange, as_json: bool) {
    if as_json {
        return match to_json(c, false) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("error: cannot render JSON: {e}"),
        };
    }
    let Some(a) = &c.alert else { return };
    let state = if a.retracted { "retracted" } else { "current" };
    let what = a
        .content
        .as_ref()
        .map(|c| category(c.category))
        .unwrap_or_default();
    println!(
        "{:>6}  {}  {state:<9}  {}  version {}  {what}",
        c.sequence,
        time(a.updated_at.as_ref()),
        a.id,
        a.version
    );
}

/// A hit as it stands: how it was found, then each agency's review.
pub fn hit_state(h: &Hit, as_json: bool) {
    if as_json {
        return json(h);
    }
    println!("{}", found_line(h));
    for (review, by) in [
        (h.our_review.as_ref(), "here".to_string()),
        (h.their_review.as_ref(), format!("at {}", h.other_agency)),
    ] {
        if review.is_some() {
            println!("{}", review_line(h, review, &by));
        }
    }
    if h.our_review.is_none() && h.their_review.is_none() {
        println!("{:>11}not reviewed yet", "");
    }
    if !h.known_there {
        println!(
            "{:>11}{} has not been told of this hit: a review stays here",
            "", h.other_agency
        );
    }
}

fn found_line(h: &Hit) -> String {
    let kind = IdentifierType::try_from(h.r#type).map_or("?".into(), |t| {
        enum_name(t.as_str_name(), "IDENTIFIER_TYPE_")
    });
    // Who compared the two alerts: this node, or the other agency's,
    // which then sent a notice.
    let source = if h.source == HitSource::Notice as i32 {
        format!("found by {}", h.other_agency)
    } else {
        "found here".to_string()
    };
    // Hits recorded before strengths existed say only fuzzy or exact.
    let how = match crate::proto::strength_name(h.strength).as_str() {
        "unknown" | "unspecified" if h.fuzzy => "fuzzy".to_string(),
        "unknown" | "unspecified" => "exact".to_string(),
        s => s.to_string(),
    };
    let evidence = h
        .evidence
        .as_ref()
        .map(|e| format!("; {}", crate::matching::describe_evidence(e)))
        .unwrap_or_default();
    let pending = if h.strength == crate::proto::v1::MatchStrength::Possible as i32 {
        " -- needs review"
    } else {
        ""
    };
    format!(
        "{}  {}  your {}  <->  {} at {}  ({kind}, {how}, score {:.2}, {source}{evidence}){pending}",
        hit_reference(h),
        time(h.detected_at.as_ref()),
        h.local_alert_id,
        h.other_alert_id,
        h.other_agency,
        h.similarity,
    )
}

fn review_line(h: &Hit, review: Option<&crate::proto::v1::HitReview>, by: &str) -> String {
    let Some(r) = review else {
        return format!("{}  review {by}: none", hit_reference(h));
    };
    let note = if r.note.is_empty() {
        String::new()
    } else {
        format!(": {:?}", r.note)
    };
    format!(
        "{}  {}  reviewed {by}: {} by {}{note}",
        hit_reference(h),
        time(r.reviewed_at.as_ref()),
        crate::proto::verdict_name(r.verdict).replace('_', " "),
        r.reviewer,
    )
}

/// The two numbers of a hit log line: the entry's position (what
/// `--after` takes to resume) and the hit's own number (what `hits get`,
/// `hits review` and `requests send --hit` take; a hit keeps it through
/// every review, each a new entry).
fn hit_reference(h: &Hit) -> String {
    format!("entry {:>5}  hit {:>4}", h.sequence, h.number)
}

pub fn hit_count(after: u64, c: &crate::proto::v1::CountHitsResponse, as_json: bool) {
    if as_json {
        return json(c);
    }
    let entries = count(c.count, "hit log entry", "hit log entries");
    if c.latest_sequence == 0 {
        return println!("{entries} after entry {after}: the hit log is empty");
    }
    println!(
        "{entries} after entry {after} (hits found and reviews); the newest is entry {0}: resume with --after {0}",
        c.latest_sequence
    );
}

pub fn lookup(r: &LookupResponse, as_json: bool) {
    if as_json {
        return json(r);
    }
    for a in &r.answers {
        if !a.answered {
            println!("{:<12} no answer: {}", a.agency, a.error);
        } else if a.matches.is_empty() {
            println!("{:<12} no hit", a.agency);
        } else {
            for m in &a.matches {
                let kind = IdentifierType::try_from(m.r#type).map_or("?".into(), |t| {
                    enum_name(t.as_str_name(), "IDENTIFIER_TYPE_")
                });
                let evidence = m
                    .evidence
                    .as_ref()
                    .map(|e| format!("; {}", crate::matching::describe_evidence(e)))
                    .unwrap_or_default();
                println!(
                    "{:<12} HIT {}  ({kind}, score {:.2}{evidence})",
                    a.agency, m.alert_id, m.similarity
                );
            }
        }
    }
}

pub fn peers(p: &ListPeersResponse, as_json: bool) {
    if as_json {
        return json(p);
    }
    if p.peers.is_empty() {
        println!("no peers configured");
        return;
    }
    println!(
        "{:<12} {:<22} {:<7} {:>6} {:>9} {:>9} {:>8} {:>7}  {:<25} last error",
        "peer",
        "address",
        "link",
        "queue",
        "oldest",
        "delivered",
        "rejected",
        "retries",
        "last ack"
    );
    for peer in &p.peers {
        println!(
            "{:<12} {:<22} {:<7} {:>6} {:>9} {:>9} {:>8} {:>7}  {:<25} {}",
            peer.agency_id,
            peer.address,
            if peer.state.is_empty() {
                // An older node: only whether a stream is open.
                if peer.connected { "up" } else { "down" }
            } else {
                peer.state.as_str()
            },
            peer.queue_depth,
            age(peer.oldest_undelivered_at.as_ref()),
            peer.delivered_total,
            peer.rejected_total,
            peer.retries,
            time(peer.last_ack_at.as_ref()),
            if peer.last_error.is_empty() {
                "-".to_string()
            } else {
                format!(
                    "{} ({})",
                    peer.last_error,
                    time(peer.last_error_at.as_ref())
                )
            }
        );
        if !peer.release.is_empty() {
            println!(
                "  release {}: {}",
                esc(&peer.release),
                esc(&peer.capabilities.join(" "))
            );
        }
        let mut held: Vec<_> = peer.held.iter().collect();
        held.sort();
        for (why, n) in held {
            println!("  {n} held {}", esc(why));
        }
        if peer.pending_retractions > 0 {
            println!(
                "  {} retraction(s) not yet acknowledged by {}: {}{}",
                peer.pending_retractions,
                peer.agency_id,
                peer.pending_retraction_ids.join(", "),
                if peer.pending_retractions > peer.pending_retraction_ids.len() as u64 {
                    ", ..."
                } else {
                    ""
                }
            );
        }
        if peer.expired_total > 0 {
            println!(
                "  {} version(s) dropped unsent: retention deadline passed while queued",
                peer.expired_total
            );
        }
        if peer.certificate_not_after.is_some() {
            let warn = if peer.certificate_days_left < 30 {
                "  ask its operator to renew"
            } else {
                ""
            };
            println!(
                "  certificate until {} ({} days){warn}",
                time(peer.certificate_not_after.as_ref()),
                peer.certificate_days_left
            );
        }
        if !peer.last_rejection.is_empty() {
            println!(
                "  last refused by {} ({}): {}",
                peer.agency_id,
                time(peer.last_rejection_at.as_ref()),
                esc(&peer.last_rejection)
            );
        }
    }
}

/// How long ago `ts` was, compactly: `-`, `42s`, `17m`, `5h`, `3d`.
fn age(ts: Option<&Timestamp>) -> String {
    let Some(t) = ts else { return "-".into() };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let secs = (now - t.seconds).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

pub fn status(s: &NodeStatus, as_json: bool) {
    if as_json {
        return json(s);
    }
    println!("agency      {}", s.agency_id);
    println!("federation  {}", s.federation);
    println!(
        "software    {} (protocol {})",
        s.software_version, s.protocol_version
    );
    println!("started     {}", time(s.started_at.as_ref()));
    println!(
        "alerts      {} local, {} received",
        s.local_alerts, s.received_alerts
    );
    println!("outbox      {} envelopes waiting", s.outbox_depth);
    println!(
        "policy      version {}{}",
        s.policy_version,
        if s.policy_version == 0 {
            " (none installed: nothing is shared)"
        } else {
            ""
        }
    );
    println!(
        "tokens      from the {}{}",
        s.exact_tokens,
        if s.tokens_pending > 0 {
            format!(
                "; {} alert(s) waiting for their tokens (key service unreachable or over budget)",
                s.tokens_pending
            )
        } else {
            String::new()
        }
    );
    if let Some(d) = &s.directory {
        println!(
            "directory   version {}, {}",
            d.version,
            match d.state.as_str() {
                "current" => format!("expires {}", time(d.expires_at.as_ref())),
                "grace" => format!(
                    "EXPIRED {}: still delivering until {}; publish a fresh version",
                    time(d.expires_at.as_ref()),
                    time(d.hold_at.as_ref())
                ),
                _ => format!(
                    "EXPIRED {}: HOLDING everything outgoing until a fresh version arrives",
                    time(d.expires_at.as_ref())
                ),
            }
        );
    }
    if let Some(e) = &s.encryption {
        let kept: Vec<String> = e.kept.iter().map(ToString::to_string).collect();
        println!(
            "encryption  epoch {} since {}, next {}; epochs kept {}; KEK {}",
            e.epoch,
            time(e.epoch_started_at.as_ref()),
            time(e.next_epoch_at.as_ref()),
            kept.join(","),
            e.kek_id
        );
        println!(
            "backups     {} restorable (oldest {}), each for {} days",
            e.backup_keys,
            e.oldest_backup_at
                .as_ref()
                .map_or("none".to_string(), |t| time(Some(t))),
            e.backup_retention_secs / 86_400,
        );
    }
    println!("refused     {} deliveries", s.refused_deliveries);
    println!(
        "purged      {} alerts past their retention deadline",
        s.purged_alerts
    );
    println!(
        "requests    {} disclosure request(s) open, {} {}",
        s.disclosure_requests_open,
        s.disclosure_requests_overdue,
        if s.disclosure_requests_overdue > 0 {
            "OVERDUE (casebridge requests list --overdue)"
        } else {
            "overdue"
        }
    );
    for c in &s.certificates {
        let warn = if c.days_left < 30 { "  RENEW NOW" } else { "" };
        println!(
            "certificate {:<14} until {} ({} days){warn}",
            c.name,
            time(c.not_after.as_ref()),
            c.days_left
        );
    }
}

pub fn policy_version(v: &PolicyVersion, as_json: bool, with_text: bool) {
    if as_json {
        return json(v);
    }
    if v.version == 0 {
        println!("no sharing policy installed: this node shares nothing");
        return;
    }
    println!(
        "policy version {}  from {}  set by {}  at {}",
        v.version,
        v.source,
        v.set_by,
        time(v.set_at.as_ref())
    );
    println!(
        "  {} share rule(s), {} inbound rule(s)  sha256 {}",
        v.share_rules, v.inbound_rules, v.sha256
    );
    if !v.comment.is_empty() {
        println!("  comment: {}", v.comment);
    }
    if with_text {
        println!("{}", v.text);
    }
}

pub fn explanation(r: &ExplainPolicyResponse, as_json: bool) {
    if as_json {
        return json(r);
    }
    for d in &r.decisions {
        println!(
            "peer {}: {}",
            d.peer,
            if d.shared { "SHARED" } else { "NOT SHARED" }
        );
        println!("  because: {}", d.reason);
        if d.disclosure_rule.is_empty() {
            println!(
                "  on request: refused automatically ({})",
                d.disclosure_refusal
            );
        } else {
            println!(
                "  on request: rule `{}` accepts {}; an officer may release at most: {}",
                d.disclosure_rule,
                d.disclosure_legal_bases.join(", "),
                d.disclosure_maximum
            );
        }
        if let Some(env) = &d.envelope {
            println!("  envelope that would be sent:");
            match to_json(env, true) {
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("error: cannot render JSON: {e}"),
            }
        }
    }
}

pub fn diff(r: &DiffPolicyResponse, as_json: bool) {
    if as_json {
        return json(r);
    }
    println!("{} own live alert(s) compared", r.alerts);
    println!(
        "{:<12} {:>12} {:>16} {:>14} {:>10}",
        "peer", "newly shared", "no longer shared", "other fields", "unchanged"
    );
    for p in &r.peers {
        println!(
            "{:<12} {:>12} {:>16} {:>14} {:>10}",
            p.peer, p.newly_shared, p.no_longer_shared, p.changed_fields, p.unchanged
        );
        for (label, ids) in [
            ("newly shared", &p.examples_newly_shared),
            ("no longer shared", &p.examples_no_longer_shared),
            ("other fields", &p.examples_changed_fields),
        ] {
            if !ids.is_empty() {
                println!("    e.g. {label}: {}", ids.join(", "));
            }
        }
    }
}

pub fn backfill(what: &str, peer: &str, r: &BackfillResponse, dry_run: bool, as_json: bool) {
    if as_json {
        return json(r);
    }
    // A dry run says what would happen, in the conditional.
    if dry_run {
        println!(
            "{} of {} matching alert(s) would be {what} {peer} (dry run: nothing changed)",
            r.queued, r.matched
        );
    } else {
        println!(
            "{} of {} matching alert(s) {what} {peer}",
            r.queued, r.matched
        );
    }
    for id in &r.alert_ids {
        println!("  {id}");
    }
}

fn state_name(state: i32) -> String {
    crate::proto::v1::DisclosureState::try_from(state).map_or("?".into(), |s| {
        enum_name(s.as_str_name(), "DISCLOSURE_STATE_")
    })
}

/// "3 days 4 h left", "overdue by 2 h": how a due time stands now.
fn due_in(case: &crate::proto::v1::DisclosureCase) -> String {
    let Some(due) = case.due_at.as_ref() else {
        return String::new();
    };
    let due = crate::time::system_time_lossy(due);
    let now = std::time::SystemTime::now();
    let span = |d: std::time::Duration| {
        let (days, hours, mins) = (
            d.as_secs() / 86_400,
            d.as_secs() % 86_400 / 3600,
            d.as_secs() % 3600 / 60,
        );
        match (days, hours) {
            (0, 0) => format!("{mins} min"),
            (0, h) => format!("{h} h {mins} min"),
            (d, h) => format!("{d} days {h} h"),
        }
    };
    if !crate::disclosure::is_open(case) {
        String::new()
    } else if case.overdue {
        format!(
            ", OVERDUE by {}",
            span(now.duration_since(due).unwrap_or_default())
        )
    } else {
        format!(
            ", {} left",
            span(due.duration_since(now).unwrap_or_default())
        )
    }
}

fn direction(case: &crate::proto::v1::DisclosureCase) -> String {
    if case.outgoing {
        format!("sent to {}", case.peer)
    } else {
        format!("from {}", case.peer)
    }
}

/// One disclosure request with its history, for a caseworker.
pub fn disclosure(case: &crate::proto::v1::DisclosureCase, as_json: bool) {
    use crate::proto::v1::{LegalBasis, Urgency};
    if as_json {
        return json(case);
    }
    let r = case.request.clone().unwrap_or_default();
    println!(
        "request {}  {}  ({}, due {}{})",
        r.id,
        direction(case),
        state_name(case.state),
        time(case.due_at.as_ref()),
        due_in(case),
    );
    let basis = LegalBasis::try_from(r.legal_basis)
        .map_or("?".into(), |b| enum_name(b.as_str_name(), "LEGAL_BASIS_"));
    let urgency =
        Urgency::try_from(r.urgency).map_or("?".into(), |u| enum_name(u.as_str_name(), "URGENCY_"));
    println!("  about     {} (the holder's alert)", r.holder_alert_id);
    if !r.requester_alert_id.is_empty() {
        println!(
            "  hit with  {} (the requester's alert)",
            r.requester_alert_id
        );
    }
    let citation = if r.citation.is_empty() {
        String::new()
    } else {
        format!(" ({})", esc(&r.citation))
    };
    println!("  basis     {basis}{citation}");
    println!("  purpose   {}", esc(&r.purpose));
    println!(
        "  case      {}, officer {}, urgency {urgency}",
        esc(&r.case_reference),
        esc(&r.officer)
    );
    if !case.outgoing && !case.rule.is_empty() && crate::disclosure::is_open(case) {
        println!(
            "  policy    rule `{}` allows releasing at most: {}",
            case.rule, case.release_maximum
        );
    }
    if let Some(d) = &case.decision {
        decision_lines(d);
    }
    for v in &case.verification {
        println!("  verified  {}", verification_text(v));
    }
    for (i, e) in case.history.iter().enumerate() {
        let note = if e.note.is_empty() {
            String::new()
        } else {
            format!(": {}", esc(&e.note))
        };
        println!(
            "  {}  {}  {} by {}{note}",
            if i == 0 { "history" } else { "       " },
            time(e.at.as_ref()),
            e.step,
            e.by
        );
    }
}

/// A request's decision, and its release when there is one.
fn decision_lines(d: &crate::proto::v1::DisclosureDecision) {
    let ground = crate::proto::v1::RefusalGround::try_from(d.ground)
        .ok()
        .filter(|g| *g != crate::proto::v1::RefusalGround::Unspecified)
        .map(|g| format!(" ({})", enum_name(g.as_str_name(), "REFUSAL_GROUND_")))
        .unwrap_or_default();
    let who = if d.automatic {
        "the holder's policy".to_string()
    } else {
        esc(&d.decided_by).into_owned()
    };
    println!(
        "  decision  {}{ground} by {who} at {}{}",
        state_name(d.outcome),
        time(d.decided_at.as_ref()),
        if d.note.is_empty() {
            String::new()
        } else {
            format!(": {}", esc(&d.note))
        }
    );
    if !d.release_id.is_empty() {
        println!(
            "  release   {} (casebridge releases show {})",
            d.release_id, d.release_id
        );
    }
}

/// How one of the requester's identifiers compares with our alert.
fn verification_text(v: &crate::proto::v1::VerificationResult) -> String {
    let kind = IdentifierType::try_from(v.r#type).map_or("?".into(), |t| {
        enum_name(t.as_str_name(), "IDENTIFIER_TYPE_")
    });
    if v.matched {
        let evidence = v
            .evidence
            .as_ref()
            .map(|e| format!("; {}", crate::matching::describe_evidence(e)))
            .unwrap_or_default();
        format!(
            "{kind}: matches our alert (score {:.2}{evidence})",
            v.similarity
        )
    } else {
        format!("{kind}: does not match our alert")
    }
}

/// Requests, one line each.
pub fn disclosures(cases: &[crate::proto::v1::DisclosureCase], as_json: bool) {
    if as_json {
        return json(&cases);
    }
    if cases.is_empty() {
        eprintln!("no requests");
    }
    for c in cases {
        let r = c.request.clone().unwrap_or_default();
        println!(
            "{}  {:<16}  {:<19}  due {}{}  {}",
            r.id,
            direction(c),
            state_name(c.state),
            time(c.due_at.as_ref()),
            due_in(c),
            r.case_reference,
        );
    }
}

/// One change to a request, as `requests watch` prints it.
pub fn disclosure_change(case: &crate::proto::v1::DisclosureCase, as_json: bool) {
    if as_json {
        return match to_json(case, false) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("error: cannot render JSON: {e}"),
        };
    }
    let r = case.request.clone().unwrap_or_default();
    let last = case.history.last().cloned().unwrap_or_default();
    println!(
        "{:>6}  {}  request {}  {}: {} by {}  ({}{})",
        case.sequence,
        time(last.at.as_ref()),
        r.id,
        direction(case),
        last.step,
        last.by,
        state_name(case.state),
        due_in(case),
    );
}

fn handling_line(code: i32) -> &'static str {
    use crate::proto::v1::HandlingCode as H;
    match H::try_from(code) {
        Ok(H::H0) => "H0: may be shared within the federation without further conditions",
        Ok(H::H1) => "H1: law-enforcement recipients only",
        Ok(H::H2) => "H2: NO ONWARD DISCLOSURE without the holder's consent",
        Ok(H::H3) => "H3: SPECIAL CONDITIONS: contact the holder before any action",
        _ => "none given",
    }
}

/// One release: what it holds and how it must be handled (H2/H3 first).
pub fn release(record: &crate::proto::v1::ReleaseRecord, as_json: bool) {
    if as_json {
        return json(record);
    }
    let r = record.release.clone().unwrap_or_default();
    println!(
        "release {}  {} {}  for request {}",
        r.id,
        if record.outgoing { "sent to" } else { "from" },
        record.peer,
        r.request_id
    );
    println!("  HANDLING  {}", handling_line(r.handling));
    println!("  alert     {} (version {})", r.alert_id, r.alert_version);
    println!(
        "  released  {} by {} at {}",
        esc(&r.released_fields),
        esc(&r.released_by),
        time(r.released_at.as_ref())
    );
    println!("  contact   {}", esc(&r.contact_point));
    println!("  keep until {}", time(r.retention_until.as_ref()));
    if record.purged {
        match &record.withdrawn_at {
            Some(at) => println!(
                "  WITHDRAWN by the holder at {}: {} (content purged)",
                time(Some(at)),
                record.withdraw_reason
            ),
            None => println!("  purged: the retention deadline passed"),
        }
        return;
    }
    if let Some(c) = &r.content {
        release_content(c);
    }
    for (i, s) in r.subjects.iter().enumerate() {
        for id in &s.identifiers {
            println!("  subject {} {}", i + 1, identifier_text(id));
        }
    }
}

/// What a release holds of the alert's content: every part it has, as
/// `--json` shows it (the holder's text, escaped).
fn release_content(c: &crate::proto::v1::AlertContent) {
    if c.category != 0 {
        println!(
            "  category  {}  severity {}",
            category(c.category),
            severity(c.severity)
        );
    }
    if !c.indicators.is_empty() {
        let names: Vec<String> = c
            .indicators
            .iter()
            .map(|i| {
                crate::proto::v1::Indicator::try_from(*i)
                    .map_or("?".into(), |x| enum_name(x.as_str_name(), "INDICATOR_"))
            })
            .collect();
        println!("  indicators {}", names.join(", "));
    }
    if let Some(w) = &c.time_window {
        println!(
            "  when      {} to {}",
            time(w.start.as_ref()),
            time(w.end.as_ref())
        );
    }
    if !c.narrative.is_empty() {
        println!("  narrative {}", esc(&c.narrative));
    }
    if let Some(l) = &c.location {
        let place: Vec<&str> = [l.city.as_str(), l.region.as_str(), l.country.as_str()]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect();
        println!("  location  {}", esc(&place.join(", ")));
    }
}

/// A raw identifier as a person reads it: `phone +31655550105`.
fn identifier_text(id: &crate::proto::v1::Identifier) -> String {
    let Some(k) = &id.kind else {
        return "?".into();
    };
    let value = match k {
        Kind::Phone(p) => p.number.clone(),
        Kind::Email(e) => e.address.clone(),
        Kind::Person(p) => format!(
            "{} {} (born {})",
            p.given_names, p.family_name, p.date_of_birth
        ),
        Kind::Document(d) => format!("{} ({})", d.number, d.issuing_country),
        Kind::Iban(i) => i.iban.clone(),
        Kind::CryptoWallet(w) => format!("{} on {}", w.address, w.chain),
        Kind::OnlineHandle(h) => format!("{} on {}", h.handle, h.platform),
        Kind::VehiclePlate(v) => format!("{} ({})", v.plate, v.country),
        Kind::AdvertUrl(u) => u.url.clone(),
    };
    format!("{:<14}{value}", kind_name(k))
}

/// Releases, one line each (no content).
pub fn releases(records: &[crate::proto::v1::ReleaseRecord], as_json: bool) {
    if as_json {
        return json(&records);
    }
    if records.is_empty() {
        eprintln!("no releases");
    }
    for rec in records {
        let r = rec.release.clone().unwrap_or_default();
        let handling = crate::proto::v1::HandlingCode::try_from(r.handling)
            .map_or("-".into(), |h| {
                enum_name(h.as_str_name(), "HANDLING_CODE_").to_uppercase()
            });
        println!(
            "{}  {} {:<10}  {handling}  {}  {}",
            r.id,
            if rec.outgoing { "to" } else { "from" },
            rec.peer,
            if rec.purged {
                "purged".to_string()
            } else {
                format!("keep until {}", time(r.retention_until.as_ref()))
            },
            r.released_fields,
        );
    }
}

/// "3 days 4 h", "2 h 5 min", "40 s": an answer time for a person.
fn span_text(secs: f64) -> String {
    let s = secs.round() as u64;
    match (s / 86_400, s % 86_400 / 3600, s % 3600 / 60) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} days {h} h"),
    }
}

/// An answer time of a stats row, or "none answered" when there is no
/// answer to take it over (not "0 s").
fn answer_time(r: &crate::proto::v1::RequestStatsRow, seconds: f64) -> String {
    if r.answered == 0 {
        "none answered".into()
    } else {
        span_text(seconds)
    }
}

/// `requests stats`: a row per peer and direction.
pub fn request_stats(stats: &crate::proto::v1::RequestStatsResponse, as_json: bool) {
    if as_json {
        return json(stats);
    }
    if stats.rows.is_empty() {
        eprintln!("no requests in this period");
        return;
    }
    println!(
        "{:<12} {:<9} {:>8} {:>8} {:>7} {:>7} {:>12} {:>5} {:>8} {:>6} {:>16} {:>16}",
        "peer",
        "direction",
        "requests",
        "approved",
        "partial",
        "refused",
        "auto-refused",
        "open",
        "overdue",
        "late",
        "median answer",
        "90% answered in"
    );
    for r in &stats.rows {
        println!(
            "{:<12} {:<9} {:>8} {:>8} {:>7} {:>7} {:>12} {:>5} {:>8} {:>6} {:>16} {:>16}",
            r.peer,
            if r.outgoing { "sent" } else { "received" },
            r.requests,
            r.approved,
            r.partially_approved,
            r.refused,
            r.refused_automatically,
            r.open,
            r.overdue,
            r.answered_late,
            answer_time(r, r.median_answer_seconds),
            answer_time(r, r.p90_answer_seconds),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_are_written_canonically() {
        for (pbjson, canonical) in [
            ("2026-12-02T05:49:21+00:00", "2026-12-02T05:49:21Z"),
            ("2026-12-02T05:49:21.770+00:00", "2026-12-02T05:49:21.770Z"),
            (
                "2026-12-02T05:49:21.770018+00:00",
                "2026-12-02T05:49:21.770018Z",
            ),
            (
                "2026-12-02T05:49:21.770018238+00:00",
                "2026-12-02T05:49:21.770018238Z",
            ),
            ("2026-12-02T05:49:21.5+00:00", "2026-12-02T05:49:21.500Z"),
        ] {
            assert_eq!(canonical_time(pbjson).as_deref(), Some(canonical));
        }
        assert_eq!(canonical_time("not a time +00:00"), None);
        assert_eq!(canonical_time("2026-12-02T05:49:21+01:00"), None);
        let ts = pbjson_types::Timestamp {
            seconds: 1_764_654_561,
            nanos: 770_000_000,
        };
        let out = to_json(&serde_json::json!({"t": ts, "n": "x"}), false).unwrap();
        assert_eq!(out, r#"{"t":"2025-12-02T05:49:21.770Z","n":"x"}"#);
    }
}

#[cfg(test)]
mod count_tests {
    #[test]
    fn counts_read_as_words() {
        assert_eq!(super::count(1, "checkpoint", "checkpoints"), "1 checkpoint");
        assert_eq!(super::count(0, "entry", "entries"), "0 entries");
        assert_eq!(super::count(3, "entry", "entries"), "3 entries");
    }
}
