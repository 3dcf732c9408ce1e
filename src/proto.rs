//! Generated wire types (`proto/casebridge/v1`), with serde impls following the
//! canonical protobuf JSON mapping so the CLI's JSON is readable by any protobuf tool.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod v1 {
    tonic::include_proto!("casebridge.v1");
    include!(concat!(env!("OUT_DIR"), "/casebridge.v1.serde.rs"));
}

/// Version of the peer protocol spoken by this build; exchanged in `Hello`.
pub const PROTOCOL_VERSION: u32 = 1;
