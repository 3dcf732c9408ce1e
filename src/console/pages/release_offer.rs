//! What the decision form offers an officer: only the levels and
//! identifier types the `[[disclosure]]` rule allows (from the case's
//! `release_limit`), starting at the least, and the maximum in words.
//! Offering more would only end in a refusal after the officer chose it.

use super::form::Choice;
use crate::console::view::label;
use crate::proto::v1::{IdentifierType, LocationDetail, ReleaseSelection, TimeDetail};

pub struct ReleaseOffer {
    pub locations: Vec<Choice>,
    pub times: Vec<Choice>,
    pub narrative: bool,
    pub indicators: bool,
    pub identifier_types: Vec<Choice>,
    /// "the city, the day, the narrative and, in clear: phone, IBAN".
    pub maximum: String,
}

/// An identifier type as a caseworker names it.
pub fn identifier_words(t: IdentifierType) -> String {
    match t {
        IdentifierType::Email => "E-mail".into(),
        IdentifierType::Iban => "IBAN".into(),
        IdentifierType::AdvertUrl => "Advert URL".into(),
        other => label(other.as_str_name(), "IDENTIFIER_TYPE_"),
    }
}

fn location_words(l: LocationDetail) -> &'static str {
    match l {
        LocationDetail::Country => "the country",
        LocationDetail::Region => "the region",
        LocationDetail::City => "the city",
        _ => "no location",
    }
}

fn time_words(t: TimeDetail) -> &'static str {
    match t {
        TimeDetail::Year => "the year",
        TimeDetail::Month => "the month",
        TimeDetail::Day => "the day",
        _ => "no time",
    }
}

impl ReleaseOffer {
    /// The offer under `limit`; without one (a case recorded before limits
    /// were kept) everything, as the node still checks the decision.
    pub fn new(limit: Option<&ReleaseSelection>) -> Self {
        let all = ReleaseSelection {
            location: LocationDetail::City as i32,
            time: TimeDetail::Day as i32,
            narrative: true,
            indicators: true,
            identifiers: (1..64)
                .filter(|i| IdentifierType::try_from(*i).is_ok())
                .collect(),
        };
        let limit = limit.unwrap_or(&all);
        let locations = (1..=limit.location)
            .filter_map(|i| LocationDetail::try_from(i).ok())
            .map(|l| Choice {
                value: l.as_str_name().to_owned(),
                label: capitalized(location_words(l)),
            })
            .collect();
        let times = (1..=limit.time)
            .filter_map(|i| TimeDetail::try_from(i).ok())
            .map(|t| Choice {
                value: t.as_str_name().to_owned(),
                label: capitalized(time_words(t)),
            })
            .collect();
        let kinds: Vec<IdentifierType> = limit
            .identifiers
            .iter()
            .filter_map(|t| IdentifierType::try_from(*t).ok())
            .filter(|t| *t != IdentifierType::Unspecified)
            .collect();
        Self {
            locations,
            times,
            narrative: limit.narrative,
            indicators: limit.indicators,
            identifier_types: kinds
                .iter()
                .map(|t| Choice {
                    value: t.as_str_name().to_owned(),
                    label: identifier_words(*t),
                })
                .collect(),
            maximum: maximum_words(limit, &kinds),
        }
    }
}

fn maximum_words(limit: &ReleaseSelection, kinds: &[IdentifierType]) -> String {
    let mut parts = vec![
        location_words(limit.location()).to_owned(),
        time_words(limit.time()).to_owned(),
    ];
    if limit.narrative {
        parts.push("the narrative".into());
    }
    if limit.indicators {
        parts.push("the indicators".into());
    }
    let ids = if kinds.is_empty() {
        "no identifier in clear".to_owned()
    } else {
        let names: Vec<String> = kinds.iter().map(|t| identifier_words(*t)).collect();
        format!("in clear: {}", names.join(", "))
    };
    format!("{}; {ids}", parts.join(", "))
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_the_rule_allows_is_offered_from_the_least() {
        let limit = ReleaseSelection {
            location: LocationDetail::Region as i32,
            time: TimeDetail::Month as i32,
            narrative: true,
            indicators: false,
            identifiers: vec![IdentifierType::Phone as i32],
        };
        let offer = ReleaseOffer::new(Some(&limit));
        let values = |c: &[Choice]| c.iter().map(|c| c.value.clone()).collect::<Vec<_>>();
        assert_eq!(
            values(&offer.locations),
            [
                "LOCATION_DETAIL_NONE",
                "LOCATION_DETAIL_COUNTRY",
                "LOCATION_DETAIL_REGION"
            ]
        );
        assert_eq!(
            values(&offer.times),
            ["TIME_DETAIL_NONE", "TIME_DETAIL_YEAR", "TIME_DETAIL_MONTH"]
        );
        assert_eq!(values(&offer.identifier_types), ["IDENTIFIER_TYPE_PHONE"]);
        assert!(offer.narrative && !offer.indicators);
        assert_eq!(
            offer.maximum,
            "the region, the month, the narrative; in clear: Phone"
        );
        assert_eq!(offer.locations[0].label, "No location");
    }
}
