use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use proptest::prelude::*;

use super::model::{Effect, IdLevel, LocationLevel, TimeLevel};
use super::*;
use crate::policy::shared_view_with;
use crate::proto::v1::{
    Alert, AlertContent, Location, PersonEncoding, SharedSubject, StoredAlert, TimeWindow, Token,
};

fn peers() -> BTreeSet<AgencyId> {
    ["ngo", "labour", "border"]
        .iter()
        .map(|p| AgencyId::new(*p).unwrap())
        .collect()
}

fn agency(s: &str) -> AgencyId {
    AgencyId::new(s).unwrap()
}

const POLICY: &str = r#"
[groups]
ngos = ["ngo"]
law-enforcement = ["labour", "border"]

[[rules]]
name = "no-children-to-ngos"
effect = "deny"
groups = ["ngos"]
[rules.when]
categories = ["child_trafficking"]

[[rules]]
name = "ngos-labour"
effect = "share"
groups = ["ngos"]
[rules.when]
categories = ["labour_exploitation"]
min_severity = "medium"
[rules.share]
location = "country"
time = "month"
identifiers = { phone = "exact", person = "fuzzy" }

[[rules]]
name = "law-enforcement-all"
effect = "share"
groups = ["law-enforcement"]
[rules.share]
location = "city"
time = "day"
narrative = "full"
indicators = "full"
identifiers = { phone = "exact", email = "exact", person = "fuzzy", iban = "exact" }
"#;

fn policy() -> Policy {
    parse(Path::new("policy.toml"), POLICY, &peers()).unwrap()
}

fn errors(src: &str) -> Vec<PolicyError> {
    parse(Path::new("p.toml"), src, &peers()).unwrap_err()
}

fn alert(category: Category, severity: Severity, tlp: Tlp, origin: &str) -> StoredAlert {
    let id = crate::ids::AlertId::generate(&agency(origin));
    StoredAlert {
        tokens_pending: false,
        alert: Some(Alert {
            id: id.to_string(),
            origin: origin.into(),
            version: 1,
            created_at: Some(pbjson_types::Timestamp {
                seconds: 1_790_000_000,
                nanos: 0,
            }),
            content: Some(AlertContent {
                category: category as i32,
                severity: severity as i32,
                tlp: tlp as i32,
                location: Some(Location {
                    country: "NL".into(),
                    region: "Zuid-Holland".into(),
                    city: "Westland".into(),
                }),
                time_window: Some(TimeWindow {
                    start: Some(pbjson_types::Timestamp {
                        seconds: 1_789_123_456,
                        nanos: 7,
                    }),
                    end: None,
                }),
                narrative: "details".into(),
                indicators: vec![Indicator::DebtBondage as i32],
                ..Default::default()
            }),
            ..Default::default()
        }),
        shared_with: vec![],
        withdrawn_from: vec![],
        pseudonyms: vec![SharedSubject {
            role: 1,
            tokens: vec![
                Token {
                    r#type: IdentifierType::Phone as i32,
                    key_version: 1,
                    value: vec![1; 32],
                },
                Token {
                    r#type: IdentifierType::Email as i32,
                    key_version: 1,
                    value: vec![2; 32],
                },
            ],
            encodings: vec![PersonEncoding {
                key_version: 1,
                block: vec![3; 16],
                bloom: vec![4; 128],
                ..Default::default()
            }],
        }],
    }
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_100_000)
}

