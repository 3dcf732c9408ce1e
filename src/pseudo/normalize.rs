//! Normalization per identifier type: the same thing written two ways must
//! give the same string (and so the same token). Each rule is documented here
//! because every node in a federation must apply exactly the same one.

use std::str::FromStr;

use thiserror::Error;
use unicode_normalization::UnicodeNormalization;

use crate::ids::CountryCode;
use crate::proto::v1::{DocumentType, IdentifierType, identifier::Kind};

/// An identifier that cannot be normalized. `field` is relative to the
/// identifier (e.g. `phone.number`) so callers can prefix their own path.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{field}: {reason}")]
pub struct NormalizeError {
    pub field: &'static str,
    pub reason: String,
}

fn err(field: &'static str, reason: impl Into<String>) -> NormalizeError {
    NormalizeError {
        field,
        reason: reason.into(),
    }
}

/// A normalized identifier: its type and canonical string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Normalized {
    pub kind: IdentifierType,
    pub value: String,
}

/// Phone numbers: parsed with libphonenumber's metadata, using the
/// identifier's `region`, else `default_region`, for numbers written without
/// a country code; must be a valid number; written as E.164 (`+31612345678`).
pub fn phone(
    number: &str,
    region: &str,
    default_region: Option<&str>,
) -> Result<String, NormalizeError> {
    let region = if region.is_empty() {
        default_region
    } else {
        Some(region)
    };
    let country = match region {
        Some(r) => Some(phonenumber::country::Id::from_str(r).map_err(|_| {
            err(
                "phone.region",
                format!("`{r}` is not a region libphonenumber knows"),
            )
        })?),
        None => None,
    };
    let parsed = phonenumber::parse(country, number.trim()).map_err(|e| {
        let hint = if country.is_none() && !number.trim_start().starts_with('+') {
            " (no country code and no region: add +<code> or set phone.region)"
        } else {
            ""
        };
        err("phone.number", format!("not a phone number: {e}{hint}"))
    })?;
    if !phonenumber::is_valid(&parsed) {
        return Err(err("phone.number", "not a valid number for its region"));
    }
    Ok(parsed.format().mode(phonenumber::Mode::E164).to_string())
}

/// E-mail addresses: trimmed; the domain is converted with IDNA (UTS 46) to
/// lower-case ASCII and loses a trailing dot; the local part is lower-cased
/// (virtually every provider treats it case-insensitively, although RFC 5321
/// allows otherwise) and a `+tag` sub-address is removed, because traffickers
/// reuse one mailbox under many tags. Dots in the local part are kept: that
/// equivalence is provider-specific.
pub fn email(address: &str) -> Result<String, NormalizeError> {
    let address = address.trim();
    let (local, domain) = address
        .rsplit_once('@')
        .ok_or_else(|| err("email.address", "has no '@'"))?;
    let local = local.split('+').next().unwrap_or("").to_lowercase();
    if local.is_empty() || local.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err(
            "email.address",
            "the part before '@' is empty or has spaces",
        ));
    }
    let domain = idna::domain_to_ascii(domain.trim_end_matches('.'))
        .map_err(|_| err("email.address", "the domain is not a valid domain name"))?;
    // IDNA may map characters to nothing, so check the result, not the input.
    let domain = domain.trim_end_matches('.').to_owned();
    if domain.split('.').count() < 2 || domain.split('.').any(str::is_empty) {
        return Err(err(
            "email.address",
            "the domain must be a full domain name",
        ));
    }
    Ok(format!("{local}@{domain}"))
}

