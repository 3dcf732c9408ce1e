//! tonic services. Handlers are thin: authorize, translate, call the domain
//! module, translate back. Domain errors become `tonic::Status` only in
//! [`status`].

mod admin;
mod alerts;
pub mod auth;
mod peer;
pub mod status;

pub use admin::AdminApi;
pub use alerts::AlertApi;
pub use peer::PeerApi;