#[test]
fn first_applicable_rule_decides_and_default_is_deny() {
    let p = policy();
    let own = agency("police");
    let labour_alert = alert(
        Category::LabourExploitation,
        Severity::High,
        Tlp::Amber,
        "police",
    );
    let d = evaluate(&p, &labour_alert, &own, &agency("ngo"), now());
    assert_eq!(d.rule.as_deref(), Some("ngos-labour"));
    let env = shared_view_with(&labour_alert, d.grant.as_ref().unwrap());
    let c = env.content.unwrap();
    assert_eq!(
        c.location
            .as_ref()
            .map(|l| (l.country.as_str(), l.region.as_str(), l.city.as_str())),
        Some(("NL", "", ""))
    );
    assert_eq!(
        c.time_window.unwrap().start.unwrap().seconds,
        1_788_220_800,
        "truncated to 2026-09-01"
    );
    assert!(c.narrative.is_empty() && c.indicators.is_empty());
    let types: Vec<i32> = env.subjects[0].tokens.iter().map(|t| t.r#type).collect();
    assert_eq!(
        types,
        [IdentifierType::Phone as i32],
        "email not granted to ngos"
    );
    assert_eq!(env.subjects[0].encodings.len(), 1);

    let child = alert(
        Category::ChildTrafficking,
        Severity::High,
        Tlp::Amber,
        "police",
    );
    let d = evaluate(&p, &child, &own, &agency("ngo"), now());
    assert_eq!(
        (d.grant.is_none(), d.rule.as_deref()),
        (true, Some("no-children-to-ngos"))
    );
    let low = alert(
        Category::LabourExploitation,
        Severity::Low,
        Tlp::Amber,
        "police",
    );
    let d = evaluate(&p, &low, &own, &agency("ngo"), now());
    assert!(d.grant.is_none() && d.rule.is_none(), "{}", d.reason);
    assert!(d.reason.contains("default deny"));
}

#[test]
fn machine_enforced_handling_overrides_rules() {
    let p = policy();
    let own = agency("police");
    let red = alert(
        Category::LabourExploitation,
        Severity::High,
        Tlp::Red,
        "police",
    );
    let d = evaluate(&p, &red, &own, &agency("labour"), now());
    assert!(d.grant.is_none() && d.reason.contains("TLP:RED"));
    let received = alert(
        Category::LabourExploitation,
        Severity::High,
        Tlp::Green,
        "ngo",
    );
    let d = evaluate(&p, &received, &own, &agency("labour"), now());
    assert!(d.grant.is_none() && d.reason.contains("never re-shared"));
    // AMBER+STRICT reaches labour only through a group: not shared.
    let strict = alert(
        Category::LabourExploitation,
        Severity::High,
        Tlp::AmberStrict,
        "police",
    );
    assert!(
        evaluate(&p, &strict, &own, &agency("labour"), now())
            .grant
            .is_none()
    );
    // A rule naming the peer itself may share it.
    let named = POLICY.replace(
        "groups = [\"law-enforcement\"]",
        "peers = [\"labour\", \"border\"]",
    );
    let p = parse(Path::new("p.toml"), &named, &peers()).unwrap();
    assert!(
        evaluate(&p, &strict, &own, &agency("labour"), now())
            .grant
            .is_some()
    );
}

#[test]
fn validation_points_at_each_problem_with_a_hint() {
    let e = errors("[[rules]]\nname = \"x\"\neffect = \"share\"\npeers = [\"nobody\"]\n");
    assert_eq!((e[0].line, e[0].column), (4, 10));
    assert!(e[0].message.contains("unknown peer `nobody`"));
    assert!(
        e[0].hint
            .as_deref()
            .unwrap()
            .contains("border, labour, ngo")
    );

    let e = errors(
        "[[rules]]\nname = \"x\"\neffect = \"share\"\npeers = [\"ngo\"]\ncolour = \"red\"\n",
    );
    assert_eq!(e[0].line, 5);
    assert!(e[0].message.contains("colour"), "{}", e[0].message);

    let e = errors("[[rules]]\nname = \"x\"\neffect = \"share\"\ngroups = [\"nope\"]\n");
    assert!(e[0].message.contains("unknown group"));

    let e = errors(
        "[[rules]]\nname = \"x\"\neffect = \"share\"\npeers = [\"ngo\"]\n[rules.when]\ntlp = [\"red\"]\n",
    );
    assert!(e[0].message.contains("can never share"), "{}", e[0].message);
    assert_eq!(e[0].line, 6);

    let e = errors(
        "[[rules]]\nname = \"x\"\neffect = \"share\"\npeers = [\"ngo\"]\n[rules.share]\nidentifiers = { phone = \"fuzzy\" }\n",
    );
    assert!(e[0].message.contains("only persons"), "{}", e[0].message);

    let shadow = "[[rules]]\nname = \"all\"\neffect = \"deny\"\npeers = [\"ngo\", \"labour\"]\n\n[[rules]]\nname = \"later\"\neffect = \"share\"\npeers = [\"ngo\"]\n[rules.when]\nmin_severity = \"high\"\n";
    let e = errors(shadow);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].line, 7);
    assert!(
        e[0].message.contains("never reached") && e[0].message.contains("line 1"),
        "{}",
        e[0].message
    );
    assert!(e[0].to_string().starts_with("p.toml:7:8: "), "{}", e[0]);
}

