//! Validation of what clients (and peers) send. Every violation names the
//! field by its protobuf path, so a case system can point at the exact input.

use std::time::{Duration, SystemTime};

use crate::config::{AlertRules, Limits};
use crate::ids::CountryCode;
use crate::proto::v1::{
    AgeBand, AlertContent, AlertDraft, Category, Confidence, DocumentType, Gender, HandlingCode,
    Identifier, Indicator, InformationAccuracy, RecruitmentMethod, Severity, SourceReliability,
    Subject, SubjectRole, Tlp, VictimProfile, identifier::Kind,
};
use crate::time::{system_time as to_system_time, timestamp};
pub use crate::violation::FieldViolation;

/// The most violations one request gets back, listed one by one (they
/// travel in HTTP/2 trailers, which clients bound); the rest
/// are counted in one last entry. A draft with 40,000 bad phone numbers
/// must not cost megabytes of trailers (a gRPC client sees them all at
/// once) nor the CPU to format them.
pub const MAX_LISTED_VIOLATIONS: usize = 64;

#[derive(Debug, Default)]
struct Violations(Vec<FieldViolation>);

impl Violations {
    fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// Whether the list is full (one past what is shown, so the answer
    /// can say more were found): checking further elements of a list
    /// would only find violations nobody is shown.
    fn full(&self) -> bool {
        self.0.len() > MAX_LISTED_VIOLATIONS
    }

    /// An enum field: must be a value this build knows and, if `required`, set.
    fn enum_field<E: TryFrom<i32>>(&mut self, field: &str, value: i32, required: bool) {
        if E::try_from(value).is_err() {
            self.add(field, format!("unknown enum value {value}"));
        } else if required && value == 0 {
            self.add(field, "is required");
        }
    }

    fn text(&mut self, field: &str, value: &str, max: usize, required: bool) {
        if required && value.trim().is_empty() {
            self.add(field, "must not be empty");
        } else if value.len() > max {
            self.add(
                field,
                format!("is {} bytes, at most {max} allowed", value.len()),
            );
        } else if value
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            self.add(field, "contains control characters");
        }
    }

    fn country(&mut self, field: &str, value: &str, required: bool) {
        if value.is_empty() {
            if required {
                self.add(field, "is required (ISO 3166-1 alpha-2, e.g. \"NL\")");
            }
        } else if !CountryCode::is_valid(value) {
            self.add(
                field,
                format!(
                    "`{value}` is not an ISO 3166-1 alpha-2 country code (upper case, e.g. \"NL\")"
                ),
            );
        }
    }
}

/// Checks the descriptive part of an alert. Used for client drafts and for
/// content received from peers, so both are held to the same limits.
pub fn check_content(
    content: &AlertContent,
    path: &str,
    limits: &Limits,
    out: &mut Vec<FieldViolation>,
) {
    let mut v = Violations::default();
    let f = |name: &str| format!("{path}.{name}");
    v.enum_field::<Category>(&f("category"), content.category, true);
    if content.indicators.len() > limits.max_indicators.get() {
        v.add(
            f("indicators"),
            format!("at most {} indicators", limits.max_indicators.get()),
        );
    }
    // Only the allowed number is checked: beyond it the list is refused
    // already, and the duplicate check is quadratic.
    let allowed = limits.max_indicators.get();
    for (i, ind) in content.indicators.iter().enumerate().take(allowed) {
        v.enum_field::<Indicator>(&format!("{path}.indicators[{i}]"), *ind, true);
        if content.indicators[..i].contains(ind) {
            v.add(format!("{path}.indicators[{i}]"), "duplicate indicator");
        }
    }
    v.enum_field::<Severity>(&f("severity"), content.severity, true);
    v.enum_field::<Confidence>(&f("confidence"), content.confidence, false);
    v.enum_field::<Tlp>(&f("tlp"), content.tlp, true);
    v.enum_field::<HandlingCode>(&f("handling_code"), content.handling_code, false);
    v.enum_field::<SourceReliability>(&f("source_reliability"), content.source_reliability, false);
    v.enum_field::<InformationAccuracy>(
        &f("information_accuracy"),
        content.information_accuracy,
        false,
    );
    if let Some(loc) = &content.location {
        v.country(&f("location.country"), &loc.country, true);
        v.text(
            &f("location.region"),
            &loc.region,
            limits.max_field_bytes.get(),
            false,
        );
        v.text(
            &f("location.city"),
            &loc.city,
            limits.max_field_bytes.get(),
            false,
        );
    }
    if let Some(w) = &content.time_window {
        let start = w.start.as_ref().map(|t| (t, to_system_time(t)));
        let end = w.end.as_ref().map(|t| (t, to_system_time(t)));
        if let Some((_, None)) = start {
            v.add(f("time_window.start"), "is not a valid timestamp");
        }
        if let Some((_, None)) = end {
            v.add(f("time_window.end"), "is not a valid timestamp");
        }
        if let (Some((_, Some(s))), Some((_, Some(e)))) = (start, end)
            && s > e
        {
            v.add(f("time_window.end"), "is before time_window.start");
        }
    }
    v.text(
        &f("narrative"),
        &content.narrative,
        limits.max_narrative_bytes.get(),
        false,
    );
    if let Some(r) = &content.retention_until
        && to_system_time(r).is_none()
    {
        v.add(f("retention_until"), "is not a valid timestamp");
    }
    out.extend(v.0);
}

