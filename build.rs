//! Compiles the wire contract with protox (pure Rust, no system `protoc`) and
//! generates tonic services plus the canonical protobuf JSON mapping (pbjson).

use std::{env, fs, path::PathBuf};

use prost::Message as _;

const PROTOS: &[&str] = &[
    "proto/casebridge/v1/alert.proto",
    "proto/casebridge/v1/alerts.proto",
    "proto/casebridge/v1/peer.proto",
    "proto/casebridge/v1/admin.proto",
    "proto/casebridge/v1/store.proto",
    "proto/casebridge/v1/disclosure.proto",
    "proto/casebridge/v1/keyservice.proto",
    "proto/casebridge/v1/directory.proto",
    "proto/casebridge/v1/stats.proto",
    "proto/casebridge/v1/intake.proto",
    "proto/casebridge/v1/reports.proto",
];

/// The previous release's contract: the files it had.
const PREVIOUS_PROTOS: &[&str] = &[
    "proto/previous/0.4.0/casebridge/v1/alert.proto",
    "proto/previous/0.4.0/casebridge/v1/alerts.proto",
    "proto/previous/0.4.0/casebridge/v1/peer.proto",
    "proto/previous/0.4.0/casebridge/v1/admin.proto",
    "proto/previous/0.4.0/casebridge/v1/store.proto",
    "proto/previous/0.4.0/casebridge/v1/disclosure.proto",
    "proto/previous/0.4.0/casebridge/v1/keyservice.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let fds = protox::compile(PROTOS, ["proto"])?;
    let descriptor_path = out.join("casebridge_descriptor.bin");
    fs::write(&descriptor_path, fds.encode_to_vec())?;
    // The previous release's contract, kept as it was: tests/wire.rs holds
    // ours against it.
    let previous = protox::compile(PREVIOUS_PROTOS, ["proto/previous/0.4.0"])?;
    fs::write(
        out.join("previous_descriptor.bin"),
        previous.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(fds)?;

    pbjson_build::Builder::new()
        .register_descriptors(&fs::read(&descriptor_path)?)?
        .build(&[".casebridge.v1"])?;
    Ok(())
}