fn grant_strategy() -> impl Strategy<Value = Grant> {
    let level = prop_oneof![
        Just(IdLevel::None),
        Just(IdLevel::Exact),
        Just(IdLevel::Fuzzy)
    ];
    (
        prop_oneof![
            Just(LocationLevel::None),
            Just(LocationLevel::Country),
            Just(LocationLevel::Region),
            Just(LocationLevel::City)
        ],
        prop_oneof![
            Just(TimeLevel::None),
            Just(TimeLevel::Year),
            Just(TimeLevel::Month),
            Just(TimeLevel::Day)
        ],
        any::<bool>(),
        any::<bool>(),
        proptest::collection::btree_map(1..=9i32, level, 0..9),
    )
        .prop_map(
            |(location, time, narrative, indicators, identifiers)| Grant {
                location,
                time,
                narrative,
                indicators,
                identifiers,
            },
        )
}

fn rule_strategy() -> impl Strategy<Value = Rule> {
    let peer = prop_oneof![Just("ngo"), Just("labour"), Just("border")].prop_map(agency);
    (
        "[a-z]{3,8}",
        prop_oneof![Just(Effect::Share), Just(Effect::Deny)],
        proptest::collection::btree_set(peer.clone(), 0..3),
        proptest::collection::btree_set(peer, 0..3),
        proptest::option::of(proptest::collection::btree_set(1..=6i32, 1..4)),
        proptest::option::of(1..=4i32),
        proptest::option::of(proptest::collection::btree_set(1..=5i32, 1..4)),
        grant_strategy(),
    )
        .prop_map(
            |(name, effect, named, via_group, categories, min_severity, tlp, grant)| Rule {
                name,
                line: 1,
                effect,
                named,
                via_group,
                when: Conditions {
                    categories,
                    min_severity,
                    tlp,
                    ..Default::default()
                },
                grant,
            },
        )
}

fn stored_strategy() -> impl Strategy<Value = StoredAlert> {
    (
        crate::proto_strategies::content(false),
        prop_oneof![Just("police"), Just("ngo")],
        proptest::collection::vec((1..=9i32, 1..=2u32), 0..6),
        any::<bool>(),
    )
        .prop_map(|(content, origin, tokens, person)| {
            let mut a = alert(Category::Other, Severity::Low, Tlp::Green, origin);
            a.alert.as_mut().unwrap().content = Some(content);
            a.pseudonyms[0].tokens = tokens
                .into_iter()
                .map(|(t, v)| Token {
                    r#type: t,
                    key_version: v,
                    value: vec![t as u8; 32],
                })
                .collect();
            if !person {
                a.pseudonyms[0].encodings.clear();
            }
            a
        })
}

