//! Person encodings, scheme 2: a person is encoded once per **block** it
//! falls in, and each encoding keeps its fields apart, so that a comparison
//! can weigh the name and the date of birth separately and say which agreed.
//!
//! Why this shape (measured with `benches/linkage/side_by_side.sh`; the
//! figures are in `docs/linkage.md`):
//! - **Several blocks per person.** Scheme 1 salted a person by year of birth
//!   only, so a wrong or missing year never met the right one: that capped
//!   recall at 0.88–0.92 on FEBRL before any threshold. A person is now also
//!   encoded under the sound of each of its name words (Soundex, leading
//!   vowel folded; see [`clk::sound_keys`]), when the sharing policy allows
//!   it for that peer (`person = "fuzzy_wide"`): with those blocks the
//!   ceiling is ~1.0. Each block has its own field keys, so encodings of one
//!   person in two blocks share no bits and cannot be joined across blocks.
//! - **Field-level filters** (Durham et al. 2013): a Bloom filter of the name
//!   alone, and the date of birth as keyed equality tags, instead of one
//!   record-level filter where a date error costs as much as a name error
//!   and no reviewer can tell which field disagreed.
//! - **Dates as agreement levels**, not as a Dice of digits: a year off by
//!   one, day and month swapped, or one of year/month/day mistyped are the
//!   errors of real case files, and each is told apart from "a different
//!   date" by comparing keyed tags of the date's variants (see [`DateTags`]).
//!   Equal tags reveal only what an equal Bloom filter of the date would.
//! - **Names as one bag of bigrams** over every name word, after folding
//!   spellings that transliteration systems disagree on ([`fold`]): swapped
//!   given and family names, names split differently, and Mykola / Nikolai
//!   or Kowalenko / Kovalenko then share most of their bigrams.

use aws_lc_rs::hmac;

use super::clk::{self, CLK_BITS, CLK_WORDS, Clk, dice};
use super::keyring::MatchingKey;
use super::normalize;
use crate::proto::v1::{BlockKind, DateAgreement, DateTags, PersonEncoding};

/// Domain separation of scheme 2; bump on any change to the features.
pub const SCHEME: &[u8] = b"casebridge/person/v2";

/// Length of a keyed block identifier and of one date tag.
pub const BLOCK_BYTES: usize = 16;
pub const TAG_BYTES: usize = 8;

/// Bits set per name bigram, as in scheme 1: a name of ~14 distinct
/// bigrams fills about a fifth of the filter.
const K_NAME: usize = 15;

/// Which blocks a person is encoded in for one peer: year of birth only, or
/// also the sound of each name word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocks {
    BirthYear,
    BirthYearAndNameSound,
}

/// The keyed id of the block of `kind` with `salt` (a year, a sound key).
fn block_key(key: &MatchingKey, kind: BlockKind, salt: &str) -> Vec<u8> {
    key.mac(&[
        SCHEME,
        b"block",
        kind.as_str_name().as_bytes(),
        salt.as_bytes(),
    ])[..BLOCK_BYTES]
        .to_vec()
}

fn field_key(key: &MatchingKey, field: &[u8], kind: BlockKind, salt: &str) -> hmac::Key {
    let derived = key.mac(&[
        SCHEME,
        b"field-key",
        field,
        kind.as_str_name().as_bytes(),
        salt.as_bytes(),
    ]);
    hmac::Key::new(hmac::HMAC_SHA256, &derived)
}

