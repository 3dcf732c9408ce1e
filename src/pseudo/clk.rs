//! Keyed Bloom filters (cryptographic long-term keys, CLK, after Schnell et
//! al.) compared by Dice similarity: the filters beneath scheme-2 person
//! encodings (`pseudo::person`), and scheme 1 itself ([`encode`]: one
//! record-level filter of name + date of birth, blocked by year of birth),
//! which nodes used before scheme 2; it stays for comparing encodings a
//! store or a peer of an older version still holds, and as the baseline of
//! the linkage bench. The hardening below holds for both.
//!
//! Hardening against the published frequency and graph-matching attacks on
//! Bloom-filter encodings, and why:
//! - **Secret keys per field.** Every feature position comes from
//!   HMAC-SHA256 under a key derived from the federation's matching key, the
//!   field name and the salt: without the key nothing can be recomputed, and
//!   the name and date fields do not share hash functions.
//! - **Random hashing, not double hashing.** Each feature's k positions are
//!   independent 10-bit slices of its HMAC output; the double-hashing scheme of
//!   the original CLK proposal has a known pattern-mining attack.
//! - **Salting by year of birth.** The field keys also depend on the year, so
//!   equal names born in different years set unrelated bits: frequency
//!   analysis must work within one birth-year block, where counts are small,
//!   and the filters of different blocks cannot be aligned into one graph.
//!   The price: a wrong year of birth is never matched fuzzily. Records
//!   without a year share one "unknown" block.
//! - **Names as one bag of bigrams**, so swapped given/family names still match.
//!
//! The encoding is 1024 bits: [`Clk`] is 16 `u64` words, and [`dice`] counts
//! bits with the best popcount the CPU has (chosen at run time).

use aws_lc_rs::hmac;

use super::keyring::MatchingKey;
use super::normalize;

pub const CLK_BITS: usize = 1024;
pub const CLK_WORDS: usize = CLK_BITS / 64;
/// Domain separation of the encoding; bump on any change to features or k.
pub const CLK_SCHEME: &[u8] = b"casebridge/clk/v1";

/// The single Dice threshold nodes used with scheme 1 (best F1 on the
/// synthetic data of its time): the figure the linkage bench compares with.
pub const SCHEME1_THRESHOLD: f64 = 0.75;

/// Bits set per name bigram and per date feature. Chosen so that a typical
/// name + date fills roughly a quarter of the filter (see `linkage` bench).
const K_NAME: usize = 15;
const K_DATE: usize = 16;

/// A 1024-bit encoding.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Clk(pub [u64; CLK_WORDS]);

impl Clk {
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != CLK_BITS / 8 {
            return None;
        }
        let mut words = [0u64; CLK_WORDS];
        for (w, chunk) in words.iter_mut().zip(b.chunks_exact(8)) {
            *w = u64::from_le_bytes(chunk.try_into().ok()?);
        }
        Some(Self(words))
    }

    pub fn ones(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }

    fn set(&mut self, bit: usize) {
        self.0[bit / 64] |= 1 << (bit % 64);
    }
}

/// Dice coefficient 2|A∩B| / (|A| + |B|), in [0, 1]; 0 for two empty filters.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512vpopcntdq",
    "x86_64+avx2+popcnt",
    "x86_64+popcnt",
    "aarch64+neon"
))]
pub fn dice(a: &[u64; CLK_WORDS], b: &[u64; CLK_WORDS]) -> f64 {
    let mut both = 0u32;
    let mut total = 0u32;
    for i in 0..CLK_WORDS {
        both += (a[i] & b[i]).count_ones();
        total += a[i].count_ones() + b[i].count_ones();
    }
    if total == 0 {
        0.0
    } else {
        f64::from(2 * both) / f64::from(total)
    }
}

/// The blocking salt of a person: the year of birth, or `unknown`.
pub fn salt(date_of_birth: &str) -> String {
    normalize::date_of_birth(date_of_birth)
        .ok()
        .map_or_else(|| "unknown".to_owned(), |d| d[..4].to_owned())
}

fn field_key(key: &MatchingKey, field: &[u8], salt: &str) -> hmac::Key {
    let derived = key.mac(&[CLK_SCHEME, b"field-key", field, salt.as_bytes()]);
    hmac::Key::new(hmac::HMAC_SHA256, &derived)
}