proptest! {
    /// For random alerts and random valid policies, what would be sent never
    /// holds a field, level or identifier type the deciding rule does not
    /// allow; TLP:RED and received alerts never leave.
    #[test]
    fn envelopes_never_exceed_the_deciding_rule(
        rules in proptest::collection::vec(rule_strategy(), 0..6),
        stored in stored_strategy(),
        peer in prop_oneof![Just("ngo"), Just("labour"), Just("border")],
    ) {
        let policy = Policy { rules: rules.clone(), kinds: Default::default(), inbound: vec![], disclosure: vec![] };
        let own = agency("police");
        let peer = agency(peer);
        let d = evaluate(&policy, &stored, &own, &peer, now());
        let Some(grant) = d.grant else { return Ok(()) };
        let alert = stored.alert.as_ref().unwrap();
        let content = alert.content.as_ref().unwrap();
        prop_assert_eq!(alert.origin.as_str(), "police", "received alert shared");
        prop_assert_ne!(content.tlp, Tlp::Red as i32, "TLP:RED shared");
        let rule = rules.iter().find(|r| Some(&r.name) == d.rule.as_ref()).unwrap();
        prop_assert_eq!(rule.effect, Effect::Share);
        prop_assert!(rule.named.contains(&peer) || (rule.via_group.contains(&peer) && content.tlp != Tlp::AmberStrict as i32));
        prop_assert_eq!(&grant, &rule.grant);

        let env = shared_view_with(&stored, &grant);
        let c = env.content.unwrap();
        match (&c.location, grant.location) {
            (None, _) => {}
            (Some(_), LocationLevel::None) => prop_assert!(false, "location sent"),
            (Some(l), level) => {
                prop_assert!(level >= LocationLevel::Region || l.region.is_empty());
                prop_assert!(level >= LocationLevel::City || l.city.is_empty());
            }
        }
        if let Some(w) = &c.time_window {
            prop_assert!(grant.time != TimeLevel::None, "time sent");
            for t in [w.start, w.end].into_iter().flatten() {
                prop_assert_eq!(t.nanos, 0);
                prop_assert_eq!(t.seconds % 86_400, 0, "finer than a day");
            }
        }
        prop_assert!(grant.narrative || c.narrative.is_empty());
        prop_assert!(grant.indicators || c.indicators.is_empty());
        for s in &env.subjects {
            for t in &s.tokens {
                prop_assert!(grant.identifier(t.r#type) >= IdLevel::Exact, "token type {} not granted", t.r#type);
            }
            prop_assert!(s.encodings.is_empty() || grant.identifier(IdentifierType::Person as i32) == IdLevel::Fuzzy);
        }
    }
}

const INBOUND: &str = r#"
[groups]
ngos = ["ngo"]

[[inbound]]
name = "no-red-from-anyone"
effect = "refuse"
[inbound.when]
tlp = ["red"]

[[inbound]]
name = "ngos-child-cases-ok"
effect = "accept"
groups = ["ngos"]
[inbound.when]
categories = ["child_trafficking"]

[[inbound]]
name = "no-low-confidence-from-ngos"
effect = "refuse"
groups = ["ngos"]
[inbound.when]
min_severity = "low"
"#;

#[test]
fn inbound_rules_first_applicable_decides_default_accept() {
    let p = parse(Path::new("p.toml"), INBOUND, &peers()).unwrap();
    assert_eq!(p.inbound.len(), 3);
    let (ngo, labour) = (agency("ngo"), agency("labour"));
    let from_ngo = |c, t| alert(c, Severity::Medium, t, "ngo");
    let d = evaluate_inbound(&p, &from_ngo(Category::Other, Tlp::Red), &ngo, now());
    assert!(!d.accepted);
    assert_eq!(d.rule.as_deref(), Some("no-red-from-anyone"));
    let d = evaluate_inbound(
        &p,
        &from_ngo(Category::ChildTrafficking, Tlp::Green),
        &ngo,
        now(),
    );
    assert!(d.accepted);
    assert_eq!(d.rule.as_deref(), Some("ngos-child-cases-ok"));
    let d = evaluate_inbound(&p, &from_ngo(Category::Other, Tlp::Green), &ngo, now());
    assert!(!d.accepted);
    assert_eq!(d.rule.as_deref(), Some("no-low-confidence-from-ngos"));
    // Not an NGO: only the first rule could apply, and it does not.
    let d = evaluate_inbound(
        &p,
        &alert(Category::Other, Severity::Low, Tlp::Green, "labour"),
        &labour,
        now(),
    );
    assert!(d.accepted);
    assert_eq!(d.rule, None);
    // A tombstone carries no content and is always accepted.
    let mut tomb = from_ngo(Category::Other, Tlp::Red);
    tomb.alert.as_mut().unwrap().content = None;
    tomb.alert.as_mut().unwrap().retracted = true;
    assert!(evaluate_inbound(&p, &tomb, &ngo, now()).accepted);
}

#[test]
fn inbound_rules_are_validated_like_share_rules() {
    let e = errors("[[inbound]]\nname = \"x\"\neffect = \"refuse\"\npeers = [\"nobody\"]\n");
    assert_eq!((e[0].line, e[0].column), (4, 10));
    assert!(e[0].message.contains("unknown peer"));
    let e = errors("[[inbound]]\nname = \"x\"\neffect = \"drop\"\n");
    assert_eq!(e[0].line, 3);
    assert!(
        e[0].message.contains("accept") && e[0].message.contains("refuse"),
        "{}",
        e[0].message
    );
    let shadow = "[[inbound]]\nname = \"all\"\neffect = \"refuse\"\n\n[[inbound]]\nname = \"later\"\neffect = \"accept\"\npeers = [\"ngo\"]\n";
    let e = errors(shadow);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].line, 6);
    assert!(e[0].message.contains("never reached"), "{}", e[0].message);
    let e =
        errors("[[inbound]]\nname = \"x\"\neffect = \"refuse\"\n[inbound.when]\ncategories = []\n");
    assert!(
        e[0].message.contains("matches no alert"),
        "{}",
        e[0].message
    );
}