/// Folds spellings that transliteration systems and writers disagree on to
/// one form, on an already normalized (lowercase ASCII) name: `kh`→`h`,
/// `ph`→`f`, `w`→`v`, `y`/`j`→`i`, `c`/`q`/`ck`→`k`, `x`→`ks`, `sch`/`sz`
/// →`sh`, `tch`/`cz`→`ch`, `ou`→`u`, and doubled letters once. Both sides
/// fold alike, so this costs precision only where two different names
/// fold together, which the linkage bench measures.
pub fn fold(name: &str) -> String {
    let mut s = name.to_owned();
    for (from, to) in [
        ("sch", "sh"),
        ("tch", "ch"),
        ("sz", "sh"),
        ("cz", "ch"),
        ("kh", "h"),
        ("ph", "f"),
        ("ck", "k"),
        ("ou", "u"),
        ("ch", "\u{1}"),
        ("sh", "\u{2}"),
    ] {
        s = s.replace(from, to);
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = match c {
            'w' => 'v',
            'y' | 'j' => 'i',
            'c' | 'q' => 'k',
            'x' => {
                out.push('k');
                's'
            }
            // `c` and `x` are free once folded away: they stand for the two
            // digraphs.
            '\u{1}' => 'c',
            '\u{2}' => 'x',
            c => c,
        };
        if out.ends_with(c) && c != ' ' {
            continue;
        }
        out.push(c);
    }
    out
}

/// The name words of a person as they are encoded: normalized (script,
/// diacritics, case, punctuation), folded, given and family names alike.
pub fn name_words(given_names: &str, family_name: &str) -> Vec<String> {
    let full = format!(
        "{} {}",
        normalize::name(given_names),
        normalize::name(family_name)
    );
    fold(&full).split_whitespace().map(str::to_owned).collect()
}

/// The distinct padded bigrams of a person's name words: `maria` →
/// `_m ma ar ri ia a_`. A bag: word order does not matter.
pub fn name_bigrams(given_names: &str, family_name: &str) -> Vec<String> {
    let mut out = clk::bigrams(&name_words(given_names, family_name).join(" "));
    out.sort();
    out.dedup();
    out
}

fn name_filter(key: &hmac::Key, grams: &[String]) -> Clk {
    let mut clk = Clk([0; CLK_WORDS]);
    for g in grams {
        clk::add_feature(&mut clk, key, g.as_bytes(), K_NAME);
    }
    clk
}

/// A normalized date of birth split into its parts; month and day may be
/// unknown (a partial date).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Date {
    year: u32,
    month: Option<u32>,
    day: Option<u32>,
}

impl Date {
    fn parse(raw: &str) -> Option<Self> {
        let d = normalize::date_of_birth(raw).ok()?;
        let part = |r: std::ops::Range<usize>| d.get(r).and_then(|s| s.parse().ok());
        Some(Self {
            year: part(0..4)?,
            month: part(5..7),
            day: part(8..10),
        })
    }
}

/// Keyed tags of a date and of its likely misreadings, under one block's
/// date key. Two records' dates agree at a level when a tag of one equals a
/// tag of the other (see [`agreement`]); the values never travel.
fn date_tags(key: &hmac::Key, d: Option<Date>) -> Option<DateTags> {
    let d = d?;
    let tag = |label: &str, value: String| -> Vec<u8> {
        hmac::sign(key, format!("{label}:{value}").as_bytes()).as_ref()[..TAG_BYTES].to_vec()
    };
    let full = |y: u32, m: u32, day: u32| tag("full", format!("{y:04}-{m:02}-{day:02}"));
    let mut t = DateTags {
        year: tag("y", format!("{:04}", d.year)),
        ..Default::default()
    };
    if let Some(m) = d.month {
        t.year_month = tag("ym", format!("{:04}-{m:02}", d.year));
    }
    if let (Some(m), Some(day)) = (d.month, d.day) {
        t.full = full(d.year, m, day);
        t.previous_year = full(d.year - 1, m, day);
        t.next_year = full(d.year + 1, m, day);
        t.month_day = tag("md", format!("{m:02}-{day:02}"));
        t.year_day = tag("yd", format!("{:04}-{day:02}", d.year));
        if day <= 12 && day != m {
            t.swapped = full(d.year, day, m);
        }
    }
    Some(t)
}

/// Tags in `DateTags` field order, as words, with a bit per tag present.
type Tags = ([u64; 8], u8);

const FULL: usize = 0;
const SWAPPED: usize = 1;
const PREVIOUS_YEAR: usize = 2;
const NEXT_YEAR: usize = 3;
const YEAR_MONTH: usize = 4;
const MONTH_DAY: usize = 5;
const YEAR_DAY: usize = 6;
const YEAR: usize = 7;

