//! The Optimizely datafile: the project's ids for event and attribute keys, and its settings.
//!
//! Only the fields the transform uses are read: `version`, `accountId`, `projectId`, `revision`,
//! `events[{id,key}]`, `attributes[{id,key}]`, `botFiltering`, `anonymizeIP` and `region`. Other fields
//! (experiments, feature flags, audiences) are ignored.

use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::excerpt::{excerpt, shorten};
use super::number::json_kind;

/// The Event API endpoint for projects in the US region.
pub const US_EVENT_API_ENDPOINT: &str = "https://logx.optimizely.com/v1/events";

/// The Event API endpoint for projects in the EU region.
pub const EU_EVENT_API_ENDPOINT: &str = "https://eu.logx.optimizely.com/v1/events";

/// The datafile versions this program reads.
const SUPPORTED_VERSIONS: [&str; 3] = ["2", "3", "4"];

/// The start of the text the CDN serves for a deactivated project instead of a datafile.
const DEACTIVATED_PREFIX: &[u8] = b"// This Optimizely project has been deactivated";

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The maximum number of characters of a non-JSON body that an error message quotes.
const BODY_EXCERPT_CHARS: usize = 60;

/// The data region of an Optimizely project, which decides the Event API endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Region {
    /// The US region, also used when the datafile has no `region`.
    #[default]
    Us,
    /// The EU region.
    Eu,
}

/// A datafile that cannot be loaded or used.
///
/// Messages name the value or location at fault and the likely fix. They never contain the datafile
/// access token.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DatafileError {
    /// The text Optimizely serves for a deactivated project.
    #[error(
        "the Optimizely project has been deactivated, so there is no datafile to read; reactivate the \
         project in Optimizely or configure the datafile of an active project"
    )]
    Deactivated,

    /// An empty body.
    #[error("the body is empty; check that the source serves an Optimizely datafile")]
    Empty,

    /// A body that is not JSON, such as an HTML error page.
    #[error(
        "the body is not JSON (it starts with {start}): {detail}; check that the source serves an Optimizely datafile"
    )]
    NotJson {
        /// The first characters of the body, quoted and escaped.
        start: String,
        /// The JSON parser's message, with line and column.
        detail: String,
    },

    /// JSON that is not an object.
    #[error("the body is a JSON {kind}, not an object; check that the source serves an Optimizely datafile")]
    NotAnObject {
        /// The JSON type of the body, such as `array`.
        kind: &'static str,
    },

    /// A `version` other than the strings "2", "3" and "4".
    #[error(
        "unsupported datafile version {version}; only the versions \"2\", \"3\" and \"4\" can be read, so \
         configure a datafile of one of those versions"
    )]
    UnsupportedVersion {
        /// An excerpt of the `version` value.
        version: String,
    },

    /// A required top-level field that is absent.
    #[error("required field `{field}` is missing; check that the source serves a complete Optimizely datafile")]
    MissingField {
        /// The field name, such as `events`.
        field: &'static str,
    },

    /// A field of the wrong type, or an entry of `events` or `attributes` without a string `id` or `key`.
    #[error("invalid field `{path}`: {detail}; check that the source serves an Optimizely datafile")]
    InvalidField {
        /// The path of the field, such as `events[2].id`.
        path: String,
        /// The deserializer's message, naming the type found and the type expected.
        detail: String,
    },

    /// A `region` other than "US" and "EU".
    #[error("unsupported region {region}; expected \"US\", \"EU\" or no region field")]
    InvalidRegion {
        /// An excerpt of the `region` value.
        region: String,
    },

    /// A datafile of another account than the configured `account_id`.
    #[error(
        "the datafile belongs to account {actual}, but account_id is set to {expected}; configure the \
         datafile of account {expected} or correct account_id"
    )]
    AccountMismatch {
        /// The configured `account_id`.
        expected: String,
        /// The datafile's `accountId`.
        actual: String,
    },

    /// Datafile settings that are inconsistent, such as both `path` and `url`.
    #[error("invalid datafile settings: {problems}")]
    InvalidConfig {
        /// Every problem found, separated by `; `.
        problems: String,
    },

    /// A local datafile that cannot be read.
    #[error("cannot read datafile {path}: {cause}; check the datafile.path setting")]
    ReadFile {
        /// The configured path.
        path: String,
        /// The operating system's error message.
        cause: String,
    },

    /// A request that failed before a response arrived, such as a refused connection.
    #[error("request for datafile {url} failed: {cause}; check the URL and that the network reaches it")]
    Request {
        /// The URL, with any password replaced.
        url: String,
        /// The error and its causes, outermost first.
        cause: String,
    },

    /// A request without a complete response within `timeout_secs`.
    #[error(
        "request for datafile {url} timed out after {timeout_secs} s; check the network or raise datafile.timeout_secs"
    )]
    TimedOut {
        /// The URL, with any password replaced.
        url: String,
        /// The configured timeout in seconds.
        timeout_secs: f64,
    },

    /// A 401 or 403 response.
    #[error("authentication failed for datafile {url} (HTTP {status}); {hint}")]
    AuthenticationFailed {
        /// The URL, with any password replaced.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// What to check, which depends on whether an access token was sent.
        hint: &'static str,
    },

    /// A 404 response.
    #[error("datafile {url} not found (HTTP 404); {hint}")]
    NotFound {
        /// The URL, with any password replaced.
        url: String,
        /// What to check, which depends on how the URL was configured.
        hint: &'static str,
    },

    /// Another non-success response.
    #[error("request for datafile {url} failed with HTTP {status}; {hint}")]
    HttpStatus {
        /// The URL, with any password replaced.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// What to do, which depends on the status class.
        hint: &'static str,
    },

    /// A datafile that was read from `location` but cannot be used.
    #[error("datafile {location}: {error}")]
    Content {
        /// The path or URL it was read from.
        location: String,
        /// The reason it cannot be used.
        error: Box<DatafileError>,
    },
}