proptest! {
    /// Inbound: an alert is refused exactly when the first inbound rule whose
    /// peers and conditions match says refuse; tombstones are never refused.
    #[test]
    fn inbound_refusal_follows_the_first_matching_rule(
        stored in stored_strategy(),
        refuse_tlp in proptest::collection::btree_set(0..5usize, 1..4),
        refuse in any::<bool>(),
        from in prop_oneof![Just("ngo"), Just("labour")],
        tombstone in any::<bool>(),
    ) {
        let names = ["clear", "green", "amber", "amber_strict", "red"];
        let levels: Vec<String> = refuse_tlp.iter().map(|i| format!("\"{}\"", names[*i])).collect();
        let src = format!(
            "[[inbound]]\nname = \"r\"\neffect = \"{}\"\npeers = [\"ngo\"]\n[inbound.when]\ntlp = [{}]\n",
            if refuse { "refuse" } else { "accept" },
            levels.join(", ")
        );
        let p = parse(Path::new("p.toml"), &src, &peers()).unwrap();
        let mut stored = stored;
        if tombstone {
            let a = stored.alert.as_mut().unwrap();
            a.retracted = true;
            a.content = None;
        }
        let d = evaluate_inbound(&p, &stored, &agency(from), now());
        let tlp = stored.alert.as_ref().unwrap().content.as_ref().map(|c| c.tlp);
        let wire = [Tlp::Clear, Tlp::Green, Tlp::Amber, Tlp::AmberStrict, Tlp::Red];
        let matches = from == "ngo"
            && tlp.is_some_and(|t| refuse_tlp.iter().any(|i| wire[*i] as i32 == t));
        prop_assert_eq!(d.accepted, !(matches && refuse));
        prop_assert_eq!(d.rule.is_some(), matches);
    }
}

#[test]
fn every_misspelling_is_reported_not_only_the_first() {
    let src = include_str!("../../docs/examples/policy-police.toml")
        .replace("[\"child_trafficking\"]", "[\"child_traficking\"]")
        .replace("min_severity = \"high\"", "min_severity = \"hihg\"")
        .replace("location = \"country\"", "locaton = \"country\"")
        .replacen("time = \"day\"", "time = \"dya\"", 1);
    let peers: BTreeSet<AgencyId> = [agency("ngo"), agency("labour")].into();
    let found = parse(std::path::Path::new("p.toml"), &src, &peers).unwrap_err();
    let words: Vec<&str> = found.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(found.len(), 4, "{words:#?}");
    for typo in ["child_traficking", "hihg", "locaton", "dya"] {
        assert!(
            words.iter().any(|w| w.contains(typo)),
            "{typo} not named: {words:#?}"
        );
    }
    assert!(
        found.windows(2).all(|w| w[0].line < w[1].line),
        "in file order"
    );
    // Without a peer table, the same reading errors.
    assert_eq!(
        parse_any_peer(std::path::Path::new("p.toml"), &src)
            .unwrap_err()
            .len(),
        4
    );
}

const DISCLOSURE: &str = r#"
[groups]
law-enforcement = ["labour", "border"]

[[disclosure]]
name = "ngo-referrals"
peers = ["ngo"]
legal_bases = ["victim_referral_consent"]
[disclosure.when]
tlp = ["clear", "green"]
[disclosure.release]
location = "city"
identifiers = ["phone"]

[[disclosure]]
name = "law-enforcement"
groups = ["law-enforcement"]
legal_bases = ["directive_2023_977", "national_law"]
[disclosure.release]
location = "city"
time = "day"
narrative = "full"
identifiers = ["phone", "person"]
"#;

