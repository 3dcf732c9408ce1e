//! What a peer can send: any bytes as an `Envelope`, then everything the
//! receiving node does with a decoded alert before storing it (content
//! checks, the stored form, the inbound policy).
#![no_main]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::SystemTime;

use casebridge::validate::check_content;
use casebridge::config::Limits;
use casebridge::exchange::received_record;
use casebridge::ids::AgencyId;
use casebridge::proto::v1::Envelope;
use casebridge::proto::v1::envelope::Payload;
use libfuzzer_sys::fuzz_target;
use prost::Message;

const INBOUND: &str = r#"
[[inbound]]
name = "no-red"
effect = "refuse"
[inbound.when]
tlp = ["red"]
min_severity = "low"
identifier_types = ["phone", "person"]
"#;

fuzz_target!(|data: &[u8]| {
    let Ok(env) = Envelope::decode(data) else { return };
    let Some(Payload::Alert(alert)) = env.payload else { return };
    if let Some(content) = &alert.content {
        let mut violations = Vec::new();
        check_content(content, "alert.content", &Limits::default(), &mut violations);
    }
    let from = AgencyId::new("ngo").unwrap();
    let peers: BTreeSet<AgencyId> = [from.clone()].into();
    let policy = casebridge::policy::parse(Path::new("p.toml"), INBOUND, &peers).unwrap();
    let record = received_record(alert);
    let _ = casebridge::policy::evaluate_inbound(&policy, &record, &from, SystemTime::now());
    let _ = record.encode_to_vec();
});