pub(super) fn add_feature(clk: &mut Clk, key: &hmac::Key, feature: &[u8], k: usize) {
    let mac = hmac::sign(key, feature);
    // 32 bytes = 16 independent 16-bit values; 1024 = 2^10, so `% CLK_BITS`
    // keeps them uniform.
    for pair in mac.as_ref().chunks_exact(2).take(k) {
        let v = u16::from_le_bytes([pair[0], pair[1]]) as usize;
        clk.set(v % CLK_BITS);
    }
}

/// Padded bigrams of each word: `maria` → `_m ma ar ri ia a_`.
pub(super) fn bigrams(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in name.split_whitespace() {
        let padded: Vec<char> = std::iter::once('_')
            .chain(word.chars())
            .chain(std::iter::once('_'))
            .collect();
        for w in padded.windows(2) {
            out.push(w.iter().collect());
        }
    }
    out
}

/// The name part of a filter: padded bigrams of the normalized full name,
/// under the field key of `salt`.
fn add_name(clk: &mut Clk, key: &MatchingKey, salt: &str, given_names: &str, family_name: &str) {
    let names = field_key(key, b"name", salt);
    let full = format!(
        "{} {}",
        normalize::name(given_names),
        normalize::name(family_name)
    );
    let mut grams = bigrams(&full);
    grams.sort();
    grams.dedup();
    for g in grams {
        add_feature(clk, &names, g.as_bytes(), K_NAME);
    }
}

/// How many name words give a name-sound block, at most.
pub const MAX_SOUND_BLOCKS: usize = 4;

/// The sound keys of a person's name words: the Soundex code of each
/// word of three letters or more, with a leading vowel folded to `*` so
/// that transliterations that differ in it (Olena / Elena) share a key;
/// distinct, at most [`MAX_SOUND_BLOCKS`], in a fixed order. Given and
/// family names count alike, so swapped or re-split names share keys too.
pub fn sound_keys(given_names: &str, family_name: &str) -> Vec<String> {
    use rphonetic::{Encoder, Soundex};
    let soundex = Soundex::default();
    let mut keys: Vec<String> = format!(
        "{} {}",
        normalize::name(given_names),
        normalize::name(family_name)
    )
    .split_whitespace()
    .filter(|w| w.chars().filter(char::is_ascii_alphabetic).count() >= 3)
    .map(|w| {
        let code = soundex.encode(w);
        match code.chars().next() {
            Some(c) if "AEIOUY".contains(c) => format!("*{}", &code[1..]),
            _ => code,
        }
    })
    .filter(|c| c.len() > 1)
    .collect();
    keys.sort();
    keys.dedup();
    keys.truncate(MAX_SOUND_BLOCKS);
    keys
}

