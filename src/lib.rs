//! CaseBridge: a cross-agency exchange for pseudonymized case alerts about
//! suspected human trafficking.
//!
//! # Layout
//!
//! - [`proto`]: generated wire types (`proto/casebridge/v1`), with canonical JSON.
//! - [`ids`]: newtypes for agency ids, client names, federation names, alert ids.
//! - [`config`]: node and client config files, validated before anything starts.
//! - [`identity`]: certificates, rustls configs, identity from a peer certificate.
//! - [`pseudo`]: identifier normalization, the matching key ring, keyed tokens.
//! - [`policy`]: sharing policy files: validation, evaluation, explain.
//! - [`sharing`]: the policy in force: versions, SetPolicy, SIGHUP reload, explain, diff.
//! - [`store`]: the sled database; the only module that touches sled.
//! - [`audit`]: the hash-chained, signed audit log: entries, checkpoints, verification.
//! - [`alert`]: validation of client input and the local alert lifecycle.
//! - [`matching`]: which shared tokens make a hit (applied by the store).
//! - [`exchange`]: the shared view of an alert, outbound delivery per peer, inbound apply.
//! - [`lookup`]: federation lookup (ask peers by token, answer about own alerts).
//! - [`ratelimit`]: per-caller token buckets.
//! - [`api`]: thin tonic services for the client, admin and peer APIs.
//! - [`metrics`]: Prometheus series and their HTTP endpoint.
//! - [`node`]: wires the above into a running node with two TLS listeners.
//! - [`client`]: a typed client of one node's client API (CLI, demo, tests).
//! - [`certs`]: a development federation PKI.
//! - [`cli`]: the `casebridge` command line.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod alert;
pub mod api;
pub mod audit;
pub mod certs;
pub mod cli;
pub mod client;
pub mod config;
pub mod core;
pub mod exchange;
pub mod identity;
pub mod ids;
pub mod lookup;
pub mod matching;
pub mod metrics;
pub mod node;
pub mod paging;
pub mod policy;
pub mod proto;
#[cfg(test)]
mod proto_strategies;
pub mod pseudo;
pub mod ratelimit;
pub mod secrets;
pub mod sharing;
pub mod store;
pub mod time;
pub mod validate;
pub mod violation;