#[test]
fn disclosure_rules_are_checked_with_their_position() {
    let p = parse(Path::new("p.toml"), DISCLOSURE, &peers()).unwrap();
    assert_eq!(p.disclosure.len(), 2);
    let bad = DISCLOSURE
        .replace("peers = [\"ngo\"]", "peers = [\"nobody\"]")
        .replace("\"national_law\"]", "\"national_law\", \"hearsay\"]");
    let found = errors(&bad);
    assert_eq!(found.len(), 1, "a reading error first: {found:?}");
    assert!(found[0].message.contains("hearsay"), "{found:?}");
    let (line, column) = (found[0].line, found[0].column);
    let text_line = bad.lines().nth(line - 1).unwrap();
    assert!(
        text_line[column - 1..].starts_with("\"hearsay\""),
        "{text_line} at {column}"
    );
    let found = errors(&DISCLOSURE.replace("peers = [\"ngo\"]", "peers = [\"nobody\"]"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].message.contains("unknown peer `nobody`"));
    assert_eq!(found[0].line, 7);
    let found = errors(
        &DISCLOSURE
            .replace(
                "legal_bases = [\"victim_referral_consent\"]",
                "legal_bases = []",
            )
            .replace("groups = [\"law-enforcement\"]\n", ""),
    );
    let words: Vec<&str> = found.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(found.len(), 2, "{words:?}");
    assert!(words[0].contains("accepts no legal basis"), "{words:?}");
    assert!(words[1].contains("names no peer"), "{words:?}");
    let red = DISCLOSURE.replace("tlp = [\"clear\", \"green\"]", "tlp = [\"red\"]");
    assert!(errors(&red)[0].message.contains("TLP:RED"));
}

fn selection_strategy() -> impl Strategy<Value = Release> {
    (
        0..4usize,
        0..4usize,
        any::<bool>(),
        any::<bool>(),
        proptest::collection::btree_set(1..=9i32, 0..4),
    )
        .prop_map(|(l, t, narrative, indicators, identifiers)| Release {
            location: [
                LocationLevel::None,
                LocationLevel::Country,
                LocationLevel::Region,
                LocationLevel::City,
            ][l],
            time: [
                TimeLevel::None,
                TimeLevel::Year,
                TimeLevel::Month,
                TimeLevel::Day,
            ][t],
            narrative,
            indicators,
            identifiers,
        })
}

proptest! {
    /// A request is allowed only for our own, live, non-RED alerts, by the
    /// first rule that reaches the requester and whose conditions hold, and
    /// only under a basis that rule accepts; the maximum is that rule's.
    #[test]
    fn disclosure_follows_the_first_reaching_rule(
        stored in stored_strategy(),
        peer in prop_oneof![Just("ngo"), Just("labour"), Just("border")],
        basis in 1..=5i32,
        retracted in any::<bool>(),
    ) {
        let p = parse(Path::new("p.toml"), DISCLOSURE, &peers()).unwrap();
        let mut stored = stored;
        if retracted {
            stored.alert.as_mut().unwrap().retracted = true;
        }
        let peer = agency(peer);
        let verdict = evaluate_disclosure(&p, &stored, &agency("police"), &peer, basis, now());
        let a = stored.alert.as_ref().unwrap();
        let c = a.content.as_ref().unwrap();
        let strict = c.tlp == Tlp::AmberStrict as i32;
        let first = p.disclosure.iter().find(|r| {
            (r.named.contains(&peer) || (!strict && r.via_group.contains(&peer)))
                && r.when.tlp.as_ref().is_none_or(|t| t.contains(&c.tlp))
        });
        // No peer kinds are known here, so no peer takes H1.
        let expect_allowed = a.origin == "police"
            && !a.retracted
            && c.tlp != Tlp::Red as i32
            && c.handling_code != crate::proto::v1::HandlingCode::H1 as i32
            && first.is_some_and(|r| r.legal_bases.contains(&basis));
        match verdict {
            DisclosureVerdict::Allowed { rule, max } => {
                prop_assert!(expect_allowed);
                let r = first.unwrap();
                prop_assert_eq!(&rule, &r.name);
                prop_assert_eq!(&max, &r.max);
            }
            DisclosureVerdict::Refused { .. } => prop_assert!(!expect_allowed),
        }
    }

    /// A selection exceeds a maximum in exactly the fields where it asks for
    /// more, each named.
    #[test]
    fn excess_names_exactly_what_is_beyond_the_maximum(max in selection_strategy(), chosen in selection_strategy()) {
        let excess = max.excess(&chosen, "r");
        let within = chosen.location <= max.location
            && chosen.time <= max.time
            && (!chosen.narrative || max.narrative)
            && (!chosen.indicators || max.indicators)
            && chosen.identifiers.is_subset(&max.identifiers);
        prop_assert_eq!(excess.is_empty(), within);
        let extra_ids = chosen.identifiers.difference(&max.identifiers).count();
        prop_assert_eq!(excess.iter().filter(|(f, _)| f == "release.identifiers").count(), extra_ids);
        prop_assert!(max.excess(&max, "r").is_empty());
    }
}

