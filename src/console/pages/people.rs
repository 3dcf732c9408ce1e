//! The people of the alert form: one block a person, each identifier kind
//! a person may have several of as a list (one a line), so the form can
//! hold what the API holds — phones, e-mails, IBANs, online handles,
//! crypto wallets, vehicle plates, advert URLs — for as many people as a
//! caseworker adds (up to [`MAX_BLOCKS`]). A person's name and one
//! identity document stay structured fields.

use super::form::{Choice, FormState};
use crate::proto::v1::identifier::Kind;
use crate::proto::v1::{
    AdvertUrl, AgeBand, Alert, CryptoWallet, DocumentType, Email, Gender, Iban, Identifier,
    IdentityDocument, OnlineHandle, PersonName, Phone, RecruitmentMethod, Subject, SubjectRole,
    VehiclePlate, VictimProfile,
};
use crate::stats::victim::{AGE_BANDS, GENDERS, RECRUITMENT};

/// Blocks the form shows at least (empty ones are left out of the draft).
pub const MIN_BLOCKS: usize = 2;
/// The most people one form holds; an alert with more is changed through
/// the API.
pub const MAX_BLOCKS: usize = 32;
/// The most lines one list input takes (the node's own limit on
/// identifiers per subject is checked by the node).
const MAX_LINES: usize = 64;

/// How many blocks the posted form had (its hidden `people` count),
/// bounded.
pub fn blocks_posted(form: &FormState) -> usize {
    form.value("people")
        .parse::<usize>()
        .unwrap_or(MIN_BLOCKS)
        .clamp(MIN_BLOCKS, MAX_BLOCKS)
}

/// A block's index however a template holds it (a macro argument comes
/// as a reference, or a reference to one).
pub trait Block {
    fn index(&self) -> usize;
}

impl Block for usize {
    fn index(&self) -> usize {
        *self
    }
}

impl<T: Block + ?Sized> Block for &T {
    fn index(&self) -> usize {
        (**self).index()
    }
}

/// The input name of field `f` of block `block`.
pub fn input(block: impl Block, f: &str) -> String {
    format!("s{}_{f}", block.index())
}

/// A block's legend: "Person 2", or "Identifiers" on a form about no one
/// person in particular (a lookup, a verification).
pub fn legend(block: impl Block, of_a_person: bool) -> String {
    if of_a_person {
        format!("Person {}", block.index() + 1)
    } else {
        "Identifiers".into()
    }
}

/// The non-empty lines of a list input, numbered from 1 as a person
/// counts them, at most [`MAX_LINES`] (more is an error at the input).
fn lines(form: &mut FormState, name: &str) -> Vec<(usize, String)> {
    let all: Vec<(usize, String)> = form
        .value_raw(name)
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim().to_owned()))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    if all.len() > MAX_LINES {
        form.add_error(name, format!("at most {MAX_LINES} lines"));
        return Vec::new();
    }
    all
}

/// "platform: handle" → ("platform", "handle"); an error at the input when
/// the line has no colon.
fn pair(
    form: &mut FormState,
    name: &str,
    no: usize,
    line: &str,
    shape: &str,
) -> Option<(String, String)> {
    match line.split_once(':') {
        Some((a, b)) if !a.trim().is_empty() && !b.trim().is_empty() => {
            Some((a.trim().to_owned(), b.trim().to_owned()))
        }
        _ => {
            form.add_error(name, format!("line {no}: write it as {shape}"));
            None
        }
    }
}

/// The identifiers of one block, each with the input (and line) its
/// problems belong to.
struct Collected<'f> {
    form: &'f mut FormState,
    /// Where the node names these identifiers: `draft.subjects[0].identifiers`.
    at: String,
    block: usize,
    identifiers: Vec<Identifier>,
}

impl Collected<'_> {
    fn add(&mut self, kind: Kind, field: &str, line: Option<usize>) {
        let at = format!("{}[{}]", self.at, self.identifiers.len());
        self.form.map_path_labelled(
            at,
            &input(self.block, field),
            line.map(|n| format!("line {n}")),
        );
        self.identifiers.push(Identifier { kind: Some(kind) });
    }

    fn list(&mut self, field: &str, make: impl Fn(&mut FormState, usize, String) -> Option<Kind>) {
        let name = input(self.block, field);
        for (no, line) in lines(self.form, &name) {
            if let Some(kind) = make(self.form, no, line) {
                self.add(kind, field, Some(no));
            }
        }
    }
}

