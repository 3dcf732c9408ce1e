//! The intake's words in each language, through Project Fluent
//! (`fluent-bundle`): one `.ftl` file a language under `locales/intake`,
//! English the reference every other file follows message for message (a
//! test holds them to it). A reporter's language is the one they chose, or
//! the best of their browser's `Accept-Language`, or English.

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource};
use unic_langid::LanguageIdentifier;

/// Each language: its code (BCP 47 primary subtag, as `?lang=` takes it),
/// its messages, and its country names (`locales/intake/countries`,
/// generated: see the README there). English first: the fallback for a
/// missing message.
const LANGUAGES: [(&str, &str, &str); 5] = [
    (
        "en",
        include_str!("../../locales/intake/en.ftl"),
        include_str!("../../locales/intake/countries/en.ftl"),
    ),
    (
        "ro",
        include_str!("../../locales/intake/ro.ftl"),
        include_str!("../../locales/intake/countries/ro.ftl"),
    ),
    (
        "uk",
        include_str!("../../locales/intake/uk.ftl"),
        include_str!("../../locales/intake/countries/uk.ftl"),
    ),
    (
        "es",
        include_str!("../../locales/intake/es.ftl"),
        include_str!("../../locales/intake/countries/es.ftl"),
    ),
    (
        "tl",
        include_str!("../../locales/intake/tl.ftl"),
        include_str!("../../locales/intake/countries/tl.ftl"),
    ),
];

/// Other names browsers send for a language here (Filipino is Tagalog's
/// standard form and `fil` its tag).
const ALIASES: [(&str, &str); 1] = [("fil", "tl")];

/// What an `Accept-Language` header is read for at most: entries and bytes
/// (a browser sends a handful; anything longer is not a browser's).
const MAX_ACCEPT_ENTRIES: usize = 16;
const MAX_ACCEPT_BYTES: usize = 512;

/// A language file that does not load.
#[derive(Debug, thiserror::Error)]
#[error("locales/intake/{code}.ftl: {problem}")]
pub struct CatalogError {
    code: &'static str,
    problem: String,
}

/// One of the catalog's languages, by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Language(usize);

