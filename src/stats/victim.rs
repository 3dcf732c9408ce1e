//! The potential victim a case counts in the victims and recruitment
//! tables: its first potential victim, in the profile's coarse terms.
//!
//! One case, one victim: the VDAF proves each report adds at most one to a
//! histogram, so a case with several victims is counted by its first (a
//! register that records one victim per case, as HTCDS does, loses
//! nothing). The age band comes from the profile, or else from a person
//! identifier's date of birth at the time the exploitation began — only
//! when every reading of a partial date falls in the same band, so a
//! birth year alone never puts a 17-year-old among adults.

use crate::ids::CountryCode;
use crate::proto::v1::{AgeBand, Gender, RecruitmentMethod, Subject, SubjectRole, identifier};

/// Genders, in column order (with the age bands inside each).
pub const GENDERS: [(Gender, &str); 4] = [
    (Gender::Female, "female"),
    (Gender::Male, "male"),
    (Gender::Other, "other"),
    (Gender::Unspecified, "gender not stated"),
];

/// Age bands, in column order, with the youngest age in each.
pub const AGE_BANDS: [(AgeBand, &str, i32); 6] = [
    (AgeBand::AgeBand017, "0-17", 0),
    (AgeBand::AgeBand1824, "18-24", 18),
    (AgeBand::AgeBand2534, "25-34", 25),
    (AgeBand::AgeBand3549, "35-49", 35),
    (AgeBand::AgeBand50Plus, "50+", 50),
    (AgeBand::Unspecified, "age not stated", i32::MAX),
];

/// Recruitment methods, in row order.
pub const RECRUITMENT: [(RecruitmentMethod, &str); 9] = [
    (RecruitmentMethod::JobOffer, "job offer"),
    (RecruitmentMethod::OnlineAdvert, "online advert"),
    (RecruitmentMethod::SocialMedia, "social media"),
    (RecruitmentMethod::RecruitmentAgency, "recruitment agency"),
    (RecruitmentMethod::IntimatePartner, "intimate partner"),
    (RecruitmentMethod::Family, "family"),
    (
        RecruitmentMethod::FriendAcquaintance,
        "friend or acquaintance",
    ),
    (RecruitmentMethod::Abduction, "abduction"),
    (RecruitmentMethod::Other, "other"),
];

/// What the statistics know of a case's potential victim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Victim {
    pub citizenship: Option<CountryCode>,
    pub gender: Gender,
    pub age: AgeBand,
    pub recruitment: Vec<RecruitmentMethod>,
}

impl Victim {
    /// The first potential victim among `subjects`, if there is one;
    /// `began` is the civil date (year, month, day) the exploitation began.
    pub fn of(subjects: &[Subject], began: Option<(i32, u32, u32)>) -> Option<Self> {
        let s = subjects
            .iter()
            .find(|s| s.role == SubjectRole::PotentialVictim as i32)?;
        let profile = s.profile.clone().unwrap_or_default();
        let stated = AgeBand::try_from(profile.age_band).unwrap_or(AgeBand::Unspecified);
        let age = match (stated, began) {
            (AgeBand::Unspecified, Some(at)) => derived_band(s, at),
            _ => stated,
        };
        Some(Self {
            citizenship: CountryCode::new(&profile.citizenship).ok(),
            gender: Gender::try_from(profile.gender).unwrap_or(Gender::Unspecified),
            age,
            recruitment: profile
                .recruitment
                .iter()
                .filter_map(|m| RecruitmentMethod::try_from(*m).ok())
                .collect(),
        })
    }

    /// The column of the victims table: gender, then age band.
    pub fn column(&self) -> usize {
        let g = GENDERS.iter().position(|(g, _)| *g == self.gender);
        let a = AGE_BANDS.iter().position(|(a, _, _)| *a == self.age);
        g.unwrap_or(GENDERS.len() - 1) * AGE_BANDS.len() + a.unwrap_or(AGE_BANDS.len() - 1)
    }
}

/// The victims table's column names: every gender with every age band.
pub fn columns() -> Vec<String> {
    GENDERS
        .iter()
        .flat_map(|(_, g)| AGE_BANDS.iter().map(move |(_, a, _)| format!("{g}, {a}")))
        .collect()
}

/// The band of the first date of birth among `s`'s person identifiers at
/// `at`, when all its readings agree on one.
fn derived_band(s: &Subject, at: (i32, u32, u32)) -> AgeBand {
    s.identifiers
        .iter()
        .find_map(|i| match &i.kind {
            Some(identifier::Kind::Person(p)) => {
                crate::pseudo::normalize::date_of_birth(&p.date_of_birth).ok()
            }
            _ => None,
        })
        .and_then(|dob| age_range(&dob, at))
        .map_or(AgeBand::Unspecified, |(youngest, oldest)| {
            let (a, b) = (band_of(youngest), band_of(oldest));
            if a == b { a } else { AgeBand::Unspecified }
        })
}