/// Block `block` of the form as subject `index` of the draft (none when
/// the block is empty).
pub fn subject_of(form: &mut FormState, block: usize, index: usize) -> Option<Subject> {
    let path = format!("draft.subjects[{index}]");
    let identifiers = identifiers_of(form, block, &format!("{path}.identifiers"));
    let role = super::common::chosen(form, &input(block, "role"), SubjectRole::from_str_name);
    if identifiers.is_empty() {
        if role != SubjectRole::Unspecified {
            form.add_error(
                &input(block, "role"),
                "give at least one identifier for this person (or leave the role empty)",
            );
        }
        return None;
    }
    form.map_path(path.clone(), &input(block, "role"));
    form.map_path(format!("{path}.role"), &input(block, "role"));
    Some(Subject {
        profile: profile_of(form, block, &format!("{path}.profile")),
        role: role as i32,
        identifiers,
    })
}

/// The victim profile typed into block `block` (none when every input of
/// it is empty); the node says which part is wrong, at `at`.
fn profile_of(form: &mut FormState, block: usize, at: &str) -> Option<VictimProfile> {
    use super::common::chosen;
    let gender = chosen(form, &input(block, "gender"), Gender::from_str_name);
    let age_band = chosen(form, &input(block, "age_band"), AgeBand::from_str_name);
    let citizenship = form.value(&input(block, "citizenship")).to_uppercase();
    let recruitment: Vec<i32> = form
        .values(&input(block, "recruitment"))
        .into_iter()
        .filter_map(RecruitmentMethod::from_str_name)
        .map(|m| m as i32)
        .collect();
    let profile = VictimProfile {
        gender: gender as i32,
        citizenship,
        age_band: age_band as i32,
        recruitment,
    };
    if profile == VictimProfile::default() {
        return None;
    }
    // "Only a potential victim has a profile" belongs next to the role.
    form.map_path(at.to_owned(), &input(block, "role"));
    for field in ["gender", "citizenship", "age_band", "recruitment"] {
        form.map_path(format!("{at}.{field}"), &input(block, field));
    }
    Some(profile)
}

/// The choices of the profile's inputs, labelled as the statistics
/// publish them (so a caseworker sees the cell a case will count in).
pub fn genders() -> Vec<Choice> {
    let named = GENDERS.iter().map(|(g, label)| (g.as_str_name(), *label));
    choices_of(named)
}

/// See [`genders`].
pub fn age_bands() -> Vec<Choice> {
    choices_of(
        AGE_BANDS
            .iter()
            .map(|(a, label, _)| (a.as_str_name(), *label)),
    )
}

/// See [`genders`].
pub fn recruitment_methods() -> Vec<Choice> {
    choices_of(
        RECRUITMENT
            .iter()
            .map(|(m, label)| (m.as_str_name(), *label)),
    )
}

/// Choices from (wire name, label), the unspecified value left out (the
/// empty option stands for it).
fn choices_of<'a>(named: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<Choice> {
    named
        .filter(|(wire, _)| !wire.ends_with("UNSPECIFIED"))
        .map(|(wire, label)| Choice {
            value: wire.to_owned(),
            label: label.to_owned(),
        })
        .collect()
}

/// The identifiers typed into block `block`, which the node names at
/// `at[0]`, `at[1]`… (`draft.subjects[0].identifiers`, or a disclosure
/// request's `verification`).
pub fn identifiers_of(form: &mut FormState, block: usize, at: &str) -> Vec<Identifier> {
    let v = |form: &FormState, f: &str| form.value(&input(block, f)).to_owned();
    let (given, family, dob) = (v(form, "given"), v(form, "family"), v(form, "dob"));
    let (doc_number, region) = (
        v(form, "doc_number"),
        v(form, "phone_region").to_uppercase(),
    );
    let doc_type =
        super::common::chosen(form, &input(block, "doc_type"), DocumentType::from_str_name);
    let doc_country = v(form, "doc_country").to_uppercase();
    let mut c = Collected {
        form,
        at: at.to_owned(),
        block,
        identifiers: Vec::new(),
    };
    if !(given.is_empty() && family.is_empty() && dob.is_empty()) {
        let kind = Kind::Person(PersonName {
            given_names: given,
            family_name: family,
            date_of_birth: dob,
        });
        c.add(kind, "given", None);
        let at = format!("{}[{}]", c.at, c.identifiers.len() - 1);
        c.form
            .map_path(format!("{at}.person.family_name"), &input(block, "family"));
        c.form
            .map_path(format!("{at}.person.date_of_birth"), &input(block, "dob"));
    }
    if !doc_number.is_empty() {
        let kind = Kind::Document(IdentityDocument {
            r#type: doc_type as i32,
            number: doc_number,
            issuing_country: doc_country,
        });
        c.add(kind, "doc_number", None);
        let at = format!("{}[{}]", c.at, c.identifiers.len() - 1);
        c.form
            .map_path(format!("{at}.document.type"), &input(block, "doc_type"));
        c.form.map_path(
            format!("{at}.document.issuing_country"),
            &input(block, "doc_country"),
        );
    }
    c.list("phones", |_, _, number| {
        Some(Kind::Phone(Phone {
            number,
            region: region.clone(),
        }))
    });
    c.list("emails", |_, _, address| {
        Some(Kind::Email(Email { address }))
    });
    c.list("ibans", |_, _, iban| Some(Kind::Iban(Iban { iban })));
    let handles = input(block, "handles");
    c.list("handles", |form, no, line| {
        let (platform, handle) = pair(form, &handles, no, &line, "platform: handle")?;
        Some(Kind::OnlineHandle(OnlineHandle { platform, handle }))
    });
    let wallets = input(block, "wallets");
    c.list("wallets", |form, no, line| {
        let (chain, address) = pair(form, &wallets, no, &line, "chain: address")?;
        Some(Kind::CryptoWallet(CryptoWallet { chain, address }))
    });
    let plates = input(block, "plates");
    c.list("plates", |form, no, line| {
        let (country, plate) = pair(form, &plates, no, &line, "country: plate")?;
        Some(Kind::VehiclePlate(VehiclePlate {
            country: country.to_uppercase(),
            plate,
        }))
    });
    c.list("urls", |_, _, url| Some(Kind::AdvertUrl(AdvertUrl { url })));
    c.identifiers
}

