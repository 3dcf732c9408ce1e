//! What each table counts, and how one case becomes one measurement.
//!
//! Every case of a member yields exactly one measurement per table, even
//! when it does not count (another agency's case of the same person does,
//! or it has no cell in the table): then the measurement is the table's
//! *none* value (an extra histogram bucket no one publishes, or a vector
//! of zeros). So the number of reports a member sends says nothing about
//! which of its cases count where, and the VDAF proves of each report
//! that it adds at most one to the table.

use std::collections::BTreeSet;

use crate::ids::{AgencyId, AlertId, CountryCode};
use crate::proto::v1::{Category, Indicator};

use super::plan::TableKind;
use super::victim::{self, RECRUITMENT, Victim};

/// The forms of exploitation, in their column order.
const CATEGORIES: [(Category, &str); 7] = [
    (Category::LabourExploitation, "labour"),
    (Category::SexualExploitation, "sexual"),
    (Category::CriminalExploitation, "criminal"),
    (Category::ChildTrafficking, "child trafficking"),
    (Category::OrganRemoval, "organ removal"),
    (Category::Other, "other"),
    (Category::Unspecified, "not stated"),
];

/// Cluster sizes (alerts in the group), as the rows of the clusters table.
const SIZES: [(usize, &str); 5] = [(2, "2"), (3, "3"), (4, "4"), (5, "5-9"), (10, "10+")];
/// Agencies in a cluster, as its columns.
const AGENCIES: [(usize, &str); 3] = [(2, "2"), (3, "3"), (4, "4+")];

/// One of this node's own cases, as the statistics see it: no identifier,
/// no narrative, only what a table can count.
#[derive(Debug, Clone)]
pub struct Case {
    pub alert: AlertId,
    /// The country of exploitation, if the alert names one.
    pub country: Option<CountryCode>,
    pub category: Category,
    pub indicators: Vec<Indicator>,
    /// Other agencies' alerts this one is linked to by a hit (exact,
    /// likely or confirmed; a pair reviewed as a false positive is not).
    pub linked: Vec<AlertId>,
    /// Its first potential victim, if it names one.
    pub victim: Option<Victim>,
}

/// What one case adds to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Measurement {
    /// One histogram bucket; the last one is *none*.
    Bucket(usize),
    /// A 0/1 vector, any number of ones (the indicators).
    Bits(Vec<bool>),
}

/// The cells of one table: rows × columns, in the order results list them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    pub kind: TableKind,
    pub rows: Vec<String>,
    pub columns: Vec<String>,
}

impl Shape {
    /// The cells of a table of `kind` under a plan naming `countries`.
    pub fn of(kind: TableKind, countries: &[CountryCode]) -> Self {
        let country_rows = || {
            let mut rows: Vec<String> = countries.iter().map(ToString::to_string).collect();
            rows.push("other".into());
            rows.push("not stated".into());
            rows
        };
        let (rows, columns) = match kind {
            TableKind::Exploitation => (
                country_rows(),
                CATEGORIES.iter().map(|(_, n)| (*n).to_owned()).collect(),
            ),
            TableKind::Indicators => (
                indicators().map(|(_, n)| n.to_owned()).collect(),
                vec!["cases".to_owned()],
            ),
            TableKind::CrossAgency => (country_rows(), vec!["cases".to_owned()]),
            TableKind::Victims => (country_rows(), victim::columns()),
            TableKind::Recruitment => (
                RECRUITMENT.iter().map(|(_, n)| (*n).to_owned()).collect(),
                vec!["cases".to_owned()],
            ),
            TableKind::Clusters => (
                SIZES.iter().map(|(_, n)| format!("{n} alerts")).collect(),
                AGENCIES
                    .iter()
                    .map(|(_, n)| format!("{n} agencies"))
                    .collect(),
            ),
        };
        Self {
            kind,
            rows,
            columns,
        }
    }

    /// How many cells are published.
    pub fn cells(&self) -> usize {
        self.rows.len() * self.columns.len()
    }

    /// The length of a measurement: the cells, and for a histogram the
    /// *none* bucket after them.
    pub fn measurement_len(&self) -> usize {
        if self.kind.multi_select() {
            self.cells()
        } else {
            self.cells() + 1
        }
    }

    /// What adds nothing: padding, and a case that does not count.
    pub fn none(&self) -> Measurement {
        if self.kind.multi_select() {
            Measurement::Bits(vec![false; self.cells()])
        } else {
            Measurement::Bucket(self.cells())
        }
    }

