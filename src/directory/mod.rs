//! The signed federation directory (docs/directory.md): which agencies
//! belong to the federation, where each listens and what certificate it
//! presents, the key service and the OPRF keys to pin, and who may sign
//! the next version. X-Road's global configuration, with TUF's rules for
//! trusting it: versions only go up, M of N operator keys sign, and a new
//! signer set counts only when the set before it signed it.
//!
//! - [`document`]: the rules a directory's content follows, each breach
//!   named by its field;
//! - [`signed`]: the DSSE envelope that carries the exact bytes and the
//!   Ed25519 signatures, and its JSON file form;
//! - [`trust`]: whether a node adopts an offered directory.

pub mod document;
pub mod roster;
pub mod signed;
pub mod trust;

#[cfg(test)]
mod tests;

pub use signed::Signed;
pub use trust::Refusal;