/// The youngest and oldest age a person born on the normalized, possibly
/// partial `dob` ("1990", "1990-02", "1990-02-01") may have on `at`.
fn age_range(dob: &str, at: (i32, u32, u32)) -> Option<(i32, i32)> {
    let mut parts = dob.split('-').map(str::parse::<u32>);
    let year = i32::try_from(parts.next()?.ok()?).ok()?;
    let month = parts.next().transpose().ok()?;
    let day = parts.next().transpose().ok()?;
    let age = |m: u32, d: u32| at.0 - year - i32::from((at.1, at.2) < (m, d));
    // Born as late in the year as the date allows: the youngest reading.
    let youngest = age(month.unwrap_or(12), day.unwrap_or(31));
    let oldest = age(month.unwrap_or(1), day.unwrap_or(1));
    (youngest >= 0).then_some((youngest, oldest))
}

/// The band holding `age` years.
fn band_of(age: i32) -> AgeBand {
    AGE_BANDS
        .iter()
        .rev()
        .find(|(_, _, from)| age >= *from && *from != i32::MAX)
        .map_or(AgeBand::Unspecified, |(b, _, _)| *b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::{Identifier, PersonName, VictimProfile};

    fn victim(dob: &str, profile: Option<VictimProfile>) -> Subject {
        Subject {
            role: SubjectRole::PotentialVictim as i32,
            identifiers: vec![Identifier {
                kind: Some(identifier::Kind::Person(PersonName {
                    given_names: "Ana".into(),
                    family_name: "Pop".into(),
                    date_of_birth: dob.into(),
                })),
            }],
            profile,
        }
    }

    #[test]
    fn a_birth_year_alone_names_a_band_only_when_every_reading_agrees() {
        let at = Some((2026, 3, 1));
        let band = |dob: &str| Victim::of(&[victim(dob, None)], at).unwrap().age;
        // Born in 2008: 17 or 18 on 1 March 2026, so no band.
        assert_eq!(band("2008"), AgeBand::Unspecified);
        assert_eq!(band("2008-02-28"), AgeBand::AgeBand1824);
        assert_eq!(band("2008-03-02"), AgeBand::AgeBand017);
        assert_eq!(band("2008-04"), AgeBand::AgeBand017);
        assert_eq!(band("1990"), AgeBand::AgeBand3549);
        assert_eq!(band("1960"), AgeBand::AgeBand50Plus);
        assert_eq!(band("2030"), AgeBand::Unspecified);
        assert_eq!(band("not a date"), AgeBand::Unspecified);
    }

    #[test]
    fn the_profile_wins_and_only_a_potential_victim_counts() {
        let profile = VictimProfile {
            gender: Gender::Female as i32,
            citizenship: "RO".into(),
            age_band: AgeBand::AgeBand2534 as i32,
            recruitment: vec![RecruitmentMethod::JobOffer as i32, 99],
        };
        let mut witness = victim("1990", None);
        witness.role = SubjectRole::Witness as i32;
        let v = Victim::of(
            &[witness.clone(), victim("2008-03-02", Some(profile))],
            None,
        )
        .unwrap();
        assert_eq!(v.age, AgeBand::AgeBand2534);
        assert_eq!(v.citizenship, Some(CountryCode::new("RO").unwrap()));
        assert_eq!(v.recruitment, [RecruitmentMethod::JobOffer]);
        // Female (0) × 25-34 (2).
        assert_eq!(v.column(), 2);
        assert_eq!(columns()[v.column()], "female, 25-34");
        assert_eq!(Victim::of(&[witness], None), None);
    }

    proptest::proptest! {
        /// Whatever the date, the youngest reading is never older than
        /// the oldest, and a full date has one reading.
        #[test]
        fn readings_are_ordered(y in 1850i32..2100, m in 1u32..=12, d in 1u32..=28,
                                ay in 1850i32..2100, am in 1u32..=12, ad in 1u32..=28) {
            let full = format!("{y:04}-{m:02}-{d:02}");
            if let Some((young, old)) = age_range(&full, (ay, am, ad)) {
                proptest::prop_assert_eq!(young, old);
            }
            if let Some((young, old)) = age_range(&format!("{y:04}"), (ay, am, ad)) {
                proptest::prop_assert!(young <= old && old - young <= 1);
            }
        }
    }
}
