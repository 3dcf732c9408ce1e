//! What the intake's pages share, apart from the listener that serves them.

use crate::intake::i18n::Catalog;
use crate::reports::Reports;

use super::session::Sessions;

/// Bytes of a request body: the form's fields at their bounds, with room.
pub const MAX_BODY: usize = 64 * 1024;

/// The node's reports, the languages, the reporters' sessions and the
/// number the form shows first.
pub struct Site {
    pub reports: std::sync::Arc<Reports>,
    pub catalog: Catalog,
    pub sessions: Sessions,
    pub emergency_number: String,
}
