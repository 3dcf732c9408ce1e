//! What every console request passes: who the certificate names and what it
//! may do ([`Viewer`]), the security headers on every response, the
//! same-origin rule and the CSRF token on every POST ([`Posted`]).

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, HeaderValue, Method, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Console;
use super::view::{PageError, Viewer};
use crate::config::Role;
use crate::identity::{ConnInfo, Identity};

/// Scripts, frames, plugins and every other origin are forbidden; styles
/// and images come from the node only; forms post only to the node.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the headers every response carries and refuses a POST that does
/// not come from the console's own pages.
pub async fn guard(req: Request, next: Next) -> Response {
    let refusal = (req.method() == Method::POST)
        .then(|| cross_origin(req.headers(), req.uri()))
        .flatten();
    let mut response = match refusal {
        Some(why) => PageError::Forbidden(why).into_response(),
        None => next.run(req).await,
    };
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, name, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(
        h,
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=31536000; includeSubDomains",
    );
    set(
        h,
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        h,
        header::HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
    // Pages hold case data: never kept by the browser or a proxy. The
    // stylesheet (no data) sets its own caching.
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    response
}

/// Why a POST is not from the console's own pages, if it is not: browsers
/// say where a request comes from (`Sec-Fetch-Site`, `Origin`). The
/// console's own name comes from `Host` over HTTP/1.1 and from the
/// `:authority` pseudo-header (the URI's authority) over HTTP/2, which has
/// no `Host`; an `Origin` with neither to compare against is refused.
fn cross_origin(headers: &HeaderMap, uri: &axum::http::Uri) -> Option<String> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site")
        && site != "same-origin"
    {
        return Some(format!(
            "this form was sent from another site ({site}); use the console's own pages"
        ));
    }
    let host = get("host").or_else(|| uri.authority().map(|a| a.as_str()));
    // Our pages send no referrer, so a browser may say `Origin: null` for
    // their own forms: then the fetch metadata must vouch for them.
    if get("origin") == Some("null") && get("sec-fetch-site") != Some("same-origin") {
        return Some(
            "this form was sent from an unknown origin; use the console's own pages".into(),
        );
    }
    if let Some(origin) = get("origin").filter(|o| *o != "null")
        && host.is_none_or(|host| origin != format!("https://{host}"))
    {
        return Some("this form was sent from another origin; use the console's own pages".into());
    }
    None
}

impl FromRequestParts<Console> for Viewer {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, PageError> {
        let conn = parts
            .extensions
            .get::<ConnInfo>()
            .cloned()
            .ok_or_else(|| PageError::Forbidden("no client certificate".into()))?;
        if let Identity::Node(_) = conn.identity {
            return Err(PageError::Forbidden(
                "a node certificate cannot use the console".into(),
            ));
        }
        let (client, roles) = console
            .core
            .clients
            .roles_of(&conn.identity)
            .map_err(|e| PageError::Forbidden(e.to_string()))?;
        let csrf = console.csrf.token(&client);
        Ok(Self {
            conn,
            client,
            roles,
            csrf,
        })
    }
}

/// A POSTed form from the console's own pages: its fields in order (a
/// field may repeat), after the CSRF token was checked against the viewer.
pub struct Posted {
    pub viewer: Viewer,
    pub fields: Vec<(String, String)>,
}

impl Posted {
    /// The first value of `name`, trimmed ("" when absent).
    pub fn get(&self, name: &str) -> &str {
        field(&self.fields, name)
    }
}

/// The first value of field `name`, trimmed ("" when absent).
fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
        .unwrap_or("")
}

/// A form's CSRF token must be the one made for the viewer's certificate.
fn check_token(
    console: &Console,
    viewer: &Viewer,
    fields: &[(String, String)],
) -> Result<(), PageError> {
    if console.csrf.verify(&viewer.client, field(fields, "csrf")) {
        return Ok(());
    }
    Err(PageError::Forbidden(
        "this form has expired (the node restarted, or it was not made for your \
         certificate): go back, reload the page and send it again"
            .into(),
    ))
}

/// The most a console form may hold (a policy file is the largest).
const MAX_FORM_BYTES: usize = 1 << 20;

impl FromRequest<Console> for Posted {
    type Rejection = PageError;

    async fn from_request(req: Request, console: &Console) -> Result<Self, PageError> {
        let (mut parts, body) = req.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, console).await?;
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| PageError::BadRequest("the form is too large".into()))?;
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
            .map_err(|_| PageError::BadRequest("the form could not be read".into()))?;
        check_token(console, &viewer, &fields)?;
        Ok(Self { viewer, fields })
    }
}

