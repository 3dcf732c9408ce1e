//! Registers in and out: the files agencies already keep (CSV, XLSX, ODS,
//! JSON Lines) read row by row into alert drafts by a mapping, and alerts
//! written back out as rows (`casebridge alert import` / `alert export`,
//! the console's import page).
//!
//! - `mapping`: the TOML mapping (column → field, value maps, defaults,
//!   date formats, several subjects a row), checked whole with every
//!   mistake at its line and column, and the built-in ones (`htcds` for
//!   the HTCDS v2.0 templates, `export` for this crate's own exports);
//! - `convert`: one row → one draft, every problem at its column, and the
//!   way back from a field path the node names to the column it came from;
//! - `bounds`: what a workbook may expand to (unpacked bytes counted, XML
//!   tokens, the string table, cell columns, an ODS sheet's span), checked
//!   before calamine allocates for it; XLS and XLSB are refused;
//! - `read`: the files, streamed (CSV, XLSX's cell stream, ODS ranges, JSON
//!   Lines): a reader thread turns rows into drafts while the caller sends
//!   them, at most 64 rows in between, each row bounded in cells and bytes;
//! - `export`: alerts → rows (CSV, XLSX) with HTCDS column names where
//!   HTCDS has the field, or JSON Lines;
//! - `job`: one import run, whoever drives it (the CLI over gRPC, the
//!   console in-process): rows to a `Sink` (the node's `ImportAlert`),
//!   bounded in flight, retried while the node is unavailable or throttles,
//!   duplicates in a file refused, `retract_missing`; a row the importer
//!   rejected still has the rest of its draft checked by the node, so every
//!   problem of a row comes at once; progress and rejections go to an
//!   `Observer`.
//!
//! Nothing here names a node: `job` calls whatever `Sink` it is given.

pub mod bounds;
pub mod convert;
pub mod export;
pub mod job;
pub mod mapping;
pub mod read;

pub use convert::{CellProblem, Converted, cell_name};
pub use mapping::{Loaded, MappingError};
pub use read::{Item, ReadError, Reader};

/// A column's letters: 0 → A, 25 → Z, 26 → AA.
pub fn column_letter(mut index: usize) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'A' + (index % 26) as u8);
        if index < 26 {
            break;
        }
        index = index / 26 - 1;
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII letters")
}

/// The index of a column named by its letters (`C`, `ab`).
pub fn column_number(letters: &str) -> Option<usize> {
    if letters.is_empty() || letters.len() > 3 {
        return None;
    }
    let mut n = 0usize;
    for b in letters.bytes() {
        if !b.is_ascii_alphabetic() {
            return None;
        }
        n = n * 26 + usize::from(b.to_ascii_uppercase() - b'A' + 1);
    }
    Some(n - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn letters_as_spreadsheets_write_them() {
        assert_eq!(column_letter(0), "A");
        assert_eq!(column_letter(25), "Z");
        assert_eq!(column_letter(26), "AA");
        assert_eq!(column_letter(701), "ZZ");
        assert_eq!(column_letter(702), "AAA");
        assert_eq!(column_number("c"), Some(2));
        assert_eq!(column_number(""), None);
        assert_eq!(column_number("A1"), None);
    }

    proptest! {
        #[test]
        fn letters_and_numbers_round_trip(i in 0usize..18_278) {
            prop_assert_eq!(column_number(&column_letter(i)), Some(i));
        }
    }
}