/// What an alert holds that the form cannot show (so editing it here
/// would drop it), if anything: more people than the form takes, or a
/// second name or identity document for one person.
pub fn beyond_the_form(alert: &Alert) -> Option<String> {
    if alert.subjects.len() > MAX_BLOCKS {
        return Some(format!("{} people", alert.subjects.len()));
    }
    for s in &alert.subjects {
        let count = |f: fn(&Kind) -> bool| {
            s.identifiers
                .iter()
                .filter(|i| i.kind.as_ref().is_some_and(f))
                .count()
        };
        if count(|k| matches!(k, Kind::Person(_))) > 1 {
            return Some("two names for one person".into());
        }
        if count(|k| matches!(k, Kind::Document(_))) > 1 {
            return Some("two identity documents for one person".into());
        }
    }
    None
}

/// The form inputs of `alert`'s people (to edit it); the block count too.
pub fn fill(f: &mut FormState, subjects: &[Subject]) {
    let enum_value = |name: &str| {
        if name.ends_with("UNSPECIFIED") {
            String::new()
        } else {
            name.to_owned()
        }
    };
    f.set(
        "people",
        (subjects.len() + 1)
            .clamp(MIN_BLOCKS, MAX_BLOCKS)
            .to_string(),
    );
    for (block, s) in subjects.iter().take(MAX_BLOCKS).enumerate() {
        let name = |x: &str| input(block, x);
        f.set(&name("role"), enum_value(s.role().as_str_name()));
        let mut lists: [(&str, Vec<String>); 7] = [
            ("phones", Vec::new()),
            ("emails", Vec::new()),
            ("ibans", Vec::new()),
            ("handles", Vec::new()),
            ("wallets", Vec::new()),
            ("plates", Vec::new()),
            ("urls", Vec::new()),
        ];
        for id in &s.identifiers {
            match &id.kind {
                Some(Kind::Phone(p)) => {
                    lists[0].1.push(p.number.clone());
                    if !p.region.is_empty() {
                        f.set(&name("phone_region"), p.region.clone());
                    }
                }
                Some(Kind::Email(e)) => lists[1].1.push(e.address.clone()),
                Some(Kind::Iban(i)) => lists[2].1.push(i.iban.clone()),
                Some(Kind::OnlineHandle(h)) => {
                    lists[3].1.push(format!("{}: {}", h.platform, h.handle))
                }
                Some(Kind::CryptoWallet(w)) => {
                    lists[4].1.push(format!("{}: {}", w.chain, w.address))
                }
                Some(Kind::VehiclePlate(p)) => {
                    lists[5].1.push(format!("{}: {}", p.country, p.plate))
                }
                Some(Kind::AdvertUrl(u)) => lists[6].1.push(u.url.clone()),
                Some(Kind::Person(p)) => {
                    f.set(&name("given"), p.given_names.clone());
                    f.set(&name("family"), p.family_name.clone());
                    f.set(&name("dob"), p.date_of_birth.clone());
                }
                Some(Kind::Document(d)) => {
                    f.set(&name("doc_type"), enum_value(d.r#type().as_str_name()));
                    f.set(&name("doc_number"), d.number.clone());
                    f.set(&name("doc_country"), d.issuing_country.clone());
                }
                None => {}
            }
        }
        for (field, values) in lists {
            if !values.is_empty() {
                f.set(&name(field), values.join("\n"));
            }
        }
        if let Some(p) = &s.profile {
            fill_profile(f, block, p);
        }
    }
}

/// The profile inputs of block `block`.
fn fill_profile(f: &mut FormState, block: usize, p: &VictimProfile) {
    let set_enum = |f: &mut FormState, field: &str, wire: &str| {
        if !wire.ends_with("UNSPECIFIED") {
            f.set(&input(block, field), wire.to_owned());
        }
    };
    set_enum(f, "gender", p.gender().as_str_name());
    set_enum(f, "age_band", p.age_band().as_str_name());
    f.set(&input(block, "citizenship"), p.citizenship.clone());
    for m in p.recruitment() {
        f.push(&input(block, "recruitment"), m.as_str_name().to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(ids: Vec<Kind>) -> Subject {
        Subject {
            profile: None,
            role: SubjectRole::SuspectedTrafficker as i32,
            identifiers: ids
                .into_iter()
                .map(|k| Identifier { kind: Some(k) })
                .collect(),
        }
    }

    /// Every kind the API takes, several of a kind, survives the form
    /// both ways: filled from an alert and read back, it is the same.
    #[test]
    fn a_rich_subject_goes_through_the_form_unchanged() {
        let s = subject(vec![
            Kind::Person(PersonName {
                given_names: "Ion".into(),
                family_name: "Rusu".into(),
                date_of_birth: "1987".into(),
            }),
            Kind::Document(IdentityDocument {
                r#type: DocumentType::Passport as i32,
                number: "055214478".into(),
                issuing_country: "RO".into(),
            }),
            Kind::Phone(Phone {
                number: "+40 744 555 012".into(),
                region: String::new(),
            }),
            Kind::Phone(Phone {
                number: "+31 6 2345 6789".into(),
                region: String::new(),
            }),
            Kind::Email(Email {
                address: "a@example.org".into(),
            }),
            Kind::Iban(Iban {
                iban: "NL91ABNA0417164300".into(),
            }),
            Kind::OnlineHandle(OnlineHandle {
                platform: "telegram".into(),
                handle: "@jobs_nl".into(),
            }),
            Kind::CryptoWallet(CryptoWallet {
                chain: "tron".into(),
                address: "TXYZ".into(),
            }),
            Kind::VehiclePlate(VehiclePlate {
                country: "NL".into(),
                plate: "12-ABC-3".into(),
            }),
            Kind::AdvertUrl(AdvertUrl {
                url: "https://ads.example/job?id=1".into(),
            }),
        ]);
        let mut victim = subject(vec![Kind::Email(Email {
            address: "b@example.org".into(),
        })]);
        victim.role = SubjectRole::PotentialVictim as i32;
        victim.profile = Some(VictimProfile {
            gender: Gender::Female as i32,
            citizenship: "UA".into(),
            age_band: AgeBand::AgeBand017 as i32,
            recruitment: vec![
                RecruitmentMethod::SocialMedia as i32,
                RecruitmentMethod::Family as i32,
            ],
        });
        let subjects = vec![s.clone(), victim, s.clone()];
        let mut f = FormState::default();
        fill(&mut f, &subjects);
        assert_eq!(blocks_posted(&f), 4, "one empty block to add a person in");
        let back: Vec<Subject> = (0..blocks_posted(&f))
            .filter_map(|b| subject_of(&mut f, b, b))
            .collect();
        assert!(!f.has_errors());
        assert_eq!(back, subjects);
    }

    #[test]
    fn a_profile_is_kept_only_when_something_of_it_is_given() {
        let mut f = FormState::default();
        f.set("s0_phones", "+40 744 555 012");
        assert_eq!(subject_of(&mut f, 0, 0).unwrap().profile, None);
        f.set("s0_citizenship", "ro");
        let p = subject_of(&mut f, 0, 0).unwrap().profile.unwrap();
        assert_eq!((p.citizenship.as_str(), p.gender), ("RO", 0));
    }

    #[test]
    fn a_line_without_its_parts_is_an_error_at_its_input() {
        let mut f = FormState::default();
        f.set("s0_wallets", "tron: TXYZ\njust-an-address");
        let s = subject_of(&mut f, 0, 0).unwrap();
        assert_eq!(s.identifiers.len(), 1);
        assert_eq!(f.error("s0_wallets"), "line 2: write it as chain: address");
    }

    #[test]
    fn what_the_form_cannot_hold_is_named() {
        let two_docs = subject(vec![
            Kind::Document(IdentityDocument::default()),
            Kind::Document(IdentityDocument::default()),
        ]);
        let alert = Alert {
            subjects: vec![two_docs],
            ..Default::default()
        };
        assert_eq!(
            beyond_the_form(&alert).as_deref(),
            Some("two identity documents for one person")
        );
    }
}
