//! A file that mixes every kind of broken line with valid ones, read by the real binary: every valid
//! conversion reaches the Event API stand-in, and every broken line is dead-lettered with its reason.

mod support;

use base64::Engine;
use serde_json::{json, Value};
use support::{read_json_lines, run_binary, write_file, RecordingServer};

const MAX_LINE_BYTES: usize = 32 * 1024;

/// Builds a valid track message for the quickstart datafile with the uuid `message_id`. `extra`
/// adds fields.
fn track(message_id: &str, extra: &str) -> String {
    format!(
        r#"{{"type":"track","event":"order_completed","userId":"user-1","messageId":"{message_id}","timestamp":"2026-11-30T14:03:27Z"{extra}}}"#
    )
}

/// The lines of the input file and the dead-letter reason each broken one must get, in file order.
fn input_lines() -> (Vec<Vec<u8>>, Vec<&'static str>) {
    let many_properties: Vec<String> = (0..1500).map(|index| format!(r#""p{index}":{index}"#)).collect();
    let nested = format!(r#"{{"type":"track","properties":{{"a":{}{}}}}}"#, "[".repeat(200), "]".repeat(200));
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut reasons = Vec::new();
    let mut broken = |line: Vec<u8>, reason: &'static str, lines: &mut Vec<Vec<u8>>| {
        lines.push(line);
        reasons.push(reason);
    };

    lines.push(track("valid-plain", "").into_bytes());
    broken(b"{\"type\": tra".to_vec(), "invalid_json", &mut lines);
    broken(b"{\"type\":\"track\",\"event\":\"caf\xE9\",\"userId\":\"u\"}".to_vec(), "invalid_utf8", &mut lines);
    broken([b"\0\0\0".to_vec(), track("nul-prefix", "").into_bytes()].concat(), "invalid_json", &mut lines);
    broken(
        track("too-long", &format!(r#","properties":{{"x":"{}"}}"#, "x".repeat(MAX_LINE_BYTES))).into_bytes(),
        "line_too_long",
        &mut lines,
    );
    broken(nested.into_bytes(), "too_deep", &mut lines);
    lines.push(format!("\u{FEFF}{}", track("valid-bom", "")).into_bytes());
    lines.push(format!("{}\r", track("valid-crlf", "")).into_bytes());
    lines.push(
        track(
            "valid-huge-numbers",
            r#","properties":{"revenue":1e999999,"value":1e400,"big":123456789012345678901234567890}"#,
        )
        .into_bytes(),
    );
    broken(
        br#"{"type":"track","event":"order_completed","userId":"u","timestamp":1e30}"#.to_vec(),
        "invalid_timestamp",
        &mut lines,
    );
    broken(b"[1,2,3]".to_vec(), "not_an_object", &mut lines);
    broken(b"\"just text\"".to_vec(), "not_an_object", &mut lines);
    broken(b"null".to_vec(), "not_an_object", &mut lines);
    broken(br#"{"event":"order_completed","userId":"u"}"#.to_vec(), "missing_type", &mut lines);
    broken(b"{}".to_vec(), "missing_type", &mut lines);
    broken(track("long-user", "").replace("user-1", &"u".repeat(2000)).into_bytes(), "id_too_long", &mut lines);
    broken(br#"{"type":"track","event":"x\ud800","userId":"u"}"#.to_vec(), "invalid_json", &mut lines);
    broken(
        br#"{"type":"track","userId":"u","timestamp":"2026-11-30T14:03:27Z"}"#.to_vec(),
        "missing_event_key",
        &mut lines,
    );
    lines.push(track("valid-escaped-nul", "").replace("user-1", "user\\u0000one").into_bytes());
    lines.push(
        track("valid-many-properties", &format!(r#","properties":{{{}}}"#, many_properties.join(","))).into_bytes(),
    );
    lines.push(b"".to_vec());
    lines.push(b"   \t".to_vec());
    lines.push(format!(r#"{{"batch":[{},{{"type":"track"}}]}}"#, track("valid-in-batch", "")).into_bytes());
    reasons.push("missing_event_key");
    (lines, reasons)
}

#[tokio::test]
async fn broken_lines_dead_lettered_valid_delivered() {
    let api = RecordingServer::start().await;
    let directory = tempfile::tempdir().unwrap();
    let (lines, expected_reasons) = input_lines();
    let mut input = lines.join(&b'\n');
    // The last line has no newline: in "once" mode the end of the file ends it.
    input.extend_from_slice(b"\n");
    input.extend_from_slice(track("valid-last-line", "").as_bytes());
    let input_path = directory.path().join("events.ndjson");
    std::fs::write(&input_path, &input).unwrap();

    let config = write_file(
        directory.path(),
        "relay.toml",
        &format!(
            r#"
[sources.in]
type = "file"
include = ["{input}"]
mode = "once"
max_line_bytes = {MAX_LINE_BYTES}

{pipeline}"#,
            input = input_path.display(),
            pipeline = support::quickstart_pipeline("in", &api.url("/v1/events")),
        ),
    );

    let output = run_binary(&["run", "--config", config.to_str().unwrap()], b"", &[]).await;
    assert!(output.status.success(), "{}", output.stderr);

    let mut events: Vec<Value> = Vec::new();
    for request in api.requests() {
        events.extend(request.json()["visitors"].as_array().unwrap().iter().cloned());
    }
    let mut uuids: Vec<&str> =
        events.iter().map(|visitor| visitor["snapshots"][0]["events"][0]["uuid"].as_str().unwrap()).collect();
    uuids.sort();
    assert_eq!(
        uuids,
        [
            "valid-bom",
            "valid-crlf",
            "valid-escaped-nul",
            "valid-huge-numbers",
            "valid-in-batch",
            "valid-last-line",
            "valid-many-properties",
            "valid-plain"
        ]
    );

    let dead = read_json_lines(&directory.path().join("dead.ndjson"));
    let reasons: Vec<&str> = dead.iter().map(|record| record["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, expected_reasons);

    let expected_summary = format!(
        "summary: received={} sent=8 dead_lettered={} skipped=0 undelivered=0",
        8 + expected_reasons.len(),
        expected_reasons.len()
    );
    assert_eq!(output.summary_line(), expected_summary);

    check_records(&dead, &lines);
    check_conversions(&events);
}

/// Checks what the dead-letter records keep of their lines.
fn check_records(dead: &[Value], lines: &[Vec<u8>]) {
    let by_reason = |reason: &str| dead.iter().find(|record| record["reason"] == json!(reason)).unwrap();

    let utf8 = by_reason("invalid_utf8");
    let bytes = base64::engine::general_purpose::STANDARD.decode(utf8["event_base64"].as_str().unwrap()).unwrap();
    assert_eq!(bytes, lines[2], "the record keeps the exact bytes");
    assert_eq!(utf8["event"], json!("{\"type\":\"track\",\"event\":\"caf\u{FFFD}\",\"userId\":\"u\"}"));

    let nul = &dead[2];
    assert!(nul["message"].as_str().unwrap().contains("NUL bytes"), "{nul}");
    assert_eq!(nul["event"].as_str().unwrap().as_bytes(), &lines[3][..]);

    let long = by_reason("line_too_long");
    assert_eq!(long["event"].as_str().unwrap().len(), MAX_LINE_BYTES);

    let deep = by_reason("too_deep");
    assert!(deep["message"].as_str().unwrap().contains("202 levels"), "{deep}");

    let long_id = by_reason("id_too_long");
    assert!(
        long_id["message"].as_str().unwrap().contains("2000 bytes long, more than max_id_bytes (1024)"),
        "{long_id}"
    );
    assert_eq!(long_id["event"]["userId"].as_str().unwrap().len(), 2000, "the message is kept whole");
}

/// Checks the conversions whose lines carried unusual values.
fn check_conversions(events: &[Value]) {
    let by_uuid =
        |uuid: &str| events.iter().find(|visitor| visitor["snapshots"][0]["events"][0]["uuid"] == json!(uuid)).unwrap();

    let nul = by_uuid("valid-escaped-nul");
    assert_eq!(nul["visitor_id"], json!("user\u{0}one"));

    let huge = &by_uuid("valid-huge-numbers")["snapshots"][0]["events"][0];
    assert!(huge.get("revenue").is_none(), "revenue out of range is left out: {huge}");
    assert!(huge.get("value").is_none(), "a value that is not finite is left out: {huge}");
    assert_eq!(huge["tags"]["big"].to_string(), "123456789012345678901234567890");

    let many = &by_uuid("valid-many-properties")["snapshots"][0]["events"][0]["tags"];
    assert_eq!(many.as_object().unwrap().len(), 1000);
    assert_eq!(many["p999"], json!(999));
    assert!(many.get("p1000").is_none());
}