    /// What `case` adds. `counted` is the one-victim rule's verdict
    /// ([`represents`]); a case that is not counted adds nothing.
    pub fn measure(&self, case: &Case, counted: bool, countries: &[CountryCode]) -> Measurement {
        if !counted {
            return self.none();
        }
        let row_of_country = |country: Option<CountryCode>| match country {
            None => countries.len() + 1,
            Some(c) => countries.binary_search(&c).unwrap_or(countries.len()),
        };
        let cell = |row: usize, column: usize| row * self.columns.len() + column;
        match self.kind {
            TableKind::Exploitation => {
                let column = CATEGORIES
                    .iter()
                    .position(|(c, _)| *c == case.category)
                    .expect("every category has a column");
                Measurement::Bucket(cell(row_of_country(case.country), column))
            }
            TableKind::Indicators => Measurement::Bits(
                indicators()
                    .map(|(i, _)| case.indicators.contains(&i))
                    .collect(),
            ),
            TableKind::CrossAgency if case.linked.is_empty() => self.none(),
            TableKind::CrossAgency => Measurement::Bucket(cell(row_of_country(case.country), 0)),
            TableKind::Victims => match &case.victim {
                Some(v) => Measurement::Bucket(cell(row_of_country(v.citizenship), v.column())),
                None => self.none(),
            },
            TableKind::Recruitment => match &case.victim {
                Some(v) => Measurement::Bits(
                    RECRUITMENT
                        .iter()
                        .map(|(m, _)| v.recruitment.contains(m))
                        .collect(),
                ),
                None => self.none(),
            },
            TableKind::Clusters => match cluster_cell(case) {
                Some((row, column)) => Measurement::Bucket(cell(row, column)),
                None => self.none(),
            },
        }
    }
}

/// The indicators, in row order, with their names.
fn indicators() -> impl Iterator<Item = (Indicator, &'static str)> {
    (1..=14).filter_map(|v| {
        let i = Indicator::try_from(v).ok()?;
        let name = i.as_str_name().strip_prefix("INDICATOR_")?;
        Some((i, indicator_label(name)))
    })
}

/// A readable name for an indicator's wire name.
fn indicator_label(wire: &str) -> &'static str {
    match wire {
        "ABUSE_OF_VULNERABILITY" => "abuse of vulnerability",
        "DECEPTION" => "deception",
        "RESTRICTION_OF_MOVEMENT" => "restriction of movement",
        "ISOLATION" => "isolation",
        "PHYSICAL_SEXUAL_VIOLENCE" => "physical or sexual violence",
        "INTIMIDATION_THREATS" => "intimidation and threats",
        "RETENTION_OF_IDENTITY_DOCUMENTS" => "retention of identity documents",
        "WITHHOLDING_OF_WAGES" => "withholding of wages",
        "DEBT_BONDAGE" => "debt bondage",
        "ABUSIVE_WORKING_LIVING_CONDITIONS" => "abusive working and living conditions",
        "EXCESSIVE_OVERTIME" => "excessive overtime",
        "RECRUITMENT_FEES" => "recruitment fees",
        "ONLINE_ADVERTISING" => "online advertising",
        _ => "minor involved",
    }
}

/// The clusters table's (row, column) for the group `case` leads: its
/// size counts the case and the alerts linked to it, its agencies their
/// distinct origins. A case linked to nothing is no cluster.
fn cluster_cell(case: &Case) -> Option<(usize, usize)> {
    if case.linked.is_empty() {
        return None;
    }
    let alerts: BTreeSet<&AlertId> = case.linked.iter().chain([&case.alert]).collect();
    let agencies: BTreeSet<&AgencyId> = alerts.iter().map(|a| a.origin()).collect();
    let bucket = |n: usize, bounds: &[(usize, &str)]| {
        bounds.iter().rposition(|(from, _)| n >= *from).unwrap_or(0)
    };
    Some((
        bucket(alerts.len(), &SIZES),
        bucket(agencies.len(), &AGENCIES),
    ))
}

/// The one-victim rule: of cases linked across agencies by a hit, only
/// the one recorded first counts — the alert whose id comes first in
/// [`precedence`] among itself and every alert it is linked to. Both
/// sides of a hit know both ids, so they decide alike without telling
/// each other anything; in a chain a–b–c where b is linked to both and
/// a to c not, a and c may each come first among what they know, and the
/// group counts twice (docs/statistics.md states this bound).
pub fn represents(case: &Case) -> bool {
    let own = precedence(&case.alert);
    case.linked.iter().all(|other| own < precedence(other))
}