/// The fields read by serde, after the version and the presence of required fields are checked.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDatafile {
    account_id: String,
    project_id: String,
    revision: String,
    events: Vec<RawEntity>,
    attributes: Vec<RawEntity>,
    #[serde(default)]
    bot_filtering: Option<bool>,
    #[serde(default, rename = "anonymizeIP")]
    anonymize_ip: Option<bool>,
}

/// An entry of `events` or `attributes`; other fields of an entry are ignored.
#[derive(Deserialize)]
struct RawEntity {
    id: String,
    key: String,
}

/// The parts of an Optimizely datafile that the transform uses, with O(1) key lookups.
#[derive(Debug, Clone)]
pub struct Datafile {
    /// The datafile format version: "2", "3" or "4".
    pub version: String,
    /// The `accountId`, sent as the request's `account_id`.
    pub account_id: String,
    /// The `projectId`, sent as the request's `project_id`.
    pub project_id: String,
    /// The `revision`, sent as the request's `revision`.
    pub revision: String,
    /// The `botFiltering` flag, sent as the `$opt_bot_filtering` attribute when present.
    pub bot_filtering: Option<bool>,
    /// The `anonymizeIP` flag, sent as the request's `anonymize_ip` when present.
    pub anonymize_ip: Option<bool>,
    /// The data region, which decides the Event API endpoint.
    pub region: Region,
    /// Event ids by event key. The maps hash with FxHash instead of std's SipHash: with boolean tags
    /// written directly, that saved 800 instructions per event (`valgrind --tool=callgrind`). Only
    /// the datafile adds keys, so input cannot fill a map with colliding keys.
    event_ids: FxHashMap<String, String>,
    /// Attribute ids by attribute key.
    attribute_ids: FxHashMap<String, String>,
}