/// The tags in field order (the order of [`FULL`] … [`YEAR`]).
fn tag_fields(t: &DateTags) -> [&Vec<u8>; 8] {
    [
        &t.full,
        &t.swapped,
        &t.previous_year,
        &t.next_year,
        &t.year_month,
        &t.month_day,
        &t.year_day,
        &t.year,
    ]
}

/// The tags as words (a tag of another length counts as absent).
fn pack_tags(t: Option<&DateTags>) -> Tags {
    let mut out = ([0u64; 8], 0u8);
    let Some(t) = t else { return out };
    for (i, v) in tag_fields(t).into_iter().enumerate() {
        if let Ok(bytes) = <[u8; TAG_BYTES]>::try_from(v.as_slice()) {
            out.0[i] = u64::from_le_bytes(bytes);
            out.1 |= 1 << i;
        }
    }
    out
}

/// How two dates of birth agree. Levels from the strongest: the same full
/// date; one of the usual misreadings (day and month swapped, or the year
/// off by one); two of year, month and day equal; the same year while one
/// of them is partial; one or both unknown; or different.
fn agreement(a: &Tags, b: &Tags) -> DateAgreement {
    if a.1 == 0 || b.1 == 0 {
        return DateAgreement::Missing;
    }
    let has = |t: &Tags, i: usize| t.1 & (1 << i) != 0;
    let eq = |i: usize, j: usize| has(a, i) && has(b, j) && a.0[i] == b.0[j];
    let partial = !has(a, FULL) || !has(b, FULL);
    if eq(FULL, FULL) {
        DateAgreement::Same
    } else if eq(FULL, SWAPPED)
        || eq(SWAPPED, FULL)
        || eq(FULL, PREVIOUS_YEAR)
        || eq(FULL, NEXT_YEAR)
    {
        DateAgreement::Misread
    } else if eq(YEAR_MONTH, YEAR_MONTH) || eq(MONTH_DAY, MONTH_DAY) || eq(YEAR_DAY, YEAR_DAY) {
        // Two of three parts equal: one mistyped. (With a partial date, the
        // same year and month: as far as both are known, the same.)
        if partial {
            DateAgreement::Partial
        } else {
            DateAgreement::TwoOfThree
        }
    } else if eq(YEAR, YEAR) && partial {
        DateAgreement::Partial
    } else {
        DateAgreement::Different
    }
}

/// What a date agreement adds to a score, in [0, 1], and the name's share
/// of it: chosen by `benches/linkage/weights.py` as the best mean F1 over
/// FEBRL 1-3 and the first generated set (a grid over the name's share and
/// each level's weight), then checked on FEBRL 4 and another generated set
/// it had not seen (figures in `docs/linkage.md`). With them the same name
/// and date score 1.0, the same name with an unknown date 0.75 (possible), a name half
/// alike with the same date 0.75, and a namesake born on another day 0.5.
pub fn date_weight(a: DateAgreement) -> f64 {
    match a {
        DateAgreement::Same => 1.0,
        DateAgreement::Misread => 0.8,
        // The grid found no gain in telling these three apart: each is as
        // likely to be a true pair's error as an unrelated pair's luck.
        DateAgreement::TwoOfThree | DateAgreement::Partial | DateAgreement::Missing => 0.5,
        DateAgreement::Different | DateAgreement::Unspecified => 0.0,
    }
}

/// Share of the name in a score; the date has the rest.
pub const NAME_WEIGHT: f64 = 0.5;

/// The evidence of one comparison of two encodings of the same block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    pub name: f64,
    pub date: DateAgreement,
    pub score: f64,
}

/// A scheme-2 encoding in the form comparisons read: fixed size, on the
/// stack, so that the candidates of a block are compared at memory speed
/// rather than chasing a heap allocation per tag. It is also the value of
/// the encoding's fuzzy index entry ([`Packed::to_bytes`]), read back
/// without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packed {
    kind: BlockKind,
    name: [u64; CLK_WORDS],
    tags: Tags,
}