/// When an alert was recorded (its v7 uuid, millisecond time first), then
/// its origin: one order every node computes alike.
fn precedence(id: &AlertId) -> (uuid::Uuid, &str) {
    (id.uuid(), id.origin().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(origin: &str, n: u128) -> AlertId {
        format!("{origin}:{}", uuid::Uuid::from_u128(n).hyphenated())
            .parse()
            .unwrap()
    }

    fn case(alert: AlertId, linked: Vec<AlertId>) -> Case {
        Case {
            alert,
            country: Some(CountryCode::new("NL").unwrap()),
            category: Category::LabourExploitation,
            indicators: vec![Indicator::Deception, Indicator::DebtBondage],
            linked,
            victim: None,
        }
    }

    #[test]
    fn of_two_linked_cases_exactly_one_counts_whichever_side_decides() {
        let (a, b) = (id("police", 7), id("ngo", 9));
        let at_police = case(a.clone(), vec![b.clone()]);
        let at_ngo = case(b, vec![a]);
        assert!(represents(&at_police));
        assert!(!represents(&at_ngo));
        // Same time part: the origin decides, the same way on both sides.
        let (c, d) = (id("police", 5), id("ngo", 5));
        assert!(!represents(&case(c.clone(), vec![d.clone()])));
        assert!(represents(&case(d, vec![c])));
    }

    #[test]
    fn a_case_counts_once_per_table_in_its_cell() {
        let nl = CountryCode::new("NL").unwrap();
        let countries = [CountryCode::new("DE").unwrap(), nl];
        let c = case(id("police", 1), vec![id("ngo", 2), id("border", 3)]);
        let shape = Shape::of(TableKind::Exploitation, &countries);
        // Row NL (1), column labour (0), of 7 columns.
        assert_eq!(shape.measure(&c, true, &countries), Measurement::Bucket(7));
        assert_eq!(shape.measure(&c, false, &countries), shape.none());
        let clusters = Shape::of(TableKind::Clusters, &countries);
        // 3 alerts (row 1), 3 agencies (column 1), of 3 columns.
        assert_eq!(
            clusters.measure(&c, true, &countries),
            Measurement::Bucket(4)
        );
        let indicators = Shape::of(TableKind::Indicators, &countries);
        let Measurement::Bits(bits) = indicators.measure(&c, true, &countries) else {
            panic!("indicators are bits")
        };
        let ones: Vec<&str> = (0..bits.len())
            .filter(|i| bits[*i])
            .map(|i| indicators.rows[i].as_str())
            .collect();
        assert_eq!(ones, ["deception", "debt bondage"]);
    }

    #[test]
    fn a_case_counts_its_victim_once_and_a_case_without_one_nowhere() {
        use crate::proto::v1::{AgeBand, Gender, RecruitmentMethod};
        let countries = [CountryCode::new("RO").unwrap()];
        let mut c = case(id("ngo", 1), vec![]);
        let victims = Shape::of(TableKind::Victims, &countries);
        let recruitment = Shape::of(TableKind::Recruitment, &countries);
        for shape in [&victims, &recruitment] {
            assert_eq!(shape.measure(&c, true, &countries), shape.none());
        }
        c.victim = Some(Victim {
            citizenship: Some(countries[0]),
            gender: Gender::Male,
            age: AgeBand::AgeBand017,
            recruitment: vec![RecruitmentMethod::Family, RecruitmentMethod::Abduction],
        });
        // Row RO (0); column male (1) × 0-17 (0) of 6 bands.
        let Measurement::Bucket(b) = victims.measure(&c, true, &countries) else {
            panic!("victims are a histogram")
        };
        assert_eq!((victims.columns.len(), b), (24, 6));
        assert_eq!(victims.columns[b], "male, 0-17");
        let Measurement::Bits(bits) = recruitment.measure(&c, true, &countries) else {
            panic!("recruitment is bits")
        };
        let ones: Vec<&str> = (0..bits.len())
            .filter(|i| bits[*i])
            .map(|i| recruitment.rows[i].as_str())
            .collect();
        assert_eq!(ones, ["family", "abduction"]);
        // Citizenship of no row of its own, and none at all.
        c.victim.as_mut().unwrap().citizenship = Some(CountryCode::new("UA").unwrap());
        assert_eq!(
            victims.measure(&c, true, &countries),
            Measurement::Bucket(24 + 6)
        );
        c.victim.as_mut().unwrap().citizenship = None;
        assert_eq!(
            victims.measure(&c, true, &countries),
            Measurement::Bucket(48 + 6)
        );
        assert_eq!(victims.measure(&c, false, &countries), victims.none());
    }

    #[test]
    fn an_unlinked_case_is_no_cross_agency_case_and_no_cluster() {
        let countries = [CountryCode::new("NL").unwrap()];
        let c = case(id("police", 1), vec![]);
        for kind in [TableKind::CrossAgency, TableKind::Clusters] {
            let shape = Shape::of(kind, &countries);
            assert_eq!(shape.measure(&c, true, &countries), shape.none());
        }
    }
}
