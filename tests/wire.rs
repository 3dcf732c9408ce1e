//! The wire contract stays compatible with the previous release, in the
//! spirit of `buf breaking` with its WIRE_JSON rules: the previous
//! release's `.proto` files are kept in `proto/previous/<release>/` and
//! compiled beside ours by the build script, and this test compares the
//! two descriptor sets. Breaking, for a message, enum or service that
//! existed before (peer envelopes, client API, and the store's records):
//! - a message or enum removed or renamed (the JSON mapping and `Any` see
//!   names);
//! - a field number reused for another name, type or label, or moved into
//!   or out of a oneof; a field renamed (its JSON name changes);
//! - a field or enum value removed without its number being reserved;
//! - an enum value renamed (JSON carries the name);
//! - an RPC removed, or its request, response or streaming changed.
//!
//! Adding is never breaking. A planted break shows the check finds it.

use std::collections::BTreeMap;

use prost::Message;
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};

/// The previous release's contract, compiled by `build.rs`.
const PREVIOUS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/previous_descriptor.bin"));

/// One contract, by fully qualified name.
#[derive(Clone)]
struct Contract {
    messages: BTreeMap<String, DescriptorProto>,
    enums: BTreeMap<String, EnumDescriptorProto>,
    /// `.package.Service/Method` → (input, output, client streaming, server streaming).
    methods: BTreeMap<String, (String, String, bool, bool)>,
}

fn contract(bytes: &[u8]) -> Contract {
    let set = FileDescriptorSet::decode(bytes).expect("a descriptor set");
    let mut c = Contract {
        messages: BTreeMap::new(),
        enums: BTreeMap::new(),
        methods: BTreeMap::new(),
    };
    for file in set.file {
        let package = file.package().to_owned();
        if !package.starts_with("casebridge.") {
            continue;
        }
        let prefix = format!(".{package}");
        for m in &file.message_type {
            add_message(&mut c, &prefix, m);
        }
        for e in &file.enum_type {
            c.enums.insert(format!("{prefix}.{}", e.name()), e.clone());
        }
        for s in &file.service {
            for m in &s.method {
                c.methods.insert(
                    format!("{prefix}.{}/{}", s.name(), m.name()),
                    (
                        m.input_type().to_owned(),
                        m.output_type().to_owned(),
                        m.client_streaming(),
                        m.server_streaming(),
                    ),
                );
            }
        }
    }
    c
}

fn add_message(c: &mut Contract, prefix: &str, m: &DescriptorProto) {
    let name = format!("{prefix}.{}", m.name());
    for nested in &m.nested_type {
        add_message(c, &name, nested);
    }
    for e in &m.enum_type {
        c.enums.insert(format!("{name}.{}", e.name()), e.clone());
    }
    c.messages.insert(name, m.clone());
}

fn reserved(m: &DescriptorProto, number: i32) -> bool {
    m.reserved_range
        .iter()
        .any(|r| (r.start()..r.end()).contains(&number))
}

fn enum_reserved(e: &EnumDescriptorProto, number: i32) -> bool {
    e.reserved_range
        .iter()
        .any(|r| (r.start()..=r.end()).contains(&number))
}

/// Every way `new` breaks what `old` promised, in words.
fn breaking(old: &Contract, new: &Contract) -> Vec<String> {
    let mut found = Vec::new();
    for (name, was) in &old.messages {
        match new.messages.get(name) {
            None => found.push(format!("message {name} removed or renamed")),
            Some(now) => found.extend(field_changes(name, was, now)),
        }
    }
    for (name, was) in &old.enums {
        let Some(now) = new.enums.get(name) else {
            found.push(format!("enum {name} removed or renamed"));
            continue;
        };
        for v in &was.value {
            match now.value.iter().find(|w| w.number() == v.number()) {
                None if !enum_reserved(now, v.number()) => found.push(format!(
                    "{name}.{} = {} removed without reserving its number",
                    v.name(),
                    v.number()
                )),
                Some(w) if w.name() != v.name() => found.push(format!(
                    "{name} value {} renamed {} -> {} (JSON carries the name)",
                    v.number(),
                    v.name(),
                    w.name()
                )),
                _ => {}
            }
        }
    }
    for (name, was) in &old.methods {
        match new.methods.get(name) {
            None => found.push(format!("rpc {name} removed")),
            Some(now) if now != was => {
                found.push(format!("rpc {name} changed: {was:?} -> {now:?}"))
            }
            Some(_) => {}
        }
    }
    found
}