/// The first byte of a packed encoding, and its length (which is never
/// that of a bare scheme-1 filter).
const PACKED_FORMAT: u8 = 2;
pub const PACKED_BYTES: usize = 3 + CLK_BITS / 8 + 8 * TAG_BYTES;

impl Packed {
    /// The packed form of a well-formed scheme-2 encoding.
    pub fn of(e: &PersonEncoding) -> Option<Self> {
        if !well_formed(e) {
            return None;
        }
        Some(Self {
            kind: BlockKind::try_from(e.kind).ok()?,
            name: Clk::from_bytes(&e.name)?.0,
            tags: pack_tags(e.date.as_ref()),
        })
    }

    pub fn kind(&self) -> BlockKind {
        self.kind
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PACKED_BYTES);
        out.extend_from_slice(&[PACKED_FORMAT, self.kind as u8, self.tags.1]);
        out.extend(self.name.iter().flat_map(|w| w.to_le_bytes()));
        out.extend(self.tags.0.iter().flat_map(|w| w.to_le_bytes()));
        out
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != PACKED_BYTES || b[0] != PACKED_FORMAT {
            return None;
        }
        let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let name_at = 3;
        let tags_at = name_at + CLK_BITS / 8;
        Some(Self {
            kind: BlockKind::try_from(i32::from(b[1])).ok()?,
            name: std::array::from_fn(|i| word(name_at + 8 * i)),
            tags: (std::array::from_fn(|i| word(tags_at + 8 * i)), b[2]),
        })
    }

    /// Compares two encodings of the same block: the Dice similarity of
    /// the name filters, the date agreement of the tags, and the score that
    /// weighs them.
    pub fn compare(&self, other: &Self) -> Comparison {
        let name = dice(&self.name, &other.name);
        let date = agreement(&self.tags, &other.tags);
        Comparison {
            name,
            date,
            score: NAME_WEIGHT * name + (1.0 - NAME_WEIGHT) * date_weight(date),
        }
    }
}

/// Compares two scheme-2 encodings of the same block (see
/// [`Packed::compare`]); `None` when either is not one or is malformed.
pub fn compare(a: &PersonEncoding, b: &PersonEncoding) -> Option<Comparison> {
    Some(Packed::of(a)?.compare(&Packed::of(b)?))
}

/// Whether a scheme-2 encoding is well formed: a block, a name filter of
/// the right size, tags of the right size.
pub fn well_formed(e: &PersonEncoding) -> bool {
    let tags_ok = e.date.as_ref().is_none_or(|t| {
        tag_fields(t)
            .iter()
            .all(|v| v.is_empty() || v.len() == TAG_BYTES)
    });
    e.block.len() == BLOCK_BYTES && e.name.len() == CLK_BITS / 8 && tags_ok
}

