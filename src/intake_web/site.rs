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

/// Tells the operator about a failure the reporter only sees as "try again
/// later": a store that cannot write or a hash that failed. A busy node
/// (its bound or budget reached) is not a fault and is not logged. Nothing
/// of the reporter is in the line: no address, no text, no receipt.
pub fn note(e: &crate::reports::ReportsError) {
    use crate::reports::ReportsError;
    if matches!(e, ReportsError::Store(_) | ReportsError::Receipt(_)) {
        tracing::error!(error = %e, "the public intake could not do what a reporter asked");
    }
}