fn field_changes(name: &str, was: &DescriptorProto, now: &DescriptorProto) -> Vec<String> {
    let mut found = Vec::new();
    for f in &was.field {
        let what = format!("{name}.{} = {}", f.name(), f.number());
        let Some(g) = now.field.iter().find(|g| g.number() == f.number()) else {
            if !reserved(now, f.number()) {
                found.push(format!("{what} removed without reserving its number"));
            }
            continue;
        };
        if g.name() != f.name() || g.json_name() != f.json_name() {
            found.push(format!(
                "{what} renamed {} (its JSON name changes)",
                g.name()
            ));
        }
        if g.r#type() != f.r#type() || g.type_name() != f.type_name() {
            found.push(format!(
                "{what} changed type {:?} {} -> {:?} {}",
                f.r#type(),
                f.type_name(),
                g.r#type(),
                g.type_name()
            ));
        }
        if g.label() != f.label() || g.proto3_optional() != f.proto3_optional() {
            found.push(format!("{what} changed label"));
        }
        if g.oneof_index.is_some() != f.oneof_index.is_some() {
            found.push(format!("{what} moved into or out of a oneof"));
        }
    }
    found
}

#[test]
fn the_wire_contract_keeps_the_previous_releases_promises() {
    let previous = contract(PREVIOUS);
    let current = contract(casebridge::proto::FILE_DESCRIPTOR_SET);
    assert!(
        previous.messages.contains_key(".casebridge.v1.Envelope") && previous.methods.len() > 20,
        "the previous release's contract was read"
    );
    let broken = breaking(&previous, &current);
    assert!(
        broken.is_empty(),
        "breaking changes against release {}:\n{}",
        casebridge::release::PREVIOUS.version,
        broken.join("\n")
    );
}

/// The check finds what it is for: each planted break is named.
#[test]
fn planted_breaking_changes_are_found() {
    use prost_types::field_descriptor_proto::Type;
    let current = contract(casebridge::proto::FILE_DESCRIPTOR_SET);
    let plant = |change: &dyn Fn(&mut Contract)| {
        let mut broken = current.clone();
        change(&mut broken);
        breaking(&current, &broken)
    };
    let hello = ".casebridge.v1.HelloRequest";
    let retyped = plant(&|c| {
        let f = &mut c.messages.get_mut(hello).unwrap().field[0];
        f.set_type(Type::String);
    });
    assert!(
        retyped
            .iter()
            .any(|b| b.contains("protocol_version = 1 changed type")),
        "{retyped:?}"
    );
    let removed = plant(&|c| {
        c.messages.get_mut(hello).unwrap().field.remove(1);
    });
    assert!(
        removed
            .iter()
            .any(|b| b.contains("agency_id = 2 removed without reserving")),
        "{removed:?}"
    );
    let renamed = plant(&|c| {
        let v = &mut c.enums.get_mut(".casebridge.v1.AckStatus").unwrap().value[3];
        v.name = Some("ACK_STATUS_REFUSED".into());
    });
    assert!(renamed.iter().any(|b| b.contains("renamed")), "{renamed:?}");
    let rpc = plant(&|c| {
        let key = c
            .methods
            .keys()
            .find(|k| k.ends_with("/Hello"))
            .unwrap()
            .clone();
        c.methods.get_mut(&key).unwrap().3 = true;
    });
    assert!(rpc.iter().any(|b| b.contains("Hello changed")), "{rpc:?}");
    assert!(plant(&|_| {}).is_empty(), "no change, nothing found");
}