/// The encodings of one person under `key`: its birth-year block (the
/// `unknown` block without a date) and, with
/// [`Blocks::BirthYearAndNameSound`], one block per name-word sound.
pub fn encode(
    key: &MatchingKey,
    given_names: &str,
    family_name: &str,
    date_of_birth: &str,
    blocks: Blocks,
) -> Vec<PersonEncoding> {
    let date = Date::parse(date_of_birth);
    let grams = name_bigrams(given_names, family_name);
    let mut salts = vec![(
        BlockKind::BirthYear,
        date.map_or_else(|| "unknown".to_owned(), |d| format!("{:04}", d.year)),
    )];
    if blocks == Blocks::BirthYearAndNameSound {
        salts.extend(
            clk::sound_keys(given_names, family_name)
                .into_iter()
                .map(|k| (BlockKind::NameSound, k)),
        );
    }
    salts
        .into_iter()
        .map(|(kind, salt)| PersonEncoding {
            key_version: key.version,
            block: block_key(key, kind, &salt),
            bloom: Vec::new(),
            kind: kind as i32,
            name: name_filter(&field_key(key, b"name", kind, &salt), &grams).to_bytes(),
            date: date_tags(&field_key(key, b"dob", kind, &salt), date),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::matching::{Band, DEFAULT_LIKELY_THRESHOLD, DEFAULT_POSSIBLE_THRESHOLD};
    use crate::proto::v1::MatchStrength;
    use crate::pseudo::KeyRing;
    use crate::pseudo::keyring::test_ring as ring;

    type Person = (&'static str, &'static str, &'static str);

    /// The best comparison of two persons over the blocks they share, as
    /// matching finds it.
    fn best(ring: &KeyRing, a: Person, b: Person) -> Option<Comparison> {
        let k = ring.key(1).unwrap();
        let wide = Blocks::BirthYearAndNameSound;
        let (ea, eb) = (
            encode(k, a.0, a.1, a.2, wide),
            encode(k, b.0, b.1, b.2, wide),
        );
        ea.iter()
            .flat_map(|x| {
                eb.iter()
                    .filter(|y| y.block == x.block)
                    .map(move |y| (x, y))
            })
            .filter_map(|(x, y)| compare(x, y))
            .max_by(|x, y| x.score.total_cmp(&y.score))
    }

    fn name_similarity(ring: &KeyRing, a: (&str, &str), b: (&str, &str)) -> f64 {
        let k = ring.key(1).unwrap();
        let one = |p: (&str, &str)| encode(k, p.0, p.1, "1990-02-01", Blocks::BirthYear).remove(0);
        compare(&one(a), &one(b)).unwrap().name
    }

    #[test]
    fn folding_joins_transliteration_variants() {
        assert_eq!(fold("kowalenko"), fold("kovalenko"));
        assert_eq!(fold("krawczuk"), fold("kravchuk"));
        assert_eq!(fold("polischuk"), fold("polishuk"));
        assert_eq!(fold("andriy"), fold("andrii"));
        assert_eq!(fold("joana"), fold("ioana"));
        assert_eq!(fold("cristina"), fold("kristina"));
        assert_eq!(fold("stephan"), fold("stefan"));
        assert_eq!(fold("mohammed"), fold("mohamed"));
        assert_ne!(fold("maria"), fold("mario"), "different names stay apart");
    }

    #[test]
    fn dates_agree_at_their_levels() {
        let (_d, ring) = ring();
        let k = ring.key(1).unwrap();
        let tags = |d: &str| {
            let key = field_key(k, b"dob", BlockKind::NameSound, "x");
            date_tags(&key, Date::parse(d))
        };
        let level = |a: &str, b: &str| {
            agreement(&pack_tags(tags(a).as_ref()), &pack_tags(tags(b).as_ref()))
        };
        assert_eq!(level("1990-03-04", "1990-03-04"), DateAgreement::Same);
        assert_eq!(
            level("1990-03-04", "19900304"),
            DateAgreement::Same,
            "written otherwise"
        );
        assert_eq!(
            level("1990-03-04", "1990-04-03"),
            DateAgreement::Misread,
            "day and month swapped"
        );
        assert_eq!(
            level("1990-03-04", "1991-03-04"),
            DateAgreement::Misread,
            "a year later"
        );
        assert_eq!(
            level("1990-03-04", "1989-03-04"),
            DateAgreement::Misread,
            "a year earlier"
        );
        assert_eq!(
            level("1990-03-04", "1990-03-09"),
            DateAgreement::TwoOfThree,
            "day mistyped"
        );
        assert_eq!(
            level("1990-03-04", "1990-08-04"),
            DateAgreement::TwoOfThree,
            "month mistyped"
        );
        assert_eq!(
            level("1990-03-04", "1960-03-04"),
            DateAgreement::TwoOfThree,
            "year mistyped"
        );
        assert_eq!(
            level("1990-03-04", "1990"),
            DateAgreement::Partial,
            "year only"
        );
        assert_eq!(
            level("1990-03-04", "1990-03"),
            DateAgreement::Partial,
            "year and month"
        );
        assert_eq!(level("1990-03-04", ""), DateAgreement::Missing);
        assert_eq!(level("", ""), DateAgreement::Missing);
        assert_eq!(level("1990-03-04", "1985-11-20"), DateAgreement::Different);
        assert_eq!(
            level("1990-03-04", "1991"),
            DateAgreement::Different,
            "another year"
        );
        assert_eq!(level("1990-03-03", "1990-03-03"), DateAgreement::Same);
        assert!(
            tags("1990-03-03").unwrap().swapped.is_empty(),
            "nothing to swap"
        );
        assert!(
            tags("1990-03-25").unwrap().swapped.is_empty(),
            "25 is no month"
        );
    }

    #[test]
    fn the_design_examples_land_where_the_band_says() {
        let band = Band::default();
        for _ in 0..10 {
            let (_d, ring) = ring();
            let strength =
                |a: Person, b: Person| best(&ring, a, b).and_then(|c| band.strength(c.score));
            let likely = Some(MatchStrength::Likely);
            assert_eq!(
                strength(
                    ("Jon", "Smyth", "1990-02-01"),
                    ("John", "Smith", "1990-02-01")
                ),
                likely
            );
            assert_eq!(
                strength(
                    ("Олена", "Коваленко", "1990-03-04"),
                    ("Elena", "Kowalenko", "1990-04-03")
                ),
                likely,
                "Cyrillic and another transliteration, day and month swapped"
            );
            assert_eq!(
                strength(
                    ("Thi Lan", "Nguyen", "1994-07-12"),
                    ("Lan", "Nguyen Thi", "1995-07-12")
                ),
                likely,
                "re-split and a year off: met in a name-sound block"
            );
            assert!(
                strength(
                    ("Stefan", "Popescu", "1988-05-17"),
                    ("Ștefan", "Popescu", "")
                )
                .is_some(),
                "no date on one side: at least possible"
            );
            assert_eq!(
                strength(
                    ("Maria", "Popescu", "1988-05-17"),
                    ("Maria", "Popescu", "1979-10-02")
                ),
                None,
                "a namesake born on another day"
            );
            assert_eq!(
                strength(
                    ("Ioana", "Popescu", "1988-05-17"),
                    ("Vasile", "Popescu", "1991-02-09")
                ),
                None,
                "a sibling"
            );
        }
        const { assert!(DEFAULT_POSSIBLE_THRESHOLD < DEFAULT_LIKELY_THRESHOLD) };
    }

    #[test]
    fn blocks_follow_the_choice_and_do_not_link_across() {
        let (_d, ring) = ring();
        let k = ring.key(1).unwrap();
        let year = encode(k, "Olena", "Kovalenko", "1990-03-04", Blocks::BirthYear);
        assert_eq!(year.len(), 1);
        assert_eq!(year[0].kind, BlockKind::BirthYear as i32);
        let wide = encode(
            k,
            "Olena",
            "Kovalenko",
            "1990-03-04",
            Blocks::BirthYearAndNameSound,
        );
        assert_eq!(wide.len(), 3, "the year and one block per name word");
        assert_eq!(wide[0], year[0], "the year block is the same either way");
        assert!(
            wide.iter()
                .all(|e| crate::matching::encoding_problem(e).is_none())
        );
        for (i, a) in wide.iter().enumerate() {
            for b in &wide[i + 1..] {
                assert_ne!(a.block, b.block);
                let (na, nb) = (
                    Clk::from_bytes(&a.name).unwrap(),
                    Clk::from_bytes(&b.name).unwrap(),
                );
                assert!(
                    dice(&na.0, &nb.0) < 0.5,
                    "one person's filters differ per block"
                );
                assert_ne!(a.date.as_ref().unwrap().full, b.date.as_ref().unwrap().full);
            }
        }
        let no_date = encode(k, "Olena", "Kovalenko", "", Blocks::BirthYear);
        assert!(no_date[0].date.is_none());
        assert_ne!(no_date[0].block, year[0].block, "the unknown-year block");
    }

    #[test]
    fn packed_encodings_round_trip_and_compare_as_the_message_does() {
        let (_d, ring) = ring();
        let k = ring.key(1).unwrap();
        let a = encode(
            k,
            "Olena",
            "Kovalenko",
            "1990-03-04",
            Blocks::BirthYearAndNameSound,
        );
        let b = encode(
            k,
            "Elena",
            "Kowalenko",
            "1990-04-03",
            Blocks::BirthYearAndNameSound,
        );
        let no_date = encode(k, "Olena", "Kovalenko", "", Blocks::BirthYear);
        for e in a.iter().chain(&b).chain(&no_date) {
            let p = Packed::of(e).unwrap();
            let bytes = p.to_bytes();
            assert_eq!(bytes.len(), PACKED_BYTES);
            assert_ne!(
                PACKED_BYTES,
                CLK_BITS / 8,
                "never taken for a scheme-1 filter"
            );
            assert_eq!(Packed::from_bytes(&bytes), Some(p));
        }
        let c = compare(&a[1], &b[1]).unwrap();
        assert_eq!(c.date, DateAgreement::Misread);
        assert!(c.name > 0.8, "{c:?}");
        let mut broken = a[0].clone();
        broken.name.pop();
        assert_eq!(
            compare(&broken, &a[0]),
            None,
            "a malformed filter compares as nothing"
        );
        let mut bytes = Packed::of(&a[0]).unwrap().to_bytes();
        bytes[0] = 9;
        assert_eq!(Packed::from_bytes(&bytes), None, "unknown format");
    }

    fn word() -> impl Strategy<Value = String> {
        "[a-z]{3,9}"
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Word order, the split between given and family names, case and
        /// spacing do not matter.
        #[test]
        fn swapped_resplit_and_respaced_names_encode_alike(a in word(), b in word(), c in word()) {
            let (_d, ring) = ring();
            let given = format!("{a} {b}");
            let s = name_similarity(&ring, (&given, &c), (&c, &format!("{b}  {a}")));
            prop_assert_eq!(s, 1.0);
            let s = name_similarity(&ring, (&given, &c), (&a, &format!("{} {}", c.to_uppercase(), b)));
            prop_assert_eq!(s, 1.0);
        }

        /// A name written in Cyrillic and its Latin transliteration encode
        /// alike (letters with one obvious counterpart).
        #[test]
        fn transliterated_names_encode_alike(a in "[abvgdeziklmnoprstuf]{3,9}", b in "[abvgdeziklmnoprstuf]{3,9}") {
            let (_d, ring) = ring();
            let cyrillic = |w: &str| -> String {
                w.chars().map(|ch| match ch {
                    'a' => 'а', 'b' => 'б', 'v' => 'в', 'g' => 'г', 'd' => 'д', 'e' => 'е',
                    'z' => 'з', 'i' => 'и', 'k' => 'к', 'l' => 'л', 'm' => 'м', 'n' => 'н',
                    'o' => 'о', 'p' => 'п', 'r' => 'р', 's' => 'с', 't' => 'т', 'u' => 'у',
                    _ => 'ф',
                }).collect()
            };
            let s = name_similarity(&ring, (&a, &b), (&cyrillic(&a), &cyrillic(&b)));
            prop_assert!(s >= 0.9, "similarity {s}");
        }

        /// One mistyped letter keeps most of a name.
        #[test]
        fn one_typo_keeps_most_of_the_name(a in "[a-z]{6,9}", b in "[a-z]{6,9}", at in 1usize..5, with in "[a-z]") {
            let (_d, ring) = ring();
            let mut typo: Vec<char> = a.chars().collect();
            typo[at] = with.chars().next().unwrap();
            let typo: String = typo.into_iter().collect();
            let s = name_similarity(&ring, (&a, &b), (&typo, &b));
            prop_assert!(s >= 0.6, "similarity {s} for {a} / {typo}");
        }

        /// Names with no letter in common are far apart.
        #[test]
        fn unrelated_names_are_far_apart(a in "[a-m]{4,9}", b in "[a-m]{4,9}", c in "[n-z]{4,9}", d in "[n-z]{4,9}") {
            let (_d, ring) = ring();
            let s = name_similarity(&ring, (&a, &b), (&c, &d));
            prop_assert!(s < 0.45, "similarity {s}");
        }
    }
}