/// The test peers' kinds: `border` law enforcement, the others not.
fn kinds() -> crate::handling::PeerKinds {
    use crate::handling::PeerKind;
    [
        (agency("ngo"), PeerKind::Ngo),
        (agency("border"), PeerKind::LawEnforcement),
        (agency("labour"), PeerKind::LabourInspectorate),
    ]
    .into_iter()
    .collect()
}

/// H1 goes to law-enforcement peers only whatever the rules say, and the
/// rules that read otherwise are pointed out by line.
#[test]
fn h1_is_kept_to_law_enforcement_and_rules_that_read_otherwise_are_warned_about() {
    let p = policy().with_peer_kinds(kinds());
    let mut a = alert(
        Category::LabourExploitation,
        Severity::High,
        Tlp::Amber,
        "police",
    );
    a.alert
        .as_mut()
        .unwrap()
        .content
        .as_mut()
        .unwrap()
        .handling_code = crate::proto::v1::HandlingCode::H1 as i32;
    let own = agency("police");
    let decide = |peer: &str| evaluate(&p, &a, &own, &agency(peer), SystemTime::now());
    assert!(decide("border").grant.is_some());
    let ngo = decide("ngo");
    assert!(
        ngo.grant.is_none() && ngo.reason.contains("an NGO"),
        "{ngo:?}"
    );
    assert!(decide("labour").grant.is_none());
    // Without kinds (an unknown configuration), nobody is taken for law
    // enforcement.
    assert!(
        evaluate(&policy(), &a, &own, &agency("border"), SystemTime::now())
            .grant
            .is_none()
    );

    let warnings = p.handling_warnings();
    let lines: Vec<_> = warnings
        .iter()
        .map(|(l, w)| (*l, w.contains("`ngo`"), w.contains("`labour`")))
        .collect();
    assert_eq!(
        lines.iter().filter(|(_, ngo, _)| *ngo).count(),
        1,
        "ngos-labour shares H1 with ngo: {warnings:?}"
    );
    assert!(lines.iter().any(|(_, _, labour)| *labour), "{warnings:?}");
    assert!(
        !warnings.iter().any(|(_, w)| w.contains("`border`")),
        "{warnings:?}"
    );
    // A deny rule for H1 above them silences the warnings.
    let guarded = format!(
        "[[rules]]\nname = \"h1\"\neffect = \"deny\"\npeers = [\"ngo\", \"labour\"]\n[rules.when]\nhandling_codes = [\"h1\"]\n{POLICY}"
    );
    let p = parse(Path::new("p.toml"), &guarded, &peers())
        .unwrap()
        .with_peer_kinds(kinds());
    assert!(
        p.handling_warnings().is_empty(),
        "{:?}",
        p.handling_warnings()
    );
}

/// What the node says about levels is what a policy author writes
/// (`fuzzy_wide`, not `fuzzywide`).
#[test]
fn levels_are_described_in_the_policy_files_words() {
    let mut g = Grant::nothing();
    g.location = LocationLevel::City;
    g.time = TimeLevel::Month;
    g.identifiers.insert(
        crate::proto::v1::IdentifierType::Person as i32,
        IdLevel::FuzzyWide,
    );
    assert_eq!(g.describe(), "location=city time=month person=fuzzy_wide");
    for (level, word) in [
        (IdLevel::None, "none"),
        (IdLevel::Exact, "exact"),
        (IdLevel::Fuzzy, "fuzzy"),
        (IdLevel::FuzzyWide, "fuzzy_wide"),
    ] {
        let parsed: IdLevel = serde_json::from_value(serde_json::json!(word)).unwrap();
        assert_eq!((parsed, level.as_str()), (level, word));
    }
}

fn directory_groups(pairs: &[(&str, &[&str])]) -> DirectoryGroups {
    pairs
        .iter()
        .map(|(g, ms)| (g.to_string(), ms.iter().map(|m| agency(m)).collect()))
        .collect()
}

