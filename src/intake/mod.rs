//! The public report intake's rules (docs/intake.md): how victims and
//! bystanders are spoken to (`i18n`, Project Fluent, English and four
//! languages common among trafficking victims in Europe), the receipt they
//! keep to come back without an account (`receipt`: 16 random digits, kept
//! only as an Argon2id hash, guessing bounded), and what the report form
//! accepts (`form`: every field bounded before anything is done with it),
//! and the same report as a hotline app sends it (`json`, read by the
//! form's rules, problems named at JSON paths).
//!
//! Pure: no listener, no store. Nothing here sees who a reporter is — no
//! address, port, user agent or cookie ever reaches these functions.

pub mod form;
pub mod i18n;
pub mod json;
pub mod receipt;
