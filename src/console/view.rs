//! What every page shares: who is looking at it ([`Viewer`], read from the
//! request by [`super::guard`]), the frame around it ([`Chrome`]), the
//! error page ([`PageError`]), and plain-language renderings of the wire's
//! enums and timestamps.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use tonic::{Code, Status};

use crate::config::{Role, Roles};
use crate::identity::{ClientIdentity, ConnInfo};

/// The person at the browser: the client certificate's identity, its
/// connection (for the calls made on its behalf) and the roles the node
/// gives it. Only for showing the controls it may use: each action is
/// authorized again by the service it calls.
#[derive(Clone)]
pub struct Viewer {
    pub conn: ConnInfo,
    pub client: ClientIdentity,
    pub roles: Roles,
    pub csrf: String,
}

impl Viewer {
    pub fn may(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// The frame of every page: whose console this is, who is signed in with
/// which roles, which section is open, and the form token.
pub struct Chrome {
    pub agency: String,
    pub client: String,
    pub roles: String,
    pub csrf: String,
    pub section: &'static str,
    pub can_submit: bool,
    pub can_admin: bool,
    pub can_review: bool,
    pub can_request: bool,
    /// Alerts and hits need `read`.
    pub can_read: bool,
    /// Disclosure requests and releases: `request` or `disclose`.
    pub can_see_requests: bool,
    /// The public intake's reports: `intake`.
    pub can_triage: bool,
}

impl Chrome {
    pub fn new(viewer: &Viewer, section: &'static str) -> Self {
        let roles: Vec<String> = [
            Role::Submit,
            Role::Read,
            Role::Review,
            Role::Request,
            Role::Disclose,
            Role::Admin,
            Role::Intake,
        ]
        .into_iter()
        .filter(|r| viewer.may(*r))
        .map(|r| r.to_string())
        .collect();
        Self {
            agency: viewer.client.agency.to_string(),
            client: viewer.client.name.to_string(),
            roles: roles.join(", "),
            csrf: viewer.csrf.clone(),
            section,
            can_submit: viewer.may(Role::Submit),
            can_admin: viewer.may(Role::Admin),
            can_review: viewer.may(Role::Review),
            can_request: viewer.may(Role::Request),
            can_read: viewer.may(Role::Read),
            can_see_requests: viewer.may(Role::Request) || viewer.may(Role::Disclose),
            can_triage: viewer.may(Role::Intake),
        }
    }
}

/// A page that could not be shown, as a page that says why in plain words.
#[derive(Debug)]
pub enum PageError {
    BadRequest(String),
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    TooMany(String),
    Unavailable(String),
    Internal(String),
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    code: u16,
    title: &'a str,
    message: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, message) = match &self {
            PageError::BadRequest(m) => (StatusCode::BAD_REQUEST, "This request cannot be used", m),
            PageError::Forbidden(m) => (StatusCode::FORBIDDEN, "Not allowed", m),
            PageError::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
            PageError::Conflict(m) => (StatusCode::CONFLICT, "Not possible now", m),
            PageError::TooMany(m) => (StatusCode::TOO_MANY_REQUESTS, "Too many requests", m),
            PageError::Unavailable(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The node cannot answer now",
                m,
            ),
            PageError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, "Something failed", m),
        };
        let page = ErrorPage {
            code: status.as_u16(),
            title,
            message,
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, message.clone()).into_response(),
        }
    }
}

impl From<Status> for PageError {
    fn from(s: Status) -> Self {
        let m = s.message().to_owned();
        match s.code() {
            Code::InvalidArgument | Code::OutOfRange => PageError::BadRequest(m),
            Code::PermissionDenied | Code::Unauthenticated => PageError::Forbidden(m),
            Code::NotFound => PageError::NotFound(m),
            Code::FailedPrecondition | Code::Aborted | Code::AlreadyExists => {
                PageError::Conflict(m)
            }
            Code::ResourceExhausted => PageError::TooMany(m),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                PageError::Unavailable(m)
            }
            _ => PageError::Internal(m),
        }
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> Self {
        tracing::error!(error = %e, "console page could not be rendered");
        PageError::Internal("the page could not be rendered".into())
    }
}

/// Renders a page template.
pub fn page(t: impl Template) -> Result<Response, PageError> {
    Ok(Html(t.render()?).into_response())
}

/// A wire enum's name in plain words: `CATEGORY_LABOUR_EXPLOITATION` with
/// prefix `CATEGORY_` reads "Labour exploitation".
pub fn label(name: &str, prefix: &str) -> String {
    let rest = name.strip_prefix(prefix).unwrap_or(name);
    if rest == "UNSPECIFIED" {
        return "—".into();
    }
    let lower = rest.replace('_', " ").to_lowercase();
    let mut chars = lower.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A timestamp as people read it: `2026-12-02 14:33 UTC` ("—" when unset).
pub fn when(ts: Option<&pbjson_types::Timestamp>) -> String {
    let Some(ts) = ts else { return "—".into() };
    match time::OffsetDateTime::from_unix_timestamp(ts.seconds) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => "—".into(),
    }
}

/// The date part only: `2026-12-02`.
pub fn day(ts: Option<&pbjson_types::Timestamp>) -> String {
    when(ts).split(' ').next().unwrap_or("—").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_read_as_words() {
        assert_eq!(
            label("CATEGORY_LABOUR_EXPLOITATION", "CATEGORY_"),
            "Labour exploitation"
        );
        assert_eq!(label("TLP_AMBER_STRICT", "TLP_"), "Amber strict");
        assert_eq!(label("CATEGORY_UNSPECIFIED", "CATEGORY_"), "—");
    }

    #[test]
    fn times_read_as_utc_minutes() {
        let ts = pbjson_types::Timestamp {
            seconds: 1_796_221_980,
            nanos: 0,
        };
        assert_eq!(when(Some(&ts)), "2026-12-02 14:33 UTC");
        assert_eq!(day(Some(&ts)), "2026-12-02");
        assert_eq!(when(None), "—");
    }
}
