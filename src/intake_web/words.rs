//! The words of one answer in the reporter's language: chosen by them
//! (`lang`), else by their browser's `Accept-Language`.

use axum::http::{HeaderMap, header};

use super::site::Site;
use crate::intake::form::Problem;
use crate::intake::i18n::{Catalog, Language};

/// The words of one page in the reporter's language.
pub struct Words<'a> {
    catalog: &'a Catalog,
    lang: Language,
}

impl<'a> Words<'a> {
    pub fn get(&self, id: &str) -> String {
        self.catalog.text(self.lang, id, &[])
    }

    /// Message `id` with its arguments.
    pub fn with(&self, id: &str, args: &[(&str, &str)]) -> String {
        self.catalog.text(self.lang, id, args)
    }

    /// Every country, named and ordered for the reader.
    pub fn countries(&self) -> &'a [(&'static str, String)] {
        self.catalog.countries(self.lang)
    }

    pub fn code(&self) -> &'static str {
        self.catalog.code(self.lang)
    }

    pub fn languages(&self) -> Vec<(&'static str, String)> {
        self.catalog
            .languages()
            .into_iter()
            .map(|(_, code, name)| (code, name))
            .collect()
    }

    pub fn danger_call(&self, number: &str) -> String {
        self.catalog
            .text(self.lang, "danger-call", &[("number", number)])
    }

    pub fn problem(&self, p: &Problem) -> String {
        let args: Vec<(&str, &str)> = p.args.iter().map(|(n, v)| (*n, v.as_str())).collect();
        self.catalog.text(self.lang, p.message, &args)
    }
}

/// The reporter's language: `lang` from the query or the form, else the
/// browser's `Accept-Language`.
pub fn words<'a>(site: &'a Site, chosen: Option<&str>, headers: &HeaderMap) -> Words<'a> {
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    Words {
        catalog: &site.catalog,
        lang: site.catalog.negotiate(chosen, accept),
    }
}