/// A file of an uploaded form.
/// The largest upload (a register) the console takes: CSV and XLSX are
/// read as streams, this bounds the upload itself. The CLI has no limit.
pub const MAX_UPLOAD: usize = 64 << 20;

pub struct Upload {
    /// The file's name as the browser gave it.
    pub name: String,
    pub bytes: Vec<u8>,
}

/// A POSTed `multipart/form-data` form (a file upload) from the console's
/// own pages, after the CSRF token was checked against the viewer. Its
/// size is bounded by the route's `DefaultBodyLimit`.
///
/// The only upload is a register to import, which takes the `submit`
/// role: a viewer without it is refused before a byte of the body is read
/// (the service would refuse each row, but only after the file was kept
/// and parsed).
pub struct Uploaded {
    pub viewer: Viewer,
    pub fields: Vec<(String, String)>,
    pub files: Vec<(String, Upload)>,
}

impl Uploaded {
    /// The first value of text field `name`, trimmed ("" when absent).
    pub fn get(&self, name: &str) -> &str {
        field(&self.fields, name)
    }

    /// The file sent as `field`, if one was chosen.
    pub fn file(&self, field: &str) -> Option<&Upload> {
        self.files
            .iter()
            .find(|(k, f)| k == field && !f.name.is_empty())
            .map(|(_, f)| f)
    }

    /// The file sent as `field`, taken out of the form (a large upload is
    /// then moved, not copied, to where it is kept).
    pub fn take_file(&mut self, field: &str) -> Option<Upload> {
        let i = self
            .files
            .iter()
            .position(|(k, f)| k == field && !f.name.is_empty())?;
        Some(self.files.swap_remove(i).1)
    }
}

impl FromRequest<Console> for Uploaded {
    type Rejection = PageError;

    async fn from_request(req: Request, console: &Console) -> Result<Self, PageError> {
        let (mut parts, body) = req.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, console).await?;
        if !viewer.may(Role::Submit) {
            return Err(PageError::Forbidden(
                "importing a register needs the submit role, which your certificate does not have"
                    .into(),
            ));
        }
        let mut multipart =
            axum::extract::Multipart::from_request(Request::from_parts(parts, body), console)
                .await
                .map_err(|e| PageError::BadRequest(format!("the form could not be read: {e}")))?;
        let (mut fields, mut files) = (Vec::new(), Vec::new());
        let too_large = |e: axum::extract::multipart::MultipartError| {
            PageError::BadRequest(format!(
                "the upload could not be read ({e}); files of at most {} MB are taken",
                MAX_UPLOAD >> 20
            ))
        };
        while let Some(field) = multipart.next_field().await.map_err(too_large)? {
            let name = field.name().unwrap_or_default().to_owned();
            match field.file_name().map(str::to_owned) {
                Some(file_name) => {
                    let bytes = field.bytes().await.map_err(too_large)?.to_vec();
                    files.push((
                        name,
                        Upload {
                            name: file_name,
                            bytes,
                        },
                    ));
                }
                None => fields.push((name, field.text().await.map_err(too_large)?)),
            }
        }
        check_token(console, &viewer, &fields)?;
        Ok(Self {
            viewer,
            fields,
            files,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    /// HTTP/2 carries no `Host`: the origin is held against `:authority`.
    #[test]
    fn origin_is_checked_over_http2_too() {
        let h2: axum::http::Uri = "https://console.police.test:8443/policy".parse().unwrap();
        let evil = headers(&[("origin", "https://evil.example")]);
        assert!(cross_origin(&evil, &h2).is_some());
        let own = headers(&[("origin", "https://console.police.test:8443")]);
        assert_eq!(cross_origin(&own, &h2), None);
        // HTTP/1.1: a path-only URI and a Host header.
        let h1: axum::http::Uri = "/policy".parse().unwrap();
        assert!(
            cross_origin(&evil, &h1).is_some(),
            "no name to compare against"
        );
        let evil_h1 = headers(&[("origin", "https://evil.example"), ("host", "c.test")]);
        assert!(cross_origin(&evil_h1, &h1).is_some());
        let own_h1 = headers(&[("origin", "https://c.test"), ("host", "c.test")]);
        assert_eq!(cross_origin(&own_h1, &h1), None);
        assert_eq!(
            cross_origin(&headers(&[]), &h1),
            None,
            "no Origin: the token decides"
        );
        // `Origin: null` (no-referrer pages): the fetch metadata decides.
        let null_same = headers(&[("origin", "null"), ("sec-fetch-site", "same-origin")]);
        assert_eq!(cross_origin(&null_same, &h2), None);
        assert!(cross_origin(&headers(&[("origin", "null")]), &h2).is_some());
    }
}