impl Datafile {
    /// Parses a datafile and builds its key indexes.
    ///
    /// A leading UTF-8 byte order mark is skipped. The version must be the string "2", "3" or "4".
    /// `accountId`, `projectId` and `revision` must be strings, and `events` and `attributes` arrays of
    /// objects with string `id` and `key`. `botFiltering` and `anonymizeIP` are optional booleans, and
    /// `region` is "US", "EU", absent or `null` (US). The text Optimizely serves for a deactivated
    /// project gives [`DatafileError::Deactivated`], and any other non-JSON body an error quoting its
    /// start.
    pub fn parse(bytes: &[u8]) -> Result<Datafile, DatafileError> {
        let body = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
        let value = parse_json(body)?;

        let Some(object) = value.as_object() else {
            return Err(DatafileError::NotAnObject { kind: json_kind(&value) });
        };
        let version = read_version(object)?;
        check_required_fields(object)?;
        let region = read_region(object)?;

        let raw: RawDatafile = serde_path_to_error::deserialize(&value).map_err(|error| {
            DatafileError::InvalidField { path: error.path().to_string(), detail: error.into_inner().to_string() }
        })?;

        Ok(Datafile::from_raw(raw, version, region))
    }

    fn from_raw(raw: RawDatafile, version: String, region: Region) -> Datafile {
        Datafile {
            version,
            account_id: raw.account_id,
            project_id: raw.project_id,
            revision: raw.revision,
            bot_filtering: raw.bot_filtering,
            anonymize_ip: raw.anonymize_ip,
            region,
            event_ids: index_by_key(raw.events),
            attribute_ids: index_by_key(raw.attributes),
        }
    }

    /// Returns the id of the event with exactly this key (case-sensitive). When the datafile lists a
    /// key twice, the first entry wins.
    pub fn event_id(&self, key: &str) -> Option<&str> {
        self.event_ids.get(key).map(String::as_str)
    }

    /// Returns the id of the attribute with exactly this key (case-sensitive). When the datafile lists
    /// a key twice, the first entry wins.
    pub fn attribute_id(&self, key: &str) -> Option<&str> {
        self.attribute_ids.get(key).map(String::as_str)
    }

    /// Returns the attributes as key and id, in no particular order.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attribute_ids.iter().map(|(key, id)| (key.as_str(), id.as_str()))
    }

    /// Returns the event keys in no particular order, such as for suggesting a key close to an unknown
    /// one.
    pub fn event_keys(&self) -> impl Iterator<Item = &str> {
        self.event_ids.keys().map(String::as_str)
    }

    /// Returns the Event API endpoint of the datafile's region.
    pub fn event_api_endpoint(&self) -> &'static str {
        match self.region {
            Region::Us => US_EVENT_API_ENDPOINT,
            Region::Eu => EU_EVENT_API_ENDPOINT,
        }
    }

    /// Checks that the datafile belongs to the configured account.
    pub fn check_account_id(&self, expected: &str) -> Result<(), DatafileError> {
        if self.account_id == expected {
            return Ok(());
        }
        Err(DatafileError::AccountMismatch { expected: expected.to_owned(), actual: self.account_id.clone() })
    }
}

/// Parses the body as JSON, recognising the deactivated-project text and other non-JSON bodies.
fn parse_json(body: &[u8]) -> Result<Value, DatafileError> {
    let trimmed = body.trim_ascii_start();
    if trimmed.is_empty() {
        return Err(DatafileError::Empty);
    }
    if trimmed.starts_with(DEACTIVATED_PREFIX) {
        return Err(DatafileError::Deactivated);
    }

    serde_json::from_slice(body).map_err(|error| {
        let head = &trimmed[..trimmed.len().min(BODY_EXCERPT_CHARS * 4)];
        let start = shorten(&String::from_utf8_lossy(head), BODY_EXCERPT_CHARS);
        DatafileError::NotJson { start: format!("{start:?}"), detail: error.to_string() }
    })
}

fn read_version(object: &Map<String, Value>) -> Result<String, DatafileError> {
    match object.get("version") {
        None => Err(DatafileError::MissingField { field: "version" }),
        Some(Value::String(version)) if SUPPORTED_VERSIONS.contains(&version.as_str()) => Ok(version.clone()),
        Some(other) => Err(DatafileError::UnsupportedVersion { version: excerpt(other) }),
    }
}

/// Checks the presence of required fields, so that a missing one gets its own message before type
/// checks run.
fn check_required_fields(object: &Map<String, Value>) -> Result<(), DatafileError> {
    for field in ["accountId", "projectId", "revision", "events", "attributes"] {
        if !object.contains_key(field) {
            return Err(DatafileError::MissingField { field });
        }
    }
    Ok(())
}