/// Names: Unicode NFKC, transliterated to ASCII (`Łukasz` → `lukasz`,
/// `Мария` → `mariia`), lower-cased, anything but letters turned into
/// spaces, repeated spaces collapsed. Hyphens and apostrophes become spaces so
/// `Jean-Luc` = `Jean Luc`.
pub fn name(raw: &str) -> String {
    let nfkc: String = raw.nfkc().collect();
    let ascii = deunicode::deunicode(&nfkc).to_ascii_lowercase();
    let letters: String = ascii
        .chars()
        .map(|c| if c.is_ascii_lowercase() { c } else { ' ' })
        .collect();
    letters.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a date of birth may look like; the one message for every bad one.
pub const DATE_OF_BIRTH_RULE: &str = "must be an ISO 8601 date, possibly partial: YYYY, YYYY-MM, \
     YYYY-MM-DD or YYYYMMDD (months and days may have one digit), a real calendar date with a \
     year from 1850 to 2200";

/// Dates of birth: ISO 8601, possibly partial (`1990`, `1990-02`,
/// `1990-02-01`, or the basic form `19900201`), surrounding spaces ignored;
/// single-digit months and days are padded; the date must exist. The one
/// rule for the API's validation, tokens and the CLI.
pub fn date_of_birth(raw: &str) -> Result<String, NormalizeError> {
    let bad = || err("person.date_of_birth", DATE_OF_BIRTH_RULE);
    let raw = raw.trim();
    // The basic form: eight digits, YYYYMMDD.
    let basic;
    let raw = if raw.len() == 8 && raw.bytes().all(|b| b.is_ascii_digit()) {
        basic = format!("{}-{}-{}", &raw[..4], &raw[4..6], &raw[6..]);
        basic.as_str()
    } else {
        raw
    };
    let parts: Vec<&str> = raw.split('-').collect();
    let num = |s: &str, max_len: usize| -> Result<u32, NormalizeError> {
        if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let year = num(parts[0], 4)?;
    if parts[0].len() != 4 || !(1850..=2200).contains(&year) {
        return Err(bad());
    }
    match parts.as_slice() {
        [_] => Ok(format!("{year:04}")),
        [_, m] => {
            let m = num(m, 2)?;
            if !(1..=12).contains(&m) {
                return Err(bad());
            }
            Ok(format!("{year:04}-{m:02}"))
        }
        [_, m, d] => {
            let (m, d) = (num(m, 2)?, num(d, 2)?);
            let month =
                time::Month::try_from(u8::try_from(m).map_err(|_| bad())?).map_err(|_| bad())?;
            time::Date::from_calendar_date(year as i32, month, u8::try_from(d).map_err(|_| bad())?)
                .map_err(|_| bad())?;
            Ok(format!("{year:04}-{m:02}-{d:02}"))
        }
        _ => Err(bad()),
    }
}

/// Upper-case ASCII letters and digits only (documents, plates).
fn alphanumeric_upper(raw: &str) -> String {
    deunicode::deunicode(raw)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn country(field: &'static str, raw: &str) -> Result<String, NormalizeError> {
    let c = raw.trim().to_ascii_uppercase();
    if !CountryCode::is_valid(&c) {
        return Err(err(
            field,
            format!("`{raw}` is not an ISO 3166-1 alpha-2 country code"),
        ));
    }
    Ok(c)
}

/// IBAN: whitespace removed, upper-cased, checked against the country's
/// structure and the mod-97 check digits; the electronic format.
pub fn iban(raw: &str) -> Result<String, NormalizeError> {
    let compact: String = raw
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let parsed = iban::Iban::from_str(&compact)
        .map_err(|e| err("iban.iban", format!("not a valid IBAN: {e}")))?;
    Ok(iban::IbanLike::electronic_str(&parsed).to_owned())
}

/// Chains whose addresses are case-insensitive and conventionally compared
/// in lower case (hex for EVM chains, bech32 for segwit). Everything else
/// (base58: legacy bitcoin, tron, solana; monero) is case-sensitive.
fn wallet_address(chain: &str, address: &str) -> String {
    let address = address.trim();
    let evm = matches!(
        chain,
        "ethereum" | "bsc" | "polygon" | "arbitrum" | "optimism" | "base" | "avalanche"
    );
    let bech32 = address.len() > 3 && {
        let lower = address.to_ascii_lowercase();
        lower.starts_with("bc1") || lower.starts_with("ltc1") || lower.starts_with("tb1")
    };
    if evm || bech32 {
        address.to_ascii_lowercase()
    } else {
        address.to_owned()
    }
}

/// Tracking parameters removed from advert URLs.
fn is_tracking_param(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.starts_with("utm_")
        || matches!(
            k.as_str(),
            "fbclid"
                | "gclid"
                | "dclid"
                | "msclkid"
                | "mc_eid"
                | "igshid"
                | "yclid"
                | "_ga"
                | "ref_src"
        )
}

/// Advert URLs: parsed as WHATWG URLs (scheme and host lower-cased, IDNA
/// host, default port dropped, path dot-segments resolved), http(s) only, no
/// fragment, no user info, tracking parameters removed, other parameters kept
/// in order.
pub fn advert_url(raw: &str) -> Result<String, NormalizeError> {
    let mut url = url::Url::parse(raw.trim())
        .map_err(|e| err("advert_url.url", format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(err(
            "advert_url.url",
            "only http and https URLs are accepted",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(err("advert_url.url", "has no host"));
    }
    url.set_fragment(None);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !is_tracking_param(k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok(url.to_string())
}

/// Normalizes one identifier. Person identifiers yield `None` without a date
/// of birth: a bare name is too common to be an exact match key (it still
/// takes part in fuzzy matching).
pub fn normalize(
    kind: &Kind,
    default_region: Option<&str>,
) -> Result<Option<Normalized>, NormalizeError> {
    let (kind_type, value) = match kind {
        Kind::Phone(p) => (
            IdentifierType::Phone,
            phone(&p.number, &p.region, default_region)?,
        ),
        Kind::Email(e) => (IdentifierType::Email, email(&e.address)?),
        Kind::Person(p) => {
            let given = name(&p.given_names);
            let family = name(&p.family_name);
            if given.is_empty() && family.is_empty() {
                return Err(err("person", "the name has no letters"));
            }
            if p.date_of_birth.trim().is_empty() {
                return Ok(None);
            }
            let dob = date_of_birth(&p.date_of_birth)?;
            (IdentifierType::Person, format!("{given}|{family}|{dob}"))
        }
        Kind::Document(d) => {
            let t = DocumentType::try_from(d.r#type)
                .ok()
                .filter(|t| *t != DocumentType::Unspecified)
                .ok_or_else(|| err("document.type", "is required"))?;
            let number = alphanumeric_upper(&d.number);
            if number.is_empty() {
                return Err(err("document.number", "has no letters or digits"));
            }
            let c = country("document.issuing_country", &d.issuing_country)?;
            (
                IdentifierType::Document,
                format!("{}|{c}|{number}", t.as_str_name()),
            )
        }
        Kind::Iban(i) => (IdentifierType::Iban, iban(&i.iban)?),
        Kind::CryptoWallet(w) => {
            let chain = w.chain.trim().to_ascii_lowercase();
            if chain.is_empty() {
                return Err(err("crypto_wallet.chain", "is required"));
            }
            let address = wallet_address(&chain, &w.address);
            if address.is_empty() {
                return Err(err("crypto_wallet.address", "is required"));
            }
            (IdentifierType::CryptoWallet, format!("{chain}|{address}"))
        }
        Kind::OnlineHandle(h) => {
            let platform = h.platform.trim().to_lowercase();
            let handle = h.handle.trim().trim_start_matches('@').to_lowercase();
            if platform.is_empty() {
                return Err(err("online_handle.platform", "is required"));
            }
            if handle.is_empty() {
                return Err(err("online_handle.handle", "is required"));
            }
            (IdentifierType::OnlineHandle, format!("{platform}|{handle}"))
        }
        Kind::VehiclePlate(v) => {
            let c = country("vehicle_plate.country", &v.country)?;
            let plate = alphanumeric_upper(&v.plate);
            if plate.is_empty() {
                return Err(err("vehicle_plate.plate", "has no letters or digits"));
            }
            (IdentifierType::VehiclePlate, format!("{c}|{plate}"))
        }
        Kind::AdvertUrl(u) => (IdentifierType::AdvertUrl, advert_url(&u.url)?),
    };
    Ok(Some(Normalized {
        kind: kind_type,
        value,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn phones_in_any_format_reach_e164() {
        for (raw, region) in [
            ("+31 6 1234 5678", ""),
            ("06-12345678", "NL"),
            ("0031612345678", "NL"),
            ("(06) 123 456 78", "NL"),
            ("+31 (0)6 12 34 56 78", ""),
        ] {
            assert_eq!(phone(raw, region, None).unwrap(), "+31612345678", "{raw}");
        }
        assert_eq!(
            phone("06-12345678", "", Some("NL")).unwrap(),
            "+31612345678"
        );
        assert!(phone("12345", "NL", None).is_err());
        assert!(
            phone("06-12345678", "", None)
                .unwrap_err()
                .reason
                .contains("region")
        );
        assert_eq!(phone("1", "QQ", None).unwrap_err().field, "phone.region");
    }

    #[test]
    fn emails() {
        assert_eq!(
            email("  Jobs.Abroad+nl@Example.ORG. ").unwrap(),
            "jobs.abroad@example.org"
        );
        assert_eq!(email("anna@bücher.de").unwrap(), "anna@xn--bcher-kva.de");
        assert!(email("no-at-sign").is_err());
        assert!(email("+tag@example.org").is_err());
        assert!(email("x@localhost").is_err());
    }

    #[test]
    fn names_fold_scripts_case_and_punctuation() {
        assert_eq!(name("  Jean-Luc  O'Brien "), "jean luc o brien");
        assert_eq!(name("ŁUKASZ Żółć"), "lukasz zolc");
        assert_eq!(name("Ｍａｒｉａ"), "maria");
        assert_eq!(name("Мария"), name("Mariia"));
    }

    #[test]
    fn dates_of_birth() {
        assert_eq!(date_of_birth("1990-2-1").unwrap(), "1990-02-01");
        assert_eq!(date_of_birth("1990-02").unwrap(), "1990-02");
        assert_eq!(date_of_birth("1990").unwrap(), "1990");
        assert_eq!(date_of_birth("19560909").unwrap(), "1956-09-09");
        assert_eq!(date_of_birth(" 1956-09-09 ").unwrap(), "1956-09-09");
        assert_eq!(date_of_birth("1956-9-9").unwrap(), "1956-09-09");
        for bad in [
            "1990-02-30",
            "19900230",
            "90-02-01",
            "1990-13",
            "1990/02/01",
            "",
            "1700",
            "2201",
            "199002",
            "1990-02-01T00:00",
        ] {
            assert!(date_of_birth(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ibans_are_checked_and_compacted() {
        assert_eq!(
            iban("nl91 abna 0417 1643 00").unwrap(),
            "NL91ABNA0417164300"
        );
        assert!(iban("NL92ABNA0417164300").is_err(), "bad check digits");
    }

    #[test]
    fn urls_lose_tracking_and_defaults() {
        assert_eq!(
            advert_url("HTTPS://Ads.Example.COM:443/a/../offer?id=7&utm_source=x&fbclid=y#top")
                .unwrap(),
            "https://ads.example.com/offer?id=7"
        );
        assert!(advert_url("ftp://example.com/x").is_err());
        assert!(advert_url("not a url").is_err());
    }

    #[test]
    fn wallets_follow_their_chain_case_rule() {
        let k = |chain: &str, address: &str| {
            normalize(
                &Kind::CryptoWallet(crate::proto::v1::CryptoWallet {
                    chain: chain.into(),
                    address: address.into(),
                }),
                None,
            )
            .unwrap()
            .unwrap()
            .value
        };
        assert_eq!(k("Ethereum", "0xAbC1"), k("ethereum", "0xabc1"));
        assert_ne!(
            k("tron", "TXyZ"),
            k("tron", "txyz"),
            "base58 is case-sensitive"
        );
    }

    fn phone_variants() -> impl Strategy<Value = (String, String)> {
        // A valid Dutch mobile number (06-1… to 06-5…), and the same number
        // in another spelling.
        (10_000_000u32..59_999_999, 0usize..4).prop_map(|(n, style)| {
            let digits = format!("6{n:08}");
            let variant = match style {
                0 => format!("+31 {} {}", &digits[..1], &digits[1..]),
                1 => format!("0{}-{}", &digits[..1], &digits[1..]),
                2 => format!("0031{digits}"),
                _ => format!("+31 (0){} {} {}", &digits[..1], &digits[1..5], &digits[5..]),
            };
            (format!("+31{digits}"), variant)
        })
    }

    proptest! {
        #[test]
        fn phone_spellings_agree((canonical, variant) in phone_variants()) {
            prop_assert_eq!(phone(&variant, "NL", None).unwrap(), canonical);
        }

        #[test]
        fn normalization_is_idempotent(s in "\\PC{0,40}") {
            let n = name(&s);
            prop_assert_eq!(name(&n), n.clone());
            if let Ok(e) = email(&s) {
                prop_assert_eq!(email(&e).unwrap(), e);
            }
            if let Ok(u) = advert_url(&s) {
                prop_assert_eq!(advert_url(&u).unwrap(), u);
            }
            if let Ok(d) = date_of_birth(&s) {
                prop_assert_eq!(date_of_birth(&d).unwrap(), d);
            }
        }

        #[test]
        fn email_case_and_tags_do_not_matter(local in "[a-z][a-z0-9.]{0,10}", tag in "[a-z0-9]{0,6}", domain in "[a-z]{1,10}\\.(org|com|nl)") {
            let plain = email(&format!("{local}@{domain}")).unwrap();
            let tagged = email(&format!(" {}+{tag}@{} ", local.to_uppercase(), domain.to_uppercase())).unwrap();
            prop_assert_eq!(plain, tagged);
        }

        #[test]
        fn iban_spacing_and_case_do_not_matter(groups in proptest::collection::vec("[0-9]{4}", 2..3)) {
            // Build a German IBAN (DE + 2 check digits + 18 digits) with correct check digits.
            let bban: String = format!("{}{}", groups.concat(), "0".repeat(18 - groups.concat().len()));
            let check = 98 - mod97(&format!("{bban}131400"));
            let electronic = format!("DE{check:02}{bban}");
            let printed: String = electronic.chars().collect::<Vec<_>>().chunks(4).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join(" ").to_lowercase();
            prop_assert_eq!(iban(&printed).unwrap(), iban(&electronic).unwrap());
        }
    }

    fn mod97(digits: &str) -> u32 {
        digits
            .bytes()
            .fold(0u32, |acc, b| (acc * 10 + u32::from(b - b'0')) % 97)
    }
}
