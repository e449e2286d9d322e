//! Mapping rules of whole messages, checked against real datafiles.

use std::sync::Arc;

use serde_json::{json, Value};

use super::config::{NestedTags, UnknownEventKeys};
use super::datafile::Datafile;
use super::mapper::{MapOutcome, MapWarnings, Mapper, MapperSettings, SkipReason};
use super::number::RevenueUnit;
use super::timestamp::TimestampUnit;
use crate::event::Conversion;

fn datafile(name: &str) -> Arc<Datafile> {
    let path = format!("{}/../shared/fixtures/datafiles/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|error| panic!("read {path}: {error}"));
    Arc::new(Datafile::parse(&bytes).expect("fixture datafile parses"))
}

fn settings() -> MapperSettings {
    MapperSettings {
        client_name: "optimizely-relay".to_owned(),
        revenue_unit: RevenueUnit::Cents,
        timestamp_unit: TimestampUnit::Milliseconds,
        unknown_event_keys: UnknownEventKeys::DeadLetter,
        nested_tags: NestedTags::Drop,
        mapping: Default::default(),
        event_keys: Default::default(),
        max_id_bytes: super::config::DEFAULT_MAX_ID_BYTES,
        max_properties: super::config::DEFAULT_MAX_PROPERTIES,
    }
}

fn java_v4() -> Mapper {
    Mapper::new(Arc::new(settings()), datafile("java-valid-project-config-v4.json"))
}

fn mapper_with(change: impl FnOnce(&mut MapperSettings)) -> Mapper {
    let mut settings = settings();
    change(&mut settings);
    Mapper::new(Arc::new(settings), datafile("java-valid-project-config-v4.json"))
}

/// Builds a valid track message for the java v4 datafile, changed by `change`.
fn track(change: impl FnOnce(&mut Value)) -> Value {
    let mut message = json!({
        "type": "track",
        "event": "basic_event",
        "userId": "user-1",
        "messageId": "message-1",
        "timestamp": "2024-03-01T12:00:00.000Z",
        "properties": {},
        "context": {}
    });
    change(&mut message);
    message
}

fn conversion(outcome: MapOutcome) -> (Conversion, MapWarnings) {
    match outcome {
        MapOutcome::Conversion(conversion, warnings) => (conversion, warnings),
        other => panic!("expected a conversion, got {other:?}"),
    }
}

fn rejection_reason(outcome: MapOutcome) -> &'static str {
    match outcome {
        MapOutcome::Rejected(rejection) => rejection.reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn event_field(outcome: MapOutcome, field: &str) -> Value {
    let (conversion, _) = conversion(outcome);
    let body = conversion.to_body();
    body["visitors"][0]["snapshots"][0]["events"][0].get(field).cloned().unwrap_or(Value::Null)
}

fn attributes(outcome: MapOutcome) -> Value {
    let (conversion, _) = conversion(outcome);
    conversion.to_body()["visitors"][0]["attributes"].clone()
}

#[test]
fn full_body_for_java_v4() {
    let message = track(|message| {
        message["properties"] = json!({"revenue": 4200, "value": 2.5, "category": "shoes"});
        message["context"] = json!({"traits": {"house": "Hufflepuff"}, "userAgent": "Mozilla/5.0"});
    });
    let (conversion, warnings) = conversion(java_v4().map(&message));

    assert_eq!(warnings, MapWarnings::default());
    assert_eq!(conversion.batch_key.endpoint, "https://logx.optimizely.com/v1/events");
    assert_eq!(
        conversion.to_body(),
        json!({
            "account_id": "2360254204",
            "project_id": "3918735994",
            "revision": "1480511547",
            "client_name": "optimizely-relay",
            "client_version": env!("CARGO_PKG_VERSION"),
            "anonymize_ip": true,
            "enrich_decisions": true,
            "visitors": [{
                "visitor_id": "user-1",
                "attributes": [
                    {"entity_id": "553339214", "key": "house", "type": "custom", "value": "Hufflepuff"},
                    {"entity_id": "$opt_user_agent", "key": "$opt_user_agent", "type": "custom", "value": "Mozilla/5.0"},
                    {"entity_id": "$opt_bot_filtering", "key": "$opt_bot_filtering", "type": "custom", "value": true}
                ],
                "snapshots": [{
                    "decisions": [],
                    "events": [{
                        "entity_id": "3785620495",
                        "key": "basic_event",
                        "timestamp": 1709294400000_i64,
                        "uuid": "message-1",
                        "revenue": 4200,
                        "value": 2.5,
                        "tags": {"category": "shoes"}
                    }]
                }]
            }]
        })
    );
}

#[test]
fn non_object_rejected() {
    assert_eq!(rejection_reason(java_v4().map(&json!([1, 2]))), "not_an_object");
    assert_eq!(rejection_reason(java_v4().map(&json!("track"))), "not_an_object");
}

#[test]
fn missing_or_non_string_type_rejected() {
    assert_eq!(rejection_reason(java_v4().map(&json!({"event": "basic_event"}))), "missing_type");
    assert_eq!(rejection_reason(java_v4().map(&json!({"type": 5}))), "missing_type");
    assert_eq!(rejection_reason(java_v4().map(&json!({"type": ""}))), "missing_type");
}

#[test]
fn other_message_types_skipped() {
    for message_type in ["identify", "page", "screen", "group", "alias"] {
        let outcome = java_v4().map(&json!({"type": message_type, "userId": "u"}));
        assert_eq!(outcome, MapOutcome::Skipped(SkipReason::MessageType(message_type.to_owned())), "{message_type}");
    }
}

#[test]
fn delete_becomes_deletion_request() {
    let message = json!({"type": "delete", "userId": "", "anonymousId": "anon-9"});
    match java_v4().map(&message) {
        MapOutcome::Deletion(request) => {
            assert_eq!(request.identifier, "anon-9");
            assert_eq!(request.message, message);
        }
        other => panic!("expected a deletion, got {other:?}"),
    }
    assert_eq!(rejection_reason(java_v4().map(&json!({"type": "delete"}))), "missing_user_id");
}

#[test]
fn checks_run_in_documented_order() {
    let everything_missing = json!({"type": "track"});
    assert_eq!(rejection_reason(java_v4().map(&everything_missing)), "missing_event_key");

    let unknown_and_no_user = json!({"type": "track", "event": "nope"});
    assert_eq!(rejection_reason(java_v4().map(&unknown_and_no_user)), "unknown_event_key");

    let no_user_no_time = json!({"type": "track", "event": "basic_event"});
    assert_eq!(rejection_reason(java_v4().map(&no_user_no_time)), "missing_user_id");

    let no_time = json!({"type": "track", "event": "basic_event", "userId": "u"});
    assert_eq!(rejection_reason(java_v4().map(&no_time)), "invalid_timestamp");
}

#[test]
fn empty_event_name_is_missing() {
    let message = track(|message| message["event"] = json!(""));
    assert_eq!(rejection_reason(java_v4().map(&message)), "missing_event_key");
}

#[test]
fn event_key_lookup_is_case_sensitive() {
    let message = track(|message| message["event"] = json!("Basic_Event"));
    match java_v4().map(&message) {
        MapOutcome::Rejected(rejection) => {
            assert_eq!(rejection.reason, "unknown_event_key");
            assert!(rejection.message.contains("`Basic_Event`"), "{}", rejection.message);
            assert!(rejection.message.contains("revision 1480511547"), "{}", rejection.message);
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn rename_table_applied_before_lookup() {
    let mapper = mapper_with(|settings| {
        settings.event_keys.insert("Order Completed".to_owned(), "basic_event".to_owned());
    });
    let message = track(|message| message["event"] = json!("Order Completed"));
    assert_eq!(event_field(mapper.map(&message), "key"), json!("basic_event"));
    assert_eq!(event_field(mapper.map(&message), "entity_id"), json!("3785620495"));
}

#[test]
fn unknown_event_key_skipped_when_configured() {
    let mapper = mapper_with(|settings| settings.unknown_event_keys = UnknownEventKeys::Skip);
    let message = track(|message| message["event"] = json!("nope"));
    assert_eq!(mapper.map(&message), MapOutcome::Skipped(SkipReason::UnknownEventKey("nope".to_owned())));
}

#[test]
fn visitor_id_falls_back_to_anonymous_id() {
    let cases = [
        (json!(""), "anon"),
        (json!("   "), "anon"),
        (json!(12.5), "anon"),
        (json!(true), "anon"),
        (json!({"id": 1}), "anon"),
        (Value::Null, "anon"),
        (json!(42), "42"),
        (json!(" user with spaces "), " user with spaces "),
    ];
    for (user_id, expected) in cases {
        let message = track(|message| {
            message["userId"] = user_id.clone();
            message["anonymousId"] = json!("anon");
        });
        let (conversion, _) = conversion(java_v4().map(&message));
        assert_eq!(conversion.visitor.visitor_id, expected, "userId {user_id}");
    }
}

#[test]
fn visitor_id_never_empty() {
    let message = track(|message| {
        message["userId"] = json!("");
        message["anonymousId"] = json!(" ");
    });
    assert_eq!(rejection_reason(java_v4().map(&message)), "missing_user_id");
}

#[test]
fn numeric_message_id_becomes_text() {
    let message = track(|message| message["messageId"] = json!(123456));
    assert_eq!(event_field(java_v4().map(&message), "uuid"), json!("123456"));
}

#[test]
fn missing_message_id_gets_content_uuid() {
    let first = json!({"type": "track", "event": "basic_event", "userId": "u", "timestamp": "2024-03-01T12:00:00Z"});
    let reordered: Value = serde_json::from_str(
        r#"{"timestamp":"2024-03-01T12:00:00Z","userId":"u","event":"basic_event","type":"track"}"#,
    )
    .unwrap();

    let uuid = event_field(java_v4().map(&first), "uuid");
    // uuid5(NAMESPACE_OID, '{"event":"basic_event","timestamp":"2024-03-01T12:00:00Z","type":"track","userId":"u"}')
    assert_eq!(uuid, json!("79fb71d8-762e-5192-90f6-0ffa0afa3622"));
    assert_eq!(event_field(java_v4().map(&reordered), "uuid"), uuid);
}

#[test]
fn timestamp_offsets_and_integers() {
    let cases = [
        (json!("2024-03-01T12:00:00.000Z"), 1709294400000_i64),
        (json!("2024-03-01T13:30:00.123456+01:30"), 1709294400123),
        (json!("2024-03-01 12:00:00z"), 1709294400000),
        (json!(1709294400000_i64), 1709294400000),
    ];
    for (timestamp, expected) in cases {
        let message = track(|message| message["timestamp"] = timestamp.clone());
        assert_eq!(event_field(java_v4().map(&message), "timestamp"), json!(expected), "{timestamp}");
    }
}

#[test]
fn timestamp_in_seconds_when_configured() {
    let mapper = mapper_with(|settings| settings.timestamp_unit = TimestampUnit::Seconds);
    let message = track(|message| message["timestamp"] = json!(1709294400));
    assert_eq!(event_field(mapper.map(&message), "timestamp"), json!(1709294400000_i64));
}

#[test]
fn invalid_timestamp_rejected() {
    for timestamp in [json!("2024-03-01T12:00:00"), json!("yesterday"), json!(true), json!("2024-02-30T00:00:00Z")] {
        let message = track(|message| message["timestamp"] = timestamp.clone());
        assert_eq!(rejection_reason(java_v4().map(&message)), "invalid_timestamp", "{timestamp}");
    }
}

#[test]
fn revenue_in_cents_and_dollars() {
    let cents = java_v4();
    let dollars = mapper_with(|settings| settings.revenue_unit = RevenueUnit::Dollars);
    let with_revenue = |revenue: Value| track(|message| message["properties"] = json!({"revenue": revenue}));

    assert_eq!(event_field(cents.map(&with_revenue(json!(4200))), "revenue"), json!(4200));
    assert_eq!(event_field(cents.map(&with_revenue(json!("4200.0"))), "revenue"), json!(4200));
    assert_eq!(event_field(dollars.map(&with_revenue(json!(19.99))), "revenue"), json!(1999));
    assert_eq!(event_field(dollars.map(&with_revenue(json!(1.005))), "revenue"), json!(101));
    assert_eq!(event_field(dollars.map(&with_revenue(json!("75.02"))), "revenue"), json!(7502));

    let (conversion, warnings) = conversion(cents.map(&with_revenue(json!(19.99))));
    assert_eq!(conversion.visitor.snapshots[0].events[0].revenue, None);
    assert_eq!(warnings.invalid_revenue, 1);
}

#[test]
fn numeric_value_rules() {
    let with_value = |value: Value| track(|message| message["properties"] = json!({"value": value}));

    assert_eq!(serde_json::to_string(&event_field(java_v4().map(&with_value(json!("7"))), "value")).unwrap(), "7");
    assert_eq!(event_field(java_v4().map(&with_value(json!(" 3.5 "))), "value"), json!(3.5));
    assert_eq!(serde_json::to_string(&event_field(java_v4().map(&with_value(json!(0))), "value")).unwrap(), "0");

    let (conversion, warnings) = conversion(java_v4().map(&with_value(json!(true))));
    assert_eq!(conversion.visitor.snapshots[0].events[0].value, None);
    assert_eq!(warnings.invalid_value, 1);
}

#[test]
fn tags_keep_scalars_only() {
    let message = track(|message| {
        message["properties"] = json!({
            "revenue": 100, "value": 1, "text": "a", "number": 1.5, "flag": false,
            "nothing": null, "list": [1], "object": {"a": 1}
        });
    });
    let (conversion, warnings) = conversion(java_v4().map(&message));
    let tags = serde_json::to_value(&conversion.visitor.snapshots[0].events[0].tags).unwrap();
    assert_eq!(tags, json!({"text": "a", "number": 1.5, "flag": false}));
    assert_eq!(warnings.removed_tags, 2);
}

#[test]
fn nested_tags_as_json_text() {
    let mapper = mapper_with(|settings| settings.nested_tags = NestedTags::JsonString);
    let message = track(|message| message["properties"] = json!({"list": [1, "a"], "object": {"b": true}}));
    let (conversion, warnings) = conversion(mapper.map(&message));
    let tags = serde_json::to_value(&conversion.visitor.snapshots[0].events[0].tags).unwrap();
    assert_eq!(tags, json!({"list": "[1,\"a\"]", "object": "{\"b\":true}"}));
    assert_eq!(warnings.removed_tags, 0);
}

#[test]
fn tags_empty_object_without_properties() {
    let message = track(|message| {
        message.as_object_mut().unwrap().remove("properties");
    });
    assert_eq!(event_field(java_v4().map(&message), "tags"), json!({}));
}

#[test]
fn attributes_by_datafile_id_and_opt_prefix() {
    let message = track(|message| {
        message["context"]["traits"] = json!({
            "nationality": "English",
            "$opt_test": "datafile wins",
            "$opt_custom": "kept",
            "email": "left out",
            "integerKey": 7,
            "": "empty key"
        });
    });
    assert_eq!(
        attributes(java_v4().map(&message)),
        json!([
            {"entity_id": "58339410", "key": "nationality", "type": "custom", "value": "English"},
            {"entity_id": "583394100", "key": "$opt_test", "type": "custom", "value": "datafile wins"},
            {"entity_id": "$opt_custom", "key": "$opt_custom", "type": "custom", "value": "kept"},
            {"entity_id": "616727838", "key": "integerKey", "type": "custom", "value": 7},
            {"entity_id": "808797686", "key": "", "type": "custom", "value": "empty key"},
            {"entity_id": "$opt_bot_filtering", "key": "$opt_bot_filtering", "type": "custom", "value": true}
        ])
    );
}

#[test]
fn invalid_attribute_values_dropped() {
    let message = track(|message| {
        message["context"]["traits"] = json!({
            "house": null,
            "nationality": ["a"],
            "booleanKey": {"a": 1},
            "integerKey": 9007199254740993_u64,
            "doubleKey": 9007199254740992_u64
        });
    });
    let (conversion, warnings) = conversion(java_v4().map(&message));
    let attributes = serde_json::to_value(&conversion.visitor.attributes).unwrap();
    assert_eq!(
        attributes,
        json!([
            {"entity_id": "808797686", "key": "doubleKey", "type": "custom", "value": 9007199254740992_u64},
            {"entity_id": "$opt_bot_filtering", "key": "$opt_bot_filtering", "type": "custom", "value": true}
        ])
    );
    assert_eq!(warnings.removed_attributes, 4);
}

#[test]
fn user_agent_trait_replaced_by_mapped_agent() {
    let message = track(|message| {
        message["context"] = json!({
            "traits": {"$opt_user_agent": "from traits", "$opt_bot_filtering": false, "house": "h"},
            "userAgent": "from context"
        });
    });
    assert_eq!(
        attributes(java_v4().map(&message)),
        json!([
            {"entity_id": "553339214", "key": "house", "type": "custom", "value": "h"},
            {"entity_id": "$opt_user_agent", "key": "$opt_user_agent", "type": "custom", "value": "from context"},
            {"entity_id": "$opt_bot_filtering", "key": "$opt_bot_filtering", "type": "custom", "value": true}
        ])
    );
}

#[test]
fn user_agent_trait_kept_without_context_agent() {
    let message = track(|message| message["context"] = json!({"traits": {"$opt_user_agent": "from traits"}}));
    assert_eq!(
        attributes(java_v4().map(&message)),
        json!([
            {"entity_id": "$opt_user_agent", "key": "$opt_user_agent", "type": "custom", "value": "from traits"},
            {"entity_id": "$opt_bot_filtering", "key": "$opt_bot_filtering", "type": "custom", "value": true}
        ])
    );
}

#[test]
fn bot_filtering_absent_without_datafile_flag() {
    let mapper = Mapper::new(Arc::new(settings()), datafile("java-valid-project-config-v3.json"));
    let message = track(|message| {
        message["event"] = json!("clicked_cart");
        message["context"]["traits"] = json!({"browser_type": "firefox"});
    });
    assert_eq!(
        attributes(mapper.map(&message)),
        json!([{"entity_id": "134", "key": "browser_type", "type": "custom", "value": "firefox"}])
    );
}

#[test]
fn bot_filtering_false_sent_as_false() {
    let mapper = Mapper::new(Arc::new(settings()), datafile("go-typed-audience-datafile.json"));
    let message = track(|message| message["event"] = json!("item_bought"));
    assert_eq!(
        attributes(mapper.map(&message)),
        json!([{"entity_id": "$opt_bot_filtering", "key": "$opt_bot_filtering", "type": "custom", "value": false}])
    );
}

#[test]
fn anonymize_ip_omitted_when_datafile_lacks_it() {
    let mapper = Mapper::new(Arc::new(settings()), datafile("java-valid-project-config-v2.json"));
    let message = track(|message| message["event"] = json!("Total Revenue"));
    let (conversion, _) = conversion(mapper.map(&message));
    let body = conversion.to_body();
    assert!(body.get("anonymize_ip").is_none(), "{body}");
    assert_eq!(body["visitors"][0]["snapshots"][0]["events"][0]["entity_id"], json!("098"));
}

#[test]
fn eu_region_uses_eu_endpoint() {
    let path = format!("{}/../shared/fixtures/datafiles/go-typed-audience-datafile.json", env!("CARGO_MANIFEST_DIR"));
    let mut document: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    document["region"] = json!("EU");
    let datafile = Datafile::parse(document.to_string().as_bytes()).unwrap();
    let mapper = Mapper::new(Arc::new(settings()), Arc::new(datafile));

    let (conversion, _) = conversion(mapper.map(&track(|message| message["event"] = json!("user_signed_up"))));
    assert_eq!(conversion.batch_key.endpoint, "https://eu.logx.optimizely.com/v1/events");
}

#[test]
fn us_region_uses_default_endpoint() {
    let mapper = Mapper::new(Arc::new(settings()), datafile("android-datafile-full-region-us.json"));
    let (conversion, _) = conversion(mapper.map(&track(|message| message["event"] = json!("e1"))));
    assert_eq!(conversion.batch_key.endpoint, "https://logx.optimizely.com/v1/events");
    assert_eq!(conversion.batch_key.revision, "16");
}

#[test]
fn custom_paths_with_fallbacks() {
    let mapper = mapper_with(|settings| {
        settings.mapping.user_id =
            super::path::PathList(vec!["$.properties.customer".parse().unwrap(), "$.userId".parse().unwrap()]);
        settings.mapping.event_key = super::path::PathList(vec!["$.properties['Event Name']".parse().unwrap()]);
    });
    let message = track(|message| message["properties"] = json!({"customer": "", "Event Name": "basic_event"}));
    let (conversion, _) = conversion(mapper.map(&message));
    assert_eq!(conversion.visitor.visitor_id, "user-1");
    assert_eq!(conversion.visitor.snapshots[0].events[0].key, "basic_event");
}

fn rejection_message(outcome: MapOutcome) -> String {
    match outcome {
        MapOutcome::Rejected(rejection) => rejection.message,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn ids_at_max_id_bytes_accepted() {
    let mapper = mapper_with(|settings| settings.max_id_bytes = 11);
    let message = track(|message| {
        message["event"] = json!("basic_event");
        message["userId"] = json!("u".repeat(11));
        message["messageId"] = json!("m".repeat(11));
    });
    let (conversion, _) = conversion(mapper.map(&message));
    assert_eq!(conversion.visitor.visitor_id, "u".repeat(11));
}

#[test]
fn long_ids_dead_lettered() {
    let mapper = mapper_with(|settings| {
        settings.max_id_bytes = 11;
        settings.event_keys.insert("a".repeat(12), "basic_event".to_owned());
    });
    let cases = [
        ("event name", track(|message| message["event"] = json!("a".repeat(12)))),
        ("user id", track(|message| message["userId"] = json!("é".repeat(6)))),
        ("message id", track(|message| message["messageId"] = json!("m".repeat(12)))),
        ("user id", json!({"type": "delete", "userId": "u".repeat(12)})),
    ];
    for (field, message) in cases {
        assert_eq!(rejection_reason(mapper.map(&message)), "id_too_long", "{field}: {message}");
        let text = rejection_message(mapper.map(&message));
        assert!(text.contains(&format!("the {field} at ")), "{text}");
        assert!(text.contains("is 12 bytes long, more than max_id_bytes (11)"), "{text}");
    }
}

#[test]
fn long_user_id_not_replaced_by_anonymous_id() {
    let mapper = mapper_with(|settings| settings.max_id_bytes = 4);
    let message = track(|message| {
        message["userId"] = json!("12345");
        message["anonymousId"] = json!("anon");
    });
    assert_eq!(rejection_reason(mapper.map(&message)), "id_too_long");
}

#[test]
fn tags_past_max_properties_left_out() {
    let mapper = mapper_with(|settings| settings.max_properties = 3);
    let message = track(|message| {
        message["properties"] = json!({"a": 1, "revenue": 5, "b": 2, "c": 3, "d": 4, "value": 6});
    });
    let (conversion, warnings) = conversion(mapper.map(&message));
    let event = &conversion.visitor.snapshots[0].events[0];
    assert_eq!(Value::Object(event.tags.to_map()), json!({"a": 1, "b": 2}));
    assert_eq!(event.revenue, Some(5), "revenue is read by its own path");
    assert_eq!(event.value.as_ref().map(ToString::to_string).as_deref(), Some("6"));
    assert_eq!(warnings.excess_properties, 3);
}

#[test]
fn traits_past_max_properties_left_out() {
    let mapper = mapper_with(|settings| settings.max_properties = 2);
    let message = track(|message| {
        message["context"] = json!({"traits": {"$opt_a": 1, "$opt_b": 2, "house": "Hufflepuff"}});
    });
    let (conversion, warnings) = conversion(mapper.map(&message));
    let keys: Vec<&str> = conversion.visitor.attributes.iter().map(|attribute| attribute.key.as_str()).collect();
    assert_eq!(keys, ["$opt_a", "$opt_b", "$opt_bot_filtering"]);
    assert_eq!(warnings.excess_properties, 1);
}

#[test]
fn encoded_conversion_matches_structured() {
    let messages = [
        track(|message| {
            message["properties"] = json!({"revenue": 4200, "value": 2.5, "category": "shoes", "n": 1E3, "z": -0});
            message["context"] = json!({"traits": {"house": "Huffle\"puff\n"}, "userAgent": "Mozilla/5.0"});
        }),
        track(|message| {
            message["context"]["traits"] = json!({
                "$opt_test": "datafile wins",
                "integerKey": 7,
                "doubleKey": 1.5e2,
                "booleanKey": false,
                "email": "left out",
                "house": null,
                "$opt_custom": "kept"
            });
            message["properties"] = json!({"nested": {"a": [1]}, "text": "caf\u{e9} \u{1}", "flag": true});
        }),
        track(|message| {
            message["context"] = json!({
                "traits": {"$opt_user_agent": "from traits", "$opt_bot_filtering": false},
                "userAgent": "from context"
            });
        }),
        track(|message| message["context"] = json!({"traits": {"$opt_user_agent": "from traits"}})),
        track(|message| message["userId"] = json!("")),
        json!({"type": "identify", "userId": "user-1"}),
        json!({"type": "delete", "userId": "user-1"}),
        json!([1, 2]),
    ];
    for mapper in [java_v4(), mapper_with(|settings| settings.nested_tags = NestedTags::JsonString)] {
        for message in &messages {
            let arena = bumpalo::Bump::new();
            let borrowed = super::borrowed::BorrowedValue::from_value(message, &arena);
            let structured = mapper.map(message);
            match (mapper.map_borrowed_encoded(&borrowed, 0), structured) {
                (Ok((encoded, warnings)), MapOutcome::Conversion(conversion, expected_warnings)) => {
                    let expected = crate::event::EncodedConversion::new(&conversion);
                    assert_eq!(
                        String::from_utf8_lossy(encoded.visitor_json()),
                        String::from_utf8_lossy(expected.visitor_json()),
                        "{message}"
                    );
                    assert_eq!(encoded, expected, "{message}");
                    assert_eq!(warnings, expected_warnings, "{message}");
                }
                (Err(outcome), expected) => assert_eq!(outcome, expected, "{message}"),
                (Ok(_), expected) => panic!("encoded a conversion where the mapping gave {expected:?}: {message}"),
            }
        }
    }
}

/// Encodes the visitor entry of a track message for the java v4 datafile whose `properties` member
/// is the JSON text `properties`.
fn encoded_with_properties(mapper: &Mapper, properties: &str) -> String {
    let text = format!(
        r#"{{"type":"track","event":"basic_event","userId":"user-1","messageId":"message-1","timestamp":"2024-03-01T12:00:00.000Z","properties":{properties}}}"#
    );
    let mut buffer = super::borrowed::ParseBuffer::default();
    let message = super::borrowed::BorrowedValue::parse(text.as_bytes(), &mut buffer).expect("test message is JSON");
    let (encoded, _) = mapper.map_borrowed_encoded(&message, text.len()).expect("a conversion");
    String::from_utf8(encoded.visitor_json().to_vec()).expect("UTF-8")
}

/// Returns the `tags` member's text of an encoded visitor entry.
fn tags_text(entry: &str) -> &str {
    let start = entry.find(r#""tags":"#).expect("the entry has tags") + r#""tags":"#.len();
    &entry[start..entry.len() - r#"}]}]}"#.len()]
}

#[test]
fn tags_copied_from_compact_text() {
    let properties =
        r#"{"a":1,"revenue":5,"b":"café","c":"Straße","nothing":null,"list":[1],"d":true,"value":2,"e":1.50}"#;
    let entry = encoded_with_properties(&java_v4(), properties);
    assert_eq!(tags_text(&entry), r#"{"a":1,"b":"café","c":"Straße","d":true,"e":1.50}"#);

    let as_text = mapper_with(|settings| settings.nested_tags = NestedTags::JsonString);
    let entry = encoded_with_properties(&as_text, r#"{"a":1,"list":[1,{"b":"x"}],"c":"d","value":7}"#);
    assert_eq!(tags_text(&entry), r#"{"a":1,"list":"[1,{\"b\":\"x\"}]","c":"d"}"#);

    let three = mapper_with(|settings| settings.max_properties = 3);
    let entry = encoded_with_properties(&three, r#"{"a":1,"b":2,"revenue":3,"c":4}"#);
    assert_eq!(tags_text(&entry), r#"{"a":1,"b":2}"#);
}

#[test]
fn spaced_or_repeated_properties_rewritten() {
    let entry = encoded_with_properties(&java_v4(), r#"{ "a" : 1 , "b":2E1, "revenue":5 }"#);
    assert_eq!(tags_text(&entry), r#"{"a":1,"b":2e+1}"#);
    let entry = encoded_with_properties(&java_v4(), r#"{"a":1,"b":"x","a":"last"}"#);
    assert_eq!(tags_text(&entry), r#"{"a":"last","b":"x"}"#);
}

proptest::proptest! {
    #[test]
    fn compact_and_spaced_tags_match(
        members in proptest::collection::vec(
            (
                proptest::sample::select(&["a", "b", "revenue", "value", "ключ", "k\\\"q", "property_12"][..]),
                proptest::sample::select(
                    &["1", "-0", "1.50", "2E3", "true", "false", "null", "\"x\"", "\"caf\\u00e9\"", "\"Straße\"",
                      "\"a\\nb\"", "[]", "[1,\"a\"]", "{}", "{\"c\":{\"d\":null}}"][..]
                ),
            ),
            0..12,
        ),
        max_properties in 1usize..15,
        as_text in proptest::bool::ANY,
    ) {
        let mapper = mapper_with(|settings| {
            settings.max_properties = max_properties;
            settings.nested_tags = if as_text { NestedTags::JsonString } else { NestedTags::Drop };
        });
        let pieces: Vec<String> = members.iter().map(|(key, value)| format!("\"{key}\":{value}")).collect();
        let compact = format!("{{{}}}", pieces.join(","));
        let spaced = format!("{{ {} }}", pieces.join(" , "));
        proptest::prop_assert_eq!(
            encoded_with_properties(&mapper, &compact),
            encoded_with_properties(&mapper, &spaced),
            "{}", compact
        );
    }
}
