//! What an administrator can write: any text as a policy file; a policy
//! that validates is then evaluated for a fixed alert and every peer.
#![no_main]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::SystemTime;

use casebridge::ids::{AgencyId, AlertId};
use casebridge::proto::v1::{Alert, AlertContent, Location, StoredAlert};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let peers: BTreeSet<AgencyId> = ["ngo", "labour", "border"]
        .iter()
        .map(|p| AgencyId::new(*p).unwrap())
        .collect();
    let policy = match casebridge::policy::parse(Path::new("fuzz.toml"), text, &peers) {
        Ok(p) => p,
        Err(errors) => {
            // Every error points inside the text.
            for e in errors {
                assert!(e.line >= 1 && e.line <= text.lines().count().max(1) + 1, "{e}");
            }
            return;
        }
    };
    let own = AgencyId::new("police").unwrap();
    let record = StoredAlert {
        alert: Some(Alert {
            id: AlertId::generate(&own).to_string(),
            origin: "police".into(),
            version: 1,
            content: Some(AlertContent {
                category: 1,
                severity: 3,
                tlp: 3,
                location: Some(Location {
                    country: "NL".into(),
                    region: "ZH".into(),
                    city: "Westland".into(),
                }),
                narrative: "n".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let peer_list: Vec<AgencyId> = peers.into_iter().collect();
    for (_, d) in casebridge::policy::evaluate_all(&policy, &record, &own, &peer_list, SystemTime::now()) {
        if let Some(g) = d.grant {
            let _ = casebridge::policy::shared_view_with(&record, &g);
        }
    }
});
