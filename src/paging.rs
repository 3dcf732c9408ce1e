//! Paged reads: one parser for the `page_size` / `page_token` pair every
//! list RPC takes, so the limits and the error for a foreign token read the
//! same everywhere.

use std::str::FromStr;

use crate::violation::FieldViolation;

/// A page asked for: how many items at most, and where the previous page
/// stopped (the token it returned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest<T> {
    pub size: usize,
    pub after: Option<T>,
}

impl<T: FromStr> PageRequest<T> {
    /// `size` 0 means `default`; more than `max` is refused, as is a token
    /// that does not parse as one this list hands out.
    pub fn parse(size: u32, token: &str, default: u32, max: u32) -> Result<Self, FieldViolation> {
        if size > max {
            return Err(FieldViolation::new("page_size", format!("at most {max}")));
        }
        let size = if size == 0 { default } else { size } as usize;
        let after = if token.is_empty() {
            None
        } else {
            Some(token.parse::<T>().map_err(|_| {
                FieldViolation::new("page_token", "is not a token from a previous page")
            })?)
        };
        Ok(Self { size, after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn defaults_limits_and_foreign_tokens() {
        let p = PageRequest::<u64>::parse(0, "", 100, 1000).unwrap();
        assert_eq!(
            p,
            PageRequest {
                size: 100,
                after: None
            }
        );
        let p = PageRequest::<u64>::parse(1000, "42", 100, 1000).unwrap();
        assert_eq!(
            p,
            PageRequest {
                size: 1000,
                after: Some(42)
            }
        );
        assert_eq!(
            PageRequest::<u64>::parse(1001, "", 100, 1000)
                .unwrap_err()
                .field,
            "page_size"
        );
        assert_eq!(
            PageRequest::<u64>::parse(5, "x", 100, 1000)
                .unwrap_err()
                .field,
            "page_token"
        );
    }

    proptest! {
        #[test]
        fn any_size_within_max_is_taken_as_asked(size in 1u32..=1000, after in any::<u64>()) {
            let p = PageRequest::<u64>::parse(size, &after.to_string(), 100, 1000).unwrap();
            prop_assert_eq!(p.size, size as usize);
            prop_assert_eq!(p.after, Some(after));
        }
    }
}