fn read_region(object: &Map<String, Value>) -> Result<Region, DatafileError> {
    match object.get("region") {
        None | Some(Value::Null) => Ok(Region::Us),
        Some(Value::String(region)) if region == "US" => Ok(Region::Us),
        Some(Value::String(region)) if region == "EU" => Ok(Region::Eu),
        Some(other) => Err(DatafileError::InvalidRegion { region: excerpt(other) }),
    }
}

/// Maps each key to its id, keeping the first entry when a key appears twice.
fn index_by_key(entities: Vec<RawEntity>) -> FxHashMap<String, String> {
    let mut ids = FxHashMap::with_capacity_and_hasher(entities.len(), Default::default());
    for entity in entities {
        ids.entry(entity.key).or_insert(entity.id);
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = "../shared/fixtures/datafiles";

    fn read_fixture(name: &str) -> Vec<u8> {
        let path = format!("{FIXTURES}/{name}");
        std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read fixture {path}: {error}"))
    }

    fn parse_fixture(name: &str) -> Datafile {
        Datafile::parse(&read_fixture(name)).unwrap_or_else(|error| panic!("{name}: {error}"))
    }

    fn parse_text(text: &str) -> Result<Datafile, DatafileError> {
        Datafile::parse(text.as_bytes())
    }

    /// Expected values of one fixture, read from the file by hand.
    struct Expected {
        file: &'static str,
        version: &'static str,
        account_id: &'static str,
        project_id: &'static str,
        revision: &'static str,
        bot_filtering: Option<bool>,
        anonymize_ip: Option<bool>,
        events: &'static [(&'static str, &'static str)],
        attributes: &'static [(&'static str, &'static str)],
    }

    const EXPECTED: &[Expected] = &[
        Expected {
            file: "android-datafile-full-region-us.json",
            version: "4",
            account_id: "12122875164",
            project_id: "4552646833471488",
            revision: "16",
            bot_filtering: Some(false),
            anonymize_ip: Some(true),
            events: &[("e1", "4541363316850688")],
            attributes: &[
                ("extra-1", "4573047072489472"),
                ("age", "5481523235782656"),
                ("country", "6335766293381120"),
            ],
        },
        Expected {
            file: "csharp-testdata-bom.json",
            version: "4",
            account_id: "1592310167",
            project_id: "7720880029",
            revision: "15",
            bot_filtering: Some(true),
            anonymize_ip: Some(false),
            events: &[("purchase", "7718020063")],
            attributes: &[("device_type", "7723280020"), ("browser_type", "134"), ("double_key", "808797686")],
        },
        Expected {
            file: "go-100-entities.json",
            version: "4",
            account_id: "9585780027",
            project_id: "11918101036",
            revision: "17",
            bot_filtering: Some(false),
            anonymize_ip: Some(true),
            events: &[("event_37", "11916081257"), ("event_100", "11920081642"), ("event_5", "11916101450")],
            attributes: &[("attr_72", "11916023163"), ("attr_20", "11921911280")],
        },
        Expected {
            file: "go-typed-audience-datafile.json",
            version: "4",
            account_id: "4879520872",
            project_id: "11624721371",
            revision: "3",
            bot_filtering: Some(false),
            anonymize_ip: Some(false),
            events: &[("item_bought", "594089"), ("user_signed_up", "594090")],
            attributes: &[("house", "594015"), ("favorite_ice_cream", "594018")],
        },
        Expected {
            file: "java-valid-project-config-v2.json",
            version: "2",
            account_id: "789",
            project_id: "1234",
            revision: "42",
            bot_filtering: None,
            anonymize_ip: None,
            events: &[("clicked_cart", "971"), ("Total Revenue", "098"), ("no_running_experiments", "100")],
            attributes: &[("browser_type", "134")],
        },
        Expected {
            file: "java-valid-project-config-v3.json",
            version: "3",
            account_id: "789",
            project_id: "1234",
            revision: "42",
            bot_filtering: None,
            anonymize_ip: Some(true),
            events: &[("clicked_purchase", "099"), ("Total Revenue", "098")],
            attributes: &[("browser_type", "134")],
        },
        Expected {
            file: "java-valid-project-config-v4.json",
            version: "4",
            account_id: "2360254204",
            project_id: "3918735994",
            revision: "1480511547",
            bot_filtering: Some(true),
            anonymize_ip: Some(true),
            events: &[("basic_event", "3785620495"), ("event_with_launched_experiments_only", "1987018666")],
            attributes: &[
                ("house", "553339214"),
                ("$opt_test", "583394100"),
                ("doubleKey", "808797686"),
                ("", "808797686"),
            ],
        },
        Expected {
            file: "swift-optimizely-6372300739-v4.json",
            version: "4",
            account_id: "6365361536",
            project_id: "6372300739",
            revision: "58",
            bot_filtering: Some(true),
            anonymize_ip: Some(true),
            events: &[
                ("testEvent", "6370537431"),
                ("Total Revenue", "6370815083"),
                ("testEventWithoutExperiments", "6377001020"),
            ],
            attributes: &[("browser_type", "6380961481")],
        },
    ];

    #[test]
    fn every_fixture_is_listed() {
        let mut files: Vec<String> = std::fs::read_dir(FIXTURES)
            .unwrap_or_else(|error| panic!("cannot list {FIXTURES}: {error}"))
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".json"))
            .collect();
        files.sort();

        let mut listed: Vec<String> = EXPECTED.iter().map(|expected| expected.file.to_owned()).collect();
        listed.sort();
        assert_eq!(files, listed);
    }

    #[test]
    fn fixtures_parse_with_expected_fields() {
        for expected in EXPECTED {
            let file = expected.file;
            let datafile = parse_fixture(file);

            assert_eq!(datafile.version, expected.version, "{file}: version");
            assert_eq!(datafile.account_id, expected.account_id, "{file}: accountId");
            assert_eq!(datafile.project_id, expected.project_id, "{file}: projectId");
            assert_eq!(datafile.revision, expected.revision, "{file}: revision");
            assert_eq!(datafile.bot_filtering, expected.bot_filtering, "{file}: botFiltering");
            assert_eq!(datafile.anonymize_ip, expected.anonymize_ip, "{file}: anonymizeIP");
            assert_eq!(datafile.region, Region::Us, "{file}: region");
            assert_eq!(datafile.event_api_endpoint(), "https://logx.optimizely.com/v1/events", "{file}: endpoint");

            for (key, id) in expected.events {
                assert_eq!(datafile.event_id(key), Some(*id), "{file}: event {key:?}");
            }
            for (key, id) in expected.attributes {
                assert_eq!(datafile.attribute_id(key), Some(*id), "{file}: attribute {key:?}");
            }
            assert_eq!(datafile.event_id("no_such_event"), None, "{file}: unknown event");
            assert_eq!(datafile.attribute_id("no_such_attribute"), None, "{file}: unknown attribute");
        }
    }

    #[test]
    fn fixture_entity_counts() {
        let cases = [("go-100-entities.json", 100, 100), ("swift-optimizely-6372300739-v4.json", 7, 1)];
        for (file, events, attributes) in cases {
            let datafile = parse_fixture(file);
            assert_eq!(datafile.event_keys().count(), events, "{file}: events");
            assert_eq!(datafile.attribute_ids.len(), attributes, "{file}: attributes");
        }
    }

    #[test]
    fn region_us_fixture_reads_region() {
        let bytes = read_fixture("android-datafile-full-region-us.json");
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("\"region\": \"US\""), "the fixture should contain a region key");
        assert_eq!(parse_text(&text).unwrap().region, Region::Us);
    }

    #[test]
    fn byte_order_mark_is_skipped() {
        let bytes = read_fixture("csharp-testdata-bom.json");
        assert!(bytes.starts_with(b"\xEF\xBB\xBF"), "the fixture should start with a BOM");
        assert_eq!(Datafile::parse(&bytes).unwrap().account_id, "1592310167");

        let minimal = format!("\u{FEFF}{}", minimal_datafile());
        assert_eq!(parse_text(&minimal).unwrap().revision, "7");
    }

    fn minimal_datafile() -> String {
        r#"{"version": "4", "accountId": "100", "projectId": "200", "revision": "7",
            "events": [{"id": "11", "key": "purchase"}], "attributes": [{"id": "21", "key": "plan"}]}"#
            .to_owned()
    }

    fn datafile_with(field: &str, value: &str) -> String {
        let mut object: Map<String, Value> = serde_json::from_str(&minimal_datafile()).unwrap();
        object.insert(field.to_owned(), serde_json::from_str(value).unwrap());
        Value::Object(object).to_string()
    }

    fn datafile_without(field: &str) -> String {
        let mut object: Map<String, Value> = serde_json::from_str(&minimal_datafile()).unwrap();
        object.shift_remove(field);
        Value::Object(object).to_string()
    }

    #[test]
    fn duplicate_keys_keep_first_definition() {
        let events =
            r#"[{"id": "1", "key": "purchase"}, {"id": "2", "key": "purchase"}, {"id": "3", "key": "Purchase"}]"#;
        let datafile = parse_text(&datafile_with("events", events)).unwrap();
        assert_eq!(datafile.event_id("purchase"), Some("1"));
        assert_eq!(datafile.event_id("Purchase"), Some("3"));
        assert_eq!(datafile.event_id("PURCHASE"), None);

        let attributes = r#"[{"id": "5", "key": "plan"}, {"id": "6", "key": "plan"}]"#;
        let datafile = parse_text(&datafile_with("attributes", attributes)).unwrap();
        assert_eq!(datafile.attribute_id("plan"), Some("5"));
    }

    #[test]
    fn entity_extra_fields_are_ignored() {
        let events = r#"[{"id": "1", "key": "a", "experimentIds": ["9"], "unknown": {"x": 1}}]"#;
        assert_eq!(parse_text(&datafile_with("events", events)).unwrap().event_id("a"), Some("1"));
    }

    #[test]
    fn region_values() {
        let cases = [("\"US\"", Region::Us), ("\"EU\"", Region::Eu), ("null", Region::Us)];
        for (region, expected) in cases {
            let datafile = parse_text(&datafile_with("region", region)).unwrap();
            assert_eq!(datafile.region, expected, "region {region}");
        }

        let eu = parse_text(&datafile_with("region", "\"EU\"")).unwrap();
        assert_eq!(eu.event_api_endpoint(), "https://eu.logx.optimizely.com/v1/events");
        assert_eq!(parse_text(&minimal_datafile()).unwrap().region, Region::Us);
    }

    #[test]
    fn unknown_region_is_rejected() {
        for region in ["\"eu\"", "\"APAC\"", "\"\"", "1"] {
            let error = parse_text(&datafile_with("region", region)).unwrap_err();
            assert_eq!(error, DatafileError::InvalidRegion { region: region.to_owned() }, "region {region}");
        }

        let message = parse_text(&datafile_with("region", "\"APAC\"")).unwrap_err().to_string();
        assert!(message.contains("\"APAC\""), "{message}");
        assert!(message.contains("\"EU\""), "{message}");
    }

    #[test]
    fn deactivated_project_is_recognised() {
        let text = "// This Optimizely project has been deactivated. Please contact support.";
        assert_eq!(parse_text(text).unwrap_err(), DatafileError::Deactivated);
        assert_eq!(parse_text(&format!("\u{FEFF}{text}")).unwrap_err(), DatafileError::Deactivated);
        assert_eq!(parse_text(&format!("\n  {text}\n")).unwrap_err(), DatafileError::Deactivated);

        let message = DatafileError::Deactivated.to_string();
        assert!(message.contains("deactivated"), "{message}");
        assert!(message.contains("reactivate"), "{message}");
    }

    #[test]
    fn html_body_is_not_json() {
        let html = "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>";
        let error = parse_text(html).unwrap_err();
        let DatafileError::NotJson { start, detail } = &error else {
            panic!("expected NotJson, got {error:?}");
        };
        // The first 60 characters, with the newline escaped.
        assert_eq!(start, "\"<!DOCTYPE html>\\n<html><head><title>502 Bad Gateway</title></…\"");
        assert!(detail.contains("line 1 column 1"), "{detail}");

        let message = error.to_string();
        assert!(message.contains("<!DOCTYPE html>"), "{message}");
        assert!(message.contains("not JSON"), "{message}");
    }

    #[test]
    fn truncated_json_is_not_json() {
        let text = minimal_datafile();
        let error = parse_text(&text[..text.len() - 10]).unwrap_err();
        assert!(matches!(error, DatafileError::NotJson { .. }), "{error:?}");
    }

    #[test]
    fn empty_body_is_rejected() {
        assert_eq!(parse_text("").unwrap_err(), DatafileError::Empty);
        assert_eq!(parse_text(" \n").unwrap_err(), DatafileError::Empty);
        assert_eq!(Datafile::parse(b"\xEF\xBB\xBF").unwrap_err(), DatafileError::Empty);
    }

    #[test]
    fn non_object_json_is_rejected() {
        assert_eq!(parse_text("[]").unwrap_err(), DatafileError::NotAnObject { kind: "array" });
        assert_eq!(parse_text("\"datafile\"").unwrap_err(), DatafileError::NotAnObject { kind: "string" });
    }

    #[test]
    fn unsupported_versions_are_rejected() {
        for version in ["\"5\"", "\"1\"", "\"4.0\"", "4", "null"] {
            let error = parse_text(&datafile_with("version", version)).unwrap_err();
            assert_eq!(error, DatafileError::UnsupportedVersion { version: version.to_owned() }, "version {version}");
        }

        let message = parse_text(&datafile_with("version", "\"5\"")).unwrap_err().to_string();
        assert!(message.contains("unsupported datafile version \"5\""), "{message}");
        assert!(message.contains("\"4\""), "{message}");
    }

    #[test]
    fn missing_required_fields_are_named() {
        for field in ["version", "accountId", "projectId", "revision", "events", "attributes"] {
            let error = parse_text(&datafile_without(field)).unwrap_err();
            assert_eq!(error, DatafileError::MissingField { field }, "without {field}");
        }

        let message = parse_text(&datafile_without("events")).unwrap_err().to_string();
        assert!(message.contains("required field `events` is missing"), "{message}");
    }

    #[test]
    fn optional_fields_may_be_absent() {
        let datafile = parse_text(&minimal_datafile()).unwrap();
        assert_eq!(datafile.bot_filtering, None);
        assert_eq!(datafile.anonymize_ip, None);

        let with_flags = datafile_with("botFiltering", "true");
        assert_eq!(parse_text(&with_flags).unwrap().bot_filtering, Some(true));
        let with_null = datafile_with("anonymizeIP", "null");
        assert_eq!(parse_text(&with_null).unwrap().anonymize_ip, None);
    }

    #[test]
    fn wrong_field_types_name_path() {
        let cases = [
            ("accountId", "12345", "accountId"),
            ("revision", "7", "revision"),
            ("events", "{}", "events"),
            ("events", r#"[{"id": "1", "key": "a"}, {"id": 2, "key": "b"}]"#, "events[1].id"),
            ("attributes", r#"[{"id": "1"}]"#, "attributes[0]"),
            ("botFiltering", "\"true\"", "botFiltering"),
            ("anonymizeIP", "1", "anonymizeIP"),
        ];
        for (field, value, path) in cases {
            let error = parse_text(&datafile_with(field, value)).unwrap_err();
            let DatafileError::InvalidField { path: actual, .. } = &error else {
                panic!("{field} = {value}: expected InvalidField, got {error:?}");
            };
            assert_eq!(actual, path, "{field} = {value}");
        }

        let message = parse_text(&datafile_with("attributes", r#"[{"id": "1"}]"#)).unwrap_err().to_string();
        assert!(message.contains("`attributes[0]`"), "{message}");
        assert!(message.contains("missing field `key`"), "{message}");
    }

    #[test]
    fn account_id_check() {
        let datafile = parse_text(&minimal_datafile()).unwrap();
        assert_eq!(datafile.check_account_id("100"), Ok(()));

        let error = datafile.check_account_id("999").unwrap_err();
        assert_eq!(error, DatafileError::AccountMismatch { expected: "999".to_owned(), actual: "100".to_owned() });
        let message = error.to_string();
        assert!(message.contains("account 100"), "{message}");
        assert!(message.contains("account_id is set to 999"), "{message}");
    }
}