fn check_identifier(id: &Identifier, path: &str, limits: &Limits, v: &mut Violations) {
    let max = limits.max_field_bytes.get();
    match &id.kind {
        None => v.add(path, "identifier has no type (phone, email, person, …)"),
        Some(Kind::Phone(p)) => {
            v.text(&format!("{path}.phone.number"), &p.number, max, true);
            v.country(&format!("{path}.phone.region"), &p.region, false);
        }
        Some(Kind::Email(e)) => {
            v.text(&format!("{path}.email.address"), &e.address, max, true);
            if !e.address.trim().is_empty() && !e.address.contains('@') {
                v.add(format!("{path}.email.address"), "has no '@'");
            }
        }
        Some(Kind::Person(p)) => {
            v.text(
                &format!("{path}.person.given_names"),
                &p.given_names,
                max,
                false,
            );
            v.text(
                &format!("{path}.person.family_name"),
                &p.family_name,
                max,
                false,
            );
            if p.given_names.trim().is_empty() && p.family_name.trim().is_empty() {
                v.add(format!("{path}.person"), "needs given_names or family_name");
            }
            // The normalizer's rule, so the API accepts exactly what tokens
            // are made of (and the CLI's `pseudo normalize` shows).
            if !p.date_of_birth.is_empty()
                && crate::pseudo::normalize::date_of_birth(&p.date_of_birth).is_err()
            {
                v.add(
                    format!("{path}.person.date_of_birth"),
                    crate::pseudo::normalize::DATE_OF_BIRTH_RULE,
                );
            }
        }
        Some(Kind::Document(d)) => {
            v.enum_field::<DocumentType>(&format!("{path}.document.type"), d.r#type, true);
            v.text(&format!("{path}.document.number"), &d.number, max, true);
            v.country(
                &format!("{path}.document.issuing_country"),
                &d.issuing_country,
                true,
            );
        }
        Some(Kind::Iban(i)) => v.text(&format!("{path}.iban.iban"), &i.iban, max, true),
        Some(Kind::CryptoWallet(w)) => {
            v.text(&format!("{path}.crypto_wallet.chain"), &w.chain, max, true);
            v.text(
                &format!("{path}.crypto_wallet.address"),
                &w.address,
                max,
                true,
            );
        }
        Some(Kind::OnlineHandle(h)) => {
            v.text(
                &format!("{path}.online_handle.platform"),
                &h.platform,
                max,
                true,
            );
            v.text(
                &format!("{path}.online_handle.handle"),
                &h.handle,
                max,
                true,
            );
        }
        Some(Kind::VehiclePlate(p)) => {
            v.country(&format!("{path}.vehicle_plate.country"), &p.country, true);
            v.text(&format!("{path}.vehicle_plate.plate"), &p.plate, max, true);
        }
        Some(Kind::AdvertUrl(u)) => {
            v.text(
                &format!("{path}.advert_url.url"),
                &u.url,
                2048.max(max),
                true,
            );
        }
    }
}

fn check_subjects(subjects: &[Subject], path: &str, limits: &Limits, v: &mut Violations) {
    if subjects.len() > limits.max_subjects.get() {
        v.add(
            path,
            format!("at most {} subjects", limits.max_subjects.get()),
        );
    }
    // Work stops at the limits (the list is refused already) and once
    // the violations shown are full: a request costs what its allowed
    // part costs, however long its lists.
    for (i, s) in subjects.iter().enumerate().take(limits.max_subjects.get()) {
        if v.full() {
            return;
        }
        let sp = format!("{path}[{i}]");
        v.enum_field::<SubjectRole>(&format!("{sp}.role"), s.role, false);
        if s.identifiers.is_empty() {
            v.add(
                format!("{sp}.identifiers"),
                "a subject needs at least one identifier",
            );
        }
        if s.identifiers.len() > limits.max_identifiers_per_subject.get() {
            v.add(
                format!("{sp}.identifiers"),
                format!(
                    "at most {} identifiers",
                    limits.max_identifiers_per_subject.get()
                ),
            );
        }
        let allowed = limits.max_identifiers_per_subject.get();
        for (j, id) in s.identifiers.iter().enumerate().take(allowed) {
            if v.full() {
                return;
            }
            check_identifier(id, &format!("{sp}.identifiers[{j}]"), limits, v);
        }
        if let Some(p) = &s.profile {
            check_profile(p, s.role, &format!("{sp}.profile"), v);
        }
    }
}

/// A victim profile: only on a potential victim (who a witness or a
/// suspect is counts in no table, so it is not kept), known codes, and
/// each recruitment method once (so the list is bounded by the enum).
fn check_profile(p: &VictimProfile, role: i32, path: &str, v: &mut Violations) {
    if role != SubjectRole::PotentialVictim as i32 {
        v.add(path, "only a potential victim has a profile");
        return;
    }
    v.enum_field::<Gender>(&format!("{path}.gender"), p.gender, false);
    v.enum_field::<AgeBand>(&format!("{path}.age_band"), p.age_band, false);
    v.country(&format!("{path}.citizenship"), &p.citizenship, false);
    let most = RecruitmentMethod::Other as usize;
    if p.recruitment.len() > most {
        v.add(
            format!("{path}.recruitment"),
            format!("at most {most} recruitment methods, each once"),
        );
        return;
    }
    for (i, m) in p.recruitment.iter().enumerate() {
        let at = format!("{path}.recruitment[{i}]");
        v.enum_field::<RecruitmentMethod>(&at, *m, true);
        if p.recruitment[..i].contains(m) {
            v.add(at, "duplicate recruitment method");
        }
    }
}

/// Keeps the first [`MAX_LISTED_VIOLATIONS`] and says how many more were
/// found (checking stops soon after the list is full, so "at least").
pub fn cap_violations(out: &mut Vec<FieldViolation>) {
    if out.len() <= MAX_LISTED_VIOLATIONS {
        return;
    }
    let more = out.len() - MAX_LISTED_VIOLATIONS;
    out.truncate(MAX_LISTED_VIOLATIONS);
    out.push(FieldViolation {
        field: "draft".into(),
        description: format!(
            "at least {more} more violations not listed (the first {MAX_LISTED_VIOLATIONS} are)"
        ),
    });
}

/// Validates a client's draft and fills in defaults (the retention deadline).
/// Returns every violation found, not just the first.
pub fn validate_draft(
    mut draft: AlertDraft,
    limits: &Limits,
    rules: &AlertRules,
    now: SystemTime,
) -> Result<AlertDraft, Vec<FieldViolation>> {
    let mut out = Vec::new();
    let Some(content) = draft.content.as_mut() else {
        out.push(FieldViolation {
            field: "draft.content".into(),
            description: "is required".into(),
        });
        return Err(out);
    };
    check_content(content, "draft.content", limits, &mut out);
    let day = Duration::from_secs(86_400);
    let max = now + day * rules.max_retention_days.get() as u32;
    match content.retention_until.as_ref().and_then(to_system_time) {
        None if content.retention_until.is_none() => {
            content.retention_until = Some(timestamp(
                now + day * rules.default_retention_days.get() as u32,
            ));
        }
        None => {} // already reported by check_content
        Some(t) if t <= now => out.push(FieldViolation {
            field: "draft.content.retention_until".into(),
            description: "is in the past".into(),
        }),
        Some(t) if t > max => out.push(FieldViolation {
            field: "draft.content.retention_until".into(),
            description: format!(
                "is beyond the node's maximum of {} days",
                rules.max_retention_days.get() as u32
            ),
        }),
        Some(_) => {}
    }
    let mut v = Violations::default();
    v.text(
        "draft.case_reference",
        &draft.case_reference,
        MAX_CASE_REFERENCE,
        false,
    );
    v.text("draft.title", &draft.title, MAX_TITLE, false);
    if draft.case_reference.contains(['\n', '\r']) {
        v.add("draft.case_reference", "must be one line");
    }
    if draft.title.contains(['\n', '\r']) {
        v.add("draft.title", "must be one line");
    }
    check_subjects(&draft.subjects, "draft.subjects", limits, &mut v);
    out.extend(v.0);
    cap_violations(&mut out);
    draft.case_reference = draft.case_reference.trim().to_owned();
    draft.title = draft.title.trim().to_owned();
    if out.is_empty() { Ok(draft) } else { Err(out) }
}

/// The longest case reference an agency may keep with an alert (bytes).
pub const MAX_CASE_REFERENCE: usize = 128;
/// The longest title (bytes).
pub const MAX_TITLE: usize = 200;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::{Location, Phone};
    use pbjson_types::Timestamp;

    fn good() -> AlertDraft {
        AlertDraft {
            content: Some(AlertContent {
                category: Category::LabourExploitation as i32,
                severity: Severity::High as i32,
                tlp: Tlp::Amber as i32,
                location: Some(Location {
                    country: "NL".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            subjects: vec![Subject {
                profile: None,
                role: SubjectRole::PotentialVictim as i32,
                identifiers: vec![Identifier {
                    kind: Some(Kind::Phone(Phone {
                        number: "+31 6 1234 5678".into(),
                        region: String::new(),
                    })),
                }],
            }],
            ..Default::default()
        }
    }

    #[test]
    fn the_agencys_own_reference_and_title_are_bounded_single_lines() {
        let now = SystemTime::now();
        let (limits, rules) = (Limits::default(), AlertRules::default());
        let mut d = good();
        d.case_reference = "  NGO-2024-0017 ".into();
        d.title = "Greenhouse workers, Westland".into();
        let ok = validate_draft(d, &limits, &rules, now).unwrap();
        assert_eq!(ok.case_reference, "NGO-2024-0017", "trimmed");
        let mut d = good();
        d.case_reference = "x".repeat(MAX_CASE_REFERENCE + 1);
        d.title = "two\nlines".into();
        let fields: Vec<String> = validate_draft(d, &limits, &rules, now)
            .unwrap_err()
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, ["draft.case_reference", "draft.title"]);
    }

    fn fields(d: AlertDraft) -> Vec<String> {
        validate_draft(
            d,
            &Limits::default(),
            &AlertRules::default(),
            SystemTime::now(),
        )
        .unwrap_err()
        .into_iter()
        .map(|v| v.field)
        .collect()
    }

    /// 40,000 bad phone numbers and 5,000 subjects: the list is refused
    /// at its limit, only the allowed part is checked, and the answer
    /// holds at most the listed violations and one count.
    #[test]
    fn oversized_lists_cost_only_their_allowed_part() {
        let mut d = good();
        let bad = Identifier { kind: None };
        let mut subject = d.subjects[0].clone();
        subject.identifiers = vec![bad.clone()];
        d.subjects[0].identifiers = vec![bad; 40_000];
        d.subjects.extend(std::iter::repeat_n(subject, 5_000));
        d.content.as_mut().unwrap().indicators = vec![1; 100_000];
        let out = validate_draft(
            d,
            &Limits::default(),
            &AlertRules::default(),
            SystemTime::now(),
        )
        .unwrap_err();
        assert_eq!(out.len(), MAX_LISTED_VIOLATIONS + 1, "{out:?}");
        let said = |field: &str, text: &str| {
            out.iter()
                .any(|v| v.field == field && v.description.contains(text))
        };
        assert!(said("draft.content.indicators", "at most 32"), "{out:?}");
        assert!(said("draft.subjects", "at most 64 subjects"), "{out:?}");
        assert!(
            said("draft.subjects[0].identifiers", "at most 32"),
            "{out:?}"
        );
        assert!(said("draft", "more violations not listed"), "{out:?}");
    }

    #[test]
    fn good_draft_gets_default_retention() {
        let d = validate_draft(
            good(),
            &Limits::default(),
            &AlertRules::default(),
            SystemTime::now(),
        )
        .unwrap();
        assert!(d.content.unwrap().retention_until.is_some());
    }

    #[test]
    fn each_bad_field_is_named() {
        let mut d = good();
        d.content.as_mut().unwrap().category = 0;
        assert_eq!(fields(d), ["draft.content.category"]);

        let mut d = good();
        d.content.as_mut().unwrap().severity = 99;
        assert_eq!(fields(d), ["draft.content.severity"]);

        let mut d = good();
        d.content.as_mut().unwrap().narrative = "x".repeat(16 * 1024 + 1);
        assert_eq!(fields(d), ["draft.content.narrative"]);

        let mut d = good();
        d.content
            .as_mut()
            .unwrap()
            .location
            .as_mut()
            .unwrap()
            .country = "XX".into();
        assert_eq!(fields(d), ["draft.content.location.country"]);

        let mut d = good();
        d.subjects[0].identifiers[0] = Identifier {
            kind: Some(Kind::Phone(Phone::default())),
        };
        assert_eq!(fields(d), ["draft.subjects[0].identifiers[0].phone.number"]);

        let mut d = good();
        d.content.as_mut().unwrap().retention_until = Some(Timestamp {
            seconds: 10,
            nanos: 0,
        });
        assert_eq!(fields(d), ["draft.content.retention_until"]);
    }

    #[test]
    fn a_victim_profile_is_checked_field_by_field() {
        let profile = |gender, citizenship: &str, recruitment: Vec<i32>| VictimProfile {
            gender,
            citizenship: citizenship.into(),
            age_band: AgeBand::AgeBand1824 as i32,
            recruitment,
        };
        let draft = |role: SubjectRole, p: VictimProfile| {
            let mut d = good();
            d.subjects[0].role = role as i32;
            d.subjects[0].profile = Some(p);
            d
        };
        let with = |role, p| fields(draft(role, p));
        let fine = profile(Gender::Female as i32, "RO", vec![1, 5]);
        let limits = Limits::default();
        let rules = AlertRules::default();
        let ok = draft(SubjectRole::PotentialVictim, fine.clone());
        assert!(validate_draft(ok, &limits, &rules, SystemTime::now()).is_ok());
        assert_eq!(
            with(SubjectRole::SuspectedTrafficker, fine),
            ["draft.subjects[0].profile"]
        );
        assert_eq!(
            with(
                SubjectRole::PotentialVictim,
                profile(7, "ro", vec![0, 1, 1])
            ),
            [
                "draft.subjects[0].profile.gender",
                "draft.subjects[0].profile.citizenship",
                "draft.subjects[0].profile.recruitment[0]",
                "draft.subjects[0].profile.recruitment[2]",
            ]
        );
        assert_eq!(
            with(
                SubjectRole::PotentialVictim,
                profile(0, "", vec![1; 10_000])
            ),
            ["draft.subjects[0].profile.recruitment"]
        );
    }

    proptest::proptest! {
        /// Any input gets an answer (never a panic); every violation names a
        /// field under `draft`; an accepted draft has a retention deadline in
        /// the allowed window and unchanged subjects.
        #[test]
        fn validation_is_total_and_precise(d in crate::proto_strategies::draft(true)) {
            let now = SystemTime::now();
            let rules = AlertRules::default();
            match validate_draft(d.clone(), &Limits::default(), &rules, now) {
                Ok(ok) => {
                    let content = ok.content.unwrap();
                    let until = to_system_time(&content.retention_until.unwrap()).unwrap();
                    proptest::prop_assert!(until > now);
                    proptest::prop_assert!(until <= now + Duration::from_secs(86_400) * rules.max_retention_days.get() as u32);
                    proptest::prop_assert_eq!(ok.subjects, d.subjects);
                    proptest::prop_assert!(Category::try_from(content.category).is_ok() && content.category != 0);
                }
                Err(violations) => {
                    proptest::prop_assert!(!violations.is_empty());
                    for v in violations {
                        proptest::prop_assert!(v.field.starts_with("draft."), "{}", v.field);
                        proptest::prop_assert!(!v.description.is_empty());
                    }
                }
            }
        }
    }
}
