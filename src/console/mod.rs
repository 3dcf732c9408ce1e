//! The web console: the node's client API for people who will not use a
//! terminal (caseworkers, inspectors, an NGO's administrator), as
//! server-rendered pages on a listener of its own.
//!
//! Why it is built this way:
//! - **The same door as the gRPC API.** The browser authenticates with one
//!   of the agency's client certificates over TLS 1.3 (the client CA and
//!   CRL of the client listener), and every page calls the node's own gRPC
//!   services in-process ([`rpc::request`] puts that identity on each call). So each action
//!   is authorized by the same role check and leaves exactly the audit entry
//!   the RPC leaves, marked `channel=console`; the console never touches the
//!   store.
//! - **No script, nothing from outside.** Pages are askama templates checked
//!   at compile time; the one stylesheet is compiled into the binary;
//!   charts are inline SVG. The Content-Security-Policy forbids scripts,
//!   frames and every origin but the node's own ([`guard`]).
//! - **No case data where browsers keep things.** Pages are `no-store`;
//!   anything that names an identifier or narrative travels in a POST body,
//!   never in a URL (URLs carry alert ids, hit and request numbers, and
//!   filter choices only); a POST/redirect/GET keeps forms out of history.
//! - **CSRF.** The client certificate is an ambient credential, so every
//!   form carries a token bound to the certificate's identity and every POST
//!   must come from the console's own origin.
//!
//! The parts:
//! - `server`: the listener, on the node's TLS accept loop (a client
//!   certificate required), serving hyper's HTTP/1.1 and HTTP/2 with a
//!   10 s header-read timeout and HTTP/2 pings ([`HEADER_READ_TIMEOUT`]);
//!   [`Console::router`] is every route, under the guard.
//! - `guard`: the viewer from the certificate and the `[clients]` roles,
//!   the security headers, the same-origin check (against `Host`, or
//!   HTTP/2's `:authority`), the CSRF token bound to the certificate (made
//!   with [`CsrfKey`], kept with the state here), and the submit role
//!   checked before an upload is read.
//! - `rpc`: the calls to the node's own gRPC services, in-process, with the
//!   browser's identity and `Channel("console")`.
//! - `pages`: one module a section, built on shared components; askama
//!   templates in `templates/console/` (`fields.html`: the fields the forms
//!   share) and one stylesheet compiled into the binary.
//! - `imports`: the import jobs, in memory, each visible to its uploader
//!   only.
//! - `view`: who is looking, the page frame, the error page, labels;
//!   `chart`: inline SVG bar charts; `graph`: the network view's drawing.

mod chart;
mod graph;
mod guard;
mod imports;
mod pages;
mod rpc;
mod server;
mod view;

pub use server::{HEADER_READ_TIMEOUT, serve};

use std::sync::Arc;

use aws_lc_rs::hmac;
use base64::Engine;

use crate::api::{AdminApi, AlertApi, DisclosureApi, ReportApi};
use crate::core::NodeCore;
use crate::identity::ClientIdentity;

/// What every console handler shares.
#[derive(Clone)]
pub struct Console {
    core: Arc<NodeCore>,
    alerts: Arc<AlertApi>,
    admin: Arc<AdminApi>,
    disclosure: Arc<DisclosureApi>,
    reports: Arc<ReportApi>,
    csrf: Arc<CsrfKey>,
    /// Registers uploaded on the import page, and their runs.
    imports: Arc<imports::Imports>,
}

impl Console {
    pub fn new(core: Arc<NodeCore>) -> Self {
        Self {
            alerts: Arc::new(AlertApi(core.clone())),
            admin: Arc::new(AdminApi(core.clone())),
            disclosure: Arc::new(DisclosureApi(core.clone())),
            reports: Arc::new(ReportApi(core.clone())),
            csrf: Arc::new(CsrfKey::generate()),
            imports: Arc::default(),
            core,
        }
    }
}

/// The token a form must carry: a MAC of the certificate's identity under
/// a key made at start (so a restart makes open forms stale, and a token is
/// worth nothing to another certificate).
pub struct CsrfKey(hmac::Key);

impl CsrfKey {
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self(hmac::Key::new(hmac::HMAC_SHA256, &bytes))
    }

    pub fn token(&self, client: &ClientIdentity) -> String {
        let tag = hmac::sign(&self.0, client.spiffe_uri().as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    fn verify(&self, client: &ClientIdentity, token: &str) -> bool {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .is_ok_and(|tag| hmac::verify(&self.0, client.spiffe_uri().as_bytes(), &tag).is_ok())
    }
}
