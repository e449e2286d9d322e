//! Snapshots of the exact outcome the transform produces for every Segment example message, against
//! two real datafiles. Nothing in them is normalised: the uuid of a message without `messageId` is
//! derived from its content, so every snapshot is stable.

mod support;

use std::sync::Arc;

use optimizely_relay::event::Payload;
use optimizely_relay::sources::decode::decode_line;
use optimizely_relay::transforms::optimizely::datafile::Datafile;
use optimizely_relay::transforms::optimizely::{MapOutcome, OptimizelyTransform, OptimizelyTransformConfig};
use serde_json::{json, Value};

/// Every event name used by the examples, renamed to the datafile's event key so that each example
/// reaches the later mapping rules.
const EXAMPLE_EVENT_NAMES: &[&str] = &[
    "User Registered",
    "Course Clicked",
    "Button Clicked",
    "Report Submitted",
    "Registered",
    "Purchased an Item",
    "Item Purchased",
    "Song Played",
    "Application Installed",
    "Application Opened",
    "Application Backgrounded",
    "Application Foregrounded",
    "Application Updated",
    "Application Uninstalled",
    "Application Crashed",
    "Install Attributed",
    "Push Notification Received",
    "Push Notification Tapped",
    "Push Notification Bounced",
    "Deep Link Opened",
    "Deep Link Clicked",
    "Account Created",
    "Account Deleted",
    "Signed Up",
    "Signed In",
    "Signed Out",
    "Invite Sent",
    "Segment Consent Preference Updated",
    "Conversation Started",
];

fn transform(datafile_name: &str, event_key: &str, revenue_unit: &str) -> OptimizelyTransform {
    let renames: Vec<String> = EXAMPLE_EVENT_NAMES.iter().map(|name| format!("\"{name}\" = \"{event_key}\"")).collect();
    let text = format!(
        "revenue_unit = \"{revenue_unit}\"\n[datafile]\npath = \"unused.json\"\n[event_keys]\n{}\n",
        renames.join("\n")
    );
    let config: OptimizelyTransformConfig = toml::from_str(&text).expect("transform settings parse");
    let bytes = std::fs::read(support::fixture(&format!("datafiles/{datafile_name}"))).unwrap();
    let datafile = Arc::new(Datafile::parse(&bytes).expect("fixture datafile parses"));
    OptimizelyTransform::new("opt", &config, datafile)
}

fn outcome_json(transform: &OptimizelyTransform, payload: Payload) -> Value {
    let message = match payload {
        Payload::Message(message) => message,
        Payload::Unparsed(unparsed) => return json!({"outcome": "dead_letter", "reason": unparsed.reason}),
        other => panic!("the decoder produced {other:?}"),
    };
    match transform.map_message(&message) {
        MapOutcome::Conversion(conversion, _) => json!({"outcome": "conversion", "body": conversion.to_body()}),
        MapOutcome::Deletion(request) => json!({"outcome": "deletion", "request": request.to_json()}),
        MapOutcome::Skipped(reason) => json!({"outcome": "skipped", "reason": format!("{reason:?}")}),
        MapOutcome::Rejected(rejection) => {
            json!({"outcome": "dead_letter", "reason": rejection.reason, "message": rejection.message})
        }
    }
}

fn snapshot_examples(label: &str, transform: &OptimizelyTransform) {
    let directory = support::fixture("segment-events");
    let mut files: Vec<_> = std::fs::read_dir(&directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 36, "the number of Segment example files changed; review the snapshots");

    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let compact = serde_json::to_string(&serde_json::from_str::<Value>(&text).expect("example is JSON")).unwrap();
        let mut payloads = Vec::new();
        decode_line(compact.as_bytes(), &mut payloads);

        let outcomes: Vec<Value> = payloads.into_iter().map(|payload| outcome_json(transform, payload)).collect();
        let name = format!("{label}__{}", path.file_stem().unwrap().to_string_lossy());
        let pretty = serde_json::to_string_pretty(&outcomes).unwrap();
        insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false, omit_expression => true}, {
            insta::assert_snapshot!(name, pretty);
        });
    }
}

#[test]
fn examples_with_java_v4_datafile() {
    snapshot_examples("java_v4_dollars", &transform("java-valid-project-config-v4.json", "basic_event", "dollars"));
}

#[test]
fn examples_with_csharp_datafile() {
    snapshot_examples("csharp_cents", &transform("csharp-testdata-bom.json", "purchase", "cents"));
}