/// Encodes a person. Names are normalized as for exact tokens; the date of
/// birth contributes its month and day digits by position (the year is the
/// salt). Returns the salt and the filter.
pub fn encode(
    key: &MatchingKey,
    given_names: &str,
    family_name: &str,
    date_of_birth: &str,
) -> (String, Clk) {
    let salt = salt(date_of_birth);
    let mut clk = Clk([0; CLK_WORDS]);
    add_name(&mut clk, key, &salt, given_names, family_name);
    if let Ok(dob) = normalize::date_of_birth(date_of_birth) {
        let date = field_key(key, b"dob", &salt);
        // "YYYY-MM-DD": month and day digits by position (one mistyped digit
        // keeps the others), plus month, day and month-day as wholes, so an
        // identical date weighs about as much as a short name.
        for (pos, c) in dob.char_indices().filter(|(i, _)| *i >= 5 && *i != 7) {
            add_feature(&mut clk, &date, format!("{pos}:{c}").as_bytes(), K_DATE);
        }
        if let Some(month) = dob.get(5..7) {
            add_feature(&mut clk, &date, format!("m:{month}").as_bytes(), K_DATE);
        }
        if let Some(day) = dob.get(8..10) {
            add_feature(&mut clk, &date, format!("d:{day}").as_bytes(), K_DATE);
            add_feature(
                &mut clk,
                &date,
                format!("md:{}", &dob[5..10]).as_bytes(),
                K_DATE,
            );
        }
    }
    (salt, clk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pseudo::KeyRing;
    use crate::pseudo::keyring::test_ring as key;

    fn sim(ring: &KeyRing, a: (&str, &str, &str), b: (&str, &str, &str)) -> f64 {
        let k = ring.key(1).unwrap();
        let (sa, ea) = encode(k, a.0, a.1, a.2);
        let (sb, eb) = encode(k, b.0, b.1, b.2);
        if sa != sb {
            return 0.0;
        }
        dice(&ea.0, &eb.0)
    }

    #[test]
    fn sound_keys_meet_across_spellings_order_and_transliteration() {
        let shared = |a: (&str, &str), b: (&str, &str)| {
            let (ka, kb) = (sound_keys(a.0, a.1), sound_keys(b.0, b.1));
            ka.iter().any(|k| kb.contains(k))
        };
        assert!(
            shared(("Olena", "Kovalenko"), ("Elena", "Kowalenko")),
            "transliteration"
        );
        assert!(
            shared(("Олена", "Коваленко"), ("Olena", "Kovalenko")),
            "Cyrillic"
        );
        assert!(
            shared(("jack", "stubbs"), ("stubbs", "jaxck")),
            "swapped, misspelt"
        );
        assert!(
            shared(("Thi Lan", "Nguyen"), ("Lan", "Nguyen")),
            "split differently"
        );
        assert!(
            !shared(("Maria", "Popescu"), ("Oksana", "Tkachenko")),
            "unrelated"
        );
        assert!(
            sound_keys("Al", "Li").is_empty(),
            "words under three letters give no key"
        );
        assert!(sound_keys("a b c d e f g", "hhh iii jjj kkk lll mmm").len() <= MAX_SOUND_BLOCKS);
    }

    #[test]
    fn similar_people_are_close_and_others_are_not() {
        let (_d, ring) = key();
        let same = sim(
            &ring,
            ("John", "Smith", "1990-02-01"),
            ("John", "Smith", "1990-02-01"),
        );
        assert_eq!(same, 1.0);
        let typo = sim(
            &ring,
            ("Jon", "Smyth", "1990-02-01"),
            ("John", "Smith", "1990-02-01"),
        );
        assert!(typo > 0.75, "typo similarity {typo}");
        let swapped = sim(
            &ring,
            ("Smith", "John", "1990-02-01"),
            ("John", "Smith", "1990-02-01"),
        );
        assert_eq!(swapped, 1.0, "swapped fields");
        let translit = sim(
            &ring,
            ("Мария", "Ионеску", "1991-04-02"),
            ("Mariia", "Ionesku", "1991-04-02"),
        );
        assert!(translit > 0.8, "transliteration {translit}");
        let other = sim(
            &ring,
            ("Ana", "Popescu", "1990-02-01"),
            ("John", "Smith", "1990-02-01"),
        );
        assert!(
            other < 0.6,
            "unrelated similarity {other} (same full date of birth)"
        );
        let other_year = sim(
            &ring,
            ("John", "Smith", "1991-02-01"),
            ("John", "Smith", "1990-02-01"),
        );
        assert_eq!(other_year, 0.0, "different salt blocks never compare");
    }

    /// The design's own example must hit at the default threshold under any
    /// key (Bloom collisions move similarities a little per key).
    #[test]
    fn jon_smyth_hits_john_smith_under_any_key() {
        for _ in 0..25 {
            let (_d, ring) = key();
            let s = sim(
                &ring,
                ("Jon", "Smyth", "1990-02-01"),
                ("John", "Smith", "1990-02-01"),
            );
            assert!(s >= SCHEME1_THRESHOLD + 0.02, "similarity {s}");
            let u = sim(
                &ring,
                ("Ana", "Popescu", "1990-02-01"),
                ("John", "Smith", "1990-02-01"),
            );
            assert!(u < SCHEME1_THRESHOLD - 0.15, "unrelated {u}");
        }
    }

    #[test]
    fn encodings_depend_on_the_key() {
        let (_d1, r1) = key();
        let (_d2, r2) = key();
        let (_, a) = encode(r1.key(1).unwrap(), "John", "Smith", "1990-02-01");
        let (_, b) = encode(r2.key(1).unwrap(), "John", "Smith", "1990-02-01");
        assert!(
            dice(&a.0, &b.0) < 0.5,
            "another federation's key gives unrelated bits"
        );
        assert_eq!(Clk::from_bytes(&a.to_bytes()), Some(a.clone()));
        let fill = a.ones() as f64 / CLK_BITS as f64;
        assert!((0.1..0.45).contains(&fill), "fill {fill}");
    }

    #[test]
    fn dice_matches_its_definition() {
        let a = [u64::MAX; CLK_WORDS];
        let mut b = [0u64; CLK_WORDS];
        b[..8].copy_from_slice(&[u64::MAX; 8]);
        // |A| = 1024, |B| = 512, |A∩B| = 512 → 1024 / 1536.
        assert!((dice(&a, &b) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(dice(&[0; CLK_WORDS], &[0; CLK_WORDS]), 0.0);
    }
}