/// Every language's messages, loaded once.
pub struct Catalog {
    bundles: Vec<(&'static str, FluentBundle<FluentResource>)>,
    /// Each language's country list, sorted once.
    countries: Vec<Vec<(&'static str, String)>>,
}

impl Catalog {
    /// Loads every language; a file with a syntax error, or two messages of
    /// one name, is refused by name (the files are built in, so a test
    /// catches this before a release does).
    pub fn load() -> Result<Self, CatalogError> {
        let mut bundles = Vec::with_capacity(LANGUAGES.len());
        for (code, messages, countries) in LANGUAGES {
            let bad = |problem: String| CatalogError { code, problem };
            let id: LanguageIdentifier = code.parse().map_err(|e| bad(format!("{e}")))?;
            let mut bundle = FluentBundle::new_concurrent(vec![id]);
            for text in [messages, countries] {
                let resource = FluentResource::try_new(text.to_owned())
                    .map_err(|(_, errors)| bad(format!("{errors:?}")))?;
                bundle
                    .add_resource(resource)
                    .map_err(|errors| bad(format!("{errors:?}")))?;
            }
            bundles.push((code, bundle));
        }
        let mut catalog = Self {
            bundles,
            countries: Vec::new(),
        };
        catalog.countries = (0..LANGUAGES.len())
            .map(|i| catalog.sorted_countries(Language(i)))
            .collect();
        Ok(catalog)
    }

    /// Every language: its code and its own name for itself.
    pub fn languages(&self) -> Vec<(Language, &'static str, String)> {
        (0..self.bundles.len())
            .map(|i| {
                (
                    Language(i),
                    self.bundles[i].0,
                    self.text(Language(i), "language-name", &[]),
                )
            })
            .collect()
    }

    /// Every country in `lang`: its ISO 3166-1 alpha-2 code and its name,
    /// in the order a reader of `lang` looks for it (letters before their
    /// accents: "Österreich" with the O's).
    pub fn countries(&self, lang: Language) -> &[(&'static str, String)] {
        &self.countries[lang.0]
    }

    fn sorted_countries(&self, lang: Language) -> Vec<(&'static str, String)> {
        use unicode_normalization::UnicodeNormalization;
        let key = |name: &str| -> String {
            name.nfd()
                .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
                .flat_map(char::to_lowercase)
                .collect()
        };
        let mut all: Vec<(&'static str, String)> = isocountry::CountryCode::iter()
            .map(|c| {
                let code = c.alpha2();
                (code, self.text(lang, &format!("country-{code}"), &[]))
            })
            .collect();
        all.sort_by_cached_key(|(_, name)| key(name));
        all
    }

    /// The language of code `code`, if the catalog has it.
    pub fn by_code(&self, code: &str) -> Option<Language> {
        let code = code.trim().to_ascii_lowercase();
        let code = ALIASES
            .iter()
            .find(|(alias, _)| *alias == code)
            .map_or(code.as_str(), |(_, to)| to);
        self.bundles
            .iter()
            .position(|(c, _)| *c == code)
            .map(Language)
    }

    /// The reporter's language: `chosen` (a `?lang=` or form value) when
    /// the catalog has it, else the best match of `accept_language`, else
    /// English.
    pub fn negotiate(&self, chosen: Option<&str>, accept_language: Option<&str>) -> Language {
        chosen
            .and_then(|c| self.by_code(c))
            .or_else(|| accept_language.and_then(|h| self.best_accepted(h)))
            .unwrap_or(Language(0))
    }

    /// The first language of an `Accept-Language` header, by quality, the
    /// catalog has (by primary subtag: `ro-RO` is `ro`). Bounded: a header
    /// longer than a browser's is read only as far as [`MAX_ACCEPT_BYTES`].
    fn best_accepted(&self, header: &str) -> Option<Language> {
        let header = header
            .get(..header.len().min(MAX_ACCEPT_BYTES))
            .unwrap_or("");
        let mut ranked: Vec<(u16, usize, Language)> = header
            .split(',')
            .take(MAX_ACCEPT_ENTRIES)
            .enumerate()
            .filter_map(|(order, entry)| {
                let mut parts = entry.split(';');
                let tag = parts.next()?.trim();
                let primary = tag.split(['-', '_']).next()?;
                let quality = parts
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .map_or(Some(1000), quality)?;
                let lang = self.by_code(primary)?;
                (quality > 0).then_some((quality, order, lang))
            })
            .collect();
        ranked.sort_by_key(|(q, order, _)| (std::cmp::Reverse(*q), *order));
        ranked.first().map(|(_, _, lang)| *lang)
    }

    /// Message `id` in `lang` with `args`; the English text when `lang`
    /// lacks it, and the id itself when English does too (so a missing
    /// message shows, and a test finds it, rather than an empty label).
    pub fn text(&self, lang: Language, id: &str, args: &[(&str, &str)]) -> String {
        let mut fluent_args = FluentArgs::new();
        for (name, value) in args {
            fluent_args.set(*name, *value);
        }
        [lang.0, 0]
            .into_iter()
            .find_map(|i| {
                let bundle = &self.bundles.get(i)?.1;
                let pattern = bundle.get_message(id)?.value()?;
                let mut errors = Vec::new();
                let text = bundle.format_pattern(pattern, Some(&fluent_args), &mut errors);
                Some(text.into_owned())
            })
            .unwrap_or_else(|| id.to_owned())
    }

    /// The code of `lang` (for `lang=` in links and `<html lang>`).
    pub fn code(&self, lang: Language) -> &'static str {
        self.bundles[lang.0].0
    }
}

/// A `q=` value in thousandths (`1`, `0.8`, `0.125`), if it is one.
fn quality(q: &str) -> Option<u16> {
    let q = q.trim();
    let (whole, fraction) = q.split_once('.').unwrap_or((q, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluent_syntax::ast::Entry;

    fn ids(text: &str) -> Vec<String> {
        let resource = fluent_syntax::parser::parse(text).unwrap();
        resource
            .body
            .iter()
            .filter_map(|e| match e {
                Entry::Message(m) => Some(m.id.name.to_owned()),
                _ => None,
            })
            .collect()
    }

    /// Countries are named in the reader's language and ordered as a
    /// reader looks for them: a letter with its accent stays with the letter.
    #[test]
    fn countries_are_named_and_ordered_for_the_reader() {
        let catalog = Catalog::load().unwrap();
        let uk = catalog.countries(catalog.by_code("uk").unwrap());
        assert!(uk.contains(&("UA", "Україна".to_owned())));
        let es = catalog.countries(catalog.by_code("es").unwrap());
        let at = |name: &str| es.iter().position(|(_, n)| n == name).unwrap();
        assert!(
            at("Bélgica") < at("Belice"),
            "accents sort with their letter"
        );
        assert_eq!(es.len(), isocountry::CountryCode::iter().count());
    }

    #[test]
    fn every_language_has_every_message_and_formats_it_cleanly() {
        let catalog = Catalog::load().unwrap();
        let english = ids(LANGUAGES[0].1);
        let countries = ids(LANGUAGES[0].2);
        assert_eq!(countries.len(), isocountry::CountryCode::iter().count());
        for (code, text, names) in LANGUAGES {
            assert_eq!(ids(names), countries, "countries/{code}.ftl: every country");
            assert_eq!(
                ids(text),
                english,
                "{code}.ftl: the messages of en.ftl, in order"
            );
            let lang = catalog.by_code(code).unwrap();
            for id in &english {
                let bundle = &catalog.bundles[lang.0].1;
                let pattern = bundle.get_message(id).unwrap().value().unwrap();
                let mut args = FluentArgs::new();
                args.set("number", "112");
                args.set("max", "100");
                let mut errors = Vec::new();
                let out = bundle.format_pattern(pattern, Some(&args), &mut errors);
                assert!(errors.is_empty(), "{code} {id}: {errors:?}");
                assert!(!out.trim().is_empty(), "{code} {id}");
            }
        }
        let ro = catalog.by_code("ro").unwrap();
        assert!(
            catalog
                .text(ro, "danger-call", &[("number", "112")])
                .contains("112")
        );
    }

    #[test]
    fn the_reporter_s_choice_comes_first_then_the_browser_s_best() {
        let c = Catalog::load().unwrap();
        let code = |chosen, accept| c.code(c.negotiate(chosen, accept));
        assert_eq!(code(Some("uk"), Some("es")), "uk");
        assert_eq!(code(Some("xx"), Some("de-DE, es;q=0.5, ro;q=0.8")), "ro");
        assert_eq!(code(None, Some("fil-PH")), "tl");
        assert_eq!(code(None, Some("ro;q=0, es;q=0.1")), "es");
        assert_eq!(code(None, Some("de, fr")), "en");
        assert_eq!(code(None, Some("es;q=2, ro;q=1.5")), "en");
        assert_eq!(code(None, None), "en");
    }

    proptest::proptest! {
        /// Any header gets an answer, and never one the catalog lacks.
        #[test]
        fn any_accept_language_header_is_read_or_ignored(h in "\\PC{0,600}") {
            let c = Catalog::load().unwrap();
            let lang = c.negotiate(None, Some(&h));
            proptest::prop_assert!(c.by_code(c.code(lang)).is_some());
        }

        #[test]
        fn quality_reads_only_what_rfc_9110_allows(q in "[0-9.]{0,6}") {
            if let Some(t) = quality(&q) {
                proptest::prop_assert!(t <= 1000);
            }
        }
    }
}
