//! proptest strategies for the wire types, shared by the crate's property tests.

use proptest::prelude::*;

use crate::proto::v1::{
    AdvertUrl, AlertContent, AlertDraft, CryptoWallet, Email, Iban, Identifier, IdentityDocument,
    Location, OnlineHandle, PersonName, Phone, Subject, TimeWindow, VehiclePlate, VictimProfile,
    identifier::Kind,
};
use pbjson_types::Timestamp;

/// Enum values: known ones, and with `unknown` sometimes values no build knows.
fn enum_value(max: i32, unknown: bool) -> impl Strategy<Value = i32> {
    prop_oneof![8 => 0..=max, if unknown { 1 } else { 0 } => any::<i32>()]
}

fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::string::string_regex(&format!("[A-Za-z0-9 .+@:/-]{{0,{max}}}")).unwrap(),
        1 => proptest::string::string_regex(&format!("\\PC{{0,{max}}}")).unwrap(),
    ]
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (0i64..4_102_444_800, 0i32..1_000_000_000)
        .prop_map(|(seconds, nanos)| Timestamp { seconds, nanos })
}

fn country() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("NL".to_string()),
        Just("RO".to_string()),
        Just("BE".to_string()),
        Just(String::new()),
        "[A-Za-z]{0,3}",
    ]
}

fn identifier(unknown: bool) -> impl Strategy<Value = Identifier> {
    let kind = prop_oneof![
        (text(20), country()).prop_map(|(number, region)| Kind::Phone(Phone { number, region })),
        text(30).prop_map(|address| Kind::Email(Email { address })),
        (
            text(20),
            text(20),
            prop_oneof![
                Just("1990-02-01".to_string()),
                Just("1990".to_string()),
                text(10)
            ]
        )
            .prop_map(|(given_names, family_name, date_of_birth)| Kind::Person(
                PersonName {
                    given_names,
                    family_name,
                    date_of_birth
                }
            )),
        (enum_value(3, unknown), text(12), country()).prop_map(
            |(r#type, number, issuing_country)| {
                Kind::Document(IdentityDocument {
                    r#type,
                    number,
                    issuing_country,
                })
            }
        ),
        text(34).prop_map(|iban| Kind::Iban(Iban { iban })),
        (text(10), text(40))
            .prop_map(|(chain, address)| Kind::CryptoWallet(CryptoWallet { chain, address })),
        (text(10), text(20))
            .prop_map(|(platform, handle)| Kind::OnlineHandle(OnlineHandle { platform, handle })),
        (country(), text(10))
            .prop_map(|(country, plate)| Kind::VehiclePlate(VehiclePlate { country, plate })),
        text(60).prop_map(|url| Kind::AdvertUrl(AdvertUrl { url })),
    ];
    proptest::option::weighted(0.95, kind).prop_map(|kind| Identifier { kind })
}

pub fn content(unknown: bool) -> impl Strategy<Value = AlertContent> {
    (
        (
            enum_value(6, unknown),
            proptest::collection::vec(enum_value(14, unknown), 0..4),
            enum_value(4, unknown),
            enum_value(4, unknown),
        ),
        proptest::option::of((country(), text(20), text(20)).prop_map(
            |(country, region, city)| Location {
                country,
                region,
                city,
            },
        )),
        proptest::option::of(
            (
                proptest::option::of(timestamp()),
                proptest::option::of(timestamp()),
            )
                .prop_map(|(start, end)| TimeWindow { start, end }),
        ),
        text(200),
        (
            enum_value(5, unknown),
            enum_value(4, unknown),
            enum_value(6, unknown),
            enum_value(6, unknown),
        ),
        proptest::option::of(timestamp()),
    )
        .prop_map(
            |(
                (category, indicators, severity, confidence),
                location,
                time_window,
                narrative,
                (tlp, handling_code, source_reliability, information_accuracy),
                retention_until,
            )| AlertContent {
                category,
                indicators,
                severity,
                confidence,
                location,
                time_window,
                narrative,
                tlp,
                handling_code,
                source_reliability,
                information_accuracy,
                retention_until,
            },
        )
}

/// Victim profiles, recruitment lists sometimes repeating a method.
fn profile(unknown: bool) -> impl Strategy<Value = VictimProfile> {
    (
        enum_value(3, unknown),
        country(),
        enum_value(5, unknown),
        proptest::collection::vec(enum_value(9, unknown), 0..12),
    )
        .prop_map(
            |(gender, citizenship, age_band, recruitment)| VictimProfile {
                gender,
                citizenship,
                age_band,
                recruitment,
            },
        )
}

/// Drafts as a client might send them; with `unknown`, enum values outside
/// the schema occur too.
pub fn draft(unknown: bool) -> impl Strategy<Value = AlertDraft> {
    (
        proptest::option::weighted(0.95, content(unknown)),
        proptest::collection::vec(
            (
                enum_value(4, unknown),
                proptest::collection::vec(identifier(unknown), 0..4),
                proptest::option::weighted(0.3, profile(unknown)),
            )
                .prop_map(|(role, identifiers, profile)| Subject {
                    role,
                    identifiers,
                    profile,
                }),
            0..4,
        ),
    )
        .prop_map(|(content, subjects)| AlertDraft {
            content,
            subjects,
            ..Default::default()
        })
}
