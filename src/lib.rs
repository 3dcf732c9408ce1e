//! CaseBridge: a cross-agency exchange for pseudonymized case alerts about
//! suspected human trafficking.
//!
//! # Layout
//!
//! Bottom layer first; a module uses only its own layer and those below
//! (`tests/layers.rs` checks it, ARCHITECTURE.md draws it, and
//! `tests/tidy.rs` keeps this list complete).
//!
//! - Foundation: [`proto`] (generated wire types, canonical JSON), [`ids`]
//!   (id newtypes), [`time`] (timestamp conversions), [`violation`] (an
//!   offending field and its gRPC shape), [`paging`], [`secrets`] (key
//!   and case-data files), [`metrics`], [`ratelimit`], [`text`] (other
//!   people's text made safe to print), [`release`] (this release, the
//!   protocol range and the capabilities a node announces), [`ed25519`]
//!   (signing key files: audit checkpoints, the federation directory),
//!   [`vault`] (encryption at rest: the KEK, epoch keys, sealed values).
//! - Rules, pure: [`handling`] (what TLP and handling codes promise),
//!   [`config`] (config files, validated before anything starts),
//!   [`pseudo`] (normalization, key ring, keyed tokens, OPRF), [`matching`]
//!   (the hit rule), [`policy`] (sharing and disclosure rules, the shared
//!   view), [`validate`] (client and peer input), [`stats`] (private
//!   federated statistics: the plan, measurements, Prio3 shares, noise),
//!   [`intake`] (the public report intake: languages, receipts, the form),
//!   [`directory`] (the signed federation directory: its rules,
//!   signatures and trust).
//! - Persistence and the audit chain: [`identity`] (certificates, TLS,
//!   access rules), [`audit`] (entries, chain, checkpoints, verification),
//!   [`store`] (the embedded database behind a narrow storage interface;
//!   the only module that touches the engine), [`server`] (the skeleton a
//!   node's listeners and the key service share: TLS accept, refused
//!   handshakes audited, serving, checkpoints, drain).
//! - Domain operations: [`analytics`] (federated statistics: a member's
//!   contributions, the aggregators' runs, releases), [`sharing`] (the
//!   policy in force), [`disclosure`]
//!   (requests and releases after a hit), [`exchange`] (outbox entries,
//!   delivery out and in), [`alert`] (the local alert lifecycle),
//!   [`lookup`] (federation lookup), [`review`] (verdicts on hits),
//!   [`network`] (the alerts linked to one through hits, as a graph),
//!   [`tokens`] (exact tokens from the OPRF key service), [`federation`]
//!   (the directory a node follows: adoption, and the roster of peers),
//!   [`reports`] (the public intake's reports: kept, opened by receipt,
//!   answered).
//! - [`core`]: the state one node shares, and the administrator's operations.
//! - Channels and tools: [`api`] (thin tonic services), [`console`] (the
//!   web console, calling the node's own services), [`client`] (a typed
//!   client of a node), [`certs`] (a development PKI), [`keyservice`] (the
//!   federation's OPRF key service, a process of its own), [`tabular`]
//!   (registers in and out), [`intake_web`] (the public intake's HTTPS
//!   listener and pages: no client certificate, nothing of who reports).
//! - [`node`]: wires it into a running node with its TLS listeners (peer,
//!   client, and the console's when configured).
//! - [`cli`]: the `casebridge` command line.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod alert;
pub mod analytics;
pub mod api;
pub mod audit;
pub mod certs;
pub mod cli;
pub mod client;
pub mod config;
pub mod console;
pub mod core;
pub mod directory;
pub mod disclosure;
pub mod ed25519;
pub mod exchange;
pub mod federation;
pub mod handling;
pub mod identity;
pub mod ids;
pub mod intake;
pub mod intake_web;
pub mod keyservice;
pub mod lookup;
pub mod matching;
pub mod metrics;
pub mod network;
pub mod node;
pub mod paging;
pub mod policy;
pub mod proto;
#[cfg(test)]
mod proto_strategies;
pub mod pseudo;
pub mod ratelimit;
pub mod release;
pub mod reports;
pub mod review;
pub mod secrets;
pub mod server;
pub mod sharing;
pub mod stats;
pub mod store;
pub mod tabular;
pub mod text;
pub mod time;
pub mod tokens;
pub mod validate;
pub mod vault;
pub mod violation;