const BY_DIRECTORY_GROUP: &str = r#"
[[rules]]
name = "ngos"
effect = "share"
peers = ["group:ngo", "police-hq"]
[rules.share]
narrative = "full"

[[disclosure]]
name = "police-may-ask"
peers = ["group:law-enforcement"]
legal_bases = ["directive_2023_977"]
[disclosure.release]
narrative = "full"

[[inbound]]
name = "not-from-labour"
effect = "refuse"
peers = ["group:labour-inspectorate"]
"#;

#[test]
fn directory_groups_mean_their_members_now_and_an_unknown_one_is_named() {
    let groups = directory_groups(&[
        ("ngo", &["shelter", "hotline"]),
        ("law-enforcement", &["border"]),
        ("labour-inspectorate", &["labour"]),
    ]);
    let file = Path::new("policy.toml");
    let p = parse_in_directory(file, BY_DIRECTORY_GROUP, &groups, true).unwrap();
    let rule = &p.rules[0];
    assert_eq!(
        rule.named,
        [agency("police-hq")].into(),
        "ids are taken as named"
    );
    assert_eq!(
        rule.via_group,
        [agency("shelter"), agency("hotline")].into()
    );
    assert_eq!(p.disclosure[0].via_group, [agency("border")].into());
    assert_eq!(p.inbound[0].from, Some([agency("labour")].into()));
    let a = alert(
        Category::LabourExploitation,
        Severity::High,
        Tlp::Amber,
        "police",
    );
    let everyone = [
        agency("shelter"),
        agency("hotline"),
        agency("border"),
        agency("newcomer"),
    ];
    let shared: Vec<&AgencyId> = evaluate_all(&p, &a, &agency("police"), &everyone, now())
        .into_iter()
        .filter(|(_, d)| d.grant.is_some())
        .map(|(peer, _)| peer)
        .collect();
    assert_eq!(
        shared,
        [&everyone[0], &everyone[1]],
        "default deny for the rest"
    );

    // A group the directory does not define: named, with the groups there are.
    let fewer = directory_groups(&[("ngo", &["shelter"])]);
    let errs = parse_in_directory(file, BY_DIRECTORY_GROUP, &fewer, true).unwrap_err();
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|e| e.contains("unknown directory group `law-enforcement`")
                && e.contains("groups in the directory in force: ngo")),
        "{text:#?}"
    );
    // The policy in force, kept across a directory that dropped the
    // group: the group reaches no one, the rest still applies.
    let kept = parse_in_directory(file, BY_DIRECTORY_GROUP, &fewer, false).unwrap();
    assert!(kept.disclosure[0].via_group.is_empty());
    assert_eq!(kept.rules[0].via_group, [agency("shelter")].into());
    // A node without a directory cannot mean one of its groups.
    let errs = errors(BY_DIRECTORY_GROUP);
    assert!(
        errs.iter()
            .any(|e| e.to_string().contains("but this node follows none")),
        "{errs:#?}"
    );
    // Offline, without a node, any group is taken.
    assert!(parse_any_peer(file, BY_DIRECTORY_GROUP).is_ok());
}

proptest! {
    /// Whoever the directory puts in a group, a rule naming the group
    /// shares with exactly them (and denies everyone else).
    #[test]
    fn a_group_rule_reaches_exactly_the_groups_members(
        membership in proptest::collection::vec(any::<bool>(), 1..12),
    ) {
        let members: Vec<AgencyId> =
            (0..membership.len()).map(|i| agency(&format!("agency-{i}"))).collect();
        let in_group: BTreeSet<AgencyId> = members
            .iter()
            .zip(&membership)
            .filter(|(_, m)| **m)
            .map(|(a, _)| a.clone())
            .collect();
        let groups: DirectoryGroups = [("ngo".to_string(), in_group.clone())].into();
        let text = "[[rules]]\nname = \"g\"\neffect = \"share\"\npeers = [\"group:ngo\"]\n[rules.share]\nnarrative = \"full\"\n";
        let p = parse_in_directory(Path::new("p.toml"), text, &groups, true).unwrap();
        let a = alert(Category::LabourExploitation, Severity::High, Tlp::Amber, "police");
        for (peer, d) in evaluate_all(&p, &a, &agency("police"), &members, now()) {
            prop_assert_eq!(d.grant.is_some(), in_group.contains(peer));
        }
    }
}
