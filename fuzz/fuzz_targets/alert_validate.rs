//! What a client can send: any bytes as an `AlertDraft` (protobuf, or the
//! JSON the CLI reads), through validation and identifier normalization.
#![no_main]

use std::time::SystemTime;

use casebridge::validate::validate_draft;
use casebridge::config::{AlertRules, Limits};
use casebridge::proto::v1::AlertDraft;
use casebridge::pseudo::Pseudonymizer;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let draft = if mode % 2 == 0 {
        AlertDraft::decode(rest).ok()
    } else {
        serde_json::from_slice::<AlertDraft>(rest).ok()
    };
    let Some(draft) = draft else { return };
    let now = SystemTime::now();
    let Ok(draft) = validate_draft(draft, &Limits::default(), &AlertRules::default(), now) else {
        return;
    };
    let pseudo = Pseudonymizer::new(None, Some("NL".into()));
    let _ = pseudo.pseudonymize(&draft.subjects, "draft.subjects", now.into());
});
